import net from 'node:net'

import { ipv4Bytes, ipv6Bytes } from '../lib/ip.js'

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
