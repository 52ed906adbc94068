/**
 * One run of `load` at a time: a request that arrives during a run causes exactly one more run
 * after it (however many arrive), so the last request is always followed by a fresh load and a
 * burst of notices costs at most two. For views re-read from the store on every notice.
 */
export class SingleFlight {
  private running: Promise<void> | null = null
  private again = false

  constructor (private readonly load: () => Promise<void>) {}

  request (): void {
    if (this.running !== null) { this.again = true; return }
    this.running = this.load().finally(() => {
      this.running = null
      if (this.again) { this.again = false; this.request() }
    })
  }

  /** Resolves when the run in progress (if any) ends. */
  async settled (): Promise<void> {
    await this.running
  }
}
