import { EventEmitter } from 'node:events'
import { Counter, Gauge, type Registry } from 'prom-client'
import { silentLogger, type Logger } from '../lib/log.js'
import type { StateStore, StoreGeneration } from '../state/types.js'

/** The pub/sub channel a rebuilder announces a finished rebuild on (so nobody waits for a poll). */
export const GENERATION_CHANNEL = 'generation'

export interface GenerationWatchOptions {
  logger?: Logger
  registry?: Registry
  /** How often the marker is read when nothing else prompts it. Default 5 s; 1 s while rebuilding. */
  pollMs?: number
}

export interface GenerationWatchEvents {
  /** The store came back as a new generation: everything it held (locations first) is gone. */
  lost: [previous: StoreGeneration, current: StoreGeneration]
  /** The marker now says the locations are rebuilt. */
  rebuilt: [current: StoreGeneration]
  /** The marker says a rebuild is needed (a new store, or one that lost its data). */
  rebuilding: [current: StoreGeneration]
}

/**
 * Follows the store's generation marker for one process. A Redis without persistence that
 * restarts comes back empty; without this, every proxy would answer 404 for every block written
 * before, its bytes still on a gateway that no record points to. The watch reads the marker when
 * the store reconnects (a `resync`), when a rebuilder announces one, and on a timer, and tells
 * the process: `lost` (the id changed under us: caches must be rebuilt, not trusted), and
 * whether a rebuild from the gateways' inventories is still under way.
 */
export class GenerationWatch extends EventEmitter<GenerationWatchEvents> {
  private generation: StoreGeneration | null = null
  private lostSeen = false
  private timer: NodeJS.Timeout | null = null
  private unsubscribe: (() => void) | null = null
  private checking: Promise<void> | null = null
  private readonly logger: Logger
  private readonly pollMs: number
  private readonly losses: Counter

  constructor (private readonly store: StateStore, opts: GenerationWatchOptions = {}) {
    super()
    this.logger = (opts.logger ?? silentLogger).child({ component: 'generation' })
    this.pollMs = opts.pollMs ?? 5000
    const registers = opts.registry === undefined ? [] : [opts.registry]
    this.losses = new Counter({ name: 'ferry_state_generation_lost_total', help: 'Times this process saw the shared store come back without its data (a new generation)', registers })
    const rebuilding = (): boolean => this.rebuilding
    new Gauge({
      name: 'ferry_state_rebuilding',
      help: '1 while the store\'s block locations are being rebuilt from the gateways\' inventories',
      registers,
      collect () { this.set(rebuilding() ? 1 : 0) }
    })
  }

  /** The marker as last read (null before the first successful read). */
  get current (): StoreGeneration | null { return this.generation }

  /** The marker says the locations are not rebuilt yet. */
  get rebuilding (): boolean { return this.generation?.rebuilding === true }

  /**
   * This process saw the store lose its data and the rebuild is not finished: a block with no
   * location may well exist on some gateway, so "no location" is not "not found". A process that
   * first met the store after the loss cannot tell a lost block from a new one, and does not claim to.
   */
  get recoveringFromLoss (): boolean { return this.lostSeen && this.rebuilding }

  /** Reads the marker once (a store that is down is retried by the timer and the next resync). */
  async start (): Promise<void> {
    this.unsubscribe = this.store.subscribe(e => {
      if (e.type === 'resync' || (e.type === 'status' && e.status.ok) || (e.type === 'message' && e.channel === GENERATION_CHANNEL)) void this.check()
    })
    await this.check()
    this.schedule()
  }

  /** One read of the marker (concurrent calls share it). Never throws. */
  check (): Promise<void> {
    this.checking ??= this.read().finally(() => { this.checking = null })
    return this.checking
  }

  private async read (): Promise<void> {
    let next: StoreGeneration
    try {
      next = await this.store.generation()
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'could not read the store generation; will retry')
      return
    }
    const prev = this.generation
    this.generation = next
    if (prev !== null && prev.id !== next.id) {
      this.lostSeen = true
      this.losses.inc()
      this.logger.error({ previous: prev.id, current: next.id }, 'the shared store lost its data (it came back as a new generation): block locations are being rebuilt from the gateways')
      this.emit('lost', prev, next)
    }
    if (next.rebuilding && (prev === null || prev.id !== next.id || !prev.rebuilding)) this.emit('rebuilding', next)
    if (!next.rebuilding && (prev === null || prev.rebuilding || prev.id !== next.id)) {
      if (prev !== null) this.logger.info({ generation: next.id }, 'block locations rebuilt')
      if (!next.rebuilding) this.lostSeen = false
      this.emit('rebuilt', next)
    }
  }

  private schedule (): void {
    if (this.unsubscribe === null) return
    this.timer = setTimeout(() => {
      this.timer = null
      void this.check().finally(() => { this.schedule() })
    }, this.rebuilding ? Math.min(1000, this.pollMs) : this.pollMs)
    this.timer.unref()
  }

  close (): void {
    this.unsubscribe?.()
    this.unsubscribe = null
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }
}
