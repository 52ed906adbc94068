/**
 * A probabilistic forecast of one signal at a horizon: a local linear trend fitted by least
 * squares to the last `windowS` seconds, whose error scale is the textbook prediction standard
 * error of a regression, recalibrated on training data (split-conformal): the model stores the
 * empirical quantiles of the normalised errors (actual - forecast) / scale it made on history,
 * so that a "90% interval" contains the truth about 90% of the time on data like the
 * training data, although telemetry noise is neither Gaussian nor independent.
 *
 * Why a trend: the failures worth predicting (leaks, growing latency, saturation) are drifts
 * that end at a limit; the slope and its uncertainty say when, and how sure we are.
 */

/** Probability levels at which calibrated error quantiles are stored. */
export const ERROR_GRID: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995]

/** Normal quantiles at ERROR_GRID: the uncalibrated default (Gaussian errors). */
export const GAUSSIAN_ERRORS: readonly number[] = [-2.5758, -2.3263, -1.96, -1.6449, -1.2816, -0.8416, -0.5244, -0.2533, 0, 0.2533, 0.5244, 0.8416, 1.2816, 1.6449, 1.96, 2.3263, 2.5758]

export interface Forecast {
  /** Median forecast (before calibration: the regression line at the horizon). */
  mean: number
  /** Prediction standard error at the horizon. */
  scale: number
  /** Fitted level at the newest sample (smoothed "now"). */
  level: number
  /** Slope per second. */
  slope: number
  samples: number
}

export type ForecasterKind = 'trend' | 'level'

/**
 * A running median over the last `spanS` seconds. Telemetry has bursts (a CPU spike, a network
 * blip, a few failed probes) that end as quickly as they start; a straight line fitted through
 * a burst at the end of the window would extrapolate it for the whole horizon. The median of
 * the last minute ignores anything shorter than half a minute, and a real drift passes through
 * unchanged.
 */
export class RunningMedian {
  private readonly times: number[] = []
  private readonly order: number[] = []
  private readonly sorted: number[] = []

  constructor (private readonly spanS: number) {}

  push (tMs: number, x: number): number {
    this.times.push(tMs)
    this.order.push(x)
    this.sorted.splice(this.lowerBound(x), 0, x)
    const cutoff = tMs - this.spanS * 1000
    while (this.times.length > 1 && (this.times[0] as number) <= cutoff) {
      this.times.shift()
      const old = this.order.shift() as number
      this.sorted.splice(this.lowerBound(old), 1)
    }
    const n = this.sorted.length
    return n % 2 === 1 ? this.sorted[(n - 1) / 2] as number : ((this.sorted[n / 2 - 1] as number) + (this.sorted[n / 2] as number)) / 2
  }

  private lowerBound (x: number): number {
    let lo = 0
    let hi = this.sorted.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((this.sorted[mid] as number) < x) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

/**
 * The recent samples of one signal, bounded by time, with running sums so that a forecast
 * costs O(1) whatever the window (the planner assesses hundreds of gateways every second and
 * `ferry evaluate` replays days of telemetry). Times are kept relative to a reference that is
 * moved, and the sums recomputed, every `rebase` pushes, which bounds floating-point drift.
 *
 * `trend` fits a line; `level` (the comparison family) predicts the window mean, flat, with
 * the window's spread: persistence.
 */
export class SignalWindow {
  private t: number[] = []
  private x: number[] = []
  private head = 0
  private ref = 0
  private st = 0
  private sx = 0
  private stt = 0
  private stx = 0
  private sxx = 0
  private pushes = 0
  private raw: number | undefined
  private readonly median: RunningMedian

  /** `medianS`: span of the running median applied before the fit (0: none). */
  constructor (private readonly windowS: number, medianS = 0) {
    this.median = new RunningMedian(medianS)
  }

  push (tMs: number, rawValue: number): void {
    if (this.size === 0) this.ref = tMs
    this.raw = rawValue
    const value = this.median.push(tMs, rawValue)
    this.t.push(tMs)
    this.x.push(value)
    this.add(tMs, value, 1)
    const cutoff = tMs - this.windowS * 1000
    while (this.head < this.t.length && (this.t[this.head] as number) < cutoff) {
      this.add(this.t[this.head] as number, this.x[this.head] as number, -1)
      this.head++
    }
    if (++this.pushes % 1024 === 0 || this.head > 4096) this.rebase()
  }

  private add (tMs: number, value: number, sign: number): void {
    const dt = (tMs - this.ref) / 1000
    this.st += sign * dt
    this.sx += sign * value
    this.stt += sign * dt * dt
    this.stx += sign * dt * value
    this.sxx += sign * value * value
  }

  private rebase (): void {
    this.t = this.t.slice(this.head)
    this.x = this.x.slice(this.head)
    this.head = 0
    this.ref = this.t[0] ?? 0
    this.st = this.sx = this.stt = this.stx = this.sxx = 0
    for (let i = 0; i < this.t.length; i++) this.add(this.t[i] as number, this.x[i] as number, 1)
  }

  get size (): number { return this.t.length - this.head }
  /** The latest raw (unfiltered) value. */
  get latest (): number | undefined { return this.size > 0 ? this.raw : undefined }
  /** Seconds between the oldest and newest sample in the window. */
  get spanS (): number { return this.size > 1 ? ((this.t[this.t.length - 1] as number) - (this.t[this.head] as number)) / 1000 : 0 }
  /** The latest running-median value: what a forecast of this window predicts. */
  get level (): number | undefined { return this.size > 0 ? this.x[this.x.length - 1] : undefined }
  get latestTime (): number | undefined { return this.size > 0 ? this.t[this.t.length - 1] : undefined }

  forecast (horizonS: number, kind: ForecasterKind = 'trend'): Forecast | null {
    const n = this.size
    if (n < 5) return null
    // Centre on the newest sample: the forecast is "horizonS after now".
    const t0 = ((this.t[this.t.length - 1] as number) - this.ref) / 1000
    const tm = this.st / n - t0
    const xm = this.sx / n
    const stt = Math.max(0, this.stt / n - (this.st / n) ** 2) * n
    const stx = (this.stx / n - (this.st / n) * xm) * n
    const sxx = Math.max(0, this.sxx / n - xm * xm) * n
    // Until the window is (nearly) full a slope is fitted on less history than the error
    // calibration assumed, and a burst weighs more: persistence instead.
    if (kind === 'level' || stt <= 1e-12 || this.spanS < 0.9 * this.windowS) {
      const sd = Math.sqrt(sxx / Math.max(1, n - 1))
      return { mean: xm, scale: Math.max(sd * Math.sqrt(1 + 1 / n), 1e-9), level: xm, slope: 0, samples: n }
    }
    const slope = stx / stt
    const level = xm - slope * tm
    const sse = Math.max(0, sxx - slope * stx)
    const s2 = sse / Math.max(1, n - 2)
    const dh = horizonS - tm
    // Prediction error of a new observation at the horizon: noise + level + slope uncertainty.
    const scale = Math.sqrt(s2 * (1 + 1 / n + (dh * dh) / stt))
    return { mean: level + slope * horizonS, scale: Math.max(scale, 1e-9), level, slope, samples: n }
  }
}

/** Interpolates a calibrated error quantile at probability p (clamped to the grid's ends). */
export function errorQuantile (errors: readonly number[], p: number): number {
  const g = ERROR_GRID
  if (p <= (g[0] as number)) return errors[0] as number
  if (p >= (g[g.length - 1] as number)) return errors[errors.length - 1] as number
  let i = 1
  while ((g[i] as number) < p) i++
  const p0 = g[i - 1] as number
  const p1 = g[i] as number
  const e0 = errors[i - 1] as number
  const e1 = errors[i] as number
  return e0 + (e1 - e0) * (p - p0) / (p1 - p0)
}

/** Empirical quantiles of normalised errors at ERROR_GRID (Gaussian defaults when too few). */
export function calibrateErrors (errors: number[]): number[] {
  if (errors.length < 200) return GAUSSIAN_ERRORS.slice()
  const s = errors.slice().sort((a, b) => a - b)
  return ERROR_GRID.map(p => {
    const pos = p * (s.length - 1)
    const lo = Math.floor(pos)
    const hi = Math.min(s.length - 1, lo + 1)
    return (s[lo] as number) + ((s[hi] as number) - (s[lo] as number)) * (pos - lo)
  })
}
