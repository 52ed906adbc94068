/**
 * Rolling conformal calibration of one signal's forecast, per gateway: the intervals the model
 * reports are the quantiles of the normalised errors this signal's own recent forecasts made
 * (split-conformal on a rolling window), and their coverage is measured as it goes.
 *
 * Why: the errors calibrated at training time describe the training fleet. A gateway whose
 * noise differs (or a model that learned online, with Gaussian errors) reports intervals that
 * are too wide or too narrow; the seed asks for a confidence interval that means what it says.
 *
 * Every `trackEveryMs` a forecast (median, scale, and the bounds reported at the tracked levels)
 * is queued; when its horizon has passed, the signal's level then (the running median: what
 * the model forecasts) is compared with it. The normalised error joins a ring of the last
 * `size` errors, whose quantiles become the interval once `minSize` have matured; each tracked
 * level records whether the reported interval held the truth, over the same ring.
 *
 * The rolling window alone lags a signal whose behaviour changes (a degradation's errors grow
 * faster than the window renews), so each level is also steered by its own misses (adaptive
 * conformal inference, Gibbs & Candès 2021): after every matured forecast the level actually
 * used moves by `gain` x (miss - (1 - nominal)), which holds long-run coverage at nominal
 * whatever the drift.
 */
import { ERROR_GRID } from './forecast.js'

/** The interval levels whose coverage is measured and reported (beside the model's own level). */
export const COVERAGE_LEVELS: readonly number[] = [0.8, 0.95]

export interface CoverageFigure { level: number, coverage: number | null, n: number }

interface Pending { due: number, mean: number, scale: number, bounds: Float64Array }

export class RollingCalibration {
  private readonly errors: Float64Array
  private errorCount = 0
  private errorNext = 0
  private readonly hits: Uint8Array[]
  private readonly hitCount: number[]
  private hitN = 0
  private totalN = 0
  private readonly totalHits: number[]
  private hitNext = 0
  private readonly pending: Pending[] = []
  private lastTracked = -Infinity
  private grid: number[] | null = null
  private dirty = false
  private readonly steered: number[]

  /** `levels`: interval levels tracked (the model's level first, then COVERAGE_LEVELS). */
  constructor (readonly levels: readonly number[], readonly size = 500, readonly minSize = 100, readonly trackEveryMs = 10_000, readonly gain = 0.005) {
    this.steered = levels.slice()
    this.errors = new Float64Array(size)
    this.hits = levels.map(() => new Uint8Array(size))
    this.hitCount = levels.map(() => 0)
    this.totalHits = levels.map(() => 0)
  }

  /**
   * Calibrated normalised error quantiles at ERROR_GRID, from the rolling window; null until
   * `minSize` forecasts have matured (the caller falls back to the trained errors).
   */
  quantiles (): number[] | null {
    if (this.errorCount < this.minSize) return null
    if (this.dirty || this.grid === null) {
      const s = Array.from(this.errors.subarray(0, this.errorCount)).sort((a, b) => a - b)
      const n = s.length
      // Conformal: the ceil((n + 1) p)-th smallest error bounds a new one with probability >= p.
      this.grid = ERROR_GRID.map(p => {
        const k = p >= 0.5 ? Math.min(n - 1, Math.ceil((n + 1) * p) - 1) : Math.max(0, Math.floor((n + 1) * p) - 1)
        return s[k] as number
      })
      this.dirty = false
    }
    return this.grid
  }

  /** The level to build the k-th tracked interval at, so that it covers at its nominal level. */
  steeredLevel (k: number): number {
    return this.errorCount < this.minSize ? this.levels[k] as number : this.steered[k] as number
  }

  /** Whether a forecast made at `t` should be tracked (one every trackEveryMs). */
  due (t: number): boolean {
    return t - this.lastTracked >= this.trackEveryMs
  }

  /** Queues a forecast made at `t` for the horizon; `bounds`: [low, high] per tracked level. */
  track (t: number, horizonMs: number, mean: number, scale: number, bounds: Float64Array): void {
    this.lastTracked = t
    this.pending.push({ due: t + horizonMs, mean, scale, bounds })
    // A gateway that stops sending must not queue forever (a horizon's worth is all that can mature).
    if (this.pending.length > 4 * Math.ceil(horizonMs / this.trackEveryMs) + 4) this.pending.shift()
  }

  /** The signal's level at time `t`: every queued forecast now due is scored against it. */
  observe (t: number, level: number): void {
    while (this.pending.length > 0 && (this.pending[0] as Pending).due <= t) {
      const f = this.pending.shift() as Pending
      this.errors[this.errorNext] = (level - f.mean) / f.scale
      this.errorNext = (this.errorNext + 1) % this.size
      if (this.errorCount < this.size) this.errorCount++
      this.dirty = true
      for (let k = 0; k < this.levels.length; k++) {
        const hit = level >= (f.bounds[2 * k] as number) && level <= (f.bounds[2 * k + 1] as number) ? 1 : 0
        const nominal = this.levels[k] as number
        this.steered[k] = Math.min(0.999, Math.max(nominal / 2, (this.steered[k] as number) + this.gain * ((1 - hit) - (1 - nominal))))
        const ring = this.hits[k] as Uint8Array
        if (this.hitN === this.size) this.hitCount[k] = (this.hitCount[k] as number) - (ring[this.hitNext] as number)
        ring[this.hitNext] = hit
        this.hitCount[k] = (this.hitCount[k] as number) + hit
        this.totalHits[k] = (this.totalHits[k] as number) + hit
      }
      this.totalN++
      this.hitNext = (this.hitNext + 1) % this.size
      if (this.hitN < this.size) this.hitN++
    }
  }

  /** Measured coverage of each tracked level over the last `size` matured forecasts. */
  coverage (): CoverageFigure[] {
    return this.levels.map((level, k) => ({ level, coverage: this.hitN > 0 ? (this.hitCount[k] as number) / this.hitN : null, n: this.hitN }))
  }

  /** Hits and count per level, for pooling several signals or gateways: the last `size` forecasts, or all. */
  tally (scope: 'recent' | 'all' = 'recent'): { n: number, hits: number[] } {
    return scope === 'recent' ? { n: this.hitN, hits: this.hitCount.slice() } : { n: this.totalN, hits: this.totalHits.slice() }
  }
}
