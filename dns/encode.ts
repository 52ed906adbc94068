import dns2 from 'dns2'
import { addressBytes, fullIpv6 } from './addr.js'
import { optLength, writeOpt, type OptOut } from './edns.js'
import type { Answer, Rr } from './zone.js'
import { FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, FLAG_TC, HEADER_LENGTH, TYPE, type Question } from './wire.js'

/**
 * Turns an Answer into a response message, by one of two encoders.
 *
 * By hand, here: responses whose records are all A, AAAA or SOA and that have no additional
 * section. That is every answer for a volume or gateway name, every negative answer
 * (NXDOMAIN and NODATA carry the SOA) and every error (no records at all): what the cache
 * must recompute after a change, and what a flood of random names or garbage consists of,
 * which cannot be cached at all. These cost a few microseconds.
 *
 * With dns2: everything else (NS with glue, SRV with target addresses, anything with an
 * additional section). Its record encoders and name compression are sound, but its writer
 * works bit by bit (tens of microseconds a message), which is fine for these rare, cached
 * answers.
 *
 * In both cases the header, the question and the OPT record are ours: the question is echoed
 * byte for byte as received (case included, and names dns2's text-based encoder cannot
 * represent, such as labels containing "."), and OPT carries our own Client Subnet codec.
 */

// dns2's writer, with the compression table its Name.encode consults (`names`, keyed by the
// lower-case dotted suffix, value = byte offset). Not in dns2's published types.
type Writer = InstanceType<typeof dns2.Packet.Writer> & { names?: Map<string, number> }
const { Packet } = dns2
const encodeResource = Packet.Resource.encode as unknown as (rr: Rr & { class: number }, w: Writer) => void

export interface ResponseHead {
  readonly id: number
  /** The query's flag word: opcode, RD and CD are copied from it. */
  readonly queryFlags: number
  /** Echoed when the query's question was readable. */
  readonly question: Question | undefined
}

export interface EncodedResponse {
  /** What to send. */
  readonly message: Buffer
  readonly truncated: boolean
  /** The complete response without OPT and without truncation (may be `message` itself): what the answer cache keeps. */
  readonly body: Buffer
}

const NO_RECORDS: Answer = { rcode: 0, aa: false, answers: [], authorities: [], additionals: [], siteDependent: false }

/**
 * Encodes the response, fitting it into `limit` octets: when too large, additional records go
 * first (they are optional), then answers and authority go and TC is set so the client
 * retries over TCP (RFC 2181 §9, RFC 7766).
 */
export function encodeResponse (head: ResponseHead, answer: Answer, opt: OptOut | undefined, limit: number): EncodedResponse {
  const extra = opt === undefined ? 0 : optLength(opt.ecs)
  const full = encode(head, answer, answer.additionals, false)
  let body = full
  if (body.length + extra > limit && answer.additionals.length > 0) body = encode(head, answer, [], false)
  let truncated = false
  if (body.length + extra > limit) {
    body = encodeByHand(head, { ...answer, answers: [], authorities: [] }, true)
    truncated = true
  }
  return { message: appendOpt(body, opt), truncated, body: full }
}

const BY_HAND = new Set<number>([TYPE.A, TYPE.AAAA, TYPE.SOA])

function encode (head: ResponseHead, answer: Answer, additionals: readonly Rr[], tc: boolean): Buffer {
  const byHand = additionals.length === 0 && answer.answers.every(rr => BY_HAND.has(rr.type)) && answer.authorities.every(rr => BY_HAND.has(rr.type))
  return byHand ? encodeByHand(head, answer, tc) : encodeWithDns2(head, answer, additionals, tc)
}

/** A bare header (and question, when known) with `rcode`: FORMERR, NOTIMP and friends. */
export function encodeError (head: ResponseHead, rcode: number, opt: OptOut | undefined): Buffer {
  return appendOpt(encodeByHand(head, { ...NO_RECORDS, rcode }, false), opt)
}

function flagsOf (head: ResponseHead, answer: Answer, tc: boolean): number {
  return FLAG_QR | (head.queryFlags & (0x7800 | FLAG_RD | FLAG_CD)) | (answer.aa ? FLAG_AA : 0) | (tc ? FLAG_TC : 0) | (answer.rcode & 0xf)
}

export function encodeWithDns2 (head: ResponseHead, answer: Answer, additionals: readonly Rr[], tc: boolean): Buffer {
  const w: Writer = new Packet.Writer()
  w.names = new Map()
  const q = head.question
  w.write(head.id, 16)
  w.write(flagsOf(head, answer, tc), 16)
  w.write(q === undefined ? 0 : 1, 16)
  w.write(answer.answers.length, 16)
  w.write(answer.authorities.length, 16)
  w.write(additionals.length, 16)
  if (q !== undefined) {
    for (const byte of q.raw) w.write(byte, 8)
    w.write(q.type, 16)
    w.write(q.qclass, 16)
    registerQuestion(w, q)
  }
  for (const rr of answer.answers) encodeResource(forDns2(rr), w)
  for (const rr of answer.authorities) encodeResource(forDns2(rr), w)
  for (const rr of additionals) encodeResource(forDns2(rr), w)
  return w.toBuffer()
}

// dns2's AAAA encoder expands "::" itself but mishandles an embedded IPv4 tail
// ("::ffff:192.0.2.1"); handing it eight full groups sidesteps its parser entirely.
function forDns2 (rr: Rr): Rr & { class: number } {
  return rr.type === TYPE.AAAA ? { ...rr, address: fullIpv6(rr.address), class: 1 } : { ...rr, class: 1 }
}

/**
 * Lets later names compress against the question, as dns2 would had it written it: every
 * suffix of the name at its offset. Skipped when a label contains "." because dns2 keys its
 * table on dotted text, where such a label would be taken for two.
 */
function registerQuestion (w: Writer, q: Question): void {
  const names = w.names as Map<string, number>
  if (q.labels.some(l => l.includes('.'))) return
  let off = HEADER_LENGTH
  for (let i = 0; i < q.labels.length; i++) {
    names.set(q.labels.slice(i).join('.'), off)
    off += 1 + (q.labels[i] as string).length
  }
}

/**
 * Header, question, and A, AAAA and SOA records in the answer and authority sections. Names
 * compress against the question where they end in the same labels: an answer's owner is the
 * question itself, a negative answer's SOA is the zone, a suffix of the question.
 */
export function encodeByHand (head: ResponseHead, answer: Answer, tc: boolean): Buffer {
  const q = head.question
  const records = answer.answers.length + answer.authorities.length
  // Upper bound: every name written in full (at most 255 octets each, three in an SOA).
  const out = Buffer.allocUnsafe(HEADER_LENGTH + (q === undefined ? 0 : q.raw.length + 4) + records * (3 * 255 + 30))
  out.writeUInt16BE(head.id, 0)
  out.writeUInt16BE(flagsOf(head, answer, tc), 2)
  out.writeUInt16BE(q === undefined ? 0 : 1, 4)
  out.writeUInt16BE(answer.answers.length, 6)
  out.writeUInt16BE(answer.authorities.length, 8)
  out.writeUInt16BE(0, 10)
  let off = HEADER_LENGTH
  if (q !== undefined) {
    q.raw.copy(out, off)
    off += q.raw.length
    out.writeUInt16BE(q.type, off)
    out.writeUInt16BE(q.qclass, off + 2)
    off += 4
  }
  for (const rr of answer.answers) off = writeRecord(out, off, rr, q)
  for (const rr of answer.authorities) off = writeRecord(out, off, rr, q)
  return out.subarray(0, off)
}

function writeRecord (out: Buffer, offset: number, rr: Rr, q: Question | undefined): number {
  let off = writeName(out, offset, rr.name, q)
  out.writeUInt16BE(rr.type, off)
  out.writeUInt16BE(1, off + 2)
  out.writeUInt32BE(Math.min(rr.ttl, 0x7fffffff), off + 4)
  const rdata = off + 10
  off = rdata
  switch (rr.type) {
    case TYPE.A:
    case TYPE.AAAA: {
      // Validated by the zone; the length matches the type.
      const b = addressBytes(rr.address) as Buffer
      b.copy(out, off)
      off += b.length
      break
    }
    case TYPE.SOA:
      off = writeName(out, off, rr.primary, q)
      off = writeName(out, off, rr.admin, q)
      out.writeUInt32BE(rr.serial >>> 0, off)
      out.writeUInt32BE(rr.refresh, off + 4)
      out.writeUInt32BE(rr.retry, off + 8)
      out.writeUInt32BE(rr.expiration, off + 12)
      out.writeUInt32BE(rr.minimum, off + 16)
      off += 20
      break
    default:
      throw new TypeError(`no hand encoder for type ${rr.type}`)
  }
  out.writeUInt16BE(off - rdata, rdata - 2)
  return off
}

/**
 * Writes a lower-case dotted `name`: its leading labels, then a pointer to the longest suffix
 * it shares with the question (compared label by label), or the rest in full.
 */
function writeName (out: Buffer, offset: number, name: string, q: Question | undefined): number {
  const labels = name === '' ? [] : name.split('.')
  let suffixAt = -1
  let shared = 0
  if (q !== undefined && !q.labels.some(l => l.includes('.'))) {
    const ql = q.labels
    while (shared < labels.length && shared < ql.length && labels[labels.length - 1 - shared] === ql[ql.length - 1 - shared]) shared++
    if (shared > 0) {
      suffixAt = HEADER_LENGTH
      for (let i = 0; i < ql.length - shared; i++) suffixAt += 1 + (ql[i] as string).length
    }
  }
  let off = offset
  for (let i = 0; i < labels.length - shared; i++) {
    const written = out.write(labels[i] as string, off + 1, 'latin1')
    out[off] = written
    off += 1 + written
  }
  if (suffixAt >= 0) {
    out.writeUInt16BE(0xc000 | suffixAt, off)
    return off + 2
  }
  out[off] = 0
  return off + 1
}

function appendOpt (body: Buffer, opt: OptOut | undefined): Buffer {
  if (opt === undefined) return body
  const out = Buffer.allocUnsafe(body.length + optLength(opt.ecs))
  body.copy(out, 0)
  out.writeUInt16BE(body.readUInt16BE(10) + 1, 10)
  writeOpt(out, body.length, opt)
  return out
}
