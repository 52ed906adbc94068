import { Counter, type Registry } from 'prom-client'
import type { Dispatcher } from 'undici'
import type { Logger } from '../lib/log.js'
import { wasNotSent } from '../state/errors.js'
import type { BlockLocation, LocationsStanding } from '../state/types.js'
import type { Forwarder } from './forward.js'
import type { Gateway, GatewaySet } from './gateway-set.js'
import { ProxyAnswer, stageFailed, type IncomingHttpHeaders, type ProxyRequest, type ResponseHandler, type Stage } from './request.js'
import type { Replication } from './replicas.js'
import type { RetryStage } from './retry.js'
import { transient, type StateSync } from './state-sync.js'

export interface WriteGuardOptions {
  sync: StateSync
  gateways: GatewaySet
  registry: Registry
  logger: Logger
  /** Records the answer of a write whose acknowledgement the guard holds back. */
  forwarder: Forwarder
  next: RetryStage
  /** Replica sets: the set a first write claims, and writes to several members. */
  replication: Replication
  /** Whether the location cache may still be served (GenerationWatch.cacheTrusted). */
  locations: LocationsStanding
}

interface PendingVersion { volume: string, block: string, epoch: number, version: string }

/**
 * What every write (PUT, DELETE) goes through when proxies share a store, so that no write it
 * acknowledges is lost by a move or a failed member (README "Replica sets"):
 *
 * - claim: the first write of a block without a location records its replica set in the store
 *   before it is forwarded, so that every proxy sends the block's next request to the same
 *   gateways; a claimed write that is not acknowledged releases the location again.
 * - settle: a write to several members (replicas.ts), or a write to one during which the block's
 *   set changed (the planner moved it: a target joined, became in sync, the source left), is
 *   acknowledged only once `Replication.settle` has recorded what it means for the current set
 *   and `Replication.verdict` allows it. Moves are membership changes, so no write is held:
 *   round 1's cut-over hold is gone. What remains refused is a write that outlived a whole move
 *   and its grace period (503 FERRY_WRITE_NOT_CONFIRMED), see Replication.verdict.
 * - versions: the ETag of each acknowledged PUT to a placed block goes to the store with the
 *   next flush (setVersion).
 */
export class WriteGuard implements Stage {
  private readonly sync: StateSync
  private readonly gateways: GatewaySet
  private readonly logger: Logger
  readonly forwarder: Forwarder
  private readonly next: RetryStage
  readonly replication: Replication
  readonly locations: LocationsStanding
  private readonly claimsFailed: Counter
  private versions = new Map<string, PendingVersion>()

  constructor (opts: WriteGuardOptions) {
    this.sync = opts.sync
    this.gateways = opts.gateways
    this.logger = opts.logger
    this.forwarder = opts.forwarder
    this.next = opts.next
    this.replication = opts.replication
    this.locations = opts.locations
    this.claimsFailed = new Counter({ name: 'ferry_state_claims_failed_total', help: 'First-write locations that could not be recorded (store unreachable)', registers: [opts.registry] })
    this.sync.onFlush(() => this.flushVersions())
  }

  dispatch (request: ProxyRequest, handler: ResponseHandler): void {
    if (request.write) {
      if (request.location === undefined && request.method === 'PUT' && request.gateway !== undefined) {
        this.claim(request, handler).catch(err => { stageFailed(this.logger, err, handler) })
        return
      }
      request.fanout = this.replication.fanOut(request)
      handler = new GuardedWrite(this, request, handler)
    }
    this.next.dispatch(request, handler)
  }

  /**
   * Records the block's replica set (the proposed gateway first, replication.factor members) as
   * the location of a block that has none, before its first write is forwarded. The write then
   * goes to the location in force: ours, or the one another proxy recorded first.
   */
  private async claim (request: ProxyRequest, handler: ResponseHandler): Promise<void> {
    const { volume, block } = request
    const proposed = request.gateway as Gateway
    let claimed: BlockLocation | null = null
    let ours = false
    /** The claim's outcome is unknown: it may have been recorded, and nothing read since says. */
    let unknown = false
    if (this.locations.generationUnconfirmed) {
      // The store's connection dropped since this process last read its generation: it may have
      // come back empty, and a claim recorded there now would be kept by the rebuild while
      // processes that have not reconnected yet write the block where their caches say.
      await this.locations.check()
      if (this.locations.recoveringFromLoss) {
        handler.onResponseError(null, new ProxyAnswer('FERRY_LOCATIONS_REBUILDING',
          `block ${request.key}: the shared store lost its block locations and they are being rebuilt from the gateways; not written, retry`, 503, { 'retry-after': 1 }))
        return
      }
    }
    if (this.locations.generationUnconfirmed) {
      // The store did not answer the read: nothing can be recorded with certainty either. The
      // block goes where every proxy looks for a block without a location, as in an outage.
      this.claimsFailed.inc()
      request.gateway = request.hashed ?? proposed
      this.next.dispatch(request, new GuardedWrite(this, request, handler))
      return
    }
    try {
      const r = await this.sync.store.casLocation(volume, block, 0, this.replication.claimSet(request, proposed), { reason: 'first-write' })
      claimed = r.ok ? r.location : r.current
      ours = r.ok
      if (claimed !== null) this.sync.cache.apply(volume, block, claimed.epoch, claimed, 'local')
    } catch (err) {
      this.claimsFailed.inc()
      this.logger.debug({ err: (err as Error).message, volume, block }, 'could not record a first location')
      if (!wasNotSent(err)) {
        // A claim that timed out (or whose connection dropped in flight) may have been recorded
        // all the same: the command reached the store, only its answer did not come back.
        // Written to the hashed gateway alone, the block would then be acknowledged where its
        // recorded set does not look: reads 404 (two acknowledged writes lost in a fleet replay
        // at load 42). One read after the claim tells.
        try {
          claimed = await this.sync.store.getLocation(volume, block)
          if (claimed !== null) this.sync.cache.apply(volume, block, claimed.epoch, claimed, 'resync')
        } catch {
          unknown = true
        }
      }
    }
    if (unknown) {
      // Neither the claim's answer nor a read came back: the store may name a set this write
      // would not reach. Refused (nothing was forwarded, nothing is lost), never acknowledged
      // on a guess; the client's retry finds the store answering or certainly away.
      handler.onResponseError(null, new ProxyAnswer('FERRY_STATE_UNAVAILABLE',
        `block ${request.key}: its first location may have been recorded, and the store does not answer to say where; not written, retry`, 503, { 'retry-after': 1 }))
      return
    }
    if (claimed !== null) {
      if (ours) request.claimedEpoch = claimed.epoch
      request.location = claimed
      request.gateway = this.gateways.get(claimed.gateway)
      request.fanout = this.replication.fanOut(request)
    } else {
      // The claim certainly was not recorded (the store was away before it was sent, or the
      // read after it found no location): put the block where every proxy will look for a block
      // without a location — its hashed gateway — not where this session happens to be bound,
      // or other clients would get 404 once the store is back.
      request.gateway = request.hashed ?? proposed
    }
    this.next.dispatch(request, new GuardedWrite(this, request, handler))
  }

  /**
   * Undoes a claim whose first write was not acknowledged (the gateway was down, refused, or
   * the client gave up), so the block is not pinned to a gateway that never received it. Only
   * if nobody has changed the location since (epoch compare).
   */
  release (request: ProxyRequest): void {
    const { volume, block } = request
    const epoch = request.claimedEpoch as number
    this.sync.store.deleteLocation(volume, block, epoch, { reason: 'first-write-failed' }).then(r => {
      if (r.ok && r.deleted) this.sync.cache.apply(volume, block, epoch + 1, null, 'local')
    }, err => {
      this.logger.debug({ err: (err as Error).message, volume, block }, 'could not release a failed first location')
    })
  }

  /**
   * True when a write to one gateway must be settled before the client hears of it: the block's
   * set changed while it was in flight (a write to several members settles itself, replicas.ts).
   */
  mustSettle (request: ProxyRequest): boolean {
    if (request.fanout !== undefined || request.location === undefined) return false
    const now = this.sync.cache.get(request.volume, request.block)
    return now !== null && now !== undefined && now.epoch !== request.location.epoch
  }

  /**
   * Whether a write to one gateway must wait before the client hears of it: the set changed
   * while it was in flight (mustSettle), or this proxy's cache may not have heard of such a
   * change yet (Replication.cacheMayLag). settle() then decides.
   */
  mustHold (request: ProxyRequest): boolean {
    return this.mustSettle(request) || (request.fanout === undefined && request.location !== undefined && this.replication.cacheMayLag(request))
  }

  /**
   * Settles a held write that `wrote` stored (see Replication.settle), after taking the block's
   * location from the store when the cache may lag: null to acknowledge it, else the refusal.
   */
  async settle (request: ProxyRequest, wrote: Gateway): Promise<ProxyAnswer | null> {
    await this.replication.refreshIfLagging(request)
    if (!this.mustSettle(request)) return null
    const stored = new Set([wrote.id])
    const after = await this.replication.settle(request, stored, request.location as BlockLocation)
    const refusal = this.replication.verdict(request, stored, after)
    if (refusal === null) request.location = after as BlockLocation
    return refusal
  }

  /** Notes the ETag of an acknowledged write to a placed block; sent with the next flush. */
  noteVersion (request: ProxyRequest, version: string): void {
    const { volume, block } = request
    this.versions.set(request.key, { volume, block, epoch: (request.location as BlockLocation).epoch, version })
  }

  forgetVersion (key: string): void {
    this.versions.delete(key)
  }

  private async flushVersions (): Promise<void> {
    if (this.versions.size === 0) return
    const versions = [...this.versions.values()]
    this.versions = new Map()
    const store = this.sync.store
    // A refusal means the epoch moved on (the block was migrated): that version is history.
    await Promise.all(versions.map(v => store.setVersion(v.volume, v.block, v.epoch, v.version).catch(err => {
      const key = v.volume + '/' + v.block
      if (transient(err) && !this.versions.has(key)) this.versions.set(key, v)
      else if (!transient(err)) this.logger.warn({ err: (err as Error).message, volume: v.volume, block: v.block }, 'version refused by the store; dropped')
    })))
  }

}

/**
 * A write's response on its way to the client. It records the gateway's ETag, holds back the
 * acknowledgement of a write that raced a move until it is settled, and at the end notes
 * the version of an acknowledged PUT or releases the location a failed first write claimed.
 */
class GuardedWrite implements ResponseHandler {
  /** The gateway's status (0 until it answers). */
  private status = 0
  private etag: string | undefined
  /** The acknowledgement held back until settle() says it may be given. */
  private held: { statusCode: number, headers: IncomingHttpHeaders, chunks: Buffer[] } | undefined
  /** The client was already answered with a refusal: the rest of the gateway's reply is dropped. */
  private refused = false

  constructor (private readonly guard: WriteGuard, private readonly request: ProxyRequest, private readonly handler: ResponseHandler) {}

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart(controller, context)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode >= 200 && statusCode < 300 && !this.guard.locations.cacheTrusted()) {
      // Routed while the cache was trusted, stored after this proxy lost touch with the store for
      // state.cutOffServeMs: a rebuild after a store loss may already have listed the gateways
      // without this write and located the block elsewhere. Not acknowledged (the client
      // retries), so no acknowledged write can be hidden by it.
      this.refused = true
      this.handler.onResponseError(controller, new ProxyAnswer('FERRY_LOCATIONS_UNCONFIRMED',
        `block ${this.request.key}: stored while this proxy was out of touch with the shared store for longer than state.cutOffServeMs; not acknowledged, retry`, 503, { 'retry-after': 1 }))
      return
    }
    if (statusCode >= 200) {
      this.status = statusCode
      const etag = headers.etag
      if (typeof etag === 'string') this.etag = etag
      if (statusCode < 300 && !this.request.res.destroyed && this.guard.mustHold(this.request)) {
        this.guard.forwarder.answered(this.request, statusCode)
        this.held = { statusCode, headers, chunks: [] }
        return
      }
    }
    this.handler.onResponseStart(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.refused) return
    if (this.held !== undefined) { this.held.chunks.push(chunk); return } // a write's reply: tiny
    this.handler.onResponseData(controller, chunk)
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (this.refused) { this.settleVersion(false); return }
    const held = this.held
    if (held === undefined) {
      this.settleVersion(this.acknowledged)
      this.handler.onResponseEnd(controller, trailers)
      return
    }
    const wrote = this.request.gateway as Gateway
    this.guard.settle(this.request, wrote).catch((err: Error) => {
      this.guard.replication.refuse()
      return new ProxyAnswer('FERRY_REPLICAS_UNAVAILABLE', `block ${this.request.key}: the store could not record the write against the block's new set (${err.message}); not acknowledged, retry`, 503, { 'retry-after': 1 })
    }).then(refusal => {
      this.settleVersion(refusal === null)
      if (refusal !== null) { this.handler.onResponseError(controller, refusal); return }
      this.handler.onResponseStart(controller, held.statusCode, held.headers)
      if (held.chunks.length > 0) this.handler.onResponseData(controller, Buffer.concat(held.chunks))
      this.handler.onResponseEnd(controller, trailers)
    })
  }

  onResponseError (controller: Dispatcher.DispatchController | null, err: Error): void {
    if (this.refused) { this.settleVersion(false); return }
    // An error after a 2xx (the reply's body broke off) still means the gateway stored the write.
    this.settleVersion(this.acknowledged)
    this.handler.onResponseError(controller, err)
  }

  private get acknowledged (): boolean {
    return this.status >= 200 && this.status < 300
  }

  private settleVersion (acknowledged: boolean): void {
    const { request } = this
    // A deleted block's version still waiting for the flush is history. Recorded later, it would
    // land on the next location with that epoch: a rebuild after a store loss restarts epochs,
    // and locates a deleted block on its tombstone with no version (store-loss.test).
    if (request.method === 'DELETE') { if (acknowledged) this.guard.forgetVersion(request.key); return }
    if (request.method !== 'PUT' || request.location === undefined) return
    if (acknowledged && this.etag !== undefined) this.guard.noteVersion(request, this.etag)
    else if (!acknowledged && request.claimedEpoch !== undefined) this.guard.release(request)
  }
}
