import type { Dispatcher } from 'undici'
import type { Forwarder } from './forward.js'
import type { Gateway } from './gateway-set.js'
import type { ProxyMetrics } from './metrics.js'
import type { IncomingHttpHeaders, ProxyRequest, ResponseHandler, Stage } from './request.js'
import type { RouteTable } from './route-table.js'
import type { BlockLocation } from '../state/types.js'
import { readOrder } from './replicas.js'
import { tlsFailureOf } from '../upstream/connect.js'

/** Error codes for which the gateway never saw the request: safe to try elsewhere. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'EAI_AGAIN'])
/**
 * A read may also be sent again after the gateway saw it: it changes nothing. Used to fail over
 * between the in-sync members of a replica set (a crashed member resets its connections, a hung
 * one times out).
 */
const READ_FAILOVER_ERRORS = new Set([...CONNECT_ERRORS, 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/**
 * A gateway whose TLS handshake failed (its certificate did not verify) never saw the request
 * either: another gateway may take it, as after a refused connection.
 */
function neverReached (code: string, err: Error): boolean {
  return CONNECT_ERRORS.has(code) || tlsFailureOf(err) !== null
}

/**
 * Retries a request on the next gateway in rendezvous order when the connection to its gateway
 * fails (`proxy.retries` times at most). Only requests without a body qualify — an upload's
 * bytes are spent on the first try — and only for blocks without a location: a placed block
 * lives on its gateway alone, and another gateway would answer 404 for it.
 */
export class RetryStage implements Stage {
  constructor (
    private readonly routes: RouteTable,
    private readonly metrics: ProxyMetrics,
    readonly next: Forwarder,
    private retries: number
  ) {}

  reconfigure (retries: number): void {
    this.retries = retries
  }

  dispatch (request: ProxyRequest, handler: ResponseHandler): void {
    if (request.body === null && request.location === undefined && this.retries > 0) handler = new RetryOnConnect(this, request, handler)
    else if (!request.write && request.location !== undefined && request.location.inSync.length > 1) handler = new ReadFailover(this, request, handler)
    this.next.dispatch(request, handler)
  }

  /**
   * Sends a read to the next in-sync member of the block's set (nearest first) after `failed`
   * did not answer it (connection failure, reset, timeout or 5xx) or answered 404 without its
   * copy (`gatewayFailed` false: counted, not reported as a gateway failure); false when none is left.
   */
  failover (request: ProxyRequest, handler: ReadFailover, tried: Set<string>, why: string, gatewayFailed = true): boolean {
    const failed = request.gateway as Gateway
    tried.add(failed.id)
    const loc = request.location as BlockLocation
    const next = readOrder(this.next.gateways, loc, request.site, Date.now()).find(g => !tried.has(g.id))
    if (next === undefined) return false
    if (gatewayFailed) this.next.gateways.reportFailure(failed, why)
    else this.metrics.missingCopies.inc({ gateway: failed.id })
    failed.inflight--
    request.gateway = next
    this.metrics.retries.inc()
    this.next.dispatch(request, handler)
    return true
  }

  /** Sends the request to the next gateway; false when it may not or none is left. */
  retry (request: ProxyRequest, handler: RetryOnConnect, tried: Set<string>, code: string): boolean {
    if (request.attempts > this.retries) return false
    const failed = request.gateway as Gateway
    tried.add(failed.id)
    const next = this.routes.next(request.key, tried)
    if (next === undefined) return false
    // The error ends here and the handlers nearer the client never see it: report it here.
    this.next.gateways.reportFailure(failed, code)
    failed.inflight--
    request.gateway = next
    this.metrics.retries.inc()
    this.next.dispatch(request, handler)
    return true
  }
}

/** Sees a connection failure before the handlers nearer the client, and sends the request again. */
class RetryOnConnect implements ResponseHandler {
  /** Gateways tried so far (built on the first retry). */
  private tried: Set<string> | undefined

  constructor (private readonly stage: RetryStage, private readonly request: ProxyRequest, private readonly handler: ResponseHandler) {}

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart(controller, context)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.handler.onResponseStart(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.handler.onResponseData(controller, chunk)
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.handler.onResponseEnd(controller, trailers)
  }

  onResponseError (controller: Dispatcher.DispatchController | null, err: Error): void {
    const { request } = this
    const code = (err as { code?: string }).code ?? ''
    // Not once the gateway has answered, and not for a client that has left.
    if (request.status === 0 && neverReached(code, err) && !request.req.readableAborted && !request.res.destroyed &&
      this.stage.retry(request, this, this.tried ??= new Set(), code)) return
    this.handler.onResponseError(controller, err)
  }
}

/**
 * A read of a block with several in-sync members: a member that fails before its answer has
 * reached the client — connection refused or reset, timeout, or a 5xx — costs the client
 * nothing while another in-sync member is left. A 5xx is swallowed (its body discarded) and the
 * read sent on when it ends. So is a 404: the set says the member holds the block (a client's
 * delete removes the location, so no in-sync member is asked for a deleted block), so it lost
 * its copy — a disk replaced, a copy deleted by hand, or a set this proxy has not heard has
 * changed yet — and answering 404 would hide an acknowledged write another member holds. A 404
 * is not a gateway failure: it is counted (ferry_proxy_missing_copies_total), not ejected for.
 */
class ReadFailover implements ResponseHandler {
  private readonly tried = new Set<string>()
  /** The current member answered 5xx or 404: its response is being discarded. */
  private swallowing: 'failed' | 'missing' | false = false

  constructor (private readonly stage: RetryStage, private readonly request: ProxyRequest, private readonly handler: ResponseHandler) {}

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart(controller, context)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if ((statusCode >= 500 || statusCode === 404) && this.request.status === 0 && this.hasNext()) { this.swallowing = statusCode === 404 ? 'missing' : 'failed'; return }
    this.swallowing = false
    this.handler.onResponseStart(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.swallowing) return
    this.handler.onResponseData(controller, chunk)
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (this.swallowing !== false) {
      const missing = this.swallowing === 'missing'
      this.swallowing = false
      if (this.again(missing ? 'status 404' : 'status 5xx', !missing)) return
    }
    this.handler.onResponseEnd(controller, trailers)
  }

  onResponseError (controller: Dispatcher.DispatchController | null, err: Error): void {
    const code = (err as { code?: string }).code ?? ''
    if ((this.swallowing !== false || (this.request.status === 0 && (READ_FAILOVER_ERRORS.has(code) || neverReached(code, err)))) && this.again(code || err.message)) return
    this.handler.onResponseError(controller, err)
  }

  private hasNext (): boolean {
    const loc = this.request.location as BlockLocation
    const cur = (this.request.gateway as Gateway).id
    return loc.inSync.some(id => id !== cur && !this.tried.has(id))
  }

  private again (why: string, gatewayFailed = true): boolean {
    const { request } = this
    if (request.req.readableAborted || request.res.destroyed) return false
    return this.stage.failover(request, this, this.tried, why, gatewayFailed)
  }
}
