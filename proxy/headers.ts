import type { IncomingHttpHeaders } from 'node:http'
import { TOMBSTONE_HEADER, WRITTEN_AT_HEADER } from '../lib/block-headers.js'

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message, and must not
 * be forwarded. `expect` is handled here too: Node answers 100-continue to the client itself,
 * and undici refuses to send it upstream. `host` is rewritten by undici for the gateway.
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'host'
])

/**
 * ferry's own block-protocol headers (lib/block-headers.ts) are never taken from a client: a
 * client's back-dated written-at would make its write look older than a stale copy to a
 * store-loss rebuild, and only ferry decides which delete leaves a tombstone.
 */
const FERRY_ONLY = new Set([WRITTEN_AT_HEADER, TOMBSTONE_HEADER])

/**
 * Builds the upstream header list from Node's rawHeaders (a flat [name, value, …] array, so no
 * object is built per request) and appends X-Forwarded-For, X-Forwarded-Host and Via. A client's
 * DELETE asks the gateway for a tombstone (gateway/README.md "Tombstones").
 */
export function upstreamHeaders (raw: readonly string[], peer: string, viaToken: string, hostHeader: string | undefined, method?: string): string[] {
  const out: string[] = []
  let xff: string | undefined
  let via: string | undefined
  let named: Set<string> | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    const value = raw[i + 1] as string
    if (name === 'connection') {
      // Headers listed in Connection are hop-by-hop too (e.g. "Connection: close, X-Trace").
      for (const tok of value.split(',')) {
        const t = tok.trim().toLowerCase()
        if (t !== '' && t !== 'close' && t !== 'keep-alive') (named ??= new Set()).add(t)
      }
      continue
    }
    if (HOP_BY_HOP.has(name) || FERRY_ONLY.has(name)) continue
    if (name === 'x-forwarded-for') { xff = xff === undefined ? value : xff + ', ' + value; continue }
    if (name === 'via') { via = via === undefined ? value : via + ', ' + value; continue }
    out.push(name, value)
  }
  if (named !== undefined) {
    for (let i = out.length - 2; i >= 0; i -= 2) if (named.has(out[i] as string)) out.splice(i, 2)
  }
  out.push('x-forwarded-for', xff === undefined ? peer : xff + ', ' + peer)
  out.push('via', via === undefined ? viaToken : via + ', ' + viaToken)
  if (hostHeader !== undefined) out.push('x-forwarded-host', hostHeader)
  if (method === 'DELETE') out.push(TOMBSTONE_HEADER, '1')
  return out
}

/** The gateway's response headers minus hop-by-hop ones, plus our Via. */
export function downstreamHeaders (headers: IncomingHttpHeaders, viaToken: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  let named: string[] | undefined
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined) continue
    if (name === 'connection') { named = String(value).split(',').map(t => t.trim().toLowerCase()); continue }
    if (HOP_BY_HOP.has(name)) continue
    out[name] = value
  }
  if (named !== undefined) for (const n of named) delete out[n]
  const via = out.via
  out.via = via === undefined ? viaToken : `${String(via)}, ${viaToken}`
  return out
}
