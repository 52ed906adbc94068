import { Counter, Gauge, type Registry } from 'prom-client'
import { FerryError } from '../../lib/errors.js'
import { blockKey } from '../../lib/ids.js'
import { silentLogger, type Logger } from '../../lib/log.js'
import { decayScores } from '../../state/affinity.js'
import type { BlockLocation, StateStore } from '../../state/types.js'
import { AffinityTable, type AffinityScorer } from '../affinity/index.js'
import type { RebalancerConfig } from '../config.js'
import type { MigrationEngine } from '../migration/engine.js'
import type { Fleet } from '../migration/fleet.js'
import { VolumeCoAccess } from '../prediction.js'

/** Where blocks are now: the planner's LocationCache (null: no location, undefined: not loaded). */
export interface LocationLookup {
  get (volume: string, block: string): BlockLocation | null | undefined
}

export interface RebalancerOptions {
  store: StateStore
  fleet: Fleet
  engine: MigrationEngine
  scorer: AffinityScorer
  locations: LocationLookup
  /** Configured site names. */
  sites: readonly string[]
  /** The store's affinity half-life (state.affinity.halfLifeMs): scores are decayed with it. */
  halfLifeMs: number
  config: RebalancerConfig
  /** Where accesses are expected when a volume is quiet (the placement model's prior shares), or null. */
  basePrior?: () => Readonly<Record<string, number>> | null
  logger?: Logger
  registry?: Registry
}

/** What one pass decided, for the admin API, metrics and tests. */
export interface RebalanceRound {
  at: number
  durationMs: number
  /** Blocks in the affinity map. */
  scanned: number
  /** Blocks whose best gateway beats the current one by the margin. */
  candidates: number
  /** Migrations started. */
  moves: number
  bytes: number
  skipped: { cold: number, dwell: number, busy: number, sourceDown: number, budget: number, capacity: number, refused: number }
  /** Volumes whose recent readers pulled their cold blocks this pass (the co-access signal). */
  activeVolumes: number
  /** Of `moves`, blocks too cold to move on their own traffic, moved towards their volume's readers. */
  predicted: number
}

const ROUNDS_KEPT = 64

/**
 * The seed's `migrate_shards`: every `intervalMs`, for every block in the store's affinity map,
 * rank the gateways by the block's expected access latency (AffinityScorer's kernel over its
 * decayed per-site scores) and move the block when the best one beats where it is now.
 *
 * Moves must be worth their cost and must not oscillate:
 * - **margin**: the best gateway must cut the expected latency by `margin` × the current one and
 *   by at least `minGainMs` — near-equal sites never trade a block back and forth;
 * - **dwell**: a block moved less than `minDwellMs` ago stays put, whatever its scores say
 *   (scores lag a shifting workload; without it a block can follow every wobble);
 * - **budget**: at most `maxMovesPerInterval` migrations and `maxBytesPerInterval` bytes per
 *   pass, most valuable first (latency saved × access score), so a mass shift is spread out;
 * - never onto an unhealthy, draining or full gateway (the kernel leaves those out; room is
 *   re-checked as moves are committed), never off a gateway that is down (nothing to copy).
 */
export class Rebalancer {
  private config: RebalancerConfig
  private readonly logger: Logger
  private timer: NodeJS.Timeout | null = null
  private running: Promise<RebalanceRound | null> | null = null
  /** When each block last moved (flip time), for the dwell rule. */
  private readonly lastMoved = new Map<string, number>()
  readonly rounds: RebalanceRound[] = []
  private readonly moves: Counter
  private sites: readonly string[]
  private halfLifeMs: number
  private scorer: AffinityScorer
  /** The predictive signal (kept across passes: it compares each pass's scan with the last one's). */
  private coAccess: VolumeCoAccess | null = null

  constructor (private readonly opts: RebalancerOptions) {
    this.config = opts.config
    this.sites = opts.sites
    this.halfLifeMs = opts.halfLifeMs
    this.scorer = opts.scorer
    this.logger = (opts.logger ?? silentLogger).child({ component: 'rebalancer' })
    const registers = opts.registry === undefined ? [] : [opts.registry]
    this.moves = new Counter({ name: 'ferry_planner_rebalance_moves_total', help: 'Migrations started by the rebalancer', registers })
    const rounds = this.rounds
    new Gauge({ name: 'ferry_planner_rebalance_candidates', help: 'Blocks that beat the margin in the last rebalancer pass', registers, collect () { this.set(rounds.at(-1)?.candidates ?? 0) } })
    opts.engine.on('flip', e => { this.lastMoved.set(blockKey(e.volume, e.block), Date.now()) })
    this.coAccess = this.newCoAccess()
  }

  private newCoAccess (): VolumeCoAccess | null {
    const c = this.config.coAccess
    if (!c.enabled) return null
    return new VolumeCoAccess({ sites: this.sites, halfLifeMs: this.halfLifeMs, activityHalfLifeMs: c.activityHalfLifeMs, activityScale: c.activityScale})
  }

  reconfigure (config: RebalancerConfig, sites: readonly string[], halfLifeMs: number, scorer: AffinityScorer): void {
    const restart = config.intervalMs !== this.config.intervalMs || config.enabled !== this.config.enabled
    const signal = JSON.stringify(config.coAccess) !== JSON.stringify(this.config.coAccess) || halfLifeMs !== this.halfLifeMs || sites.join() !== this.sites.join()
    this.config = config
    this.sites = sites
    this.halfLifeMs = halfLifeMs
    this.scorer = scorer
    if (signal) this.coAccess = this.newCoAccess()
    if (restart && this.timer !== null) { this.stop(); this.start() }
  }

  start (): void {
    if (this.timer !== null || !this.config.enabled) return
    this.timer = setInterval(() => {
      // Paused: a round would only fill the queue with moves decided on scores that are stale by resume.
      if (!this.opts.engine.isActive || this.opts.engine.isPaused) return
      // A store outage costs this round, nothing more: the next one starts from a fresh scan.
      this.round().catch(err => { this.logger.warn({ err: (err as Error).message }, 'rebalancer round skipped') })
    }, this.config.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /**
   * We became leader: remember the moves of the last `minDwellMs` from the migration log, so a
   * new leader does not move straight back what its predecessor just moved.
   */
  async activate (): Promise<void> {
    const since = Date.now() - this.config.minDwellMs
    try {
      for (const rec of await this.opts.store.listMigrations({ limit: 10_000 })) {
        if (rec.result === 'ok' && rec.endedAt !== null && rec.endedAt >= since) {
          const key = blockKey(rec.volume, rec.block)
          this.lastMoved.set(key, Math.max(this.lastMoved.get(key) ?? 0, rec.endedAt))
        }
      }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'could not read recent migrations for the dwell rule')
    }
  }

  /** One pass (concurrent calls share it). Null when this planner is not the leader. */
  round (): Promise<RebalanceRound | null> {
    this.running ??= this.pass().finally(() => { this.running = null })
    return this.running
  }

  private async pass (): Promise<RebalanceRound | null> {
    const { store, fleet, engine, locations } = this.opts
    const scorer = this.scorer
    if (!engine.isActive) return null
    const started = performance.now()
    const now = Date.now()
    const cfg = this.config
    for (const [key, at] of this.lastMoved) if (now - at >= cfg.minDwellMs) this.lastMoved.delete(key)

    // The affinity map, with where each block is now. Blocks mid-migration have no "current"
    // here, so the kernel never proposes them.
    const signal = this.coAccess
    const table = new AffinityTable({ sites: this.sites, halfLifeMs: this.halfLifeMs, now, priorWeight: signal === null ? 0 : cfg.coAccess.priorWeight })
    let scanned = 0
    for await (const entry of store.scanAffinity()) {
      scanned++
      table.load(entry)
      signal?.observe(entry.volume, decayScores(entry, now, this.halfLifeMs))
      const loc = locations.get(entry.volume, entry.block)
      if (loc === undefined) continue
      const current = loc === null ? fleet.hashed(blockKey(entry.volume, entry.block), now) : loc.phase === 'stable' ? loc.gateway : undefined
      if (current === undefined) continue
      table.setBlock(entry.volume, entry.block, { current, sizeBytes: fleet.sizeOf(entry.volume, entry.block) ?? 0 })
    }
    let activeVolumes = 0
    if (signal !== null) {
      signal.setBase(this.opts.basePrior?.() ?? null)
      signal.endRound(now)
      activeVolumes = signal.apply(table)
    }
    const infos = fleet.infos(now)
    const kernel = scorer.compile(table.sites, infos)
    const candidates = table.moveCandidates(kernel, { marginMs: cfg.minGainMs, marginRatio: cfg.margin, now })

    const round: RebalanceRound = {
      at: now, durationMs: 0, scanned, candidates: candidates.length, moves: 0, bytes: 0,
      skipped: { cold: 0, dwell: 0, busy: 0, sourceDown: 0, budget: 0, capacity: 0, refused: 0 },
      activeVolumes,
      predicted: 0
    }
    const room = new Map(infos.map(g => [g.id, g.capacityBytes === 0 ? Infinity : g.capacityBytes - g.usedBytes]))
    const mean = fleet.meanBlockBytes()
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i] as typeof candidates[number]
      if (round.moves >= cfg.maxMovesPerInterval) { round.skipped.budget += candidates.length - i; break }
      const key = blockKey(c.volume, c.block)
      // A block too cold to move on its own traffic still moves ahead of its readers when its
      // volume is being read now (the co-access signal); cold blocks of quiet volumes stay.
      const cold = c.score < cfg.minScore
      if (cold && signal?.isActive(c.volume) !== true) { round.skipped.cold++; continue }
      if (engine.busy(c.volume, c.block)) { round.skipped.busy++; continue }
      const moved = this.lastMoved.get(key)
      if (moved !== undefined && now - moved < cfg.minDwellMs) { round.skipped.dwell++; continue }
      if (!fleet.isHealthy(c.from, now)) { round.skipped.sourceDown++; continue }
      const size = c.sizeBytes > 0 ? c.sizeBytes : mean
      if (cfg.maxBytesPerInterval > 0 && round.bytes + size > cfg.maxBytesPerInterval && round.moves > 0) { round.skipped.budget++; continue }
      if ((room.get(c.to) ?? 0) < size) { round.skipped.capacity++; continue }
      try {
        await engine.submit({ volume: c.volume, block: c.block, to: c.to, reason: 'rebalance', priority: Number.isFinite(c.benefit) ? c.benefit : c.score })
      } catch (err) {
        round.skipped.refused++
        if (err instanceof FerryError && err.code === 'FERRY_PLANNER_NOT_LEADER') break
        this.logger.debug({ key, to: c.to, err: (err as Error).message }, 'rebalance move refused')
        continue
      }
      room.set(c.to, (room.get(c.to) ?? 0) - size)
      round.moves++
      if (cold) round.predicted++
      round.bytes += size
      this.moves.inc()
    }
    round.durationMs = Math.round(performance.now() - started)
    this.rounds.push(round)
    if (this.rounds.length > ROUNDS_KEPT) this.rounds.shift()
    if (round.moves > 0 || round.candidates > 0) this.logger.info(round, 'rebalance pass')
    return round
  }
}
