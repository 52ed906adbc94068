/**
 * When this process's event loop last stalled: a timer that should fire every `intervalMs` and
 * notes each time it fired more than `thresholdMs` late. While the loop is stalled nothing else
 * runs either — notably the store's notifications are not processed — so code that trusts a
 * cache kept current by notifications asks whether a stall overlapped the time it relies on.
 * One timer per process; about 100 wake-ups a second at the default interval.
 */
export class LoopStalls {
  /** performance.now() when the last stall over the threshold ended. */
  private lastStallEnd = -Infinity
  private lastTick = performance.now()
  private timer: NodeJS.Timeout | null = null

  constructor (private thresholdMs: number, private readonly intervalMs = 10) {}

  start (): void {
    if (this.timer !== null) return
    this.lastTick = performance.now()
    this.timer = setInterval(() => {
      const now = performance.now()
      if (now - this.lastTick > this.intervalMs + this.thresholdMs) this.lastStallEnd = now
      this.lastTick = now
    }, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  set threshold (ms: number) { this.thresholdMs = ms }

  /**
   * Whether the loop stalled for over the threshold at any time since `since` (performance.now()
   * ms), the stall in progress included: code that runs right after a long stall may run before
   * the timer has had its turn to notice it. `now`: the caller's performance.now(), if it has one.
   */
  stalledSince (since: number, now = performance.now()): boolean {
    if (this.timer === null) return false
    return this.lastStallEnd >= since || now - this.lastTick > this.intervalMs + this.thresholdMs
  }
}
