import { randomBytes } from 'node:crypto'
import { blockKey } from '../../lib/ids.js'
import type { MigrationRecord } from '../../state/types.js'
import { plannerError } from './errors.js'
import { isRepair, newJob, type Job, type Queued } from './job.js'
import type { MigrationOps } from './ops.js'

/**
 * Waiting migrations, most valuable first: a binary heap on (priority desc, arrival asc). The
 * priority is the block's access score (the seed: "prioritise migration of most frequently
 * accessed data blocks"), so with a bandwidth limit the hot blocks of a drained gateway move
 * first; equal priorities keep their submission order.
 */
export class MigrationQueue<T extends Queued> {
  private heap: T[] = []

  get size (): number { return this.heap.length }

  push (item: T): void {
    const h = this.heap
    h.push(item)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(h[i] as T, h[p] as T)) break
      ;[h[i], h[p]] = [h[p] as T, h[i] as T]
      i = p
    }
  }

  pop (): T | undefined {
    const h = this.heap
    const top = h[0]
    const last = h.pop()
    if (h.length > 0 && last !== undefined) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && before(h[l] as T, h[m] as T)) m = l
        if (r < h.length && before(h[r] as T, h[m] as T)) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m] as T, h[i] as T]
        i = m
      }
    }
    return top
  }

  /** Removes the items for which `drop` holds (cancellations); O(n). */
  remove (drop: (item: T) => boolean): T[] {
    const removed = this.heap.filter(drop)
    if (removed.length === 0) return removed
    const kept = this.heap.filter(x => !drop(x))
    this.heap = []
    for (const x of kept) this.push(x)
    return removed
  }

  clear (): T[] {
    const all = this.heap
    this.heap = []
    return all
  }
}

function before (a: Queued, b: Queued): boolean {
  return a.priority !== b.priority ? a.priority > b.priority : a.seq < b.seq
}

/** What a decider asks the engine for (MigrationEngine.submit). */
export interface SubmitRequest {
  volume: string
  block: string
  to: string
  /** Why (`rebalance`, `drain:gw2`, `operator`): kept in the log. */
  reason: string
  /** Higher runs first; default 0. The planner passes the block's access score. */
  priority?: number
  /**
   * The in-sync member whose place `to` takes (default the set's head): a drain moves the copy
   * on the drained gateway wherever it stands in the set.
   */
  from?: string
  /**
   * A replica set repair: `to` joins the block's set as a new member, copied from `from` (an
   * in-sync member; default the set's head), and no member leaves. Recorded with a reason that
   * starts with `repair`.
   */
  repair?: { from: string }
}

export interface AdmissionOptions {
  ops: MigrationOps
  /** Whether queued jobs may start now (leading, not stopped, not paused). */
  canStart: () => boolean
  /** Carries out one job (the steps, and what ends it). */
  run: (job: Job) => Promise<void>
}

/**
 * Admission: which migrations are accepted (one per block, a bounded queue, a target that is
 * not already an in-sync member), the queue they wait in, and the slots (planner.migration
 * .concurrency) they run in. It decides nothing about how a block moves (steps.ts).
 */
export class Admission {
  /** Every job of ours, queued, running or waiting for its cleanup. */
  readonly jobs = new Map<string, Job>()
  private readonly byBlock = new Map<string, Job>()
  /** Blocks whose submission is being prepared (awaits in submit): reserved against a second one. */
  private readonly reserving = new Set<string>()
  private readonly heap = new MigrationQueue<Job>()
  running = 0
  private seq = 0
  private idleWaiters: Array<() => void> = []

  constructor (private readonly opts: AdmissionOptions) {}

  get queued (): number { return this.heap.size }

  busy (volume: string, block: string): boolean {
    const key = blockKey(volume, block)
    return this.byBlock.has(key) || this.reserving.has(key)
  }

  /**
   * Holds the block against admission while the caller works on its copies outside any job (the
   * recovery pass deleting a stray): a move admitted meanwhile could join that gateway and copy
   * to it, and the DELETE would then remove the new copy under it. False when it is busy already.
   */
  reserve (volume: string, block: string): boolean {
    if (this.busy(volume, block)) return false
    this.reserving.add(blockKey(volume, block))
    return true
  }

  release (volume: string, block: string): void {
    this.reserving.delete(blockKey(volume, block))
  }

  /** Replica set repairs queued or running (the repair decider's budget). */
  activeRepairs (): number {
    let n = 0
    for (const job of this.jobs.values()) if (isRepair(job)) n++
    return n
  }

  /**
   * Accepts a migration of one block to `to` and queues it; returns its log record. A block
   * routed by hash is given its location first (where it is now). Throws FerryError:
   * FERRY_UNKNOWN_GATEWAY, FERRY_MIGRATION_QUEUE_FULL, FERRY_BLOCK_BUSY, FERRY_MIGRATION_NOOP,
   * FERRY_BLOCK_NOT_FOUND, FERRY_LOCATIONS_REBUILDING, FERRY_PLANNER_NOT_LEADER (`active` turned false meanwhile).
   */
  async admit (req: SubmitRequest, active: () => boolean): Promise<MigrationRecord> {
    const { ops } = this.opts
    if (!ops.fleet.has(req.to)) throw plannerError('FERRY_UNKNOWN_GATEWAY', `no gateway ${req.to} is configured`, 404)
    if (this.heap.size >= ops.config.maxQueued) throw plannerError('FERRY_MIGRATION_QUEUE_FULL', `${this.heap.size} migrations are already queued`, 503)
    const key = blockKey(req.volume, req.block)
    if (this.busy(req.volume, req.block)) throw plannerError('FERRY_BLOCK_BUSY', `block ${key} is already being moved`, 409)
    this.reserving.add(key)
    try {
      const loc = await ops.ensurePlaced(req.volume, req.block)
      if (loc.phase !== 'stable') throw plannerError('FERRY_BLOCK_BUSY', `block ${key} is in ${loc.phase} (a migration is being finished)`, 409)
      if (loc.gateway === req.to || loc.inSync.includes(req.to)) throw plannerError('FERRY_MIGRATION_NOOP', `block ${key} is already on ${req.to}`, 409)
      const from = req.repair?.from ?? req.from ?? loc.gateway
      if (!loc.inSync.includes(from)) throw plannerError('FERRY_LOCATION_CHANGED', `block ${key}: ${from} is not an in-sync member (${loc.inSync.join(',')})`, 409)
      if (!active()) throw plannerError('FERRY_PLANNER_NOT_LEADER', 'this planner is not the leader', 503, { holder: ops.leader.holder })
      const record = await ops.store.appendMigration({
        id: newId(), volume: req.volume, block: req.block, from, to: req.to, phase: 'queued', bytes: 0,
        totalBytes: ops.fleet.sizeOf(req.volume, req.block) ?? null, startedAt: Date.now(),
        reason: req.repair !== undefined && !req.reason.startsWith('repair') ? `repair:${req.reason}` : req.reason
      })
      this.enqueue(this.register(record, req.priority ?? 0))
      return record
    } finally {
      this.reserving.delete(key)
    }
  }

  /** A job for the record, known to the engine (busy) but not queued. */
  register (rec: MigrationRecord, priority: number): Job {
    const job = newJob(rec, priority, this.seq++)
    this.jobs.set(job.id, job)
    this.byBlock.set(job.key, job)
    return job
  }

  enqueue (job: Job): void {
    this.heap.push(job)
    this.pump()
  }

  requeue (job: Job): void {
    job.state = 'queued'
    job.phase = 'queued'
    job.touched = false
    job.bytes = 0
    this.enqueue(job)
  }

  /** Takes a queued job out of the queue (a cancellation). */
  unqueue (job: Job): void {
    this.heap.remove(j => j === job)
  }

  clear (): void {
    this.heap.clear()
  }

  forget (job: Job): void {
    if (job.timer !== null) clearTimeout(job.timer)
    job.timer = null
    if (this.jobs.get(job.id) === job) this.jobs.delete(job.id)
    if (this.byBlock.get(job.key) === job) this.byBlock.delete(job.key)
  }

  /** Starts queued migrations while slots are free. */
  pump (): void {
    while (this.opts.canStart() && this.running < this.opts.ops.config.concurrency) {
      const job = this.heap.pop()
      if (job === undefined) return
      this.running++
      job.state = 'running'
      void this.opts.run(job).finally(() => {
        this.running--
        if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w()
        this.pump()
      })
    }
  }

  /** Resolves once no job is running. */
  async idle (): Promise<void> {
    if (this.running === 0) return
    await new Promise<void>(resolve => this.idleWaiters.push(resolve))
  }
}

function newId (): string {
  return `m-${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`
}
