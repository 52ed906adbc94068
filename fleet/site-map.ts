import net from 'node:net'
import type { SiteConfig } from './schema.js'
import { ipv4ToInt, ipv6ToBigInt } from '../lib/ip.js'

/**
 * Longest-prefix match from a client address to its site. The proxy calls this on every
 * request and DNS on every query, so IPv4 lookups are integer masks into one Map per prefix
 * length (no allocation beyond the parse); IPv6 uses BigInt, which is rarer on these paths.
 */
export class SiteMap {
  // Prefix lengths in descending order, so the first hit is the longest match.
  private readonly v4: Array<{ bits: number, mask: number, nets: Map<number, string> }> = []
  private readonly v6: Array<{ bits: number, mask: bigint, nets: Map<bigint, string> }> = []
  readonly names: readonly string[]

  constructor (sites: readonly SiteConfig[]) {
    this.names = sites.map(s => s.name)
    const v4 = new Map<number, Map<number, string>>()
    const v6 = new Map<number, Map<bigint, string>>()
    for (const site of sites) {
      for (const cidr of site.subnets) {
        const [ip, bitsText] = cidr.split('/') as [string, string]
        const bits = Number(bitsText)
        if (net.isIPv4(ip)) {
          const mask = maskV4(bits)
          let nets = v4.get(bits)
          if (!nets) v4.set(bits, nets = new Map())
          const key = (ipv4ToInt(ip) & mask) >>> 0
          if (!nets.has(key)) nets.set(key, site.name)
        } else {
          const mask = maskV6(bits)
          let nets = v6.get(bits)
          if (!nets) v6.set(bits, nets = new Map())
          const key = ipv6ToBigInt(ip) & mask
          if (!nets.has(key)) nets.set(key, site.name)
        }
      }
    }
    for (const [bits, nets] of [...v4].sort((a, b) => b[0] - a[0])) this.v4.push({ bits, mask: maskV4(bits), nets })
    for (const [bits, nets] of [...v6].sort((a, b) => b[0] - a[0])) this.v6.push({ bits, mask: maskV6(bits), nets })
  }

  /** The site of `address` (IPv4, IPv6 or IPv4-mapped IPv6), or undefined when no subnet matches. */
  siteOf (address: string): string | undefined {
    let ip = address
    if (ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7))) ip = ip.slice(7)
    if (net.isIPv4(ip)) return this.lookupV4(ipv4ToInt(ip))
    if (net.isIPv6(ip)) return this.lookupV6(ipv6ToBigInt(ip))
    return undefined
  }

  lookupV4 (addr: number): string | undefined {
    for (const { mask, nets } of this.v4) {
      const site = nets.get((addr & mask) >>> 0)
      if (site !== undefined) return site
    }
    return undefined
  }

  lookupV6 (addr: bigint): string | undefined {
    for (const { mask, nets } of this.v6) {
      const site = nets.get(addr & mask)
      if (site !== undefined) return site
    }
    return undefined
  }
}

function maskV4 (bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
}

function maskV6 (bits: number): bigint {
  return bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n)
}


