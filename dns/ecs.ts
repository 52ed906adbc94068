import net from 'node:net'
import { ipv4Bytes, ipv6Bytes } from '../lib/ip.js'
import { DnsWireError } from './errors.js'

export { ipv4Bytes, ipv6Bytes }

/**
 * The EDNS Client Subnet option (RFC 7871 §6), our own codec.
 *
 * dns2 3.0.0 gets IPv6 wrong both ways, which is why ferry does not use its ECS code:
 *  - decoding reads the address 16 bits at a time while counting down the option length by 2,
 *    so any IPv6 prefix whose address field has an odd number of octets (/56 → 7 octets,
 *    /20 → 3, /8 → 1 …) never reaches zero: it reads past the option into the next record
 *    until a RangeError, which dns2 swallows, leaving the packet half-parsed;
 *  - `Packet.Resource.EDNS.ECS('2001:db8::/56')` always sets FAMILY 1 (IPv4), so the encoder
 *    splits an IPv6 address on "." and writes garbage; the prefix defaults to 32 even for IPv6.
 *
 *     +0 (MSB)                            +1 (LSB)
 *  0: |                 FAMILY (1 = IPv4, 2 = IPv6)                  |
 *  2: |   SOURCE PREFIX-LENGTH     |     SCOPE PREFIX-LENGTH         |
 *  4: |  ADDRESS: ceil(SOURCE PREFIX-LENGTH / 8) octets, bits past the prefix zero ...
 */

export const ECS_FAMILY_IPV4 = 1
export const ECS_FAMILY_IPV6 = 2

export interface ClientSubnet {
  readonly family: 1 | 2
  readonly sourcePrefix: number
  readonly scopePrefix: number
  /** The full address, 4 or 16 octets, zero past the prefix. */
  readonly address: Buffer
}

/**
 * Decodes an ECS option body of `length` octets at `offset`. Throws DnsWireError
 * `FERRY_DNS_BAD_ECS` for what RFC 7871 §6 says to answer with FORMERR: an unknown family, a prefix
 * longer than the address, too few or too many address octets, address bits set past the
 * source prefix, or a non-zero scope in a query. With `inResponse`, a scope is allowed (for
 * clients and tests reading ferry's answers).
 */
export function decodeEcs (buf: Buffer, offset: number, length: number, inResponse = false): ClientSubnet {
  if (length < 4) throw DnsWireError.of('FERRY_DNS_BAD_ECS', `client subnet option of ${length} octets (at least 4)`)
  const family = buf.readUInt16BE(offset)
  const sourcePrefix = buf[offset + 2] as number
  const scopePrefix = buf[offset + 3] as number
  if (family !== ECS_FAMILY_IPV4 && family !== ECS_FAMILY_IPV6) throw DnsWireError.of('FERRY_DNS_BAD_ECS', `unknown client subnet family ${family}`)
  const width = family === ECS_FAMILY_IPV4 ? 4 : 16
  if (sourcePrefix > width * 8) throw DnsWireError.of('FERRY_DNS_BAD_ECS', `source prefix /${sourcePrefix} is longer than the address`)
  if (scopePrefix !== 0 && !inResponse) throw DnsWireError.of('FERRY_DNS_BAD_ECS', 'scope prefix must be 0 in a query')
  const octets = (sourcePrefix + 7) >>> 3
  if (length - 4 !== octets) throw DnsWireError.of('FERRY_DNS_BAD_ECS', `/${sourcePrefix} needs ${octets} address octets, got ${length - 4}`)
  const address = Buffer.alloc(width)
  buf.copy(address, 0, offset + 4, offset + 4 + octets)
  const spare = octets * 8 - sourcePrefix
  if (spare > 0 && ((address[octets - 1] as number) & ((1 << spare) - 1)) !== 0) {
    throw DnsWireError.of('FERRY_DNS_BAD_ECS', `address has bits set past /${sourcePrefix}`)
  }
  return { family, sourcePrefix, scopePrefix, address }
}

/** Octets the option body (without the 4-octet option header) takes for a given family and prefix. */
export function ecsBodyLength (sourcePrefix: number): number {
  return 4 + ((sourcePrefix + 7) >>> 3)
}

/**
 * Writes the whole option (code, length, body) at `offset` in `out` with the given scope;
 * returns the offset after it. Used for the response echo (RFC 7871 §7.2.1: FAMILY, SOURCE
 * PREFIX-LENGTH and ADDRESS as in the query).
 */
export function writeEcsOption (out: Buffer, offset: number, ecs: ClientSubnet, scopePrefix: number): number {
  const body = ecsBodyLength(ecs.sourcePrefix)
  out.writeUInt16BE(8, offset)
  out.writeUInt16BE(body, offset + 2)
  out.writeUInt16BE(ecs.family, offset + 4)
  out[offset + 6] = ecs.sourcePrefix
  out[offset + 7] = scopePrefix
  ecs.address.copy(out, offset + 8, 0, body - 4)
  return offset + 4 + body
}

/** Encodes the option body alone (family, prefixes, address). */
export function encodeEcsBody (ecs: ClientSubnet): Buffer {
  const out = Buffer.alloc(4 + ecsBodyLength(ecs.sourcePrefix))
  writeEcsOption(out, 0, ecs, ecs.scopePrefix)
  return out.subarray(4)
}

/**
 * Builds a ClientSubnet from text such as "192.0.2.0/24" or "2001:db8:1200::/56"; host bits
 * past the prefix are cleared (as a resolver must before sending). Throws on bad input.
 */
export function parseSubnet (cidr: string): ClientSubnet {
  const slash = cidr.indexOf('/')
  const ip = slash < 0 ? cidr : cidr.slice(0, slash)
  const family = net.isIPv4(ip) ? ECS_FAMILY_IPV4 : net.isIPv6(ip) ? ECS_FAMILY_IPV6 : 0
  if (family === 0) throw new TypeError(`not an IP address: ${ip}`)
  const width = family === ECS_FAMILY_IPV4 ? 32 : 128
  const prefix = slash < 0 ? width : Number(cidr.slice(slash + 1))
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > width) throw new TypeError(`bad prefix length in ${cidr}`)
  const address = family === ECS_FAMILY_IPV4 ? ipv4Bytes(ip) : ipv6Bytes(ip)
  maskInPlace(address, prefix)
  return { family, sourcePrefix: prefix, scopePrefix: 0, address }
}

/** Clears every bit of `address` past `prefix`. */
export function maskInPlace (address: Buffer, prefix: number): void {
  for (let i = 0; i < address.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8))
    address[i] = (address[i] as number) & ((0xff00 >>> keep) & 0xff)
  }
}

/**
 * Text form of an ECS address for `DnsView.siteOf`: dotted quad, or eight hex groups for IPv6
 * (no "::" to spare the consumer an expansion step; every IPv6 parser accepts it).
 */
export function ecsAddressText (ecs: ClientSubnet): string {
  const a = ecs.address
  if (ecs.family === ECS_FAMILY_IPV4) return `${a[0]}.${a[1]}.${a[2]}.${a[3]}`
  let text = ''
  for (let i = 0; i < 16; i += 2) text += (i === 0 ? '' : ':') + a.readUInt16BE(i).toString(16)
  return text
}
