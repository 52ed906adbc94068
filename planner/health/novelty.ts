/**
 * Behavioural novelty of one signal: how surprising the latest sample is, given everything
 * this signal did before. Output is a surprise S = -log10(p) >= 0 (p: how often behaviour at
 * least this unusual was seen), so that S = 4 means "about once in 10 000 samples" on every
 * signal, whatever its units or distribution.
 *
 * Two families live here, behind one interface, so they can be compared on the same
 * evaluation (bench/health.ts):
 *
 * - `tail` (the default): a few causal features per sample, each ranked against its own
 *   history with an empirical tail (tail.ts), then the most surprising one, corrected for the
 *   number of features looked at (Bonferroni). Features:
 *     level     the value itself, both directions: values beyond anything seen before;
 *     shift     mean of the last `window` samples minus a slow EWMA of the signal, both
 *               directions: a sustained move that no single sample shows.
 *   An episode is reported at its onset and whenever it escalates: a sample is only as novel
 *   as it is more surprising than the previous `refractory` samples. Without this a level that
 *   stays abnormal would keep re-alarming; with it, what stays abnormal is the job of the
 *   limit-based part of the health model, not of novelty.
 * - `gaussian`: the classical online Gaussian: z-score of the sample against the mean and
 *   standard deviation of a sliding window, turned into a one-sided tail probability. It is
 *   the family of NAB's windowedGaussian detector and of most threshold-on-z alerting.
 *
 * Both are strictly causal: update(x) uses x and the past only.
 */
import { TailEstimator, DEFAULT_TAIL, type TailState, type TailOptions } from './tail.js'
import { ArtDetector, DEFAULT_ART, type ArtParams } from './art.js'

export type NoveltyKind = 'tail' | 'gaussian' | 'ensemble'

export interface TailNoveltyParams {
  kind: 'tail'
  /** Samples in the short mean of the shift feature. */
  window: number
  /** Weight of a new sample in the slow baseline of the shift feature. */
  baselineAlpha: number
  /** Samples during which a non-escalating surprise is not reported again. */
  refractory: number
  tail: TailOptions
}

export interface GaussianNoveltyParams {
  kind: 'gaussian'
  /** Samples in the sliding window that defines "normal". */
  window: number
}

/**
 * The default: the tail detector and adaptive-resonance novelty (art.ts) side by side. Their
 * novelty fractions (in [0, 1], what the model turns a surprise into) are combined by max, the
 * tail's scaled by `tailWeight`; the result is handed back as the surprise that gives that
 * fraction, so the model's novelty map is unchanged. Chosen on NAB (BENCHMARKS.md, "Health
 * model"): each alone scores 64-67, together 72.
 */
export interface EnsembleNoveltyParams {
  kind: 'ensemble'
  tail: TailNoveltyParams
  art: ArtParams
  /** Weight of the tail detector's novelty fraction against ART's confidence. */
  tailWeight: number
}

export type NoveltyParams = TailNoveltyParams | GaussianNoveltyParams | EnsembleNoveltyParams

export const DEFAULT_TAIL_NOVELTY: TailNoveltyParams = { kind: 'tail', window: 24, baselineAlpha: 0.01, refractory: 20, tail: DEFAULT_TAIL }
export const DEFAULT_NOVELTY: EnsembleNoveltyParams = { kind: 'ensemble', tail: DEFAULT_TAIL_NOVELTY, art: DEFAULT_ART, tailWeight: 0.7 }

/** How the model turns a surprise S into a novelty fraction: x / (x + half), x = max(0, S - floor). */
export interface NoveltyScale { floor: number, half: number }
export const DEFAULT_NOVELTY_SCALE: NoveltyScale = { floor: 2, half: 2 }

export function noveltyFraction (surprise: number, scale: NoveltyScale): number {
  const x = Math.max(0, surprise - scale.floor)
  return x / (x + scale.half)
}

/** The surprise whose novelty fraction is f (inverse of noveltyFraction; f < 1). */
export function surpriseFor (f: number, scale: NoveltyScale): number {
  if (!(f > 0)) return 0
  const c = Math.min(f, 1 - 1e-9)
  return scale.floor + scale.half * c / (1 - c)
}
export const DEFAULT_GAUSSIAN_NOVELTY: GaussianNoveltyParams = { kind: 'gaussian', window: 288 }

export interface TailNoveltyState {
  kind: 'tail'
  /** The last `window` samples, oldest first. */
  recent: number[]
  baseline: number | null
  /** Raw surprises of the last `refractory` samples, oldest first. */
  recentSurprise: number[]
  /** level+, level-, shift+, shift- */
  tails: TailState[]
}

export interface GaussianNoveltyState {
  kind: 'gaussian'
  recent: number[]
}

/** ART learns online per gateway (its categories are not persisted); the tail part is. */
export interface EnsembleNoveltyState {
  kind: 'ensemble'
  tail: TailNoveltyState
}

export type NoveltyState = TailNoveltyState | GaussianNoveltyState | EnsembleNoveltyState

export interface NoveltyDetector {
  /** Ingests one sample and returns its surprise (>= 0). */
  update (x: number): number
  state (): NoveltyState
}

const FEATURE_PAIRS = 2

/** A fixed-size ring of the last `size` numbers (no shifting: this runs per sample per signal). */
class Ring {
  private readonly buf: Float64Array
  private next = 0
  length = 0
  constructor (readonly size: number, init: readonly number[] = []) {
    this.buf = new Float64Array(Math.max(1, size))
    for (const v of init.slice(-size)) this.push(v)
  }

  /** Adds v; returns the value that fell out, or undefined while filling. */
  push (v: number): number | undefined {
    let out: number | undefined
    if (this.length === this.size) out = this.buf[this.next]
    else this.length++
    this.buf[this.next] = v
    this.next = (this.next + 1) % this.size
    return out
  }

  max (): number {
    let m = 0
    for (let i = 0; i < this.length; i++) if ((this.buf[i] as number) > m) m = this.buf[i] as number
    return m
  }

  toArray (): number[] {
    const out: number[] = []
    const start = this.length === this.size ? this.next : 0
    for (let i = 0; i < this.length; i++) out.push(this.buf[(start + i) % this.size] as number)
    return out
  }
}

class TailNovelty implements NoveltyDetector {
  private readonly p: TailNoveltyParams
  private readonly recent: Ring
  private baseline: number | null
  private readonly recentSurprise: Ring
  private readonly tails: TailEstimator[]
  private sum = 0

  constructor (p: TailNoveltyParams, s?: TailNoveltyState) {
    this.p = p
    this.recent = new Ring(p.window, s?.recent)
    for (const v of this.recent.toArray()) this.sum += v
    this.baseline = s?.baseline ?? null
    this.recentSurprise = new Ring(p.refractory, s?.recentSurprise)
    this.tails = Array.from({ length: 2 * FEATURE_PAIRS }, (_, i) => new TailEstimator(p.tail, s?.tails[i]))
  }

  private rank (k: number, f: number): number {
    const tail = this.tails[k] as TailEstimator
    const s = tail.surprise(f)
    tail.add(f)
    return s
  }

  update (x: number): number {
    const p = this.p
    const dropped = this.recent.push(x)
    this.sum += x - (dropped ?? 0)
    if (this.baseline === null) this.baseline = x
    let raw = Math.max(this.rank(0, x), this.rank(1, -x))
    if (this.recent.length === p.window) {
      const shift = this.sum / p.window - this.baseline
      raw = Math.max(raw, this.rank(2, shift), this.rank(3, -shift))
    }
    this.baseline += p.baselineAlpha * (x - this.baseline)
    // Looking at two features (each two-sided, but one side at a time) gives two chances to
    // see a rare value: halve the probability (Bonferroni).
    raw = Math.max(0, raw - Math.log10(FEATURE_PAIRS))
    const prevMax = p.refractory > 0 ? this.recentSurprise.max() : 0
    if (p.refractory > 0) this.recentSurprise.push(raw)
    return raw > prevMax ? raw : 0
  }

  state (): TailNoveltyState {
    return { kind: 'tail', recent: this.recent.toArray(), baseline: this.baseline, recentSurprise: this.recentSurprise.toArray(), tails: this.tails.map(t => t.state()) }
  }
}

/** Upper tail of the standard normal, Q(z) = P(Z > z) (Abramowitz-Stegun 7.1.26 via erfc). */
export function normalTail (z: number): number {
  return 0.5 * erfc(z / Math.SQRT2)
}

function erfc (x: number): number {
  // Numerical Recipes' erfcc: fractional error < 1.2e-7 everywhere, fine for tail probabilities.
  const z = Math.abs(x)
  const t = 1 / (1 + 0.5 * z)
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
  return x >= 0 ? r : 2 - r
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile (p: number): number {
  if (p <= 0) return -Infinity
  if (p >= 1) return Infinity
  const a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
  const b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01]
  const c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
  const d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
  const lo = 0.02425
  const poly = (cs: number[], x: number): number => cs.reduce((acc, v) => acc * x + v, 0)
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p))
    return poly(c, q) / (poly(d, q) * q + 1)
  }
  if (p > 1 - lo) {
    const q = Math.sqrt(-2 * Math.log(1 - p))
    return -poly(c, q) / (poly(d, q) * q + 1)
  }
  const q = p - 0.5
  const r = q * q
  return poly(a, r) * q / (poly(b, r) * r + 1)
}

class GaussianNovelty implements NoveltyDetector {
  private readonly recent: Ring
  private sum = 0
  private sumSq = 0

  constructor (p: GaussianNoveltyParams, s?: GaussianNoveltyState) {
    this.recent = new Ring(p.window, s?.recent)
    for (const v of this.recent.toArray()) { this.sum += v; this.sumSq += v * v }
  }

  update (x: number): number {
    const n = this.recent.length
    let out = 0
    if (n >= 10) {
      const m = this.sum / n
      const sd = Math.sqrt(Math.max(0, this.sumSq / n - m * m))
      const z = sd > 1e-12 * (Math.abs(m) + 1) ? Math.abs(x - m) / sd : (Math.abs(x - m) <= 1e-12 * (Math.abs(m) + 1) ? 0 : 40)
      // Two-sided: either direction is news.
      out = Math.min(300, -Math.log10(Math.max(2 * normalTail(z), 1e-300)))
    }
    const dropped = this.recent.push(x)
    this.sum += x - (dropped ?? 0)
    this.sumSq += x * x - (dropped ?? 0) ** 2
    return out
  }

  state (): GaussianNoveltyState {
    return { kind: 'gaussian', recent: this.recent.toArray() }
  }
}

class EnsembleNovelty implements NoveltyDetector {
  private readonly tail: TailNovelty
  private readonly art: ArtDetector

  constructor (private readonly p: EnsembleNoveltyParams, private readonly scale: NoveltyScale, s?: NoveltyState) {
    // A model saved with tail novelty keeps what its tails learned.
    this.tail = new TailNovelty(p.tail, s?.kind === 'ensemble' ? s.tail : s?.kind === 'tail' ? s : undefined)
    this.art = new ArtDetector(p.art)
  }

  update (x: number): number {
    const fromTail = this.p.tailWeight * noveltyFraction(this.tail.update(x), this.scale)
    const fromArt = this.art.update(x)
    return surpriseFor(Math.max(fromTail, fromArt), this.scale)
  }

  state (): EnsembleNoveltyState {
    return { kind: 'ensemble', tail: this.tail.state() }
  }

  /** ART categories held (memory and cost grow with them, up to the cap). */
  get categories (): number { return this.art.categories }
}

export function createNovelty (params: NoveltyParams, state?: NoveltyState, scale: NoveltyScale = DEFAULT_NOVELTY_SCALE): NoveltyDetector {
  if (params.kind === 'tail') return new TailNovelty(params, state?.kind === 'tail' ? state : undefined)
  if (params.kind === 'ensemble') return new EnsembleNovelty(params, scale, state)
  return new GaussianNovelty(params, state?.kind === 'gaussian' ? state : undefined)
}
