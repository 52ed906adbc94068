import { Counter, Gauge, type Registry } from 'prom-client'
import type { Logger } from '../lib/log.js'
import { LocationCache } from '../state/cache.js'
import { STATE_CLOSED, STATE_UNAVAILABLE } from '../state/errors.js'
import type { AccessDelta, BlockLocation, StateStore } from '../state/types.js'
import type { AccessRecorder } from './access-recorder.js'

export interface StateSyncOptions {
  flushIntervalMs: number
  maxPendingDeltas: number
}

interface PendingVersion { volume: string, block: string, epoch: number, version: string }

/** Deltas per mergeAccess call: keeps one Redis pipeline (and one Lua batch) a sensible size. */
const MERGE_BATCH = 2000

/**
 * Whether a failed call may succeed later as it is: the store was unreachable (or closing). Any
 * other failure (a refused value, foreign data in a key) will fail the same way again.
 */
function transient (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return code === STATE_UNAVAILABLE || code === STATE_CLOSED
}

/**
 * The proxy's side of the shared state: the in-memory LocationCache the RouteTable reads,
 * the periodic flush of access deltas (merged across proxies in the store), the recording of
 * a new block's first location, and the versions of acknowledged writes.
 *
 * Everything on the request path is local. The store is touched only by the flush timer and by
 * the first write of a block that has no location yet. When the store is unreachable, routing
 * goes on from the cache, deltas accumulate up to `maxPendingDeltas` (then are dropped and
 * counted), and everything is flushed when it returns.
 */
export class StateSync {
  readonly cache: LocationCache
  private timer: NodeJS.Timeout | undefined
  private pending: AccessDelta[] = []
  private versions = new Map<string, PendingVersion>()
  private flushing: Promise<void> | undefined
  private opts: StateSyncOptions
  private readonly dropped: Counter
  private readonly flushed: Counter
  private readonly claimsFailed: Counter
  /** Waiters for a block's location to change, by blockKey. */
  private readonly waiters = new Map<string, Set<() => void>>()

  constructor (
    readonly store: StateStore,
    private readonly recorder: AccessRecorder,
    opts: StateSyncOptions,
    registry: Registry,
    private readonly logger: Logger
  ) {
    this.opts = opts
    this.cache = new LocationCache(store, { logger })
    this.cache.onChange(change => {
      const set = this.waiters.get(change.volume + '/' + change.block)
      if (set !== undefined) for (const wake of set) wake()
    })
    const registers = [registry]
    this.dropped = new Counter({ name: 'ferry_state_deltas_dropped_total', help: 'Access deltas dropped: beyond the bound while the store was unreachable, or in a batch the store refused', registers })
    this.flushed = new Counter({ name: 'ferry_state_deltas_flushed_total', help: 'Access deltas merged into the shared store', registers })
    this.claimsFailed = new Counter({ name: 'ferry_state_claims_failed_total', help: 'First-write locations that could not be recorded (store unreachable)', registers })
    const pendingRef = (): number => this.pending.length
    new Gauge({ name: 'ferry_state_deltas_pending', help: 'Access deltas waiting for the store', registers, collect () { this.set(pendingRef()) } })
    const cache = this.cache
    new Gauge({ name: 'ferry_state_locations_cached', help: 'Block locations in the proxy\'s cache', registers, collect () { this.set(cache.size) } })
  }

  /** Starts the cache (waits up to `timeoutMs` for the first load) and the flush timer. */
  async start (timeoutMs = 2000): Promise<void> {
    this.timer = setInterval(() => { void this.flush() }, this.opts.flushIntervalMs)
    this.timer.unref()
    await this.cache.start(timeoutMs)
  }

  reconfigure (opts: StateSyncOptions): void {
    const restart = opts.flushIntervalMs !== this.opts.flushIntervalMs && this.timer !== undefined
    this.opts = opts
    if (restart) {
      clearInterval(this.timer)
      this.timer = setInterval(() => { void this.flush() }, this.opts.flushIntervalMs)
      this.timer.unref()
    }
  }

  /**
   * Records `gateway` as the location of a block that has none, before its first write is
   * forwarded, so that every proxy sends the next request for it to the same gateway. Returns
   * the location in force: ours, or the one another proxy recorded first (then the write goes
   * there). Null when the store is unreachable: the write proceeds to the hashed gateway.
   */
  async claim (volume: string, block: string, gateway: string): Promise<{ location: BlockLocation, ours: boolean } | null> {
    try {
      const r = await this.store.casLocation(volume, block, 0, { gateway }, { reason: 'first-write' })
      const loc = r.ok ? r.location : r.current
      if (loc === null) return null
      this.cache.apply(volume, block, loc.epoch, loc, 'local')
      return { location: loc, ours: r.ok }
    } catch (err) {
      this.claimsFailed.inc()
      this.logger.debug({ err: (err as Error).message, volume, block }, 'could not record a first location')
      return null
    }
  }

  /**
   * Undoes a claim whose first write was not acknowledged (the gateway was down, refused, or
   * the client gave up), so the block is not pinned to a gateway that never received it. Only
   * if nobody has changed the location since (epoch compare).
   */
  release (volume: string, block: string, epoch: number): void {
    this.store.deleteLocation(volume, block, epoch, { reason: 'first-write-failed' }).then(r => {
      if (r.ok && r.deleted) this.cache.apply(volume, block, epoch + 1, null, 'local')
    }, err => {
      this.logger.debug({ err: (err as Error).message, volume, block }, 'could not release a failed first location')
    })
  }

  /**
   * Resolves with the block's location once it is no longer in `cutover` (or null/undefined when
   * it has none), or with the cutover location still in force after `timeoutMs`.
   */
  async settled (volume: string, block: string, key: string, timeoutMs: number): Promise<BlockLocation | null | undefined> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const loc = this.cache.get(volume, block)
      const left = deadline - Date.now()
      if (loc === null || loc === undefined || loc.phase !== 'cutover' || left <= 0) return loc
      await new Promise<void>(resolve => {
        let set = this.waiters.get(key)
        if (set === undefined) this.waiters.set(key, set = new Set())
        const s = set
        const done = (): void => {
          clearTimeout(timer)
          s.delete(done)
          if (s.size === 0 && this.waiters.get(key) === s) this.waiters.delete(key)
          resolve()
        }
        const timer = setTimeout(done, left)
        s.add(done)
      })
    }
  }

  /** Notes the ETag of an acknowledged write to a placed block; sent with the next flush. */
  noteVersion (key: string, volume: string, block: string, epoch: number, version: string): void {
    this.versions.set(key, { volume, block, epoch, version })
  }

  /** Merges pending deltas and versions into the store. Never throws; one flush at a time. */
  flush (): Promise<void> {
    this.flushing ??= this.doFlush().finally(() => { this.flushing = undefined })
    return this.flushing
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.flush()
    this.cache.close()
  }

  private async doFlush (): Promise<void> {
    const fresh = this.recorder.drainDeltas()
    if (fresh.length > 0) this.pending = this.pending.length === 0 ? fresh : this.pending.concat(fresh)
    if (this.pending.length > this.opts.maxPendingDeltas) {
      // Keep the newest: they carry the most weight once decay is applied.
      const drop = this.pending.length - this.opts.maxPendingDeltas
      this.dropped.inc(drop)
      this.pending = this.pending.slice(drop)
    }
    if (!this.store.status().ok) return
    while (this.pending.length > 0) {
      const batch = this.pending.slice(0, MERGE_BATCH)
      try {
        await this.store.mergeAccess(batch)
      } catch (err) {
        if (transient(err)) {
          this.logger.debug({ err: (err as Error).message }, 'access flush failed; kept for the next one')
          return
        }
        // Refused for good (e.g. one block's key holds foreign data). The rest of the batch may
        // well have been merged, and a merge adds: sending it again would count those accesses
        // again at every flush, forever. Give it up, counted.
        this.dropped.inc(batch.length)
        this.pending = this.pending.slice(batch.length)
        this.logger.warn({ err: (err as Error).message, deltas: batch.length }, 'access batch refused by the store; dropped')
        continue
      }
      this.flushed.inc(batch.length)
      this.pending = this.pending.slice(batch.length)
    }
    if (this.versions.size > 0) {
      const versions = [...this.versions.values()]
      this.versions = new Map()
      // A refusal means the epoch moved on (the block was migrated): that version is history.
      await Promise.all(versions.map(v => this.store.setVersion(v.volume, v.block, v.epoch, v.version).catch(err => {
        const key = v.volume + '/' + v.block
        if (transient(err) && !this.versions.has(key)) this.versions.set(key, v)
        else if (!transient(err)) this.logger.warn({ err: (err as Error).message, volume: v.volume, block: v.block }, 'version refused by the store; dropped')
      })))
    }
  }
}
