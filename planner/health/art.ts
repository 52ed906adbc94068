/**
 * Adaptive-resonance novelty: the family at the top of NAB's scoreboard (ARTime, M. Hampton,
 * 2021), rebuilt here from its published description in plain TypeScript, and made strictly
 * causal (ARTime normalises by each file's global min and max, which NAB allows but a live
 * planner cannot know).
 *
 * How a value becomes an anomaly score:
 *
 * 1. Downsample. The learning period (`probation` samples) is cut into about
 *    `windowsPerProbation` feature windows of `window` steps, so one step is `stride` samples.
 *    A step keeps the sample furthest from a fast moving average (a spike survives the
 *    downsampling), or the mean when no sample strays by 10 %.
 * 2. Normalise and quantise. Values are scaled into [0, 1] by a range learned causally (the
 *    learning period's range, widened by `rangeMargin` on each side and re-widened whenever a
 *    value falls outside it), quantised to `levels` levels, and snapped to the running median
 *    when within `chomp` of it (small wiggles are not news).
 * 3. Features. The last `window` steps, min-max scaled, give a Haar wavelet transform (shape)
 *    and the raw levels (place): 2 x `window` numbers in [0, 1].
 * 4. Fuzzy ART (dual-vigilance, fast commit): each feature vector either resonates with a
 *    category (similarity >= the upper vigilance: the category learns it), is close enough to
 *    join the cluster as a new category (>= the lower vigilance), or starts a new cluster. A
 *    new cluster is a candidate anomaly.
 * 5. Vigilance follows the data: the learning period sets both vigilances (a replay of the
 *    learning period's windows, least typical first); afterwards the lower one tracks the
 *    lowest similarity seen over half a learning period, and the upper one the mean similarity.
 *    After an anomaly, or after a new cluster, further new clusters only count when markedly
 *    less similar than the last anomaly (one event is reported once).
 * 6. The score of a new cluster: how far below both vigilances its similarity fell, plus how far
 *    its level is from the nearest category's level.
 *
 * The output is 0 on every sample that is not an anomaly, and in (0, 1] on the few that are.
 * Cost: O(categories x window) per step; categories grow slowly (fast commit widens them).
 */

export interface ArtParams {
  /** Samples of learning before any score (NAB's probationary period: 15 % of a file, at most 750). */
  probation: number
  /** Steps in a feature window. */
  window: number
  /** Feature windows per learning period (sets the downsampling stride). */
  windowsPerProbation: number
  /** Quantisation levels of the normalised value. */
  levels: number
  /** Distance to the running median below which a level is snapped to it. */
  chomp: number
  /** Vigilance of the replay that sets the first vigilances. */
  initialRho: number
  /** Extra room on each side of the learned range, as a fraction of its span. */
  rangeMargin: number
  /** A signal that has never been negative keeps 0 as the floor of its range (counts, utilisations, latencies). */
  nonNegative: boolean
  /**
   * Most categories kept: past it the oldest is forgotten (a gateway watched for months must
   * not grow without bound; behaviour from long ago is the least informative).
   */
  maxCategories: number
  /** Widen the range when a value falls outside it (else clamp to it). */
  expand: boolean
  /** A fixed range instead of a learned one (NAB hands detectors each file's min and max; only to reproduce such detectors). */
  range?: [number, number]
}

export const DEFAULT_ART: ArtParams = {
  probation: 750,
  window: 8,
  windowsPerProbation: 13,
  levels: 80,
  chomp: 0.075,
  initialRho: 0.8,
  rangeMargin: 1,
  nonNegative: false,
  expand: false,
  maxCategories: 256
}

/**
 * Dual-vigilance fuzzy ART with complement coding and fast commit. A category is a box in
 * [0, 1]^dim, stored as its lower corner and the complement of its upper corner (2 x dim
 * float32s); learning an input grows the box to hold it.
 */
class FuzzyArt {
  readonly weights: Float32Array[] = []
  readonly labels: number[] = []
  /** Each category's size (the sum of its 2 x dim weights): it changes only when the category learns. */
  private readonly norms: number[] = []
  private clusters = 0
  rhoLow = 0
  rhoHigh = 0
  /** Similarity and level similarity of the best category for the last input. */
  best = 0
  bestLevel = 0
  private m: Float64Array = new Float64Array(16)

  constructor (readonly dim: number, private readonly maxCategories = Infinity) {}

  /** Returns the cluster label of x, or -1 when x starts a new cluster (or when not learning). */
  train (x: Float64Array, learn: boolean): number {
    const d = this.dim
    const n2 = 2 * d
    if (this.weights.length === 0) {
      // The first category is the whole box: every later input fits it, weakly.
      this.weights.push(new Float32Array(n2).fill(1))
      this.norms.push(n2)
      this.labels.push(1)
      this.clusters = 1
      this.best = 0
      this.bestLevel = 0
      return 1
    }
    const k = this.weights.length
    if (this.m.length < k) this.m = new Float64Array(2 * k)
    const last = d - 1
    const xl = x[last] as number
    let top = -1
    let maxM = 0
    let topLevel = 0
    for (let j = 0; j < k; j++) {
      const w = this.weights[j] as Float32Array
      let num = 0
      for (let i = 0; i < d; i++) {
        const a = x[i] as number
        const wa = w[i] as number
        const wb = w[d + i] as number
        const b = 1 - a
        num += (a < wa ? a : wa) + (b < wb ? b : wb)
      }
      const den = this.norms[j] as number
      const fs = num / (den === 0 ? 0.001 : den)
      // Level similarity: the current level against the category's (1 - their distance).
      const wl = w[last] as number
      const wlc = w[n2 - 1] as number
      const le = ((xl < wl ? xl : wl) + (1 - xl < wlc ? 1 - xl : wlc)) / (wl + wlc)
      const mj = fs * fs * fs * le * le
      this.m[j] = mj
      if (top < 0 || mj > maxM) { top = j; maxM = mj; topLevel = le }
    }
    this.best = maxM
    this.bestLevel = maxM > 0 ? topLevel : 0
    if (!learn) return -1
    // Every category at or above the upper vigilance resonates and learns; the best one names x.
    let resonated = false
    for (let j = 0; j < k; j++) {
      if ((this.m[j] as number) < this.rhoHigh) continue
      const w = this.weights[j] as Float32Array
      for (let i = 0; i < d; i++) {
        const a = x[i] as number
        if (a < (w[i] as number)) w[i] = a
        if (1 - a < (w[d + i] as number)) w[d + i] = 1 - a
      }
      this.norms[j] = normOf(w, d)
      resonated = true
    }
    if (resonated) return this.labels[top] as number
    if (maxM >= this.rhoLow) {
      // Close to a cluster but not to any of its categories: a new category of that cluster.
      const label = this.labels[top] as number
      this.commit(x, label)
      return label
    }
    this.clusters++
    this.commit(x, this.clusters)
    return -1
  }

  private commit (x: Float64Array, label: number): void {
    const d = this.dim
    const w = new Float32Array(2 * d)
    for (let i = 0; i < d; i++) { w[i] = x[i] as number; w[d + i] = 1 - (x[i] as number) }
    this.weights.push(w)
    this.norms.push(normOf(w, d))
    this.labels.push(label)
    if (this.weights.length > this.maxCategories) {
      // Index 0 is the whole-box category every input fits; the oldest learned one goes.
      this.weights.splice(1, 1)
      this.norms.splice(1, 1)
      this.labels.splice(1, 1)
    }
  }
}

/** A category's size, summed in the order the similarity loop used to (same float result). */
function normOf (w: Float32Array, d: number): number {
  let den = 0
  for (let i = 0; i < d; i++) den += (w[i] as number) + (w[d + i] as number)
  return den
}

/** In-place orthonormal Haar transform of a power-of-two length vector (coarsest first). */
function haar (v: Float64Array, tmp: Float64Array): void {
  let n = v.length
  while (n > 1) {
    const h = n >> 1
    for (let i = 0; i < h; i++) {
      const a = v[2 * i] as number
      const b = v[2 * i + 1] as number
      tmp[i] = (a + b) * Math.SQRT1_2
      tmp[h + i] = (a - b) * Math.SQRT1_2
    }
    for (let i = 0; i < n; i++) v[i] = tmp[i] as number
    n = h
  }
}

function minMaxScale (v: Float64Array): void {
  let lo = Infinity
  let hi = -Infinity
  for (const x of v) { if (x < lo) lo = x; if (x > hi) hi = x }
  const span = hi - lo
  for (let i = 0; i < v.length; i++) v[i] = span > 0 ? ((v[i] as number) - lo) / span : (v[i] as number) - lo
}

function similarity (a: Float64Array, b: Float64Array): number {
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) { dot += (a[i] as number) * (b[i] as number); na += (a[i] as number) ** 2; nb += (b[i] as number) ** 2 }
  na = Math.sqrt(na)
  nb = Math.sqrt(nb)
  if (na === 0) return 1 - nb
  if (nb === 0) return 1 - na
  return dot / (na * nb)
}

export class ArtDetector {
  readonly p: ArtParams
  readonly stride: number
  /** Feature windows in the learning period. */
  private readonly learnSteps: number
  private readonly maskSteps: number
  private readonly art: FuzzyArt
  private i = 0
  private step = 0
  private readonly raw: number[] = []
  private movingAverage = 0
  private lo = Infinity
  private hi = -Infinity
  private rangeLo = 0
  private rangeHi = 1
  private readonly levelCounts: Int32Array
  private median = 0
  private levelTotal = 0
  private below = 0
  private above = 0
  private readonly levelsWindow: Float64Array
  private readonly pending: number[] = []
  private readonly pendingRaw: number[] = []
  // vigilance tracking
  private lastAnomalyStep = 0
  private lastAnomalySim = 0
  private lastRhoUpdate = 0
  private maskAfterCluster = false
  private sinceNewCluster = 0
  private readonly anomalySims: number[] = []
  private readonly simWindow: number[]
  private readonly simDiffWindow: number[]
  private simSum = 0
  private simCount = 0

  constructor (params: Partial<ArtParams> = {}) {
    this.p = { ...DEFAULT_ART, ...params }
    const p = this.p
    const probation = Math.max(2 * p.window, p.probation - (p.probation % 2))
    this.stride = Math.max(1, Math.round(Math.floor(probation / (p.window * p.windowsPerProbation))))
    this.learnSteps = Math.floor(probation / this.stride)
    this.maskSteps = Math.floor(p.window * 1.5)
    this.art = new FuzzyArt(2 * p.window, p.maxCategories)
    this.levelCounts = new Int32Array(p.levels + 1)
    this.levelsWindow = new Float64Array(p.window)
    this.simWindow = new Array<number>(Math.floor(this.learnSteps / 2) + 1).fill(1)
    this.simDiffWindow = new Array<number>(this.learnSteps + 1).fill(0)
  }

  /** Categories learned so far (memory: 4 x window numbers each). */
  get categories (): number { return this.art.weights.length }

  /** Takes one sample; returns its anomaly score (0 unless this sample completes an anomalous step). */
  update (x: number): number {
    this.i++
    this.raw.push(x)
    if (this.raw.length > this.stride) this.raw.shift()
    if (x < this.lo) this.lo = x
    if (x > this.hi) this.hi = x
    if (this.i <= this.p.probation) this.pendingRaw.push(x)
    if (this.i % this.stride !== 0) return 0
    return this.downsampled()
  }

  private downsampled (): number {
    let sum = 0
    let max = -Infinity
    let min = Infinity
    for (const v of this.raw) { sum += v; if (v > max) max = v; if (v < min) min = v }
    const mean = sum / this.raw.length
    if (this.step === 0) this.movingAverage = mean
    this.movingAverage = (this.movingAverage + mean) / 2
    let ds = Math.abs(max - this.movingAverage) < Math.abs(min - this.movingAverage) ? min : max
    if (Math.abs(ds - mean) < 0.1 * Math.abs(mean)) ds = mean
    this.step++
    if (this.step <= this.learnSteps) {
      // Until the learning period ends the range is unknown: keep the steps, replay them then.
      this.pending.push(ds)
      if (this.step === this.learnSteps) this.endLearning()
      return 0
    }
    return this.detect(this.features(ds), this.step)
  }

  private setRange (lo: number, hi: number): void {
    const span = hi - lo
    const margin = span > 0 ? this.p.rangeMargin * span : Math.max(1e-9, Math.abs(lo) * 0.1)
    this.rangeLo = this.p.nonNegative && lo >= 0 ? Math.max(0, lo - margin) : lo - margin
    this.rangeHi = hi + margin
  }

  private features (ds: number): Float64Array {
    const p = this.p
    if (this.p.range === undefined && this.p.expand && (ds < this.rangeLo || ds > this.rangeHi)) this.setRange(Math.min(this.lo, ds), Math.max(this.hi, ds))
    let v = (ds - this.rangeLo) / (this.rangeHi - this.rangeLo)
    if (!(v >= 0)) v = 0
    if (v > 1) v = 1
    const level = Math.round(v * p.levels)
    v = level / p.levels
    this.trackMedian(level)
    const med = this.median / p.levels
    if (Math.abs(v - med) < p.chomp) v = med
    this.levelsWindow.copyWithin(0, 1)
    this.levelsWindow[p.window - 1] = v
    const f = new Float64Array(2 * p.window)
    if (this.step >= p.window) {
      const shape = Float64Array.from(this.levelsWindow)
      minMaxScale(shape)
      haar(shape, new Float64Array(p.window))
      minMaxScale(shape)
      f.set(shape, 0)
      f.set(this.levelsWindow, p.window)
    }
    return f
  }

  /** An approximate running median over the quantised levels (a histogram walk). */
  private trackMedian (level: number): void {
    this.levelCounts[level] = (this.levelCounts[level] as number) + 1
    const n = ++this.levelTotal
    if (n === 1) { this.median = level; return }
    if (level < this.median) this.below++
    else if (level > this.median) this.above++
    const half = Math.floor(n / 2)
    if (half < this.above) {
      this.below += this.levelCounts[this.median] as number
      do this.median++; while ((this.levelCounts[this.median] as number) === 0)
      this.above -= this.levelCounts[this.median] as number
    } else if (half < this.below) {
      this.above += this.levelCounts[this.median] as number
      do this.median--; while ((this.levelCounts[this.median] as number) === 0)
      this.below -= this.levelCounts[this.median] as number
    }
  }

  /** End of the learning period: the range is known; replay its steps to set the vigilances. */
  private endLearning (): void {
    const p = this.p
    let lo = Infinity
    let hi = -Infinity
    for (const v of this.pendingRaw) { if (v < lo) lo = v; if (v > hi) hi = v }
    if (p.range !== undefined) { this.rangeLo = p.range[0]; this.rangeHi = p.range[1] } else this.setRange(lo, hi)
    const steps = this.pending.slice()
    this.pending.length = 0
    this.pendingRaw.length = 0
    this.step = 0
    const feats: Float64Array[] = []
    for (const ds of steps) { this.step++; feats.push(this.features(ds)) }
    // Initial vigilance: replay the complete windows least typical first at initialRho, and
    // take the mean similarity of the second half.
    const usable = feats.slice(p.window - 1)
    const typicality = usable.map((a, i) => usable.reduce((s, b, j) => s + (i === j ? 1 : similarity(a, b)), 0))
    const order = usable.map((_, i) => i).sort((a, b) => (typicality[a] as number) - (typicality[b] as number))
    const probe = new FuzzyArt(2 * p.window)
    probe.rhoLow = probe.rhoHigh = p.initialRho
    const sims: number[] = []
    for (const k of order) { probe.train(usable[k] as Float64Array, true); sims.push(probe.best) }
    // Julia's A[trend_window ÷ 2:end], 1-based, over the replayed windows plus the seed entry.
    const from = Math.max(0, Math.floor(this.learnSteps / 2) - 1)
    const tail = sims.slice(Math.min(from, sims.length - 1))
    const rho = tail.reduce((a, b) => a + b, 0) / tail.length
    this.art.rhoLow = this.art.rhoHigh = rho
    feats.forEach((f, k) => this.detect(f, k + 1))
  }

  private detect (f: Float64Array, i: number): number {
    const p = this.p
    const art = this.art
    const mask = this.maskSteps
    const updateAfterAnomaly = i - this.lastAnomalyStep === mask
    const updateForTrend = i - this.lastRhoUpdate >= Math.floor(this.learnSteps / 2)
    const maskAfterAnomaly = i - this.lastAnomalyStep <= mask
    if (i > this.learnSteps + mask && this.maskAfterCluster && this.sinceNewCluster >= mask) this.maskAfterCluster = false
    const label = art.train(f, i >= p.window)
    const cluster = i < p.window ? -1 : label
    this.sinceNewCluster = cluster === -1 ? 0 : this.sinceNewCluster + 1
    const sim = art.best
    this.simSum += sim
    this.simCount++
    this.simWindow.shift(); this.simWindow.push(sim)
    this.simDiffWindow.shift(); this.simDiffWindow.push(art.rhoHigh - sim)
    const nAnom = this.anomalySims.length
    if (i - this.lastAnomalyStep < mask && nAnom > 0 && sim < (this.anomalySims[nAnom - 1] as number)) this.anomalySims[nAnom - 1] = sim
    const masking = this.maskAfterCluster || maskAfterAnomaly
    const belowLast = sim < this.lastAnomalySim * (maskAfterAnomaly ? 0.9 : 0.7)
    let anomaly = 0
    if (i > this.learnSteps && cluster === -1 && (!masking || belowLast)) {
      anomaly = this.confidence(sim, art.bestLevel)
      this.anomalySims.push(sim)
      this.lastAnomalySim = sim
      this.lastAnomalyStep = i
    }
    this.maskAfterCluster = cluster === -1 || this.maskAfterCluster
    if (i > this.learnSteps && (updateAfterAnomaly || updateForTrend)) this.adaptVigilance(i)
    return anomaly
  }

  private adaptVigilance (i: number): void {
    const art = this.art
    const minSim = Math.min(...this.simWindow)
    const high = Math.min(0.97, this.simSum / this.simCount)
    let low = art.rhoLow
    if (low <= minSim) {
      low += (minSim - low) * 0.19
    } else {
      let decrease = 0
      if (i > this.learnSteps * 2) {
        let s = 0
        let n = 0
        for (const d of this.simDiffWindow) if (d > 0.05) { s += Math.min(0.37, d); n++ }
        if (n > 0) decrease = s / n
      }
      low -= Math.max(0.01, decrease) / 2
      if (this.anomalySims.length > 0) low = Math.max(this.anomalySims.reduce((a, b) => a + b, 0) / this.anomalySims.length, low)
    }
    art.rhoLow = Math.min(high, low)
    art.rhoHigh = high
    this.lastRhoUpdate = i
    this.maskAfterCluster = true
  }

  private confidence (sim: number, levelSim: number): number {
    const s = Math.min(0.999, sim)
    const art = this.art
    const high = ((1 - s) - (1 - art.rhoHigh)) / (1 - s)
    const low = ((1 - s) - (1 - art.rhoLow)) / (1 - s)
    return Math.max(1e-6, Math.min(1, high * 0.35 + low * 0.65 + (1 - levelSim) * 1.5))
  }
}
