import { invalid, tooLarge } from './errors.js'
import { checkCount, checkId, checkText, checkTime, checkToken } from './keys.js'
import {
  LOCATION_PHASES, MIGRATION_PHASES, MIGRATION_RESULTS,
  type Fence, type LocationInput, type LocationPhase, type MigrationInput, type MigrationPatch,
  type MigrationRecord, type SessionInput, type TelemetrySample, type WriteOptions
} from './types.js'

/**
 * Checks of caller input, run by the checked store (checked.ts) in front of every backend, so the
 * memory store refuses exactly what the Redis store refuses. Everything is validated before any
 * I/O: a bad argument is a FERRY_STATE_INVALID error, never a half-applied write or a Lua error.
 */

export const VERSION_MAX = 1024
export const REASON_MAX = 200
export const ERROR_MAX = 4096
/** Volumes one session may be bound to (bindSession refuses a new one past it). */
export const MAX_BINDINGS = 1024

/** Members one replica set may have. */
export const MAX_MEMBERS = 16

export interface CheckedLocation {
  gateway: string
  members: string[]
  inSync: string[]
  phase: LocationPhase
  target: string | undefined
  /** undefined: keep the current version. */
  version: string | null | undefined
}

export function checkLocationInput (next: LocationInput): CheckedLocation {
  if (next === null || typeof next !== 'object') throw invalid('location must be an object')
  const gateway = checkId('gateway', next.gateway)
  const phase = next.phase ?? 'stable'
  if (!LOCATION_PHASES.includes(phase)) throw invalid(`invalid phase: ${String(phase)}`)
  const target = next.target === undefined ? undefined : checkId('target gateway', next.target)
  if (target === gateway) throw invalid('target must differ from gateway')
  if ((phase === 'copying' || phase === 'cutover') && target === undefined) throw invalid(`phase ${phase} needs a target`)
  const version = next.version === undefined || next.version === null ? next.version : checkText('version', next.version, VERSION_MAX)
  const members = next.members === undefined ? [gateway] : checkMembers('members', next.members)
  const inSync = next.inSync === undefined ? members : checkMembers('inSync', next.inSync)
  if (!members.includes(gateway)) throw invalid('members must contain gateway')
  if (!inSync.includes(gateway)) throw invalid('inSync must contain gateway')
  for (const m of inSync) if (!members.includes(m)) throw invalid(`inSync member ${m} is not in members`)
  return { gateway, members, inSync, phase, target, version }
}

function checkMembers (what: string, list: unknown): string[] {
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_MEMBERS) throw invalid(`${what} must be a list of 1 to ${MAX_MEMBERS} gateways`)
  const out = list.map(m => checkId(what, m))
  if (new Set(out).size !== out.length) throw invalid(`${what} has a gateway twice`)
  return out
}

export interface CheckedWriteOptions {
  fence: Fence | undefined
  reason: string
}

export function checkWriteOptions (options: WriteOptions | undefined, defaultReason: string): CheckedWriteOptions {
  const fence = options?.fence === undefined
    ? undefined
    : { lease: checkId('lease', options.fence.lease), token: checkToken(options.fence.token) }
  const reason = options?.reason === undefined ? defaultReason : checkText('reason', options.reason, REASON_MAX)
  return { fence, reason }
}

/** Bindings checked, state serialised once (its size is the bound, and the stored form). */
export function checkSessionInput (session: SessionInput, maxBytes: number): { bindings: Record<string, string>, stateJson: string } {
  if (session === null || typeof session !== 'object') throw invalid('session must be an object')
  const bindings: Record<string, string> = {}
  const b = session.bindings ?? {}
  if (typeof b !== 'object' || Array.isArray(b)) throw invalid('session bindings must be an object')
  let size = 0
  if (Object.keys(b).length > MAX_BINDINGS) throw tooLarge(`a session binds at most ${MAX_BINDINGS} volumes`)
  for (const [volume, gateway] of Object.entries(b)) {
    bindings[checkId('volume', volume)] = checkId('gateway', gateway)
    size += volume.length + gateway.length + 8
  }
  const state = session.state ?? {}
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw invalid('session state must be an object')
  let stateJson: string
  try { stateJson = JSON.stringify(state) } catch (err) { throw invalid(`session state is not JSON-serialisable: ${(err as Error).message}`) }
  size += Buffer.byteLength(stateJson)
  if (size > maxBytes) throw tooLarge(`session is ${size} bytes, over the ${maxBytes}-byte bound`)
  return { bindings, stateJson }
}

const METRIC = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/
export const SAMPLES_PER_APPEND_MAX = 10_000

export function checkSamples (samples: readonly TelemetrySample[]): TelemetrySample[] {
  if (!Array.isArray(samples)) throw invalid('samples must be an array')
  if (samples.length > SAMPLES_PER_APPEND_MAX) throw invalid(`at most ${SAMPLES_PER_APPEND_MAX} samples per append`)
  return samples.map(s => {
    if (s === null || typeof s !== 'object') throw invalid('a sample must be an object')
    const out: TelemetrySample = { at: checkTime('sample time', s.at) }
    let n = 0
    for (const [k, v] of Object.entries(s)) {
      if (k === 'at') continue
      if (!METRIC.test(k)) throw invalid(`invalid metric name: ${JSON.stringify(k)}`)
      if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(`metric ${k} must be a finite number`)
      if (++n > 64) throw invalid('at most 64 metrics per sample')
      out[k] = v
    }
    return out
  })
}

function checkMigrationPhase (p: unknown): MigrationRecord['phase'] {
  if (!MIGRATION_PHASES.includes(p as MigrationRecord['phase'])) throw invalid(`invalid migration phase: ${String(p)}`)
  return p as MigrationRecord['phase']
}

function checkMigrationResult (r: unknown): MigrationRecord['result'] {
  if (r === null) return null
  if (!MIGRATION_RESULTS.includes(r as NonNullable<MigrationRecord['result']>)) throw invalid(`invalid migration result: ${String(r)}`)
  return r as MigrationRecord['result']
}

function checkError (e: unknown): string | null {
  if (e === null || e === undefined) return null
  if (typeof e !== 'string' || e.length > ERROR_MAX) throw invalid('migration error must be a string of at most 4096 characters')
  return e
}

export function checkMigrationInput (m: MigrationInput, now: number): MigrationRecord {
  if (m === null || typeof m !== 'object') throw invalid('migration must be an object')
  const result = m.result === undefined ? null : checkMigrationResult(m.result)
  return {
    id: checkId('migration', m.id),
    volume: checkId('volume', m.volume),
    block: checkId('block', m.block),
    from: checkId('gateway', m.from),
    to: checkId('gateway', m.to),
    phase: m.phase === undefined ? 'queued' : checkMigrationPhase(m.phase),
    bytes: m.bytes === undefined ? 0 : checkCount('bytes', m.bytes),
    totalBytes: m.totalBytes === undefined || m.totalBytes === null ? null : checkCount('totalBytes', m.totalBytes),
    startedAt: m.startedAt === undefined ? now : checkTime('startedAt', m.startedAt),
    endedAt: m.endedAt === undefined || m.endedAt === null ? (result === null ? null : now) : checkTime('endedAt', m.endedAt),
    result,
    error: checkError(m.error),
    reason: m.reason === undefined || m.reason === null ? null : checkText('reason', m.reason, REASON_MAX),
    updatedAt: now
  }
}

/** The fields to write; a patch that sets `result` also sets `endedAt` (now) unless given. */
export function checkMigrationPatch (p: MigrationPatch, now: number): Partial<MigrationRecord> {
  if (p === null || typeof p !== 'object') throw invalid('migration patch must be an object')
  const out: Partial<MigrationRecord> = { updatedAt: now }
  if (p.phase !== undefined) out.phase = checkMigrationPhase(p.phase)
  if (p.bytes !== undefined) out.bytes = checkCount('bytes', p.bytes)
  if (p.totalBytes !== undefined) out.totalBytes = p.totalBytes === null ? null : checkCount('totalBytes', p.totalBytes)
  if (p.to !== undefined) out.to = checkId('gateway', p.to)
  if (p.error !== undefined) out.error = checkError(p.error)
  if (p.result !== undefined && p.result !== null) {
    out.result = checkMigrationResult(p.result)
    out.endedAt = p.endedAt === undefined || p.endedAt === null ? now : checkTime('endedAt', p.endedAt)
  } else if (p.endedAt !== undefined) {
    out.endedAt = p.endedAt === null ? null : checkTime('endedAt', p.endedAt)
  }
  return out
}

export function checkLimit (limit: unknown, def: number, max: number): number {
  if (limit === undefined) return def
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) throw invalid(`invalid limit: ${String(limit)}`)
  return Math.min(limit, max)
}
