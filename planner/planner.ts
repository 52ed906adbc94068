import os from 'node:os'
import { randomBytes } from 'node:crypto'
import { Gauge, Registry } from 'prom-client'
import type { GatewayConfig, SiteConfig } from '../fleet/schema.js'
import { silentLogger, type Logger } from '../lib/log.js'
import { LocationCache } from '../state/cache.js'
import type { StateStore } from '../state/types.js'
import { AffinityScorer, latencyMatrix } from './affinity/index.js'
import { parsePlannerConfig, type PlannerConfig, type PlannerConfigInput } from './config.js'
import { Drains, type DrainPassSummary, type DrainStatus } from './deciders/drains.js'
import { Evacuation } from './deciders/evacuation.js'
import { OperatorMoves, type MoveRequest, type MoveResult } from './deciders/operator.js'
import { Rebalancer } from './deciders/rebalancer.js'
import { ReplicaRepair } from './deciders/repair.js'
import { MoveSubmitter } from './deciders/submit.js'
import { Targets } from './deciders/targets.js'
import { LeaderElection } from './leader.js'
import { MigrationEngine } from './migration/engine.js'
import type { Fleet } from './migration/fleet.js'
import { HealthMonitor, PredictiveFleet } from './health-monitor.js'
import { NodeExporterScraper } from './telemetry.js'
import { replicationSectionSchema, type ReplicationConfig } from '../fleet/replication.js'
import { LivePlacement } from './partition/live.js'
import { MovementSwitch } from './movement-switch.js'
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

const DEFAULT_HALF_LIFE_MS = 600_000

export type { DrainStatus, MoveRequest, MoveResult }

/**
 * The planner role: the loop that runs the deciders and serves their status, over one shared
 * store. The deciders (deciders/: rebalancer, drains, evacuation, repair, operator moves) only
 * decide and submit move requests; the migration engine (migration/) is the one executor. Every
 * planner instance campaigns for the lease; only the leader's engine and deciders act, standbys
 * serve the read-only API from the store.
 */
export class Planner {
  readonly leader: LeaderElection
  readonly fleet: Fleet
  readonly engine: MigrationEngine
  /** Decider: moves blocks whose best gateway beats where they are by the margin. */
  readonly rebalancer: Rebalancer
  /** Restores each block's replication factor after a member is lost or stale. */
  readonly repair: ReplicaRepair
  /** Predictive health: scores telemetry, evacuates gateways predicted to fail. */
  readonly health: HealthMonitor
  /** The partitioning engine, live: retrains the placement model, publishes the proxies' table. */
  readonly placement: LivePlacement
  /** Every block location, kept current by notifications (drains, rebalancing, usage). */
  readonly locations: LocationCache
  /** Target choice and priority for one block, shared by the per-block deciders. */
  readonly targets: Targets
  /** Decider: drains (operator's and evacuations), persisted in the store. */
  readonly drains: Drains
  /** Decider: the health trigger's evacuations (drains with cause `health`). */
  readonly evacuation: Evacuation
  /** Decider: the operator's moves. */
  readonly operator: OperatorMoves
  /** The data-movement kill switch, kept in the store so that a new leader honours it. */
  readonly movement: MovementSwitch
  private config: PlannerConfig
  /** Ranks gateways by expected access latency (planner/affinity/); also serves /v1/affinity. */
  scorer: AffinityScorer
  readonly store: StateStore
  private readonly logger: Logger
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
    this.targets = new Targets({ store: opts.store, fleet, scorer: () => this.scorer, halfLifeMs: () => this.halfLifeMs })
    const submitter = new MoveSubmitter({ store: opts.store, fleet, engine: this.engine, locations: this.locations, targets: this.targets })
    this.operator = new OperatorMoves(opts.store, submitter)
    this.drains = new Drains({
      store: opts.store,
      fleet,
      engine: this.engine,
      locations: this.locations,
      submitter,
      targets: this.targets,
      holder: () => this.leader.holder,
      // Proxies stop creating blocks on a drained gateway now, not at the next periodic publish.
      onDrainStarted: () => { this.placement.publish().catch(() => {}) },
      logger: this.logger
    })
    this.evacuation = new Evacuation(this.drains)
    this.movement = new MovementSwitch({ store: opts.store, engine: this.engine, holder: () => this.leader.holder, logger: this.logger })
    this.rebalancer = new Rebalancer({
      store: opts.store,
      fleet: this.fleet,
      engine: this.engine,
      scorer: this.scorer,
      locations: this.locations,
      sites: this.sites,
      halfLifeMs: this.halfLifeMs,
      config: cfg.rebalancer,
      // The partitioning engine's expected site mix: where a quiet volume's blocks are expected to be read.
      basePrior: () => this.placement.current?.priorShares() ?? null,
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
        evacuate: async gw => await this.evacuation.evacuate(gw),
        release: async gw => await this.evacuation.release(gw),
        evacuating: gw => this.evacuation.evacuating(gw)
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
        meanBlockBytes: () => this.fleet.meanBlockBytes(),
        halfLifeMs: () => this.halfLifeMs
      }
    })
    this.locations.onChange(c => { this.fleet.noteLocation(c.volume, c.block, c.location) })
    this.leader.on('elected', () => { this.takeOver() })
    this.leader.on('deposed', reason => { this.engine.deactivate(reason) })
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

  /** Every decider and the status tick stop: what a graceful stop and a crash both begin with. */
  private stopDeciding (): void {
    this.started = false
    this.rebalancer.stop()
    this.repair.stop()
    this.health.stop()
    this.placement.stop()
    if (this.tickTimer !== null) clearInterval(this.tickTimer)
    this.tickTimer = null
  }

  /**
   * Graceful: migrations before their flip are rolled back, the lease is released (a standby
   * takes over at once), connections are closed. Flipped migrations finish under the next leader.
   */
  async stop (): Promise<void> {
    if (!this.started) return
    this.stopDeciding()
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
    this.stopDeciding()
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
    this.drains.reapply()
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
    await this.movement.sync() // before the engine starts anything a paused predecessor left queued
    await this.rebalancer.activate()
    await this.engine.activate()
    await this.drains.sync()
    await this.placement.onElected()
  }

  /** Periodic: drains pick up blocks that arrived on the gateway, or whose move failed. */
  private async tick (): Promise<void> {
    await this.movement.sync().catch(err => { this.logger.warn({ err: (err as Error).message }, 'could not read the data-movement switch from the store; keeping the one in force') })
    if (!this.engine.isActive) return
    await this.drains.tick()
  }

  // ─────────── what the admin API and ferry ctl call (each handed to its decider) ───────────

  /** Moves one block, or every known block of a volume, to `to` or to each block's best gateway. */
  async move (req: MoveRequest): Promise<MoveResult> { return await this.operator.move(req) }

  /** Moves everything off a gateway and keeps it from receiving blocks until `undrain`. */
  async drain (gateway: string, to?: string): Promise<DrainStatus> { return await this.drains.drain(gateway, to) }

  /** Ends a drain; any planner may be asked (the leader lifts it at its next tick). */
  async undrain (gateway: string): Promise<boolean> { return await this.drains.undrain(gateway) }

  /** The health trigger's evacuation of `gateway` (another pass when one is in force). */
  async evacuate (gateway: string): Promise<DrainPassSummary> { return await this.evacuation.evacuate(gateway) }

  /** Lifts a predictive evacuation; an operator's drain stays. True when one was lifted. */
  async releaseEvacuation (gateway: string): Promise<boolean> { return await this.evacuation.release(gateway) }

  drainStatus (gateway: string): DrainStatus | undefined { return this.drains.status(gateway) }

  listDrains (): DrainStatus[] { return this.drains.list() }

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
      drains: this.drains.list(),
      rebalancer: { enabled: this.config.rebalancer.enabled, lastRound: this.rebalancer.rounds.at(-1) ?? null }
    }
  }
}
