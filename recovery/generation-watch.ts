import { EventEmitter } from 'node:events'
import { Counter, Gauge, type Registry } from 'prom-client'
import { silentLogger, type Logger } from '../lib/log.js'
import { generationChannel } from '../state/channels.js'
import type { LocationsStanding, StateStore, StoreGeneration } from '../state/types.js'

export interface GenerationWatchOptions {
  logger?: Logger
  registry?: Registry
  /** How often the marker is read when nothing else prompts it. Default 5 s (at most a quarter of cutOffServeMs); 1 s while rebuilding. */
  pollMs?: number
  /**
   * `state.cutOffServeMs`: how long after its last confirmation of the generation the process
   * still trusts its location caches (cacheTrusted). Infinity when nothing else shares the
   * store (a memory store): nobody can rebuild it behind this process's back.
   */
  cutOffServeMs?: number
  /**
   * Reloads every cache of locations in the process. Awaited after a rebuild before the process
   * stops answering 503 for unknown blocks: until its caches hold the rebuilt locations, "no
   * location" would still mean "not loaded yet" and a read would be routed by hash, to a 404.
   */
  reloadLocations?: () => Promise<void>
}

export interface GenerationWatchEvents {
  /** The marker says a rebuild is needed (a new store, or one that lost its data). */
  rebuilding: [current: StoreGeneration]
}

/**
 * Follows the store's generation marker for one process. A Redis without persistence that
 * restarts comes back empty; without this, every proxy would answer 404 for every block written
 * before, its bytes still on a gateway that no record points to. The watch reads the marker when
 * the store reconnects (a `resync`), when a rebuilder announces one, and on a timer. When the id
 * changed under it (the store lost its data) it reloads the process's location caches, and it
 * tells whether a rebuild from the gateways' inventories is still under way.
 */
export class GenerationWatch extends EventEmitter<GenerationWatchEvents> implements LocationsStanding {
  private generation: StoreGeneration | null = null
  /**
   * performance.now() when the last successful read of the marker was sent. Taken before the
   * read, not at its answer: the store answered for a moment no earlier than this.
   */
  private confirmedAt = -Infinity
  private readonly cutOffServeMs: number
  private lostSeen = false
  /**
   * Set the moment the store's connection drops (and again when it resyncs), cleared once the
   * marker has been read on the connection that followed. While the store answers again and the
   * read is not back, this process cannot know whether the store still holds its locations: its
   * caches may already have reloaded from an empty store, and a first write's claim would be
   * recorded in a store whose loss it has not heard of (generationUnconfirmed, check()).
   */
  private unconfirmed = false
  /** Counts drops and resyncs: a read sent before one proves nothing about the store after it. */
  private drops = 0
  private timer: NodeJS.Timeout | null = null
  private unsubscribe: (() => void) | null = null
  private checking: Promise<void> | null = null
  private readonly logger: Logger
  private readonly pollMs: number
  private readonly reloadLocations: () => Promise<void>
  private readonly losses: Counter

  constructor (private readonly store: StateStore, opts: GenerationWatchOptions = {}) {
    super()
    this.logger = (opts.logger ?? silentLogger).child({ component: 'generation' })
    this.cutOffServeMs = opts.cutOffServeMs ?? Infinity
    // Four reads per cut-off period: one or two slow or lost answers never stop the cache.
    this.pollMs = Math.min(opts.pollMs ?? 5000, this.cutOffServeMs / 4)
    this.reloadLocations = opts.reloadLocations ?? (async () => {})
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
   * This process saw the store lose its data and the rebuild is not finished, or the store is
   * back (status ok: the subscription too, and the caches may have reloaded from it) after its
   * connection dropped and the marker has not been read since: a block with no location may well
   * exist on some gateway, so "no location" is not "not found". While the store is down, blocks
   * without a location are routed by hash as before. A first write's claim has its own gate
   * (generationUnconfirmed), which does not wait for status(): commands work before the
   * subscription is back. A process that first met the store after the loss cannot tell a lost
   * block from a new one, and does not claim to.
   */
  get recoveringFromLoss (): boolean { return (this.unconfirmed && this.store.status().ok) || (this.lostSeen && this.rebuilding) }

  /**
   * Whether the process may still route from its location caches and acknowledge writes made
   * from them. After a loss, the rebuild reads the gateways' inventories only `cutOffServeMs`
   * (plus a margin) after the store came back (rebuilder.ts): by then every process that had not
   * heard of the loss has gone that long without confirming its generation and stopped serving.
   * Without the bound, a process that stayed cut off a little longer than the others (a slow
   * reconnection, a partition) acknowledged writes where its old cache said after the rebuild had
   * located the block elsewhere: the stale reads of the soak's store losses. Before the first
   * successful read the process knows no generation to distrust: it started while the store was
   * away, and its caches load from the store only when it answers, as this read then does.
   */
  cacheTrusted (): boolean {
    return this.generation === null || performance.now() - this.confirmedAt < this.cutOffServeMs
  }

  /** Reads the marker once (a store that is down is retried by the timer and the next resync). */
  async start (): Promise<void> {
    this.unsubscribe = this.store.subscribe(e => {
      // A reconnection (not the first connection: nothing was known before it) may be to a store
      // that lost everything; say so synchronously, before any cache can act on what it reloads.
      // From the drop, not from the resync: commands flow again before the subscription is back
      // and the resync is announced (status() is not ok until then), and in that gap a first
      // write's claim was recorded in the empty store while processes that had not reconnected
      // yet wrote the block where their caches said (the rebuild keeps a location a proxy
      // recorded: stale reads in the soak and in CI). The claim now waits for check().
      if ((e.type === 'resync' || (e.type === 'status' && !e.status.ok)) && this.generation !== null) {
        this.unconfirmed = true
        this.drops++
      }
      if (e.type === 'resync' || (e.type === 'status' && e.status.ok) || generationChannel.decode(e) != null) void this.check()
    })
    await this.check()
    this.schedule()
  }

  get generationUnconfirmed (): boolean { return this.unconfirmed }

  /** One read of the marker (concurrent calls share it). Never throws. */
  check (): Promise<void> {
    this.checking ??= this.read().finally(() => {
      this.checking = null
      // A read that began before a reconnection proves nothing about the store after it.
      if (this.unconfirmed && this.unsubscribe !== null && this.store.status().ok) setTimeout(() => { void this.check() }, 50).unref()
    })
    return this.checking
  }

  private async read (): Promise<void> {
    let next: StoreGeneration
    const sentAt = performance.now()
    const drops = this.drops
    try {
      next = await this.store.generation()
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'could not read the store generation; will retry')
      return
    }
    const prev = this.generation
    this.generation = next
    this.confirmedAt = Math.max(this.confirmedAt, sentAt)
    if (this.drops === drops) this.unconfirmed = false
    if (prev !== null && prev.id !== next.id) {
      this.lostSeen = true
      this.losses.inc()
      this.logger.error({ previous: prev.id, current: next.id }, 'the shared store lost its data (it came back as a new generation): block locations are being rebuilt from the gateways')
      void this.reloadLocations().catch(() => {})
    }
    if (next.rebuilding && (prev === null || prev.id !== next.id || !prev.rebuilding)) this.emit('rebuilding', next)
    if (!next.rebuilding && (prev === null || prev.rebuilding || prev.id !== next.id)) {
      if (prev !== null) this.logger.info({ generation: next.id }, 'block locations rebuilt')
      if (this.lostSeen) await this.reloadLocations().catch(err => { this.logger.warn({ err: (err as Error).message }, 'reloading locations after the rebuild failed') })
      this.lostSeen = false
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
