import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import type { Registry } from 'prom-client'
import { FerryError } from '../../lib/errors.js'
import { blockKey } from '../../lib/ids.js'
import { silentLogger, type Logger } from '../../lib/log.js'
import type { BlockLocation, Fence, LocationInput, MigrationPatch, MigrationPhase, MigrationQuery, MigrationRecord, MigrationResult, StateStore } from '../../state/types.js'
import { contentHashOf, judgeByEtag } from '../../upstream/kinds.js'
import { hashBlock, type HashedBlock } from '../../upstream/verify.js'
import type { MigrationConfig } from '../config.js'
import { copyBlock, type CopyResult } from './copy.js'
import { DeposedError, StoppingError, describeError, plannerError } from './errors.js'
import type { Fleet, FleetGateway } from './fleet.js'
import { deleteBlock, delay, headBlock, type HeadResult } from './gateway-ops.js'
import { EngineMetrics } from './metrics.js'
import { MigrationQueue, type Queued } from './queue.js'
import { TokenBucket } from './token-bucket.js'

/** What the engine needs of leader election (planner/leader.ts). */
export interface LeaderView {
  /** The fencing token for location writes, or null when not (surely) the leader. */
  fence (): Fence | null
  /** How much longer we surely lead: bounds gateway side effects, which no store fences. */
  validForMs (): number
  /** The current leader's name, for FERRY_PLANNER_NOT_LEADER answers. */
  readonly holder: string
}

export interface MigrationEngineOptions {
  store: StateStore
  fleet: Fleet
  leader: LeaderView
  config: MigrationConfig
  logger?: Logger
  registry?: Registry
}

export interface SubmitRequest {
  volume: string
  block: string
  to: string
  /** Why (`rebalance`, `drain:gw2`, `operator`): kept in the log. */
  reason: string
  /** Higher runs first; default 0. The planner passes the block's access score. */
  priority?: number
  /**
   * A replica set repair: `to` joins the block's set as a new member, copied from `from` (an
   * in-sync member; default the set's head), and no member leaves. Recorded with a reason that
   * starts with `repair`.
   */
  repair?: { from: string }
}

export interface MigrationProgress {
  state: 'queued' | 'running' | 'cleanup'
  bytes: number
  totalBytes: number | null
  percent: number | null
  bytesPerSec: number | null
  /** Estimated time until the copy completes (null when unknown). */
  etaMs: number | null
  /** Copies repeated in cut-over because the source changed. */
  recopies: number
}

export type MigrationView = MigrationRecord & { progress: MigrationProgress | null }

export interface FlipEvent {
  id: string
  volume: string
  block: string
  from: string
  to: string
  /** The new location, as the compare-and-set returned it. */
  location: BlockLocation
  /** performance.now() when the compare-and-set resolved (for reroute-latency measurements). */
  at: number
}

export interface EngineEvents {
  /** The location flipped to the target: from now on every proxy routes there. */
  flip: [FlipEvent]
  /** A migration ended (any result). */
  end: [MigrationRecord]
}

type JobState = 'queued' | 'running' | 'cleanup'

interface Job extends Queued {
  readonly id: string
  readonly volume: string
  readonly block: string
  readonly key: string
  readonly path: string
  readonly from: string
  readonly to: string
  readonly reason: string
  priority: number
  seq: number
  state: JobState
  phase: MigrationPhase
  bytes: number
  totalBytes: number | null
  copyStartedAt: number
  recopies: number
  /** True once we moved the location out of `stable`: a failure must then restore it. */
  touched: boolean
  abort: AbortController
  /** Serialises this job's writes to the migration log (so they land in order). */
  persisted: Promise<unknown>
  lastPersistAt: number
  timer: NodeJS.Timeout | null
}

const STEP_RETRY_MS = 25

/**
 * The migration engine: moves one block at a time (many in parallel) from its gateway to
 * another without losing a write, following DESIGN.md "Cut-over without losing writes". The
 * store is the single source of truth; every location write carries the leader's fencing token.
 *
 *   place     a block routed by hash gets a location first: CAS 0 → {gateway: where it is, stable}
 *   copying   CAS → {gateway: source, copying, target}; stream GET source → PUT target, verified
 *   cutover   CAS → {cutover}: proxies hold new writes. Wait settleMs for every proxy to see it and
 *             for writes in flight to land, then check the source: changed since the copy → re-copy
 *             (still in cut-over). Check the target: it still holds the verified copy.
 *   flip      CAS → {gateway: target, done}: proxies route the next request to the target and
 *             release held writes there. The slot is freed here.
 *   cleanup   after gracePeriodMs, DELETE the source copy, then CAS → {stable}.
 *
 * Why a write is never lost: a proxy acknowledges a write that raced a location change only if
 * the block's location, once out of cut-over, is the gateway that took it or provably holds the
 * bytes written (proxy/write-guard.ts WriteGuard.confirm). Writes that landed on the source before the
 * cut-over check are in the copy (the check sees them — by ETag, or by the bytes where the ETag
 * proves nothing — so we re-copy); writes that land after it are not on the target, so the
 * proxy answers 503 instead of acknowledging them.
 *
 * Anything failing before the flip restores the old location (CAS back to `stable` on the
 * source) and deletes the target's copy. A step whose store write had an unknown outcome
 * (connection lost mid-call) re-reads the location and carries on from what it finds. Whatever
 * a crash or deposition leaves behind — a location in copying/cutover/done, a log record
 * without a result — the next leader's `recover()` completes or rolls back.
 */
export class MigrationEngine extends EventEmitter<EngineEvents> {
  private readonly store: StateStore
  private readonly fleet: Fleet
  private readonly leader: LeaderView
  private config: MigrationConfig
  private readonly logger: Logger
  private readonly bucket: TokenBucket
  private readonly queue = new MigrationQueue<Job>()
  private readonly jobs = new Map<string, Job>()
  private readonly byBlock = new Map<string, Job>()
  /** Blocks whose submission is being prepared (awaits in submit): reserved against a second one. */
  private readonly reserving = new Set<string>()
  private running = 0
  private seq = 0
  private active = false
  private stopped = false
  /** The operator's kill switch: queued migrations wait, running ones finish (a half-done move is never left). */
  private paused = false
  private recoveryTimer: NodeJS.Timeout | null = null
  private recovering: Promise<void> | null = null
  private readonly metrics: EngineMetrics
  /** Ended migrations by result since start (also in metrics; kept for the admin API and tests). */
  readonly counts: Record<MigrationResult, number> = { ok: 0, failed: 0, 'rolled-back': 0, cancelled: 0 }
  recopies = 0

  constructor (opts: MigrationEngineOptions) {
    super()
    this.store = opts.store
    this.fleet = opts.fleet
    this.leader = opts.leader
    this.config = opts.config
    this.logger = (opts.logger ?? silentLogger).child({ component: 'migration' })
    this.bucket = new TokenBucket(opts.config.bandwidthBytesPerSec, opts.config.burstBytes)
    this.metrics = new EngineMetrics(opts.registry, this)
  }

  get queued (): number { return this.queue.size }
  get inFlight (): number { return this.running }
  get isActive (): boolean { return this.active }
  get isPaused (): boolean { return this.paused }

  /** Pauses or resumes data movement: while paused nothing new starts; running migrations finish. */
  setPaused (paused: boolean): void {
    if (paused === this.paused) return
    this.paused = paused
    this.logger.warn({ queued: this.queue.size, running: this.running }, paused ? 'data movement paused by the operator' : 'data movement resumed')
    this.pump()
  }

  reconfigure (config: MigrationConfig): void {
    this.config = config
    this.bucket.reconfigure(config.bandwidthBytesPerSec, config.burstBytes)
    this.pump()
  }

  /** Whether a migration of the block is queued or running here. */
  /** Replica set repairs queued or running (the repair decider's budget). */
  activeRepairs (): number {
    let n = 0
    for (const job of this.jobs.values()) if (isRepair(job)) n++
    return n
  }

  busy (volume: string, block: string): boolean {
    const key = blockKey(volume, block)
    return this.byBlock.has(key) || this.reserving.has(key)
  }

  // ───────────────────────────── leadership ─────────────────────────────

  /** We became the leader: finish or roll back what a predecessor left, then start working. */
  async activate (): Promise<void> {
    if (this.stopped) return
    this.active = true
    await this.recover(true)
    this.scheduleRecovery()
    this.pump()
  }

  /**
   * We are no longer the leader: stop at once and touch nothing more — in-flight copies are
   * aborted without rollback (the new leader's recovery does that; two planners undoing each
   * other's work is what fencing prevents). The log records stay active for it to find.
   */
  deactivate (reason: string): void {
    if (!this.active) return
    this.active = false
    this.logger.warn({ reason, running: this.running, queued: this.queue.size }, 'migration engine paused: not the leader')
    this.abandonAll(new DeposedError(reason))
  }

  /**
   * Graceful stop: queued migrations stay in the log (the next leader resumes them), running
   * ones before their flip are rolled back now, flipped ones are left for the next leader's
   * cleanup. Resolves once nothing of ours is in flight.
   */
  async stop (): Promise<void> {
    this.stopped = true
    this.clearRecovery()
    this.queue.clear()
    const running = [...this.jobs.values()].filter(j => j.state === 'running')
    for (const job of this.jobs.values()) {
      if (job.timer !== null) clearTimeout(job.timer)
      job.abort.abort(new StoppingError(false))
    }
    await this.idle()
    await Promise.all(running.map(j => j.persisted.catch(() => {})))
    this.active = false
    for (const job of [...this.jobs.values()]) this.forget(job)
  }

  /** As a crash: everything dropped, nothing more written anywhere. */
  kill (): void {
    this.stopped = true
    this.active = false
    this.clearRecovery()
    this.abandonAll(new StoppingError(true))
  }

  private abandonAll (reason: Error): void {
    this.queue.clear()
    for (const job of [...this.jobs.values()]) {
      if (job.timer !== null) clearTimeout(job.timer)
      job.timer = null
      job.abort.abort(reason)
      if (job.state !== 'running') this.forget(job)
    }
  }

  private idleWaiters: Array<() => void> = []

  private async idle (): Promise<void> {
    if (this.running === 0) return
    await new Promise<void>(resolve => this.idleWaiters.push(resolve))
  }

  // ───────────────────────────── submission ─────────────────────────────

  /**
   * Queues a migration of one block to `to` and returns its log record. A block routed by hash
   * is given its location first (where it is now). Throws FerryError: FERRY_PLANNER_NOT_LEADER, FERRY_BLOCK_BUSY,
   * FERRY_MIGRATION_NOOP, FERRY_UNKNOWN_GATEWAY, FERRY_BLOCK_NOT_FOUND, FERRY_MIGRATION_QUEUE_FULL.
   */
  async submit (req: SubmitRequest): Promise<MigrationRecord> {
    if (!this.active) throw plannerError('FERRY_PLANNER_NOT_LEADER', 'this planner is not the leader', 503, { holder: this.leader.holder })
    if (!this.fleet.has(req.to)) throw plannerError('FERRY_UNKNOWN_GATEWAY', `no gateway ${req.to} is configured`, 404)
    if (this.queue.size >= this.config.maxQueued) throw plannerError('FERRY_MIGRATION_QUEUE_FULL', `${this.queue.size} migrations are already queued`, 503)
    const key = blockKey(req.volume, req.block)
    if (this.busy(req.volume, req.block)) throw plannerError('FERRY_BLOCK_BUSY', `block ${key} is already being moved`, 409)
    this.reserving.add(key)
    try {
      const loc = await this.ensurePlaced(req.volume, req.block)
      if (loc.phase !== 'stable') throw plannerError('FERRY_BLOCK_BUSY', `block ${key} is in ${loc.phase} (a migration is being finished)`, 409)
      if (loc.gateway === req.to || (loc.members.length > 1 && loc.inSync.includes(req.to))) throw plannerError('FERRY_MIGRATION_NOOP', `block ${key} is already on ${req.to}`, 409)
      const from = req.repair?.from ?? loc.gateway
      if (!this.active) throw plannerError('FERRY_PLANNER_NOT_LEADER', 'this planner is not the leader', 503, { holder: this.leader.holder })
      const id = this.newId()
      const record = await this.store.appendMigration({
        id, volume: req.volume, block: req.block, from, to: req.to, phase: 'queued', bytes: 0,
        totalBytes: this.fleet.sizeOf(req.volume, req.block) ?? null, startedAt: Date.now(),
        reason: req.repair !== undefined && !req.reason.startsWith('repair') ? `repair:${req.reason}` : req.reason
      })
      this.enqueue(this.newJob(record, req.priority ?? 0))
      return record
    } finally {
      this.reserving.delete(key)
    }
  }

  /**
   * Cancels a queued migration, or interrupts a running one before its flip (it is rolled back).
   * A migration that already flipped cannot be cancelled: the block lives on the target.
   */
  async cancel (id: string): Promise<MigrationView> {
    const job = this.jobs.get(id)
    if (job === undefined) {
      const rec = await this.store.getMigration(id)
      if (rec === null) throw plannerError('FERRY_MIGRATION_NOT_FOUND', `no migration ${id}`, 404)
      throw plannerError('FERRY_MIGRATION_NOT_CANCELLABLE', `migration ${id} is not running here (${rec.result ?? rec.phase})`, 409)
    }
    if (job.state === 'cleanup' || job.phase === 'cleanup') throw plannerError('FERRY_MIGRATION_NOT_CANCELLABLE', `migration ${id} already moved the block`, 409)
    if (job.state === 'queued') {
      this.queue.remove(j => j === job)
      await this.end(job, 'cancelled', 'cancelled by the operator')
    } else {
      job.abort.abort(plannerError('FERRY_INTERRUPTED', 'cancelled by the operator', 503))
    }
    return await this.get(id)
  }

  async get (id: string): Promise<MigrationView> {
    const rec = await this.store.getMigration(id)
    if (rec === null) throw plannerError('FERRY_MIGRATION_NOT_FOUND', `no migration ${id}`, 404)
    return this.view(rec)
  }

  async list (query: MigrationQuery = {}): Promise<MigrationView[]> {
    return (await this.store.listMigrations(query)).map(r => this.view(r))
  }

  /** The live progress of a migration of ours (null when it is not queued or running here). */
  progress (id: string): MigrationProgress | null {
    const job = this.jobs.get(id)
    if (job === undefined) return null
    const elapsed = (performance.now() - job.copyStartedAt) / 1000
    const rate = job.state === 'running' && job.bytes > 0 && elapsed > 0 ? job.bytes / elapsed : null
    const total = job.totalBytes
    const done = job.state === 'cleanup' || (total !== null && job.bytes >= total && job.phase !== 'copying')
    return {
      state: job.state,
      bytes: job.bytes,
      totalBytes: total,
      percent: done ? 100 : total === null ? null : total === 0 ? 0 : Math.min(100, Math.round((job.bytes / total) * 1000) / 10),
      bytesPerSec: rate === null ? null : Math.round(rate),
      etaMs: done ? 0 : total !== null && rate !== null ? Math.round(((total - job.bytes) / rate) * 1000) : null,
      recopies: job.recopies
    }
  }

  private view (rec: MigrationRecord): MigrationView {
    const job = this.jobs.get(rec.id)
    const progress = job === undefined ? null : this.progress(rec.id)
    // The log lags the live copy by up to progressIntervalMs: show the newer figure.
    if (job !== undefined && rec.result === null) return { ...rec, phase: job.phase, bytes: job.bytes, totalBytes: job.totalBytes ?? rec.totalBytes, progress }
    return { ...rec, progress }
  }

  private newId (): string {
    return `m-${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`
  }

  private newJob (rec: MigrationRecord, priority: number): Job {
    return {
      id: rec.id,
      volume: rec.volume,
      block: rec.block,
      key: blockKey(rec.volume, rec.block),
      path: `/${rec.volume}/${rec.block}`,
      from: rec.from,
      to: rec.to,
      reason: rec.reason ?? '',
      priority,
      seq: this.seq++,
      state: 'queued',
      phase: 'queued',
      bytes: 0,
      totalBytes: rec.totalBytes,
      copyStartedAt: performance.now(),
      recopies: 0,
      touched: false,
      abort: new AbortController(),
      persisted: Promise.resolve(),
      lastPersistAt: 0,
      timer: null
    }
  }

  private enqueue (job: Job): void {
    this.jobs.set(job.id, job)
    this.byBlock.set(job.key, job)
    this.queue.push(job)
    this.pump()
  }

  /** Starts queued migrations while slots are free. */
  private pump (): void {
    while (this.active && !this.stopped && !this.paused && this.running < this.config.concurrency) {
      const job = this.queue.pop()
      if (job === undefined) return
      this.running++
      job.state = 'running'
      void this.run(job).finally(() => {
        this.running--
        if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w()
        this.pump()
      })
    }
  }

  // ───────────────────────────── one migration ─────────────────────────────

  private async run (job: Job): Promise<void> {
    try {
      await this.migrate(job)
    } catch (err) {
      const reason = job.abort.signal.aborted ? job.abort.signal.reason as unknown : err
      if (reason instanceof DeposedError || err instanceof DeposedError || (reason instanceof StoppingError && reason.abrupt)) {
        // Not ours to touch any more: the record stays active for the next leader.
        this.logger.info({ id: job.id, key: job.key, reason: describeError(reason) }, 'migration abandoned')
        this.forget(job)
        return
      }
      await this.rollback(job, reason instanceof StoppingError ? plannerError('FERRY_INTERRUPTED', 'the planner stopped mid-migration', 503) : reason)
    }
  }

  private async migrate (job: Job): Promise<void> {
    const signal = job.abort.signal
    let loc = await this.read(job)
    if (loc !== null && loc.phase === 'stable' && (loc.members.length > 1 || isRepair(job))) {
      await this.changeMembers(job, loc)
      return
    }
    if (loc === null || loc.phase !== 'stable' || loc.gateway !== job.from) {
      if (loc?.gateway === job.to && loc.phase === 'stable') {
        await this.end(job, 'cancelled', `FERRY_MIGRATION_NOOP: the block is already on ${job.to}`)
        return
      }
      throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key} is ${loc === null ? 'no longer placed' : `${loc.phase} on ${loc.gateway}`}, expected stable on ${job.from}`, 409)
    }
    if (!this.fleet.isTarget(job.to)) throw plannerError('FERRY_TARGET_UNAVAILABLE', `gateway ${job.to} is down or draining`, 409)
    const started = performance.now()

    // copying: reads and writes still go to the source.
    loc = await this.cas(job, loc, { gateway: job.from, phase: 'copying', target: job.to }, 'copying')
    job.touched = true
    this.setPhase(job, 'copying')
    let copy = await this.copy(job)

    // cutover: proxies hold writes. Let every proxy see it and writes in flight land.
    loc = await this.cas(job, loc, { gateway: job.from, phase: 'cutover', target: job.to }, 'cutover')
    this.setPhase(job, 'cutover')
    const cutStart = performance.now()
    const left = (): number => this.config.cutoverTimeoutMs - (performance.now() - cutStart)
    await delay(this.config.settleMs, signal)
    for (;;) {
      if (await this.sourceUnchanged(job, copy, left)) {
        if (await this.targetHolds(job, copy, left)) break
        this.logger.warn({ id: job.id, key: job.key }, 'the target lost its copy before the flip; copying again')
      }
      if (job.recopies >= this.config.maxRecopies || left() <= 0) {
        throw plannerError('FERRY_CUTOVER_TIMEOUT', `block ${job.key} kept changing during cut-over (${job.recopies} re-copies in ${Math.round(performance.now() - cutStart)} ms)`, 503)
      }
      job.recopies++
      this.recopies++
      this.metrics.recopies.inc()
      try {
        copy = await this.copy(job, Math.max(1, Math.min(this.config.copyTimeoutMs, left())))
      } catch (err) {
        // Writes are held now: a flaky gateway is worth another try within the budget, rather
        // than a rollback and a whole new migration (and cut-over) later.
        if (!(err instanceof FerryError) || (err.code !== 'FERRY_COPY_SOURCE_FAILED' && err.code !== 'FERRY_COPY_TARGET_FAILED') || left() <= 0) throw err
        this.logger.debug({ id: job.id, key: job.key, err: err.message }, 're-copy in cut-over failed; trying again')
      }
    }

    // flip: from here on the target is the block's home; nothing is rolled back any more.
    // The version is the target's own ETag (null when it sends none): the source's would name
    // bytes on another gateway, and ETags of different kinds are not comparable.
    const flipped = await this.cas(job, loc, { gateway: job.to, phase: 'done', version: copy.targetEtag }, 'flip')
    const at = performance.now()
    job.touched = false
    this.metrics.cutover.observe((at - cutStart) / 1000)
    this.metrics.duration.observe((at - started) / 1000)
    this.emit('flip', { id: job.id, volume: job.volume, block: job.block, from: job.from, to: job.to, location: flipped, at })
    this.setPhase(job, 'cleanup')
    this.scheduleCleanup(job, flipped, this.config.gracePeriodMs)
  }

  /**
   * A move or repair of a block with a replica set, as membership changes (README "Replica
   * sets"): the target joins the set (from then on every proxy sends it every write, and a write
   * it misses removes it again), the current version is copied to it and verified, it is marked
   * in sync by a compare-and-set on the epoch it joined at (so a write that missed it in between
   * makes the step fail rather than mark a stale copy in sync), then — for a move — the source
   * leaves the set and its copy is deleted after the grace period. No write is held or refused
   * at any step; a failure before the target is in sync leaves the old set in force.
   */
  private async changeMembers (job: Job, start: BlockLocation): Promise<void> {
    const signal = job.abort.signal
    let loc = start
    if (!loc.inSync.includes(job.from)) {
      throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key}: ${job.from} is not an in-sync member (${loc.inSync.join(',')})`, 409)
    }
    if (loc.inSync.includes(job.to)) {
      await this.end(job, 'cancelled', `FERRY_MIGRATION_NOOP: ${job.to} is already an in-sync member`)
      return
    }
    if (!this.fleet.isTarget(job.to)) throw plannerError('FERRY_TARGET_UNAVAILABLE', `gateway ${job.to} is down or draining`, 409)
    const started = performance.now()
    job.touched = true
    try {
      if (!loc.members.includes(job.to)) {
        loc = await this.cas(job, loc, { gateway: loc.gateway, members: [...loc.members, job.to], inSync: loc.inSync }, 'join')
      }
      this.setPhase(job, 'copying')
      // Every proxy learns of the new member before the copy reads the source, so no write
      // acknowledged after the copy can have missed the target without removing it again.
      await delay(this.config.settleMs, signal)
      await this.copy(job)
      const budgetStart = performance.now()
      const left = (): number => this.config.copyTimeoutMs - (performance.now() - budgetStart)
      // The target only has to hold the same bytes as the source at one moment after the copy:
      // from then on every write reaches both or removes the target. Writes keep changing both
      // meanwhile (and the copy's PUT may have overwritten a newer write on the target, which the
      // next write corrects), so a mismatch is looked at again; only one that persists while the
      // source stays unchanged means the copy missed something, and the block is copied again.
      let unchanged = 0
      let lastSource: string | null = null
      for (;;) {
        // A write the target missed took it out of the set: this change is over.
        const now = await this.read(job)
        if (now === null || now.epoch !== loc.epoch || !now.members.includes(job.to)) {
          throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key} changed while ${job.to} was joining (a write it missed, or another change)`, 409)
        }
        const check = await this.sameBytes(job, left)
        if (check.same) break
        unchanged = check.sourceTag !== null && check.sourceTag === lastSource ? unchanged + 1 : 0
        lastSource = check.sourceTag
        if (left() <= 0) throw plannerError('FERRY_CUTOVER_TIMEOUT', `block ${job.key}: ${job.to} did not come to hold the source's bytes within copyTimeoutMs`, 503)
        if (unchanged >= 3) {
          if (job.recopies >= this.config.maxRecopies) throw plannerError('FERRY_COPY_VERIFY_FAILED', `block ${job.key}: ${job.to} still differs from ${job.from} after ${job.recopies} re-copies`, 502)
          job.recopies++
          this.recopies++
          this.metrics.recopies.inc()
          await this.copy(job)
          unchanged = 0
        } else {
          await delay(Math.min(100, Math.max(1, left())), signal)
        }
      }
      loc = await this.cas(job, loc, { gateway: loc.gateway, members: loc.members, inSync: loc.members.filter(m => m === job.to || loc.inSync.includes(m)) }, 'in-sync')
    } catch (err) {
      await this.leaveSet(job).catch(e => { this.logger.warn({ id: job.id, key: job.key, err: describeError(e) }, 'could not take a failed joiner out of the set') })
      job.touched = false
      throw err
    }
    job.touched = false
    this.metrics.duration.observe((performance.now() - started) / 1000)
    if (isRepair(job)) {
      this.emit('flip', { id: job.id, volume: job.volume, block: job.block, from: job.from, to: job.to, location: loc, at: performance.now() })
      await this.end(job, 'ok', null)
      return
    }
    // The source leaves: the target takes its place in the order (the read preference).
    const members = loc.members.filter(m => m !== job.to).map(m => m === job.from ? job.to : m)
    const inSync = members.filter(m => loc.inSync.includes(m))
    const next = { gateway: members.find(m => inSync.includes(m)) as string, members, inSync }
    const left = await this.cas(job, loc, next, 'leave')
    this.emit('flip', { id: job.id, volume: job.volume, block: job.block, from: job.from, to: job.to, location: left, at: performance.now() })
    this.setPhase(job, 'cleanup')
    job.state = 'cleanup'
    job.timer = setTimeout(() => {
      job.timer = null
      void this.finishLeave(job)
    }, Math.max(0, this.config.gracePeriodMs))
  }

  /**
   * Whether the source and the target hold the same bytes now: by content-hash ETags where both
   * kinds give one, else by reading and hashing both. `sourceTag` identifies the source's
   * content (to tell a source that keeps changing from one that does not).
   */
  private async sameBytes (job: Job, left: () => number): Promise<{ same: boolean, sourceTag: string | null }> {
    const source = this.fleet.get(job.from)
    const target = this.fleet.get(job.to)
    if (source === undefined) throw plannerError('FERRY_COPY_SOURCE_FAILED', `gateway ${job.from} is no longer configured`, 502)
    if (target === undefined) throw plannerError('FERRY_COPY_TARGET_FAILED', `gateway ${job.to} is no longer configured`, 502)
    const [src, dst] = await Promise.all([this.headUntil(job, job.from, left), this.headUntil(job, job.to, left)])
    if (src.status === 404) throw plannerError('FERRY_SOURCE_MISSING', `block ${job.key} was deleted from the source`, 409)
    if (dst.status !== 200) return { same: false, sourceTag: src.etag }
    const a = contentHashOf(source.kind, src.etag)
    const b = contentHashOf(target.kind, dst.etag)
    if (a !== null && b !== null) return { same: a === b, sourceTag: a }
    const [ha, hb] = await Promise.all([this.hashUntil(job, source, left), this.hashUntil(job, target, left)])
    return { same: ha.status === 200 && hb.status === 200 && ha.sha256 === hb.sha256, sourceTag: ha.sha256 ?? null }
  }

  /** After the grace period: the source's copy goes, unless the source has joined the set again. */
  private async finishLeave (job: Job): Promise<void> {
    try {
      const now = await this.read(job, true)
      if (now === null || !now.members.includes(job.from)) await this.deleteCopy(job.path, job.from)
      await this.end(job, 'ok', null)
    } catch (err) {
      if (err instanceof DeposedError || !this.active) { this.forget(job); return }
      this.logger.warn({ id: job.id, key: job.key, err: describeError(err) }, 'deleting the source copy failed; will retry')
      job.timer = setTimeout(() => { job.timer = null; void this.finishLeave(job) }, this.config.retryDelayMs)
    }
  }

  /** A joiner that did not become in sync leaves the set (the old set stays in force) and its copy goes. */
  private async leaveSet (job: Job): Promise<void> {
    const loc = await this.read(job, true)
    if (loc !== null && loc.members.includes(job.to) && !loc.inSync.includes(job.to)) {
      const members = loc.members.filter(m => m !== job.to)
      await this.cas(job, loc, { gateway: loc.gateway, members, inSync: loc.inSync }, 'rollback', true)
    }
    const after = await this.read(job, true)
    if (after === null || !after.members.includes(job.to)) await this.deleteCopy(job.path, job.to).catch(() => { this.metrics.strays.inc() })
  }

  /** Streams the block from the source to the target (see copy.ts), with progress. */
  private async copy (job: Job, timeoutMs = this.config.copyTimeoutMs): Promise<CopyResult> {
    this.guard(job)
    const source = this.fleet.get(job.from)
    const target = this.fleet.get(job.to)
    if (source === undefined) throw plannerError('FERRY_COPY_SOURCE_FAILED', `gateway ${job.from} is no longer configured`, 502)
    if (target === undefined) throw plannerError('FERRY_COPY_TARGET_FAILED', `gateway ${job.to} is no longer configured`, 502)
    job.bytes = 0
    job.copyStartedAt = performance.now()
    const result = await copyBlock(source, target, {
      path: job.path,
      bucket: this.bucket,
      // No lease bound here: losing the lease aborts the job's signal (deactivate), which cuts
      // the PUT and makes the target discard the upload.
      timeoutMs,
      signal: job.abort.signal,
      onSize: n => { job.totalBytes = n },
      onBytes: n => {
        job.bytes += n
        this.metrics.bytes.inc(n)
        if (performance.now() - job.lastPersistAt >= this.config.progressIntervalMs) this.persist(job, { bytes: job.bytes, totalBytes: job.totalBytes })
      }
    })
    job.totalBytes = result.bytes
    this.fleet.noteSize(job.volume, job.block, result.bytes)
    this.persist(job, { bytes: result.bytes, totalBytes: result.bytes })
    return result
  }

  private scheduleCleanup (job: Job, loc: BlockLocation, afterMs: number): void {
    job.state = 'cleanup'
    job.timer = setTimeout(() => {
      job.timer = null
      void this.cleanup(job, loc)
    }, Math.max(0, afterMs))
  }

  /** After the grace period: remove the source copy, then settle the location as `stable`. */
  private async cleanup (job: Job, loc: BlockLocation): Promise<void> {
    try {
      // The source copy goes only while the flipped location is still the one in force. A store
      // that lost its data meanwhile rebuilt the location from the gateways (recovery/), and with
      // the copy keeping its original's written-at the rebuild may have chosen the source: deleting
      // it then would leave the block located where it no longer is (seen in the 30-minute soak
      // as an acknowledged write read 404).
      const now = await this.read(job)
      if (now === null || now.gateway !== job.to || now.members.includes(job.from)) {
        this.logger.warn({ id: job.id, key: job.key, source: job.from, location: now }, 'the location no longer rests on the target alone; the source copy is kept')
        await this.end(job, 'ok', null)
        return
      }
      await this.deleteCopy(job.path, job.from)
      let final: BlockLocation
      try {
        final = await this.cas(job, loc, { gateway: job.to, phase: 'stable' }, 'stable')
      } catch (err) {
        const now = err instanceof FerryError && err.code === 'FERRY_LOCATION_CHANGED' ? await this.read(job) : null
        // Someone (a predecessor's recovery, a retried call) already settled it: fine.
        if (now === null || now.gateway !== job.to || now.phase === 'done') throw err
        final = now
      }
      this.logger.debug({ id: job.id, key: job.key, epoch: final.epoch }, 'migration complete')
      await this.end(job, 'ok', null)
    } catch (err) {
      if (err instanceof DeposedError || job.abort.signal.aborted || !this.active) { this.forget(job); return }
      // Still leader, and the block lives on the target: only the cleanup is pending. Retry.
      this.logger.warn({ id: job.id, key: job.key, err: describeError(err) }, 'migration cleanup failed; will retry')
      const now = await this.read(job).catch(() => null)
      if (now !== null && now.gateway === job.to && now.phase === 'done') this.scheduleCleanup(job, now, this.config.retryDelayMs)
      else this.forget(job) // recovery reconciles the log with whatever the location is
    }
  }

  /**
   * Before the flip something failed: put the old location back in force and remove the
   * target's copy. If the store cannot be written now, the job is dropped with its record still
   * active; the periodic recovery retries until the location is consistent again.
   */
  private async rollback (job: Job, cause: unknown): Promise<void> {
    const error = describeError(cause)
    try {
      this.requireLeader()
      let loc = await this.read(job, true)
      if (loc !== null && loc.gateway === job.to && (loc.phase === 'done' || loc.phase === 'stable')) {
        // The flip did go through (its outcome was unknown when it failed): finish instead.
        this.logger.info({ id: job.id, key: job.key }, 'the flip had been applied; completing the migration')
        this.setPhase(job, 'cleanup')
        if (loc.phase === 'done') this.scheduleCleanup(job, loc, this.config.gracePeriodMs)
        else await this.end(job, 'ok', null)
        return
      }
      if (loc !== null && (loc.phase === 'copying' || loc.phase === 'cutover') && loc.target === job.to) {
        loc = await this.cas(job, loc, { gateway: loc.gateway, phase: 'stable' }, 'rollback', true)
      }
      job.touched = false
      // A member of the block's set keeps its copy (a membership change that failed after the
      // target joined in sync: the copy is the block's).
      if (loc === null || (loc.gateway !== job.to && loc.target !== job.to && !loc.members.includes(job.to))) await this.deleteCopy(job.path, job.to).catch(err => {
        // The target is unreachable (killed, say): its copy is not the location, so it is only
        // wasted space; the reference gateway drops unfinished uploads when it restarts.
        this.logger.warn({ id: job.id, key: job.key, gateway: job.to, err: describeError(err) }, 'could not delete the target\'s copy')
        this.metrics.strays.inc()
      })
      this.logger.info({ id: job.id, key: job.key, error }, 'migration rolled back')
      await this.end(job, job.phase === 'queued' ? 'failed' : 'rolled-back', error)
    } catch (err) {
      this.logger.warn({ id: job.id, key: job.key, err: describeError(err), cause: error }, 'rollback could not be completed now; recovery will retry')
      this.forget(job)
    }
  }

  // ───────────────────────────── recovery ─────────────────────────────

  private scheduleRecovery (): void {
    this.clearRecovery()
    if (!this.active || this.stopped) return
    this.recoveryTimer = setTimeout(() => {
      this.recoveryTimer = null
      void this.recover(false).finally(() => this.scheduleRecovery())
    }, this.config.recoveryIntervalMs)
    this.recoveryTimer.unref()
  }

  private clearRecovery (): void {
    if (this.recoveryTimer !== null) clearTimeout(this.recoveryTimer)
    this.recoveryTimer = null
  }

  /**
   * Completes or rolls back every migration the log shows as unfinished that is not running here
   * (a predecessor's, or one whose rollback could not be written). With `scanLocations`, also
   * blocks left in copying/cutover/done with no log record at all. Never throws.
   */
  recover (scanLocations = false): Promise<void> {
    this.recovering ??= this.recoverOnce(scanLocations).finally(() => { this.recovering = null })
    return this.recovering
  }

  private async recoverOnce (scanLocations: boolean): Promise<void> {
    try {
      const active = await this.store.listMigrations({ active: true, limit: 1_000_000 })
      const claimed = new Set<string>()
      for (const rec of active) {
        claimed.add(blockKey(rec.volume, rec.block))
        if (!this.active) return
        if (this.jobs.has(rec.id)) continue
        await this.recoverOne(rec).catch(err => {
          this.logger.warn({ id: rec.id, err: describeError(err) }, 'could not recover a migration; will retry')
        })
      }
      if (!scanLocations) return
      for await (const { volume, block, location } of this.store.scanLocations()) {
        if (!this.active) return
        if (location.phase === 'stable' || claimed.has(blockKey(volume, block)) || this.busy(volume, block)) continue
        await this.recoverOrphan(volume, block, location).catch(err => {
          this.logger.warn({ volume, block, err: describeError(err) }, 'could not settle an orphaned location')
        })
      }
    } catch (err) {
      this.logger.warn({ err: describeError(err) }, 'migration recovery failed; will retry')
    }
  }

  /** One unfinished migration of someone else's (or an earlier attempt of ours). */
  private async recoverOne (rec: MigrationRecord): Promise<void> {
    const job = this.newJob(rec, 0)
    job.phase = rec.phase
    job.bytes = rec.bytes
    if (this.busy(rec.volume, rec.block)) return
    this.jobs.set(job.id, job)
    this.byBlock.set(job.key, job)
    let keep = false
    try {
      const loc = await this.read(job)
      if (loc !== null && loc.phase === 'stable' && (loc.members.length > 1 || isRepair(rec)) && rec.phase !== 'queued') {
        // A membership change (changeMembers): an in-sync target is the block's; a joiner that
        // never got in sync leaves again. Never delete a member's copy.
        if (loc.inSync.includes(rec.to)) { await this.end(job, 'ok', null); return }
        await this.leaveSet(job)
        await this.end(job, 'rolled-back', 'FERRY_INTERRUPTED: found unfinished after a planner restart (the target had not become in sync)')
        return
      }
      if (loc !== null && loc.gateway === rec.to && loc.phase === 'done') {
        // Flipped; only the cleanup is missing. The grace period runs from the flip.
        this.logger.info({ id: rec.id, key: job.key }, 'recovery: completing a flipped migration')
        job.phase = 'cleanup'
        this.scheduleCleanup(job, loc, loc.updatedAt + this.config.gracePeriodMs - Date.now())
        keep = true
        return
      }
      if (loc !== null && loc.gateway === rec.to && loc.phase === 'stable' && rec.phase !== 'queued') {
        // Completed; only the log was not updated.
        await this.end(job, 'ok', null)
        return
      }
      if (loc !== null && (loc.phase === 'copying' || loc.phase === 'cutover') && loc.target === rec.to && loc.gateway === rec.from) {
        // Interrupted before the flip: restore the source's location, drop the partial copy, and
        // run the migration again from the start (same record, so the log shows one migration).
        this.logger.info({ id: rec.id, key: job.key, phase: loc.phase }, 'recovery: rolling back an interrupted migration to resume it')
        const stable = await this.cas(job, loc, { gateway: rec.from, phase: 'stable' }, 'recover', true)
        await this.deleteCopy(job.path, rec.to).catch(() => { this.metrics.strays.inc() })
        if (stable.gateway === rec.from && this.fleet.isTarget(rec.to)) {
          await this.store.updateMigration(rec.id, { phase: 'queued', bytes: 0 })
          this.requeue(job)
          keep = true
          return
        }
        await this.end(job, 'rolled-back', `FERRY_INTERRUPTED: the planner stopped mid-migration; ${rec.to} is not a valid target any more`)
        return
      }
      if (rec.phase === 'queued' && loc !== null && loc.phase === 'stable' && loc.gateway === rec.from) {
        this.requeue(job)
        keep = true
        return
      }
      // Never flipped, and the location no longer refers to this migration: it is over. Remove a
      // copy the target may hold, unless the target is where the block lives.
      if (loc !== null && loc.gateway !== rec.to && loc.target !== rec.to && !loc.members.includes(rec.to) && rec.phase !== 'queued') {
        await this.deleteCopy(job.path, rec.to).catch(() => { this.metrics.strays.inc() })
      }
      await this.end(job, rec.phase === 'queued' ? 'cancelled' : 'rolled-back', `FERRY_INTERRUPTED: found unfinished after a planner restart (location ${loc === null ? 'none' : `${loc.phase} on ${loc.gateway}`})`)
    } finally {
      if (!keep && this.jobs.get(job.id) === job) this.forget(job)
    }
  }

  private requeue (job: Job): void {
    job.state = 'queued'
    job.phase = 'queued'
    job.touched = false
    job.bytes = 0
    this.queue.push(job)
    this.pump()
  }

  /** A location in copying/cutover/done that no log record explains: settle it where it is served. */
  private async recoverOrphan (volume: string, block: string, loc: BlockLocation): Promise<void> {
    const fence = this.requireLeader()
    this.logger.warn({ volume, block, phase: loc.phase, gateway: loc.gateway, target: loc.target }, 'recovery: settling a location no migration explains')
    const r = await this.store.casLocation(volume, block, loc.epoch, { gateway: loc.gateway, phase: 'stable' }, { fence, reason: 'recover:orphan' })
    if (!r.ok) {
      if (r.reason === 'fenced') throw new DeposedError('the store refused a write as fenced')
      return
    }
    const target = loc.phase === 'done' ? undefined : loc.target
    if (target !== undefined && target !== loc.gateway) {
      await this.deleteCopy(`/${volume}/${block}`, target).catch(() => { this.metrics.strays.inc() })
    }
  }

  // ───────────────────────────── steps ─────────────────────────────

  private requireLeader (): Fence {
    const fence = this.leader.fence()
    if (fence === null) throw new DeposedError('the lease is no longer ours')
    return fence
  }

  /** Throws when the job must stop: aborted (its reason), or no longer the leader. */
  private guard (job: Job): Fence {
    if (job.abort.signal.aborted) throw job.abort.signal.reason
    return this.requireLeader()
  }

  /**
   * A fenced compare-and-set from `current` to `next`. When the store call fails with an
   * unknown outcome (connection lost mid-call), the location is re-read: applied → carry on;
   * unchanged → try again; anything else → FERRY_LOCATION_CHANGED.
   */
  private async cas (job: Job, current: BlockLocation, next: LocationInput, step: string, ignoreAbort = false): Promise<BlockLocation> {
    for (let attempt = 0; ; attempt++) {
      const fence = ignoreAbort ? this.requireLeader() : this.guard(job)
      try {
        const r = await this.store.casLocation(job.volume, job.block, current.epoch, next, { fence, reason: `migration:${job.id}:${step}` })
        if (r.ok) return r.location
        if (r.reason === 'fenced') throw new DeposedError('the store refused a location write as fenced')
        throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key} changed under migration ${job.id} (epoch ${r.current?.epoch ?? 0}, expected ${current.epoch})`, 409)
      } catch (err) {
        if (!(err instanceof FerryError) || err.code !== 'FERRY_STATE_UNAVAILABLE' || attempt >= 5) throw err
        const now = await this.read(job, ignoreAbort)
        if (now !== null && now.epoch > current.epoch && now.fence === fence.token && sameRoute(now, next)) return now
        if (now === null || now.epoch !== current.epoch) {
          throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key} changed under migration ${job.id} while the store was unreachable`, 409)
        }
        await delay(STEP_RETRY_MS * 2 ** attempt, ignoreAbort ? undefined : job.abort.signal)
      }
    }
  }

  /** The block's location from the store, retrying while the store is briefly unavailable. */
  private async read (job: Job, ignoreAbort = false): Promise<BlockLocation | null> {
    for (let attempt = 0; ; attempt++) {
      if (!ignoreAbort && job.abort.signal.aborted) throw job.abort.signal.reason
      try {
        return await this.store.getLocation(job.volume, job.block)
      } catch (err) {
        if (!(err instanceof FerryError) || err.code !== 'FERRY_STATE_UNAVAILABLE' || attempt >= 6) throw err
        await delay(STEP_RETRY_MS * 2 ** attempt, ignoreAbort ? undefined : job.abort.signal)
      }
    }
  }

  /**
   * The block's location; a block without one is placed where it is served now — the first
   * gateway in rendezvous order (healthy first, as the proxy routes it) that holds it. A
   * gateway that fails the check stops the search: placing the block on a later one that holds
   * an older copy would lose the newer one.
   */
  private async ensurePlaced (volume: string, block: string): Promise<BlockLocation> {
    const existing = await this.store.getLocation(volume, block)
    if (existing !== null) return existing
    const key = blockKey(volume, block)
    for (const id of this.fleet.ranked(key)) {
      const h = await this.head(`/${volume}/${block}`, id)
      if (h.status === 404) continue
      if (h.status !== 200) throw plannerError('FERRY_COPY_SOURCE_FAILED', `cannot tell whether gateway ${id} holds ${key} (${h.status})`, 502)
      if (h.size !== null) this.fleet.noteSize(volume, block, h.size)
      const fence = this.requireLeader()
      const r = await this.store.casLocation(volume, block, 0, { gateway: id, phase: 'stable' }, { fence, reason: 'migration:place' })
      if (r.ok) return r.location
      if (r.reason === 'fenced') throw new DeposedError('the store refused a location write as fenced')
      if (r.current !== null) return r.current // a proxy's first write placed it meanwhile
      throw plannerError('FERRY_LOCATION_CHANGED', `block ${key} changed while being placed`, 409)
    }
    throw plannerError('FERRY_BLOCK_NOT_FOUND', `block ${key} has no location and no gateway holds it`, 404)
  }

  private async head (path: string, gateway: string, signal?: AbortSignal): Promise<HeadResult> {
    return await headBlock(this.fleet.get(gateway), path, this.config.requestTimeoutMs, signal)
  }

  /** HEAD, retried while it fails (a flaky source during cut-over) and time is `left()`. */
  private async headUntil (job: Job, gateway: string, left: () => number): Promise<HeadResult> {
    for (let attempt = 0; ; attempt++) {
      this.guard(job)
      const h = await this.head(job.path, gateway, job.abort.signal)
      if (h.status === 200 || h.status === 404) return h
      if (left() <= 0) {
        throw plannerError('FERRY_CUTOVER_TIMEOUT', `gateway ${gateway} did not answer the cut-over check for ${job.key} in time (${h.error ?? h.status})`, 503)
      }
      await delay(Math.min(STEP_RETRY_MS * 2 ** attempt, 200, Math.max(1, left())), job.abort.signal)
    }
  }

  /**
   * Whether the source still holds exactly the bytes copied, once writes are held. Its ETag
   * decides where it can: another ETag means a write landed (copy again), the same content hash
   * means none did. An nginx ETag that stayed the same proves nothing — it is mtime-size, kept by
   * a same-size write in the same second or by one carrying the client's `Date` header — and a
   * gateway may send none: then the source is read again and hashed. Trusting the ETag there
   * would flip onto a copy that misses an acknowledged write.
   */
  private async sourceUnchanged (job: Job, copy: CopyResult, left: () => number): Promise<boolean> {
    const source = this.fleet.get(job.from)
    if (source === undefined) throw plannerError('FERRY_COPY_SOURCE_FAILED', `gateway ${job.from} is no longer configured`, 502)
    const src = await this.headUntil(job, job.from, left)
    if (src.status === 404) throw plannerError('FERRY_SOURCE_MISSING', `block ${job.key} was deleted from the source during the migration`, 409)
    const verdict = judgeByEtag(source.kind, src.etag, { etag: copy.sourceEtag, sha256: copy.sha256 })
    if (verdict !== 'unproven') return verdict === 'same'
    const now = await this.hashUntil(job, source, left)
    if (now.status === 404) throw plannerError('FERRY_SOURCE_MISSING', `block ${job.key} was deleted from the source during the migration`, 409)
    return now.sha256 === copy.sha256
  }

  /**
   * Whether the target still holds the verified copy (deleted or replaced meanwhile: copy
   * again). Nothing but this migration writes the target before the flip — proxies route to the
   * source until then — so an opaque ETag unchanged since the verification is that copy; only
   * a target that sends no ETag has to be read again.
   */
  private async targetHolds (job: Job, copy: CopyResult, left: () => number): Promise<boolean> {
    const target = this.fleet.get(job.to)
    if (target === undefined) throw plannerError('FERRY_COPY_TARGET_FAILED', `gateway ${job.to} is no longer configured`, 502)
    const dst = await this.headUntil(job, job.to, left)
    if (dst.status !== 200) return false
    const verdict = judgeByEtag(target.kind, dst.etag, { etag: copy.targetEtag, sha256: copy.sha256 })
    if (verdict !== 'unproven') return verdict === 'same'
    if (dst.etag !== null && dst.etag === copy.targetEtag) return true
    const now = await this.hashUntil(job, target, left)
    return now.status === 200 && now.sha256 === copy.sha256
  }

  /** GET and hash, retried while the gateway fails and time is `left()` (as headUntil). */
  private async hashUntil (job: Job, g: FleetGateway, left: () => number): Promise<HashedBlock> {
    for (let attempt = 0; ; attempt++) {
      this.guard(job)
      let why: string
      try {
        const h = await hashBlock(g.pool, job.path, AbortSignal.any([job.abort.signal, AbortSignal.timeout(Math.max(1, Math.ceil(left())))]))
        if (h.status === 200 || h.status === 404) return h
        why = String(h.status)
      } catch (err) {
        if (job.abort.signal.aborted) throw job.abort.signal.reason
        why = (err as { code?: string }).code ?? (err as Error).message
      }
      if (left() <= 0) {
        throw plannerError('FERRY_CUTOVER_TIMEOUT', `gateway ${g.id} could not be read for the cut-over check of ${job.key} in time (${why})`, 503)
      }
      await delay(Math.min(STEP_RETRY_MS * 2 ** attempt, 200, Math.max(1, left())), job.abort.signal)
    }
  }

  /**
   * Removes the block's copy from `gateway` (404 is success). Only while we surely lead, and
   * never for longer than our lease lasts: gateways do not check fencing tokens, so a DELETE
   * sent by a deposed planner could remove a copy its successor just made.
   */
  private async deleteCopy (path: string, gateway: string): Promise<void> {
    this.requireLeader()
    const budget = Math.min(this.config.requestTimeoutMs, this.leader.validForMs())
    if (budget <= 0) throw new DeposedError('the lease expires before a DELETE could finish')
    await deleteBlock(this.fleet.get(gateway), path, budget)
  }

  // ───────────────────────────── the log ─────────────────────────────

  private setPhase (job: Job, phase: MigrationPhase): void {
    job.phase = phase
    this.persist(job, { phase, bytes: job.bytes, totalBytes: job.totalBytes })
  }

  /** Queues a log update for the job (in order, errors logged: the location is the truth). */
  private persist (job: Job, patch: MigrationPatch): void {
    job.lastPersistAt = performance.now()
    job.persisted = job.persisted.then(() => this.store.updateMigration(job.id, patch)).catch(err => {
      this.logger.debug({ id: job.id, err: describeError(err) }, 'migration log update failed')
    })
  }

  private async end (job: Job, result: MigrationResult, error: string | null): Promise<void> {
    this.counts[result]++
    this.metrics.ended.inc({ result })
    const patch: MigrationPatch = { result, error, endedAt: Date.now(), phase: result === 'ok' ? 'done' : job.phase, bytes: job.bytes, totalBytes: job.totalBytes }
    job.persisted = job.persisted.then(() => this.store.updateMigration(job.id, patch))
    let rec: MigrationRecord | null = null
    try {
      rec = await job.persisted as MigrationRecord | null
    } catch (err) {
      this.logger.warn({ id: job.id, err: describeError(err) }, 'could not record the end of a migration; recovery will')
    } finally {
      this.forget(job)
    }
    if (rec !== null) this.emit('end', rec)
  }

  private forget (job: Job): void {
    if (job.timer !== null) clearTimeout(job.timer)
    job.timer = null
    if (this.jobs.get(job.id) === job) this.jobs.delete(job.id)
    if (this.byBlock.get(job.key) === job) this.byBlock.delete(job.key)
  }
}

function sameRoute (loc: BlockLocation, next: LocationInput): boolean {
  return loc.gateway === next.gateway && loc.phase === (next.phase ?? 'stable') && (loc.target ?? undefined) === (next.target ?? undefined)
}

/** A replica set repair: the target joins, nobody leaves (SubmitRequest.repair). */
function isRepair (job: { reason: string | null }): boolean {
  return job.reason?.startsWith('repair') === true
}
