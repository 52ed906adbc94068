import { randomBytes } from 'node:crypto'
import type { EventEmitter } from 'node:events'
import { FerryError } from '../../lib/errors.js'
import { blockKey } from '../../lib/ids.js'
import type { Logger } from '../../lib/log.js'
import type { BlockLocation, Fence, LocationInput, MigrationPatch, MigrationPhase, MigrationRecord, MigrationResult, StateStore } from '../../state/types.js'
import { contentHashOf } from '../../upstream/kinds.js'
import { hashBlock, type HashedBlock } from '../../upstream/verify.js'
import type { MigrationConfig } from '../config.js'
import { copyBlock, type CopyResult } from './copy.js'
import { DeposedError, describeError, plannerError } from './errors.js'
import type { Fleet, FleetGateway } from './fleet.js'
import { deleteBlock, delay, headBlock, type HeadResult } from './gateway-ops.js'
import type { Job } from './job.js'
import type { EngineMetrics } from './metrics.js'
import type { TokenBucket } from './token-bucket.js'
import { describeGatewayError } from '../../upstream/connect.js'

/** What the engine needs of leader election (planner/leader.ts). */
export interface LeaderView {
  /** The fencing token for location writes, or null when not (surely) the leader. */
  fence (): Fence | null
  /** How much longer we surely lead: bounds gateway side effects, which no store fences. */
  validForMs (): number
  /** The current leader's name, for FERRY_PLANNER_NOT_LEADER answers. */
  readonly holder: string
}

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
  /** The target became an in-sync member and (for a move) the source left: reads may go there. */
  flip: [FlipEvent]
  /** A migration ended (any result). */
  end: [MigrationRecord]
}

export const STEP_RETRY_MS = 25

/** MigrationOps.sameBytes: whether both sides hold the same bytes, and what each holds. */
export interface SameBytes {
  same: boolean
  /** The source's content hash (null: its kind gives none and it could not be read). */
  sourceTag: string | null
  /** When the source's bytes were first written (null: its answer does not say). */
  sourceWrittenAt: number | null
  /** What the target holds, with its content hash and written-at (null: absent, or unknown). */
  target: TargetContent & { tag: string | null, writtenAt: number | null }
}

/** A block's copy on a gateway as it was looked at: absent, or present with its ETag (null: none given). */
export interface TargetContent {
  present: boolean
  etag: string | null
}

export interface OpsOptions {
  store: StateStore
  fleet: Fleet
  leader: LeaderView
  config: () => MigrationConfig
  logger: Logger
  metrics: EngineMetrics
  bucket: TokenBucket
  events: EventEmitter<EngineEvents>
  /** Drops a job from the engine's registry (it ended, or is no longer ours). */
  forget: (job: Job) => void
}

/**
 * What the steps, the admission and the recovery share: fenced location writes and reads that
 * ride out a store blip, the gateway operations (HEAD, hash, copy, DELETE) bounded by the job's
 * abort signal and the lease, and the migration log. The store is the single source of truth;
 * every location write carries the leader's fencing token.
 */
export class MigrationOps {
  readonly store: StateStore
  readonly fleet: Fleet
  readonly leader: LeaderView
  readonly logger: Logger
  readonly metrics: EngineMetrics
  readonly events: EventEmitter<EngineEvents>
  readonly counts: Record<MigrationResult, number> = { ok: 0, failed: 0, 'rolled-back': 0, cancelled: 0 }
  recopies = 0
  lateCopies = 0
  private readonly configOf: () => MigrationConfig
  private readonly bucket: TokenBucket
  readonly forget: (job: Job) => void
  /** performance.now() when the store came back after an outage we saw; null: none seen, or down now. */
  private storeBackAt: number | null = null
  private storeDown = false
  private readonly unsubscribe: () => void

  constructor (opts: OpsOptions) {
    this.store = opts.store
    this.fleet = opts.fleet
    this.leader = opts.leader
    this.configOf = opts.config
    this.logger = opts.logger
    this.metrics = opts.metrics
    this.bucket = opts.bucket
    this.events = opts.events
    this.forget = opts.forget
    this.unsubscribe = opts.store.subscribe(e => {
      if (e.type !== 'status') return
      if (!e.status.ok) { this.storeDown = true; this.storeBackAt = null } else if (this.storeDown) { this.storeDown = false; this.storeBackAt = performance.now() }
    })
  }

  close (): void { this.unsubscribe() }

  /**
   * Waits out the rest of `afterStoreOutageMs` after a store outage. Proxies reconnect at their
   * own pace (with backoff, up to state.reconnect.maxDelayMs) and until then route and acknowledge
   * from the locations they had when the store went away. A set changed before they are back
   * would be one they do not know: a write acknowledged on a source alone after its copy was
   * taken, or a read of a removed member (the stale reads of the moves history at a Redis kill).
   */
  private async quietAfterOutage (job: Job, ignoreAbort: boolean): Promise<void> {
    for (;;) {
      const back = this.storeBackAt
      if (back === null) return
      const left = this.config.afterStoreOutageMs - (performance.now() - back)
      if (left <= 0) { this.storeBackAt = null; return }
      await delay(Math.min(left, 1000), ignoreAbort ? undefined : job.abort.signal)
    }
  }

  get config (): MigrationConfig { return this.configOf() }

  requireLeader (): Fence {
    const fence = this.leader.fence()
    if (fence === null) throw new DeposedError('the lease is no longer ours')
    return fence
  }

  /** Throws when the job must stop: aborted (its reason), or no longer the leader. */
  guard (job: Job): Fence {
    if (job.abort.signal.aborted) throw job.abort.signal.reason
    return this.requireLeader()
  }

  /**
   * A fenced compare-and-set from `current` to `next`. When the store call fails with an
   * unknown outcome (connection lost mid-call), the location is re-read: applied → carry on;
   * unchanged → try again; anything else → FERRY_LOCATION_CHANGED.
   */
  async cas (job: Job, current: BlockLocation, next: LocationInput, step: string, ignoreAbort = false): Promise<BlockLocation> {
    await this.quietAfterOutage(job, ignoreAbort)
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
        if (now !== null && now.epoch > current.epoch && now.fence === fence.token && sameSet(now, next)) return now
        if (now === null || now.epoch !== current.epoch) {
          throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key} changed under migration ${job.id} while the store was unreachable`, 409)
        }
        await delay(STEP_RETRY_MS * 2 ** attempt, ignoreAbort ? undefined : job.abort.signal)
      }
    }
  }

  /** The block's location from the store, retrying while the store is briefly unavailable. */
  async read (job: Job, ignoreAbort = false): Promise<BlockLocation | null> {
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
   * an older copy would lose the newer one. Never while the store's locations are being rebuilt
   * (FERRY_LOCATIONS_REBUILDING): then a block without one is not a block routed by hash but one
   * whose location was lost, and the first gateway in rendezvous order may hold only an old copy
   * left behind by an earlier move. Placed there, it was served instead of the writes acknowledged
   * elsewhere during the outage (stale reads in the soak, a rebalancing pass 1.2 s after the store
   * came back empty); the rebuild locates it on the copy written last.
   */
  async ensurePlaced (volume: string, block: string): Promise<BlockLocation> {
    const existing = await this.store.getLocation(volume, block)
    if (existing !== null) return existing
    const key = blockKey(volume, block)
    if ((await this.store.generation()).rebuilding) {
      throw plannerError('FERRY_LOCATIONS_REBUILDING', `block ${key} has no location while the store's locations are rebuilt from the gateways; not moved`, 503)
    }
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

  async head (path: string, gateway: string, signal?: AbortSignal): Promise<HeadResult> {
    return await headBlock(this.fleet.get(gateway), path, this.config.requestTimeoutMs, signal)
  }

  /** HEAD, retried while it fails (a flaky gateway) and time is `left()`. */
  async headUntil (job: Job, gateway: string, left: () => number): Promise<HeadResult> {
    for (let attempt = 0; ; attempt++) {
      this.guard(job)
      const h = await this.head(job.path, gateway, job.abort.signal)
      if (h.status === 200 || h.status === 404) return h
      if (left() <= 0) {
        throw plannerError('FERRY_CUTOVER_TIMEOUT', `gateway ${gateway} did not answer the check of ${job.key} in time (${h.error ?? h.status})`, 503)
      }
      await delay(Math.min(STEP_RETRY_MS * 2 ** attempt, 200, Math.max(1, left())), job.abort.signal)
    }
  }

  /** GET and hash, retried while the gateway fails and time is `left()` (as headUntil). */
  async hashUntil (job: Job, g: FleetGateway, left: () => number): Promise<HashedBlock> {
    for (let attempt = 0; ; attempt++) {
      this.guard(job)
      let why: string
      try {
        const h = await hashBlock(g.pool, job.path, AbortSignal.any([job.abort.signal, AbortSignal.timeout(Math.max(1, Math.ceil(left())))]))
        if (h.status === 200 || h.status === 404) return h
        why = String(h.status)
      } catch (err) {
        if (job.abort.signal.aborted) throw job.abort.signal.reason
        why = describeGatewayError(err)
      }
      if (left() <= 0) {
        throw plannerError('FERRY_CUTOVER_TIMEOUT', `gateway ${g.id} could not be read for the check of ${job.key} in time (${why})`, 503)
      }
      await delay(Math.min(STEP_RETRY_MS * 2 ** attempt, 200, Math.max(1, left())), job.abort.signal)
    }
  }

  /**
   * Whether the source and the target hold the same bytes now: by content-hash ETags where both
   * kinds give one, else by reading and hashing both (an nginx mtime-size ETag proves nothing).
   * `sourceTag` identifies the source's content (to tell a source that keeps changing from one
   * that does not); `target` says what the target holds (absent, or its content hash and ETag),
   * so that a copy again replaces exactly that (MigrationSteps.verifyInSync).
   */
  async sameBytes (job: Job, left: () => number): Promise<SameBytes> {
    const source = this.fleet.get(job.from)
    const target = this.fleet.get(job.to)
    if (source === undefined) throw plannerError('FERRY_COPY_SOURCE_FAILED', `gateway ${job.from} is no longer configured`, 502)
    if (target === undefined) throw plannerError('FERRY_COPY_TARGET_FAILED', `gateway ${job.to} is no longer configured`, 502)
    const [src, dst] = await Promise.all([this.headUntil(job, job.from, left), this.headUntil(job, job.to, left)])
    if (src.status === 404) throw plannerError('FERRY_SOURCE_MISSING', `block ${job.key} was deleted from the source`, 409)
    const sourceWrittenAt = src.writtenAt
    // Without a target to compare with, the source's ETag as it is still tells whether it changes.
    if (dst.status !== 200) return { same: false, sourceTag: contentHashOf(source.kind, src.etag) ?? src.etag, sourceWrittenAt, target: { present: false, tag: null, etag: null, writtenAt: null } }
    const a = contentHashOf(source.kind, src.etag)
    const b = contentHashOf(target.kind, dst.etag)
    if (a !== null && b !== null) return { same: a === b, sourceTag: a, sourceWrittenAt, target: { present: true, tag: b, etag: dst.etag, writtenAt: dst.writtenAt } }
    const [ha, hb] = await Promise.all([this.hashUntil(job, source, left), this.hashUntil(job, target, left)])
    const present = hb.status === 200
    return { same: ha.status === 200 && present && ha.sha256 === hb.sha256, sourceTag: ha.sha256 ?? null, sourceWrittenAt, target: { present, tag: present ? hb.sha256 ?? null : null, etag: present ? dst.etag : null, writtenAt: present ? dst.writtenAt : null } }
  }

  /**
   * What the target holds before it joins the block's set, when no proxy sends it writes yet:
   * bytes no newer than the source's, which the first copy may replace (and only those). A
   * gateway kind that takes no precondition is cleared now instead.
   */
  async targetBeforeJoin (job: Job): Promise<TargetContent> {
    const target = this.fleet.get(job.to)
    if (target === undefined) throw plannerError('FERRY_COPY_TARGET_FAILED', `gateway ${job.to} is no longer configured`, 502)
    if (target.kind !== 'ferry') {
      await this.clearTarget(job)
      return { present: false, etag: null }
    }
    const started = performance.now()
    const h = await this.headUntil(job, job.to, () => this.config.requestTimeoutMs - (performance.now() - started))
    if (h.status === 404) return { present: false, etag: null }
    if (h.etag === null) throw plannerError('FERRY_COPY_TARGET_FAILED', `gateway ${job.to} gave no ETag for ${job.key}: a copy could not be made conditional`, 502)
    return { present: true, etag: h.etag }
  }

  private async clearTarget (job: Job): Promise<void> {
    this.guard(job)
    try {
      await this.deleteCopy(job.path, job.to)
    } catch (err) {
      if (err instanceof FerryError || err instanceof DeposedError || job.abort.signal.aborted) throw err
      throw plannerError('FERRY_COPY_TARGET_FAILED', `clearing ${job.key} on ${job.to} before the copy failed: ${describeGatewayError(err)}`, 502)
    }
  }

  /**
   * Streams the block from the source to the target (see copy.ts), with progress. Null: a write
   * proxies teed to the target since the copy began was kept rather than overwritten (the
   * verify that follows compares the two sides; every later write reaches both).
   *
   * `replacing`: what the target holds that the copy may replace — bytes known to be older than
   * the source's: what it held before it joined the set (targetBeforeJoin), or what
   * MigrationSteps.verifyInSync checked. Never unconditional onto a gateway that takes a
   * precondition: a write teed to the target since it joined may still be on its way to the
   * source, and a proxy has counted the target as storing it; overwritten with the source's
   * older bytes, the target would go in sync without it the moment the source matched the copy
   * (the stale read of the 10,000-move run at R = 2).
   */
  async copy (job: Job, replacing: TargetContent, timeoutMs = this.config.copyTimeoutMs): Promise<CopyResult | null> {
    this.guard(job)
    const source = this.fleet.get(job.from)
    const target = this.fleet.get(job.to)
    if (source === undefined) throw plannerError('FERRY_COPY_SOURCE_FAILED', `gateway ${job.from} is no longer configured`, 502)
    if (target === undefined) throw plannerError('FERRY_COPY_TARGET_FAILED', `gateway ${job.to} is no longer configured`, 502)
    job.bytes = 0
    job.copyStartedAt = performance.now()
    // The reference gateway compares If-Match with its ETag. S3 gateways and nginx cannot be
    // trusted to (radosgw compares it unquoted, so a quoted ETag never matches; nginx ignores
    // it): bytes they hold that may be replaced are cleared instead — the target is out of sync,
    // so nobody reads it — and the copy may only create the block. A write teed there from then
    // on is kept, as one landing after the reference gateway's HEAD is.
    let unlessChangedFrom: string | null
    if (target.kind === 'ferry') {
      if (replacing.present && replacing.etag === null) throw plannerError('FERRY_COPY_TARGET_FAILED', `gateway ${job.to} gave no ETag for ${job.key}: a copy could not be made conditional`, 502)
      unlessChangedFrom = replacing.etag
    } else {
      if (replacing.present) await this.clearTarget(job)
      unlessChangedFrom = null
    }
    const result = await copyBlock(source, target, {
      unlessChangedFrom,
      ...(target.kind === 'webdav' ? { stagingPath: `/${job.volume}/.ferry-copy.${job.block}.${randomBytes(4).toString('hex')}` } : {}),
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
    if (result === null) {
      this.logger.debug({ id: job.id, key: job.key, target: job.to }, 'the target took a newer write during the copy; kept')
      return null
    }
    job.totalBytes = result.bytes
    this.fleet.noteSize(job.volume, job.block, result.bytes)
    this.persist(job, { bytes: result.bytes, totalBytes: result.bytes })
    return result
  }

  /**
   * Removes the block's copy from `gateway` (404 is success). Only while we surely lead, and
   * never for longer than our lease lasts: gateways do not check fencing tokens, so a DELETE
   * sent by a deposed planner could remove a copy its successor just made.
   */
  async deleteCopy (path: string, gateway: string): Promise<boolean> {
    this.requireLeader()
    const budget = Math.min(this.config.requestTimeoutMs, this.leader.validForMs())
    if (budget <= 0) throw new DeposedError('the lease expires before a DELETE could finish')
    return await deleteBlock(this.fleet.get(gateway), path, budget)
  }

  /**
   * deleteCopy for a copy that is no member's (a joiner taken out, a target that was down): only
   * wasted space if it stays, so a failure is counted and the copy kept in `strays`, which the
   * recovery pass retries while the block is not being moved and the gateway is not a member.
   */
  async dropStray (volume: string, block: string, gateway: string): Promise<void> {
    const key = `${gateway} /${volume}/${block}`
    const entry = this.strays.get(key)
    try {
      const existed = await this.deleteCopy(`/${volume}/${block}`, gateway)
      this.strays.delete(key)
      // A copy found again at a re-check was written after the first DELETE: a write still
      // teed there by a proxy that had not heard of the removal. More may be on their way.
      if (existed && entry !== undefined && entry.recheck) {
        this.lateCopies++
        this.metrics.lateCopies.inc()
        this.recheckLater(volume, block, gateway, entry.afterMs * 2, entry.checks + 1)
      }
    } catch (err) {
      // Counted once per copy: a failed delete waits in `strays` with dueAt 0.
      if (entry === undefined || entry.dueAt !== 0) {
        this.logger.warn({ path: `/${volume}/${block}`, gateway, err: describeError(err) }, 'could not delete a copy that is no member\'s; will retry')
        this.metrics.strays.inc()
      }
      // Retried at the next pass; a re-check stays one, so a copy found then still counts as late.
      this.strays.set(key, { volume, block, gateway, dueAt: 0, recheck: entry?.recheck ?? false, afterMs: entry?.afterMs ?? 0, checks: entry?.checks ?? 0 })
    }
  }

  /**
   * A source's copy was deleted at the end of a move, but a write a proxy teed to it before it
   * heard of the removal can still land after the DELETE and leave a copy that is no member's
   * (wasted space, and a stale copy the day the gateway rejoins the set without a fresh copy).
   * The recovery pass deletes it again after `afterMs`; a copy found then means more may follow,
   * so the re-check repeats with a doubled delay, up to five times. The pass skips a block that
   * is being moved and holds it against admission while it deletes (MigrationRecovery): a move
   * back onto the gateway would otherwise lose its new copy to this DELETE.
   */
  recheckLater (volume: string, block: string, gateway: string, afterMs: number, checks = 0): void {
    if (checks >= 5) return
    this.strays.set(`${gateway} /${volume}/${block}`, { volume, block, gateway, dueAt: performance.now() + afterMs, recheck: true, afterMs, checks })
  }

  /**
   * Copies to delete (again) once `dueAt` (performance.now() ms) has passed, by `gateway path`:
   * deletes that failed (dropStray) and re-checks after a move's clean-up (recheckLater).
   */
  readonly strays = new Map<string, { volume: string, block: string, gateway: string, dueAt: number, recheck: boolean, afterMs: number, checks: number }>()

  // ───────────────────────────── the log ─────────────────────────────

  setPhase (job: Job, phase: MigrationPhase): void {
    job.phase = phase
    this.persist(job, { phase, bytes: job.bytes, totalBytes: job.totalBytes })
  }

  /** Queues a log update for the job (in order, errors logged: the location is the truth). */
  persist (job: Job, patch: MigrationPatch): void {
    job.lastPersistAt = performance.now()
    job.persisted = job.persisted.then(() => this.store.updateMigration(job.id, patch)).catch(err => {
      this.logger.debug({ id: job.id, err: describeError(err) }, 'migration log update failed')
    })
  }

  async end (job: Job, result: MigrationResult, error: string | null): Promise<void> {
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
    if (rec !== null) this.events.emit('end', rec)
  }
}

function sameSet (loc: BlockLocation, next: LocationInput): boolean {
  const members = next.members ?? [next.gateway]
  const inSync = next.inSync ?? members
  return loc.gateway === next.gateway && loc.phase === (next.phase ?? 'stable') && (loc.target ?? undefined) === (next.target ?? undefined) &&
    loc.members.join(',') === members.join(',') && [...loc.inSync].sort().join(',') === [...inSync].sort().join(',')
}
