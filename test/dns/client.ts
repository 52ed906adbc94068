import dgram from 'node:dgram'
import net from 'node:net'
import { execFile } from 'node:child_process'
import dns2 from 'dns2'
import { decodeEcs, ecsBodyLength, writeEcsOption, type ClientSubnet } from '../../dns/ecs.js'
import { encodeName } from '../../dns/wire.js'

/**
 * Client-side helpers for the DNS tests: building queries byte by byte, sending them over UDP
 * and TCP, decoding answers (records with dns2, which is an independent implementation; the
 * OPT record by hand, because dns2 cannot decode an IPv6 client subnet of odd length), and
 * running dig.
 */

export interface QueryOptions {
  readonly name: string
  readonly type: number
  readonly id?: number
  readonly rd?: boolean
  readonly qclass?: number
  readonly edns?: { readonly payload?: number, readonly dnssecOk?: boolean, readonly version?: number, readonly ecs?: ClientSubnet }
}

export function buildQuery (o: QueryOptions): Buffer {
  const name = encodeName(o.name)
  const ecs = o.edns?.ecs
  const optLength = o.edns === undefined ? 0 : 11 + (ecs === undefined ? 0 : 4 + ecsBodyLength(ecs.sourcePrefix))
  const out = Buffer.alloc(12 + name.length + 4 + optLength)
  out.writeUInt16BE(o.id ?? 0x1234, 0)
  out.writeUInt16BE(o.rd === false ? 0 : 0x0100, 2)
  out.writeUInt16BE(1, 4)
  out.writeUInt16BE(o.edns === undefined ? 0 : 1, 10)
  name.copy(out, 12)
  let off = 12 + name.length
  out.writeUInt16BE(o.type, off)
  out.writeUInt16BE(o.qclass ?? 1, off + 2)
  off += 4
  if (o.edns !== undefined) {
    out[off] = 0
    out.writeUInt16BE(41, off + 1)
    out.writeUInt16BE(o.edns.payload ?? 1232, off + 3)
    out[off + 5] = 0
    out[off + 6] = o.edns.version ?? 0
    out[off + 7] = o.edns.dnssecOk === true ? 0x80 : 0
    out[off + 8] = 0
    out.writeUInt16BE(optLength - 11, off + 9)
    if (ecs !== undefined) writeEcsOption(out, off + 11, ecs, 0)
  }
  return out
}

export interface DecodedOpt {
  readonly payload: number
  readonly extendedRcode: number
  readonly version: number
  readonly dnssecOk: boolean
  readonly ecs: ClientSubnet | undefined
}

export interface Decoded {
  readonly id: number
  readonly qr: boolean
  readonly opcode: number
  readonly aa: boolean
  readonly tc: boolean
  readonly rd: boolean
  readonly ra: boolean
  readonly cd: boolean
  /** Full 12-bit code (header low 4 bits + OPT extended). */
  readonly rcode: number
  readonly counts: readonly [number, number, number, number]
  readonly questionName: string
  readonly answers: ReadonlyArray<Record<string, unknown>>
  readonly authorities: ReadonlyArray<Record<string, unknown>>
  readonly additionals: ReadonlyArray<Record<string, unknown>>
  readonly opt: DecodedOpt | undefined
  readonly size: number
}

export function decode (buf: Buffer): Decoded {
  const flags = buf.readUInt16BE(2)
  const counts = [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)] as const
  const opt = findOpt(buf)
  // dns2 is good at records; keep it away from the OPT (its IPv6 client-subnet decoder is
  // broken for odd prefix octets, see dns/ecs.ts) by cutting the message before it.
  const packet = dns2.Packet.parse(opt === undefined ? buf : withoutLastRecord(buf, opt.start))
  const strip = (rrs: Array<Record<string, unknown>>): Array<Record<string, unknown>> => rrs.filter(r => r !== undefined && r.type !== 41)
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >>> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode: (flags & 0xf) | ((opt?.value.extendedRcode ?? 0) << 4),
    counts,
    questionName: packet.questions[0]?.name ?? '',
    answers: strip(packet.answers as unknown as Array<Record<string, unknown>>),
    authorities: strip(packet.authorities as unknown as Array<Record<string, unknown>>),
    additionals: strip(packet.additionals as unknown as Array<Record<string, unknown>>),
    opt: opt?.value,
    size: buf.length
  }
}

function withoutLastRecord (buf: Buffer, start: number): Buffer {
  const cut = Buffer.from(buf.subarray(0, start))
  cut.writeUInt16BE(buf.readUInt16BE(10) - 1, 10)
  return cut
}

function skipName (buf: Buffer, off: number): number {
  for (;;) {
    const len = buf[off] as number
    if (len === 0) return off + 1
    if ((len & 0xc0) === 0xc0) return off + 2
    off += 1 + len
  }
}

function findOpt (buf: Buffer): { start: number, value: DecodedOpt } | undefined {
  let off = 12
  for (let i = 0; i < buf.readUInt16BE(4); i++) off = skipName(buf, off) + 4
  const records = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10)
  for (let i = 0; i < records; i++) {
    const start = off
    off = skipName(buf, off)
    const type = buf.readUInt16BE(off)
    const rdlength = buf.readUInt16BE(off + 8)
    const rdata = off + 10
    if (type === 41) {
      let ecs: ClientSubnet | undefined
      for (let p = rdata; p < rdata + rdlength;) {
        const code = buf.readUInt16BE(p)
        const len = buf.readUInt16BE(p + 2)
        if (code === 8) ecs = decodeEcs(buf, p + 4, len, true)
        p += 4 + len
      }
      return {
        start,
        value: { payload: buf.readUInt16BE(off + 2), extendedRcode: buf[off + 4] as number, version: buf[off + 5] as number, dnssecOk: ((buf[off + 6] as number) & 0x80) !== 0, ecs }
      }
    }
    off = rdata + rdlength
  }
  return undefined
}

/** Sends one UDP query and resolves with the first reply (rejects after `timeoutMs`). */
export async function udpQuery (port: number, host: string, msg: Buffer, timeoutMs = 2000): Promise<Buffer> {
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4')
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no UDP reply from ${host}:${port} in ${timeoutMs} ms`)), timeoutMs)
      sock.once('message', m => { clearTimeout(timer); resolve(m) })
      sock.once('error', err => { clearTimeout(timer); reject(err) })
      sock.send(msg, port, host)
    })
  } finally {
    sock.close()
  }
}

/** Sends length-prefixed messages on one TCP connection and resolves with as many replies. */
export async function tcpQuery (port: number, host: string, msgs: Buffer[], timeoutMs = 2000): Promise<Buffer[]> {
  const sock = net.connect({ port, host })
  try {
    return await new Promise<Buffer[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no TCP reply from ${host}:${port} in ${timeoutMs} ms`)), timeoutMs)
      const replies: Buffer[] = []
      let pending = Buffer.alloc(0)
      sock.on('data', chunk => {
        pending = Buffer.concat([pending, chunk])
        while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
          replies.push(pending.subarray(2, 2 + pending.readUInt16BE(0)))
          pending = pending.subarray(2 + pending.readUInt16BE(0))
        }
        if (replies.length === msgs.length) { clearTimeout(timer); resolve(replies) }
      })
      sock.on('error', err => { clearTimeout(timer); reject(err) })
      sock.on('close', () => { clearTimeout(timer); if (replies.length < msgs.length) reject(new Error(`connection closed after ${replies.length} of ${msgs.length} replies`)) })
      for (const m of msgs) {
        const framed = Buffer.alloc(2 + m.length)
        framed.writeUInt16BE(m.length, 0)
        m.copy(framed, 2)
        sock.write(framed)
      }
    })
  } finally {
    sock.destroy()
  }
}

let digChecked: Promise<boolean> | undefined
/** Whether `dig` can be run here (Debian dnsutils / bind9-dnsutils). */
export async function hasDig (): Promise<boolean> {
  digChecked ??= new Promise(resolve => execFile('dig', ['-v'], err => resolve(err === null)))
  return await digChecked
}

export const NO_DIG = 'dig is not installed (apt-get install bind9-dnsutils)'

/** Runs dig and resolves with its output. */
export async function dig (args: string[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile('dig', ['+time=2', '+tries=1', ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err !== null && stdout === '') reject(new Error(`dig ${args.join(' ')}: ${stderr || err.message}`))
      else resolve(stdout)
    })
  })
}

/** The parts of dig's output the tests look at. */
export function parseDig (out: string): { status: string, flags: string[], answer: string[], authority: string[], additional: string[], subnet: string | undefined, udp: number | undefined, server: string | undefined } {
  const section = (title: string): string[] => {
    const m = out.match(new RegExp(`;; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`))
    return m?.[1] === undefined ? [] : m[1].split('\n').filter(l => l.trim() !== '').map(l => l.replace(/\s+/g, ' ').trim())
  }
  return {
    status: out.match(/status: (\w+)/)?.[1] ?? '',
    flags: (out.match(/;; flags: ([a-z ]*);/)?.[1] ?? '').trim().split(/\s+/).filter(Boolean),
    answer: section('ANSWER'),
    authority: section('AUTHORITY'),
    additional: section('ADDITIONAL'),
    subnet: out.match(/; CLIENT-SUBNET: (\S+)/)?.[1],
    udp: ((m) => m === null ? undefined : Number(m[1]))(out.match(/; EDNS: version: \d+, flags:[^;]*; udp: (\d+)/)),
    server: out.match(/;; SERVER: \S+ \((\w+)\)/)?.[1]
  }
}

/** Whether ::1 can be bound here (containers without IPv6 exist). */
export async function ipv6Available (): Promise<boolean> {
  const sock = dgram.createSocket('udp6')
  return await new Promise(resolve => {
    sock.once('error', () => { sock.close(); resolve(false) })
    sock.bind(0, '::1', () => sock.close(() => resolve(true)))
  })
}
