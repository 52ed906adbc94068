import type { Cluster, Redis } from 'ioredis'
import type { Registry } from 'prom-client'
import { silentLogger, type Logger } from '../../lib/log.js'
import { SCORE_FLOOR, type BlockDelta } from '../affinity.js'
import type { StoreBackend } from '../backend.js'
import { CheckedStore } from '../checked.js'
import {
  decodeDrain, decodeGeneration, decodeHistory, decodeMigration, decodeStoredLocation, encodeMigrationFields,
  encodeSet, liveLocation, newGenerationId, pairsToRecord, sortMigrations
} from '../codec.js'
import type { StateConfig } from '../config.js'
import { conflict, corrupt, tooLarge, unavailable, unsent } from '../errors.js'
import { EventHub } from '../events.js'
import { KeySpace } from '../keys.js'
import { StateMetrics } from '../metrics.js'
import type {
  AffinityEntry, BlockLocation, BlockRef, CasResult, DeleteResult, DrainRecord, HistoryEntry, LeaseGrant, LeaseInfo, LocatedBlock,
  MigrationRecord, Session, StoreEventHandler, StoreGeneration, StoreStatus, TelemetrySample, VersionResult
} from '../types.js'
import { MAX_BINDINGS, type CheckedLocation, type CheckedWriteOptions } from '../validate.js'
import { backoff, createCommandClient, mapRedisError, resolveConnection, type ResolvedConnection } from './connection.js'
import { SCRIPTS, type ScriptName } from './scripts.js'
import { keySlot } from './slot.js'
import { ChannelSubscriber } from './subscriber.js'

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>
type Client = (Redis | Cluster) & Record<ScriptName, ScriptFn>
/** One ferryMergeAccess call: blocks of one slot (Cluster) or of any slot (standalone). */
interface MergeCall { slot: number, keys: string[], args: Array<string | number> }

const SCAN_COUNT = 500
/**
 * Blocks per mergeAccess script call: bounds how long one call holds the server (a batch kept
 * through an outage can be large). Measured: ~27 µs per block inside Redis on a loaded 2-vCPU VM,
 * so ≈ 13 ms per full call there, and a proxy's typical batch (hundreds of blocks) is still one call.
 */
const MERGE_BLOCKS_PER_CALL = 500
/** While degraded by a failed call, how often to probe so status recovers without traffic. */
const PROBE_INTERVAL_MS = 1000

export interface RedisStoreOptions {
  logger?: Logger
  registry?: Registry
}

/**
 * The Redis backend (standalone or Cluster), storage only: `RedisStore` below is the checked
 * store over it (validation, metering and refusal after close happen there, see checked.ts).
 * See state/README.md for the key layout, the scripts, the notification protocol and the
 * failure behaviour; in short:
 *
 * - one command connection (auto-pipelined) and one dedicated subscriber connection;
 * - every call checks readiness first and fails fast with FERRY_STATE_UNAVAILABLE rather than
 *   queue; a per-call deadline backs up ioredis' own timeouts;
 * - `status()` is ok only while commands can run *and* the event subscription is live; when both
 *   are back after a loss, a `resync` event tells consumers to reload what they cache.
 */
export class RedisBackend implements StoreBackend {
  readonly name: 'redis' | 'redis-cluster'
  readonly limits: StateConfig
  /** Shared with the checked store in front (one `ferry_state_up` per store). */
  readonly metrics: StateMetrics
  private readonly keys: KeySpace
  private readonly client: Client
  private readonly subscriber: ChannelSubscriber
  private readonly hub: EventHub
  private readonly logger: Logger
  private readonly deadlineMs: number
  private cmdReady = false
  private cmdError = ''
  private subscribed = false
  private subError = ''
  private lastFailure: string | null = null
  private needResync = true
  private everReady = false
  /** Set by close(): the status stays 'closed' whatever the connections report afterwards. */
  private isClosed = false
  private probeTimer: NodeJS.Timeout | null = null

  constructor (private readonly config: StateConfig, options: RedisStoreOptions = {}) {
    const conn: ResolvedConnection = resolveConnection(config)
    this.name = conn.mode
    this.limits = config
    this.keys = new KeySpace(config.keyPrefix)
    this.logger = (options.logger ?? silentLogger).child({ component: 'state', backend: this.name })
    this.metrics = new StateMetrics(options.registry, this.name)
    this.hub = new EventHub(this.logger, this.metrics)
    // Slack over the driver's own timeout: the deadline only catches what ioredis would not
    // (a Cluster redirect loop, a connect that hangs), it must not pre-empt a normal timeout.
    this.deadlineMs = config.commandTimeoutMs * 2 + 250

    this.client = createCommandClient(conn, config) as Client
    for (const [name, def] of Object.entries(SCRIPTS)) {
      this.client.defineCommand(name, { lua: def.lua, ...('numberOfKeys' in def ? { numberOfKeys: def.numberOfKeys } : {}), ...('readOnly' in def ? { readOnly: def.readOnly } : {}) })
    }
    this.watchCommandClient()

    this.subscriber = new ChannelSubscriber({
      channel: this.keys.channel,
      targets: () => this.subscriberTargets(conn),
      common: conn.common,
      backoff: backoff(config.reconnect.minDelayMs, config.reconnect.maxDelayMs),
      pingIntervalMs: Math.max(1000, config.commandTimeoutMs * 3),
      logger: this.logger,
      onMessage: raw => this.hub.deliverRaw(raw),
      onState: (ok, reason) => {
        this.subscribed = ok
        this.subError = reason ?? ''
        if (ok) this.needResync = true
        this.updateStatus()
      }
    })

    this.client.connect().catch(() => { /* reported through 'error'/'close'; reconnection continues */ })
    this.subscriber.start()
  }

  private subscriberTargets (conn: ResolvedConnection): Array<{ host: string, port: number }> {
    if (conn.mode === 'redis') return conn.endpoints
    // Prefer the nodes the Cluster currently knows; fall back to the configured seeds.
    const known = (this.client as Cluster).nodes('master').map(n => ({ host: n.options.host!, port: n.options.port! }))
    return known.length > 0 ? known : conn.endpoints
  }

  private watchCommandClient (): void {
    const c = this.client
    c.on('ready', () => {
      this.cmdReady = true
      this.cmdError = ''
      this.lastFailure = null
      this.updateStatus()
    })
    const down = (): void => {
      if (!this.cmdReady) return
      this.cmdReady = false
      this.updateStatus()
    }
    c.on('close', down)
    c.on('end', down)
    c.on('reconnecting', down)
    // Without these listeners ioredis would crash the process with an unhandled 'error'.
    c.on('error', (err: Error) => {
      this.cmdError = err.message
      if (!this.cmdReady) this.updateStatus()
    })
    c.on('node error', (err: Error, node: string) => {
      this.cmdError = `${node}: ${err.message}`
    })
  }

  private reason (): string | undefined {
    if (this.isClosed) return 'closed'
    if (!this.cmdReady) return `redis: ${this.cmdError !== '' ? this.cmdError : (this.everReady ? 'connection lost' : 'connecting')}`
    if (!this.subscribed) return `redis: event subscription ${this.subError !== '' ? `lost (${this.subError})` : 'not established yet'}`
    if (this.lastFailure !== null) return this.lastFailure
    return undefined
  }

  private updateStatus (): void {
    const reason = this.reason()
    const ok = reason === undefined
    this.hub.setStatus(ok ? { ok: true } : { ok: false, reason })
    if (ok && this.needResync) {
      this.needResync = false
      const first = !this.everReady
      this.everReady = true
      // After the subscription is live and commands work: a reload now misses nothing.
      this.hub.resync(first ? 'connected' : 'reconnected')
    }
    if (this.lastFailure !== null && this.cmdReady && this.probeTimer === null) this.startProbe()
  }

  private startProbe (): void {
    this.probeTimer = setInterval(() => {
      if (this.lastFailure === null || this.isClosed) {
        if (this.probeTimer !== null) clearInterval(this.probeTimer)
        this.probeTimer = null
        return
      }
      this.run(() => this.client.ping()).catch(() => { /* still failing: stay degraded */ })
    }, PROBE_INTERVAL_MS)
    this.probeTimer.unref()
  }

  /**
   * Every command goes through here: fail-fast readiness check, deadline, error mapping, and
   * health bookkeeping (an unavailable error degrades `status()` until the next success).
   */
  private async run<T> (fn: () => Promise<T>): Promise<T> {
    if (!this.cmdReady) throw unsent(this.reason() ?? 'not connected')
    let timer: NodeJS.Timeout | undefined
    try {
      const deadline = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(unavailable(`redis: no answer within ${this.deadlineMs} ms`)), this.deadlineMs)
      })
      const value = await Promise.race([fn(), deadline])
      if (this.lastFailure !== null) {
        this.lastFailure = null
        this.updateStatus()
      }
      return value
    } catch (err) {
      const mapped = mapRedisError(err)
      if (mapped.code === 'FERRY_STATE_UNAVAILABLE' && !this.isClosed) {
        this.lastFailure = mapped.message.replace(/^state store unavailable: /, '')
        this.updateStatus()
      }
      throw mapped
    } finally {
      clearTimeout(timer)
    }
  }

  // ───────────────────────────── locations ─────────────────────────────

  async getLocation (volume: string, block: string): Promise<BlockLocation | null> {
    const key = this.keys.location(volume, block)
    return await this.run(async () => liveLocation(await this.client.hgetall(key)))
  }

  /** Standalone: the lease is checked inside the script (any key may be used). Cluster: see casLocation. */
  private fenceKeys (fence: CheckedWriteOptions['fence']): string[] {
    return fence !== undefined && this.name === 'redis' ? [this.keys.lease(fence.lease)] : []
  }

  /**
   * On a Cluster the lease is in another slot than the block, so it cannot be read by the
   * block's script: it is checked here, one round trip before. The window between the two is
   * closed by the per-block high-water mark the script enforces: once the new leader has written
   * a block, no lower token can write it again.
   */
  private async clusterFenceHolds (fence: CheckedWriteOptions['fence']): Promise<boolean> {
    if (fence === undefined || this.name === 'redis') return true
    const token = await this.client.hget(this.keys.lease(fence.lease), 'token')
    return token !== null && Number(token) === fence.token
  }

  async casLocation (volume: string, block: string, expectedEpoch: number, n: CheckedLocation, o: CheckedWriteOptions): Promise<CasResult> {
    const extra = this.fenceKeys(o.fence)
    const set = encodeSet(n)
    return await this.run(async () => {
      if (!await this.clusterFenceHolds(o.fence)) {
        return { ok: false, reason: 'fenced', current: liveLocation(await this.client.hgetall(this.keys.location(volume, block))) }
      }
      const reply = await this.client.ferryCas(
        2 + extra.length, this.keys.location(volume, block), this.keys.history(volume, block), ...extra,
        expectedEpoch, Date.now(), n.gateway, n.phase, n.target ?? '',
        n.version === undefined ? 'k' : n.version === null ? 'n' : 's', n.version ?? '',
        o.fence?.token ?? '', this.config.history.limit, this.keys.channel, volume, block, o.reason,
        set.m ?? '', set.i ?? ''
      ) as [string, unknown]
      const h = pairsToRecord(reply[1])
      if (reply[0] === 'ok') return { ok: true, location: liveLocation(h)! }
      return { ok: false, reason: reply[0] === 'fenced' ? 'fenced' : 'epoch', current: liveLocation(h) }
    })
  }

  async setVersion (volume: string, block: string, epoch: number, version: string): Promise<VersionResult> {
    return await this.run(async () => {
      const reply = await this.client.ferrySetVersion(
        this.keys.location(volume, block), this.keys.history(volume, block),
        epoch, version, Date.now(), this.config.history.limit) as [string, unknown]
      const loc = liveLocation(pairsToRecord(reply[1]))
      return reply[0] === 'ok' ? { ok: true, location: loc! } : { ok: false, current: loc }
    })
  }

  async deleteLocation (volume: string, block: string, expectedEpoch: number | undefined, o: CheckedWriteOptions): Promise<DeleteResult> {
    const extra = this.fenceKeys(o.fence)
    return await this.run(async () => {
      if (!await this.clusterFenceHolds(o.fence)) {
        return { ok: false, reason: 'fenced', current: liveLocation(await this.client.hgetall(this.keys.location(volume, block))) }
      }
      const reply = await this.client.ferryDelete(
        2 + extra.length, this.keys.location(volume, block), this.keys.history(volume, block), ...extra,
        expectedEpoch ?? '', Date.now(), o.fence?.token ?? '', this.config.history.limit,
        this.keys.channel, volume, block, o.reason, this.config.tombstoneTtlMs
      ) as [string, unknown?]
      if (reply[0] === 'ok') return { ok: true, deleted: true }
      if (reply[0] === 'absent') return { ok: true, deleted: false }
      return { ok: false, reason: reply[0] === 'fenced' ? 'fenced' : 'epoch', current: liveLocation(pairsToRecord(reply[1])) }
    })
  }

  /** Masters to SCAN: the server itself, or every Cluster master (each holds its own slots). */
  private scanNodes (): Redis[] {
    if (this.name === 'redis') return [this.client as Redis]
    return (this.client as Cluster).nodes('master')
  }

  private async * scanHashes (kind: 'loc' | 'aff'): AsyncGenerator<{ volume: string, block: string, hash: Record<string, string> }> {
    const pattern = this.keys.blockPattern(kind)
    const nodes = await this.run(async () => this.scanNodes())
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await this.run(() => node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT))
        cursor = next
        const refs = keys.map(k => this.keys.parseBlockKey(k, kind)).filter((r): r is BlockRef => r !== null)
        if (refs.length === 0) continue
        const hashes = await this.run(async () => {
          const replies = await node.pipeline(refs.map(r => ['hgetall', kind === 'loc' ? this.keys.location(r.volume, r.block) : this.keys.affinity(r.volume, r.block)])).exec()
          return (replies ?? []).map(([err, value]) => {
            if (err) throw err
            return value as Record<string, string>
          })
        })
        for (let i = 0; i < refs.length; i++) yield { ...refs[i]!, hash: hashes[i]! }
      } while (cursor !== '0')
    }
  }

  async * scanLocations (): AsyncIterable<LocatedBlock> {
    for await (const { volume, block, hash } of this.scanHashes('loc')) {
      let s: ReturnType<typeof decodeStoredLocation>
      try {
        s = decodeStoredLocation(hash)
      } catch (err) {
        // One foreign or damaged key must not make every resync fail: skip it (getLocation
        // on that block still reports FERRY_STATE_CORRUPT).
        this.logger.warn({ err, volume, block }, 'skipping a stored location that does not decode')
        continue
      }
      if (s.kind === 'live') yield { volume, block, location: s.location }
    }
  }

  async blockHistory (volume: string, block: string): Promise<HistoryEntry[]> {
    const key = this.keys.history(volume, block)
    const raw = await this.run(() => this.client.lrange(key, 0, -1))
    return raw.map(decodeHistory).filter((h): h is HistoryEntry => h !== null)
  }

  // ───────────────────────────── affinity ─────────────────────────────

  /**
   * One `ferryMergeAccess` call per batch on a standalone server, one per slot on a Cluster (a
   * script's keys must share a slot there; see README "Access recording"), each at most
   * MERGE_BLOCKS_PER_CALL blocks so one call never holds the server for long (a batch kept
   * through an outage can be large). All calls are issued in one tick: one write per node.
   */
  async mergeAccess (groups: readonly BlockDelta[]): Promise<void> {
    const { halfLifeMs, ttlMs } = this.config.affinity
    if (groups.length === 0) return
    const calls: MergeCall[] = []
    const open = new Map<number, MergeCall>()
    for (const g of groups) {
      const key = this.keys.affinity(g.volume, g.block)
      const slot = this.name === 'redis' ? 0 : keySlot(key)
      let call = open.get(slot)
      if (call === undefined || call.keys.length >= MERGE_BLOCKS_PER_CALL) {
        call = { slot, keys: [], args: [] }
        open.set(slot, call)
        calls.push(call)
      }
      call.keys.push(key)
      call.args.push(g.reads, g.writes, g.at, g.weights.size)
      for (const [site, w] of g.weights) call.args.push(site, w)
    }
    const send = (target: { ferryMergeAccess: (...args: Array<string | number>) => unknown }, c: MergeCall): unknown =>
      target.ferryMergeAccess(c.keys.length, ...c.keys, halfLifeMs, ttlMs, SCORE_FLOOR, ...c.args)
    await this.run(async () => {
      if (this.name === 'redis') {
        await Promise.all(calls.map(async c => await send(this.client, c)))
        return
      }
      // Cluster: one explicit pipeline per node. Auto-pipelining would route a script call by
      // its first argument (the key count), not by its keys.
      const cluster = this.client as Cluster
      const byNode = new Map<string, MergeCall[]>()
      for (const c of calls) {
        const node = cluster.slots[c.slot]?.join(',') ?? ''
        const list = byNode.get(node)
        if (list === undefined) byNode.set(node, [c])
        else list.push(c)
      }
      await Promise.all([...byNode.values()].map(async list => {
        const pipeline = cluster.pipeline()
        // On a pipeline the call only queues (it returns the pipeline); exec() reports per call.
        for (const c of list) send(pipeline as unknown as Client, c)
        for (const [err] of await pipeline.exec() ?? []) if (err !== null) throw err
      }))
    })
  }

  async getAffinity (volume: string, block: string): Promise<AffinityEntry | null> {
    const key = this.keys.affinity(volume, block)
    const h = await this.run(() => this.client.hgetall(key))
    return decodeAffinity(volume, block, h)
  }

  async * scanAffinity (): AsyncIterable<AffinityEntry> {
    for await (const { volume, block, hash } of this.scanHashes('aff')) {
      const a = decodeAffinity(volume, block, hash)
      if (a !== null) yield a
    }
  }


  // ───────────────────────────── sessions ─────────────────────────────

  async getSession (id: string): Promise<Session | null> {
    const key = this.keys.session(id)
    const h = await this.run(() => this.client.hgetall(key))
    return decodeSession(h)
  }

  async putSession (id: string, bindings: Record<string, string>, stateJson: string, ttlMs: number): Promise<Session> {
    const key = this.keys.session(id)
    const now = Date.now()
    const args: string[] = []
    for (const [v, g] of Object.entries(bindings)) args.push(v, g)
    await this.run(() => this.client.ferryPutSession(key, now, ttlMs, stateJson, ...args))
    return { bindings, state: JSON.parse(stateJson) as Record<string, unknown>, updatedAt: now }
  }

  async bindSession (id: string, volume: string, gateway: string, ttlMs: number): Promise<void> {
    const key = this.keys.session(id)
    const ok = await this.run(() => this.client.ferryBindSession(key, Date.now(), ttlMs, volume, gateway, MAX_BINDINGS))
    if (ok !== 1) throw tooLarge(`session ${id} already binds ${MAX_BINDINGS} volumes`)
  }

  async touchSession (id: string, ttlMs: number): Promise<boolean> {
    const key = this.keys.session(id)
    return await this.run(async () => (await this.client.pexpire(key, ttlMs)) === 1)
  }


  // ───────────────────────────── telemetry ─────────────────────────────

  async appendTelemetry (gateway: string, samples: readonly TelemetrySample[]): Promise<void> {
    if (samples.length === 0) return
    const key = this.keys.telemetry(gateway)
    const { maxAgeMs, maxSamples } = this.config.telemetry
    const args: Array<string | number> = []
    for (const s of samples) args.push(s.at, JSON.stringify(s))
    await this.run(() => this.client.ferryAppendTelemetry(key, Date.now(), maxAgeMs, maxSamples, ...args))
  }

  async readTelemetry (gateway: string, since: number, limit: number): Promise<TelemetrySample[]> {
    const key = this.keys.telemetry(gateway)
    const min = Math.max(since, Date.now() - this.config.telemetry.maxAgeMs)
    const raw = await this.run(() => this.client.zrevrangebyscore(key, '+inf', min, 'LIMIT', 0, limit))
    const out: TelemetrySample[] = []
    for (let i = raw.length - 1; i >= 0; i--) {
      try { out.push(JSON.parse(raw[i]!) as TelemetrySample) } catch { /* foreign member: skip */ }
    }
    return out
  }

  // ───────────────────────────── migrations ─────────────────────────────

  private migrationArgs (id: string, fields: Partial<MigrationRecord>, finished: boolean, endedAt: number | null | undefined): Array<string | number> {
    return [
      this.keys.migActive, this.keys.migDone, this.keys.migration(id),
      id, finished ? '1' : '0', endedAt ?? '', this.config.migrations.limit, this.keys.migRecordPrefix,
      ...encodeMigrationFields(fields)
    ]
  }

  async appendMigration (rec: MigrationRecord): Promise<MigrationRecord> {
    const added = await this.run(() =>
      this.client.ferryAppendMigration(...this.migrationArgs(rec.id, rec, rec.result !== null, rec.endedAt)))
    if (added !== 1) throw conflict(`migration ${rec.id} already exists`)
    return rec
  }

  async updateMigration (id: string, fields: Partial<MigrationRecord>): Promise<MigrationRecord | null> {
    const reply = await this.run(() =>
      this.client.ferryUpdateMigration(...this.migrationArgs(id, fields, fields.result !== undefined && fields.result !== null, fields.endedAt)))
    if (reply === null) return null
    const h = pairsToRecord(reply)
    return Object.keys(h).length === 0 ? null : decodeMigration(h)
  }

  async getMigration (id: string): Promise<MigrationRecord | null> {
    const key = this.keys.migration(id)
    const h = await this.run(() => this.client.hgetall(key))
    return Object.keys(h).length === 0 ? null : decodeMigration(h)
  }

  async listMigrations (limit: number, activeOnly: boolean): Promise<MigrationRecord[]> {
    const reply = await this.run(() =>
      this.client.ferryListMigrations(this.keys.migActive, this.keys.migDone, this.keys.migRecordPrefix, limit, activeOnly ? '1' : '0')) as unknown[]
    return sortMigrations(reply.map(r => decodeMigration(pairsToRecord(r))), limit)
  }

  // ───────────────────────────── lease ─────────────────────────────

  async acquireLease (name: string, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    const reply = await this.run(() => this.client.ferryAcquireLease(this.keys.lease(name), this.keys.leaseSeq(name), holder, ttlMs))
    if (reply === null) return null
    const token = Number(reply)
    if (!Number.isSafeInteger(token) || token < 1) throw corrupt(`lease ${name} holds a bad token: ${String(reply)}`)
    return { token }
  }

  async renewLease (name: string, holder: string, token: number, ttlMs: number): Promise<boolean> {
    return await this.run(async () => (await this.client.ferryRenewLease(this.keys.lease(name), holder, token, ttlMs)) === 1)
  }

  async releaseLease (name: string, holder: string, token: number): Promise<boolean> {
    return await this.run(async () => (await this.client.ferryReleaseLease(this.keys.lease(name), holder, token)) === 1)
  }

  async getLease (name: string): Promise<LeaseInfo | null> {
    const reply = await this.run(() => this.client.ferryGetLease(this.keys.lease(name))) as [string, string, number] | null
    if (reply === null) return null
    return { holder: reply[0], token: Number(reply[1]), ttlMs: Number(reply[2]) }
  }

  // ───────────────────────────── drains ─────────────────────────────

  async putDrain (drain: DrainRecord): Promise<void> {
    await this.run(() => this.client.hset(this.keys.drains, drain.gateway, JSON.stringify(drain)))
  }

  async deleteDrain (gateway: string): Promise<boolean> {
    return await this.run(() => this.client.hdel(this.keys.drains, gateway)) === 1
  }

  async listDrains (): Promise<DrainRecord[]> {
    const all = await this.run(() => this.client.hgetall(this.keys.drains))
    return Object.values(all).map(raw => {
      const d = decodeDrain(raw)
      if (d === null) throw corrupt(`a drain record is not one: ${raw.slice(0, 80)}`)
      return d
    })
  }

  // ───────────────────────────── generation ─────────────────────────────

  async generation (): Promise<StoreGeneration> {
    const fresh = JSON.stringify({ id: newGenerationId(), createdAt: Date.now(), rebuilding: true, rebuiltAt: null })
    const raw = await this.run(() => this.client.ferryGeneration(this.keys.generation, fresh)) as string
    const g = decodeGeneration(raw)
    if (g === null) throw corrupt(`the generation marker is not one: ${raw.slice(0, 80)}`)
    return g
  }

  async finishRebuild (id: string): Promise<boolean> {
    return await this.run(() => this.client.ferryFinishRebuild(this.keys.generation, id, Date.now())) === 1
  }

  // ───────────────────────────── documents ─────────────────────────────

  async getDocument (name: string): Promise<string | null> {
    return await this.run(() => this.client.get(this.keys.document(name)))
  }

  async putDocument (name: string, json: string): Promise<void> {
    await this.run(() => this.client.set(this.keys.document(name), json))
  }

  // ───────────────────────────── events ─────────────────────────────

  subscribe (handler: StoreEventHandler): () => void {
    return this.hub.subscribe(handler)
  }

  async publish (raw: string): Promise<void> {
    await this.run(() => this.client.ferryPublish(this.keys.publishSlot, this.keys.channel, raw))
  }

  status (): StoreStatus {
    return this.hub.status()
  }

  async close (): Promise<void> {
    this.isClosed = true
    if (this.probeTimer !== null) clearInterval(this.probeTimer)
    this.updateStatus()
    await this.subscriber.close()
    try {
      if (this.cmdReady) await this.client.quit()
      else this.client.disconnect()
    } catch {
      this.client.disconnect()
    }
  }
}

/** The Redis store: the checked store (checked.ts) over a `RedisBackend`. What `createStore` returns for `backend: redis`. */
export class RedisStore extends CheckedStore {
  constructor (config: StateConfig, options: RedisStoreOptions = {}) {
    const backend = new RedisBackend(config, options)
    super(backend, backend.metrics)
  }
}

function num (s: string | undefined): number {
  const n = Number(s ?? 0)
  return Number.isFinite(n) ? n : 0
}

export function decodeAffinity (volume: string, block: string, h: Record<string, string>): AffinityEntry | null {
  if (Object.keys(h).length === 0) return null
  const scores: Record<string, number> = {}
  for (const [field, value] of Object.entries(h)) {
    if (field.startsWith('s:')) scores[field.slice(2)] = num(value)
  }
  return {
    volume,
    block,
    scores,
    scoredAt: num(h.at),
    reads: num(h.r),
    writes: num(h.w),
    lastAccess: num(h.la),
    preferred: h.pref === undefined || h.pref === '' ? [] : h.pref.split(',')
  }
}

export function decodeSession (h: Record<string, string>): Session | null {
  if (Object.keys(h).length === 0) return null
  const bindings: Record<string, string> = {}
  for (const [field, value] of Object.entries(h)) {
    if (field.startsWith('b:')) bindings[field.slice(2)] = value
  }
  let state: Record<string, unknown> = {}
  try {
    const parsed: unknown = JSON.parse(h.st ?? '{}')
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) state = parsed as Record<string, unknown>
  } catch { throw corrupt('stored session state is not JSON') }
  return { bindings, state, updatedAt: num(h.at) }
}
