import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import type { FerryErrorCode } from '../lib/error-codes.js'
import { discardUnreadBody, sendError } from '../lib/http.js'
import type { AccessRecorder } from './access-recorder.js'
import type { Gateway, GatewaySet } from './gateway-set.js'
import { downstreamHeaders, upstreamHeaders } from './headers.js'
import type { ProxyMetrics } from './metrics.js'
import { PathPattern } from './path-pattern.js'
import { ProxyAnswer, type IncomingHttpHeaders, type ProxyRequest, type ResponseHandler, type Stage } from './request.js'
import { describeGatewayError, gatewayTlsError } from '../upstream/connect.js'
import { noteBodyBytes } from '../lib/body-gc.js'

/** Sees every forwarded access with the site of the gateway that serves it. */
export type AccessObserver = (volume: string, block: string, client: string, site: string | undefined, write: boolean, at: number, servedBySite: string) => void

/**
 * The last stage: sends a request to its gateway's pool, and keeps the books of every request
 * that reached a gateway — requests in flight (a graceful close waits for them), metrics, the
 * gateway's passive health and totals, the profiler's observer, the access log. It also writes
 * the answers ferry gives itself, so that they look the same wherever they are given.
 */
export class Forwarder implements Stage {
  /** Set by a graceful close: answers from now on close their connection. */
  closing = false
  /** Our token in the Via header, both ways. */
  via: string
  private recording: boolean
  private inflight = 0
  private readonly idle = new Set<() => void>()

  constructor (
    readonly gateways: GatewaySet,
    private readonly metrics: ProxyMetrics,
    private readonly recorder: AccessRecorder,
    private readonly observer: AccessObserver | undefined,
    via: string,
    recording: boolean
  ) {
    this.via = via
    this.recording = recording
  }

  reconfigure (via: string, recording: boolean): void {
    this.via = via
    this.recording = recording
  }

  dispatch (request: ProxyRequest, handler: ResponseHandler): void {
    const { req, res } = request
    // A stage may have waited (a held write, a session read from the store) and the client left.
    if (res.destroyed) { handler.onResponseError(null, new ClientGoneError()); return }
    const gateway = request.gateway
    if (gateway === undefined) {
      handler.onResponseError(null, new ProxyAnswer('FERRY_NO_GATEWAY', request.location !== undefined
        ? `block ${request.key} is placed on gateway ${request.location.gateway}, which is not configured`
        : 'no gateway is configured', 503, { 'retry-after': 1 }))
      return
    }
    if (request.attempts++ === 0) {
      if (request.bodyAt !== undefined) request.body = request.bodyAt(request)
      this.inflight++
      request.startedAt = performance.now()
      // The upload's bytes, counted once as it starts (a chunked one is counted by BodyLimit).
      if (request.body !== null) noteBodyBytes(Number(req.headers['content-length'] ?? 0))
      if (this.observer !== undefined && this.recording) this.observer(request.volume, request.block, request.client, request.site, request.write, request.now, gateway.site)
      if (this.recorder.logging) {
        res.once('close', () => {
          const { volume, block, client, site, write, now, user } = request
          this.recorder.logAccess({ volume, block, client, site, write, at: now, user }, request.status, (request.gateway as Gateway).id, performance.now() - request.startedAt)
        })
      }
    }
    gateway.inflight++
    const opts: Dispatcher.DispatchOptions = {
      method: request.method,
      path: PathPattern.gatewayPath(request.volume, request.block),
      headers: request.upstreamHeaders ?? upstreamHeaders(req.rawHeaders, request.peer, this.via, req.headers.host, request.method),
      body: request.body as Dispatcher.DispatchOptions['body']
    }
    if (request.fanout !== undefined) request.fanout.dispatch(opts, handler)
    else gateway.pool.dispatch(opts, handler)
  }

  /**
   * The gateway answered: its status is the request's from now on, and says whether the gateway
   * works (any status below 500). Once per request — the write guard records the answer of a
   * write whose acknowledgement it holds back, the client's handler every other.
   */
  answered (request: ProxyRequest, statusCode: number): void {
    if (request.status !== 0) return
    request.status = statusCode
    const gateway = request.gateway as Gateway
    if (statusCode >= 500) this.gateways.reportFailure(gateway, `status ${statusCode}`)
    else this.gateways.reportSuccess(gateway)
  }

  /** A request that reached a gateway is over (answered, failed or cut). */
  finished (request: ProxyRequest): void {
    const g = request.gateway as Gateway
    g.inflight--
    const status = request.status
    const ms = performance.now() - request.startedAt
    this.metrics.observe(g.id, request.method, status, ms / 1000)
    g.requests++
    g.latencyMsTotal += ms
    if (status >= 500 || status === 0) g.errors++
    if (this.closing) request.res.shouldKeepAlive = false
    if (--this.inflight === 0 && this.idle.size > 0) for (const f of this.idle) f()
  }

  /**
   * Answers an error without forwarding. Body bytes still to come are read and discarded, up to
   * a bound, so that a client which reads only after sending gets this answer; a caller that
   * must not keep the connection (a 413) passes `connection: close`, and it closes lingering
   * (lib/http.ts discardUnreadBody).
   */
  refuse (req: IncomingMessage, res: ServerResponse, status: number, code: FerryErrorCode, message: string, headers?: Record<string, string | number>): void {
    this.metrics.errors.inc({ code })
    sendError(res, status, code, message, discardUnreadBody(req, res, this.closing ? { ...headers, connection: 'close' } : headers))
  }

  /** Resolves when no forwarded request is in flight, or after `graceMs`. */
  async drained (graceMs: number): Promise<void> {
    if (this.inflight === 0) return
    await new Promise<void>(resolve => {
      const timer = setTimeout(done, graceMs)
      const idle = this.idle
      idle.add(done)
      function done (): void { clearTimeout(timer); idle.delete(done); resolve() }
    })
  }
}

/**
 * The handler nearest the client: the gateway's response streams from its socket straight into
 * the client's, with backpressure both ways (undici pauses reading the gateway while the client
 * is slow, and reads the client's body only as fast as the gateway takes it). Nothing is
 * buffered beyond the sockets' own windows. It also writes whatever ends the request instead:
 * an answer of ferry's own, a 502/504, or a cut connection once headers are out.
 */
export class ClientResponse implements ResponseHandler {
  private controller: Dispatcher.DispatchController | undefined
  private done = false
  private readonly onClientClose = (): void => {
    // The client left before the response ended: stop the upstream work too, so a half-sent
    // upload is aborted at the gateway (which then discards its temp file).
    if (!this.done) this.controller?.abort(new ClientGoneError())
  }

  private readonly onDrain = (): void => { this.controller?.resume() }

  constructor (private readonly forwarder: Forwarder, private readonly request: ProxyRequest) {
    request.res.on('close', this.onClientClose) // not once(): no wrapper closure per request; finish() removes it
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return // 1xx: Node already handled 100-continue with the client
    const { request } = this
    this.forwarder.answered(request, statusCode)
    const res = request.res
    if (res.destroyed) return
    const out = downstreamHeaders(headers, this.forwarder.via)
    // A gateway's own 503 (overloaded, failing) is relayed as it is, but clients learn when to
    // come back only from Retry-After: every 503 ferry serves carries one, whoever wrote it.
    if (statusCode === 503 && out['retry-after'] === undefined) out['retry-after'] = '1'
    res.writeHead(statusCode, out)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.request.res
    noteBodyBytes(chunk.length)
    if (!res.write(chunk)) {
      controller.pause()
      res.once('drain', this.onDrain)
    }
  }

  onResponseEnd (): void {
    this.finish()
    this.request.res.end()
  }

  onResponseError (_controller: Dispatcher.DispatchController | null, err: Error): void {
    const { request } = this
    const { req, res } = request
    if (request.attempts === 0) {
      // Never reached a gateway: a stage answered, or the client left while a stage waited.
      res.off('close', this.onClientClose)
      if (err instanceof ProxyAnswer) this.forwarder.refuse(req, res, err.statusCode, err.code, err.message, err.headers)
      return
    }
    if (err instanceof ProxyAnswer && !res.headersSent) {
      // After the dispatch: the body passed the size limit, or a write could not be confirmed.
      request.status = err.statusCode
      this.finish()
      sendError(res, err.statusCode, err.code, err.message, discardUnreadBody(req, res, err.headers))
      return
    }
    const clientGone = err instanceof ClientGoneError || req.readableAborted || res.destroyed
    if (!clientGone) {
      const code = (err as { code?: string }).code ?? ''
      const gateway = request.gateway as Gateway
      this.forwarder.gateways.reportFailure(gateway, describeGatewayError(err))
      if (request.status === 0) {
        const close = discardUnreadBody(req, res)
        // A certificate that does not verify is a configuration problem, not an outage: say which.
        const tls = gatewayTlsError(gateway.id, err)
        request.status = tls === null && code === 'UND_ERR_HEADERS_TIMEOUT' ? 504 : 502
        this.finish()
        if (tls !== null) sendError(res, 502, 'FERRY_GATEWAY_TLS', tls.message, close)
        else sendError(res, request.status, request.status === 504 ? 'FERRY_GATEWAY_TIMEOUT' : 'FERRY_GATEWAY_ERROR', `gateway ${gateway.id} failed: ${code || err.message}`, close)
        return
      }
    }
    // Headers are out (or nobody is listening): cutting the connection is the only way to make
    // sure a truncated body is never taken for a complete one.
    if (request.status === 0) request.status = 499
    this.finish()
    res.destroy()
  }

  private finish (): void {
    if (this.done) return
    this.done = true
    this.request.res.off('close', this.onClientClose)
    this.forwarder.finished(this.request)
  }
}

export class ClientGoneError extends Error {
  constructor () {
    super('client closed the connection')
    this.name = 'ClientGoneError'
  }
}
