import { groupDeltas } from './affinity.js'
import type { StoreBackend } from './backend.js'
import { encodeMessageEvent } from './codec.js'
import { closed, corrupt, invalid, tooLarge } from './errors.js'
import { checkChannel, checkEpoch, checkHolder, checkId, checkText, checkTime, checkToken, checkTtl } from './keys.js'
import type { StateMetrics } from './metrics.js'
import type {
  AccessDelta, AffinityEntry, BlockLocation, CasResult, DeleteResult, DrainRecord, HistoryEntry, LeaseGrant, LeaseInfo,
  LocatedBlock, LocationInput, MigrationInput, MigrationPatch, MigrationQuery, MigrationRecord, Session, SessionInput,
  StateStore, StoreEventHandler, StoreGeneration, StoreStatus, TelemetryQuery, TelemetrySample, VersionResult, WriteOptions
} from './types.js'
import {
  VERSION_MAX, checkLimit, checkLocationInput, checkMigrationInput, checkMigrationPatch, checkSamples, checkSessionInput,
  checkWriteOptions
} from './validate.js'

/** Most migrations one `listMigrations` returns. */
const LIST_MIGRATIONS_MAX = 10_000
const GENERATION_ID_MAX = 64
/** Largest document (putDocument): a placement table of ~20,000 volumes. */
export const DOCUMENT_MAX_BYTES = 4 * 1024 * 1024

/**
 * The one `StateStore` in front of every backend (see backend.ts). Every call, on every backend,
 * goes the same way:
 *
 * 1. refused with FERRY_STATE_CLOSED once `close()` was called (not counted: the store is gone);
 * 2. every argument checked before the backend sees it: a bad id, epoch, TTL or oversized value is
 *    FERRY_STATE_INVALID / FERRY_STATE_TOO_LARGE and never a key, a half-applied write or a Lua error;
 * 3. counted once in `ferry_state_operations_total{op,result}`: `ok` (and its duration),
 *    `unavailable` (FERRY_STATE_UNAVAILABLE), or `error` — a refused argument included, so a caller
 *    sending nonsense shows in the metrics the same way whichever backend it talks to.
 *
 * A scan counts as one call, timed by the time spent waiting on the backend (not on the consumer).
 */
export class CheckedStore implements StateStore {
  readonly backend: string
  private isClosed = false

  constructor (protected readonly storage: StoreBackend, private readonly metrics: StateMetrics) {
    this.backend = storage.name
  }

  private async call<T> (op: string, run: () => Promise<T>): Promise<T> {
    if (this.isClosed) throw closed()
    const start = process.hrtime.bigint()
    try {
      const value = await run()
      this.metrics.operations.inc({ op, result: 'ok' })
      this.metrics.duration.observe({ op }, seconds(process.hrtime.bigint() - start))
      return value
    } catch (err) {
      this.count(op, err)
      throw err
    }
  }

  private count (op: string, err: unknown): void {
    this.metrics.operations.inc({ op, result: (err as { code?: unknown } | null)?.code === 'FERRY_STATE_UNAVAILABLE' ? 'unavailable' : 'error' })
  }

  private async * scan<T> (op: string, open: () => AsyncIterable<T>): AsyncGenerator<T> {
    if (this.isClosed) throw closed()
    const items = open()[Symbol.asyncIterator]()
    let waited = 0n
    let failed = false
    try {
      for (;;) {
        const start = process.hrtime.bigint()
        let next: IteratorResult<T>
        try {
          next = await items.next()
        } catch (err) {
          failed = true
          this.count(op, err)
          throw err
        }
        waited += process.hrtime.bigint() - start
        if (next.done === true) break
        yield next.value
      }
    } finally {
      if (!failed) {
        this.metrics.operations.inc({ op, result: 'ok' })
        this.metrics.duration.observe({ op }, seconds(waited))
        // A consumer that stops early must stop the backend's scan too.
        await items.return?.()
      }
    }
  }

  // ── locations

  getLocation (volume: string, block: string): Promise<BlockLocation | null> {
    return this.call('getLocation', () => this.storage.getLocation(checkId('volume', volume), checkId('block', block)))
  }

  casLocation (volume: string, block: string, expectedEpoch: number, next: LocationInput, options?: WriteOptions): Promise<CasResult> {
    return this.call('casLocation', () => this.storage.casLocation(
      checkId('volume', volume), checkId('block', block), checkEpoch(expectedEpoch),
      checkLocationInput(next), checkWriteOptions(options, 'cas')))
  }

  setVersion (volume: string, block: string, epoch: number, version: string): Promise<VersionResult> {
    return this.call('setVersion', () => this.storage.setVersion(
      checkId('volume', volume), checkId('block', block), checkEpoch(epoch), checkText('version', version, VERSION_MAX)))
  }

  deleteLocation (volume: string, block: string, expectedEpoch?: number, options?: WriteOptions): Promise<DeleteResult> {
    return this.call('deleteLocation', () => this.storage.deleteLocation(
      checkId('volume', volume), checkId('block', block),
      expectedEpoch === undefined ? undefined : checkEpoch(expectedEpoch), checkWriteOptions(options, 'delete')))
  }

  scanLocations (): AsyncIterable<LocatedBlock> {
    return this.scan('scanLocations', () => this.storage.scanLocations())
  }

  blockHistory (volume: string, block: string): Promise<HistoryEntry[]> {
    return this.call('blockHistory', () => this.storage.blockHistory(checkId('volume', volume), checkId('block', block)))
  }

  // ── affinity

  mergeAccess (deltas: readonly AccessDelta[]): Promise<void> {
    return this.call('mergeAccess', () => this.storage.mergeAccess(groupDeltas(deltas, this.storage.limits.affinity.halfLifeMs)))
  }

  getAffinity (volume: string, block: string): Promise<AffinityEntry | null> {
    return this.call('getAffinity', () => this.storage.getAffinity(checkId('volume', volume), checkId('block', block)))
  }

  scanAffinity (): AsyncIterable<AffinityEntry> {
    return this.scan('scanAffinity', () => this.storage.scanAffinity())
  }

  // ── sessions

  getSession (id: string): Promise<Session | null> {
    return this.call('getSession', () => this.storage.getSession(checkId('session', id)))
  }

  putSession (id: string, session: SessionInput, ttlMs: number): Promise<Session> {
    return this.call('putSession', () => {
      checkId('session', id)
      checkTtl(ttlMs)
      const { bindings, stateJson } = checkSessionInput(session, this.storage.limits.sessions.maxBytes)
      return this.storage.putSession(id, bindings, stateJson, ttlMs)
    })
  }

  bindSession (id: string, volume: string, gateway: string, ttlMs: number): Promise<void> {
    return this.call('bindSession', () => this.storage.bindSession(
      checkId('session', id), checkId('volume', volume), checkId('gateway', gateway), checkTtl(ttlMs)))
  }

  touchSession (id: string, ttlMs: number): Promise<boolean> {
    return this.call('touchSession', () => this.storage.touchSession(checkId('session', id), checkTtl(ttlMs)))
  }

  // ── telemetry

  appendTelemetry (gateway: string, samples: readonly TelemetrySample[]): Promise<void> {
    return this.call('appendTelemetry', () => this.storage.appendTelemetry(checkId('gateway', gateway), checkSamples(samples)))
  }

  readTelemetry (gateway: string, query: TelemetryQuery = {}): Promise<TelemetrySample[]> {
    const { maxSamples } = this.storage.limits.telemetry
    return this.call('readTelemetry', () => this.storage.readTelemetry(
      checkId('gateway', gateway), query.since ?? 0, checkLimit(query.limit, maxSamples, maxSamples)))
  }

  // ── migrations

  appendMigration (record: MigrationInput): Promise<MigrationRecord> {
    return this.call('appendMigration', () => this.storage.appendMigration(checkMigrationInput(record, Date.now())))
  }

  updateMigration (id: string, patch: MigrationPatch): Promise<MigrationRecord | null> {
    return this.call('updateMigration', () => this.storage.updateMigration(checkId('migration', id), checkMigrationPatch(patch, Date.now())))
  }

  getMigration (id: string): Promise<MigrationRecord | null> {
    return this.call('getMigration', () => this.storage.getMigration(checkId('migration', id)))
  }

  listMigrations (query: MigrationQuery = {}): Promise<MigrationRecord[]> {
    return this.call('listMigrations', () => this.storage.listMigrations(checkLimit(query.limit, 100, LIST_MIGRATIONS_MAX), query.active === true))
  }

  // ── lease

  acquireLease (name: string, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    return this.call('acquireLease', () => this.storage.acquireLease(checkId('lease', name), checkHolder(holder), checkTtl(ttlMs)))
  }

  renewLease (name: string, holder: string, token: number, ttlMs: number): Promise<boolean> {
    return this.call('renewLease', () => this.storage.renewLease(checkId('lease', name), checkHolder(holder), checkToken(token), checkTtl(ttlMs)))
  }

  releaseLease (name: string, holder: string, token: number): Promise<boolean> {
    return this.call('releaseLease', () => this.storage.releaseLease(checkId('lease', name), checkHolder(holder), checkToken(token)))
  }

  getLease (name: string): Promise<LeaseInfo | null> {
    return this.call('getLease', () => this.storage.getLease(checkId('lease', name)))
  }

  // ── drains

  putDrain (drain: DrainRecord): Promise<void> {
    return this.call('putDrain', () => this.storage.putDrain(checkDrain(drain)))
  }

  deleteDrain (gateway: string): Promise<boolean> {
    return this.call('deleteDrain', () => this.storage.deleteDrain(checkId('gateway', gateway)))
  }

  listDrains (): Promise<DrainRecord[]> {
    return this.call('listDrains', () => this.storage.listDrains())
  }

  // ── generation

  generation (): Promise<StoreGeneration> {
    return this.call('generation', () => this.storage.generation())
  }

  finishRebuild (id: string): Promise<boolean> {
    return this.call('finishRebuild', () => this.storage.finishRebuild(checkText('generation id', id, GENERATION_ID_MAX)))
  }

  // ── documents

  getDocument (name: string): Promise<unknown> {
    return this.call('getDocument', async () => {
      const raw = await this.storage.getDocument(checkChannel(name))
      if (raw === null) return null
      try {
        return JSON.parse(raw) as unknown
      } catch {
        throw corrupt(`document ${name} is not JSON: ${raw.slice(0, 80)}`)
      }
    })
  }

  putDocument (name: string, value: unknown): Promise<void> {
    return this.call('putDocument', () => {
      const n = checkChannel(name)
      let json: string | undefined
      try { json = JSON.stringify(value) } catch { json = undefined }
      if (json === undefined) throw invalid(`document ${n} is not JSON-serialisable`)
      if (Buffer.byteLength(json) > DOCUMENT_MAX_BYTES) throw tooLarge(`document ${n} over ${DOCUMENT_MAX_BYTES} bytes`)
      return this.storage.putDocument(n, json)
    })
  }

  // ── events, health

  subscribe (handler: StoreEventHandler): () => void {
    return this.storage.subscribe(handler)
  }

  publish (channel: string, message: unknown): Promise<void> {
    return this.call('publish', () => {
      const raw = encodeMessageEvent(checkChannel(channel), message)
      const max = this.storage.limits.maxMessageBytes
      if (Buffer.byteLength(raw) > max) throw tooLarge(`message over ${max} bytes`)
      return this.storage.publish(raw)
    })
  }

  status (): StoreStatus {
    return this.storage.status()
  }

  async close (): Promise<void> {
    if (this.isClosed) return
    this.isClosed = true
    await this.storage.close()
  }
}

function seconds (ns: bigint): number {
  return Number(ns) / 1e9
}

/** A drain with exactly its four fields, each checked (a stored record is read back as written). */
function checkDrain (d: DrainRecord): DrainRecord {
  if (d === null || typeof d !== 'object') throw invalid('a drain must be an object')
  if (d.cause !== 'operator' && d.cause !== 'health') throw invalid(`drain cause must be "operator" or "health", got ${String(d.cause)}`)
  return {
    gateway: checkId('gateway', d.gateway),
    cause: d.cause,
    to: d.to === null ? null : checkId('gateway', d.to),
    startedAt: checkTime('startedAt', d.startedAt)
  }
}
