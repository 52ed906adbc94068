import type { IncomingMessage, ServerResponse } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import type { Dispatcher } from 'undici'
import { sendError } from '../lib/http.js'
import { downstreamHeaders } from './headers.js'
import type { Gateway } from './gateway-set.js'
import type { BlockLocation } from '../state/types.js'

/** What a finished forward reports back to the server (metrics, access log, health). */
export interface ForwardHost {
  readonly via: string
  /**
   * True when an acknowledged write must be confirmed before the client hears of it: the
   * block's location changed while the write was in flight (a migration started or flipped).
   */
  mustConfirm (call: ForwardCall): boolean
  /** Resolves true when the write is on the block's current location. */
  confirmWrite (call: ForwardCall): Promise<boolean>
  readonly retries: number
  /** Next gateway to try after a connection failure, or undefined when none is left. */
  nextGateway (call: ForwardCall): Gateway | undefined
  onGatewaySuccess (g: Gateway): void
  onGatewayFailure (g: Gateway, reason: string): void
  onRetry (): void
  onDone (call: ForwardCall, status: number): void
}

/** Error codes for which the gateway never saw the request: safe to try elsewhere. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'EAI_AGAIN'])

/**
 * One proxied request, as an undici dispatch handler: the response streams from the gateway's
 * socket straight into the client's, with backpressure both ways (undici pauses reading the
 * gateway when the client is slow; undici reads the client's body only as fast as the gateway
 * takes it). Nothing is buffered beyond the sockets' own windows.
 */
export class ForwardCall implements Dispatcher.DispatchHandler {
  gateway: Gateway
  /** Gateways tried before the current one (only built when a retry happens). */
  tried: Set<string> | undefined
  status = 0
  bytesOut = 0
  etag: string | undefined
  /** Set when this request recorded the block's first location (and must undo it on failure). */
  claimedEpoch: number | undefined
  readonly startedAt = performance.now()
  private controller: Dispatcher.DispatchController | undefined
  private started = false
  /** A write's response held back until confirmWrite() says it may be acknowledged. */
  private held: { status: number, headers: Record<string, string | string[]>, chunks: Buffer[] } | undefined
  private done = false
  private attempts = 0
  private readonly onClientClose = (): void => {
    // The client left before the response ended: stop the upstream work too, so a half-sent
    // upload is aborted at the gateway (which then discards its temp file).
    if (!this.done) this.controller?.abort(new ClientGoneError())
  }

  private readonly onDrain = (): void => { this.controller?.resume() }

  constructor (
    private readonly host: ForwardHost,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly key: string,
    readonly volume: string,
    readonly block: string,
    readonly path: string,
    /** The block's location when it has one: then it is served there and nowhere else. */
    readonly location: BlockLocation | undefined,
    gateway: Gateway,
    private readonly headers: string[],
    private readonly body: NodeJS.ReadableStream | null
  ) {
    this.gateway = gateway
    res.once('close', this.onClientClose)
  }

  start (): void {
    this.attempts++
    this.gateway.inflight++
    this.gateway.pool.dispatch({
      method: this.req.method as Dispatcher.HttpMethod,
      path: this.path,
      headers: this.headers,
      body: this.body as Dispatcher.DispatchOptions['body']
    }, this)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return // 1xx: Node already handled 100-continue with the client
    this.started = true
    this.status = statusCode
    const etag = headers.etag
    if (typeof etag === 'string') this.etag = etag
    if (statusCode >= 500) this.host.onGatewayFailure(this.gateway, `status ${statusCode}`)
    else this.host.onGatewaySuccess(this.gateway)
    if (this.res.destroyed) return
    const out = downstreamHeaders(headers, this.host.via)
    // A gateway's own 503 (overloaded, failing) is relayed as it is, but clients learn when to
    // come back only from Retry-After: every 503 ferry serves carries one, whoever wrote it.
    if (statusCode === 503 && out['retry-after'] === undefined) out['retry-after'] = '1'
    if (statusCode < 300 && this.req.method !== 'GET' && this.req.method !== 'HEAD' && this.host.mustConfirm(this)) {
      this.held = { status: statusCode, headers: out, chunks: [] }
      return
    }
    this.res.writeHead(statusCode, out)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytesOut += chunk.length
    if (this.held !== undefined) { this.held.chunks.push(chunk); return } // a write's reply: tiny
    if (!this.res.write(chunk)) {
      controller.pause()
      this.res.once('drain', this.onDrain)
    }
  }

  onResponseEnd (): void {
    const held = this.held
    if (held === undefined) {
      this.finish()
      this.res.end()
      return
    }
    this.host.confirmWrite(this).then(ok => ok, () => false).then(ok => {
      if (ok) {
        this.finish()
        if (this.res.destroyed) return
        this.res.writeHead(held.status, held.headers)
        this.res.end(Buffer.concat(held.chunks))
        return
      }
      // Not provably on the block's current location, so not acknowledged: the client retries.
      this.status = 503
      this.finish()
      sendError(this.res, 503, 'FERRY_WRITE_NOT_CONFIRMED', 'the block moved while this write was in flight; retry it', { 'retry-after': 1 })
    })
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    if (err instanceof BodyTooLargeError && !this.started) {
      this.status = 413
      this.finish()
      sendError(this.res, 413, err.code, err.message, { connection: 'close' })
      return
    }
    const clientGone = err instanceof ClientGoneError || this.req.readableAborted || this.res.destroyed
    if (!clientGone) {
      const code = (err as { code?: string }).code ?? ''
      this.host.onGatewayFailure(this.gateway, code || err.message)
      // Only requests without a body can be sent again: an upload's bytes are already spent.
      if (!this.started && this.body === null && this.location === undefined && CONNECT_ERRORS.has(code) && this.attempts <= this.host.retries) {
        ;(this.tried ??= new Set()).add(this.gateway.id)
        const next = this.host.nextGateway(this)
        if (next !== undefined) {
          this.gateway.inflight--
          this.gateway = next
          this.host.onRetry()
          this.start()
          return
        }
      }
      if (!this.started) {
        this.status = code === 'UND_ERR_HEADERS_TIMEOUT' ? 504 : 502
        this.finish()
        sendError(this.res, this.status, this.status === 504 ? 'FERRY_GATEWAY_TIMEOUT' : 'FERRY_GATEWAY_ERROR',
          `gateway ${this.gateway.id} failed: ${code || err.message}`, this.body === null ? undefined : { connection: 'close' })
        return
      }
    }
    // Headers are out (or nobody is listening): cutting the connection is the only way to make
    // sure a truncated body is never taken for a complete one.
    if (this.status === 0) this.status = 499
    this.finish()
    this.res.destroy()
  }

  private finish (): void {
    if (this.done) return
    this.done = true
    this.gateway.inflight--
    this.res.off('close', this.onClientClose)
    this.host.onDone(this, this.status)
  }
}

export class ClientGoneError extends Error {
  constructor () {
    super('client closed the connection')
    this.name = 'ClientGoneError'
  }
}

/**
 * Counts a chunked upload's bytes and fails it past the limit; uploads with a Content-Length
 * are checked before forwarding and do not pay for this stream.
 */
export class BodyLimit extends Transform {
  private seen = 0
  exceeded = false

  constructor (private readonly limit: number) {
    super()
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.limit) {
      this.exceeded = true
      cb(new BodyTooLargeError(this.limit))
      return
    }
    cb(null, chunk)
  }
}

export class BodyTooLargeError extends Error {
  readonly code = 'FERRY_BODY_TOO_LARGE'
  constructor (limit: number) {
    super(`request body exceeds ${limit} bytes`)
  }
}
