import type { Dispatcher } from 'undici'
import type { Forwarder } from './forward.js'
import type { Gateway } from './gateway-set.js'
import type { ProxyMetrics } from './metrics.js'
import type { IncomingHttpHeaders, ProxyRequest, ResponseHandler, Stage } from './request.js'
import type { RouteTable } from './route-table.js'

/** Error codes for which the gateway never saw the request: safe to try elsewhere. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'EAI_AGAIN'])

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
    this.next.dispatch(request, handler)
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
    if (request.status === 0 && CONNECT_ERRORS.has(code) && !request.req.readableAborted && !request.res.destroyed &&
      this.stage.retry(request, this, this.tried ??= new Set(), code)) return
    this.handler.onResponseError(controller, err)
  }
}
