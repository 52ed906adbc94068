import { isValidId } from '../lib/ids.js'
import { invalid } from './errors.js'

/**
 * Validation of everything that ends up inside a key, and the key layout itself.
 *
 * Every id that becomes part of a key is checked against lib/ids.ts (letters, digits, `.`, `_`,
 * `-`; not starting with `.`; at most 128 characters). That alphabet has no `{`, `}`, `/`, `:`,
 * glob characters or whitespace, so an id can never close a hash tag early, reach into another
 * block's key, collide with another kind of key, or widen a SCAN pattern. Refusing (rather than
 * escaping) keeps keys readable in `redis-cli` and identical to the ids the gateways use.
 *
 * Layout (P = keyPrefix, default `ferry:`). The part in braces is the Redis Cluster hash tag:
 * all keys of one block share a slot, so one Lua script can update location, history and
 * publish atomically.
 *
 *   P{vol/blk}:loc        hash   location (g e v p t u f m i) or tombstone (e d u)
 *   P{vol/blk}:hist       list   JSON history entries, oldest first, capped
 *   P{vol/blk}:aff        hash   affinity: at r w la pref s:<site>…, expires when cold
 *   P{s:<id>}:sess        hash   session: at st b:<volume>…, expires
 *   P{t:<gateway>}:tel    zset   telemetry samples scored by time, capped, expires
 *   P{l:<name>}:lease     hash   holder token, expires
 *   P{l:<name>}:seq       string last token granted (never expires)
 *   P{mig}:active         set    ids of active migrations
 *   P{mig}:done           zset   ids of finished migrations by end time, capped
 *   P{mig}:m:<id>         hash   one migration record (JSON per field)
 *   P{gen}                string JSON generation marker (id, createdAt, rebuilding, rebuiltAt)
 *   P{d:<name>}:doc       string JSON document (putDocument: the placement table)
 *   P{events}:pub         (never written) pins publish() to one Cluster node
 *   Pevents               pub/sub channel (not a key)
 */

export function checkId (kind: string, id: unknown): string {
  if (typeof id !== 'string' || !isValidId(id)) {
    throw invalid(`invalid ${kind} id: ${describe(id)}`, { kind })
  }
  return id
}

const CHANNEL = /^[a-z][a-z0-9._-]{0,63}$/

export function checkChannel (channel: unknown): string {
  if (typeof channel !== 'string' || !CHANNEL.test(channel)) {
    throw invalid(`invalid channel: ${describe(channel)} (lowercase letters, digits, ".", "_", "-")`)
  }
  return channel
}

/** A lease holder is a value, not part of a key, but it is echoed in logs and the admin API. */
export function checkHolder (holder: unknown): string {
  if (typeof holder !== 'string' || holder.length === 0 || holder.length > 256 || hasControl(holder)) {
    throw invalid(`invalid lease holder: ${describe(holder)}`)
  }
  return holder
}

export function checkTtl (ttlMs: unknown): number {
  if (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > 365 * 24 * 3600_000) {
    throw invalid(`invalid ttlMs: ${describe(ttlMs)} (a positive integer)`)
  }
  return ttlMs
}

export function checkEpoch (epoch: unknown): number {
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) {
    throw invalid(`invalid epoch: ${describe(epoch)}`)
  }
  return epoch
}

export function checkToken (token: unknown): number {
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token < 1) {
    throw invalid(`invalid fencing token: ${describe(token)}`)
  }
  return token
}

/** ETags and reasons are stored as values; bound them and keep them printable. */
export function checkText (kind: string, text: unknown, max: number): string {
  if (typeof text !== 'string' || text.length === 0 || text.length > max || hasControl(text)) {
    throw invalid(`invalid ${kind}: ${describe(text)}`)
  }
  return text
}

export function checkCount (kind: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw invalid(`invalid ${kind}: ${describe(n)}`)
  return n
}

export function checkTime (kind: string, t: unknown): number {
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) throw invalid(`invalid ${kind}: ${describe(t)}`)
  return t
}

function hasControl (s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}

function describe (v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v)
  return s.length > 80 ? s.slice(0, 77) + '...' : s
}

/** The key prefix is configuration, checked once: same alphabet plus `:`; no braces, no glob characters. */
export const KEY_PREFIX_PATTERN = /^[A-Za-z0-9:._-]{0,64}$/

export class KeySpace {
  readonly prefix: string
  readonly channel: string
  /** Never written: its slot decides which Cluster node publishes messages (see scripts.ts PUBLISH). */
  readonly publishSlot: string
  readonly migActive: string
  readonly migDone: string
  readonly migRecordPrefix: string
  readonly generation: string
  /** One hash: gateway id → its drain record (JSON). */
  readonly drains: string

  constructor (prefix: string) {
    if (!KEY_PREFIX_PATTERN.test(prefix)) throw invalid(`invalid keyPrefix: ${describe(prefix)}`)
    this.prefix = prefix
    this.channel = prefix + 'events'
    this.publishSlot = prefix + '{events}:pub'
    this.migActive = prefix + '{mig}:active'
    this.migDone = prefix + '{mig}:done'
    this.migRecordPrefix = prefix + '{mig}:m:'
    this.generation = prefix + '{gen}'
    this.drains = prefix + '{drains}'
  }

  private block (volume: string, block: string, kind: string): string {
    return `${this.prefix}{${volume}/${block}}:${kind}`
  }

  location (volume: string, block: string): string { return this.block(volume, block, 'loc') }
  history (volume: string, block: string): string { return this.block(volume, block, 'hist') }
  affinity (volume: string, block: string): string { return this.block(volume, block, 'aff') }
  session (id: string): string { return `${this.prefix}{s:${id}}:sess` }
  telemetry (gateway: string): string { return `${this.prefix}{t:${gateway}}:tel` }
  lease (name: string): string { return `${this.prefix}{l:${name}}:lease` }
  leaseSeq (name: string): string { return `${this.prefix}{l:${name}}:seq` }
  migration (id: string): string { return this.migRecordPrefix + id }
  document (name: string): string { return `${this.prefix}{d:${name}}:doc` }

  /** SCAN pattern for one per-block key kind (the prefix alphabet has no glob characters). */
  blockPattern (kind: 'loc' | 'aff'): string {
    return `${this.prefix}{*/*}:${kind}`
  }

  /** Inverse of `location()`/`affinity()`; null for a key that is not exactly one of ours. */
  parseBlockKey (key: string, kind: 'loc' | 'aff'): { volume: string, block: string } | null {
    const head = this.prefix + '{'
    const tail = '}:' + kind
    if (!key.startsWith(head) || !key.endsWith(tail)) return null
    const inner = key.slice(head.length, key.length - tail.length)
    const slash = inner.indexOf('/')
    if (slash < 0) return null
    const volume = inner.slice(0, slash)
    const block = inner.slice(slash + 1)
    if (!isValidId(volume) || !isValidId(block)) return null
    return { volume, block }
  }
}
