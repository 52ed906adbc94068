import net from 'node:net'

/** IP address text to octets, for the wire. ipv4Bytes and ipv6Bytes expect valid addresses; addressBytes checks. */

export function ipv4Bytes (ip: string): Buffer {
  const out = Buffer.alloc(4)
  const parts = ip.split('.')
  for (let i = 0; i < 4; i++) out[i] = Number(parts[i])
  return out
}

/** 16 octets of an IPv6 address in any text form (with "::" and/or an embedded IPv4 tail). */
export function ipv6Bytes (ip: string): Buffer {
  let text = ip
  const zone = text.indexOf('%')
  if (zone >= 0) text = text.slice(0, zone)
  const lastColon = text.lastIndexOf(':')
  const last = text.slice(lastColon + 1)
  if (last.includes('.')) {
    // "::ffff:192.0.2.1" → "::ffff:c000:201": two hex groups in place of the dotted tail.
    const v4 = ipv4Bytes(last)
    text = `${text.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`
  }
  const parse = (s: string): number[] => s === '' ? [] : s.split(':').map(g => parseInt(g, 16))
  const doubleColon = text.indexOf('::')
  let groups: number[]
  if (doubleColon < 0) {
    groups = parse(text)
  } else {
    const head = parse(text.slice(0, doubleColon))
    const rest = parse(text.slice(doubleColon + 2))
    groups = [...head, ...new Array<number>(Math.max(0, 8 - head.length - rest.length)).fill(0), ...rest]
  }
  const out = Buffer.alloc(16)
  for (let i = 0; i < 8; i++) out.writeUInt16BE((groups[i] ?? 0) & 0xffff, i * 2)
  return out
}

// Addresses from the view, validated and converted once. Edge addresses are few and reused by
// every answer, so after the first query this is a map hit instead of the regular expressions
// behind net.isIP and a text parse on every cache miss. Bounded: dropped whole when full.
const MEMO_LIMIT = 10_000
const memo = new Map<string, Buffer | null>()

/** 4 octets for a valid IPv4 address, 16 for IPv6, undefined for anything else. */
export function addressBytes (text: string): Buffer | undefined {
  let bytes = memo.get(text)
  if (bytes === undefined) {
    const family = net.isIP(text)
    bytes = family === 4 ? ipv4Bytes(text) : family === 6 ? ipv6Bytes(text) : null
    if (memo.size >= MEMO_LIMIT) memo.clear()
    memo.set(text, bytes)
  }
  return bytes ?? undefined
}

/** Eight full hex groups: the one IPv6 text form dns2's AAAA encoder is sure to parse right. */
export function fullIpv6 (address: string): string {
  const b = ipv6Bytes(address)
  let text = ''
  for (let i = 0; i < 16; i += 2) text += (i === 0 ? '' : ':') + b.readUInt16BE(i).toString(16).padStart(4, '0')
  return text
}
