/**
 * The gateway health model: per gateway, a health score in [0, 1] at a horizon, with an
 * interval, a confidence and a trend.
 *
 * How a score is made (all per signal, then the worst signal wins):
 *
 * 1. Healthy band and failure level. Training learns each signal's normal range (median and
 *    the 0.5/99.5% quantiles, fleet-wide and per gateway); the failure level comes from the
 *    signal spec (types.ts). A value inside the band has health 1, at or past the failure level
 *    0, linearly in between.
 * 2. Forecast. A local linear trend, fitted to the signal's one-minute running median over the
 *    last `windowS` seconds (a burst shorter than half a minute is not a trend), predicts the
 *    signal at the horizon; its error distribution was calibrated on the training data (forecast.ts), so the
 *    forecast comes with quantiles. The score is the expected health over that distribution;
 *    the interval maps the forecast interval through the health map (monotone, so coverage
 *    carries over).
 * 3. Novelty. Behaviour unlike anything in the signal's history (novelty.ts) is risk the
 *    forecast cannot see: it lowers the score and widens the interval downwards by a factor
 *    1 - noveltyWeight * x / (x + noveltyHalf), x = max(0, S - noveltyFloor), where S is the
 *    surprise in -log10 p (S = 4: once in 10 000 samples). Novelty alone can at most scale
 *    health by (1 - noveltyWeight): it draws attention, it does not by itself move data.
 *
 * Confidence says how much of the forecast distribution agrees with the score (see assess),
 * scaled down by novelty and while the signal windows are still filling.
 *
 * The model is trained offline (`train`), saved as a versioned JSON file, and used online:
 * `score(gateway, recentSamples)` ingests whatever samples are newer than the last one it saw
 * for that gateway and assesses. Passing the last few minutes of telemetry every tick is both
 * correct and cheap (old samples are skipped), and lets a freshly loaded model (hot swap) warm
 * up immediately.
 */
import fs from 'node:fs'
import { z } from 'zod'
import { FerryError } from '../../lib/errors.js'
import type { FerryErrorCode } from '../../lib/error-codes.js'
import { SignalWindow, RunningMedian, calibrateErrors, errorQuantile, GAUSSIAN_ERRORS, ERROR_GRID, type ForecasterKind } from './forecast.js'
import { RollingCalibration, COVERAGE_LEVELS, type CoverageFigure } from './conformal.js'
import { createNovelty, noveltyFraction, DEFAULT_NOVELTY, type NoveltyDetector, type NoveltyParams, type NoveltyState, type TailNoveltyState } from './novelty.js'
import type { TailState } from './tail.js'
import {
  DEFAULT_SIGNAL_SPECS, type HealthAssessment, type SampleLike, type SignalAssessment, type SignalSpec,
  type TelemetryRecord, type TrendDirection
} from './types.js'

export const MODEL_FORMAT = 'ferry-health'
export const MODEL_VERSION = 1

export interface HealthModelParams {
  /** How far ahead the score looks, seconds. */
  horizonS: number
  /** History used by the trend forecast, seconds. */
  windowS: number
  /** Span of the running median that removes short bursts before the trend fit, seconds. */
  medianS: number
  /** Probability mass of the reported interval. */
  level: number
  forecaster: ForecasterKind
  novelty: NoveltyParams
  /** Largest fraction of health novelty alone can take away. */
  noveltyWeight: number
  /** Surprise (-log10 p) below which behaviour is ordinary (novelty 0). */
  noveltyFloor: number
  /** Surprise above the floor at which novelty counts half. */
  noveltyHalf: number
  /** Typical spacing of samples, seconds (learned). */
  sampleIntervalS: number
  /**
   * Matured forecasts per signal and gateway whose errors set the intervals (rolling conformal
   * calibration, conformal.ts); 0 keeps the training-time errors (coverage is measured either way).
   */
  calibrationWindow?: number
  signals: SignalSpec[]
}

export const DEFAULT_PARAMS: Omit<HealthModelParams, 'sampleIntervalS'> = {
  horizonS: 300,
  windowS: 600,
  medianS: 61,
  level: 0.9,
  forecaster: 'trend',
  novelty: DEFAULT_NOVELTY,
  noveltyWeight: 0.5,
  noveltyFloor: 2,
  noveltyHalf: 2,
  calibrationWindow: 500,
  signals: DEFAULT_SIGNAL_SPECS.map(s => ({ ...s }))
}

/** A signal's learned normal range. */
export interface SignalProfile {
  median: number
  lo: number
  hi: number
  count: number
}

export interface TrainOptions extends Partial<Omit<HealthModelParams, 'signals' | 'sampleIntervalS'>> {
  signals?: SignalSpec[]
  /** Override failure levels by signal name. */
  limits?: Record<string, number>
  /** Upper bound on forecasts replayed per signal to calibrate errors (cost control). */
  calibrationForecasts?: number
}

export interface HealthModelFile {
  format: typeof MODEL_FORMAT
  version: number
  createdAt: string
  params: HealthModelParams
  signals: Record<string, { profile: SignalProfile, errors: number[], scaleFloor: number }>
  fleetNovelty: Record<string, NoveltyState>
  gateways: Record<string, { profiles: Record<string, SignalProfile>, novelty: Record<string, NoveltyState> }>
  training: { samples: number, gateways: number, from: number | null, to: number | null }
}

/** Levels at which the forecast distribution is sampled to take the expected health. */
const EXPECTATION_LEVELS = Array.from({ length: 20 }, (_, j) => (j + 0.5) / 20)
const MIN_GATEWAY_PROFILE = 100

function quantileSorted (s: number[], p: number): number {
  if (s.length === 0) return NaN
  const pos = p * (s.length - 1)
  const lo = Math.floor(pos)
  const hi = Math.min(s.length - 1, lo + 1)
  return (s[lo] as number) + ((s[hi] as number) - (s[lo] as number)) * (pos - lo)
}

function profileOf (values: number[]): SignalProfile {
  const s = values.slice().sort((a, b) => a - b)
  return { median: quantileSorted(s, 0.5), lo: quantileSorted(s, 0.005), hi: quantileSorted(s, 0.995), count: s.length }
}

function valueOf (sample: SampleLike, name: string): number | undefined {
  const v = sample[name]
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined
}

/** Health of one value: 1 inside the healthy band, 0 at the failure level, linear between. */
export function signalHealth (spec: SignalSpec, profile: SignalProfile, x: number): number {
  const limit = spec.limit
  if (limit === undefined) return 1
  if (spec.direction === 'both') {
    const d = Math.abs(x - profile.median)
    const band = Math.max(profile.hi - profile.median, profile.median - profile.lo)
    const fail = Math.abs(limit - profile.median)
    if (d <= band) return 1
    if (d >= fail) return 0
    return (fail - d) / (fail - band)
  }
  // A band learned on data that included degradations could reach the failure level; keep
  // at least a quarter of the way from the median to the limit as the descent.
  const hi = Math.min(profile.hi, profile.median + 0.75 * (limit - profile.median))
  if (x <= hi) return 1
  if (x >= limit) return 0
  return (limit - x) / (limit - hi)
}

function tailMerge (states: TailState[], kMax: number): TailState {
  const n = states.reduce((a, s) => a + s.n, 0)
  const top = states.flatMap(s => s.top).sort((a, b) => b - a).slice(0, kMax)
  return { n, top }
}

/** Fleet novelty: every gateway's tails pooled, short-term buffers empty. */
function mergeNovelty (states: NoveltyState[], params: NoveltyParams): NoveltyState {
  if (params.kind === 'gaussian') return { kind: 'gaussian', recent: [] }
  const tails = states.map(s => s.kind === 'ensemble' ? s.tail : s).filter((s): s is TailNoveltyState => s.kind === 'tail')
  const nFeatures = tails[0]?.tails.length ?? 0
  const kMax = params.kind === 'ensemble' ? params.tail.tail.kMax : params.tail.kMax
  const tail: TailNoveltyState = {
    kind: 'tail',
    recent: [],
    baseline: null,
    recentSurprise: [],
    tails: Array.from({ length: nFeatures }, (_, k) => tailMerge(tails.map(s => s.tails[k] as TailState), kMax))
  }
  return params.kind === 'ensemble' ? { kind: 'ensemble', tail } : tail
}

/** What is persisted of a novelty state: what it learned, not its last few samples. */
function persistable (s: NoveltyState): NoveltyState {
  const round = (v: number): number => Number(v.toPrecision(7))
  if (s.kind === 'gaussian') return { kind: 'gaussian', recent: [] }
  if (s.kind === 'ensemble') return { kind: 'ensemble', tail: persistable(s.tail) as TailNoveltyState }
  return { kind: 'tail', recent: [], baseline: null, recentSurprise: [], tails: s.tails.map(t => ({ n: t.n, top: t.top.map(round) })) }
}

interface SignalState {
  window: SignalWindow
  /** This gateway's own recent forecast errors: the intervals, and their measured coverage. */
  calibration: RollingCalibration
  novelty: NoveltyDetector
  /** Largest surprise since the last assessment. */
  pendingSurprise: number
  lastSurprise: number
}

interface GatewayState {
  lastTs: number
  samples: number
  signals: Map<string, SignalState>
}

function fail (code: FerryErrorCode, message: string, details?: Record<string, unknown>): never {
  throw new FerryError(code, message, 400, details)
}

export class HealthModel {
  readonly params: HealthModelParams
  private readonly file: HealthModelFile
  private readonly states = new Map<string, GatewayState>()
  /** Calibrated error quantiles at the levels assess() needs, per signal (computed once). */
  private readonly errorCache = new Map<string, { expectation: number[], low: number, mid: number, high: number, floor: number }>()

  private constructor (file: HealthModelFile) {
    this.file = file
    this.params = file.params
    const alpha = (1 - this.params.level) / 2
    for (const spec of this.params.signals) {
      const errors = file.signals[spec.name]?.errors ?? GAUSSIAN_ERRORS
      this.errorCache.set(spec.name, {
        expectation: EXPECTATION_LEVELS.map(l => errorQuantile(errors, l)),
        low: errorQuantile(errors, alpha),
        mid: errorQuantile(errors, 0.5),
        high: errorQuantile(errors, 1 - alpha),
        floor: file.signals[spec.name]?.scaleFloor ?? 0
      })
    }
  }

  /** Learns normal behaviour, forecast error calibration and novelty tails from history. */
  static train (records: readonly (SampleLike & { gateway: string })[] | readonly TelemetryRecord[], opts: TrainOptions = {}): HealthModel {
    const rows = records as readonly (SampleLike & { gateway: string })[]
    const signals = (opts.signals ?? DEFAULT_PARAMS.signals).map(s => ({ ...s, ...(opts.limits?.[s.name] !== undefined ? { limit: opts.limits[s.name] } : {}) }))
    if (rows.length === 0) fail('FERRY_HEALTH_NO_DATA', 'no telemetry to train on')
    const byGateway = new Map<string, (SampleLike & { gateway: string })[]>()
    for (const r of rows) {
      if (!Number.isFinite(r.timestamp)) fail('FERRY_HEALTH_BAD_TELEMETRY', `a sample of ${r.gateway} has no valid timestamp`)
      let list = byGateway.get(r.gateway)
      if (list === undefined) byGateway.set(r.gateway, list = [])
      list.push(r)
    }
    const gaps: number[] = []
    for (const list of byGateway.values()) {
      list.sort((a, b) => a.timestamp - b.timestamp)
      for (let i = 1; i < list.length; i++) gaps.push(((list[i] as SampleLike).timestamp - (list[i - 1] as SampleLike).timestamp) / 1000)
    }
    gaps.sort((a, b) => a - b)
    const sampleIntervalS = Math.max(1e-3, quantileSorted(gaps.filter(g => g > 0), 0.5) || 1)
    const params: HealthModelParams = {
      horizonS: opts.horizonS ?? DEFAULT_PARAMS.horizonS,
      windowS: opts.windowS ?? DEFAULT_PARAMS.windowS,
      medianS: opts.medianS ?? DEFAULT_PARAMS.medianS,
      level: opts.level ?? DEFAULT_PARAMS.level,
      forecaster: opts.forecaster ?? DEFAULT_PARAMS.forecaster,
      novelty: opts.novelty ?? DEFAULT_PARAMS.novelty,
      noveltyWeight: opts.noveltyWeight ?? DEFAULT_PARAMS.noveltyWeight,
      noveltyFloor: opts.noveltyFloor ?? DEFAULT_PARAMS.noveltyFloor,
      noveltyHalf: opts.noveltyHalf ?? DEFAULT_PARAMS.noveltyHalf,
      calibrationWindow: opts.calibrationWindow ?? DEFAULT_PARAMS.calibrationWindow,
      sampleIntervalS,
      signals
    }
    if (!(params.horizonS > 0) || !(params.windowS > 0)) fail('FERRY_HEALTH_BAD_OPTIONS', 'horizonS and windowS must be positive')
    if (!(params.level > 0 && params.level < 1)) fail('FERRY_HEALTH_BAD_OPTIONS', 'level must be in (0, 1)')

    const file: HealthModelFile = {
      format: MODEL_FORMAT,
      version: MODEL_VERSION,
      createdAt: new Date().toISOString(),
      params,
      signals: {},
      fleetNovelty: {},
      gateways: {},
      training: { samples: rows.length, gateways: byGateway.size, from: null, to: null }
    }
    let from = Infinity
    let to = -Infinity
    for (const list of byGateway.values()) {
      from = Math.min(from, (list[0] as SampleLike).timestamp)
      to = Math.max(to, (list[list.length - 1] as SampleLike).timestamp)
    }
    file.training.from = from
    file.training.to = to

    const budget = opts.calibrationForecasts ?? 40_000
    let anyValue = false
    for (const spec of signals) {
      const pooled: number[] = []
      const noveltyStates: NoveltyState[] = []
      const series: Array<{ times: number[], values: number[] }> = []
      const total = rows.length
      const stride = Math.max(1, Math.floor(total / budget))
      for (const [gw, list] of byGateway) {
        const values: number[] = []
        const times: number[] = []
        for (const r of list) {
          const v = valueOf(r, spec.name)
          if (v !== undefined) { values.push(v); times.push(r.timestamp) }
        }
        if (values.length === 0) continue
        pooled.push(...values)
        const g = file.gateways[gw] ?? (file.gateways[gw] = { profiles: {}, novelty: {} })
        if (values.length >= MIN_GATEWAY_PROFILE) g.profiles[spec.name] = profileOf(values)
        const novelty = createNovelty(params.novelty, undefined, { floor: params.noveltyFloor, half: params.noveltyHalf })
        for (const v of values) novelty.update(v)
        const state = novelty.state()
        g.novelty[spec.name] = persistable(state)
        noveltyStates.push(state)
        series.push({ times, values })
      }
      if (pooled.length === 0) continue
      anyValue = true
      const scaleFloor = spec.limit === undefined ? 0 : horizonChange(series, params)
      const errors = spec.limit === undefined ? [] : series.flatMap(x => replayErrors(x.times, x.values, params, stride, scaleFloor))
      file.signals[spec.name] = { profile: profileOf(pooled), errors: calibrateErrors(errors), scaleFloor }
      file.fleetNovelty[spec.name] = persistable(mergeNovelty(noveltyStates, params.novelty))
    }
    if (!anyValue) fail('FERRY_HEALTH_NO_DATA', 'no signal values in the telemetry', { signals: signals.map(s => s.name) })
    return new HealthModel(file)
  }

  /**
   * An untrained model: nothing learned yet (Gaussian forecast errors, no healthy band, empty
   * novelty history), so everything is learned online. The NAB benchmark uses it: each NAB
   * series is a gateway seen for the first time.
   */
  static untrained (opts: TrainOptions & { sampleIntervalS?: number } = {}): HealthModel {
    const params: HealthModelParams = {
      horizonS: opts.horizonS ?? DEFAULT_PARAMS.horizonS,
      windowS: opts.windowS ?? DEFAULT_PARAMS.windowS,
      medianS: opts.medianS ?? DEFAULT_PARAMS.medianS,
      level: opts.level ?? DEFAULT_PARAMS.level,
      forecaster: opts.forecaster ?? DEFAULT_PARAMS.forecaster,
      novelty: opts.novelty ?? DEFAULT_PARAMS.novelty,
      noveltyWeight: opts.noveltyWeight ?? DEFAULT_PARAMS.noveltyWeight,
      noveltyFloor: opts.noveltyFloor ?? DEFAULT_PARAMS.noveltyFloor,
      noveltyHalf: opts.noveltyHalf ?? DEFAULT_PARAMS.noveltyHalf,
      calibrationWindow: opts.calibrationWindow ?? DEFAULT_PARAMS.calibrationWindow,
      sampleIntervalS: opts.sampleIntervalS ?? 1,
      signals: (opts.signals ?? DEFAULT_PARAMS.signals).map(s => ({ ...s, ...(opts.limits?.[s.name] !== undefined ? { limit: opts.limits[s.name] } : {}) }))
    }
    return new HealthModel({
      format: MODEL_FORMAT,
      version: MODEL_VERSION,
      createdAt: new Date().toISOString(),
      params,
      signals: {},
      fleetNovelty: {},
      gateways: {},
      training: { samples: 0, gateways: 0, from: null, to: null }
    })
  }

  static fromJSON (data: unknown, source = 'model'): HealthModel {
    if (typeof data !== 'object' || data === null) fail('FERRY_HEALTH_MODEL_CORRUPT', `${source}: not a JSON object`)
    const head = data as { format?: unknown, version?: unknown }
    if (head.format !== MODEL_FORMAT) fail('FERRY_HEALTH_MODEL_FORMAT', `${source}: not a ferry health model (format ${JSON.stringify(head.format)})`)
    if (head.version !== MODEL_VERSION) fail('FERRY_HEALTH_MODEL_VERSION', `${source}: model version ${JSON.stringify(head.version)}, this ferry reads version ${MODEL_VERSION}`, { version: head.version, supported: MODEL_VERSION })
    const parsed = modelSchema.safeParse(data)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      fail('FERRY_HEALTH_MODEL_CORRUPT', `${source}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`, { issues: parsed.error.issues.slice(0, 5) })
    }
    return new HealthModel(parsed.data as HealthModelFile)
  }

  static load (file: string): HealthModel {
    let text: string
    try {
      text = fs.readFileSync(file, 'utf8')
    } catch (err) {
      fail('FERRY_HEALTH_MODEL_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`)
    }
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch (err) {
      fail('FERRY_HEALTH_MODEL_CORRUPT', `${file}: not valid JSON (${(err as Error).message})`)
    }
    return HealthModel.fromJSON(data, file)
  }

  toJSON (): HealthModelFile {
    return this.file
  }

  save (file: string): void {
    const tmp = `${file}.tmp-${process.pid}`
    fs.writeFileSync(tmp, JSON.stringify(this.file) + '\n')
    // Rename is atomic: a planner hot-reloading the file never reads half of it.
    fs.renameSync(tmp, file)
  }

  /** Learned facts, for `ferry evaluate` and the admin API. */
  get info (): { createdAt: string, training: HealthModelFile['training'], signals: string[], gateways: string[] } {
    return { createdAt: this.file.createdAt, training: this.file.training, signals: Object.keys(this.file.signals), gateways: Object.keys(this.file.gateways) }
  }

  profile (gateway: string, signal: string): SignalProfile | undefined {
    return this.file.gateways[gateway]?.profiles[signal] ?? this.file.signals[signal]?.profile
  }

  private stateFor (gateway: string): GatewayState {
    let st = this.states.get(gateway)
    if (st === undefined) {
      st = { lastTs: -Infinity, samples: 0, signals: new Map() }
      this.states.set(gateway, st)
    }
    return st
  }

  private signalState (gateway: string, st: GatewayState, name: string): SignalState {
    let s = st.signals.get(name)
    if (s === undefined) {
      const learned = this.file.gateways[gateway]?.novelty[name] ?? this.file.fleetNovelty[name]
      s = { window: new SignalWindow(this.params.windowS, this.params.medianS), calibration: new RollingCalibration(this.trackedLevels, Math.max(100, this.params.calibrationWindow ?? 500), 100, Math.max(1000, this.params.horizonS * 1000 / 30)), novelty: createNovelty(this.params.novelty, learned, { floor: this.params.noveltyFloor, half: this.params.noveltyHalf }), pendingSurprise: 0, lastSurprise: 0 }
      st.signals.set(name, s)
    }
    return s
  }

  /** Takes in one sample; samples not newer than the last one seen are ignored. */
  ingest (gateway: string, sample: SampleLike): boolean {
    const st = this.stateFor(gateway)
    if (!(sample.timestamp > st.lastTs)) return false
    st.lastTs = sample.timestamp
    st.samples++
    for (const spec of this.params.signals) {
      const v = valueOf(sample, spec.name)
      if (v === undefined) continue
      const s = this.signalState(gateway, st, spec.name)
      s.window.push(sample.timestamp, v)
      this.calibrate(spec.name, s, sample.timestamp)
      const surprise = s.novelty.update(v)
      s.lastSurprise = surprise
      if (surprise > s.pendingSurprise) s.pendingSurprise = surprise
    }
    return true
  }

  /** The model's level, then the levels whose coverage is reported. */
  private get trackedLevels (): number[] {
    return [this.params.level, ...COVERAGE_LEVELS]
  }

  /** The error quantiles a signal's intervals use: its own rolling ones once enough have matured. */
  private errorsOf (name: string, s: SignalState): { grid: readonly number[] | null, cached: { expectation: number[], low: number, mid: number, high: number, floor: number } } {
    return { grid: this.params.calibrationWindow === 0 ? null : s.calibration.quantiles(), cached: this.errorCache.get(name) as { expectation: number[], low: number, mid: number, high: number, floor: number } }
  }

  /** The level the k-th tracked interval of a signal is built at (steered by its misses unless calibration is off). */
  private levelOf (s: SignalState, k: number): number {
    return this.params.calibrationWindow === 0 ? this.trackedLevels[k] as number : s.calibration.steeredLevel(k)
  }

  /** Scores matured forecasts against the level now, and queues a new one now and then. */
  private calibrate (name: string, s: SignalState, t: number): void {
    const level = s.window.level as number
    s.calibration.observe(t, level)
    if (!s.calibration.due(t)) return
    const f = s.window.forecast(this.params.horizonS, this.params.forecaster)
    if (f === null) return
    const { grid, cached } = this.errorsOf(name, s)
    const errors = grid ?? this.file.signals[name]?.errors ?? GAUSSIAN_ERRORS
    const scale = forecastScale(f.scale, cached.floor)
    const levels = this.trackedLevels
    const bounds = new Float64Array(2 * levels.length)
    levels.forEach((_, k) => {
      const l = this.levelOf(s, k)
      bounds[2 * k] = f.mean + scale * errorQuantile(errors, (1 - l) / 2)
      bounds[2 * k + 1] = f.mean + scale * errorQuantile(errors, 1 - (1 - l) / 2)
    })
    s.calibration.track(t, this.params.horizonS * 1000, f.mean, scale, bounds)
  }

  /**
   * Measured coverage of the forecast intervals (model level, 80 %, 95 %), pooled over the
   * gateway's signals: the share of matured forecasts whose interval held the realised level,
   * over each signal's last calibration window (`recent`) or since the gateway was first seen.
   */
  coverage (gateway: string, scope: 'recent' | 'all' = 'recent'): CoverageFigure[] {
    const st = this.states.get(gateway)
    const levels = this.trackedLevels
    const hits = levels.map(() => 0)
    let n = 0
    for (const s of st?.signals.values() ?? []) {
      const t = s.calibration.tally(scope)
      n += t.n
      t.hits.forEach((h, k) => { hits[k] = (hits[k] as number) + h })
    }
    return levels.map((level, k) => ({ level, coverage: n > 0 ? (hits[k] as number) / n : null, n }))
  }

  /** Ingests the samples newer than the last one seen (any order) and assesses the gateway. */
  score (gateway: string, recentSamples: readonly SampleLike[] = []): HealthAssessment {
    const st = this.stateFor(gateway)
    let sorted = true
    for (let i = 1; i < recentSamples.length; i++) if ((recentSamples[i] as SampleLike).timestamp < (recentSamples[i - 1] as SampleLike).timestamp) { sorted = false; break }
    const list = sorted ? recentSamples : recentSamples.slice().sort((a, b) => a.timestamp - b.timestamp)
    for (const s of list) if (s.timestamp > st.lastTs) this.ingest(gateway, s)
    return this.assess(gateway)
  }

  /** Drops a gateway's online state (decommissioned, or to start over). */
  forget (gateway: string): void {
    this.states.delete(gateway)
  }

  /**
   * The assessment from what has been ingested so far.
   *
   * Signals are combined level by level: at each of 20 probability levels of the forecast
   * distributions, the gateway's health is the worst signal's health (treating the signals'
   * forecast errors as moving together, which is what a common cause does). The score is the
   * mean of those 20 values; the interval uses the levels at the model's confidence level.
   * Confidence is 1 - 2 x the mean absolute deviation of those values around their median
   * (1: every plausible future has the same health; 0: health is a coin toss between 0 and
   * 1), reduced by novelty (behaviour the model has not seen is behaviour it cannot vouch for)
   * and by missing data.
   */
  assess (gateway: string): HealthAssessment {
    const p = this.params
    const st = this.stateFor(gateway)
    const signals: Record<string, SignalAssessment> = {}
    const levels = EXPECTATION_LEVELS.length
    const combined = new Array<number>(levels).fill(1)
    let lower = 1
    let upper = 1
    let current = 1
    let limitingSignal: string | undefined
    let limitingHealth = 1
    let dataSum = 0
    let dataCount = 0
    let maxSurprise = 0
    let noveltySignal: string | undefined
    let looked = 0
    const intervals = COVERAGE_LEVELS.map(level => ({ level, lower: 1, upper: 1 }))
    // A full window (what the trend needs) is enough data.
    const expected = Math.max(5, 0.9 * p.windowS / p.sampleIntervalS)
    for (const spec of p.signals) {
      const s = st.signals.get(spec.name)
      if (s === undefined || s.window.size === 0) continue
      const surprise = s.pendingSurprise
      s.pendingSurprise = 0
      looked++
      if (surprise > maxSurprise) { maxSurprise = surprise; noveltySignal = spec.name }
      const value = s.window.latest as number
      const profile = this.profile(gateway, spec.name) ?? { median: value, lo: value, hi: value, count: 0 }
      if (spec.limit !== undefined) {
        dataSum += Math.min(1, s.window.size / expected)
        dataCount++
      }
      const f = s.window.forecast(p.horizonS, p.forecaster)
      if (f === null) {
        const h = signalHealth(spec, profile, value)
        signals[spec.name] = { value, forecast: value, forecastLow: value, forecastHigh: value, health: h, surprise }
        for (let j = 0; j < levels; j++) combined[j] = Math.min(combined[j] as number, h)
        lower = Math.min(lower, h)
        upper = Math.min(upper, h)
        for (const iv of intervals) { iv.lower = Math.min(iv.lower, h); iv.upper = Math.min(iv.upper, h) }
        current = Math.min(current, h)
        if (h < limitingHealth) { limitingHealth = h; limitingSignal = spec.name }
        continue
      }
      const { grid, cached } = this.errorsOf(spec.name, s)
      const errors = grid === null
        ? cached
        : { expectation: EXPECTATION_LEVELS.map(l => errorQuantile(grid, l)), low: errorQuantile(grid, (1 - this.levelOf(s, 0)) / 2), mid: errorQuantile(grid, 0.5), high: errorQuantile(grid, 1 - (1 - this.levelOf(s, 0)) / 2), floor: cached.floor }
      const scale = forecastScale(f.scale, errors.floor)
      COVERAGE_LEVELS.forEach((_, k) => {
        const l = this.levelOf(s, k + 1)
        const src = grid ?? this.file.signals[spec.name]?.errors ?? GAUSSIAN_ERRORS
        const a = signalHealth(spec, profile, f.mean + scale * errorQuantile(src, 1 - (1 - l) / 2))
        const b = signalHealth(spec, profile, f.mean + scale * errorQuantile(src, (1 - l) / 2))
        const iv = intervals[k] as { lower: number, upper: number }
        iv.lower = Math.min(iv.lower, a, b)
        iv.upper = Math.min(iv.upper, Math.max(a, b))
      })
      let e = 0
      for (let j = 0; j < levels; j++) {
        const h = signalHealth(spec, profile, f.mean + scale * (errors.expectation[j] as number))
        e += h
        // A higher level is a higher value, i.e. a worse one for `up` signals: the same level
        // across signals is the same "how bad could it get" for all of them.
        if (h < (combined[j] as number)) combined[j] = h
      }
      e /= levels
      const qLow = f.mean + scale * errors.low
      const qHigh = f.mean + scale * errors.high
      const hA = signalHealth(spec, profile, qHigh)
      const hB = signalHealth(spec, profile, qLow)
      lower = Math.min(lower, hA, hB)
      upper = Math.min(upper, Math.max(hA, hB))
      current = Math.min(current, signalHealth(spec, profile, f.level))
      signals[spec.name] = { value, forecast: f.mean + scale * errors.mid, forecastLow: qLow, forecastHigh: qHigh, health: e, surprise }
      if (e < limitingHealth) { limitingHealth = e; limitingSignal = spec.name }
    }
    let score = 0
    for (const h of combined) score += h
    score /= levels
    const sorted = combined.slice().sort((a, b) => a - b)
    const median = ((sorted[levels / 2 - 1] as number) + (sorted[levels / 2] as number)) / 2
    let mad = 0
    for (const h of combined) mad += Math.abs(h - median)
    mad /= levels
    // Keep the reported score inside the reported interval (both come from the same levels,
    // but the interval uses the tails and the score the whole distribution).
    score = Math.min(upper, Math.max(lower, score))

    // Several signals looked at: the most surprising one is corrected for that (Bonferroni).
    const surprise = Math.max(0, maxSurprise - (looked > 1 ? Math.log10(looked) : 0))
    const novelty = noveltyFraction(surprise, { floor: p.noveltyFloor, half: p.noveltyHalf })
    const factor = 1 - p.noveltyWeight * novelty
    score *= factor
    current *= factor
    lower *= factor
    for (const iv of intervals) iv.lower *= factor
    const dataFactor = dataCount > 0 ? dataSum / dataCount : (st.samples > 0 ? 1 : 0)
    const confidence = Math.max(0, Math.min(1, (1 - 2 * mad) * (1 - novelty) * dataFactor))
    const perMinute = (score - current) / (p.horizonS / 60)
    const direction: TrendDirection = perMinute < -0.01 ? 'degrading' : perMinute > 0.01 ? 'improving' : 'stable'
    return {
      gateway,
      at: Number.isFinite(st.lastTs) ? st.lastTs : 0,
      horizonS: p.horizonS,
      score,
      lower,
      upper,
      level: p.level,
      confidence,
      current,
      trend: { direction, perMinute },
      novelty,
      ...(noveltySignal !== undefined && novelty > 0 ? { noveltySignal } : {}),
      ...(limitingSignal !== undefined && limitingHealth < 1 ? { limitingSignal } : {}),
      signals,
      intervals,
      coverage: this.coverage(gateway),
      samples: st.samples
    }
  }
}

/**
 * Replays a signal's history: after each `stride`-th sample, forecasts the horizon and, when a
 * sample exists there, records the normalised error against the signal's running median at
 * that time (what the model forecasts is the level of the signal, not its one-second noise:
 * a burst shorter than half the median's span is not a change of health). These errors
 * calibrate the intervals.
 */
export function replayErrors (times: number[], values: number[], p: HealthModelParams, stride: number, scaleFloor: number): number[] {
  const out: number[] = []
  const w = new SignalWindow(p.windowS, p.medianS)
  const truth = new RunningMedian(p.medianS)
  const level = values.map((v, i) => truth.push(times[i] as number, v))
  const hMs = p.horizonS * 1000
  const tolMs = Math.max(2 * p.sampleIntervalS * 1000, 0.05 * hMs)
  let j = 0
  for (let i = 0; i < times.length; i++) {
    const t = times[i] as number
    w.push(t, values[i] as number)
    if (i % stride !== 0) continue
    const f = w.forecast(p.horizonS, p.forecaster)
    if (f === null) continue
    while (j < times.length && (times[j] as number) < t + hMs) j++
    if (j >= times.length) break
    if ((times[j] as number) - (t + hMs) > tolMs) continue
    out.push(((level[j] as number) - f.mean) / forecastScale(f.scale, scaleFloor))
  }
  return out
}

/**
 * The error scale of a forecast: the regression's own prediction error, but never less than
 * the signal's typical change over the horizon. A smooth signal (memory) gives a tiny
 * regression error in calm periods, and calibrating on errors measured in those units makes
 * the intervals swing wildly; the floor keeps the unit meaningful.
 */
export function forecastScale (regression: number, floor: number): number {
  return Math.sqrt(regression * regression + floor * floor)
}

/** Median absolute change of the signal's running median over the horizon, in training. */
function horizonChange (series: Array<{ times: number[], values: number[] }>, p: HealthModelParams): number {
  const changes: number[] = []
  const hMs = p.horizonS * 1000
  for (const { times, values } of series) {
    const m = new RunningMedian(p.medianS)
    const level = values.map((v, i) => m.push(times[i] as number, v))
    const stride = Math.max(1, Math.floor(times.length / 5000))
    let j = 0
    for (let i = 0; i < times.length; i += stride) {
      const t = times[i] as number
      while (j < times.length && (times[j] as number) < t + hMs) j++
      if (j >= times.length) break
      changes.push(Math.abs((level[j] as number) - (level[i] as number)))
    }
  }
  changes.sort((a, b) => a - b)
  return changes.length > 0 ? quantileSorted(changes, 0.5) : 0
}

const tailStateSchema = z.object({ n: z.number().int().nonnegative(), top: z.array(z.number()) })
const tailNoveltyStateSchema = z.object({ kind: z.literal('tail'), recent: z.array(z.number()), baseline: z.number().nullable(), recentSurprise: z.array(z.number()), tails: z.array(tailStateSchema) })
const noveltyStateSchema = z.discriminatedUnion('kind', [
  tailNoveltyStateSchema,
  z.object({ kind: z.literal('gaussian'), recent: z.array(z.number()) }),
  z.object({ kind: z.literal('ensemble'), tail: tailNoveltyStateSchema })
])
const profileSchema = z.object({ median: z.number(), lo: z.number(), hi: z.number(), count: z.number().int().nonnegative() })
const tailNoveltyParamsSchema = z.object({
  kind: z.literal('tail'),
  window: z.number().int().positive(),
  baselineAlpha: z.number().positive().max(1),
  refractory: z.number().int().nonnegative(),
  tail: z.object({ frac: z.number().positive().max(1), kMin: z.number().int().positive(), kMax: z.number().int().positive() })
})
const artParamsSchema = z.object({
  probation: z.number().int().positive(),
  window: z.number().int().positive().refine(w => (w & (w - 1)) === 0, 'a power of two'),
  windowsPerProbation: z.number().int().positive(),
  levels: z.number().int().positive(),
  chomp: z.number().nonnegative(),
  initialRho: z.number().gt(0).lt(1),
  rangeMargin: z.number().nonnegative(),
  nonNegative: z.boolean(),
  expand: z.boolean(),
  maxCategories: z.number().int().min(2),
  range: z.tuple([z.number(), z.number()]).optional()
})
const noveltyParamsSchema = z.discriminatedUnion('kind', [
  tailNoveltyParamsSchema,
  z.object({ kind: z.literal('gaussian'), window: z.number().int().positive() }),
  z.object({ kind: z.literal('ensemble'), tail: tailNoveltyParamsSchema, art: artParamsSchema, tailWeight: z.number().min(0).max(1) })
])
const modelSchema = z.object({
  format: z.literal(MODEL_FORMAT),
  version: z.literal(MODEL_VERSION),
  createdAt: z.string(),
  params: z.object({
    horizonS: z.number().positive(),
    windowS: z.number().positive(),
    medianS: z.number().nonnegative(),
    level: z.number().gt(0).lt(1),
    forecaster: z.enum(['trend', 'level']),
    novelty: noveltyParamsSchema,
    noveltyWeight: z.number().min(0).max(1),
    noveltyFloor: z.number().nonnegative(),
    noveltyHalf: z.number().positive(),
    calibrationWindow: z.number().int().nonnegative().optional(),
    sampleIntervalS: z.number().positive(),
    signals: z.array(z.object({ name: z.string().min(1), direction: z.enum(['up', 'both']), limit: z.number().optional() }))
  }),
  signals: z.record(z.object({ profile: profileSchema, errors: z.array(z.number()).length(ERROR_GRID.length), scaleFloor: z.number().nonnegative() })),
  fleetNovelty: z.record(noveltyStateSchema),
  gateways: z.record(z.object({ profiles: z.record(profileSchema), novelty: z.record(noveltyStateSchema) })),
  training: z.object({ samples: z.number().int().nonnegative(), gateways: z.number().int().nonnegative(), from: z.number().nullable(), to: z.number().nullable() })
})
