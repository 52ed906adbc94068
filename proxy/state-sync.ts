import { Counter, Gauge, type Registry } from 'prom-client'
import type { Logger } from '../lib/log.js'
import { LocationCache } from '../state/cache.js'
import type { AccessDelta, StateStore } from '../state/types.js'
import type { AccessRecorder } from './access-recorder.js'

export interface StateSyncOptions {
  flushIntervalMs: number
  maxPendingDeltas: number
}

/** Deltas per mergeAccess call: keeps one Redis pipeline (and one Lua batch) a sensible size. */
const MERGE_BATCH = 2000

/**
 * Whether a failed call may succeed later as it is: the store was unreachable (or closing). Any
 * other failure (a refused value, foreign data in a key) will fail the same way again.
 */
export function transient (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return code === 'FERRY_STATE_UNAVAILABLE' || code === 'FERRY_STATE_CLOSED'
}

/**
 * The proxy's side of the shared state: the in-memory LocationCache the RouteTable reads, and
 * the periodic flush of access deltas (merged across proxies in the store) and of whatever else
 * is sent with them (the write guard's versions of acknowledged writes).
 *
 * Everything on the request path is local: the store is touched by the flush timer (and by the
 * write guard for a block's first location). When the store is unreachable, routing goes on
 * from the cache, deltas accumulate up to `maxPendingDeltas` (then are dropped and counted), and
 * everything is flushed when it returns.
 */
export class StateSync {
  readonly cache: LocationCache
  private timer: NodeJS.Timeout | undefined
  private pending: AccessDelta[] = []
  private readonly flushTasks: Array<() => Promise<void>> = []
  private flushing: Promise<void> | undefined
  private opts: StateSyncOptions
  private readonly dropped: Counter
  private readonly flushed: Counter

  constructor (
    readonly store: StateStore,
    private readonly recorder: AccessRecorder,
    opts: StateSyncOptions,
    registry: Registry,
    private readonly logger: Logger
  ) {
    this.opts = opts
    this.cache = new LocationCache(store, { logger })
    const registers = [registry]
    this.dropped = new Counter({ name: 'ferry_state_deltas_dropped_total', help: 'Access deltas dropped: beyond the bound while the store was unreachable, or in a batch the store refused', registers })
    this.flushed = new Counter({ name: 'ferry_state_deltas_flushed_total', help: 'Access deltas merged into the shared store', registers })
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

  /** Adds work to every flush, after the deltas and only while the store is reachable; it must not throw. */
  onFlush (task: () => Promise<void>): void {
    this.flushTasks.push(task)
  }

  /** Merges pending deltas into the store, then runs the flush tasks. Never throws; one flush at a time. */
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
    for (const task of this.flushTasks) await task()
  }
}
