import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ErrorCode } from './error-codes.js'

/**
 * The response a server socket is writing, or null when the socket sits idle between keep-alive
 * requests. Node keeps it in the undocumented `_httpMessage`, which is `undefined` before the
 * first request and `null` after every finished response: the one accessor here keeps a handler
 * from checking only one of the two (a proxy once died on every idle keep-alive client that way).
 */
export function responseInFlight (socket: Duplex): ServerResponse | null {
  return (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? null
}

/** Writes ferry's error answer in another protocol's shape (S3's XML). */
export type ErrorWriter = (res: ServerResponse, status: number, code: ErrorCode, message: string, headers?: Record<string, string | number>) => void

/**
 * On the response itself rather than in a WeakMap: set on every S3 request, and a WeakMap entry
 * per response is an ephemeron the collector has to trace, which showed in the S3 profile.
 */
const ERROR_WRITER = Symbol('ferry.errorWriter')
type WithWriter = ServerResponse & { [ERROR_WRITER]?: ErrorWriter }

/**
 * Makes every error ferry answers on `res` — wherever in the handler chain it is decided (a held
 * write, a gateway that failed, a body over the limit) — go through `writer`: a request that
 * came in as S3 gets S3's XML error, not the block API's JSON.
 */
export function answerErrorsWith (res: ServerResponse, writer: ErrorWriter): void {
  (res as WithWriter)[ERROR_WRITER] = writer
}

/**
 * Sends a JSON error body `{ error: { code, message } }`. Every 4xx/5xx that ferry itself
 * produces goes through here so that clients and load balancers see one shape.
 * `Connection: close` is left to the caller: only a response sent before the request body was
 * consumed needs it (otherwise the unread body would be parsed as the next request).
 */
export function sendError (res: ServerResponse, status: number, code: ErrorCode, message: string, headers?: Record<string, string | number>): void {
  if (res.headersSent) {
    // The status line is gone; the only honest signal left is to cut the connection so the
    // client never takes a truncated body for a complete one.
    res.destroy()
    return
  }
  const writer = (res as WithWriter)[ERROR_WRITER]
  if (writer !== undefined) { writer(res, status, code, message, headers); return }
  const body = JSON.stringify({ error: { code, message } })
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...headers
  })
  res.end(body)
}

export function sendJson (res: ServerResponse, status: number, value: unknown, headers?: Record<string, string | number>): void {
  const body = JSON.stringify(value)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...headers
  })
  res.end(body)
}
