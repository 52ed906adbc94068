import { randomBytes } from 'node:crypto'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Logger } from '../lib/log.js'
import { placementDecisionsChannel, placementFirstWritesChannel, placementTableChannel, type FirstWriteRecord } from '../state/channels.js'
import type { StateStore } from '../state/types.js'
import type { RequestMetadata } from './metadata.js'
import { FirstTouchPlacer, type PlacementBy, type PlacementGateway } from './placer.js'
import { SingleFlight } from '../lib/single-flight.js'
import { PLACEMENT_TABLE_DOC, placementTableSchema } from './table.js'

/** First-write records waiting for the next report; beyond this the oldest are dropped (training data, not state). */
const MAX_PENDING = 20_000
const RECORDS_PER_MESSAGE = 100
/** Well under state.maxMessageBytes' default (64 KiB): records carry up to maxMetadataBytes of headers each. */
const BYTES_PER_MESSAGE = 32 * 1024

export interface PlacementClientOptions {
  store: StateStore
  gateways: readonly PlacementGateway[]
  /** The proxy's view of a gateway's health. */
  eligible: (id: string, now: number) => boolean
  reportIntervalMs: number
  registry: Registry
  logger: Logger
}

/**
 * The proxy's half of first-touch placement: a FirstTouchPlacer kept on the planner's latest
 * table (loaded at start and on every `placement-table` notice or store resync; a table that does
 * not validate is refused, counted and logged, and the one in use keeps serving), and the
 * reports the planner learns from — decision counts and first-write records — sent through the
 * store every `reportIntervalMs`.
 */
export class PlacementClient {
  readonly placer: FirstTouchPlacer
  private readonly store: StateStore
  private readonly logger: Logger
  private readonly from = `proxy:${process.pid}:${randomBytes(3).toString('hex')}`
  private pending: FirstWriteRecord[] = []
  private reported: Record<PlacementBy, number> = { model: 0, origin: 0, hash: 0 }
  private timer: NodeJS.Timeout | null = null
  private unsubscribe: (() => void) | null = null
  /** Loads the table document; notices that arrive during a load cause one more load after it. */
  private readonly loads = new SingleFlight(async () => { await this.load() })
  private readonly refused: Counter
  private reportIntervalMs: number

  constructor (opts: PlacementClientOptions) {
    this.store = opts.store
    this.logger = opts.logger
    this.reportIntervalMs = opts.reportIntervalMs
    this.placer = new FirstTouchPlacer(opts.gateways, opts.eligible)
    const registers = [opts.registry]
    const placer = this.placer
    new Counter({
      name: 'ferry_placement_decisions_total', help: 'First writes placed by this proxy since start, by how (model, origin: write locality, hash)', labelNames: ['by'], registers,
      collect () { this.reset(); for (const by of ['model', 'origin', 'hash'] as const) this.inc({ by }, placer.counts[by]) }
    })
    new Gauge({ name: 'ferry_placement_table_model_version', help: 'Version of the placement model in the table this proxy uses (0: none)', registers, collect () { this.set(placer.current?.model?.version ?? 0) } })
    this.refused = new Counter({ name: 'ferry_placement_tables_refused_total', help: 'Placement tables that did not validate (the previous one kept serving)', registers })
  }

  async start (): Promise<void> {
    this.unsubscribe = this.store.subscribe(event => {
      if (placementTableChannel.decode(event) !== undefined || event.type === 'resync') this.reload()
    })
    this.reload()
    await this.loads.settled()
    this.timer = setInterval(() => { void this.report() }, Math.max(100, this.reportIntervalMs))
    this.timer.unref()
  }

  async stop (): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.unsubscribe?.()
    this.unsubscribe = null
    await this.report()
  }

  reconfigure (gateways: readonly PlacementGateway[], reportIntervalMs: number): void {
    this.placer.setGateways(gateways)
    if (reportIntervalMs !== this.reportIntervalMs && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = setInterval(() => { void this.report() }, Math.max(100, reportIntervalMs))
      this.timer.unref()
    }
    this.reportIntervalMs = reportIntervalMs
  }

  /** Keeps what the planner will train on: where a block was created, and its content metadata. */
  noteFirstWrite (volume: string, block: string, origin: string | undefined, at: number, meta: RequestMetadata | undefined): void {
    if (this.pending.length >= MAX_PENDING) this.pending.shift()
    this.pending.push({ volume, block, origin: origin ?? null, at, ...meta })
  }

  private reload (): void {
    this.loads.request()
  }

  private async load (): Promise<void> {
    let doc: unknown
    try {
      doc = await this.store.getDocument(PLACEMENT_TABLE_DOC)
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'placement table not loaded (store); the one in use keeps serving')
      return
    }
    if (doc === null) return
    const r = placementTableSchema.safeParse(doc)
    if (!r.success) {
      this.refused.inc()
      const issue = r.error.issues[0]
      this.logger.warn({ issue: issue === undefined ? 'invalid' : `${issue.path.join('.')}: ${issue.message}` }, 'placement table refused; the one in use keeps serving')
      return
    }
    const before = this.placer.current?.publishedAt
    this.placer.setTable(r.data)
    if (before !== r.data.publishedAt) this.logger.debug({ model: r.data.model?.version ?? 0, volumes: Object.keys(r.data.volumes).length }, 'placement table loaded')
  }

  private async report (): Promise<void> {
    // A snapshot: decisions made while the publish is in flight belong to the next report (the
    // live counters would be marked reported without having been sent).
    const c = { ...this.placer.counts }
    const delta = { model: c.model - this.reported.model, origin: c.origin - this.reported.origin, hash: c.hash - this.reported.hash }
    const records = this.pending
    this.pending = []
    try {
      if (delta.model + delta.origin + delta.hash > 0) {
        await placementDecisionsChannel.publish(this.store, { from: this.from, ...delta })
        this.reported = c
      }
      let batch: FirstWriteRecord[] = []
      let bytes = 0
      for (const r of records) {
        const size = JSON.stringify(r).length
        if (batch.length > 0 && (batch.length >= RECORDS_PER_MESSAGE || bytes + size > BYTES_PER_MESSAGE)) {
          await placementFirstWritesChannel.publish(this.store, { from: this.from, records: batch })
          batch = []
          bytes = 0
        }
        batch.push(r)
        bytes += size
      }
      if (batch.length > 0) await placementFirstWritesChannel.publish(this.store, { from: this.from, records: batch })
    } catch (err) {
      // Counts are sent as deltas against what was reported, so they are retried by themselves;
      // first-write records are training data and may be lost with the store.
      this.logger.debug({ err: (err as Error).message }, 'placement report not sent')
    }
  }
}
