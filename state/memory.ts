import type { Registry } from 'prom-client'
import { blockKey } from '../lib/ids.js'
import { silentLogger, type Logger } from '../lib/log.js'
import { mergeScores, type BlockDelta } from './affinity.js'
import type { StoreBackend } from './backend.js'
import { CheckedStore } from './checked.js'
import { encodeLocationEvent, newGenerationId, sortMigrations } from './codec.js'
import { parseStateConfig, type StateConfig, type StateConfigInput } from './config.js'
import { conflict, tooLarge } from './errors.js'
import { EventHub } from './events.js'
import { StateMetrics } from './metrics.js'
import type {
  AffinityEntry, BlockLocation, CasResult, DeleteResult, DrainRecord, HistoryEntry, LeaseGrant, LeaseInfo, LocatedBlock,
  MigrationRecord, Session, StoreEventHandler, StoreGeneration, StoreStatus, TelemetrySample, VersionResult
} from './types.js'
import { MAX_BINDINGS, type CheckedLocation, type CheckedWriteOptions } from './validate.js'

/**
 * The in-memory backend: the default, what the sandbox and single-process set-ups use. Same
 * semantics as Redis, including TTLs, tombstones, fencing and notifications.
 *
 * `MemoryBackend` is the "server" (the data and the event bus); each `MemoryConnection` is a
 * "connection" to it with its own subscribers, and a `MemoryStore` is the checked store
 * (checked.ts) over one connection. Several stores over one backend behave like several proxies
 * over one Redis, which is how the contract tests exercise notifications.
 * Notifications travel as the same JSON strings as on Redis and are delivered on the microtask
 * queue, in publish order, to every store (including the publisher's), before the publishing
 * call's promise settles for its caller.
 */

type Limits = Pick<StateConfig, 'affinity' | 'telemetry' | 'history' | 'migrations' | 'sessions' | 'tombstoneTtlMs' | 'maxMessageBytes'>

interface LocSlot {
  volume: string
  block: string
  /** null: tombstone (the block was deleted; `epoch` is kept so it never goes backwards). */
  location: BlockLocation | null
  epoch: number
  fence: number
  /** Tombstones only. */
  expiresAt: number
}

interface HistSlot { entries: HistoryEntry[], expiresAt: number }

interface AffSlot {
  volume: string
  block: string
  scores: Record<string, number>
  scoredAt: number
  reads: number
  writes: number
  lastAccess: number
  expiresAt: number
}

interface SessSlot { bindings: Record<string, string>, stateJson: string, updatedAt: number, expiresAt: number }
interface TelSlot { samples: Array<{ json: string, sample: TelemetrySample }>, expiresAt: number }
interface LeaseSlot { holder: string, token: number, expiresAt: number }

const SWEEP_INTERVAL_MS = 1000

export class MemoryBackend {
  readonly limits: Limits
  private readonly locations = new Map<string, LocSlot>()
  private readonly history = new Map<string, HistSlot>()
  private readonly affinity = new Map<string, AffSlot>()
  private readonly sessions = new Map<string, SessSlot>()
  private readonly telemetry = new Map<string, TelSlot>()
  private readonly migrations = new Map<string, MigrationRecord>()
  private readonly activeMigrations = new Set<string>()
  /** Finished migration ids, oldest end first (what gets trimmed first). */
  private doneMigrations: string[] = []
  private readonly leases = new Map<string, LeaseSlot>()
  private readonly leaseSeq = new Map<string, number>()
  private readonly drains = new Map<string, DrainRecord>()
  private generationMarker: StoreGeneration | null = null
  readonly documents = new Map<string, string>()
  private readonly connections = new Set<MemoryConnection>()
  private sweeper: NodeJS.Timeout | null = null

  /** Takes the `state:` section (or part of it); only the bounds and TTLs matter here. */
  constructor (config: StateConfigInput | StateConfig = {}) {
    this.limits = parseStateConfig({ ...config, backend: 'memory' })
  }

  attach (connection: MemoryConnection): void {
    this.connections.add(connection)
    if (this.sweeper === null) {
      // Lazy expiry alone would keep cold entries forever if nobody reads them again.
      this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_INTERVAL_MS)
      this.sweeper.unref()
    }
  }

  detach (connection: MemoryConnection): void {
    this.connections.delete(connection)
    if (this.connections.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper)
      this.sweeper = null
    }
  }

  /** Raw delivery to every attached connection, in order (tests inject malformed messages here). */
  publishRaw (raw: string): void {
    // Checked again on delivery: a connection closed meanwhile gets nothing more.
    for (const c of this.connections) queueMicrotask(() => { if (this.connections.has(c)) c.deliver(raw) })
  }

  sweep (now: number): void {
    for (const [k, s] of this.locations) if (s.location === null && s.expiresAt <= now) this.locations.delete(k)
    for (const [k, s] of this.history) if (s.expiresAt <= now) this.history.delete(k)
    for (const [k, s] of this.affinity) if (s.expiresAt <= now) this.affinity.delete(k)
    for (const [k, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(k)
    for (const [k, s] of this.telemetry) if (s.expiresAt <= now) this.telemetry.delete(k)
    for (const [k, s] of this.leases) if (s.expiresAt <= now) this.leases.delete(k)
  }

  // ── locations ──

  private locSlot (key: string, now: number): LocSlot | undefined {
    const s = this.locations.get(key)
    if (s !== undefined && s.location === null && s.expiresAt <= now) {
      this.locations.delete(key)
      return undefined
    }
    return s
  }

  getLocation (volume: string, block: string, now: number): BlockLocation | null {
    const loc = this.locSlot(blockKey(volume, block), now)?.location
    return loc ? copyLocation(loc) : null
  }

  private leaseHolds (fence: { lease: string, token: number }, now: number): boolean {
    const l = this.lease(fence.lease, now)
    return l !== undefined && l.token === fence.token
  }

  cas (volume: string, block: string, expected: number, next: CheckedLocation, opts: CheckedWriteOptions, now: number): CasResult {
    const key = blockKey(volume, block)
    const slot = this.locSlot(key, now)
    const current = slot?.location ? copyLocation(slot.location) : null
    // Fence first: a deposed leader should learn that it is deposed, not retry on an epoch.
    if (opts.fence !== undefined && (!this.leaseHolds(opts.fence, now) || (slot?.fence ?? 0) > opts.fence.token)) {
      return { ok: false, reason: 'fenced', current }
    }
    if ((current?.epoch ?? 0) !== expected) return { ok: false, reason: 'epoch', current }
    const epoch = (slot?.epoch ?? 0) + 1
    const fence = Math.max(slot?.fence ?? 0, opts.fence?.token ?? 0)
    const location: BlockLocation = {
      gateway: next.gateway,
      members: [...next.members],
      inSync: [...next.inSync],
      epoch,
      version: next.version === undefined ? (current?.version ?? null) : next.version,
      phase: next.phase,
      updatedAt: now,
      fence
    }
    if (next.target !== undefined) location.target = next.target
    this.locations.set(key, { volume, block, location, epoch, fence, expiresAt: Infinity })
    this.appendHistory(key, { epoch, gateway: location.gateway, version: location.version, phase: location.phase, at: now, reason: opts.reason }, Infinity)
    this.publishRaw(encodeLocationEvent(volume, block, epoch, location))
    return { ok: true, location: copyLocation(location) }
  }

  setVersion (volume: string, block: string, epoch: number, version: string, now: number): VersionResult {
    const key = blockKey(volume, block)
    const loc = this.locSlot(key, now)?.location ?? null
    if (loc === null || loc.epoch !== epoch) return { ok: false, current: loc ? copyLocation(loc) : null }
    if (loc.version !== version) {
      loc.version = version
      this.appendHistory(key, { epoch, gateway: loc.gateway, version, phase: loc.phase, at: now, reason: 'write' }, Infinity)
    }
    return { ok: true, location: copyLocation(loc) }
  }

  deleteLocation (volume: string, block: string, expected: number | undefined, opts: CheckedWriteOptions, now: number): DeleteResult {
    const key = blockKey(volume, block)
    const slot = this.locSlot(key, now)
    const current = slot?.location ? copyLocation(slot.location) : null
    if (opts.fence !== undefined && (!this.leaseHolds(opts.fence, now) || (slot?.fence ?? 0) > opts.fence.token)) {
      return { ok: false, reason: 'fenced', current }
    }
    if (expected !== undefined && (current?.epoch ?? 0) !== expected) return { ok: false, reason: 'epoch', current }
    if (slot === undefined || current === null) return { ok: true, deleted: false }
    const epoch = slot.epoch + 1
    const ttl = this.limits.tombstoneTtlMs
    this.locations.set(key, { volume, block, location: null, epoch, fence: Math.max(slot.fence, opts.fence?.token ?? 0), expiresAt: now + ttl })
    this.appendHistory(key, { epoch, gateway: current.gateway, version: current.version, phase: current.phase, at: now, reason: opts.reason }, now + ttl)
    this.publishRaw(encodeLocationEvent(volume, block, epoch, null))
    return { ok: true, deleted: true }
  }

  /** Live locations at the time of the call (a snapshot, so concurrent writes cannot break iteration). */
  liveLocations (now: number): LocatedBlock[] {
    const out: LocatedBlock[] = []
    for (const [key, s] of this.locations) {
      if (this.locSlot(key, now)?.location) out.push({ volume: s.volume, block: s.block, location: copyLocation(s.location!) })
    }
    return out
  }

  private appendHistory (key: string, entry: HistoryEntry, expiresAt: number): void {
    let h = this.history.get(key)
    if (h === undefined) this.history.set(key, h = { entries: [], expiresAt })
    h.entries.push(entry)
    if (h.entries.length > this.limits.history.limit) h.entries.splice(0, h.entries.length - this.limits.history.limit)
    h.expiresAt = expiresAt
  }

  blockHistory (volume: string, block: string, now: number): HistoryEntry[] {
    const key = blockKey(volume, block)
    const h = this.history.get(key)
    if (h === undefined) return []
    if (h.expiresAt <= now) { this.history.delete(key); return [] }
    return h.entries.map(e => ({ ...e }))
  }

  // ── affinity ──

  mergeAccess (blocks: readonly BlockDelta[], now: number): void {
    const { halfLifeMs, ttlMs } = this.limits.affinity
    for (const g of blocks) {
      const key = blockKey(g.volume, g.block)
      let a = this.affSlot(key, now)
      if (a === undefined) {
        a = { volume: g.volume, block: g.block, scores: {}, scoredAt: g.at, reads: 0, writes: 0, lastAccess: 0, expiresAt: 0 }
        this.affinity.set(key, a)
      }
      mergeScores(a, g.weights, g.at, halfLifeMs)
      a.reads += g.reads
      a.writes += g.writes
      a.lastAccess = Math.max(a.lastAccess, g.at)
      a.expiresAt = now + ttlMs
    }
  }

  private affSlot (key: string, now: number): AffSlot | undefined {
    const a = this.affinity.get(key)
    if (a !== undefined && a.expiresAt <= now) { this.affinity.delete(key); return undefined }
    return a
  }

  getAffinity (volume: string, block: string, now: number): AffinityEntry | null {
    const a = this.affSlot(blockKey(volume, block), now)
    return a ? affinityEntry(a) : null
  }

  allAffinity (now: number): AffinityEntry[] {
    const out: AffinityEntry[] = []
    for (const key of [...this.affinity.keys()]) {
      const a = this.affSlot(key, now)
      if (a) out.push(affinityEntry(a))
    }
    return out
  }


  // ── sessions ──

  private sessSlot (id: string, now: number): SessSlot | undefined {
    const s = this.sessions.get(id)
    if (s !== undefined && s.expiresAt <= now) { this.sessions.delete(id); return undefined }
    return s
  }

  getSession (id: string, now: number): Session | null {
    const s = this.sessSlot(id, now)
    return s ? { bindings: { ...s.bindings }, state: JSON.parse(s.stateJson) as Record<string, unknown>, updatedAt: s.updatedAt } : null
  }

  putSession (id: string, bindings: Record<string, string>, stateJson: string, ttlMs: number, now: number): Session {
    this.sessions.set(id, { bindings, stateJson, updatedAt: now, expiresAt: now + ttlMs })
    return this.getSession(id, now)!
  }

  bindSession (id: string, volume: string, gateway: string, ttlMs: number, now: number): void {
    const s = this.sessSlot(id, now)
    if (s) {
      if (!(volume in s.bindings) && Object.keys(s.bindings).length >= MAX_BINDINGS) {
        throw tooLarge(`session ${id} already binds ${MAX_BINDINGS} volumes`)
      }
      s.bindings[volume] = gateway
      s.updatedAt = now
      s.expiresAt = now + ttlMs
    } else {
      this.sessions.set(id, { bindings: { [volume]: gateway }, stateJson: '{}', updatedAt: now, expiresAt: now + ttlMs })
    }
  }

  touchSession (id: string, ttlMs: number, now: number): boolean {
    const s = this.sessSlot(id, now)
    if (!s) return false
    s.expiresAt = now + ttlMs
    return true
  }


  // ── telemetry ──

  appendTelemetry (gateway: string, samples: readonly TelemetrySample[], now: number): void {
    const { maxSamples, maxAgeMs } = this.limits.telemetry
    let t = this.telemetry.get(gateway)
    if (t === undefined || t.expiresAt <= now) this.telemetry.set(gateway, t = { samples: [], expiresAt: 0 })
    for (const sample of samples) {
      const json = JSON.stringify(sample)
      // Like a sorted set: identical samples collapse, order is by time then by encoding.
      if (!t.samples.some(x => x.json === json)) t.samples.push({ json, sample })
    }
    t.samples.sort((a, b) => a.sample.at - b.sample.at || (a.json < b.json ? -1 : a.json > b.json ? 1 : 0))
    const cutoff = now - maxAgeMs
    let drop = 0
    while (drop < t.samples.length && t.samples[drop]!.sample.at < cutoff) drop++
    drop = Math.max(drop, t.samples.length - maxSamples)
    if (drop > 0) t.samples.splice(0, drop)
    t.expiresAt = now + maxAgeMs
  }

  readTelemetry (gateway: string, since: number, limit: number, now: number): TelemetrySample[] {
    const t = this.telemetry.get(gateway)
    if (t === undefined || t.expiresAt <= now) return []
    const min = Math.max(since, now - this.limits.telemetry.maxAgeMs)
    const picked = t.samples.filter(x => x.sample.at >= min)
    return picked.slice(Math.max(0, picked.length - limit)).map(x => ({ ...x.sample }))
  }

  // ── migrations ──

  appendMigration (rec: MigrationRecord): MigrationRecord {
    if (this.migrations.has(rec.id)) throw conflict(`migration ${rec.id} already exists`)
    this.migrations.set(rec.id, rec)
    if (rec.result === null) this.activeMigrations.add(rec.id)
    else this.finishMigration(rec.id)
    return { ...rec }
  }

  updateMigration (id: string, fields: Partial<MigrationRecord>): MigrationRecord | null {
    const rec = this.migrations.get(id)
    if (rec === undefined) return null
    Object.assign(rec, fields)
    if (rec.result !== null && this.activeMigrations.has(id)) {
      this.finishMigration(id)
    } else if (fields.endedAt !== undefined && fields.endedAt !== null && this.doneMigrations.includes(id)) {
      // A corrected end time moves the record in the trim order, as ZADD does on Redis.
      this.doneMigrations.splice(this.doneMigrations.indexOf(id), 1)
      this.insertDone(id)
    }
    return { ...rec }
  }

  /** Ordered like the Redis sorted set: by end time, then by id. */
  private insertDone (id: string): void {
    const end = (x: string): number => this.migrations.get(x)?.endedAt ?? 0
    const e = end(id)
    let i = this.doneMigrations.length
    while (i > 0 && (end(this.doneMigrations[i - 1]!) > e || (end(this.doneMigrations[i - 1]!) === e && this.doneMigrations[i - 1]! > id))) i--
    this.doneMigrations.splice(i, 0, id)
  }

  private finishMigration (id: string): void {
    this.activeMigrations.delete(id)
    this.insertDone(id)
    const excess = this.doneMigrations.length - this.limits.migrations.limit
    if (excess > 0) {
      for (const old of this.doneMigrations.slice(0, excess)) this.migrations.delete(old)
      this.doneMigrations = this.doneMigrations.slice(excess)
    }
  }

  getMigration (id: string): MigrationRecord | null {
    const rec = this.migrations.get(id)
    return rec ? { ...rec } : null
  }

  listMigrations (limit: number, activeOnly: boolean): MigrationRecord[] {
    const ids = [...this.activeMigrations]
    if (!activeOnly) ids.push(...this.doneMigrations.slice(-limit))
    return sortMigrations(ids.map(id => ({ ...this.migrations.get(id)! })), limit)
  }

  // ── lease ──

  private lease (name: string, now: number): LeaseSlot | undefined {
    const l = this.leases.get(name)
    if (l !== undefined && l.expiresAt <= now) { this.leases.delete(name); return undefined }
    return l
  }

  acquireLease (name: string, holder: string, ttlMs: number, now: number): LeaseGrant | null {
    const l = this.lease(name, now)
    if (l !== undefined) {
      if (l.holder !== holder) return null
      l.expiresAt = now + ttlMs
      return { token: l.token }
    }
    const token = nextToken(this.leaseSeq.get(name) ?? 0, now)
    this.leaseSeq.set(name, token)
    this.leases.set(name, { holder, token, expiresAt: now + ttlMs })
    return { token }
  }

  renewLease (name: string, holder: string, token: number, ttlMs: number, now: number): boolean {
    const l = this.lease(name, now)
    if (l === undefined || l.holder !== holder || l.token !== token) return false
    l.expiresAt = now + ttlMs
    return true
  }

  releaseLease (name: string, holder: string, token: number, now: number): boolean {
    const l = this.lease(name, now)
    if (l === undefined || l.holder !== holder || l.token !== token) return false
    this.leases.delete(name)
    return true
  }

  getLease (name: string, now: number): LeaseInfo | null {
    const l = this.lease(name, now)
    return l ? { holder: l.holder, token: l.token, ttlMs: l.expiresAt - now } : null
  }

  // ── drains ──

  putDrain (drain: DrainRecord): void { this.drains.set(drain.gateway, { ...drain }) }
  deleteDrain (gateway: string): boolean { return this.drains.delete(gateway) }
  listDrains (): DrainRecord[] { return [...this.drains.values()].map(d => ({ ...d })) }

  // ── generation ──

  generation (now: number): StoreGeneration {
    this.generationMarker ??= { id: newGenerationId(), createdAt: now, rebuilding: true, rebuiltAt: null }
    return { ...this.generationMarker }
  }

  finishRebuild (id: string, now: number): boolean {
    if (this.generationMarker?.id !== id) return false
    this.generationMarker = { ...this.generationMarker, rebuilding: false, rebuiltAt: this.generationMarker.rebuiltAt ?? now }
    return true
  }
}

/**
 * Tokens are max(previous + 1, now in ms): strictly increasing while the counter survives, and
 * still increasing if it is lost (a Redis restarted without persistence, a restarted sandbox),
 * because the clock has moved past every token handed out before.
 */
export function nextToken (previous: number, nowMs: number): number {
  return Math.max(previous + 1, Math.floor(nowMs))
}

function affinityEntry (a: AffSlot): AffinityEntry {
  return {
    volume: a.volume,
    block: a.block,
    scores: { ...a.scores },
    scoredAt: a.scoredAt,
    reads: a.reads,
    writes: a.writes,
    lastAccess: a.lastAccess,
    // Nothing writes preferences any more (see AffinityEntry.preferred).
    preferred: []
  }
}

export interface MemoryStoreOptions {
  /** Share one backend between several stores (several "proxies" in one process). */
  backend?: MemoryBackend
  config?: StateConfigInput
  logger?: Logger
  registry?: Registry
}

/** One "connection" to a `MemoryBackend`: its own subscribers and status; storage only (see backend.ts). */
export class MemoryConnection implements StoreBackend {
  readonly name = 'memory'
  readonly limits: Limits
  private readonly hub: EventHub

  constructor (private readonly data: MemoryBackend, logger: Logger, metrics: StateMetrics) {
    this.limits = data.limits
    this.hub = new EventHub(logger.child({ component: 'state', backend: 'memory' }), metrics)
    this.hub.setStatus({ ok: true })
    this.data.attach(this)
  }

  /** @internal called by the backend's bus. */
  deliver (raw: string): void {
    this.hub.deliverRaw(raw)
  }

  async getLocation (volume: string, block: string): Promise<BlockLocation | null> {
    return this.data.getLocation(volume, block, Date.now())
  }

  async casLocation (volume: string, block: string, expectedEpoch: number, next: CheckedLocation, options: CheckedWriteOptions): Promise<CasResult> {
    return this.data.cas(volume, block, expectedEpoch, next, options, Date.now())
  }

  async setVersion (volume: string, block: string, epoch: number, version: string): Promise<VersionResult> {
    return this.data.setVersion(volume, block, epoch, version, Date.now())
  }

  async deleteLocation (volume: string, block: string, expectedEpoch: number | undefined, options: CheckedWriteOptions): Promise<DeleteResult> {
    return this.data.deleteLocation(volume, block, expectedEpoch, options, Date.now())
  }

  async * scanLocations (): AsyncIterable<LocatedBlock> {
    yield * this.data.liveLocations(Date.now())
  }

  async blockHistory (volume: string, block: string): Promise<HistoryEntry[]> {
    return this.data.blockHistory(volume, block, Date.now())
  }

  async mergeAccess (blocks: readonly BlockDelta[]): Promise<void> {
    this.data.mergeAccess(blocks, Date.now())
  }

  async getAffinity (volume: string, block: string): Promise<AffinityEntry | null> {
    return this.data.getAffinity(volume, block, Date.now())
  }

  async * scanAffinity (): AsyncIterable<AffinityEntry> {
    yield * this.data.allAffinity(Date.now())
  }

  async getSession (id: string): Promise<Session | null> {
    return this.data.getSession(id, Date.now())
  }

  async putSession (id: string, bindings: Record<string, string>, stateJson: string, ttlMs: number): Promise<Session> {
    return this.data.putSession(id, bindings, stateJson, ttlMs, Date.now())
  }

  async bindSession (id: string, volume: string, gateway: string, ttlMs: number): Promise<void> {
    this.data.bindSession(id, volume, gateway, ttlMs, Date.now())
  }

  async touchSession (id: string, ttlMs: number): Promise<boolean> {
    return this.data.touchSession(id, ttlMs, Date.now())
  }

  async appendTelemetry (gateway: string, samples: readonly TelemetrySample[]): Promise<void> {
    this.data.appendTelemetry(gateway, samples, Date.now())
  }

  async readTelemetry (gateway: string, since: number, limit: number): Promise<TelemetrySample[]> {
    return this.data.readTelemetry(gateway, since, limit, Date.now())
  }

  async appendMigration (record: MigrationRecord): Promise<MigrationRecord> {
    return this.data.appendMigration(record)
  }

  async updateMigration (id: string, fields: Partial<MigrationRecord>): Promise<MigrationRecord | null> {
    return this.data.updateMigration(id, fields)
  }

  async getMigration (id: string): Promise<MigrationRecord | null> {
    return this.data.getMigration(id)
  }

  async listMigrations (limit: number, activeOnly: boolean): Promise<MigrationRecord[]> {
    return this.data.listMigrations(limit, activeOnly)
  }

  async acquireLease (name: string, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    return this.data.acquireLease(name, holder, ttlMs, Date.now())
  }

  async renewLease (name: string, holder: string, token: number, ttlMs: number): Promise<boolean> {
    return this.data.renewLease(name, holder, token, ttlMs, Date.now())
  }

  async releaseLease (name: string, holder: string, token: number): Promise<boolean> {
    return this.data.releaseLease(name, holder, token, Date.now())
  }

  async getLease (name: string): Promise<LeaseInfo | null> {
    return this.data.getLease(name, Date.now())
  }

  async putDrain (drain: DrainRecord): Promise<void> {
    this.data.putDrain(drain)
  }

  async deleteDrain (gateway: string): Promise<boolean> {
    return this.data.deleteDrain(gateway)
  }

  async listDrains (): Promise<DrainRecord[]> {
    return this.data.listDrains()
  }

  async generation (): Promise<StoreGeneration> {
    return this.data.generation(Date.now())
  }

  async finishRebuild (id: string): Promise<boolean> {
    return this.data.finishRebuild(id, Date.now())
  }

  subscribe (handler: StoreEventHandler): () => void {
    return this.hub.subscribe(handler)
  }

  async getDocument (name: string): Promise<string | null> {
    return this.data.documents.get(name) ?? null
  }

  async putDocument (name: string, json: string): Promise<void> {
    this.data.documents.set(name, json)
  }

  async publish (raw: string): Promise<void> {
    this.data.publishRaw(raw)
  }

  status (): StoreStatus {
    return this.hub.status()
  }

  async close (): Promise<void> {
    this.hub.setStatus({ ok: false, reason: 'closed' })
    this.data.detach(this)
  }
}

/** The in-memory store: the checked store over a connection to a `MemoryBackend` (a new one unless given). */
export class MemoryStore extends CheckedStore {
  readonly data: MemoryBackend

  constructor (options: MemoryStoreOptions = {}) {
    const data = options.backend ?? new MemoryBackend(options.config)
    const metrics = new StateMetrics(options.registry, 'memory')
    super(new MemoryConnection(data, options.logger ?? silentLogger, metrics), metrics)
    this.data = data
  }
}

/** A caller may change what it got; the stored record (and its arrays) must not change with it. */
function copyLocation (loc: BlockLocation): BlockLocation {
  return { ...loc, members: [...loc.members], inSync: [...loc.inSync] }
}
