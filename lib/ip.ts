/**
 * IP address text to octets and integers: the one parser of address text that DNS (wire encoding, ECS, rate
 * limiting) and the site map (longest-prefix match) share. ipv4Bytes and ipv6Bytes expect valid
 * addresses (check with net.isIP first).
 */

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

/** Dotted quad to an unsigned 32-bit integer, without allocating (per-packet and per-request paths); the caller has a valid address. */
export function ipv4ToInt (ip: string): number {
  let n = 0
  let part = 0
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i)
    if (c === 46) { n = n * 256 + part; part = 0 } else part = part * 10 + (c - 48)
  }
  return (n * 256 + part) >>> 0
}

/** An IPv6 address as a 128-bit integer, for prefix masks. */
export function ipv6ToBigInt (ip: string): bigint {
  const b = ipv6Bytes(ip)
  return (b.readBigUInt64BE(0) << 64n) | b.readBigUInt64BE(8)
}
