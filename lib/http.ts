import type { ServerResponse } from 'node:http'

/**
 * Sends a JSON error body `{ error: { code, message } }`. Every 4xx/5xx that ferry itself
 * produces goes through here so that clients and load balancers see one shape.
 * `Connection: close` is left to the caller: only a response sent before the request body was
 * consumed needs it (otherwise the unread body would be parsed as the next request).
 */
export function sendError (res: ServerResponse, status: number, code: string, message: string, headers?: Record<string, string | number>): void {
  if (res.headersSent) {
    // The status line is gone; the only honest signal left is to cut the connection so the
    // client never takes a truncated body for a complete one.
    res.destroy()
    return
  }
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
