import { EventEmitter } from 'node:events'
import type { Dispatcher, Pool } from 'undici'
import type { GatewayConfig, GatewayKind } from '../fleet/schema.js'
import type { LatencyMatrix } from '../fleet/latency.js'
import type { HealthSection, ProxySection } from './config.js'
import { rendezvousNode, type RendezvousNode } from '../lib/rendezvous.js'
import type { Logger } from '../lib/log.js'
import { silentLogger } from '../lib/log.js'
import { probeOnce, ProbeState } from '../upstream/prober.js'
import { gatewayPool, gatewayTlsFingerprint, poolStillServes } from '../upstream/connect.js'

/** Why a gateway is not healthy, for /readyz and /v1/gateways. */
export type GatewayDownReason = 'ejected' | 'probe-failed'

export class Gateway {
  readonly id: string
  readonly url: string
  /** What its ETags prove (upstream/kinds.ts): needed to confirm a write that raced a move. */
  readonly kind: GatewayKind
  readonly site: string
  readonly capacityBytes: number
  readonly node: RendezvousNode
  /** Kind `s3`: its bucket mapping and credentials, which its pool signs with. */
  readonly s3: GatewayConfig['s3']
  /** An `https` gateway's CA and client certificate (upstream/connect.ts), and what they held when its pool was made. */
  readonly tls: GatewayConfig['tls']
  tlsFingerprint: string | null
  /** The gateway's pool; for kind `s3`, one that maps and signs every request (upstream/s3.ts). */
  pool: Dispatcher
  // Passive health (outlier detection, after Envoy): consecutive failures eject the gateway
  // for a time that doubles with each ejection in a row.
  consecutiveFailures = 0
  ejections = 0
  ejectedUntil = 0
  /** Active health: the last probes' verdict (upstream/prober.ts). */
  readonly probe = new ProbeState()
  inflight = 0
  /**
   * The planner is moving its copies off (an operator's drain, or an evacuation before a predicted
   * failure): reads go to another in-sync member while one can serve (proxy/drained.ts).
   */
  drained = false
  /**
   * Whether it has shown that it checks the digests a PUT declares and reports the MD5 of what it
   * stored (lib/block-headers.ts "Digests"): its last answer to an S3 upload that asked said so.
   * Learned rather than taken from `kind`, whose default is `ferry`: a gateway that is something
   * else never shows it, and the S3 front end keeps hashing the bodies it sends there.
   */
  reportsDigests = false
  // Running totals of what real traffic saw, for the planner's passive telemetry.
  requests = 0
  errors = 0
  latencyMsTotal = 0

  constructor (cfg: GatewayConfig, proxy: ProxySection) {
    this.id = cfg.id
    this.url = cfg.url
    this.kind = cfg.kind
    this.site = cfg.site
    this.capacityBytes = cfg.capacityBytes
    this.node = rendezvousNode(cfg.id)
    this.s3 = cfg.s3
    this.tls = cfg.tls
    this.tlsFingerprint = gatewayTlsFingerprint(cfg)
    this.pool = createPool(cfg, proxy)
  }

  isHealthy (now: number): boolean {
    return this.probe.up && now >= this.ejectedUntil
  }

  downReason (now: number): GatewayDownReason | undefined {
    if (!this.probe.up) return 'probe-failed'
    if (now < this.ejectedUntil) return 'ejected'
    return undefined
  }
}

/** The gateway sockets' write buffer before an upload is paused (see createPool). */
const UPSTREAM_HIGH_WATER_MARK = 256 * 1024

function createPool (cfg: GatewayConfig, proxy: ProxySection): Dispatcher {
  return gatewayPool(cfg, {
    connections: proxy.connectionsPerGateway,
    pipelining: 1,
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    connectTimeout: proxy.connectTimeoutMs,
    headersTimeout: proxy.upstreamHeadersTimeoutMs,
    bodyTimeout: proxy.bodyIdleTimeoutMs,
    // undici writes an upload chunk by chunk and pauses the client's body whenever the socket
    // says it is full; at its default (64 KiB) that is after every 64 KiB chunk a client sends.
    // (undici hands its connect options to net.connect; its types only list the TLS ones.)
    connect: { highWaterMark: UPSTREAM_HIGH_WATER_MARK } as Pool.Options['connect']
  })
}

export interface GatewaySetEvents {
  /** A gateway went up or down (passive or active). */
  change: [id: string, healthy: boolean]
}

/**
 * The gateways behind the proxy: one keep-alive pool each, and their health from two sources —
 * passive (what real requests see) and active (periodic probes). A gateway is healthy when its
 * probes pass and it is not ejected.
 */
export class GatewaySet extends EventEmitter<GatewaySetEvents> {
  private byId = new Map<string, Gateway>()
  private list: Gateway[] = []
  nodes: RendezvousNode[] = []
  private health: HealthSection
  private proxy: ProxySection
  private probeTimer: NodeJS.Timeout | undefined
  private readonly logger: Logger
  private readonly lastHealthy = new Map<string, boolean>()
  private ejectionTimers = new Map<string, NodeJS.Timeout>()
  private drainedIds: ReadonlySet<string> = new Set()
  private latencyModel: LatencyMatrix | undefined
  /**
   * readMs's answers by client site, then gateway site: the model's lookup builds a key string,
   * and the read order asks once per member of every replicated GET.
   */
  private readonly siteMs = new Map<string, Map<string, number>>()

  constructor (gateways: readonly GatewayConfig[], health: HealthSection, proxy: ProxySection, logger: Logger = silentLogger) {
    super()
    this.health = health
    this.proxy = proxy
    this.logger = logger
    this.apply(gateways)
  }

  get (id: string): Gateway | undefined { return this.byId.get(id) }

  /** ms from a client's site to a gateway's site (planner.latency): a read goes to the nearest in-sync member. Unset: own site first, then set order. */
  get latency (): LatencyMatrix | undefined { return this.latencyModel }
  set latency (model: LatencyMatrix | undefined) {
    this.latencyModel = model
    this.siteMs.clear()
  }

  /**
   * How far `g` is from a client at `site`, for the read order: whole ms by the latency model
   * (at most 9999), or without one 0 at the client's own site and 1 elsewhere.
   */
  readMs (site: string | undefined, g: Gateway): number {
    const model = this.latencyModel
    if (model === undefined) return site !== undefined && g.site === site ? 0 : 1
    const from = site ?? ''
    let row = this.siteMs.get(from)
    if (row === undefined) { row = new Map(); this.siteMs.set(from, row) }
    let ms = row.get(g.site)
    if (ms === undefined) { ms = Math.min(9999, Math.round(model.get(from, g.site))); row.set(g.site, ms) }
    return ms
  }
  all (): readonly Gateway[] { return this.list }

  isHealthy (id: string, now = Date.now()): boolean {
    return this.byId.get(id)?.isHealthy(now) ?? false
  }

  healthyCount (now = Date.now()): number {
    let n = 0
    for (const g of this.list) if (g.isHealthy(now)) n++
    return n
  }

  /** The gateways the planner drains (the store's drains), kept across config reloads. */
  setDrained (ids: ReadonlySet<string>): void {
    this.drainedIds = ids
    for (const g of this.list) g.drained = ids.has(g.id)
  }

  /** A response came back that says the gateway works (any status below 500). */
  reportSuccess (g: Gateway): void {
    if (g.consecutiveFailures === 0 && g.ejections === 0) return
    g.consecutiveFailures = 0
    g.ejections = 0
    this.notify(g)
  }

  /** A connect error, a reset, a timeout or a 5xx. */
  reportFailure (g: Gateway, reason: string): void {
    g.consecutiveFailures++
    const now = Date.now()
    if (g.consecutiveFailures < this.health.passive.failures || now < g.ejectedUntil) return
    const ms = Math.min(this.health.passive.maxEjectMs, this.health.passive.baseEjectMs * 2 ** g.ejections)
    g.ejections++
    g.ejectedUntil = now + ms
    // After the ejection one more failure re-ejects (for twice as long), one success clears it.
    g.consecutiveFailures = this.health.passive.failures - 1
    this.logger.warn({ gateway: g.id, reason, ejectMs: ms }, 'gateway ejected')
    this.notify(g)
    // Announce the return too, so route caches and DNS answers come back without waiting for traffic.
    clearTimeout(this.ejectionTimers.get(g.id))
    const t = setTimeout(() => { this.ejectionTimers.delete(g.id); this.notify(g) }, ms + 1)
    t.unref()
    this.ejectionTimers.set(g.id, t)
  }

  /** Applies a reloaded config: new gateways get pools, removed ones drain and close. */
  reconfigure (gateways: readonly GatewayConfig[], health: HealthSection, proxy: ProxySection): void {
    const poolChanged = JSON.stringify(proxy) !== JSON.stringify(this.proxy)
    this.health = health
    this.proxy = proxy
    this.apply(gateways, poolChanged)
    if (this.probeTimer !== undefined) { this.stopProbes(); this.startProbes() }
  }

  startProbes (): void {
    if (!this.health.active.enabled || this.probeTimer !== undefined) return
    const tick = (): void => { for (const g of this.list) void this.probe(g) }
    this.probeTimer = setInterval(tick, this.health.active.intervalMs)
    this.probeTimer.unref()
    tick()
  }

  stopProbes (): void {
    clearInterval(this.probeTimer)
    this.probeTimer = undefined
  }

  /** Closes every pool, waiting for requests in flight (bounded by the pools' own timeouts). */
  async close (): Promise<void> {
    this.stopProbes()
    for (const t of this.ejectionTimers.values()) clearTimeout(t)
    await Promise.all(this.list.map(g => g.pool.close()))
  }

  async destroy (): Promise<void> {
    this.stopProbes()
    for (const t of this.ejectionTimers.values()) clearTimeout(t)
    await Promise.all(this.list.map(g => g.pool.destroy()))
  }

  private async probe (g: Gateway): Promise<void> {
    const a = this.health.active
    const error = await probeOnce(g.pool, a.path, a.timeoutMs)
    if (this.byId.get(g.id) !== g) return // removed by a reload while the probe ran
    if (!g.probe.record(error, a)) return
    if (!g.probe.up) this.logger.warn({ gateway: g.id, error }, 'gateway failed its health probes')
    this.notify(g)
  }

  private apply (gateways: readonly GatewayConfig[], rebuildPools = false): void {
    const next = new Map<string, Gateway>()
    for (const cfg of gateways) {
      const old = this.byId.get(cfg.id)
      if (old !== undefined && poolStillServes(old, cfg) && old.site === cfg.site && old.capacityBytes === cfg.capacityBytes) {
        // The same paths may hold renewed certificates: a reload (SIGHUP) takes them.
        const fingerprint = gatewayTlsFingerprint(cfg)
        if (rebuildPools || (fingerprint !== null && fingerprint !== old.tlsFingerprint)) {
          old.tlsFingerprint = fingerprint
          const oldPool = old.pool
          old.pool = createPool(cfg, this.proxy)
          void oldPool.close() // lets requests in flight finish on the old pool
        }
        next.set(cfg.id, old)
      } else {
        next.set(cfg.id, new Gateway(cfg, this.proxy))
        if (old !== undefined) void old.pool.close()
      }
    }
    for (const [id, g] of this.byId) {
      if (!next.has(id)) {
        void g.pool.close()
        this.lastHealthy.delete(id)
      }
    }
    this.byId = next
    this.list = [...next.values()]
    this.nodes = this.list.map(g => g.node)
    for (const g of this.list) g.drained = this.drainedIds.has(g.id)
    for (const g of this.list) this.notify(g)
  }

  private notify (g: Gateway): void {
    const healthy = g.isHealthy(Date.now())
    if (this.lastHealthy.get(g.id) === healthy) return
    this.lastHealthy.set(g.id, healthy)
    this.emit('change', g.id, healthy)
  }
}
