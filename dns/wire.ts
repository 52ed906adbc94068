import { decodeEcs, type ClientSubnet } from './ecs.js'
import { DnsWireError } from './errors.js'

export { DnsWireError }

/**
 * The DNS wire format as far as an authoritative server needs to read it: the header, one
 * question, and the OPT pseudo-record. Decoding is ours rather than dns2's because dns2's
 * `Packet.parse` swallows errors per record (a truncated question comes back as a packet with
 * no question, so FORMERR cannot be told from an empty query), mis-decodes IPv6 Client Subnet
 * options, and reads bit by bit (slow). Encoding of records stays with dns2 (see encode.ts).
 */

export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  MAILB: 253,
  MAILA: 254,
  ANY: 255
} as const

export const CLASS_IN = 1
export const CLASS_ANY = 255

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended (RFC 6891): needs an OPT record to carry the upper 8 bits. */
  BADVERS: 16
} as const

export const OPCODE_QUERY = 0
export const HEADER_LENGTH = 12
export const EDNS_OPTION_ECS = 8
/** RFC 1035 §2.3.4 */
export const MAX_NAME_OCTETS = 255
export const MAX_LABEL_OCTETS = 63

// Header flag bits (the 16-bit word at offset 2).
export const FLAG_QR = 0x8000
export const FLAG_AA = 0x0400
export const FLAG_TC = 0x0200
export const FLAG_RD = 0x0100
export const FLAG_CD = 0x0010

export interface Question {
  /** The name as sent, uncompressed, original case: echoed in the response (RFC 1035 §7.3, and 0x20 case randomisation). */
  readonly raw: Buffer
  /** `raw` in lower case as a latin1 string: the cache key (a whole wire name, so no ambiguity about dots inside labels). */
  readonly key: string
  /** Labels in lower case, root excluded. */
  readonly labels: readonly string[]
  readonly type: number
  readonly qclass: number
}

export interface Edns {
  /** Requestor's UDP payload size, already raised to 512 when smaller (RFC 6891 §6.2.5). */
  readonly payload: number
  readonly version: number
  /** DNSSEC OK: echoed (RFC 3225) though ferry does not sign. */
  readonly dnssecOk: boolean
  readonly ecs: ClientSubnet | undefined
}

export interface Query {
  readonly id: number
  /** The header's flag word as received. */
  readonly flags: number
  readonly opcode: number
  readonly question: Question | undefined
  readonly edns: Edns | undefined
}

/**
 * The outcome of decoding a message. `query` holds whatever was read before an error, so a
 * FORMERR can echo the id (always) and the question (when it was well-formed).
 */
export type ParseResult =
  | { readonly ok: true, readonly query: Query }
  | { readonly ok: false, readonly query: Query, readonly error: DnsWireError }

/**
 * Decodes a query. Returns undefined for what must be dropped without an answer: messages too
 * short to carry a header, and responses (QR set: answering them invites reflection loops).
 * Never throws on any input.
 */
export function parseQuery (msg: Buffer): ParseResult | undefined {
  if (msg.length < HEADER_LENGTH) return undefined
  const id = msg.readUInt16BE(0)
  const flags = msg.readUInt16BE(2)
  if ((flags & FLAG_QR) !== 0) return undefined
  const opcode = (flags >>> 11) & 0xf
  const qdcount = msg.readUInt16BE(4)
  const ancount = msg.readUInt16BE(6)
  const nscount = msg.readUInt16BE(8)
  const arcount = msg.readUInt16BE(10)
  let question: Question | undefined
  let edns: Edns | undefined
  const partial = (): Query => ({ id, flags, opcode, question, edns: undefined })
  try {
    // Only QUERY is understood; for other opcodes the caller answers NOTIMP, echoing nothing
    // but the header, so there is no need to read further (RFC 6891 §7 allows the OPT then
    // to be left out too).
    if (opcode !== OPCODE_QUERY) return { ok: true, query: partial() }
    if (qdcount !== 1) throw DnsWireError.of('FERRY_DNS_QDCOUNT', `expected one question, got ${qdcount}`)
    let off = HEADER_LENGTH
    const name = readName(msg, off)
    off = name.end
    if (off + 4 > msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'question type and class run past the end')
    question = {
      raw: name.raw,
      key: name.key,
      labels: name.labels,
      type: msg.readUInt16BE(off),
      qclass: msg.readUInt16BE(off + 2)
    }
    off += 4
    // Answer and authority records in a query are unusual (UPDATE and NOTIFY use them, not
    // QUERY) but legal; skip them so that the OPT record, if any, is still found.
    for (let i = 0; i < ancount + nscount; i++) off = skipRecord(msg, off)
    for (let i = 0; i < arcount; i++) {
      const start = off
      const nameEnd = skipName(msg, off)
      if (nameEnd + 10 > msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'additional record runs past the end')
      const type = msg.readUInt16BE(nameEnd)
      const rdlength = msg.readUInt16BE(nameEnd + 8)
      const rdata = nameEnd + 10
      off = rdata + rdlength
      if (off > msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'additional record data runs past the end')
      if (type !== TYPE.OPT) continue
      if (edns !== undefined) throw DnsWireError.of('FERRY_DNS_MULTIPLE_OPT', 'more than one OPT record (RFC 6891 §6.1.1)')
      if (nameEnd !== start + 1 || msg[start] !== 0) throw DnsWireError.of('FERRY_DNS_BAD_OPT', 'OPT owner name must be the root')
      edns = readOpt(msg, nameEnd, rdata, rdlength)
    }
    if (off !== msg.length) throw DnsWireError.of('FERRY_DNS_TRAILING_DATA', `${msg.length - off} bytes after the last record`)
    return { ok: true, query: { id, flags, opcode, question, edns } }
  } catch (err) {
    if (err instanceof DnsWireError) return { ok: false, query: partial(), error: err }
    // A RangeError from a Buffer read means we trusted a length we should not have: still a
    // malformed message, not a reason to crash.
    return { ok: false, query: partial(), error: DnsWireError.of('FERRY_DNS_TRUNCATED', String(err)) }
  }
}

/** Reads the OPT record whose fixed part starts at `at` (its TYPE field). */
function readOpt (msg: Buffer, at: number, rdata: number, rdlength: number): Edns {
  const payload = Math.max(512, msg.readUInt16BE(at + 2))
  const version = msg[at + 5] as number
  const dnssecOk = ((msg[at + 6] as number) & 0x80) !== 0
  let ecs: ClientSubnet | undefined
  let off = rdata
  const end = rdata + rdlength
  while (off < end) {
    if (off + 4 > end) throw DnsWireError.of('FERRY_DNS_BAD_OPT', 'EDNS option header runs past the OPT data')
    const code = msg.readUInt16BE(off)
    const length = msg.readUInt16BE(off + 2)
    off += 4
    if (off + length > end) throw DnsWireError.of('FERRY_DNS_BAD_OPT', 'EDNS option runs past the OPT data')
    if (code === EDNS_OPTION_ECS) {
      if (ecs !== undefined) throw DnsWireError.of('FERRY_DNS_BAD_ECS', 'more than one client subnet option')
      ecs = decodeEcs(msg, off, length)
    }
    // Other options (cookies, NSID, padding, keepalive) are not implemented; RFC 6891 §6.1.2
    // says to ignore options one does not understand.
    off += length
  }
  return { payload, version, dnssecOk, ecs }
}

interface DecodedName {
  readonly raw: Buffer
  readonly key: string
  readonly labels: string[]
  /** Offset just past the name where it started (after the first pointer, if any). */
  readonly end: number
}

/**
 * Reads a possibly compressed name. Pointers must point strictly backwards, to before the
 * label that holds them, which makes loops impossible (each hop moves to a smaller offset)
 * without a visited set; the 255-octet limit bounds the work as well.
 */
// Scratch space for assembling a name: decoding is synchronous, so one buffer serves every call.
const nameScratch = Buffer.allocUnsafe(MAX_NAME_OCTETS)
const lowerScratch = Buffer.allocUnsafe(MAX_NAME_OCTETS)

export function readName (msg: Buffer, offset: number): DecodedName {
  const raw = nameScratch
  let rawLength = 0
  let off = offset
  let end = -1
  let lowestStart = offset
  for (;;) {
    if (off >= msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'name runs past the end')
    const len = msg[off] as number
    if (len === 0) {
      raw[rawLength++] = 0
      if (end < 0) end = off + 1
      break
    }
    const kind = len & 0xc0
    if (kind === 0xc0) {
      if (off + 1 >= msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'compression pointer runs past the end')
      const target = ((len & 0x3f) << 8) | (msg[off + 1] as number)
      if (target >= lowestStart) throw DnsWireError.of('FERRY_DNS_BAD_POINTER', `compression pointer to ${target} does not point backwards`)
      if (end < 0) end = off + 2
      lowestStart = target
      off = target
      continue
    }
    if (kind !== 0) throw DnsWireError.of('FERRY_DNS_BAD_LABEL', `reserved label type 0x${len.toString(16)}`)
    // len <= 63 here (top bits clear).
    if (rawLength + 1 + len + 1 > MAX_NAME_OCTETS) throw DnsWireError.of('FERRY_DNS_NAME_TOO_LONG', 'name longer than 255 octets')
    if (off + 1 + len > msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'label runs past the end')
    raw[rawLength++] = len
    msg.copy(raw, rawLength, off + 1, off + 1 + len)
    rawLength += len
    off += 1 + len
  }
  const exact = Buffer.from(raw.subarray(0, rawLength))
  raw.copy(lowerScratch, 0, 0, rawLength)
  lowerAsciiInPlace(lowerScratch, 0, rawLength)
  const key = lowerScratch.toString('latin1', 0, rawLength)
  // Labels are slices of the key (label lengths are < 64, never touched by lowering).
  const labels: string[] = []
  for (let i = 0; i < rawLength - 1;) {
    const len = lowerScratch[i] as number
    labels.push(key.slice(i + 1, i + 1 + len))
    i += 1 + len
  }
  return { raw: exact, key, labels, end }
}

/** Lower-cases ASCII letters in place; other octets (including label lengths, all < 64) stay. */
export function lowerAsciiInPlace (buf: Buffer, start: number, end: number): void {
  for (let i = start; i < end; i++) {
    const c = buf[i] as number
    if (c >= 65 && c <= 90) buf[i] = c | 0x20
  }
}

/** Skips a name without decoding it; returns the offset after it. */
function skipName (msg: Buffer, offset: number): number {
  let off = offset
  let octets = 0
  for (;;) {
    if (off >= msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'name runs past the end')
    const len = msg[off] as number
    if (len === 0) return off + 1
    const kind = len & 0xc0
    if (kind === 0xc0) {
      if (off + 2 > msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'compression pointer runs past the end')
      const target = ((len & 0x3f) << 8) | (msg[off + 1] as number)
      if (target >= off) throw DnsWireError.of('FERRY_DNS_BAD_POINTER', `compression pointer to ${target} does not point backwards`)
      // The rest of the name lives elsewhere; this copy ends here.
      return off + 2
    }
    if (kind !== 0) throw DnsWireError.of('FERRY_DNS_BAD_LABEL', `reserved label type 0x${len.toString(16)}`)
    octets += len + 1
    if (octets + 1 > MAX_NAME_OCTETS) throw DnsWireError.of('FERRY_DNS_NAME_TOO_LONG', 'name longer than 255 octets')
    off += 1 + len
  }
}

function skipRecord (msg: Buffer, offset: number): number {
  const off = skipName(msg, offset)
  if (off + 10 > msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'record runs past the end')
  const end = off + 10 + msg.readUInt16BE(off + 8)
  if (end > msg.length) throw DnsWireError.of('FERRY_DNS_TRUNCATED', 'record data runs past the end')
  return end
}

/** Encodes a dotted name (no compression) into wire form; for tests and the bench's clients. */
export function encodeName (name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(l => l.length > 0)
  const out = Buffer.alloc(labels.reduce((n, l) => n + 1 + Buffer.byteLength(l, 'latin1'), 1))
  let off = 0
  for (const l of labels) {
    const len = out.write(l, off + 1, 'latin1')
    out[off] = len
    off += 1 + len
  }
  out[off] = 0
  return out
}
