/**
 * An online estimate of how rare a value is among everything a feature has produced so far:
 * `surprise(x) = -log10 P(X >= x)`.
 *
 * Why an empirical tail rather than a Gaussian z-score: telemetry is heavy-tailed and
 * skewed (latency, request counts, tweet volumes), so a z-score of 4 means "once a week" on
 * one signal and "every hour" on another, and one corpus-wide or fleet-wide threshold cannot
 * serve both. Ranking a value against the signal's own history calibrates every feature to
 * the same scale (a probability), whatever its distribution.
 *
 * Only the top K values are kept (K = max(kMin, frac * n), at most kMax), so memory is
 * bounded and an update costs O(K). When frac * n would exceed kMax, the history is halved:
 * n is halved and every second kept value dropped (the largest stays). Ranks, hence
 * probabilities, are preserved, the resolution (frac) is kept, and old behaviour weighs less
 * and less: a forgetting memory of roughly kMax / frac to 2 kMax / frac samples, which is
 * what a gateway whose normal drifts over days needs. Inside the kept tail the probability is the rank,
 * (c + 1) / (n + 1); beyond the largest value ever seen it is extrapolated with an
 * exponential tail whose scale is the mean excess of the kept values over the K-th one
 * (peaks-over-threshold with a shape of 0, as in SPOT-style streaming detectors). Values below
 * the kept tail are "not rare" and all get the probability of the K-th value.
 */
export interface TailState {
  /** Values seen so far (the denominator of every probability). */
  n: number
  /** The largest values seen, in descending order. */
  top: number[]
}

export interface TailOptions {
  /** Fraction of history kept as the tail. */
  frac: number
  kMin: number
  kMax: number
}

export const DEFAULT_TAIL: TailOptions = { frac: 0.02, kMin: 20, kMax: 256 }

export class TailEstimator {
  private n: number
  private readonly top: number[]
  private readonly opts: TailOptions

  constructor (opts: TailOptions = DEFAULT_TAIL, state?: TailState) {
    this.opts = opts
    this.n = state?.n ?? 0
    this.top = state?.top.slice() ?? []
  }

  get count (): number { return this.n }

  /** -log10 of the probability of a value at least as large as x; 0 until 10 values are known. */
  surprise (x: number): number {
    const n = this.n
    const top = this.top
    const k = top.length
    if (n < 10 || k === 0) return 0
    const kth = top[k - 1] as number
    if (x <= kth) return Math.log10((n + 1) / (k + 1))
    const max = top[0] as number
    if (x <= max) {
      let c = 0
      while (c < k && (top[c] as number) >= x) c++
      return Math.log10((n + 1) / (c + 1))
    }
    let excess = 0
    for (const v of top) excess += v - kth
    excess /= k
    // A flat history (every kept value equal) has no tail scale; any excess is then extreme,
    // but relative to the magnitude, so that floating-point noise is not.
    const sigma = Math.max(excess, 1e-9 * (Math.abs(max) + 1))
    return Math.log10(n + 1) + (x - max) / sigma / Math.LN10
  }

  add (x: number): void {
    if (!Number.isFinite(x)) return
    this.n++
    const top = this.top
    if (this.opts.frac * this.n > this.opts.kMax) {
      this.n = Math.floor(this.n / 2)
      let w = 0
      for (let r = 0; r < top.length; r += 2) top[w++] = top[r] as number
      top.length = w
    }
    const k = Math.min(this.opts.kMax, Math.max(this.opts.kMin, Math.ceil(this.opts.frac * this.n)))
    if (top.length < k || x > (top[top.length - 1] as number)) {
      // Insertion into a short sorted array: O(K), no allocation.
      let i = top.length
      top.push(x)
      while (i > 0 && (top[i - 1] as number) < x) { top[i] = top[i - 1] as number; i-- }
      top[i] = x
    }
    while (top.length > k) top.pop()
  }

  state (): TailState {
    return { n: this.n, top: this.top.slice() }
  }
}
