import os from 'node:os'
import { randomBytes } from 'node:crypto'
import { Gauge, Registry } from 'prom-client'
import type { GatewayConfig, SiteConfig } from '../fleet/schema.js'
import { FerryError } from '../lib/errors.js'
import { blockKey } from '../lib/ids.js'
import { silentLogger, type Logger } from '../lib/log.js'
import { LocationCache } from '../state/cache.js'
import type { DrainRecord, MigrationRecord, StateStore } from '../state/types.js'
import { AffinityScorer, latencyMatrix } from './affinity.js'
import { parsePlannerConfig, type PlannerConfig, type PlannerConfigInput } from './config.js'
import { LeaderElection } from './leader.js'
import { MigrationEngine } from './migration/engine.js'
import { plannerError } from './migration/errors.js'
import type { Fleet } from './migration/fleet.js'
import { HealthMonitor, PredictiveFleet, type EvacuationSummary } from './health-monitor.js'
import { Rebalancer } from './rebalancer.js'
import { NodeExporterScraper } from './telemetry.js'
import { ReplicaRepair } from './repair.js'
import { replicationSectionSchema, type ReplicationConfig } from '../fleet/replication.js'
import { LivePlacement } from './partition/live.js'
import { parsePlacementConfig, type PlacementConfigInput } from '../placement/config.js'

/** The parts of the ferry config the planner reads (a FerryConfig fits). */
export interface PlannerConfigPieces {
  gateways: readonly GatewayConfig[]
  sites: readonly SiteConfig[]
  planner?: PlannerConfigInput
  /** First-touch placement: training, validation and publishing of the placement table. */
  placement?: PlacementConfigInput
  /** The store's affinity half-life: scores are decayed with it. Default 10 min (the store's default). */
  state?: { affinity?: { halfLifeMs?: number } }
  /** Accepted for callers that pass the whole config; nothing of it is used any more (round 1's write hold). */
  proxy?: unknown
  /** Replica sets: the factor the repair decider restores. Default: R = 1. */
  replication?: ReplicationConfig
}

export interface PlannerOptions {
  config: PlannerConfigPieces
  store: StateStore
  logger?: Logger
  registry?: Registry
}

export interface MoveRequest {
  volume: string
  /** Omitted: every known block of the volume. */
  block?: string
  /** Omitted: the best gateway by affinity. */
  to?: string
  reason?: string
}

export interface MoveResult {
  migrations: MigrationRecord[]
  /** Blocks of a volume move that were not started, with why. */
  skipped: Array<{ block: string, code: string, message: string }>
}

export interface DrainStatus {
  gateway: string
  /** `operator`: POST /v1/gateways/:id/drain; `health`: the predictive trigger (lifted on recovery). */
  cause: 'operator' | 'health'
  state: 'draining' | 'drained'
  startedAt: number
  /** Placed blocks still on the gateway. */
  remaining: number
  migrations: { started: number, ok: number, failed: number, active: number }
  bytesMoved: number
  /** Blocks for which no target could be found in the last pass. */
  stuck: number
}

interface DrainState {
  gateway: string
  /** An operator's drain, or the health monitor's evacuation (which it lifts on recovery). */
  cause: 'operator' | 'health'
  to: string | undefined
  startedAt: number
  ids: Set<string>
  ok: number
  failed: number
  bytes: number
  stuck: number
}

const DEFAULT_HALF_LIFE_MS = 600_000

/**
 * The planner role: leader election, the migration engine, the rebalancer and the operator
 * controls, over one shared store. Every planner instance campaigns for the lease; only the
 * leader's engine and rebalancer act, standbys serve the read-only API from the store.
 */
export class Planner {
  readonly leader: LeaderElection
  readonly fleet: Fleet
  readonly engine: MigrationEngine
  readonly rebalancer: Rebalancer
  /** Restores each block's replication factor after a member is lost or stale. */
  readonly repair: ReplicaRepair
  /** Predictive health: scores telemetry, evacuates gateways predicted to fail. */
  readonly health: HealthMonitor
  /** The partitioning engine, live: retrains the placement model, publishes the proxies' table. */
  readonly placement: LivePlacement
  /** Every block location, kept current by notifications (drains, rebalancing, usage). */
  readonly locations: LocationCache
  private config: PlannerConfig
  /** Ranks gateways by expected access latency (planner/affinity.ts); also serves /v1/affinity. */
  scorer: AffinityScorer
  readonly store: StateStore
  private readonly logger: Logger
  /** The drains in force, as the store holds them (DrainRecord) plus this leader's progress. */
  private readonly drains = new Map<string, DrainState>()
  /** The store generation the drains were last read from (see syncDrains). */
  private drainsGeneration: string | undefined
  private tickTimer: NodeJS.Timeout | null = null
  private unsubscribe: (() => void) | null = null
  private started = false
  private sites: string[]
  private halfLifeMs: number
  /** Telemetry from node_exporter for gateways without an agent (planner.nodeExporter). */
  private scraper: NodeExporterScraper | undefined
  private readonly registry: Registry

  constructor (opts: PlannerOptions) {
    this.store = opts.store
    this.logger = (opts.logger ?? silentLogger).child({ role: 'planner' })
    this.registry = opts.registry ?? new Registry()
    this.config = parsePlannerConfig(opts.config.planner)
    const cfg = this.config
    this.sites = opts.config.sites.map(s => s.name)
    this.halfLifeMs = opts.config.state?.affinity?.halfLifeMs ?? DEFAULT_HALF_LIFE_MS
    this.scorer = new AffinityScorer({ latency: latencyMatrix(cfg.latency.between, cfg.latency) })
    this.leader = new LeaderElection(opts.store, {
      holder: cfg.holder ?? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
      ttlMs: cfg.lease.ttlMs,
      renewIntervalMs: cfg.lease.renewIntervalMs,
      logger: this.logger
    })
    const fleet = new PredictiveFleet(opts.config.gateways, cfg.health, { connections: cfg.migration.connectionsPerGateway, logger: this.logger })
    this.fleet = fleet
    this.engine = new MigrationEngine({ store: opts.store, fleet: this.fleet, leader: this.leader, config: cfg.migration, logger: this.logger, ...(opts.registry ? { registry: opts.registry } : {}) })
    this.locations = new LocationCache(opts.store, { logger: this.logger })
    this.rebalancer = new Rebalancer({
      store: opts.store,
      fleet: this.fleet,
      engine: this.engine,
      scorer: this.scorer,
      locations: this.locations,
      sites: this.sites,
      halfLifeMs: this.halfLifeMs,
      config: cfg.rebalancer,
      logger: this.logger,
      ...(opts.registry ? { registry: opts.registry } : {})
    })
    this.repair = new ReplicaRepair({
      store: opts.store, fleet: this.fleet, engine: this.engine, fence: () => this.leader.fence(),
      config: opts.config.replication ?? replicationSectionSchema.parse(undefined), logger: this.logger,
      ...(opts.registry ? { registry: opts.registry } : {})
    })
    this.health = new HealthMonitor({
      store: opts.store,
      config: cfg.prediction,
      logger: this.logger,
      ...(opts.registry ? { registry: opts.registry } : {}),
      host: {
        gateways: () => this.fleet.ids,
        isLeader: () => this.engine.isActive,
        evacuate: async gw => await this.evacuate(gw),
        release: gw => this.releaseEvacuation(gw),
        evacuating: gw => this.drains.get(gw)?.cause === 'health'
      }
    })
    fleet.setPredictions(id => this.health.prediction(id))
    this.placement = new LivePlacement({
      store: opts.store,
      config: parsePlacementConfig(opts.config.placement),
      logger: this.logger,
      ...(opts.registry ? { registry: opts.registry } : {}),
      host: {
        isLeader: () => this.engine.isActive,
        gateways: now => this.fleet.infos(now),
        scorer: () => this.scorer,
        meanBlockBytes: () => this.fleet.meanBlockBytes()
      }
    })
    this.locations.onChange(c => { this.fleet.noteLocation(c.volume, c.block, c.location) })
    this.leader.on('elected', () => { this.takeOver() })
    this.leader.on('deposed', reason => { this.engine.deactivate(reason) })
    this.engine.on('end', rec => { this.onMigrationEnd(rec) })
    this.scraper = this.newScraper(cfg)
    if (opts.registry !== undefined) {
      const leader = this.leader
      new Gauge({ name: 'ferry_planner_leader', help: '1 while this planner holds the leader lease', registers: [opts.registry], collect () { this.set(leader.isLeader ? 1 : 0) } })
    }
  }

  get isLeader (): boolean { return this.leader.isLeader }
  get plannerConfig (): PlannerConfig { return this.config }

  /** Loads locations, starts probing gateways and campaigning for the lease. */
  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.unsubscribe = this.store.subscribe(e => { this.fleet.onStoreEvent(e) })
    await this.locations.start()
    this.fleet.startProbes()
    this.rebalancer.start()
    this.repair.start()
    this.health.start()
    this.scraper?.start()
    await this.placement.start()
    this.tickTimer = setInterval(() => { void this.tick() }, this.config.migration.recoveryIntervalMs)
    this.tickTimer.unref()
    await this.leader.start()
  }

  /**
   * Graceful: migrations before their flip are rolled back, the lease is released (a standby
   * takes over at once), connections are closed. Flipped migrations finish under the next leader.
   */
  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.rebalancer.stop()
    this.repair.stop()
    this.health.stop()
    this.placement.stop()
    if (this.tickTimer !== null) clearInterval(this.tickTimer)
    this.tickTimer = null
    await this.scraper?.stop()
    await this.engine.stop()
    await this.leader.stop()
    this.unsubscribe?.()
    this.locations.close()
    await this.fleet.close()
  }

  /**
   * As a crash (for tests and the "planner killed mid-copy" drills): nothing more is written,
   * connections are cut mid-request, the lease is left to expire.
   */
  async kill (): Promise<void> {
    this.started = false
    this.rebalancer.stop()
    this.repair.stop()
    this.health.stop()
    this.placement.stop()
    if (this.tickTimer !== null) clearInterval(this.tickTimer)
    this.tickTimer = null
    this.leader.kill()
    this.engine.kill()
    void this.scraper?.stop()
    this.unsubscribe?.()
    this.locations.close()
    await this.fleet.destroy()
  }

  /** Applies a reloaded config: gateways, sites, latency, limits. The lease holder name is kept. */
  reconfigure (config: PlannerConfigPieces): void {
    const cfg = parsePlannerConfig(config.planner)
    const previous = this.config
    this.config = cfg
    this.sites = config.sites.map(s => s.name)
    this.halfLifeMs = config.state?.affinity?.halfLifeMs ?? DEFAULT_HALF_LIFE_MS
    this.scorer = new AffinityScorer({ latency: latencyMatrix(cfg.latency.between, cfg.latency) })
    this.leader.reconfigure(cfg.lease.ttlMs, cfg.lease.renewIntervalMs)
    this.fleet.reconfigure(config.gateways, cfg.health, cfg.migration.connectionsPerGateway)
    this.engine.reconfigure(cfg.migration)
    this.rebalancer.reconfigure(cfg.rebalancer, this.sites, this.halfLifeMs, this.scorer)
    if (config.replication !== undefined) this.repair.reconfigure(config.replication)
    this.health.reconfigure(cfg.prediction)
    if (JSON.stringify(cfg.nodeExporter) !== JSON.stringify(previous.nodeExporter)) {
      void this.scraper?.stop()
      this.scraper = this.newScraper(cfg)
      if (this.started) this.scraper?.start()
    }
    this.placement.reconfigure(parsePlacementConfig(config.placement))
    for (const id of this.drains.keys()) this.fleet.setDraining(id, true)
    if (this.tickTimer !== null) {
      clearInterval(this.tickTimer)
      this.tickTimer = setInterval(() => { void this.tick() }, cfg.migration.recoveryIntervalMs)
      this.tickTimer.unref()
    }
  }

  /** Only the leader scrapes: every planner scraping would store each sample once per planner. */
  private newScraper (cfg: PlannerConfig): NodeExporterScraper | undefined {
    const n = cfg.nodeExporter
    if (Object.keys(n.targets).length === 0) return undefined
    return new NodeExporterScraper({
      store: this.store,
      targets: n.targets,
      intervalMs: n.intervalMs,
      timeoutMs: n.timeoutMs,
      registry: this.registry,
      logger: this.logger,
      active: () => this.leader.isLeader
    })
  }

  /** onElected until it succeeds, while we lead: a store blip during take-over must not leave a leader that never acts. */
  private takeOver (): void {
    this.onElected().catch(err => {
      this.logger.warn({ err: (err as Error).message }, 'taking over as leader failed; retrying')
      const retry = setTimeout(() => { if (this.started && this.leader.isLeader) this.takeOver() }, 1000)
      retry.unref()
    })
  }

  private async onElected (): Promise<void> {
    // Look before acting: a gateway that died while nobody led must not be chosen as a target.
    await this.fleet.probeAll()
    if (!this.leader.isLeader) return
    await this.rebalancer.activate()
    await this.engine.activate()
    await this.syncDrains()
    await this.placement.onElected()
  }

  /** Periodic: drains pick up blocks that arrived on the gateway, or whose move failed. */
  private async tick (): Promise<void> {
    if (!this.engine.isActive) return
    await this.syncDrains().catch(err => { this.logger.warn({ err: (err as Error).message }, 'could not read the drains from the store; keeping the ones in force') })
    for (const gateway of this.drains.keys()) {
      await this.drainPass(gateway).catch(err => { this.logger.warn({ gateway, err: (err as Error).message }, 'drain pass failed') })
    }
  }

  // ───────────────────────────── operator controls ─────────────────────────────

  /** Moves one block, or every known block of a volume, to `to` or to each block's best gateway. */
  async move (req: MoveRequest): Promise<MoveResult> {
    if (req.to !== undefined) this.checkTarget(req.to)
    const reason = req.reason ?? 'operator'
    if (req.block !== undefined) {
      return { migrations: [await this.moveOne(req.volume, req.block, req.to, reason)], skipped: [] }
    }
    const blocks = await this.blocksOfVolume(req.volume)
    if (blocks.length === 0) throw plannerError('FERRY_BLOCK_NOT_FOUND', `no known block of volume ${req.volume} (placed, or in the affinity map)`, 404)
    const out: MoveResult = { migrations: [], skipped: [] }
    const planned = new Map<string, number>()
    for (const block of blocks) {
      try {
        out.migrations.push(await this.moveOne(req.volume, block, req.to, reason, planned))
      } catch (err) {
        if (!(err instanceof FerryError) || err.statusCode >= 500) throw err
        out.skipped.push({ block, code: err.code, message: err.message })
      }
    }
    return out
  }

  private async moveOne (volume: string, block: string, to: string | undefined, reason: string, planned?: Map<string, number>): Promise<MigrationRecord> {
    const key = blockKey(volume, block)
    if (this.engine.busy(volume, block)) throw plannerError('FERRY_BLOCK_BUSY', `block ${key} is already being moved`, 409)
    const loc = this.locations.get(volume, block) ?? await this.store.getLocation(volume, block)
    if (loc !== null && loc.phase !== 'stable') throw plannerError('FERRY_BLOCK_BUSY', `block ${key} is in ${loc.phase} (a migration is being finished)`, 409)
    const current = loc?.gateway ?? this.fleet.hashed(key) ?? null
    const size = this.fleet.sizeOf(volume, block) ?? this.fleet.meanBlockBytes()
    const target = to ?? await this.rebalancer.bestTarget(volume, block, current, size, planned)
    if (target === undefined) throw plannerError('FERRY_NO_TARGET', `no healthy gateway with room to move ${key} to`, 409)
    if (loc !== null && loc !== undefined && loc.gateway === target) throw plannerError('FERRY_MIGRATION_NOOP', `block ${key} is already on ${target}`, 409)
    const rec = await this.engine.submit({ volume, block, to: target, reason, priority: await this.rebalancer.score(volume, block) })
    planned?.set(target, (planned.get(target) ?? 0) + size)
    return rec
  }

  private checkTarget (id: string): void {
    if (!this.fleet.has(id)) throw plannerError('FERRY_UNKNOWN_GATEWAY', `no gateway ${id} is configured`, 404)
    if (!this.fleet.isTarget(id)) throw plannerError('FERRY_TARGET_UNAVAILABLE', `gateway ${id} is ${this.fleet.get(id)?.draining === true ? 'draining' : 'down'}`, 409)
  }

  /** Blocks of a volume the planner knows: placed ones and those in the affinity map. */
  private async blocksOfVolume (volume: string): Promise<string[]> {
    const blocks = new Set<string>()
    for await (const { volume: v, block } of this.store.scanLocations()) if (v === volume) blocks.add(block)
    for await (const { volume: v, block } of this.store.scanAffinity()) if (v === volume) blocks.add(block)
    return [...blocks].sort()
  }

  /**
   * Moves everything off a gateway and keeps it from receiving blocks (it counts as unhealthy
   * for every ranking) until `undrain`. Blocks are moved hottest first; blocks that arrive on it
   * later (a proxy's first write) or whose move failed are picked up by the next pass.
   */
  async drain (gateway: string, to?: string): Promise<DrainStatus> {
    if (!this.fleet.has(gateway)) throw plannerError('FERRY_UNKNOWN_GATEWAY', `no gateway ${gateway} is configured`, 404)
    if (to !== undefined) {
      if (to === gateway) throw plannerError('FERRY_TARGET_UNAVAILABLE', `cannot drain ${gateway} onto itself`, 409)
      this.checkTarget(to)
    }
    if (!this.engine.isActive) throw plannerError('FERRY_PLANNER_NOT_LEADER', 'this planner is not the leader', 503, { holder: this.leader.holder })
    // Recorded before anything moves: a drain the store does not hold would end with this leader.
    // An operator's drain of a gateway under evacuation becomes the operator's: recovery no longer lifts it.
    const startedAt = this.drains.get(gateway)?.startedAt ?? Date.now()
    await this.store.putDrain({ gateway, cause: 'operator', to: to ?? null, startedAt })
    this.adoptDrain({ gateway, cause: 'operator', to: to ?? null, startedAt })
    // Proxies stop creating blocks on it now, not at the next periodic publish.
    this.placement.publish().catch(() => {})
    await this.drainPass(gateway)
    return this.drainStatus(gateway) as DrainStatus
  }

  /**
   * The health monitor's evacuation: a drain (hottest first, each block to its best target by
   * affinity, capacity and predicted health) that the monitor lifts once the gateway has clearly
   * recovered. Repeated calls run another pass. An operator's drain in force is left as it is.
   */
  async evacuate (gateway: string): Promise<EvacuationSummary> {
    if (!this.fleet.has(gateway)) throw plannerError('FERRY_UNKNOWN_GATEWAY', `no gateway ${gateway} is configured`, 404)
    if (!this.engine.isActive) throw plannerError('FERRY_PLANNER_NOT_LEADER', 'this planner is not the leader', 503, { holder: this.leader.holder })
    if (!this.drains.has(gateway)) {
      const record: DrainRecord = { gateway, cause: 'health', to: null, startedAt: Date.now() }
      await this.store.putDrain(record)
      this.adoptDrain(record)
    }
    return await this.drainPass(gateway)
  }

  /** Lifts a predictive evacuation; an operator's drain stays. True when one was lifted. */
  async releaseEvacuation (gateway: string): Promise<boolean> {
    if (this.drains.get(gateway)?.cause !== 'health') return false
    return await this.undrain(gateway)
  }

  /**
   * Ends a drain: the gateway may receive blocks again. Any planner may be asked: the store is
   * where drains live, and the leader lifts one the store no longer holds at its next tick.
   */
  async undrain (gateway: string): Promise<boolean> {
    if (!this.fleet.has(gateway)) throw plannerError('FERRY_UNKNOWN_GATEWAY', `no gateway ${gateway} is configured`, 404)
    const stored = await this.store.deleteDrain(gateway)
    const here = this.liftDrain(gateway)
    return stored || here
  }

  /** Puts a stored drain in force here (or updates its cause and target). */
  private adoptDrain (r: DrainRecord): DrainState {
    this.fleet.setDraining(r.gateway, true)
    let d = this.drains.get(r.gateway)
    if (d === undefined) {
      d = { gateway: r.gateway, cause: r.cause, to: r.to ?? undefined, startedAt: r.startedAt, ids: new Set(), ok: 0, failed: 0, bytes: 0, stuck: 0 }
      this.drains.set(r.gateway, d)
    } else {
      d.cause = r.cause
      d.to = r.to ?? undefined
    }
    return d
  }

  private liftDrain (gateway: string): boolean {
    this.fleet.setDraining(gateway, false)
    return this.drains.delete(gateway)
  }

  /**
   * Makes the drains in force here the ones the store holds: a new leader takes over its
   * predecessor's (with the moves still running off each drained gateway), and a drain ended
   * through another planner is lifted. When the store's generation changed it lost its data
   * (restarted empty): then what is missing there was lost, not ended, so it is written back.
   */
  private async syncDrains (): Promise<void> {
    const generation = (await this.store.generation()).id
    const stored = new Map((await this.store.listDrains()).map(r => [r.gateway, r]))
    if (this.drainsGeneration !== undefined && generation !== this.drainsGeneration) {
      for (const d of this.drains.values()) {
        if (!stored.has(d.gateway)) await this.store.putDrain({ gateway: d.gateway, cause: d.cause, to: d.to ?? null, startedAt: d.startedAt })
      }
      this.drainsGeneration = generation
      return
    }
    this.drainsGeneration = generation
    for (const gateway of [...this.drains.keys()]) if (!stored.has(gateway)) this.liftDrain(gateway)
    let adopted = false
    for (const r of stored.values()) {
      if (!this.fleet.has(r.gateway)) continue // removed from the config: nothing to drain
      if (!this.drains.has(r.gateway)) adopted = true
      this.adoptDrain(r)
    }
    if (!adopted) return
    // Moves a predecessor started off a drained gateway count for its drain.
    for (const rec of await this.store.listMigrations({ active: true, limit: 100_000 })) {
      this.drains.get(rec.from)?.ids.add(rec.id)
    }
  }

  drainStatus (gateway: string): DrainStatus | undefined {
    const d = this.drains.get(gateway)
    if (d === undefined) return undefined
    const remaining = this.fleet.blocksOn(gateway).length
    const active = d.ids.size - d.ok - d.failed
    return {
      gateway,
      cause: d.cause,
      state: remaining === 0 && active === 0 ? 'drained' : 'draining',
      startedAt: d.startedAt,
      remaining,
      migrations: { started: d.ids.size, ok: d.ok, failed: d.failed, active },
      bytesMoved: d.bytes,
      stuck: d.stuck
    }
  }

  listDrains (): DrainStatus[] {
    return [...this.drains.keys()].map(g => this.drainStatus(g) as DrainStatus)
  }

  private async drainPass (gateway: string): Promise<EvacuationSummary> {
    const summary: EvacuationSummary = { blocks: 0, started: 0, stuck: 0, first: [] }
    const d = this.drains.get(gateway)
    if (d === undefined || !this.engine.isActive) return summary
    const keys = new Set(this.fleet.blocksOn(gateway))
    // Blocks never placed are served by hash: the ones the affinity map knows and that hash here.
    for await (const e of this.store.scanAffinity()) {
      const key = blockKey(e.volume, e.block)
      if (this.locations.get(e.volume, e.block) === null && this.fleet.hashed(key) === gateway) keys.add(key)
    }
    const blocks = await Promise.all([...keys].map(async key => {
      const slash = key.indexOf('/')
      const volume = key.slice(0, slash)
      const block = key.slice(slash + 1)
      return { volume, block, score: await this.rebalancer.score(volume, block).catch(() => 0) }
    }))
    blocks.sort((a, b) => b.score - a.score)
    summary.blocks = blocks.length
    const planned = new Map<string, number>()
    let stuck = 0
    for (const { volume, block, score } of blocks) {
      if (this.engine.busy(volume, block)) continue
      const loc = this.locations.get(volume, block)
      if (loc !== null && loc !== undefined && (loc.phase !== 'stable' || loc.gateway !== gateway)) continue
      try {
        const rec = await this.moveOne(volume, block, d.to, `${d.cause === 'health' ? 'health' : 'drain'}:${gateway}`, planned)
        d.ids.add(rec.id)
        summary.started++
        if (summary.first.length < 5) summary.first.push({ volume, block, score: Math.round(score * 1000) / 1000, to: rec.to })
      } catch (err) {
        if (!(err instanceof FerryError)) throw err
        if (err.code === 'FERRY_NO_TARGET' || err.code === 'FERRY_TARGET_UNAVAILABLE') stuck++
        else if (err.code === 'FERRY_PLANNER_NOT_LEADER') return summary
        else this.logger.debug({ volume, block, err: err.message }, 'drain move not started')
      }
    }
    d.stuck = summary.stuck = stuck
    return summary
  }

  private onMigrationEnd (rec: MigrationRecord): void {
    const d = this.drains.get(rec.from)
    if (d === undefined || !d.ids.has(rec.id)) return
    if (rec.result === 'ok') { d.ok++; d.bytes += rec.bytes } else d.failed++
  }

  /** For GET /v1/planner. */
  status (): Record<string, unknown> {
    const fence = this.leader.fence()
    const now = Date.now()
    return {
      holder: this.leader.holder,
      leader: fence !== null,
      token: fence?.token ?? null,
      leaseValidForMs: this.leader.validForMs(),
      paused: this.engine.isPaused,
      migrations: { queued: this.engine.queued, running: this.engine.inFlight, ended: this.engine.counts, recopies: this.engine.recopies },
      gateways: this.fleet.all().map(g => ({
        id: g.id,
        site: g.site,
        healthy: this.fleet.isHealthy(g.id, now),
        draining: g.draining,
        probe: { up: g.probe.up, lastAt: g.probe.lastAt || null, lastError: g.probe.lastError },
        reportedDownBy: this.fleet.reportedDownBy(g.id, now),
        placedBlocks: this.fleet.blocksOn(g.id).length,
        usedBytesEstimate: Math.round(this.fleet.usedBytes(g.id)),
        capacityBytes: g.capacityBytes
      })),
      drains: this.listDrains(),
      rebalancer: { enabled: this.config.rebalancer.enabled, lastRound: this.rebalancer.rounds.at(-1) ?? null }
    }
  }
}
