import net from 'node:net'
import { isValidId } from '../lib/ids.js'
import type { DnsConfig } from './config.js'
import type { DnsView, EdgeSet } from './view.js'
import { addressBytes } from './addr.js'
import { CLASS_ANY, CLASS_IN, RCODE, TYPE, type Question } from './wire.js'

/**
 * The zone's content and the rules of an authoritative answer: which names exist, what each
 * answers for each type, NXDOMAIN vs NODATA, minimal ANY. Pure logic over the view; knows
 * nothing of sockets, caching or wire encoding.
 *
 * Names (all relative to the zone, case-insensitive):
 *   @                  SOA, NS
 *   <ns host>          A/AAAA of the configured name servers inside the zone
 *   <srv target>       A/AAAA of proxies the view names inside the zone
 *   _ferry._tcp        SRV of the proxies (_tcp itself exists, empty)
 *   <gateway>.gw       A/AAAA of the edges in front of a gateway (gw itself exists, empty)
 *   <volume>           A/AAAA of the edge for the client's site (everything else)
 * Earlier lines win: a volume called "gw" or "ns1" is shadowed.
 */

/** Record shapes in dns2's field names, so encode.ts can hand them to dns2's encoder as they are. */
export type Rr =
  | { readonly name: string, readonly type: 1, readonly ttl: number, readonly address: string }
  | { readonly name: string, readonly type: 28, readonly ttl: number, readonly address: string }
  | { readonly name: string, readonly type: 2, readonly ttl: number, readonly ns: string }
  | {
    readonly name: string, readonly type: 6, readonly ttl: number, readonly primary: string, readonly admin: string,
    readonly serial: number, readonly refresh: number, readonly retry: number, readonly expiration: number, readonly minimum: number
  }
  | { readonly name: string, readonly type: 33, readonly ttl: number, readonly priority: number, readonly weight: number, readonly port: number, readonly target: string }

export interface Answer {
  readonly rcode: number
  /** Authoritative: set for every answer about a name in the zone; clear for REFUSED. */
  readonly aa: boolean
  readonly answers: readonly Rr[]
  readonly authorities: readonly Rr[]
  readonly additionals: readonly Rr[]
  /**
   * The answer was chosen for the client's site: cache it per site and echo the client subnet
   * with SCOPE = SOURCE PREFIX-LENGTH. Otherwise one answer serves everyone, SCOPE 0
   * (RFC 7871 §7.2.1).
   */
  readonly siteDependent: boolean
}

interface HostAddresses { readonly v4: readonly string[], readonly v6: readonly string[], readonly ttl: number }

const EMPTY: readonly Rr[] = []
// Names ferry's own code puts into the zone; a DNS label of any other shape cannot be one.
const LDH = /^[a-z0-9_-]+$/

export class Zone {
  readonly origin: string
  private readonly originLabels: readonly string[]
  private readonly cfg: DnsConfig
  private readonly view: DnsView
  private readonly nameservers: ReadonlyArray<{ name: string, addresses: readonly string[] }>
  private serial: number
  // In-zone host names (name servers, SRV targets) with their addresses; rebuilt after a change.
  private hosts: Map<string, HostAddresses> | undefined
  private parents: Set<string> = new Set()

  constructor (cfg: DnsConfig, view: DnsView) {
    this.cfg = cfg
    this.view = view
    this.origin = cfg.zone
    this.originLabels = cfg.zone.split('.')
    const first = cfg.listen[0]?.address
    this.nameservers = cfg.nameservers.length > 0
      ? cfg.nameservers
      : [{ name: `ns1.${cfg.zone}`, addresses: first !== undefined && first !== '0.0.0.0' && first !== '::' ? [first] : [] }]
    this.serial = cfg.soa.serial ?? Math.floor(Date.now() / 1000)
  }

  /** SOA serial currently served. */
  get soaSerial (): number { return this.serial }

  /**
   * The data changed: move the serial forward (to the current Unix time, or by one when
   * changes come faster than seconds) and, unless only volumes changed, forget derived host
   * names (they come from the proxies).
   */
  invalidate (everything: boolean): void {
    this.serial = Math.max((this.serial + 1) >>> 0, Math.floor(Date.now() / 1000)) >>> 0
    if (everything) this.hosts = undefined
  }

  /**
   * Answers one question. `site` is called only when the answer depends on the client's site,
   * so queries for anything but volume addresses never pay for the site lookup.
   */
  resolve (q: Question, site: () => string | undefined): Answer {
    const labels = q.labels
    const n = labels.length - this.originLabels.length
    if ((q.qclass !== CLASS_IN && q.qclass !== CLASS_ANY) || n < 0 || !this.inZone(labels, n)) {
      return { rcode: RCODE.REFUSED, aa: false, answers: EMPTY, authorities: EMPTY, additionals: EMPTY, siteDependent: false }
    }
    const type = q.type
    // Zone transfers are not offered: the zone is computed, not stored.
    if (type === TYPE.AXFR || type === TYPE.IXFR) {
      return { rcode: RCODE.REFUSED, aa: false, answers: EMPTY, authorities: EMPTY, additionals: EMPTY, siteDependent: false }
    }
    const name = n === 0 ? this.origin : labels.slice(0, n).join('.') + '.' + this.origin

    if (n === 0) return this.apex(type)

    const host = this.hostTable().get(name)
    if (host !== undefined) return this.addresses(name, type, host, host.ttl, false)

    const first = labels[0] as string
    const last = labels[n - 1] as string
    if (n === 2 && first === '_ferry' && last === '_tcp') return this.srv(name, type)
    // "_tcp" and "gw" exist as empty non-terminals (RFC 8020: NODATA, not NXDOMAIN), as do the
    // parents of in-zone host names; nothing else lives under "_tcp" or deeper under "gw".
    if (n === 1 && (first === '_tcp' || first === 'gw')) return this.nodata()
    if (this.hostParents.has(name)) return this.nodata()
    if (last === '_tcp') return this.nxdomain()
    if (last === 'gw') {
      if (n !== 2 || !LDH.test(first)) return this.nxdomain()
      const edges = this.view.gatewayEdges(first)
      return edges === undefined ? this.nxdomain() : this.addresses(name, type, edges, this.cfg.ttl, false)
    }

    // A volume. Ids may contain dots, so the volume is every label left of the zone.
    for (let i = 0; i < n; i++) if (!LDH.test(labels[i] as string)) return this.nxdomain()
    const volume = n === 1 ? first : labels.slice(0, n).join('.')
    if (!isValidId(volume)) return this.nxdomain()
    if (type !== TYPE.A && type !== TYPE.AAAA && type !== TYPE.ANY) {
      // Whether the name exists does not depend on the site; which address it has does.
      return this.view.volumeEdges(volume, undefined) === undefined ? this.nxdomain() : this.nodata()
    }
    const edges = this.view.volumeEdges(volume, site())
    if (edges === undefined) return this.nxdomain()
    return this.addresses(name, type, edges, this.cfg.ttl, true)
  }

  private inZone (labels: readonly string[], n: number): boolean {
    for (let i = 0; i < this.originLabels.length; i++) if (labels[n + i] !== this.originLabels[i]) return false
    return true
  }

  private apex (type: number): Answer {
    const soa = [this.soa(this.cfg.apexTtl)]
    // RFC 8482: ANY gets one RRset, here the SOA.
    if (type === TYPE.SOA || type === TYPE.ANY) return this.positive(soa, EMPTY, false)
    if (type === TYPE.NS) {
      const answers: Rr[] = this.nameservers.map(ns => ({ name: this.origin, type: TYPE.NS, ttl: this.cfg.apexTtl, ns: ns.name }))
      const glue: Rr[] = []
      for (const ns of this.nameservers) {
        const host = this.hostTable().get(ns.name)
        if (host === undefined) continue
        for (const a of host.v4) glue.push({ name: ns.name, type: TYPE.A, ttl: host.ttl, address: a })
        for (const a of host.v6) glue.push({ name: ns.name, type: TYPE.AAAA, ttl: host.ttl, address: a })
      }
      return this.positive(answers, glue, false)
    }
    return this.nodata()
  }

  private srv (name: string, type: number): Answer {
    if (type !== TYPE.SRV && type !== TYPE.ANY) return this.nodata()
    const answers: Rr[] = []
    const extra: Rr[] = []
    const hosts = this.hostTable()
    const seen = new Set<string>()
    for (const p of this.view.proxies()) {
      const target = p.target.toLowerCase().replace(/\.$/, '')
      answers.push({ name, type: TYPE.SRV, ttl: this.cfg.ttl, priority: p.priority ?? 0, weight: p.weight ?? 0, port: p.port, target })
      const host = hosts.get(target)
      if (host === undefined || seen.has(target)) continue
      seen.add(target)
      for (const a of host.v4) extra.push({ name: target, type: TYPE.A, ttl: host.ttl, address: a })
      for (const a of host.v6) extra.push({ name: target, type: TYPE.AAAA, ttl: host.ttl, address: a })
    }
    return answers.length === 0 ? this.nodata() : this.positive(answers, extra, false)
  }

  private addresses (name: string, type: number, edges: EdgeSet | HostAddresses, ttl: number, siteDependent: boolean): Answer {
    const v4 = type === TYPE.A || (type === TYPE.ANY && edges.v4.length > 0)
    const v6 = type === TYPE.AAAA || (type === TYPE.ANY && edges.v4.length === 0)
    const answers: Rr[] = []
    // Addresses the view got wrong (not an address, wrong family) are left out, not fatal.
    if (v4) for (const a of edges.v4) if (addressBytes(a)?.length === 4) answers.push({ name, type: TYPE.A, ttl, address: a })
    if (v6) for (const a of edges.v6) if (addressBytes(a)?.length === 16) answers.push({ name, type: TYPE.AAAA, ttl, address: a })
    if (answers.length === 0) return { ...this.nodata(), siteDependent }
    return this.positive(answers, EMPTY, siteDependent)
  }

  private positive (answers: readonly Rr[], additionals: readonly Rr[], siteDependent: boolean): Answer {
    return { rcode: RCODE.NOERROR, aa: true, answers, authorities: EMPTY, additionals, siteDependent }
  }

  /** NODATA: the name exists, not with that type (RFC 2308 §2.2): NOERROR, SOA in authority. */
  private nodata (): Answer {
    return { rcode: RCODE.NOERROR, aa: true, answers: EMPTY, authorities: [this.negativeSoa()], additionals: EMPTY, siteDependent: false }
  }

  private nxdomain (): Answer {
    return { rcode: RCODE.NXDOMAIN, aa: true, answers: EMPTY, authorities: [this.negativeSoa()], additionals: EMPTY, siteDependent: false }
  }

  // RFC 2308 §3: the SOA in a negative answer carries TTL min(SOA TTL, MINIMUM), which is what
  // resolvers cache the negative answer for.
  private negativeSoa (): Rr {
    return this.soa(Math.min(this.cfg.apexTtl, this.cfg.soa.minimum))
  }

  private soa (ttl: number): Rr {
    const s = this.cfg.soa
    return {
      name: this.origin,
      type: TYPE.SOA,
      ttl,
      primary: s.mname ?? this.nameservers[0]?.name ?? `ns1.${this.origin}`,
      admin: s.rname ?? `hostmaster.${this.origin}`,
      serial: this.serial,
      refresh: s.refresh,
      retry: s.retry,
      expiration: s.expire,
      minimum: s.minimum
    }
  }

  private hostTable (): Map<string, HostAddresses> {
    if (this.hosts !== undefined) return this.hosts
    const hosts = new Map<string, HostAddresses>()
    const suffix = '.' + this.origin
    for (const ns of this.nameservers) {
      if (!ns.name.endsWith(suffix)) continue
      hosts.set(ns.name, {
        v4: ns.addresses.filter(a => net.isIPv4(a)),
        v6: ns.addresses.filter(a => net.isIPv6(a)),
        ttl: this.cfg.apexTtl
      })
    }
    for (const p of this.view.proxies()) {
      const target = p.target.toLowerCase().replace(/\.$/, '')
      if (!target.endsWith(suffix) || hosts.has(target)) continue
      hosts.set(target, { v4: (p.v4 ?? []).filter(a => net.isIPv4(a)), v6: (p.v6 ?? []).filter(a => net.isIPv6(a)), ttl: this.cfg.ttl })
    }
    // Names between the apex and a host ("edge" for "a.edge.<zone>") exist without records.
    const parents = new Set<string>()
    for (const name of hosts.keys()) {
      for (let dot = name.indexOf('.'); dot >= 0 && dot < name.length - suffix.length; dot = name.indexOf('.', dot + 1)) {
        parents.add(name.slice(dot + 1))
      }
    }
    parents.delete(this.origin)
    this.parents = parents
    this.hosts = hosts
    return hosts
  }

  private get hostParents (): Set<string> {
    this.hostTable()
    return this.parents
  }
}
