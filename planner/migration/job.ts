import { blockKey } from '../../lib/ids.js'
import type { MigrationPhase, MigrationRecord } from '../../state/types.js'

export type JobState = 'queued' | 'running' | 'cleanup'

/** What the migration queue orders by: higher priority first, then first submitted. */
export interface Queued {
  readonly priority: number
  readonly seq: number
}

/** One migration as this planner carries it out (the log record is its durable half). */
export interface Job extends Queued {
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
  /** True once the target joined the set: a failure must then take it out again. */
  touched: boolean
  abort: AbortController
  /** Serialises this job's writes to the migration log (so they land in order). */
  persisted: Promise<unknown>
  lastPersistAt: number
  timer: NodeJS.Timeout | null
}

export function newJob (rec: MigrationRecord, priority: number, seq: number): Job {
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
    seq,
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

/** A replica set repair: the target joins, nobody leaves (SubmitRequest.repair). */
export function isRepair (job: { reason: string | null }): boolean {
  return job.reason?.startsWith('repair') === true
}
