import dns2 from 'dns2'
import { optLength, writeOpt, type OptOut } from './edns.js'
import type { Answer, Rr } from './zone.js'
import { FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, FLAG_TC, HEADER_LENGTH, type Question } from './wire.js'

/**
 * Turns an Answer into a response message. Records are encoded by dns2 (its record encoders
 * and name compression are sound); the header, the question and the OPT record are written
 * here: the question is echoed byte for byte as received (case included, and names dns2's
 * text-based encoder cannot represent, such as labels containing "."), and OPT carries our
 * own Client Subnet codec (ecs.ts).
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

/**
 * Encodes the response, fitting it into `limit` octets: when too large, additional records go
 * first (they are optional), then answers and authority go and TC is set so the client
 * retries over TCP (RFC 2181 §9, RFC 7766). Returns the message and whether it was truncated.
 */
export function encodeResponse (head: ResponseHead, answer: Answer, opt: OptOut | undefined, limit: number): EncodedResponse {
  const extra = opt === undefined ? 0 : optLength(opt.ecs)
  const full = encodeBody(head, answer, answer.additionals, false)
  let body = full
  if (body.length + extra > limit && answer.additionals.length > 0) body = encodeBody(head, answer, [], false)
  let truncated = false
  if (body.length + extra > limit) {
    body = encodeBody(head, { ...answer, answers: [], authorities: [] }, [], true)
    truncated = true
  }
  return { message: appendOpt(body, opt), truncated, body: full }
}

/** A bare header (and question, when known) with `rcode`: FORMERR, NOTIMP and friends. */
export function encodeError (head: ResponseHead, rcode: number, opt: OptOut | undefined): Buffer {
  const body = encodeBody(head, { rcode, aa: false, answers: [], authorities: [], additionals: [], siteDependent: false }, [], false)
  return appendOpt(body, opt)
}

function encodeBody (head: ResponseHead, answer: Answer, additionals: readonly Rr[], tc: boolean): Buffer {
  const w: Writer = new Packet.Writer()
  w.names = new Map()
  const q = head.question
  const flags = FLAG_QR | (head.queryFlags & (0x7800 | FLAG_RD | FLAG_CD)) |
    (answer.aa ? FLAG_AA : 0) | (tc ? FLAG_TC : 0) | (answer.rcode & 0xf)
  w.write(head.id, 16)
  w.write(flags, 16)
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

function appendOpt (body: Buffer, opt: OptOut | undefined): Buffer {
  if (opt === undefined) return body
  const out = Buffer.allocUnsafe(body.length + optLength(opt.ecs))
  body.copy(out, 0)
  out.writeUInt16BE(body.readUInt16BE(10) + 1, 10)
  writeOpt(out, body.length, opt)
  return out
}
