/**
 * The migration trigger of seed 000, run by the planner: every `tickMs`, per gateway, the new
 * telemetry in the store is scored by the health model and fed to a TriggerPolicy; when a
 * gateway's predicted health is below the threshold with enough confidence for a run of ticks,
 * its blocks are evacuated (hottest first, each to its best target by affinity, capacity and
 * predicted health) through the evacuation decider (deciders/evacuation.ts: a drain) and the migration engine. The
 * evacuation is lifted only after a clear recovery (the policy's hysteresis).
 *
 * Every planner scores (standbys too: a new leader then knows the fleet's state at once); only
 * the leader acts. What it acts on is the policy's state, not its edges: a leader elected while a
 * gateway stands triggered evacuates it, and one that finds a predecessor's evacuation of a
 * gateway now healthy lifts it.
 *
 * The model is loaded from `model` (a `ferry train` file) and swapped when the file changes, or
 * retrained from the stored history every `retrainIntervalMs`; without a file it is an untrained
 * model that learns online. A swapped model replays the last window of telemetry, so it is warm
 * at once.
 */
import fs from 'node:fs'
import path from 'node:path'
import { Counter, Gauge, type Registry } from 'prom-client'
import { FerryError } from '../lib/errors.js'
import { silentLogger, type Logger } from '../lib/log.js'
import type { StateStore } from '../state/types.js'
import type { PredictionConfig } from './config.js'
import { HealthModel, TriggerPolicy, type HealthAssessment, type TelemetryRecord, type TriggerDecision, type TriggerState } from './health/index.js'
import { Fleet } from './migration/fleet.js'
import type { GatewayInfo } from './affinity/index.js'
import type { DrainPassSummary } from './deciders/drains.js'
import { toHealthRecord } from './telemetry.js'

/** The inputs a decision was made from (seed: score, interval, confidence; plus why). */
export interface DecisionInputs extends Pick<HealthAssessment, 'score' | 'lower' | 'upper' | 'level' | 'confidence' | 'current' | 'trend' | 'novelty'> {
  limitingSignal: string | null
  /** Time of the newest sample scored (Unix ms, the sample's clock). */
  sampleAt: number
}

/** What an evacuation started: the evacuation decider's drain pass, summarised. */
export type EvacuationSummary = DrainPassSummary

export interface HealthDecision {
  at: number
  gateway: string
  /** `trigger` / `clear`: the policy's edges; `evacuate` / `release`: what the leader did; `state`: a state change. */
  event: 'trigger' | 'clear' | 'evacuate' | 'release' | 'state'
  state: TriggerState
  reason: string
  inputs: DecisionInputs
  evacuation?: EvacuationSummary
  error?: string
}

/** What the planner lends the monitor. */
export interface HealthMonitorHost {
  gateways: () => readonly string[]
  isLeader: () => boolean
  /** Starts (or continues) moving everything off `gateway`, hottest first. */
  evacuate: (gateway: string) => Promise<EvacuationSummary>
  /** Lifts a predictive evacuation (an operator's drain stays). True if one was lifted. */
  release: (gateway: string) => Promise<boolean>
  /** Is a predictive evacuation of `gateway` in force (possibly a predecessor's)? */
  evacuating: (gateway: string) => boolean
}

export interface HealthMonitorOptions {
  store: StateStore
  config: PredictionConfig
  host: HealthMonitorHost
  logger?: Logger
  registry?: Registry
  now?: () => number
}

interface GatewayWatch {
  policy: TriggerPolicy
  /** Newest health-bearing sample taken in (store time); reads start here. */
  lastAt: number
  assessment: HealthAssessment | null
  decision: TriggerDecision | null
  lastDecision: HealthDecision | null
  lastEvacuationAt: number
  /** The scored ticks, oldest first (bounded), for the console's chart and `ferry ctl`. */
  history: HealthPoint[]
}

/** One scored tick: when (planner clock, ms), the predicted score and its interval. */
export interface HealthPoint { at: number, score: number, lower: number, upper: number, confidence: number }

/** Scored ticks kept per gateway: an hour at the default 5 s tick. */
const HISTORY_KEPT = 720

function round4 (v: number): number { return Math.round(v * 1e4) / 1e4 }

function inputsOf (a: HealthAssessment): DecisionInputs {
  const r = (v: number): number => Math.round(v * 1e4) / 1e4
  return {
    score: r(a.score),
    lower: r(a.lower),
    upper: r(a.upper),
    level: a.level,
    confidence: r(a.confidence),
    current: r(a.current),
    trend: { direction: a.trend.direction, perMinute: r(a.trend.perMinute) },
    limitingSignal: a.limitingSignal ?? null,
    novelty: r(a.novelty),
    sampleAt: a.at
  }
}

/**
 * A Fleet that knows the predicted health: it is the `healthScore` of every gateway the
 * affinity scorer ranks, and a gateway predicted unhealthy is never a target (neither for the
 * rebalancer and drains, nor for the engine's last check before a copy).
 */
export class PredictiveFleet extends Fleet {
  private predictions: ((id: string) => { score: number, unhealthy: boolean } | undefined) | null = null

  setPredictions (fn: (id: string) => { score: number, unhealthy: boolean } | undefined): void {
    this.predictions = fn
  }

  override isTarget (id: string, now = Date.now()): boolean {
    return super.isTarget(id, now) && this.predictions?.(id)?.unhealthy !== true
  }

  override infos (now = Date.now()): GatewayInfo[] {
    return super.infos(now).map(g => {
      const p = this.predictions?.(g.id)
      return p === undefined ? g : { ...g, healthScore: p.score }
    })
  }
}

export class HealthMonitor {
  private config: PredictionConfig
  private model: HealthModel
  private modelInfo: { source: 'file' | 'untrained' | 'retrained', path: string | null, createdAt: string, loadedAt: number, samples: number }
  private lastLoadError: string | null = null
  private readonly watches = new Map<string, GatewayWatch>()
  private readonly log: HealthDecision[] = []
  private readonly logger: Logger
  private readonly now: () => number
  private timer: NodeJS.Timeout | null = null
  private retrainTimer: NodeJS.Timeout | null = null
  private watcher: fs.FSWatcher | null = null
  private reloadTimer: NodeJS.Timeout | null = null
  private ticking: Promise<void> | null = null
  private readonly triggers: Counter<'gateway'> | null
  private started = false
  private wanted = false

  constructor (private readonly opts: HealthMonitorOptions) {
    this.config = opts.config
    this.logger = (opts.logger ?? silentLogger).child({ component: 'health-monitor' })
    this.now = opts.now ?? Date.now
    this.model = HealthModel.untrained()
    this.modelInfo = { source: 'untrained', path: null, createdAt: this.model.info.createdAt, loadedAt: this.now(), samples: 0 }
    if (this.config.model !== undefined) this.loadModelFile(this.config.model, true)
    const registers = opts.registry === undefined ? [] : [opts.registry]
    this.triggers = opts.registry === undefined ? null : new Counter({ name: 'ferry_health_triggers_total', help: 'Predictive evacuations triggered, by gateway', labelNames: ['gateway'], registers })
    if (opts.registry !== undefined) {
      const watches = this.watches
      new Gauge({
        name: 'ferry_health_predicted_score',
        help: 'Predicted gateway health at the model horizon (1 healthy, 0 failed)',
        labelNames: ['gateway', 'bound'],
        registers,
        collect () {
          this.reset()
          for (const [gw, w] of watches) {
            if (w.assessment === null) continue
            this.set({ gateway: gw, bound: 'score' }, w.assessment.score)
            this.set({ gateway: gw, bound: 'lower' }, w.assessment.lower)
            this.set({ gateway: gw, bound: 'upper' }, w.assessment.upper)
          }
        }
      })
    }
  }

  get enabled (): boolean { return this.config.enabled }
  get threshold (): number { return this.config.threshold }

  /** Runs the ticks (when enabled; a reconfigure that enables prediction starts them). */
  start (): void {
    this.wanted = true
    if (this.started || !this.config.enabled) return
    this.started = true
    this.timer = setInterval(() => { void this.tick() }, this.config.tickMs)
    this.timer.unref()
    this.watchModelFile()
    if (this.config.retrainIntervalMs > 0) {
      this.retrainTimer = setInterval(() => { void this.retrain().catch(err => { this.logger.warn({ err: (err as Error).message }, 'health model retraining failed; the current model stays') }) }, this.config.retrainIntervalMs)
      this.retrainTimer.unref()
    }
  }

  stop (): void {
    this.wanted = false
    this.halt()
  }

  private halt (): void {
    this.started = false
    if (this.timer !== null) clearInterval(this.timer)
    if (this.retrainTimer !== null) clearInterval(this.retrainTimer)
    if (this.reloadTimer !== null) clearTimeout(this.reloadTimer)
    this.timer = this.retrainTimer = this.reloadTimer = null
    this.watcher?.close()
    this.watcher = null
  }

  reconfigure (config: PredictionConfig): void {
    const modelChanged = config.model !== this.config.model
    this.config = config
    for (const w of this.watches.values()) w.policy = this.policyFrom(w.policy)
    this.halt()
    if (modelChanged) {
      if (config.model !== undefined) this.loadModelFile(config.model, false)
      else this.swap(HealthModel.untrained(), { source: 'untrained', path: null, samples: 0 })
    }
    if (this.wanted) this.start()
  }

  /** A policy with the configured options, carrying the old one's triggered state over. */
  private policyFrom (old?: TriggerPolicy): TriggerPolicy {
    const p = new TriggerPolicy({
      threshold: this.config.threshold,
      minConfidence: this.config.confidenceThreshold,
      consecutive: this.config.consecutive,
      clearMargin: this.config.clearMargin,
      clearConsecutive: this.config.clearConsecutive
    })
    // A reload must not lift an evacuation: replay enough bad ticks to stand triggered again.
    if (old?.isTriggered === true) for (let i = 0; i < p.options.consecutive; i++) p.update({ score: 0, confidence: 1 })
    return p
  }

  // ───────────────────────────── the model ─────────────────────────────

  get modelStatus (): Record<string, unknown> {
    return { ...this.modelInfo, horizonS: this.model.params.horizonS, lastLoadError: this.lastLoadError }
  }

  /** Loads the model file; a bad file keeps the current model (at construction: the untrained one). */
  private loadModelFile (file: string, initial: boolean): boolean {
    try {
      const m = HealthModel.load(file)
      this.swap(m, { source: 'file', path: file, samples: m.info.training.samples })
      this.lastLoadError = null
      this.logger.info({ file, createdAt: m.info.createdAt, trainedOn: m.info.training }, initial ? 'health model loaded' : 'health model reloaded')
      return true
    } catch (err) {
      this.lastLoadError = `${(err as Error).message}${err instanceof FerryError ? ` (${err.code})` : ''}`
      this.logger.warn({ file, err: this.lastLoadError }, initial ? 'health model not loaded; learning online until it is' : 'health model not reloaded; the current model stays')
      return false
    }
  }

  /**
   * Watches the model file's directory, not the file: `ferry train` and `save` replace the file
   * by rename, which a watch on the old inode would never report.
   */
  private watchModelFile (): void {
    const file = this.config.model
    if (file === undefined || this.watcher !== null) return
    const dir = path.dirname(path.resolve(file))
    const base = path.basename(file)
    try {
      this.watcher = fs.watch(dir, (_event, name) => {
        if (name !== null && name !== base) return
        // Debounced: one rename can be reported as several events.
        if (this.reloadTimer !== null) clearTimeout(this.reloadTimer)
        this.reloadTimer = setTimeout(() => { this.reloadTimer = null; this.reloadIfChanged() }, 100)
        this.reloadTimer.unref()
      })
      this.watcher.on('error', err => { this.logger.warn({ dir, err: err.message }, 'cannot watch the health model file; reload by config reload') })
    } catch (err) {
      this.logger.warn({ dir, err: (err as Error).message }, 'cannot watch the health model file; reload by config reload')
    }
  }

  /** Reloads the file unless it is the model in use (our own retrain's save). */
  reloadIfChanged (): boolean {
    const file = this.config.model
    if (file === undefined || !fs.existsSync(file)) return false
    try {
      const head = JSON.parse(fs.readFileSync(file, 'utf8')) as { createdAt?: unknown }
      if (head.createdAt === this.modelInfo.createdAt && this.modelInfo.path === file) return false
    } catch { /* loadModelFile reports it */ }
    return this.loadModelFile(file, false)
  }

  /** Puts a model in service. Gateways are re-read from a window back so the new model is warm. */
  private swap (model: HealthModel, info: { source: 'file' | 'untrained' | 'retrained', path: string | null, samples: number }): void {
    this.model = model
    this.modelInfo = { ...info, createdAt: model.info.createdAt, loadedAt: this.now() }
    const back = (model.params.windowS + model.params.medianS) * 1000
    for (const w of this.watches.values()) w.lastAt = Number.isFinite(w.lastAt) ? w.lastAt - back : w.lastAt
  }

  /** Trains a model on the stored history of every gateway and swaps it in (saved to `model` when set). */
  async retrain (): Promise<HealthModel> {
    const records: TelemetryRecord[] = []
    for (const gw of this.opts.host.gateways()) {
      for (const s of await this.opts.store.readTelemetry(gw)) {
        const r = toHealthRecord(gw, s)
        if (r !== undefined) records.push(r)
      }
    }
    const p = this.model.params
    const m = HealthModel.train(records, { horizonS: p.horizonS, windowS: p.windowS, medianS: p.medianS, level: p.level, signals: p.signals })
    if (this.config.model !== undefined) m.save(this.config.model)
    this.swap(m, { source: 'retrained', path: this.config.model ?? null, samples: records.length })
    this.lastLoadError = null
    this.logger.info({ samples: records.length, gateways: m.info.gateways.length }, 'health model retrained')
    return m
  }

  // ───────────────────────────── the tick ─────────────────────────────

  private watchOf (gateway: string): GatewayWatch {
    let w = this.watches.get(gateway)
    if (w === undefined) {
      w = { policy: this.policyFrom(), lastAt: -Infinity, assessment: null, decision: null, lastDecision: null, lastEvacuationAt: 0, history: [] }
      this.watches.set(gateway, w)
    }
    return w
  }

  /** One round over every gateway (concurrent calls share it). Exposed for tests and demos. */
  tick (): Promise<void> {
    this.ticking ??= this.round().finally(() => { this.ticking = null })
    return this.ticking
  }

  private async round (): Promise<void> {
    if (!this.config.enabled) return
    const known = new Set(this.opts.host.gateways())
    for (const gw of this.watches.keys()) {
      if (!known.has(gw)) { this.watches.delete(gw); this.model.forget(gw) }
    }
    for (const gw of known) {
      try {
        await this.tickGateway(gw)
      } catch (err) {
        this.logger.warn({ gateway: gw, err: (err as Error).message }, 'health tick failed for this gateway')
      }
    }
  }

  private async tickGateway (gateway: string): Promise<void> {
    const w = this.watchOf(gateway)
    const stored = await this.opts.store.readTelemetry(gateway, Number.isFinite(w.lastAt) ? { since: w.lastAt } : {})
    const fresh: TelemetryRecord[] = []
    for (const s of stored) {
      // Proxies' passive samples carry no model signal (toHealthRecord → undefined) and must not
      // move lastAt: their wall-clock time could be ahead of an agent's.
      const r = toHealthRecord(gateway, s)
      if (r !== undefined && r.timestamp > w.lastAt) fresh.push(r)
    }
    if (fresh.length > 0) {
      for (const r of fresh) if (r.timestamp > w.lastAt) w.lastAt = r.timestamp
      const a = this.model.score(gateway, fresh)
      w.assessment = a
      const r = (v: number): number => Math.round(v * 1e4) / 1e4
      w.history.push({ at: this.now(), score: r(a.score), lower: r(a.lower), upper: r(a.upper), confidence: r(a.confidence) })
      if (w.history.length > HISTORY_KEPT) w.history.shift()
      // A tick without new samples is no new evidence: the policy only counts scored ticks.
      const d = w.policy.update({ score: a.score, lower: a.lower, upper: a.upper, confidence: a.confidence })
      const before = w.decision?.state
      w.decision = d
      if (d.event !== null) {
        this.record({ at: this.now(), gateway, event: d.event, state: d.state, reason: d.reason, inputs: inputsOf(a) }, 'info')
        if (d.event === 'trigger') this.triggers?.inc({ gateway })
      } else if (before !== undefined && before !== d.state) {
        this.record({ at: this.now(), gateway, event: 'state', state: d.state, reason: d.reason, inputs: inputsOf(a) }, 'debug')
      }
    }
    await this.act(gateway, w)
  }

  /** The leader brings the world in line with the policy's state (see the file comment). */
  private async act (gateway: string, w: GatewayWatch): Promise<void> {
    const host = this.opts.host
    if (!host.isLeader() || w.assessment === null) return
    const triggered = w.policy.isTriggered
    if (triggered) {
      const first = !host.evacuating(gateway)
      // Later passes pick up blocks that arrived meanwhile or whose move failed; at most once a second.
      if (!first && this.now() - w.lastEvacuationAt < Math.max(1000, this.config.tickMs)) return
      w.lastEvacuationAt = this.now()
      try {
        const summary = await host.evacuate(gateway)
        if (first) this.record({ at: this.now(), gateway, event: 'evacuate', state: w.decision?.state ?? 'triggered', reason: `evacuating ${summary.started} of ${summary.blocks} blocks, hottest first`, inputs: inputsOf(w.assessment), evacuation: summary }, 'warn')
      } catch (err) {
        if (first) this.record({ at: this.now(), gateway, event: 'evacuate', state: 'triggered', reason: 'evacuation could not start', inputs: inputsOf(w.assessment), error: (err as Error).message }, 'error')
      }
    } else if (host.evacuating(gateway) && w.decision?.state === 'healthy') {
      // A store that cannot record the release leaves the evacuation in force; the next tick retries.
      const released = await host.release(gateway).catch(err => { this.logger.warn({ gateway, err: (err as Error).message }, 'could not lift the evacuation'); return false })
      if (released) this.record({ at: this.now(), gateway, event: 'release', state: 'healthy', reason: 'recovered: the gateway may receive blocks again', inputs: inputsOf(w.assessment) }, 'info')
    }
  }

  private record (d: HealthDecision, level: 'debug' | 'info' | 'warn' | 'error'): void {
    const w = this.watches.get(d.gateway)
    if (w !== undefined) w.lastDecision = d
    this.log.push(d)
    while (this.log.length > this.config.decisionLogSize) this.log.shift()
    this.logger[level]({ gateway: d.gateway, event: d.event, state: d.state, reason: d.reason, inputs: d.inputs, ...(d.evacuation ? { evacuation: d.evacuation } : {}), ...(d.error ? { err: d.error } : {}) }, `health decision: ${d.event}`)
  }

  // ───────────────────────────── views ─────────────────────────────

  /** For the fleet: the predicted score, and whether the gateway must not receive blocks. */
  prediction (gateway: string): { score: number, unhealthy: boolean } | undefined {
    const w = this.watches.get(gateway)
    if (w === undefined || w.assessment === null || !this.config.enabled) return undefined
    const a = w.assessment
    const believedLow = a.score < this.config.threshold && a.confidence >= this.config.confidenceThreshold
    return { score: a.score, unhealthy: w.policy.isTriggered || believedLow }
  }

  /** Per gateway: the prediction, the trigger state and the last decision (GET /v1/health). */
  gateway (gateway: string): Record<string, unknown> {
    const w = this.watches.get(gateway)
    const a = w?.assessment ?? null
    return {
      gateway,
      ...(a === null
        ? { score: null, lower: null, upper: null, confidence: null, trend: null, limitingSignal: null, horizonS: this.model.params.horizonS, sampleAt: null, samples: 0 }
        : { ...inputsOf(a), horizonS: a.horizonS, samples: a.samples }),
      // The intervals at 80 % and 95 %, and how often this gateway's intervals have actually
      // held the realised value (rolling conformal calibration, planner/health/conformal.ts).
      intervals: a === null ? [] : a.intervals.map(iv => ({ level: iv.level, lower: round4(iv.lower), upper: round4(iv.upper) })),
      coverage: this.model.coverage(gateway).map(c => ({ level: c.level, measured: c.coverage === null ? null : round4(c.coverage), forecasts: c.n })),
      state: w?.decision?.state ?? (a === null ? 'unknown' : 'healthy'),
      triggered: w?.policy.isTriggered ?? false,
      evacuating: this.opts.host.evacuating(gateway),
      lastDecision: w?.lastDecision ?? null
    }
  }

  /** The gateway's scored ticks, oldest first (GET /v1/health/:gateway `history`). */
  history (gateway: string): HealthPoint[] {
    return [...(this.watches.get(gateway)?.history ?? [])]
  }

  status (): Record<string, unknown> {
    return {
      enabled: this.config.enabled,
      threshold: this.config.threshold,
      confidenceThreshold: this.config.confidenceThreshold,
      model: this.modelStatus,
      coverage: this.fleetCoverage(),
      gateways: this.opts.host.gateways().map(g => this.gateway(g))
    }
  }

  /** Interval coverage pooled over every gateway (nominal vs measured), for GET /v1/health. */
  fleetCoverage (): Array<{ level: number, measured: number | null, forecasts: number }> {
    const per = this.opts.host.gateways().map(g => this.model.coverage(g))
    const levels = per[0]?.map(c => c.level) ?? []
    return levels.map((level, k) => {
      let hits = 0
      let n = 0
      for (const p of per) { const c = p[k]; if (c?.coverage !== null && c !== undefined) { hits += c.coverage * c.n; n += c.n } }
      return { level, measured: n > 0 ? round4(hits / n) : null, forecasts: n }
    })
  }

  decisions (opts: { gateway?: string, limit?: number } = {}): HealthDecision[] {
    const list = opts.gateway === undefined ? this.log : this.log.filter(d => d.gateway === opts.gateway)
    return list.slice(-(opts.limit ?? list.length)).reverse()
  }

  /** Whether `gateway` is one the monitor watches (a configured gateway). */
  knows (gateway: string): boolean {
    return this.opts.host.gateways().includes(gateway)
  }

  /** The fields the health monitor adds to each gateway in `GET /v1/gateways`. */
  gatewayFields (gateway: string): Record<string, unknown> {
    const w = this.watches.get(gateway)
    const a = w?.assessment
    if (w === undefined || a === undefined || a === null) return { predictedHealth: null, trigger: this.config.enabled ? 'unknown' : 'disabled' }
    const i = inputsOf(a)
    return { predictedHealth: { score: i.score, lower: i.lower, upper: i.upper, level: i.level, confidence: i.confidence, trend: i.trend, horizonS: a.horizonS }, trigger: w.decision?.state ?? 'healthy' }
  }
}
