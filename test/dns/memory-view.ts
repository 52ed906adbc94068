import net from 'node:net'
import { SiteMap } from '../../fleet/site-map.js'
import type { SiteConfig } from '../../fleet/schema.js'
import type { DnsChange, DnsView, EdgeSet, SrvTarget } from '../../dns/view.js'

/**
 * A small, real DnsView over in-memory data, shaped like the one the DNS role builds from the
 * route table: sites (client subnets and the edges in front of them, resolved with the real
 * SiteMap), gateways (a site and a health flag), volumes (the gateways holding a copy, in the
 * affinity's order of preference) and proxies. Every mutator fires onChange, as the real
 * implementation must: scoped to the volume for volume changes, unscoped for the rest.
 *
 * Choice of edge for a volume and a client site:
 *   1. candidates = the volume's gateways that are healthy; only if none is, all of them
 *      (never answer an unhealthy gateway's edge while a healthy one holds the volume);
 *   2. the first candidate at the client's own site, else the first candidate;
 *   3. answer the edges of that gateway's site.
 */
export class MemoryView implements DnsView {
  private sites: SiteConfig[]
  private siteMap: SiteMap
  private readonly gateways = new Map<string, { site: string, healthy: boolean }>()
  private readonly volumes = new Map<string, string[]>()
  private srv: SrvTarget[] = []
  private readonly listeners = new Set<(change?: DnsChange) => void>()
  /** How many times volumeEdges was called: tests use it to see the cache at work. */
  volumeLookups = 0

  constructor (sites: SiteConfig[]) {
    this.sites = sites
    this.siteMap = new SiteMap(sites)
  }

  setSites (sites: SiteConfig[]): void {
    this.sites = sites
    this.siteMap = new SiteMap(sites)
    this.changed()
  }

  setGateway (id: string, site: string, healthy = true): void {
    this.gateways.set(id, { site, healthy })
    this.changed()
  }

  setHealthy (id: string, healthy: boolean): void {
    const g = this.gateways.get(id)
    if (g === undefined) throw new Error(`no gateway ${id}`)
    g.healthy = healthy
    this.changed()
  }

  /** The gateways holding `volume`, most preferred first. */
  setVolume (volume: string, gateways: string[]): void {
    this.volumes.set(volume.toLowerCase(), gateways)
    this.changed({ volumes: [volume] })
  }

  deleteVolume (volume: string): void {
    this.volumes.delete(volume.toLowerCase())
    this.changed({ volumes: [volume] })
  }

  setProxies (proxies: SrvTarget[]): void {
    this.srv = proxies
    this.changed()
  }

  volumeEdges (volume: string, site: string | undefined): EdgeSet | undefined {
    this.volumeLookups++
    const holders = this.volumes.get(volume)
    if (holders === undefined) return undefined
    const known = holders.filter(g => this.gateways.has(g))
    const healthy = known.filter(g => this.gateways.get(g)?.healthy === true)
    const candidates = healthy.length > 0 ? healthy : known
    const chosen = candidates.find(g => this.gateways.get(g)?.site === site) ?? candidates[0]
    return chosen === undefined ? { v4: [], v6: [] } : this.edgesOfSite(this.gateways.get(chosen)?.site)
  }

  gatewayEdges (gateway: string): EdgeSet | undefined {
    const g = this.gateways.get(gateway)
    return g === undefined ? undefined : this.edgesOfSite(g.site)
  }

  proxies (): readonly SrvTarget[] {
    return this.srv
  }

  siteOf (address: string): string | undefined {
    return this.siteMap.siteOf(address)
  }

  onChange (listener: (change?: DnsChange) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  get listenerCount (): number { return this.listeners.size }

  private edgesOfSite (name: string | undefined): EdgeSet {
    const edges = this.sites.find(s => s.name === name)?.edges ?? []
    return { v4: edges.filter(e => net.isIPv4(e)), v6: edges.filter(e => net.isIPv6(e)) }
  }

  private changed (change?: DnsChange): void {
    for (const l of this.listeners) l(change)
  }
}

/**
 * The fleet most tests use: three sites, each with client subnets in both families (with a
 * /56 and a /20 among them, the prefixes dns2's ECS decoder gets wrong) and its own edges.
 */
export function sampleView (): MemoryView {
  const view = new MemoryView([
    { name: 'east', subnets: ['10.1.0.0/16', '2001:db8:e::/48'], edges: ['192.0.2.1', '2001:db8:e0::1'] },
    { name: 'west', subnets: ['10.2.0.0/20', '2001:db8:1234:5600::/56', '2001:1000::/20'], edges: ['192.0.2.2', '2001:db8:f0::2'] },
    { name: 'home', subnets: ['127.0.0.0/8', '::1/128'], edges: ['192.0.2.3', '2001:db8:10::3'] }
  ])
  view.setGateway('gw-east', 'east')
  view.setGateway('gw-west', 'west')
  view.setGateway('gw-home', 'home')
  view.setVolume('vol1', ['gw-east', 'gw-west'])
  view.setVolume('vol2', ['gw-west'])
  view.setVolume('solo', ['gw-home'])
  view.setProxies([
    { target: 'edge-a.sandbox.ferry.test', port: 8080, priority: 10, weight: 5, v4: ['192.0.2.1'], v6: ['2001:db8:e0::1'] },
    { target: 'edge-b.sandbox.ferry.test', port: 8080, priority: 20, weight: 5, v4: ['192.0.2.2'] }
  ])
  return view
}
