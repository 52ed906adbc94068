import { Counter, Gauge, type Registry } from 'prom-client'
import { FerryError } from '../../lib/errors.js'
import { blockKey } from '../../lib/ids.js'
import { silentLogger, type Logger } from '../../lib/log.js'
import { decayScores } from '../../state/affinity.js'
import type { BlockLocation, StateStore } from '../../state/types.js'
import { AffinityTable, bestReplacement, type AffinityScorer, type GatewayInfo, type MoveCandidate, type PlanOptions, type PlannedMove as TableMove, type PreferenceKernel } from '../affinity/index.js'
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

/** Why a round passes a candidate over (`refused`, the engine saying no, is known only by trying). */
type SkipReason = Exclude<keyof RebalanceRound['skipped'], 'refused'>

/**
 * One candidate of a dry run: the kernel's figures — ms saved per access (null: the block's
 * gateway is down, so any target wins), decayed access score, benefit (their product) — and the verdict.
 */
export interface PlannedMove extends Omit<MoveCandidate, 'gainMs' | 'benefit'> {
  gainMs: number | null
  benefit: number | null
  /** The block's decayed access scores per site: what the ranking weighed. */
  sites: Record<string, number>
  /** `member`: the target is already an in-sync member of the block's set, so the engine would refuse the move (counted as `refused`). */
  verdict: 'move' | SkipReason | 'member'
}

/** A dry run of the next round (Rebalancer.plan). */
export interface RebalancePlan extends RebalanceRound {
  enabled: boolean
  rules: Pick<RebalancerConfig, 'margin' | 'minGainMs' | 'minScore' | 'minDwellMs' | 'maxMovesPerInterval' | 'maxBytesPerInterval'>
  /** Candidates by benefit, most valuable first, up to the limit asked for. */
  decisions: PlannedMove[]
}

const ROUNDS_KEPT = 64

const emptyRound = (at: number, scanned: number, candidates: number, activeVolumes: number): RebalanceRound => ({
  at, durationMs: 0, scanned, candidates, moves: 0, bytes: 0,
  skipped: { cold: 0, dwell: 0, busy: 0, sourceDown: 0, budget: 0, capacity: 0, refused: 0 },
  activeVolumes,
  predicted: 0
})

/** JSON has no Infinity: null. */
const round2 = (x: number): number | null => Number.isFinite(x) ? Math.round(x * 100) / 100 : null

/** What a round needs to know of the world beyond the table, for blocks that must stay put this round. */
export interface RoundWorld {
  /** A migration of the block is queued or running. */
  busy?: (volume: string, block: string) => boolean
  /** The gateway can be copied from (a block on a gateway that is down has nothing to copy). */
  healthy?: (gateway: string) => boolean
  /** Volumes whose cold blocks move anyway (the co-access signal). */
  pulled?: (volume: string) => boolean
  /** planMoves' `settled`: the headroom pass leaves a gateway alone while copies arrive at or leave it. */
  settled?: (gateway: string) => boolean
  /** Every gain candidate with its verdict, and every make-room move ('move'), as decided. */
  decided?: (move: TableMove, verdict: 'move' | SkipReason) => void
}

/**
 * The rules of a rebalancer round, as one object that the live Rebalancer and the placement
 * benchmark (bench/placement.ts, in trace time) both run, with the same config and defaults
 * (issue 21, "one code path"): for single copies AffinityTable.planMoves with the config's
 * hysteresis, budget, headroom and `minScore`; for replica sets the per-member decision
 * (`setCandidate`, `checkSet`); and the dwell rule over the moves it was told of (`moved`).
 */
export class RoundRules {
  /** When each block last moved (flip time), for the dwell rule. */
  readonly lastMoved = new Map<string, number>()

  constructor (public config: RebalancerConfig) {}

  moved (volume: string, block: string, at: number): void { this.lastMoved.set(blockKey(volume, block), at) }

  /** Moved less than `minDwellMs` before `now`. */
  dwelling (volume: string, block: string, now: number): boolean {
    const at = this.lastMoved.get(blockKey(volume, block))
    return at !== undefined && now - at < this.config.minDwellMs
  }

  /** Forgets the moves that no longer hold a block (bounded memory). */
  expire (now: number): void {
    for (const [key, at] of this.lastMoved) if (now - at >= this.config.minDwellMs) this.lastMoved.delete(key)
  }

  /** Why a block must stay where it is this round, whatever it would gain (replica sets ask too), or null. */
  held (volume: string, block: string, from: string, now: number, world: RoundWorld): 'busy' | 'dwell' | 'sourceDown' | null {
    if (world.busy?.(volume, block) === true) return 'busy'
    if (this.dwelling(volume, block, now)) return 'dwell'
    if (from !== '' && world.healthy !== undefined && !world.healthy(from)) return 'sourceDown'
    return null
  }

  /**
   * A replica set's best single change (planner/affinity/sets.ts): the member whose replacement
   * by a gateway outside the set cuts the set's cost with nearest-member reads the most, when
   * that beats the margin. `members`: the set's gateways in set order, all known and healthy
   * (the caller leaves any other set to repair); `sizeBytes`: the block's size, 0 when unknown
   * (then the fleet's `meanBytes`). Also what the placement benchmark runs at R > 1.
   */
  setCandidate (scorer: AffinityScorer, volume: string, block: string, scores: Readonly<Record<string, number>>, members: readonly GatewayInfo[], gateways: readonly GatewayInfo[], sizeBytes: number, meanBytes: number): MoveCandidate | null {
    let score = 0
    for (const site in scores) score += Math.max(0, scores[site] as number)
    const r = bestReplacement(scorer, scores, members, gateways, sizeBytes > 0 ? sizeBytes : meanBytes)
    if (r === null) return null
    const gainMs = r.costMs - r.afterMs
    if (gainMs <= Math.max(this.config.minGainMs, this.config.margin * r.costMs)) return null
    return { volume, block, from: r.from, to: r.to, gainMs, score, benefit: gainMs * score, sizeBytes, replacesMember: true }
  }

  /**
   * A replica set's candidate against the round's rules so far (`round`: moves and bytes already
   * started this round; `room`: each gateway's room now): why it is skipped, or the bytes it
   * would move. The budget in moves is the caller's loop (it stops there).
   */
  checkSet (c: MoveCandidate, round: Pick<RebalanceRound, 'moves' | 'bytes'>, room: ReadonlyMap<string, number>, meanBytes: number, now: number, world: RoundWorld): SkipReason | number {
    const cfg = this.config
    // A block too cold to move on its own traffic still moves ahead of its readers when its
    // volume is being read now (the co-access signal); cold blocks of quiet volumes stay.
    if (c.score < cfg.minScore && world.pulled?.(c.volume) !== true) return 'cold'
    const held = this.held(c.volume, c.block, c.from, now, world)
    if (held !== null) return held
    const size = c.sizeBytes > 0 ? c.sizeBytes : meanBytes
    if (cfg.maxBytesPerInterval > 0 && round.bytes + size > cfg.maxBytesPerInterval && round.moves > 0) return 'budget'
    if ((room.get(c.to) ?? 0) < size) return 'capacity'
    return size
  }

  /** The round's moves, in the order to run them (make-room moves before the move they make room for). */
  plan (table: AffinityTable, kernel: PreferenceKernel, now: number, world: RoundWorld = {}, skipped: Record<string, number> = {}): TableMove[] {
    const cfg = this.config
    const decided = world.decided
    const opts: PlanOptions = {
      marginMs: cfg.minGainMs,
      marginRatio: cfg.margin,
      maxMoves: cfg.maxMovesPerInterval,
      maxBytes: cfg.maxBytesPerInterval > 0 ? cfg.maxBytesPerInterval : Infinity,
      headroom: cfg.headroom,
      minScore: cfg.minScore,
      now,
      skipped,
      hold: (volume, block, from) => this.held(volume, block, from, now, world),
      ...(world.pulled === undefined ? {} : { pulled: world.pulled }),
      ...(world.settled === undefined ? {} : { settled: world.settled }),
      ...(decided === undefined ? {} : { decided: (m: TableMove, verdict: string) => decided(m, verdict as 'move' | SkipReason) })
    }
    return table.planMoves(kernel, opts)
  }
}

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
 * - **cold**: a block whose decayed score is below `minScore` does not move for its own gain
 *   (unless the co-access signal pulls its volume);
 * - never onto an unhealthy, draining or full gateway, never off a gateway that is down
 *   (nothing to copy). Capacity is handled as in planMoves: cold blocks are pushed off a full
 *   gateway to make room for hot ones, and `headroom` of each bounded gateway is kept free.
 *
 * Single-copy blocks are decided by RoundRules (the same object the placement benchmark runs);
 * replica sets, per member (RoundRules.setCandidate, checkSet), with what budget the single
 * copies left.
 */
export class Rebalancer {
  private config: RebalancerConfig
  private readonly logger: Logger
  private timer: NodeJS.Timeout | null = null
  private running: Promise<RebalanceRound | null> | null = null
  /** The single-copy decisions and the dwell rule's memory. */
  private readonly rules: RoundRules
  readonly rounds: RebalanceRound[] = []
  private readonly moves: Counter
  private sites: readonly string[]
  private halfLifeMs: number
  private scorer: AffinityScorer
  /** The predictive signal (kept across passes: it compares each pass's scan with the last one's). */
  private coAccess: VolumeCoAccess | null = null

  constructor (private readonly opts: RebalancerOptions) {
    this.config = opts.config
    this.rules = new RoundRules(opts.config)
    this.sites = opts.sites
    this.halfLifeMs = opts.halfLifeMs
    this.scorer = opts.scorer
    this.logger = (opts.logger ?? silentLogger).child({ component: 'rebalancer' })
    const registers = opts.registry === undefined ? [] : [opts.registry]
    this.moves = new Counter({ name: 'ferry_planner_rebalance_moves_total', help: 'Migrations started by the rebalancer', registers })
    const rounds = this.rounds
    new Gauge({ name: 'ferry_planner_rebalance_candidates', help: 'Blocks that beat the margin in the last rebalancer pass', registers, collect () { this.set(rounds.at(-1)?.candidates ?? 0) } })
    opts.engine.on('flip', e => { this.rules.moved(e.volume, e.block, Date.now()) })
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
    this.rules.config = config
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
          this.rules.lastMoved.set(key, Math.max(this.rules.lastMoved.get(key) ?? 0, rec.endedAt))
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
    const { engine } = this.opts
    if (!engine.isActive) return null
    const started = performance.now()
    const now = Date.now()
    const cfg = this.config
    this.rules.expire(now)
    const scan = await this.scan(now)
    const round = emptyRound(now, scan.scanned, 0, scan.activeVolumes)
    const skipped: Record<string, number> = {}
    const world = this.world(now, scan.flux)
    const singles = this.rules.plan(scan.table, scan.kernel, now, { ...world, decided: m => { if (m.reason === 'gain') round.candidates++ } }, skipped)
    for (const [reason, n] of Object.entries(skipped)) round.skipped[reason as SkipReason] += n
    // Room is re-checked as moves are submitted, with planMoves' accounting: a make-room move
    // frees its block's room on the full gateway for the move it makes room for (that gateway
    // holds both copies until the displaced one's grace period ends: over its capacity by at
    // most the round's displaced bytes, for that long). A make-room move the engine refuses
    // frees nothing, so its partner is skipped as `capacity`: no second victim is pushed out.
    const room = scan.room
    let stop = false
    for (const m of singles) {
      const size = m.sizeBytes > 0 ? m.sizeBytes : scan.mean
      if ((room.get(m.to) ?? 0) < size) { round.skipped.capacity++; continue }
      const r = await this.submit(m, round, size)
      if (r === 'stop') { stop = true; break }
      if (r === 'refused') continue
      room.set(m.to, (room.get(m.to) ?? 0) - size)
      if (m.reason === 'make-room') room.set(m.from, (room.get(m.from) ?? 0) + size)
      if (m.reason === 'gain' && m.score < cfg.minScore) round.predicted++
    }
    // Replica sets: their own candidates, with the budget the single copies left.
    round.candidates += scan.sets.length
    for (let i = 0; i < scan.sets.length && !stop; i++) {
      const c = scan.sets[i] as MoveCandidate
      if (round.moves >= cfg.maxMovesPerInterval) { round.skipped.budget += scan.sets.length - i; break }
      const v = this.rules.checkSet(c, round, room, scan.mean, now, world)
      if (typeof v === 'string') { round.skipped[v]++; continue }
      const r = await this.submit(c, round, v)
      if (r === 'stop') break
      if (r === 'refused') continue
      room.set(c.to, (room.get(c.to) ?? 0) - v)
      if (c.score < cfg.minScore) round.predicted++
    }
    round.durationMs = Math.round(performance.now() - started)
    this.rounds.push(round)
    if (this.rounds.length > ROUNDS_KEPT) this.rounds.shift()
    if (round.moves > 0 || round.candidates > 0) this.logger.info(round, 'rebalance pass')
    return round
  }

  /** Hands one move to the engine and counts it; 'stop' when this planner is no longer the leader. */
  private async submit (c: MoveCandidate, round: RebalanceRound, size: number): Promise<'ok' | 'refused' | 'stop'> {
    try {
      // A set's candidate names the member whose place the target takes; a single copy moves from where it is.
      await this.opts.engine.submit({ volume: c.volume, block: c.block, to: c.to, ...(c.replacesMember === true ? { from: c.from } : {}), reason: 'rebalance', priority: Number.isFinite(c.benefit) ? c.benefit : c.score })
    } catch (err) {
      round.skipped.refused++
      if (err instanceof FerryError && err.code === 'FERRY_PLANNER_NOT_LEADER') return 'stop'
      this.logger.debug({ key: blockKey(c.volume, c.block), to: c.to, err: (err as Error).message }, 'rebalance move refused')
      return 'refused'
    }
    round.moves++
    round.bytes += size
    this.moves.inc()
    return 'ok'
  }

  /** What the round rules ask of the live world: migrations in progress, gateway health, the co-access signal. */
  private world (now: number, flux: ReadonlySet<string>): RoundWorld {
    const signal = this.coAccess
    return {
      busy: (volume, block) => this.opts.engine.busy(volume, block),
      healthy: gateway => this.opts.fleet.isHealthy(gateway, now),
      settled: gateway => !flux.has(gateway),
      ...(signal === null ? {} : { pulled: (volume: string) => signal.isActive(volume) })
    }
  }

  /**
   * The next round as it would run now, without running it (`GET /v1/plan`, `ferry ctl plan`):
   * the same scan, ranking and rules as a round, every candidate with its verdict and inputs,
   * nothing submitted and nothing remembered. On a standby the dwell rule only knows the moves
   * read from the log when it last led, and its fleet view is its own probes'.
   */
  async plan (limit = 100): Promise<RebalancePlan> {
    const started = performance.now()
    const now = Date.now()
    const cfg = this.config
    const scan = await this.scan(now)
    const round = emptyRound(now, scan.scanned, 0, scan.activeVolumes)
    const listed: Array<{ c: MoveCandidate, verdict: PlannedMove['verdict'] }> = []
    const room = scan.room
    const skipped: Record<string, number> = {}
    const world = this.world(now, scan.flux)
    const singles = this.rules.plan(scan.table, scan.kernel, now, {
      ...world,
      decided: (m, verdict) => {
        // Candidates are blocks better off elsewhere; make-room moves are listed with the moves below.
        if (m.reason === 'gain') round.candidates++
        if (verdict !== 'move') listed.push({ c: m, verdict })
      }
    }, skipped)
    for (const [reason, n] of Object.entries(skipped)) round.skipped[reason as SkipReason] += n
    for (const m of singles) {
      const size = m.sizeBytes > 0 ? m.sizeBytes : scan.mean
      let verdict: PlannedMove['verdict'] = 'move'
      if ((room.get(m.to) ?? 0) < size) { verdict = 'capacity'; round.skipped.capacity++ } else {
        room.set(m.to, (room.get(m.to) ?? 0) - size)
        if (m.reason === 'make-room') room.set(m.from, (room.get(m.from) ?? 0) + size)
        round.moves++
        round.bytes += size
      }
      listed.push({ c: m, verdict })
    }
    round.candidates += scan.sets.length
    for (const c of scan.sets) {
      let verdict: PlannedMove['verdict']
      if (round.moves >= cfg.maxMovesPerInterval) verdict = 'budget'
      else {
        const v = this.rules.checkSet(c, round, room, scan.mean, now, world)
        if (typeof v === 'string') verdict = v
        else if (this.inSyncMember(c)) verdict = 'member'
        else {
          verdict = 'move'
          room.set(c.to, (room.get(c.to) ?? 0) - v)
          round.moves++
          round.bytes += v
        }
      }
      if (verdict === 'member') round.skipped.refused++
      else if (verdict !== 'move') round.skipped[verdict]++
      listed.push({ c, verdict })
    }
    // Most valuable first, as a round takes them.
    listed.sort((a, b) => b.c.benefit - a.c.benefit)
    const decisions: PlannedMove[] = listed.slice(0, limit).map(({ c, verdict }) => ({
      volume: c.volume, block: c.block, from: c.from, to: c.to, score: round2(c.score) ?? 0, sizeBytes: c.sizeBytes,
      ...(c.replacesMember === true ? { replacesMember: true as const } : {}),
      gainMs: round2(c.gainMs), benefit: round2(c.benefit), sites: {}, verdict
    }))
    await Promise.all(decisions.map(async d => {
      const entry = await this.opts.store.getAffinity(d.volume, d.block)
      if (entry !== null) for (const [site, x] of Object.entries(decayScores(entry, now, this.halfLifeMs))) d.sites[site] = round2(x) ?? 0
    }))
    round.durationMs = Math.round(performance.now() - started)
    return { ...round, enabled: cfg.enabled, rules: { margin: cfg.margin, minGainMs: cfg.minGainMs, minScore: cfg.minScore, minDwellMs: cfg.minDwellMs, maxMovesPerInterval: cfg.maxMovesPerInterval, maxBytesPerInterval: cfg.maxBytesPerInterval }, decisions }
  }

  /**
   * The target already holds an in-sync copy of the block's replica set: the engine refuses the
   * move as a no-op (FERRY_MIGRATION_NOOP), which a round counts as `refused` only by trying.
   */
  private inSyncMember (c: MoveCandidate): boolean {
    const loc = this.opts.locations.get(c.volume, c.block)
    return loc !== null && loc !== undefined && loc.members.length > 1 && loc.inSync.includes(c.to)
  }

  /**
   * The affinity map with where each block is now: single copies loaded into a table (with the
   * placement model's prior, and the co-access signal's when on) for RoundRules, replica sets'
   * candidates by benefit, and each gateway's room.
   */
  private async scan (now: number): Promise<{ scanned: number, table: AffinityTable, kernel: PreferenceKernel, sets: MoveCandidate[], room: Map<string, number>, mean: number, activeVolumes: number, flux: Set<string> }> {
    const { store, fleet, locations } = this.opts
    const cfg = this.config
    // The affinity map, with where each block is now. Blocks mid-migration have no "current"
    // here, so the kernel never proposes them.
    const signal = this.coAccess
    const table = new AffinityTable({ sites: this.sites, halfLifeMs: this.halfLifeMs, now, priorWeight: cfg.coAccess.priorWeight })
    const infos = fleet.infos(now)
    const byId = new Map(infos.map(g => [g.id, g]))
    const mean = fleet.meanBlockBytes()
    // Blocks with several members are decided per member (below), not by the table, which knows
    // one current gateway per block: ranked by their head, a set would move its preferred reader
    // wherever the block's readers are, though another member may already serve them.
    const sets: MoveCandidate[] = []
    /** Gateways with a copy arriving or leaving (a member not in sync): their usage is in flux. */
    const flux = new Set<string>()
    let scanned = 0
    for await (const entry of store.scanAffinity()) {
      scanned++
      const scores = signal === null ? undefined : decayScores(entry, now, this.halfLifeMs)
      if (scores !== undefined) signal?.observe(entry.volume, scores)
      const loc = locations.get(entry.volume, entry.block)
      if (loc != null && loc.inSync.length !== loc.members.length) for (const id of loc.members) flux.add(id)
      if (loc !== null && loc !== undefined && loc.members.length > 1) {
        if (loc.phase !== 'stable' || loc.inSync.length !== loc.members.length) continue // joining, leaving or stale: a move or a repair has it
        const c = this.setCandidate(entry.volume, entry.block, scores ?? decayScores(entry, now, this.halfLifeMs), loc, byId, infos)
        if (c !== null) sets.push(c)
        continue
      }
      table.load(entry)
      if (loc === undefined) continue
      const current = loc === null ? fleet.hashed(blockKey(entry.volume, entry.block), now) : loc.phase === 'stable' ? loc.gateway : undefined
      if (current === undefined) continue
      // A block of unknown size is counted at the fleet's mean, as room is.
      table.setBlock(entry.volume, entry.block, { current, sizeBytes: fleet.sizeOf(entry.volume, entry.block) ?? mean })
    }
    let activeVolumes = 0
    // Where a block's traffic is expected once its own has decayed: the placement model's mix
    // (pseudo-count coAccess.priorWeight), blended by the co-access signal with its volume's
    // current readers when that is on.
    const base = this.opts.basePrior?.() ?? null
    if (signal !== null) {
      signal.setBase(base)
      signal.endRound(now)
      activeVolumes = signal.apply(table)
    } else table.setPrior(base)
    const kernel = this.scorer.compile(table.sites, infos)
    sets.sort((a, b) => b.benefit - a.benefit)
    const room = new Map(infos.map(g => [g.id, g.capacityBytes === 0 ? Infinity : g.capacityBytes - g.usedBytes]))
    return { scanned, table, kernel, sets, room, mean, activeVolumes, flux }
  }

  /**
   * A replica set's best single change (RoundRules.setCandidate). A set with a member the fleet
   * does not know, or one that is down, is left to repair.
   */
  private setCandidate (volume: string, block: string, scores: Record<string, number>, loc: BlockLocation, byId: ReadonlyMap<string, GatewayInfo>, infos: readonly GatewayInfo[]): MoveCandidate | null {
    const members: GatewayInfo[] = []
    for (const id of loc.members) {
      const g = byId.get(id)
      if (g === undefined || !g.healthy) return null
      members.push(g)
    }
    return this.rules.setCandidate(this.scorer, volume, block, scores, members, infos, this.opts.fleet.sizeOf(volume, block) ?? 0, this.opts.fleet.meanBlockBytes())
  }
}
