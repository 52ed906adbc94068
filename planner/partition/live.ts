/**
 * The partitioning engine, live: the planner's half of first-touch placement (the proxy's half is
 * placement/). It keeps a bounded training history from what the proxies report (first writes
 * with their origin site and content metadata; access scores come from the store's affinity
 * map), retrains the PlacementModel on a schedule and on demand, swaps a new model in only when
 * it beats the one in use on held-out recent blocks, and publishes the model as the compact
 * placement table every proxy ranks gateways with inline.
 */
import { readFile } from 'node:fs/promises'
import { Gauge, type Registry } from 'prom-client'
import { FerryError } from '../../lib/errors.js'
import { blockKey } from '../../lib/ids.js'
import { silentLogger, type Logger } from '../../lib/log.js'
import type { PlacementConfig } from '../../placement/config.js'
import { emptyPlacementTable, PLACEMENT_TABLE_DOC, PLACEMENT_TABLE_FORMAT, PLACEMENT_TABLE_VERSION, placementTableSchema, type PlacementTable } from '../../placement/table.js'
import { placementDecisionsChannel, placementFirstWritesChannel, placementTableChannel, type FirstWriteRecord } from '../../state/channels.js'
import type { StateStore } from '../../state/types.js'
import { decayScores } from '../../state/affinity.js'
import { decayFactor } from '../../lib/forward-decay.js'
import type { AffinityScorer, GatewayInfo } from '../affinity/index.js'
import { makeEmbedder } from './command.js'
import type { BlockMeta, Embedder } from './embedder.js'
import { PlacementModel, type PlacementTrainOptions, type TrainingExample } from './model.js'

/** What the engine needs of the planner around it. */
export interface LivePlacementHost {
  isLeader (): boolean
  /** Gateways as targets: `healthy` false for down, draining or predicted-to-fail ones. */
  gateways (now: number): GatewayInfo[]
  scorer (): AffinityScorer
  /** Mean block size, for "has room for one more block". */
  meanBlockBytes (): number
  /**
   * Half-life of the access scores (state.affinity.halfLifeMs): to take a block's creating
   * access out of its held-out label. Without it the label keeps it.
   */
  halfLifeMs?: () => number
}

export interface LivePlacementOptions {
  store: StateStore
  config: PlacementConfig
  host: LivePlacementHost
  logger?: Logger
  registry?: Registry
  /** Trace time for the benchmark; Date.now by default. */
  now?: () => number
  /** Fixed training options (the benchmark's and tests' seeds); validation chooses the blend otherwise. */
  train?: PlacementTrainOptions
  /** The embedder; default: from config (`placement.embedder`). */
  embedder?: Embedder
}

export interface ModelInfo {
  version: number
  source: 'trained' | 'file'
  trainedAt: string
  loadedAt: number
  embedder: string
  examples: number
  sites: readonly string[]
  /** On the blocks held out when it was swapped in (null for a model loaded from a file). */
  heldOut: { blocks: number, crossEntropy: { model: number, prior: number, previous: number | null } } | null
}

export interface RetrainResult {
  at: number
  reason: string
  /** True when the new model is now in use. */
  swapped: boolean
  /** Why not, when it was not. */
  why?: string
  durationMs: number
  examples: number
  heldOut: number
  /** Mean cross-entropy (nats) on the held-out blocks: the new model, its prior alone, the model in use. */
  crossEntropy: { candidate: number, prior: number, previous: number | null } | null
  version: number | null
}

const EPS = 1e-4
/** Fewest held-out blocks created after the model in use was trained before those are the held-out set. */
const MIN_FRESH_HOLDOUT = 5
const RECENT_RESULTS = 16
/**
 * Held-out blocks scored per retrain, at most (an even sample of them): scoring predicts each
 * one with metadata neighbours, which at 1 M blocks of history would cost more than training.
 */
const MAX_SCORED = 5000
/** A held-out block whose accesses after its creation weigh less than this says nothing about where it is read. */
const MIN_LABEL = 0.5

export class LivePlacement {
  private config: PlacementConfig
  private readonly store: StateStore
  private readonly host: LivePlacementHost
  private readonly logger: Logger
  private readonly now: () => number
  private embedder: Embedder | undefined
  private model: PlacementModel | null = null
  private info: ModelInfo | null = null
  private version = 0
  /** First writes by blockKey, oldest first (Map order): the training history's origins and metadata. */
  private readonly history = new Map<string, FirstWriteRecord>()
  private readonly decisions = { model: 0, origin: 0, hash: 0 }
  private readonly results: RetrainResult[] = []
  private retrains = 0
  private running: Promise<RetrainResult> | null = null
  private table: PlacementTable | null = null
  private lastLoadError: { at: number, code: string, message: string } | null = null
  private retrainTimer: NodeJS.Timeout | null = null
  private publishTimer: NodeJS.Timeout | null = null
  private unsubscribe: (() => void) | null = null
  private readonly trainOptions: PlacementTrainOptions

  constructor (opts: LivePlacementOptions) {
    this.store = opts.store
    this.config = opts.config
    this.host = opts.host
    this.logger = opts.logger ?? silentLogger
    this.now = opts.now ?? Date.now
    this.embedder = opts.embedder
    this.trainOptions = opts.train ?? {}
    if (opts.registry !== undefined) {
      const version = (): number => this.info?.version ?? 0
      const history = this.history
      new Gauge({ name: 'ferry_placement_model_version', help: 'Version of the placement model this planner uses (0: none)', registers: [opts.registry], collect () { this.set(version()) } })
      new Gauge({ name: 'ferry_placement_history_blocks', help: 'First-write records kept for training', registers: [opts.registry], collect () { this.set(history.size) } })
    }
  }

  get current (): PlacementModel | null { return this.model }
  get modelInfo (): ModelInfo | null { return this.info }

  /** Listens to the proxies' reports, loads `placement.model`, starts the timers. */
  async start (): Promise<void> {
    this.embedder ??= await makeEmbedder(this.config.embedder, this.config.embedderModel === undefined ? {} : { model: this.config.embedderModel })
    this.unsubscribe = this.store.subscribe(event => {
      const fw = placementFirstWritesChannel.decode(event)
      if (fw !== undefined && fw !== null) { for (const r of fw.records) this.noteFirstWrite(r); return }
      const d = placementDecisionsChannel.decode(event)
      if (d !== undefined && d !== null) { this.decisions.model += d.model; this.decisions.origin += d.origin; this.decisions.hash += d.hash }
    })
    // Versions continue from the table in the store, so a new leader never reuses a number.
    try {
      const doc = await this.store.getDocument(PLACEMENT_TABLE_DOC)
      const t = placementTableSchema.safeParse(doc)
      if (t.success) this.version = t.data.model?.version ?? 0
    } catch { /* the store is away: versions start from 0, the next publish still goes out */ }
    if (this.config.model !== undefined) {
      try {
        await this.loadModelFile(this.config.model)
      } catch (err) {
        this.logger.warn({ err: (err as Error).message, path: this.config.model }, 'placement model not loaded; placing by write locality until one is trained')
      }
    }
    this.schedule()
  }

  stop (): void {
    this.clearTimers()
    this.unsubscribe?.()
    this.unsubscribe = null
  }

  reconfigure (config: PlacementConfig): void {
    const timers = config.retrainIntervalMs !== this.config.retrainIntervalMs || config.publishIntervalMs !== this.config.publishIntervalMs
    this.config = config
    if (timers && this.unsubscribe !== null) { this.clearTimers(); this.schedule() }
  }

  private clearTimers (): void {
    if (this.retrainTimer !== null) clearInterval(this.retrainTimer)
    if (this.publishTimer !== null) clearInterval(this.publishTimer)
    this.retrainTimer = this.publishTimer = null
  }

  private schedule (): void {
    if (this.config.retrainIntervalMs > 0) {
      this.retrainTimer = setInterval(() => {
        if (this.host.isLeader()) this.retrain('schedule').catch(err => { this.logger.warn({ err: (err as Error).message }, 'placement retrain failed') })
      }, this.config.retrainIntervalMs)
      this.retrainTimer.unref()
    }
    if (this.config.publishIntervalMs > 0) {
      this.publishTimer = setInterval(() => { void this.publish().catch(() => {}) }, this.config.publishIntervalMs)
      this.publishTimer.unref()
    }
  }

  /** A proxy's report of a first write: the earliest per block is kept, the oldest go first. */
  noteFirstWrite (r: FirstWriteRecord): void {
    const key = blockKey(r.volume, r.block)
    const had = this.history.get(key)
    if (had !== undefined && had.at <= r.at) return
    this.history.delete(key)
    this.history.set(key, r)
    while (this.history.size > this.config.maxHistory) {
      const oldest = this.history.keys().next().value as string
      this.history.delete(oldest)
    }
  }

  /** Called when this planner becomes leader: publish what it has at once. */
  async onElected (): Promise<void> {
    await this.publish().catch(err => { this.logger.warn({ err: (err as Error).message }, 'placement table not published; retried on the next interval') })
  }

  /**
   * Trains a model on the affinity map joined with the first-write history, compares it with
   * the model in use on held-out recent blocks and swaps it in only when its cross-entropy there
   * is lower. Concurrent calls share one run.
   */
  async retrain (reason: string, examples?: Iterable<TrainingExample>): Promise<RetrainResult> {
    if (this.running !== null) return await this.running
    this.running = this.runRetrain(reason, examples).finally(() => { this.running = null })
    return await this.running
  }

  private async runRetrain (reason: string, given?: Iterable<TrainingExample>): Promise<RetrainResult> {
    const started = this.now()
    const t0 = performance.now()
    const all = given !== undefined ? [...given] : await this.collect()
    const result: RetrainResult = { at: started, reason, swapped: false, durationMs: 0, examples: all.length, heldOut: 0, crossEntropy: null, version: null }
    const finish = (why?: string): RetrainResult => {
      result.durationMs = Math.round(performance.now() - t0)
      if (why !== undefined) result.why = why
      this.retrains++
      this.results.unshift(result)
      this.results.length = Math.min(this.results.length, RECENT_RESULTS)
      this.logger.info({ ...result }, result.swapped ? 'placement model swapped in' : 'placement model kept')
      return result
    }
    if (all.length < this.config.minExamples) return finish(`${all.length} blocks with access history, fewer than placement.minExamples (${this.config.minExamples})`)
    const { train, held: heldAll } = this.split(all)
    const held = this.labels(heldAll, started)
    result.heldOut = held.length
    const candidate = await PlacementModel.train(train, this.embedder as Embedder, this.trainOptions)
    if (candidate.sites.length === 0) return finish('no block has a site in its access history')
    const ce = await crossEntropy(candidate, held)
    const prior = priorCrossEntropy(candidate, held)
    const previous = this.model === null ? null : await crossEntropy(this.model, held)
    result.crossEntropy = { candidate: round(ce), prior: round(prior), previous: previous === null ? null : round(previous) }
    if (held.length === 0 && this.model !== null) return finish('no held-out blocks to compare the models on')
    if (previous !== null && !(ce < previous)) return finish('not better than the model in use on the held-out blocks')
    // Validated: the model that serves is trained on every block, the most recent included
    // (they say most about the next ones).
    const final = held.length === 0 ? candidate : await PlacementModel.train(all, this.embedder as Embedder, this.trainOptions)
    this.version++
    this.model = final
    this.info = {
      version: this.version, source: 'trained', trainedAt: final.trainedAt, loadedAt: this.now(), embedder: final.embedderName,
      examples: final.examples, sites: final.sites,
      heldOut: { blocks: held.length, crossEntropy: { model: round(ce), prior: round(prior), previous: previous === null ? null : round(previous) } }
    }
    result.swapped = true
    result.version = this.version
    await this.publish().catch(err => { this.logger.warn({ err: (err as Error).message }, 'placement table not published; retried on the next interval') })
    return finish()
  }

  /**
   * Held out: the blocks created since the model in use was trained (when there are enough of
   * them: the model in use has never seen them, so the comparison is fair), else the most
   * recently created `holdoutFraction`.
   */
  private split (all: TrainingExample[]): { train: TrainingExample[], held: TrainingExample[] } {
    const at = (e: TrainingExample): number => this.history.get(blockKey(e.meta.volume, e.meta.block))?.at ?? -Infinity
    const sorted = [...all].sort((a, b) => at(b) - at(a))
    const since = this.info === null ? Infinity : this.info.loadedAt
    let n = 0
    while (n < sorted.length && at(sorted[n] as TrainingExample) > since) n++
    if (n < MIN_FRESH_HOLDOUT) n = Math.max(1, Math.floor(sorted.length * this.config.holdoutFraction))
    n = Math.min(n, Math.floor(sorted.length / 2))
    return { held: sorted.slice(0, n), train: sorted.slice(n) }
  }

  /**
   * What the held-out blocks are scored on: where they were read *after* their creation. A
   * block's scores include its creating access, from its origin — which the model is given as
   * an input — so a young block's label is mostly that one access, and a model that only
   * predicts "the origin" wins on it. Taking it out (its weight decayed to `now`) and dropping
   * the blocks with nothing left keeps the comparison about reads. (Without it the first model,
   * trained on young blocks, was kept in 50 of 51 retrains on the NASA trace.) An even sample of
   * at most MAX_SCORED blocks.
   */
  private labels (held: readonly TrainingExample[], now: number): TrainingExample[] {
    const H = this.host.halfLifeMs?.()
    const out: TrainingExample[] = []
    for (const e of held) {
      const r = this.history.get(blockKey(e.meta.volume, e.meta.block))
      let scores = e.scores
      if (H !== undefined && H > 0 && r !== undefined && r.origin !== null && (scores[r.origin] ?? 0) > 0) {
        scores = { ...scores, [r.origin]: Math.max(0, (scores[r.origin] as number) - decayFactor(Math.max(0, now - r.at), H)) }
      }
      let total = 0
      for (const site in scores) total += scores[site] as number
      if (total >= MIN_LABEL) out.push(scores === e.scores ? e : { ...e, scores })
    }
    if (out.length <= MAX_SCORED) return out
    const step = out.length / MAX_SCORED
    return Array.from({ length: MAX_SCORED }, (_, i) => out[Math.floor(i * step)] as TrainingExample)
  }

  /** The affinity map (scores per site), joined with origins and metadata of the first writes. */
  private async collect (): Promise<TrainingExample[]> {
    const out: TrainingExample[] = []
    const H = this.host.halfLifeMs?.()
    const now = this.now()
    for await (const e of this.store.scanAffinity()) {
      if (out.length >= this.config.maxTrainingBlocks) break
      // Decayed to one time, so a block's creating access can be taken out of its label (labels()).
      out.push({ meta: this.metaOf(e.volume, e.block), scores: H === undefined ? e.scores : decayScores(e, now, H) })
    }
    return out
  }

  /** What a block is embedded by: its first-write record's origin and metadata, when there is one. */
  metaOf (volume: string, block: string): BlockMeta {
    return blockMetaOf(volume, block, this.history.get(blockKey(volume, block)))
  }

  /** Loads a `ferry train-placement` file and swaps it in (an operator's choice: no comparison). */
  async loadModelFile (path: string): Promise<ModelInfo> {
    try {
      let text: string
      try {
        text = await readFile(path, 'utf8')
      } catch (err) {
        throw new FerryError('FERRY_PLACEMENT_MODEL_UNREADABLE', `cannot read placement model ${path}: ${(err as Error).message}`, 400)
      }
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch {
        throw new FerryError('FERRY_PLACEMENT_BAD_MODEL', `placement model ${path} is not JSON`, 400)
      }
      const model = PlacementModel.fromJSON(json, this.embedder as Embedder)
      this.version++
      this.model = model
      this.info = { version: this.version, source: 'file', trainedAt: model.trainedAt, loadedAt: this.now(), embedder: model.embedderName, examples: model.examples, sites: model.sites, heldOut: null }
      this.lastLoadError = null
      await this.publish().catch(err => { this.logger.warn({ err: (err as Error).message }, 'placement table not published; retried on the next interval') })
      return this.info
    } catch (err) {
      if (err instanceof FerryError) this.lastLoadError = { at: this.now(), code: err.code, message: err.message }
      throw err
    }
  }

  /** The table for the proxies: the model's terms and every gateway's cost per site. */
  buildTable (): PlacementTable {
    const now = this.now()
    const gws = this.host.gateways(now)
    const room = this.host.meanBlockBytes()
    const exclude = gws.filter(g => !g.healthy || (g.capacityBytes > 0 && g.capacityBytes - g.usedBytes < room)).map(g => g.id)
    const model = this.model
    if (model === null || this.info === null) return emptyPlacementTable(exclude, now)
    const scorer = this.host.scorer()
    const sites = [...model.sites]
    const eligible = gws.filter(g => !exclude.includes(g.id))
    const cost = new Map(eligible.map(g => [g.id, new Array<number>(sites.length).fill(0)]))
    sites.forEach((site, s) => {
      for (const r of scorer.preferred({ [site]: 1 }, eligible)) (cost.get(r.gateway) as number[])[s] = r.costMs
    })
    const w = model.tableWeights(this.config.maxTableVolumes)
    return {
      format: PLACEMENT_TABLE_FORMAT,
      version: PLACEMENT_TABLE_VERSION,
      publishedAt: now,
      model: { version: this.info.version, trainedAt: this.info.trainedAt, embedder: this.info.embedder, examples: this.info.examples },
      sites,
      gateways: [...cost].map(([id, c]) => ({ id, cost: c })),
      exclude,
      prior: w.prior,
      volumes: Object.fromEntries(w.volumes),
      origins: Object.fromEntries(w.origins)
    }
  }

  /** Writes the table to the store and announces it (leader only). */
  async publish (): Promise<void> {
    if (!this.host.isLeader()) return
    const table = this.buildTable()
    await this.store.putDocument(PLACEMENT_TABLE_DOC, table)
    await placementTableChannel.publish(this.store, { version: table.model?.version ?? 0, publishedAt: table.publishedAt })
    this.table = table
  }

  /** GET /v1/placement */
  status (): object {
    return {
      enabled: this.config.enabled,
      leader: this.host.isLeader(),
      embedder: this.embedder?.name ?? null,
      model: this.info,
      retrains: this.retrains,
      lastRetrain: this.results[0] ?? null,
      recentRetrains: this.results,
      retraining: this.running !== null,
      history: { firstWrites: this.history.size, max: this.config.maxHistory },
      decisions: { ...this.decisions },
      table: this.table === null ? null : { publishedAt: this.table.publishedAt, modelVersion: this.table.model?.version ?? 0, volumes: Object.keys(this.table.volumes).length, exclude: this.table.exclude },
      lastLoadError: this.lastLoadError
    }
  }
}

/** The metadata a block is embedded by: its request path, and its content type, size and metadata headers as tags. */
export function blockMetaOf (volume: string, block: string, r: FirstWriteRecord | undefined): BlockMeta {
  const meta: BlockMeta = { volume, block }
  if (r === undefined) return meta
  if (r.origin !== null) meta.origin = r.origin
  if (r.path !== undefined) meta.path = r.path
  const tags: string[] = []
  if (r.contentType !== undefined) tags.push('type:' + r.contentType.split(';')[0]?.trim())
  if (r.size !== undefined) tags.push('size:2^' + Math.ceil(Math.log2(r.size + 1)))
  if (r.headers !== undefined) for (const [k, v] of Object.entries(r.headers)) tags.push(`${k.replace(/^x-(ferry|amz)-meta-/, '')}:${v}`)
  if (tags.length > 0) meta.tags = tags
  return meta
}

function observed (scores: Readonly<Record<string, number>>): Map<string, number> {
  const out = new Map<string, number>()
  let t = 0
  for (const [s, v] of Object.entries(scores)) if (v > 0 && Number.isFinite(v)) { out.set(s, v); t += v }
  for (const [s, v] of out) out.set(s, v / t)
  return out
}

function ce1 (q: Map<string, number>, p: Readonly<Record<string, number>>): number {
  let x = 0
  for (const [s, w] of q) x -= w * Math.log(Math.max(p[s] ?? 0, EPS))
  return x
}

/** Mean cross-entropy (nats) of `model`'s predictions against the observed site shares. */
export async function crossEntropy (model: PlacementModel, examples: readonly TrainingExample[]): Promise<number> {
  const used = examples.filter(e => observed(e.scores).size > 0)
  if (used.length === 0) return NaN
  const preds = await model.predictMany(used.map(e => e.meta))
  let sum = 0
  used.forEach((e, i) => { sum += ce1(observed(e.scores), preds[i] as Record<string, number>) })
  return sum / used.length
}

function priorCrossEntropy (model: PlacementModel, examples: readonly TrainingExample[]): number {
  const p = model.priorShares()
  const used = examples.map(e => observed(e.scores)).filter(q => q.size > 0)
  if (used.length === 0) return NaN
  return used.reduce((s, q) => s + ce1(q, p), 0) / used.length
}

function round (x: number): number {
  return Number.isFinite(x) ? Math.round(x * 10_000) / 10_000 : x
}
