import { EventEmitter } from 'node:events'
import type { Registry } from 'prom-client'
import { silentLogger, type Logger } from '../../lib/log.js'
import type { MigrationQuery, MigrationRecord, MigrationResult, StateStore } from '../../state/types.js'
import type { MigrationConfig } from '../config.js'
import { DeposedError, StoppingError, describeError, plannerError } from './errors.js'
import type { Fleet } from './fleet.js'
import type { Job } from './job.js'
import { EngineMetrics } from './metrics.js'
import { MigrationOps, type EngineEvents, type LeaderView } from './ops.js'
import { Admission, type SubmitRequest } from './queue.js'
import { MigrationRecovery } from './recovery.js'
import { MigrationSteps } from './steps.js'
import { TokenBucket } from './token-bucket.js'

export type { EngineEvents, FlipEvent, LeaderView } from './ops.js'
export type { SubmitRequest } from './queue.js'

export interface MigrationEngineOptions {
  store: StateStore
  fleet: Fleet
  leader: LeaderView
  config: MigrationConfig
  logger?: Logger
  registry?: Registry
}

export interface MigrationProgress {
  state: 'queued' | 'running' | 'cleanup'
  bytes: number
  totalBytes: number | null
  percent: number | null
  bytesPerSec: number | null
  /** Estimated time until the copy completes (null when unknown). */
  etaMs: number | null
  /** Copies repeated because the target still differed from the source after the copy. */
  recopies: number
}

export type MigrationView = MigrationRecord & { progress: MigrationProgress | null }

/**
 * The migration engine: the one executor the planner's deciders (rebalancer, drains, evacuation,
 * repair, operator moves) submit moves to. It only executes: admission and the queue
 * (queue.ts), the membership-change steps of one migration (steps.ts), and resuming what a
 * previous leader left (recovery.ts), over the shared store, gateway and log operations (ops.ts).
 * This class is their public face: leadership, submission, cancellation and progress.
 */
export class MigrationEngine extends EventEmitter<EngineEvents> {
  private config: MigrationConfig
  private readonly logger: Logger
  private readonly bucket: TokenBucket
  private readonly metrics: EngineMetrics
  private readonly ops: MigrationOps
  private readonly admission: Admission
  private readonly steps: MigrationSteps
  private readonly recovery: MigrationRecovery
  private active = false
  private stopped = false
  /** The operator's kill switch: queued migrations wait, running ones finish (a half-done move is never left). */
  private paused = false

  constructor (opts: MigrationEngineOptions) {
    super()
    this.config = opts.config
    this.logger = (opts.logger ?? silentLogger).child({ component: 'migration' })
    this.bucket = new TokenBucket(opts.config.bandwidthBytesPerSec, opts.config.burstBytes)
    this.metrics = new EngineMetrics(opts.registry, this)
    this.ops = new MigrationOps({
      store: opts.store, fleet: opts.fleet, leader: opts.leader, config: () => this.config, logger: this.logger,
      metrics: this.metrics, bucket: this.bucket, events: this, forget: job => { this.admission.forget(job) }
    })
    this.steps = new MigrationSteps(this.ops)
    this.admission = new Admission({ ops: this.ops, canStart: () => this.active && !this.stopped && !this.paused, run: job => this.run(job) })
    this.recovery = new MigrationRecovery(this.ops, this.admission, this.steps, () => this.active && !this.stopped)
  }

  /** Ended migrations by result since start (also in metrics; kept for the admin API and tests). */
  get counts (): Record<MigrationResult, number> { return this.ops.counts }
  /** Copies repeated since start because the target still differed after the copy. */
  get recopies (): number { return this.ops.recopies }
  /** Copies a move's clean-up found again on the source after deleting it, and deleted again. */
  get lateCopies (): number { return this.ops.lateCopies }
  get queued (): number { return this.admission.queued }
  get inFlight (): number { return this.admission.running }
  get isActive (): boolean { return this.active }
  get isPaused (): boolean { return this.paused }

  /** Pauses or resumes data movement: while paused nothing new starts; running migrations finish. */
  setPaused (paused: boolean): void {
    if (paused === this.paused) return
    this.paused = paused
    this.logger.warn({ queued: this.queued, running: this.inFlight }, paused ? 'data movement paused by the operator' : 'data movement resumed')
    this.admission.pump()
  }

  reconfigure (config: MigrationConfig): void {
    this.config = config
    this.bucket.reconfigure(config.bandwidthBytesPerSec, config.burstBytes)
    this.admission.pump()
  }

  /** Replica set repairs queued or running (the repair decider's budget). */
  activeRepairs (): number {
    return this.admission.activeRepairs()
  }

  /** Whether a migration of the block is queued or running here. */
  busy (volume: string, block: string): boolean {
    return this.admission.busy(volume, block)
  }

  // ───────────────────────────── leadership ─────────────────────────────

  /** We became the leader: finish or roll back what a predecessor left, then start working. */
  async activate (): Promise<void> {
    if (this.stopped) return
    this.active = true
    await this.recovery.recover(true)
    this.recovery.schedule()
    this.admission.pump()
  }

  /**
   * We are no longer the leader: stop at once and touch nothing more — in-flight copies are
   * aborted without rollback (the new leader's recovery does that; two planners undoing each
   * other's work is what fencing prevents). The log records stay active for it to find.
   */
  deactivate (reason: string): void {
    if (!this.active) return
    this.active = false
    this.logger.warn({ reason, running: this.inFlight, queued: this.queued }, 'migration engine paused: not the leader')
    this.abandonAll(new DeposedError(reason))
  }

  /**
   * Graceful stop: queued migrations stay in the log (the next leader resumes them), running
   * ones whose target is not in sync yet are undone now, those waiting to remove their source
   * are left for the next leader. Resolves once nothing of ours is in flight.
   */
  async stop (): Promise<void> {
    this.stopped = true
    this.recovery.clear()
    this.admission.clear()
    const jobs = [...this.admission.jobs.values()]
    const running = jobs.filter(j => j.state === 'running')
    for (const job of jobs) {
      if (job.timer !== null) clearTimeout(job.timer)
      job.abort.abort(new StoppingError(false))
    }
    await this.admission.idle()
    await Promise.all(running.map(j => j.persisted.catch(() => {})))
    this.ops.close()
    this.active = false
    for (const job of [...this.admission.jobs.values()]) this.admission.forget(job)
  }

  /** As a crash: everything dropped, nothing more written anywhere. */
  kill (): void {
    this.stopped = true
    this.active = false
    this.recovery.clear()
    this.ops.close()
    this.abandonAll(new StoppingError(true))
  }

  private abandonAll (reason: Error): void {
    this.admission.clear()
    for (const job of [...this.admission.jobs.values()]) {
      if (job.timer !== null) clearTimeout(job.timer)
      job.timer = null
      job.abort.abort(reason)
      if (job.state !== 'running') this.admission.forget(job)
    }
  }

  /** Completes or undoes unfinished migrations not running here (recovery.ts). Never throws. */
  recover (scanLocations = false): Promise<void> {
    return this.recovery.recover(scanLocations)
  }

  // ───────────────────────────── submission ─────────────────────────────

  /**
   * Queues a migration of one block to `to` and returns its log record (queue.ts Admission.admit
   * says what is refused). Throws FerryError; FERRY_PLANNER_NOT_LEADER on a standby planner.
   */
  /**
   * Learns a block's size from a HEAD on `gateway` (the fleet keeps it: repair's bytes to copy).
   * Null when the gateway does not say; never throws for a gateway failure.
   */
  async learnSize (volume: string, block: string, gateway: string): Promise<number | null> {
    const h = await this.ops.head(`/${volume}/${block}`, gateway)
    if (h.status !== 200 || h.size === null) return null
    this.ops.fleet.noteSize(volume, block, h.size)
    return h.size
  }

  async submit (req: SubmitRequest): Promise<MigrationRecord> {
    if (!this.active) throw plannerError('FERRY_PLANNER_NOT_LEADER', 'this planner is not the leader', 503, { holder: this.ops.leader.holder })
    return await this.admission.admit(req, () => this.active)
  }

  /**
   * Cancels a queued migration, or interrupts a running one before its target is in sync (it is
   * undone). One whose source is leaving cannot be cancelled: the block lives on the target.
   */
  async cancel (id: string): Promise<MigrationView> {
    const job = this.admission.jobs.get(id)
    if (job === undefined) {
      const rec = await this.ops.store.getMigration(id)
      if (rec === null) throw plannerError('FERRY_MIGRATION_NOT_FOUND', `no migration ${id}`, 404)
      throw plannerError('FERRY_MIGRATION_NOT_CANCELLABLE', `migration ${id} is not running here (${rec.result ?? rec.phase})`, 409)
    }
    if (job.state === 'cleanup' || job.phase === 'cleanup') throw plannerError('FERRY_MIGRATION_NOT_CANCELLABLE', `migration ${id} already moved the block`, 409)
    if (job.state === 'queued') {
      this.admission.unqueue(job)
      await this.ops.end(job, 'cancelled', 'cancelled by the operator')
    } else {
      job.abort.abort(plannerError('FERRY_INTERRUPTED', 'cancelled by the operator', 503))
    }
    return await this.get(id)
  }

  async get (id: string): Promise<MigrationView> {
    const rec = await this.ops.store.getMigration(id)
    if (rec === null) throw plannerError('FERRY_MIGRATION_NOT_FOUND', `no migration ${id}`, 404)
    return this.view(rec)
  }

  async list (query: MigrationQuery = {}): Promise<MigrationView[]> {
    return (await this.ops.store.listMigrations(query)).map(r => this.view(r))
  }

  /** The live progress of a migration of ours (null when it is not queued or running here). */
  progress (id: string): MigrationProgress | null {
    const job = this.admission.jobs.get(id)
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
    const job = this.admission.jobs.get(rec.id)
    const progress = job === undefined ? null : this.progress(rec.id)
    // The log lags the live copy by up to progressIntervalMs: show the newer figure.
    if (job !== undefined && rec.result === null) return { ...rec, phase: job.phase, bytes: job.bytes, totalBytes: job.totalBytes ?? rec.totalBytes, progress }
    return { ...rec, progress }
  }

  // ───────────────────────────── one migration ─────────────────────────────

  private async run (job: Job): Promise<void> {
    try {
      await this.steps.run(job)
    } catch (err) {
      const reason = job.abort.signal.aborted ? job.abort.signal.reason as unknown : err
      if (reason instanceof DeposedError || err instanceof DeposedError || (reason instanceof StoppingError && reason.abrupt)) {
        // Not ours to touch any more: the record stays active for the next leader.
        this.logger.info({ id: job.id, key: job.key, reason: describeError(reason) }, 'migration abandoned')
        this.admission.forget(job)
        return
      }
      const error = describeError(reason instanceof StoppingError ? plannerError('FERRY_INTERRUPTED', 'the planner stopped mid-migration', 503) : reason)
      this.logger.info({ id: job.id, key: job.key, error }, 'migration rolled back')
      try {
        this.ops.requireLeader()
        await this.ops.end(job, job.phase === 'queued' ? 'failed' : 'rolled-back', error)
      } catch {
        this.admission.forget(job) // recovery records the end
      }
    }
  }
}
