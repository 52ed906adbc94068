import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import type { FerryErrorCode } from '../lib/error-codes.js'
import { FerryError } from '../lib/errors.js'
import type { Logger } from '../lib/log.js'
import type { BlockLocation } from '../state/types.js'
import type { Gateway } from './gateway-set.js'

/**
 * One client request on its way to a gateway: built once by the server, then handed from stage
 * to stage (sessions → write guard → retry → forwarder). Stages read what the server found and
 * write what they decide (`location`, `gateway`, `claimedEpoch`); the handlers that carry the
 * response back read the outcome (`status`, `attempts`).
 */
export interface ProxyRequest {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'DELETE'
  readonly volume: string
  readonly block: string
  /** blockKey(volume, block), computed once. */
  readonly key: string
  /** PUT or DELETE. */
  readonly write: boolean
  /** What is sent upstream: the request itself, the request through a BodyLimit, or null (see bodyAt). */
  body: NodeJS.ReadableStream | null
  /** Chooses `body` at the first dispatch to a gateway, once the gateways it goes to are known (BlockOperation.bodyAt). */
  bodyAt?: (request: ProxyRequest) => NodeJS.ReadableStream
  /** The client (the socket peer, or the first untrusted X-Forwarded-For hop). */
  readonly client: string
  readonly site: string | undefined
  /** The socket peer, appended to X-Forwarded-For. */
  readonly peer: string
  readonly now: number
  /** The block's location when it has one: then it is served there and nowhere else. */
  location: BlockLocation | undefined
  /** Where the request goes: the location's gateway, else the hashed one; the current attempt's after a retry. */
  gateway: Gateway | undefined
  /** While the block has no location: its first healthy gateway in rendezvous order, where every proxy looks for it. */
  hashed: Gateway | undefined
  /**
   * A write to a block with several members: sent to all of them (replicas.ts) in place of the
   * one gateway's pool. `gateway` is then the member whose answer the client gets.
   */
  fanout: { dispatch (opts: Dispatcher.DispatchOptions, handler: ResponseHandler): boolean } | undefined
  /**
   * A first write placed by the partitioning engine (placement/): the whole replica set it chose,
   * head first, which the claim records (replicas.ts claimSet). Undefined otherwise.
   */
  placedSet: readonly string[] | undefined
  /** Set when this request recorded the block's first location (undone if the write fails). */
  claimedEpoch: number | undefined
  /** Dispatches to a gateway so far (0 while a stage still decides; more than 1 after a retry). */
  attempts: number
  /** The gateway's status once its response starts, then the status the client was answered with; 0 before. */
  status: number
  /** performance.now() at the first dispatch. */
  startedAt: number
  /**
   * The headers sent upstream when a protocol adapter (S3) decided them — its block operation is
   * not the client's request (a POST that completes an upload is a PUT of the object; signatures
   * and aws-chunked framing stay here). Otherwise the client's, minus hop-by-hop ones.
   */
  upstreamHeaders?: string[]
  /** Who made the request: the S3 access key, or undefined (anonymous). */
  user?: string
}

/**
 * What undici calls back with the gateway's response, with every callback present; a handler
 * either writes to the client (ClientResponse) or wraps the next one (retry, write guard).
 */
export interface ResponseHandler extends Dispatcher.DispatchHandler {
  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void
  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void
  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void
  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void
  /** `controller` is null when the request never reached a gateway (a stage answered it, or the client left first). */
  onResponseError (controller: Dispatcher.DispatchController | null, error: Error): void
}

export type IncomingHttpHeaders = Record<string, string | string[] | undefined>

/**
 * A step of the request path, in the manner of undici's interceptors: it may wait, decide, wrap
 * the handler to see the response first, or answer the client itself by calling the handler's
 * `onResponseError` with a ProxyAnswer — then hands the request on to the next stage.
 */
export interface Stage {
  dispatch (request: ProxyRequest, handler: ResponseHandler): void
}

/**
 * An answer ferry gives the client in place of the gateway's (503 while a write is held, 413
 * for an oversize body, ...). It travels the handler chain as an error, so every handler on the
 * way sees that the request ends here; the handler nearest the client writes it.
 */
export class ProxyAnswer extends FerryError {
  declare readonly code: FerryErrorCode

  constructor (code: FerryErrorCode, message: string, statusCode: number, readonly headers?: Record<string, string | number>) {
    super(code, message, statusCode)
    this.name = 'ProxyAnswer'
  }
}

/** A stage's own work failed (a bug, or a store call that threw): logged, and the client gets a 500. */
export function stageFailed (logger: Logger, err: unknown, handler: ResponseHandler): void {
  logger.error({ err }, 'routing failed')
  handler.onResponseError(null, new ProxyAnswer('FERRY_INTERNAL', 'internal error', 500))
}

/** A block operation handed to the core: what the plain block API and the S3 adapter both produce. */
export interface BlockOperation {
  req: IncomingMessage
  res: ServerResponse
  method: ProxyRequest['method']
  volume: string
  block: string
  /** What is sent upstream (null: no body). */
  body: NodeJS.ReadableStream | null
  /**
   * What is sent upstream instead of `body`, chosen when the request is first dispatched and its
   * gateways are known: an adapter that checks a body only where the gateways do not (S3 uploads
   * to gateways that check digests themselves go as the client's request, unwrapped).
   */
  bodyAt?: (request: ProxyRequest) => NodeJS.ReadableStream
  /** Headers for the gateway, when the adapter decides them (see ProxyRequest.upstreamHeaders). */
  upstreamHeaders?: string[]
  user?: string
  /** Wraps the handler that answers the client, to see (and translate) the gateway's answer first. */
  wrap?: (client: ResponseHandler, request: ProxyRequest) => ResponseHandler
}
