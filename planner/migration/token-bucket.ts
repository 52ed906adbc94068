/**
 * The copy bandwidth limit: one token bucket shared by every migration, so N concurrent copies
 * together stay under the configured rate (migrations must not starve client traffic on the
 * links between gateways).
 *
 * `reserve(n)` takes n tokens at once, going into debt if needed, and says how long the caller
 * must wait before sending those bytes. Debt (rather than waiting for n tokens to accumulate)
 * keeps each chunk's wait proportional to its size and makes the long-run rate exact even for
 * chunks larger than the bucket. rate 0 = unlimited (no waits, no clock reads).
 */
export class TokenBucket {
  private rate: number
  private burst: number
  private tokens: number
  private last: number

  constructor (bytesPerSec: number, burstBytes: number, now = performance.now()) {
    this.rate = bytesPerSec
    this.burst = burstBytes
    this.tokens = burstBytes
    this.last = now
  }

  get unlimited (): boolean { return this.rate <= 0 }

  reconfigure (bytesPerSec: number, burstBytes: number): void {
    this.refill(performance.now())
    this.rate = bytesPerSec
    this.burst = burstBytes
    this.tokens = Math.min(this.tokens, burstBytes)
  }

  /** Takes `n` tokens; returns the milliseconds to wait before the bytes may go (0: now). */
  reserve (n: number, now = performance.now()): number {
    if (this.rate <= 0) return 0
    this.refill(now)
    this.tokens -= n
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.rate) * 1000)
  }

  private refill (now: number): void {
    if (this.rate > 0) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate)
    this.last = now
  }
}
