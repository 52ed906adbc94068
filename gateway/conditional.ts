import type { IncomingHttpHeaders } from 'node:http'

/**
 * Preconditions of RFC 9110 §13.2.2, for If-Match and If-None-Match only (the block store has no
 * meaningful modification dates, so the date forms are ignored, as the RFC allows when an ETag
 * validator is present).
 *
 * `current` is the block's quoted strong ETag, or null when the block does not exist.
 */
export type Verdict = 'ok' | 'not-modified' | 'failed'

export function hasPreconditions (headers: IncomingHttpHeaders): boolean {
  return headers['if-match'] !== undefined || headers['if-none-match'] !== undefined
}

export function evaluatePreconditions (headers: IncomingHttpHeaders, current: string | null, safeMethod: boolean): Verdict {
  const ifMatch = headers['if-match']
  if (ifMatch !== undefined) {
    // If-Match uses the strong comparison: a weak tag never matches, an absent block never matches.
    if (current === null) return 'failed'
    if (ifMatch.trim() !== '*' && !listContains(ifMatch, current, false)) return 'failed'
  }
  const ifNoneMatch = headers['if-none-match']
  if (ifNoneMatch !== undefined && current !== null) {
    // If-None-Match uses the weak comparison: W/"x" matches "x".
    if (ifNoneMatch.trim() === '*' || listContains(ifNoneMatch, current, true)) {
      return safeMethod ? 'not-modified' : 'failed'
    }
  }
  return 'ok'
}

/**
 * Whether a comma-separated entity-tag list contains `etag` (quoted). Scans in place rather than
 * splitting (no arrays on the hot path). A malformed list matches nothing, which makes If-Match
 * fail closed (412) instead of overwriting a block on a garbled header.
 */
export function listContains (list: string, etag: string, weakOk: boolean): boolean {
  const n = list.length
  let i = 0
  while (i < n) {
    const c = list.charCodeAt(i)
    if (c === 32 || c === 9 || c === 44 /* , */) { i++; continue }
    let weak = false
    if (c === 87 /* W */ && list.charCodeAt(i + 1) === 47 /* / */) { weak = true; i += 2 }
    if (list.charCodeAt(i) !== 34 /* " */) return false
    const end = list.indexOf('"', i + 1)
    if (end === -1) return false
    if ((weakOk || !weak) && end + 1 - i === etag.length && list.startsWith(etag, i)) return true
    i = end + 1
  }
  return false
}
