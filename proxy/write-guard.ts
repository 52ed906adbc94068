import { Counter, type Registry } from 'prom-client'
import type { Dispatcher } from 'undici'
import type { Logger } from '../lib/log.js'
import type { BlockLocation } from '../state/types.js'
import { contentHashOf } from '../upstream/kinds.js'
import { holdsBytes } from '../upstream/verify.js'
import type { Forwarder } from './forward.js'
import type { Gateway, GatewaySet } from './gateway-set.js'
import type { ProxyMetrics } from './metrics.js'
import { PathPattern } from './path-pattern.js'
import { awaitsCutover, ProxyAnswer, stageFailed, type IncomingHttpHeaders, type ProxyRequest, type ResponseHandler, type Stage } from './request.js'
import type { Replication } from './replicas.js'
import type { RetryStage } from './retry.js'
import type { RouteTable } from './route-table.js'
import { transient, type StateSync } from './state-sync.js'

export interface WriteGuardOptions {
  sync: StateSync
  gateways: GatewaySet
  routes: RouteTable
  metrics: ProxyMetrics
  registry: Registry
  logger: Logger
  /** Records the answer of a write whose acknowledgement the guard holds back. */
  forwarder: Forwarder
  next: RetryStage
  /** proxy.writeHoldMs */
  writeHoldMs: number
  /** Replica sets: the set a first write claims, and writes to several members. */
  replication: Replication
}

interface PendingVersion { volume: string, block: string, epoch: number, version: string }

/**
 * The proxy's half of cut-over, for every write (PUT, DELETE) when proxies share a store. The
 * planner's half (planner/migration) copies, checks and flips; this one makes sure no write it
 * acknowledges is lost by a move:
 *
 * - hold: a write to a block in `cutover` could land on the source after the planner checked the
 *   copy, so it waits (up to `proxy.writeHoldMs`) for the flip or the rollback, then goes down
 *   the path again as a request for the settled location; still in cut-over, it is answered
 *   503 FERRY_WRITE_HELD with Retry-After.
 * - claim: the first write of a block without a location records its gateway in the store
 *   before it is forwarded, so that every proxy sends the block's next request to the same
 *   gateway; a claimed write that is not acknowledged releases the location again.
 * - confirm: a write during which the block's location changed (a move started or flipped) is
 *   acknowledged only once the block's current location provably holds it, else 503
 *   FERRY_WRITE_NOT_CONFIRMED.
 * - versions: the ETag of each acknowledged PUT to a placed block goes to the store with the
 *   next flush (setVersion), so the planner can tell whether a block changed while it copied it.
 */
export class WriteGuard implements Stage {
  /**
   * Where a held write starts again once its block has settled: the first stage, so that it is
   * routed (sessions included) as a request for the new location. The guard itself when no
   * stage stands before it.
   */
  restart: Stage = this
  private readonly sync: StateSync
  private readonly gateways: GatewaySet
  private readonly routes: RouteTable
  private readonly metrics: ProxyMetrics
  private readonly logger: Logger
  readonly forwarder: Forwarder
  private readonly next: RetryStage
  private readonly replication: Replication
  private writeHoldMs: number
  private readonly claimsFailed: Counter
  /** Waiters for a block's location to change, by blockKey. */
  private readonly waiters = new Map<string, Set<() => void>>()
  private versions = new Map<string, PendingVersion>()

  constructor (opts: WriteGuardOptions) {
    this.sync = opts.sync
    this.gateways = opts.gateways
    this.routes = opts.routes
    this.metrics = opts.metrics
    this.logger = opts.logger
    this.forwarder = opts.forwarder
    this.next = opts.next
    this.writeHoldMs = opts.writeHoldMs
    this.replication = opts.replication
    this.claimsFailed = new Counter({ name: 'ferry_state_claims_failed_total', help: 'First-write locations that could not be recorded (store unreachable)', registers: [opts.registry] })
    this.sync.cache.onChange(change => {
      const set = this.waiters.get(change.volume + '/' + change.block)
      if (set !== undefined) for (const wake of set) wake()
    })
    this.sync.onFlush(() => this.flushVersions())
  }

  reconfigure (writeHoldMs: number): void {
    this.writeHoldMs = writeHoldMs
  }

  dispatch (request: ProxyRequest, handler: ResponseHandler): void {
    if (request.write) {
      if (awaitsCutover(request)) {
        this.hold(request, handler).catch(err => { stageFailed(this.logger, err, handler) })
        return
      }
      if (request.location === undefined && request.method === 'PUT' && request.gateway !== undefined) {
        this.claim(request, handler).catch(err => { stageFailed(this.logger, err, handler) })
        return
      }
      request.fanout = this.replication.fanOut(request)
      handler = new GuardedWrite(this, request, handler)
    }
    this.next.dispatch(request, handler)
  }

  private async hold (request: ProxyRequest, handler: ResponseHandler): Promise<void> {
    const after = await this.settled(request.volume, request.block, request.key, this.writeHoldMs)
    if (after?.phase === 'cutover') {
      handler.onResponseError(null, new ProxyAnswer('FERRY_WRITE_HELD', `block ${request.key} is being moved; retry shortly`, 503, { 'retry-after': 1 }))
      return
    }
    const location = after ?? undefined
    request.location = location
    if (location === undefined) request.gateway = request.hashed = this.routes.hashed(request.key)
    else request.gateway = this.gateways.get(location.gateway)
    this.restart.dispatch(request, handler)
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
    try {
      const r = await this.sync.store.casLocation(volume, block, 0, this.replication.claimSet(request, proposed), { reason: 'first-write' })
      claimed = r.ok ? r.location : r.current
      ours = r.ok
      if (claimed !== null) this.sync.cache.apply(volume, block, claimed.epoch, claimed, 'local')
    } catch (err) {
      this.claimsFailed.inc()
      this.logger.debug({ err: (err as Error).message, volume, block }, 'could not record a first location')
    }
    if (claimed !== null) {
      if (ours) request.claimedEpoch = claimed.epoch
      request.location = claimed
      request.gateway = this.gateways.get(claimed.gateway)
      request.fanout = this.replication.fanOut(request)
    } else {
      // The location could not be recorded (store away): put the block where every proxy
      // will look for a block without a location — its hashed gateway — not where this
      // session happens to be bound, or other clients would get 404 once the store is back.
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
   * True when an acknowledged write must be confirmed before the client hears of it: any change
   * of epoch while it was in flight — including a block that had no location and got one (the
   * planner places hashed blocks before moving them).
   */
  mustConfirm (request: ProxyRequest): boolean {
    // A write to several members checked the set in force when they answered (replicas.ts).
    if (request.fanout !== undefined) return false
    const now = this.sync.cache.get(request.volume, request.block)
    return (now?.epoch ?? 0) !== (request.location?.epoch ?? 0)
  }

  /** Resolves true when the write (whose gateway answered with `etag`) is on the block's current location. */
  async confirm (request: ProxyRequest, etag: string | undefined): Promise<boolean> {
    const { volume, block } = request
    const wrote = request.gateway as Gateway
    const loc = await this.settled(volume, block, request.key, this.writeHoldMs * 2)
    if (loc === null || loc === undefined || loc.phase === 'cutover') return false
    if (loc.gateway === wrote.id) return true
    // The block moved: the write counts only if the new location holds exactly what we wrote.
    const target = this.gateways.get(loc.gateway)
    if (target === undefined) return false
    const path = PathPattern.gatewayPath(volume, block)
    const res = await target.pool.request({ method: 'HEAD', path, headersTimeout: 2000 })
    await res.body.dump()
    this.metrics.confirmations.inc({ result: String(res.statusCode) })
    if (request.method === 'DELETE') return res.statusCode === 404
    // Only bytes prove it, never ETags compared across gateways: nginx's mtime-size ETags of two
    // different contents can be equal. The write's own gateway must have proved what it stored
    // (a content-hash ETag; nginx answers a PUT with none, so such a write stays unconfirmed),
    // and the new location must hold those bytes, by its ETag or by reading them.
    const written = contentHashOf(wrote.kind, etag)
    if (res.statusCode !== 200 || written === null) return false
    return await holdsBytes({ kind: target.kind, dispatcher: target.pool }, path, res.headers.etag as string | undefined, written,
      AbortSignal.timeout(this.writeHoldMs * 2))
  }

  /** Notes the ETag of an acknowledged write to a placed block; sent with the next flush. */
  noteVersion (request: ProxyRequest, version: string): void {
    const { volume, block } = request
    this.versions.set(request.key, { volume, block, epoch: (request.location as BlockLocation).epoch, version })
  }

  /**
   * Resolves with the block's location once it is no longer in `cutover` (or null/undefined when
   * it has none), or with the cutover location still in force after `timeoutMs`.
   */
  private async settled (volume: string, block: string, key: string, timeoutMs: number): Promise<BlockLocation | null | undefined> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const loc = this.sync.cache.get(volume, block)
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
 * acknowledgement of a write that raced a move until `confirm` proves it, and at the end notes
 * the version of an acknowledged PUT or releases the location a failed first write claimed.
 */
class GuardedWrite implements ResponseHandler {
  /** The gateway's status (0 until it answers). */
  private status = 0
  private etag: string | undefined
  /** The acknowledgement held back until confirm() says it may be given. */
  private held: { statusCode: number, headers: IncomingHttpHeaders, chunks: Buffer[] } | undefined

  constructor (private readonly guard: WriteGuard, private readonly request: ProxyRequest, private readonly handler: ResponseHandler) {}

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart(controller, context)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode >= 200) {
      this.status = statusCode
      const etag = headers.etag
      if (typeof etag === 'string') this.etag = etag
      if (statusCode < 300 && !this.request.res.destroyed && this.guard.mustConfirm(this.request)) {
        this.guard.forwarder.answered(this.request, statusCode)
        this.held = { statusCode, headers, chunks: [] }
        return
      }
    }
    this.handler.onResponseStart(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.held !== undefined) { this.held.chunks.push(chunk); return } // a write's reply: tiny
    this.handler.onResponseData(controller, chunk)
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    const held = this.held
    if (held === undefined) {
      this.settle(this.acknowledged)
      this.handler.onResponseEnd(controller, trailers)
      return
    }
    this.guard.confirm(this.request, this.etag).then(ok => ok, () => false).then(ok => {
      this.settle(ok)
      if (!ok) {
        // Not provably on the block's current location, so not acknowledged: the client retries.
        this.handler.onResponseError(controller, new ProxyAnswer('FERRY_WRITE_NOT_CONFIRMED', 'the block moved while this write was in flight; retry it', 503, { 'retry-after': 1 }))
        return
      }
      this.handler.onResponseStart(controller, held.statusCode, held.headers)
      if (held.chunks.length > 0) this.handler.onResponseData(controller, Buffer.concat(held.chunks))
      this.handler.onResponseEnd(controller, trailers)
    })
  }

  onResponseError (controller: Dispatcher.DispatchController | null, err: Error): void {
    // An error after a 2xx (the reply's body broke off) still means the gateway stored the write.
    this.settle(this.acknowledged)
    this.handler.onResponseError(controller, err)
  }

  private get acknowledged (): boolean {
    return this.status >= 200 && this.status < 300
  }

  private settle (acknowledged: boolean): void {
    const { request } = this
    if (request.method !== 'PUT' || request.location === undefined) return
    if (acknowledged && this.etag !== undefined) this.guard.noteVersion(request, this.etag)
    else if (!acknowledged && request.claimedEpoch !== undefined) this.guard.release(request)
  }
}
