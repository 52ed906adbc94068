import net from 'node:net'
import type { FerryConfig } from '../config/schema.js'
import { SiteMap } from '../fleet/site-map.js'
import { latencyMatrix, type LatencyMatrix } from '../fleet/latency.js'
import type { DnsChange, DnsView, EdgeSet, SrvTarget } from '../dns/view.js'
import type { LocationCache, LocationChange } from '../state/cache.js'
import type { GatewayHealthView } from '../state/gateway-health.js'

interface VolumeEntry {
  /** Gateway id → number of the volume's blocks located there. */
  gateways: Map<string, number>
}

/**
 * DNS answers derived from where the data is. A client is sent to the edge that gives it the
 * lowest expected latency to the volume's data in ferry's latency model (`planner.latency`, the
 * one the planner places by): the client's link to the edge, plus the edge's link to the
 * gateways holding the volume's blocks, weighted by how many blocks each holds (every in-sync
 * member of a block's replica set counts; healthy holders only, while one exists). A volume
 * spread over sites is one name for blocks in many places: the edge of the site holding most of
 * it (the rule before) sent a client whose blocks were elsewhere over two WAN links, where its
 * own site's edge costs one — in a latency model that keeps the triangle inequality, the own
 * edge is never worse. Near-equal costs (within `TIE_MS` or `TIE_RATIO`) go to the site holding
 * most of the volume, then the client's own site, so a volume held at one site is still
 * answered with that site's edge: answers follow the data as blocks move. The per-volume counts
 * are kept incrementally from the location cache's changes, so a query never scans blocks.
 */
/** Expected latencies closer than this many ms, or this fraction of the lower one, are a tie. */
const TIE_MS = 1
const TIE_RATIO = 0.02

interface EdgeChoice { cost: number, held: number, own: boolean }

/** `a` beats `b`: clearly cheaper, or as cheap and holding more of the volume, or as cheap and as full and the client's own. */
function better (a: EdgeChoice, b: EdgeChoice): boolean {
  const tie = Math.max(TIE_MS, TIE_RATIO * Math.min(a.cost, b.cost))
  if (a.cost < b.cost - tie) return true
  if (a.cost > b.cost + tie) return false
  if (a.held !== b.held) return a.held > b.held
  return a.own && !b.own
}

export class FleetDnsView implements DnsView {
  private config: FerryConfig
  private sites: SiteMap
  private siteEdges = new Map<string, EdgeSet>()
  private allEdges: EdgeSet = { v4: [], v6: [] }
  private gatewaySite = new Map<string, string>()
  private latency: LatencyMatrix
  private readonly volumes = new Map<string, VolumeEntry>()
  private readonly listeners = new Set<(change?: DnsChange) => void>()
  private readonly unsubscribe: Array<() => void> = []

  constructor (config: FerryConfig, private readonly locations: LocationCache, private readonly health: GatewayHealthView, private proxyPort: number) {
    this.config = config
    this.sites = new SiteMap(config.sites)
    this.latency = latencyMatrix(config.planner.latency.between, config.planner.latency)
    this.index(config)
    this.unsubscribe.push(locations.onChange(c => { this.onLocation(c) }))
    this.unsubscribe.push(health.onChange(() => { this.emit() }))
  }

  reconfigure (config: FerryConfig, proxyPort: number): void {
    this.config = config
    this.proxyPort = proxyPort
    this.sites = new SiteMap(config.sites)
    this.latency = latencyMatrix(config.planner.latency.between, config.planner.latency)
    this.index(config)
    this.emit()
  }

  close (): void {
    for (const u of this.unsubscribe) u()
  }

  volumeEdges (volume: string, site: string | undefined): EdgeSet | undefined {
    const entry = this.volumes.get(volume)
    if (entry === undefined) return this.newVolumeEdges(site)
    // Blocks per site, of healthy holders only while there is one: an edge is never chosen
    // for data on a gateway that is ejected, degraded or draining when healthy copies exist.
    let healthy = false
    for (const [gateway, count] of entry.gateways) if (count > 0 && this.health.isHealthy(gateway)) { healthy = true; break }
    const bySite = new Map<string, number>()
    let total = 0
    for (const [gateway, count] of entry.gateways) {
      if (count <= 0 || (healthy && !this.health.isHealthy(gateway))) continue
      const at = this.gatewaySite.get(gateway)
      if (at === undefined) continue
      bySite.set(at, (bySite.get(at) ?? 0) + count)
      total += count
    }
    if (total === 0) return entry.gateways.size === 0 ? undefined : { v4: [], v6: [] }
    let best: { edges: EdgeSet, cost: number, held: number, own: boolean } | undefined
    for (const [edgeSite, edges] of this.siteEdges) {
      if (edges.v4.length + edges.v6.length === 0) continue
      let data = 0
      for (const [at, n] of bySite) data += n * this.latency.get(edgeSite, at)
      // A client in no site sees every edge alike: the data decides.
      const cost = (site === undefined ? 0 : this.latency.get(site, edgeSite)) + data / total
      const c = { edges, cost, held: bySite.get(edgeSite) ?? 0, own: edgeSite === site }
      if (best === undefined || better(c, best)) best = c
    }
    return best?.edges ?? { v4: [], v6: [] }
  }

  /**
   * A volume that holds no block yet. With the S3 front end on, every bucket name is addressable
   * as `<bucket>.<zone>` before it holds anything — CreateBucket and the first PUT of
   * virtual-hosted clients go to that name — so it resolves, to the edge of the client's own
   * site (where a first write is placed before a model says otherwise), else to every edge.
   * Without S3 an unknown volume is NXDOMAIN.
   */
  private newVolumeEdges (site: string | undefined): EdgeSet | undefined {
    if (!this.config.s3.enabled) return undefined
    const own = site !== undefined ? this.siteEdges.get(site) : undefined
    if (own !== undefined && own.v4.length + own.v6.length > 0) return own
    return this.allEdges
  }

  gatewayEdges (gateway: string): EdgeSet | undefined {
    for (const [id, site] of this.gatewaySite) {
      if (id.toLowerCase() === gateway) return this.siteEdges.get(site) ?? { v4: [], v6: [] }
    }
    return undefined
  }

  proxies (): readonly SrvTarget[] {
    const out: SrvTarget[] = []
    for (const s of this.config.sites) {
      const edges = this.siteEdges.get(s.name)
      if (edges === undefined || edges.v4.length + edges.v6.length === 0) continue
      out.push({ target: `${s.name.toLowerCase()}.edge.${this.config.dns.zone}`, port: this.proxyPort, priority: 0, weight: 1, v4: edges.v4, v6: edges.v6 })
    }
    return out
  }

  siteOf (address: string): string | undefined {
    return this.sites.siteOf(address)
  }

  onChange (listener: (change?: DnsChange) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  private onLocation (c: LocationChange): void {
    const volume = c.volume.toLowerCase()
    // Every in-sync member of a replica set serves the block, so each counts: a client is sent to
    // the edge of the nearest healthy one.
    if (c.previous !== null) for (const g of c.previous.inSync) this.count(volume, g, -1)
    if (c.location !== null) for (const g of c.location.inSync) this.count(volume, g, +1)
    this.emit({ volumes: [volume] })
  }

  private count (volume: string, gateway: string, delta: number): void {
    let e = this.volumes.get(volume)
    if (e === undefined) this.volumes.set(volume, e = { gateways: new Map() })
    const n = (e.gateways.get(gateway) ?? 0) + delta
    if (n > 0) e.gateways.set(gateway, n)
    else e.gateways.delete(gateway)
    if (e.gateways.size === 0) this.volumes.delete(volume)
  }

  private index (config: FerryConfig): void {
    this.siteEdges = new Map(config.sites.map(s => [s.name, {
      v4: s.edges.filter(a => net.isIPv4(a)),
      v6: s.edges.filter(a => net.isIPv6(a))
    }]))
    this.gatewaySite = new Map(config.gateways.map(g => [g.id, g.site]))
    const edges = [...this.siteEdges.values()]
    this.allEdges = { v4: [...new Set(edges.flatMap(e => e.v4))], v6: [...new Set(edges.flatMap(e => e.v6))] }
  }

  private emit (change?: DnsChange): void {
    for (const l of this.listeners) l(change)
  }
}
