import { blockKey } from '../lib/ids.js'
import { silentLogger, type Logger } from '../lib/log.js'
import type { BlockLocation, LocatedBlock, StateStore, StoreEvent } from './types.js'

export type ApplyResult = 'applied' | 'stale' | 'duplicate'

export interface LocationChange {
  volume: string
  block: string
  /** null: the block's location was deleted (or vanished in a resync). */
  location: BlockLocation | null
  previous: BlockLocation | null
  source: 'event' | 'resync' | 'local'
}

export interface LocationCacheOptions {
  logger?: Logger
  /**
   * How long a deleted block's epoch is remembered, so a late older event cannot resurrect it.
   * Must stay well under the store's `tombstoneTtlMs` (default 7 days). Default 60 s.
   */
  tombstoneMs?: number
  /** First retry delay after a failed reload (doubles up to 30 s). Default 500 ms. */
  retryMs?: number
}

export interface LocationCacheStats {
  applied: number
  stale: number
  duplicate: number
  reloads: number
  reloadFailures: number
}

interface Entry {
  /** null: tombstone. */
  location: BlockLocation | null
  epoch: number
  /** The reload generation that last wrote the entry (see reload()). */
  gen: number
  volume: string
  block: string
  at: number
}

/**
 * Every block location, in memory, kept current from the store's notifications: the proxy's
 * routing table. `get()` is a Map lookup — no round trip, no allocation, no promise.
 *
 * Ordering: a change is applied only if its epoch is newer than the cached one; an equal epoch
 * is a duplicate (e.g. the proxy applied its own compare-and-set result, then got the event) and
 * an older one is stale. Deletes leave a short-lived tombstone carrying their epoch for the same
 * reason.
 *
 * Resync: on the store's `resync` signal (first connection, every reconnection — events may have
 * been lost) the cache reloads in full with `scanLocations()`. The store emits `resync` only
 * once the subscription is live again, so nothing published after the scan starts is missed;
 * events that arrive *during* the scan are applied as usual and win over the snapshot when they
 * are newer. At the end, entries neither in the snapshot nor touched during the reload are gone
 * from the store and are dropped. A reload that fails (the store went away again) is retried.
 *
 * The snapshot is authoritative over anything cached before the reload, even at a lower epoch:
 * after a tombstone has expired from the store a re-created block legitimately starts again at
 * epoch 1.
 */
export class LocationCache {
  private readonly entries = new Map<string, Entry>()
  /** Entries with a location (kept in step with `entries`, so `size` is O(1) for metrics). */
  private live = 0
  private readonly listeners = new Set<(change: LocationChange) => void>()
  private readonly logger: Logger
  private readonly tombstoneMs: number
  private readonly retryMs: number
  private unsubscribe: (() => void) | null = null
  private gen = 0
  private reloading: Promise<void> | null = null
  private reloadAgain = false
  private everLoaded = false
  private isFresh = false
  private retryTimer: NodeJS.Timeout | null = null
  private retryAttempt = 0
  private pruneTimer: NodeJS.Timeout | null = null
  private closed = false
  private firstLoad: { promise: Promise<void>, resolve: () => void }
  readonly stats: LocationCacheStats = { applied: 0, stale: 0, duplicate: 0, reloads: 0, reloadFailures: 0 }

  constructor (private readonly store: StateStore, options: LocationCacheOptions = {}) {
    this.logger = (options.logger ?? silentLogger).child({ component: 'location-cache' })
    this.tombstoneMs = options.tombstoneMs ?? 60_000
    this.retryMs = options.retryMs ?? 500
    let resolve!: () => void
    const promise = new Promise<void>(r => { resolve = r })
    this.firstLoad = { promise, resolve }
  }

  /**
   * Subscribes and loads. Resolves true once the first full load is done, or false after
   * `timeoutMs` if the store is unavailable (the load then happens when it returns). Never throws.
   */
  async start (timeoutMs = 5000): Promise<boolean> {
    if (this.unsubscribe === null) {
      this.unsubscribe = this.store.subscribe(e => this.onEvent(e))
      this.pruneTimer = setInterval(() => this.pruneTombstones(Date.now()), Math.max(1000, this.tombstoneMs))
      this.pruneTimer.unref()
      // A Redis store that is already up will not emit its first `resync` again: load now.
      if (this.store.status().ok) void this.reload()
    }
    if (this.everLoaded) return true
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), timeoutMs) })
    try {
      return await Promise.race([this.firstLoad.promise.then(() => true), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * The cached location. `null`: the block has no location (the cache is complete, so this is
   * an answer, not a miss). `undefined`: not loaded yet — ask the store or fall back.
   * The returned object is frozen and shared: do not mutate it.
   */
  get (volume: string, block: string): BlockLocation | null | undefined {
    const e = this.entries.get(blockKey(volume, block))
    if (e !== undefined) return e.location
    return this.everLoaded ? null : undefined
  }

  /** Loaded at least once. */
  get loaded (): boolean { return this.everLoaded }

  /** Loaded, and no notification can have been missed since (the store has stayed ok). */
  get fresh (): boolean { return this.isFresh }

  /** Live locations cached (tombstones not counted). */
  get size (): number {
    return this.live
  }

  /** Every live location with its block (the planner's drains walk them: O(blocks), no store round trip). */
  * located (): IterableIterator<LocatedBlock> {
    for (const e of this.entries.values()) if (e.location !== null) yield { volume: e.volume, block: e.block, location: e.location }
  }

  onChange (listener: (change: LocationChange) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /**
   * Applies a change if it is newer than what is cached. The store's notifications come through
   * here; a caller may also apply the result of its own compare-and-set at once (`source`
   * 'local'), and the notification that follows is then a harmless duplicate.
   */
  apply (volume: string, block: string, epoch: number, location: BlockLocation | null, source: LocationChange['source'] = 'local'): ApplyResult {
    const key = blockKey(volume, block)
    const e = this.entries.get(key)
    if (e !== undefined) {
      if (epoch < e.epoch) { this.stats.stale++; return 'stale' }
      if (epoch === e.epoch) { this.stats.duplicate++; return 'duplicate' }
    }
    this.stats.applied++
    this.set(key, volume, block, epoch, location, e, source)
    return 'applied'
  }

  private set (key: string, volume: string, block: string, epoch: number, location: BlockLocation | null, previous: Entry | undefined, source: LocationChange['source']): void {
    const loc = location === null ? null : Object.freeze({ ...location })
    this.entries.set(key, { location: loc, epoch, gen: this.gen, volume, block, at: Date.now() })
    const prev = previous?.location ?? null
    this.live += (loc === null ? 0 : 1) - (prev === null ? 0 : 1)
    if (loc === null && prev === null) return
    this.notify({ volume, block, location: loc, previous: prev, source })
  }

  private notify (change: LocationChange): void {
    for (const l of [...this.listeners]) {
      try { l(change) } catch (err) { this.logger.error({ err }, 'location change listener threw') }
    }
  }

  private onEvent (event: StoreEvent): void {
    if (this.closed) return
    switch (event.type) {
      case 'location':
        this.apply(event.volume, event.block, event.epoch, event.location, 'event')
        break
      case 'resync':
        void this.reload()
        break
      case 'status':
        if (!event.status.ok) {
          this.isFresh = false
        } else if (!this.isFresh) {
          // Back without a resync signal (e.g. only a command failed): reload unless the
          // resync that usually accompanies recovery has already started one.
          setImmediate(() => { if (!this.isFresh && this.reloading === null && !this.closed) void this.reload() })
        }
        break
      default:
        break
    }
  }

  /** Reloads everything from the store. Concurrent calls coalesce (one more pass after the current one). */
  reload (): Promise<void> {
    if (this.closed) return Promise.resolve()
    if (this.reloading !== null) {
      this.reloadAgain = true
      return this.reloading
    }
    this.reloading = (async () => {
      try {
        do {
          this.reloadAgain = false
          await this.reloadOnce()
        } while (this.reloadAgain && !this.closed)
      } finally {
        this.reloading = null
      }
    })()
    return this.reloading
  }

  private async reloadOnce (): Promise<void> {
    const gen = ++this.gen
    let wentDown = false
    const unsub = this.store.subscribe(e => { if (e.type === 'status' && !e.status.ok) wentDown = true })
    try {
      let count = 0
      for await (const { volume, block, location } of this.store.scanLocations()) {
        if (this.closed) return
        const key = blockKey(volume, block)
        const e = this.entries.get(key)
        // Touched by an event during this reload with a newer (or the same) epoch: keep it.
        if (e !== undefined && e.gen === gen && e.epoch >= location.epoch) continue
        if (e !== undefined && e.epoch === location.epoch && e.location !== null) {
          // Same epoch, same route; only the version (never notified) may be newer here.
          e.gen = gen
          e.location = Object.freeze({ ...location })
          continue
        }
        this.set(key, volume, block, location.epoch, location, e, 'resync')
        count++
      }
      // Neither in the snapshot nor changed since the reload began: gone from the store.
      for (const [key, e] of this.entries) {
        if (e.gen >= gen) continue
        this.entries.delete(key)
        if (e.location !== null) {
          this.live--
          this.notify({ volume: e.volume, block: e.block, location: null, previous: e.location, source: 'resync' })
        }
      }
      this.stats.reloads++
      this.retryAttempt = 0
      this.everLoaded = true
      this.isFresh = !wentDown && this.store.status().ok
      this.firstLoad.resolve()
      this.logger.debug({ updated: count, size: this.size }, 'location cache reloaded')
    } catch (err) {
      this.stats.reloadFailures++
      this.isFresh = false
      this.logger.warn({ err }, 'location cache reload failed; will retry')
      this.scheduleRetry()
    } finally {
      unsub()
    }
  }

  private scheduleRetry (): void {
    if (this.closed || this.retryTimer !== null) return
    const delay = Math.min(30_000, this.retryMs * 2 ** this.retryAttempt++)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (this.store.status().ok) void this.reload()
      // Otherwise the store's next `resync` (or `status` ok) triggers it.
    }, delay)
    this.retryTimer.unref()
  }

  private pruneTombstones (now: number): void {
    for (const [key, e] of this.entries) {
      if (e.location === null && now - e.at > this.tombstoneMs) this.entries.delete(key)
    }
  }

  close (): void {
    this.closed = true
    this.unsubscribe?.()
    this.unsubscribe = null
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    if (this.pruneTimer !== null) clearInterval(this.pruneTimer)
    this.retryTimer = null
    this.pruneTimer = null
  }
}
