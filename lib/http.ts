import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
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
 * The most of an unread request body ferry reads and throws away after answering early (an
 * error before the body was needed), whether it keeps the connection (discardUnreadBody) or
 * closes it (closeLingering). Beyond it the connection is cut: reading a large upload only to
 * discard it would waste the bandwidth the answer saves. 16 MiB holds an S3 client's parts
 * (8 MiB by default in the AWS CLI and boto3).
 */
export const DISCARD_MAX_BYTES = 16 * 1024 * 1024
/** A lingering close gives the client at most this long (ms) to stop sending and close. */
export const LINGER_MAX_MS = 10_000
/**
 * How often a lingering close counts the bytes read (the HTTP parser reads them, not us, so no
 * callback sees each chunk). Often enough that a fast client cannot send far past
 * DISCARD_MAX_BYTES between two looks: at 50 ms, a client's whole 128 MiB was once read to the
 * end in a CI run (lingering-close.test; alone it passed at 50 ms as well). A linger lasts until
 * the client closes (at most LINGER_MAX_MS), so the timer is short-lived.
 */
const LINGER_CHECK_MS = 5

const CLOSE = { connection: 'close' } as const

/**
 * What to do with the rest of a request's body when ferry answers before reading it all (an
 * error decided from the headers, a signature that does not match, a gateway that failed
 * mid-upload). Closing the connection at once is not enough: a client that sends its whole body
 * before it reads the answer (Python's http.client, so boto3 and the AWS CLI) gets a broken pipe
 * or a reset instead of the error — the kernel drops an answer it had received when the reset
 * arrives — once the body outgrows the socket buffers.
 *
 * - A body of at most DISCARD_MAX_BYTES (declared, or counted for a chunked one) is read and
 *   discarded, as nginx does for its error pages, and the connection stays open for the next
 *   request. A client that stops sending meanwhile meets the idle timeout.
 * - When the answer closes the connection anyway (`headers` say so: a 413) or the body is
 *   declared larger, it closes lingering (closeLingering).
 *
 * Returns the headers to answer with (`connection: close` added when the connection will not be
 * kept).
 */
export function discardUnreadBody (req: IncomingMessage, res: ServerResponse, headers?: Record<string, string | number>): Record<string, string | number> | undefined {
  if (req.readableEnded || req.destroyed) return headers
  const cl = req.headers['content-length']
  if (cl === undefined ? req.headers['transfer-encoding'] === undefined : cl === '0') return headers
  if (headers?.connection === 'close' || (cl !== undefined && !(Number(cl) <= DISCARD_MAX_BYTES))) {
    closeLingering(req, res)
    return headers?.connection === 'close' ? headers : { ...headers, ...CLOSE }
  }
  // A consumer that gave up on the body (a hash, a tee to gateways) may still be attached: the
  // rest must go nowhere but away.
  req.unpipe()
  req.removeAllListeners('data')
  req.removeAllListeners('readable')
  let seen = 0
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length
    if (seen > DISCARD_MAX_BYTES) req.socket.destroy()
  })
  req.resume()
  return headers
}

/**
 * Sends a JSON error body `{ error: { code, message } }`. Every 4xx/5xx that ferry itself
 * produces goes through here so that clients and load balancers see one shape.
 * What happens to a body not yet read is left to the caller (discardUnreadBody).
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

/**
 * Makes the `connection: close` answer being written on `res` close the way servers close a
 * connection whose request body they did not read (nginx's lingering_close, Apache's lingering
 * close): the answer, then our half of the connection closed (FIN), then the rest of the body
 * read and discarded until the client closes its half — at most DISCARD_MAX_BYTES more, for at
 * most LINGER_MAX_MS — then the socket closed.
 *
 * Why: Node ends such an answer with `socket.destroySoon()`, which closes the socket as soon as
 * the answer is flushed. A socket closed with received bytes unread makes the kernel send RST,
 * and a client that sends its whole body before reading (Python's http.client under boto3 and
 * requests, many others) has its next write fail and never reads the answer: a wrong-signature
 * PUT seen as a cut connection instead of a 403. The bounds keep a client that goes on sending
 * a large body from holding the connection; it is then cut as before.
 */
export function closeLingering (req: IncomingMessage, res: ServerResponse): void {
  const socket = res.socket
  if (socket === null || socket.destroyed) return
  // Node's server calls destroySoon() once the answer is finished (after it set the unread body
  // to be discarded): the one place to replace "close now" with "close after lingering".
  (socket as Socket & { destroySoon: () => void }).destroySoon = () => { linger(socket, req) }
}

function linger (socket: Socket, req: IncomingMessage): void {
  if (socket.destroyed) return
  const start = socket.bytesRead
  const started = performance.now()
  const timer = setInterval(() => {
    if (socket.bytesRead - start > DISCARD_MAX_BYTES || performance.now() - started > LINGER_MAX_MS) socket.destroy()
  }, LINGER_CHECK_MS)
  socket.once('close', () => { clearInterval(timer) })
  // The client has read the answer and closed its half: nothing more will come.
  socket.once('end', () => { socket.destroy() })
  // A body that was being read when the answer was decided may be paused: read and discard it.
  req.resume()
  socket.end()
}
