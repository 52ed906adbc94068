import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import { isValidId } from '../lib/ids.js'
import { corrupt, invalid } from './errors.js'
import {
  LOCATION_PHASES, MIGRATION_PHASES, MIGRATION_RESULTS,
  type BlockLocation, type DrainRecord, type HistoryEntry, type LocationPhase, type MigrationRecord, type StoreEvent, type StoreGeneration
} from './types.js'

/**
 * Encoding of stored records and of notifications. Both backends go through here: the memory
 * backend's event bus carries the same JSON strings Redis pub/sub does, so decoding, validation
 * and the malformed-message counter behave identically (and tests of one cover the other).
 *
 * Location record (a Redis hash; short field names because there is one per block):
 *   g gateway · e epoch · v version (absent = null) · p phase · t target (absent = none)
 *   u updatedAt · f fence · d "1" on a tombstone (then only e and u are meaningful)
 *   m members, comma-joined (absent = g alone: a record from before replica sets, or a set of one)
 *   i in-sync members, comma-joined (absent = every member)
 *
 * Notification wire format (JSON, one channel):
 *   {"v":1,"k":"loc","vol":V,"blk":B,"e":EPOCH,"loc":{g,e,v,p,t,u,f,m,i}} location changed
 *   {"v":1,"k":"loc","vol":V,"blk":B,"e":EPOCH}                         deleted (tombstone epoch)
 *   {"v":1,"k":"msg","ch":CHANNEL,"m":ANY}                              publish(channel, message)
 * Location notifications are produced inside the Lua scripts (cjson), so the field names here
 * and in redis/scripts.ts must agree; the contract tests check that they do.
 */

export const WIRE_VERSION = 1

const id = z.string().refine(isValidId)
const phase = z.enum(LOCATION_PHASES as [LocationPhase, ...LocationPhase[]])
const epoch = z.number().int().min(1)
const time = z.number().finite().nonnegative()

const wireLocation = z.object({
  g: id,
  e: epoch,
  v: z.string().optional(),
  p: phase,
  t: id.optional(),
  u: time,
  f: z.number().int().nonnegative().optional(),
  m: z.string().optional(),
  i: z.string().optional()
})

const wireEvent = z.discriminatedUnion('k', [
  z.object({ v: z.literal(WIRE_VERSION), k: z.literal('loc'), vol: id, blk: id, e: epoch, loc: wireLocation.optional() }),
  z.object({ v: z.literal(WIRE_VERSION), k: z.literal('msg'), ch: z.string().regex(/^[a-z][a-z0-9._-]{0,63}$/), m: z.unknown() })
])

type WireLocation = z.infer<typeof wireLocation>

function fromWire (w: WireLocation): BlockLocation | null {
  const set = decodeSet(w.g, w.m, w.i)
  if (set === null) return null
  const loc: BlockLocation = { gateway: w.g, ...set, epoch: w.e, version: w.v ?? null, phase: w.p, updatedAt: w.u, fence: w.f ?? 0 }
  if (w.t !== undefined) loc.target = w.t
  return loc
}

export function toWire (loc: BlockLocation): WireLocation {
  const w: WireLocation = { g: loc.gateway, e: loc.epoch, p: loc.phase, u: loc.updatedAt, f: loc.fence }
  if (loc.version !== null) w.v = loc.version
  if (loc.target !== undefined) w.t = loc.target
  const set = encodeSet(loc)
  if (set.m !== undefined) w.m = set.m
  if (set.i !== undefined) w.i = set.i
  return w
}

/**
 * The replica set as stored (`m`, `i`): omitted when it is the gateway alone, so a set of one is
 * stored exactly as a location was before replica sets, and such a record reads back as a set
 * of one.
 */
export function encodeSet (loc: Pick<BlockLocation, 'gateway' | 'members' | 'inSync'>): { m?: string, i?: string } {
  const single = loc.members.length === 1 && loc.members[0] === loc.gateway
  const out: { m?: string, i?: string } = {}
  if (!single) out.m = loc.members.join(',')
  if (loc.inSync.length !== loc.members.length) out.i = loc.inSync.join(',')
  return out
}

/** null when the stored set is not one (an id that is not valid, an in-sync member outside the set). */
export function decodeSet (gateway: string, m: string | undefined, i: string | undefined): { members: string[], inSync: string[] } | null {
  const members = m === undefined || m === '' ? [gateway] : m.split(',')
  const inSync = i === undefined || i === '' ? members : i.split(',')
  if (!members.every(isValidId) || !inSync.every(x => members.includes(x)) || !inSync.includes(gateway)) return null
  return { members, inSync: [...inSync] }
}

export function encodeLocationEvent (volume: string, block: string, epochValue: number, loc: BlockLocation | null): string {
  return JSON.stringify(loc === null
    ? { v: WIRE_VERSION, k: 'loc', vol: volume, blk: block, e: epochValue }
    : { v: WIRE_VERSION, k: 'loc', vol: volume, blk: block, e: epochValue, loc: toWire(loc) })
}

export function encodeMessageEvent (channel: string, message: unknown): string {
  try {
    return JSON.stringify({ v: WIRE_VERSION, k: 'msg', ch: channel, m: message })
  } catch (err) {
    throw invalid(`message is not JSON-serialisable: ${(err as Error).message}`)
  }
}

/** null for anything that is not a well-formed notification (the caller counts it). */
export function decodeEvent (raw: string): StoreEvent | null {
  let parsed: unknown
  try { parsed = JSON.parse(raw) } catch { return null }
  const r = wireEvent.safeParse(parsed)
  if (!r.success) return null
  const w = r.data
  if (w.k === 'msg') return { type: 'message', channel: w.ch, message: w.m }
  if (w.loc !== undefined && w.loc.e !== w.e) return null
  if (w.loc === undefined) return { type: 'location', volume: w.vol, block: w.blk, epoch: w.e, location: null }
  const location = fromWire(w.loc)
  if (location === null) return null
  return { type: 'location', volume: w.vol, block: w.blk, epoch: w.e, location }
}

// ───────────────────────────── stored location ─────────────────────────────

/** A location hash as stored: a live location, a tombstone, or nothing. */
export type StoredLocation =
  | { kind: 'live', location: BlockLocation }
  | { kind: 'tombstone', epoch: number }
  | { kind: 'absent' }

/** From a flat [field, value, …] reply (what our Lua scripts return) to a record. */
export function pairsToRecord (flat: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (!Array.isArray(flat)) return out
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1])
  return out
}

function int (s: string | undefined, what: string): number {
  const n = Number(s)
  if (s === undefined || !Number.isSafeInteger(n) || n < 0) throw corrupt(`stored ${what} is not an integer: ${String(s)}`)
  return n
}

export function decodeStoredLocation (h: Record<string, string>): StoredLocation {
  if (h.e === undefined) return { kind: 'absent' }
  if (h.d !== undefined) return { kind: 'tombstone', epoch: int(h.e, 'epoch') }
  const p = h.p as LocationPhase
  if (h.g === undefined || !LOCATION_PHASES.includes(p)) throw corrupt('stored location is missing its gateway or phase')
  const set = decodeSet(h.g, h.m, h.i)
  if (set === null) throw corrupt('stored location has a replica set that does not decode')
  const loc: BlockLocation = {
    gateway: h.g,
    ...set,
    epoch: int(h.e, 'epoch'),
    version: h.v ?? null,
    phase: p,
    updatedAt: Number(h.u ?? 0),
    fence: h.f === undefined ? 0 : int(h.f, 'fence')
  }
  if (h.t !== undefined) loc.target = h.t
  return { kind: 'live', location: loc }
}

export function liveLocation (h: Record<string, string>): BlockLocation | null {
  const s = decodeStoredLocation(h)
  return s.kind === 'live' ? s.location : null
}

// ───────────────────────────── history ─────────────────────────────

const historyWire = z.object({
  e: z.number().int().nonnegative(),
  g: z.string().optional(),
  v: z.string().optional(),
  p: phase.optional(),
  u: time,
  r: z.string()
})

/** History entries are JSON objects `{e,g,v,p,u,r}` (written by Lua with cjson, or by memory). */
export function encodeHistory (h: HistoryEntry): string {
  const w: Record<string, unknown> = { e: h.epoch, g: h.gateway, p: h.phase, u: h.at, r: h.reason }
  if (h.version !== null) w.v = h.version
  return JSON.stringify(w)
}

export function decodeHistory (raw: string): HistoryEntry | null {
  let parsed: unknown
  try { parsed = JSON.parse(raw) } catch { return null }
  const r = historyWire.safeParse(parsed)
  if (!r.success) return null
  const w = r.data
  return { epoch: w.e, gateway: w.g ?? '', version: w.v ?? null, phase: w.p ?? 'stable', at: w.u, reason: w.r }
}

// ───────────────────────────── migrations ─────────────────────────────

export const migrationSchema = z.object({
  id,
  volume: id,
  block: id,
  from: id,
  to: id,
  phase: z.enum(MIGRATION_PHASES as [string, ...string[]]),
  bytes: z.number().nonnegative(),
  totalBytes: z.number().nonnegative().nullable(),
  startedAt: time,
  endedAt: time.nullable(),
  result: z.enum(MIGRATION_RESULTS as [string, ...string[]]).nullable(),
  error: z.string().nullable(),
  reason: z.string().nullable(),
  updatedAt: time
})

/** Stored as a hash with one JSON value per field, so a patch is a plain HSET. */
export function encodeMigrationFields (fields: Partial<MigrationRecord>): string[] {
  const out: string[] = []
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue
    out.push(k, JSON.stringify(v))
  }
  return out
}

export function decodeMigration (h: Record<string, string>): MigrationRecord {
  const obj: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(h)) {
    try { obj[k] = JSON.parse(v) } catch { throw corrupt(`stored migration field ${k} is not JSON`) }
  }
  const r = migrationSchema.safeParse(obj)
  if (!r.success) throw corrupt(`stored migration does not decode: ${r.error.issues[0]?.message ?? ''}`)
  return r.data as MigrationRecord
}

/** Newest first by start time (ties: id descending), at most `limit`: the order both backends list in. */
export function sortMigrations (records: MigrationRecord[], limit: number): MigrationRecord[] {
  return records.sort((a, b) => b.startedAt - a.startedAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)).slice(0, limit)
}

/** A new generation id: random, so a store that restarts empty never gets an id it had before. */
export function newGenerationId (): string {
  return randomBytes(9).toString('base64url')
}

/** The generation marker as stored (JSON); null when it is not a marker (corrupt: the caller decides). */
export function decodeGeneration (raw: string): StoreGeneration | null {
  let v: unknown
  try { v = JSON.parse(raw) } catch { return null }
  const g = v as Partial<StoreGeneration> | null
  if (g === null || typeof g !== 'object' || typeof g.id !== 'string' || typeof g.createdAt !== 'number' || typeof g.rebuilding !== 'boolean') return null
  return { id: g.id, createdAt: g.createdAt, rebuilding: g.rebuilding, rebuiltAt: typeof g.rebuiltAt === 'number' ? g.rebuiltAt : null }
}

/** A stored drain record, or null when the text is not one (a hand edit, a foreign writer). */
export function decodeDrain (raw: string): DrainRecord | null {
  let v: unknown
  try { v = JSON.parse(raw) } catch { return null }
  const d = v as Partial<DrainRecord> | null
  if (d === null || typeof d !== 'object' || typeof d.gateway !== 'string' || (d.cause !== 'operator' && d.cause !== 'health') ||
    (d.to !== null && typeof d.to !== 'string') || typeof d.startedAt !== 'number') return null
  return { gateway: d.gateway, cause: d.cause, to: d.to ?? null, startedAt: d.startedAt }
}
