import dns2 from 'dns2'
import { optLength, writeOpt, type OptOut } from './edns.js'
import type { Answer, Rr } from './zone.js'
import { FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, FLAG_TC, HEADER_LENGTH, TYPE, type Question } from './wire.js'

/**
 * Turns an Answer into a response message.
 *
 * Positive answers (records in the answer or additional section) are encoded by dns2: its
 * record encoders and name compression are sound, and these answers are cached, so its cost
 * (a bit-by-bit writer: tens of microseconds a message) is paid once per name, type and site
 * after each change of the data.
 *
 * Everything else is written here by hand, because it is what a flood consists of and must
 * stay cheap when it cannot be cached: errors (FORMERR, REFUSED, NOTIMP, SERVFAIL, BADVERS:
 * header and question only) and negative answers (NXDOMAIN, NODATA: header, question and the
 * SOA). A random-name flood (`<random>.<zone>`, every name new) then costs a few microseconds
 * a query instead of ~100.
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
  const positive = answer.answers.length > 0 || answer.additionals.length > 0
  const full = positive ? encodeWithDns2(head, answer, answer.additionals, false) : encodeByHand(head, answer, false)
  let body = full
  if (body.length + extra > limit && answer.additionals.length > 0) body = encodeWithDns2(head, answer, [], false)
  let truncated = false
  if (body.length + extra > limit) {
    body = encodeByHand(head, { ...answer, authorities: [] }, true)
    truncated = true
  }
  return { message: appendOpt(body, opt), truncated, body: full }
}

/** A bare header (and question, when known) with `rcode`: FORMERR, NOTIMP and friends. */
export function encodeError (head: ResponseHead, rcode: number, opt: OptOut | undefined): Buffer {
  return appendOpt(encodeByHand(head, { ...NO_RECORDS, rcode }, false), opt)
}

function flagsOf (head: ResponseHead, answer: Answer, tc: boolean): number {
  return FLAG_QR | (head.queryFlags & (0x7800 | FLAG_RD | FLAG_CD)) | (answer.aa ? FLAG_AA : 0) | (tc ? FLAG_TC : 0) | (answer.rcode & 0xf)
}

function encodeWithDns2 (head: ResponseHead, answer: Answer, additionals: readonly Rr[], tc: boolean): Buffer {
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
  for (const rr of answer.answers) encodeResource({ ...rr, class: 1 }, w)
  for (const rr of answer.authorities) encodeResource({ ...rr, class: 1 }, w)
  for (const rr of additionals) encodeResource({ ...rr, class: 1 }, w)
  return w.toBuffer()
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
 * Header, question, and at most SOA records in the authority section (all a negative answer
 * has). Names in the SOA compress against the question where it ends in the same suffix,
 * which for a negative answer about a name in the zone is the zone itself.
 */
function encodeByHand (head: ResponseHead, answer: Answer, tc: boolean): Buffer {
  const q = head.question
  const soas = answer.authorities.filter((rr): rr is Extract<Rr, { type: 6 }> => rr.type === TYPE.SOA)
  const questionLength = q === undefined ? 0 : q.raw.length + 4
  // Upper bound: names written in full (each at most 255 octets).
  const out = Buffer.allocUnsafe(HEADER_LENGTH + questionLength + soas.length * (3 * 255 + 30))
  out.writeUInt16BE(head.id, 0)
  out.writeUInt16BE(flagsOf(head, answer, tc), 2)
  out.writeUInt16BE(q === undefined ? 0 : 1, 4)
  out.writeUInt16BE(0, 6)
  out.writeUInt16BE(soas.length, 8)
  out.writeUInt16BE(0, 10)
  let off = HEADER_LENGTH
  if (q !== undefined) {
    q.raw.copy(out, off)
    off += q.raw.length
    out.writeUInt16BE(q.type, off)
    out.writeUInt16BE(q.qclass, off + 2)
    off += 4
  }
  for (const soa of soas) {
    off = writeName(out, off, soa.name, q)
    out.writeUInt16BE(TYPE.SOA, off)
    out.writeUInt16BE(1, off + 2)
    out.writeUInt32BE(Math.min(soa.ttl, 0x7fffffff), off + 4)
    const rdata = off + 10
    off = writeName(out, rdata, soa.primary, q)
    off = writeName(out, off, soa.admin, q)
    out.writeUInt32BE(soa.serial >>> 0, off)
    out.writeUInt32BE(soa.refresh, off + 4)
    out.writeUInt32BE(soa.retry, off + 8)
    out.writeUInt32BE(soa.expiration, off + 12)
    out.writeUInt32BE(soa.minimum, off + 16)
    off += 20
    out.writeUInt16BE(off - rdata, rdata - 2)
  }
  return out.subarray(0, off)
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
