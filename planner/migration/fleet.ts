import { EventEmitter } from 'node:events'
import type { Dispatcher } from 'undici'
import type { GatewayConfig, GatewayKind } from '../../fleet/schema.js'
import { blockKey } from '../../lib/ids.js'
import { silentLogger, type Logger } from '../../lib/log.js'
import { rendezvousNode, rendezvousPick, rendezvousRank, type RendezvousNode } from '../../lib/rendezvous.js'
import { gatewayHealthChannel } from '../../state/channels.js'
import { GatewayHealthView } from '../../state/gateway-health.js'
import { probeOnce, ProbeState } from '../../upstream/prober.js'
import { gatewayPool, gatewayTlsFingerprint, poolStillServes } from '../../upstream/connect.js'
import type { BlockLocation, StoreEvent } from '../../state/types.js'
import type { GatewayInfo } from '../affinity/index.js'
import type { PlannerHealthConfig } from '../config.js'

/** One gateway as the planner sees it. */
export interface FleetGateway {
  readonly id: string
  readonly url: string
  /** How copies to and from it are verified (upstream/). */
  readonly kind: GatewayKind
  readonly site: string
  readonly capacityBytes: number
  /** Kind `s3`: its bucket mapping and credentials. */
  readonly s3?: GatewayConfig['s3']
  /** An `https` gateway's CA and client certificate, and what they held when its pool was made (upstream/connect.ts). */
  readonly tls?: GatewayConfig['tls']
  readonly tlsFingerprint: string | null
  /** Keep-alive connections for copies, checks, deletes and probes; for kind `s3`, mapped and signed (upstream/s3.ts); for `https`, with its `tls`. */
  readonly pool: Dispatcher
  /** The planner's own probes (upstream/prober.ts). */
  readonly probe: ProbeState
  /** Operator drain: never a target, everything on it is moved off. */
  draining: boolean
}

export interface FleetEvents {
  /** A gateway's health as the planner sees it changed. */
  health: [id: string, healthy: boolean]
}

/**
 * The gateways, their health and how full they are, as the planner needs them to choose
 * targets and sources.
 *
 * Health combines two views. The planner probes every gateway itself (GET probePath, below 500
 * is up), because the planner may run where no proxy does and must not copy to a gateway it
 * cannot reach. And proxies publish what their passive checks see (`gateway-health`): a gateway
 * refusing client traffic is not a target even if it still answers the planner's probes. The
 * reports are read by the rule DNS uses too (state/gateway-health.ts), with `reportTtlMs`: a
 * proxy's "down" counts until the same proxy reports it up again or the TTL passes (a proxy that
 * died must not blacklist a gateway for ever).
 *
 * Usage is an estimate, because gateways do not report it: the sizes of placed blocks the
 * planner has seen (copied, checked), plus the mean of those for placed blocks of unknown
 * size. Blocks that were never placed (hash-routed, never accessed through a proxy since the
 * store was created) are not counted.
 */
export class Fleet extends EventEmitter<FleetEvents> {
  private gateways = new Map<string, FleetGateway>()
  private nodes: RendezvousNode[] = []
  private health: PlannerHealthConfig
  private connections: number
  private probeTimer: NodeJS.Timeout | null = null
  private probing = false
  /** The proxies' gateway-health reports. */
  private readonly reports = new GatewayHealthView()
  private readonly logger: Logger
  /** Known block sizes, by blockKey. */
  private readonly sizes = new Map<string, number>()
  /** Placed blocks per gateway, by blockKey (kept from location changes): every member's copy. */
  private readonly placed = new Map<string, Set<string>>()
  /** The members of each placed block's set, by blockKey: every copy takes room on its gateway. */
  private readonly where = new Map<string, readonly string[]>()
  /** Per gateway: bytes of its placed blocks of known size, and how many are of unknown size. */
  private readonly knownBytes = new Map<string, number>()
  private readonly unknownCount = new Map<string, number>()
  private sizeSum = 0

  constructor (gateways: readonly GatewayConfig[], health: PlannerHealthConfig, opts: { connections: number, logger?: Logger }) {
    super()
    this.health = health
    this.connections = opts.connections
    this.logger = (opts.logger ?? silentLogger).child({ component: 'fleet' })
    this.reconfigure(gateways, health, opts.connections)
  }

  /** Adds, updates and removes gateways; a gateway whose URL changed gets a new pool. */
  reconfigure (gateways: readonly GatewayConfig[], health: PlannerHealthConfig, connections: number): void {
    this.health = health
    this.reports.reportTtlMs = health.reportTtlMs
    const next = new Map<string, FleetGateway>()
    for (const g of gateways) {
      const old = this.gateways.get(g.id)
      // The same paths may hold renewed certificates: a reload (SIGHUP) that finds them changed makes a new pool.
      const fingerprint = gatewayTlsFingerprint(g)
      if (old !== undefined && poolStillServes(old, g) && connections === this.connections && (fingerprint === null || fingerprint === old.tlsFingerprint)) {
        next.set(g.id, { ...old, kind: g.kind, site: g.site, capacityBytes: g.capacityBytes, pool: old.pool })
        continue
      }
      if (old !== undefined) void old.pool.close().catch(() => {})
      this.reports.forget(g.id)
      next.set(g.id, {
        id: g.id,
        url: g.url,
        kind: g.kind,
        site: g.site,
        capacityBytes: g.capacityBytes,
        s3: g.s3,
        tls: g.tls,
        tlsFingerprint: fingerprint,
        pool: gatewayPool(g, { connections, pipelining: 1, keepAliveTimeout: 10_000, connectTimeout: 2_000 }),
        probe: new ProbeState(),
        draining: old?.draining ?? false
      })
    }
    for (const [id, old] of this.gateways) {
      if (next.has(id)) continue
      void old.pool.close().catch(() => {})
      this.reports.forget(id)
    }
    this.connections = connections
    this.gateways = next
    this.nodes = [...next.keys()].map(rendezvousNode)
  }

  get (id: string): FleetGateway | undefined { return this.gateways.get(id) }
  has (id: string): boolean { return this.gateways.has(id) }
  all (): FleetGateway[] { return [...this.gateways.values()] }
  get ids (): string[] { return [...this.gateways.keys()] }

  isHealthy (id: string, now = Date.now()): boolean {
    const g = this.gateways.get(id)
    if (g === undefined || !g.probe.up) return false
    return this.reports.isHealthy(id, now)
  }

  /** The proxies whose "down" report on `id` still counts. */
  reportedDownBy (id: string, now = Date.now()): string[] {
    return this.reports.reportedDownBy(id, now)
  }

  /** Healthy, not draining: may receive blocks. */
  isTarget (id: string, now = Date.now()): boolean {
    return this.isHealthy(id, now) && this.gateways.get(id)?.draining === false
  }

  setDraining (id: string, draining: boolean): void {
    const g = this.gateways.get(id)
    if (g !== undefined) g.draining = draining
  }

  /**
   * The gateway a block without a location is served from: the first healthy one in rendezvous
   * order, as the proxy's RouteTable.hashed() picks it (any one when none is healthy).
   */
  hashed (key: string, now = Date.now()): string | undefined {
    return rendezvousPick(key, this.nodes, id => this.isHealthy(id, now)) ?? rendezvousPick(key, this.nodes)
  }

  /** Every gateway in rendezvous order for `key`, healthy ones first. */
  ranked (key: string, now = Date.now()): string[] {
    const rank = rendezvousRank(key, this.nodes)
    return [...rank.filter(id => this.isHealthy(id, now)), ...rank.filter(id => !this.isHealthy(id, now))]
  }

  /** What the affinity scorer ranks. Draining gateways count as unhealthy: they take no blocks. */
  infos (now = Date.now()): GatewayInfo[] {
    return this.all().map(g => ({
      id: g.id,
      site: g.site,
      capacityBytes: g.capacityBytes,
      usedBytes: this.usedBytes(g.id),
      healthy: this.isTarget(g.id, now)
    }))
  }

  // ── usage

  /** Estimated bytes held by `id` (see the class comment). */
  usedBytes (id: string): number {
    return (this.knownBytes.get(id) ?? 0) + (this.unknownCount.get(id) ?? 0) * this.meanBlockBytes()
  }

  meanBlockBytes (): number {
    return this.sizes.size === 0 ? 0 : this.sizeSum / this.sizes.size
  }

  sizeOf (volume: string, block: string): number | undefined {
    return this.sizes.get(blockKey(volume, block))
  }

  noteSize (volume: string, block: string, bytes: number): void {
    const key = blockKey(volume, block)
    const old = this.sizes.get(key)
    if (old === bytes) return
    this.sizes.set(key, bytes)
    this.sizeSum += bytes - (old ?? 0)
    for (const at of this.where.get(key) ?? []) {
      this.add(this.knownBytes, at, bytes - (old ?? 0))
      if (old === undefined) this.add(this.unknownCount, at, -1)
    }
  }

  private add (m: Map<string, number>, id: string, delta: number): void {
    m.set(id, (m.get(id) ?? 0) + delta)
  }

  /**
   * Keeps per-gateway placement (and usage) in step with the planner's LocationCache. Every
   * member holds a copy, in sync or not (one being repaired is written to): each one counts.
   */
  noteLocation (volume: string, block: string, location: BlockLocation | null): void {
    const key = blockKey(volume, block)
    const before = this.where.get(key) ?? []
    const after = location?.members ?? []
    if (before.length === after.length && before.every(m => after.includes(m))) return
    const size = this.sizes.get(key)
    for (const id of before) {
      if (after.includes(id)) continue
      this.placed.get(id)?.delete(key)
      if (size !== undefined) this.add(this.knownBytes, id, -size)
      else this.add(this.unknownCount, id, -1)
    }
    for (const id of after) {
      if (before.includes(id)) continue
      let set = this.placed.get(id)
      if (set === undefined) this.placed.set(id, set = new Set())
      set.add(key)
      if (size !== undefined) this.add(this.knownBytes, id, size)
      else this.add(this.unknownCount, id, 1)
    }
    if (after.length === 0) this.where.delete(key)
    else this.where.set(key, after)
  }

  /** Placed blocks on `id` (blockKeys), as last seen. */
  blocksOn (id: string): string[] {
    return [...(this.placed.get(id) ?? [])]
  }

  // ── health

  /** Feeds the store's events: `gateway-health` messages from proxies. */
  onStoreEvent (event: StoreEvent): void {
    const m = gatewayHealthChannel.decode(event)
    if (m == null || !this.gateways.has(m.gateway)) return
    const was = this.isHealthy(m.gateway)
    this.reports.apply(m)
    const is = this.isHealthy(m.gateway)
    if (was !== is) this.changed(m.gateway, is, `proxy ${m.from} reported it ${m.healthy ? 'up' : 'down'}`)
  }

  startProbes (): void {
    if (this.probeTimer !== null) return
    const loop = (): void => {
      this.probeTimer = setTimeout(() => { void this.probeAll().finally(loop) }, this.health.probeIntervalMs)
      this.probeTimer.unref()
    }
    void this.probeAll().finally(loop)
  }

  /** One round of probes (exposed so tests and a fresh leader need not wait an interval). */
  async probeAll (): Promise<void> {
    if (this.probing) return
    this.probing = true
    try {
      await Promise.all(this.all().map(g => this.probe(g)))
    } finally {
      this.probing = false
    }
  }

  private async probe (g: FleetGateway): Promise<void> {
    const why = await probeOnce(g.pool, this.health.probePath, this.health.probeTimeoutMs)
    if (this.gateways.get(g.id) !== g) return // reconfigured meanwhile
    const was = this.isHealthy(g.id)
    g.probe.record(why, this.health)
    const is = this.isHealthy(g.id)
    if (was !== is) this.changed(g.id, is, why ?? 'probe succeeded')
  }

  private changed (id: string, healthy: boolean, why: string): void {
    this.logger.info({ gateway: id, healthy, why }, healthy ? 'gateway up (planner view)' : 'gateway down (planner view)')
    this.emit('health', id, healthy)
  }

  async close (): Promise<void> {
    if (this.probeTimer !== null) clearTimeout(this.probeTimer)
    this.probeTimer = null
    await Promise.all(this.all().map(g => g.pool.close().catch(() => {})))
  }

  /** As a crash: every connection cut at once. */
  async destroy (): Promise<void> {
    if (this.probeTimer !== null) clearTimeout(this.probeTimer)
    this.probeTimer = null
    await Promise.all(this.all().map(g => g.pool.destroy().catch(() => {})))
  }
}
