import cluster from 'node:cluster'
import dgram from 'node:dgram'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Registry } from 'prom-client'
import { silentLogger, type Logger } from '../lib/log.js'
import { AnswerCache } from './cache.js'
import type { DnsConfig } from './config.js'
import { ecsAddressText, type ClientSubnet } from './ecs.js'
import { encodeError, encodeResponse, type ResponseHead } from './encode.js'
import { DnsServerError } from './errors.js'
import { DnsMetrics, TRANSPORT_TCP, TRANSPORT_UDP } from './metrics.js'
import { RRL_DROP, RRL_SEND, RateLimiter } from './rrl.js'
import type { DnsChange, DnsView } from './view.js'
import { CLASS_IN, FLAG_QR, FLAG_TC, OPCODE_QUERY, RCODE, TYPE, encodeName, lowerAsciiInPlace, parseQuery, type Edns } from './wire.js'
import { Zone, type Answer } from './zone.js'

// Data-plane workers (bin/workers.ts) share the DNS sockets: in a cluster worker the bind goes
// through the primary, which hands every worker the same socket. Anywhere else a socket is the
// process's own, so a port another process holds fails loudly instead of being shared.
const EXCLUSIVE = !cluster.isWorker

export interface AuthoritativeServerOptions {
  /** The parsed `dns:` section (dns/config.ts). */
  readonly config: DnsConfig
  /** Where answers come from (dns/view.ts). */
  readonly view: DnsView
  /** Metrics are registered here when given (the admin listener's registry). */
  readonly registry?: Registry
  readonly logger?: Logger
}

export interface ListenerStatus {
  readonly transport: 'udp' | 'tcp'
  readonly address: string
  /** The bound port (the configured one, or the one picked for port 0). */
  readonly port: number
  readonly bound: boolean
  readonly error?: string
}

export interface DnsStatus {
  readonly ready: boolean
  /** Why not ready, for /readyz. Empty when ready. */
  readonly reasons: readonly string[]
  readonly zone: string
  readonly serial: number
  readonly listeners: readonly ListenerStatus[]
  readonly cachedAnswers: number
  readonly rateLimitedSubnets: number
  readonly queries: number
}

interface Listener {
  readonly address: string
  readonly family: 4 | 6
  port: number
  readonly wantUdp: boolean
  readonly wantTcp: boolean
  udp?: dgram.Socket
  tcp?: net.Server
  error?: string
}

const TCP_MAX_RESPONSE = 65535

/**
 * ferry's authoritative DNS server: UDP and TCP on every configured address, answers from
 * the view (zone.ts), metrics, rate limiting.
 *
 * Every query first tries the fast path (`fastAnswer`): a hand-written reader for the common
 * shape (one question, uncompressed name, class IN, optional OPT with an optional client
 * subnet) that looks the answer up among encoded responses and copies it out with the id,
 * flags and question case patched. Anything else, and every cache miss, takes the full path
 * (`fullAnswer`): a strict decode of the whole message, the zone logic, encoding through
 * dns2, and filling the cache. The cache is dropped whenever the view says the data changed,
 * so a change is visible to the very next query.
 */
export class AuthoritativeServer {
  readonly config: DnsConfig
  readonly metrics: DnsMetrics
  private readonly view: DnsView
  private readonly log: Logger
  private readonly zone: Zone
  private readonly cache: AnswerCache
  private readonly rrl: RateLimiter
  private readonly listeners: Listener[]
  private readonly connections = new Set<net.Socket>()
  private unsubscribe: (() => void) | undefined
  private sweepTimer: NodeJS.Timeout | undefined
  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new'
  private readonly maxUdp: number
  private readonly apexKey: string
  private readonly scratch = Buffer.allocUnsafe(256)
  // Outputs of fastAnswer/fullAnswer besides the message, kept in fields rather than a
  // returned object so the per-query path allocates nothing it does not send.
  private lastType = 0
  private lastRcode = 0

  constructor (options: AuthoritativeServerOptions) {
    this.config = options.config
    this.view = options.view
    this.log = (options.logger ?? silentLogger).child({ component: 'dns' })
    this.zone = new Zone(options.config, options.view)
    this.cache = new AnswerCache(options.config.cacheSize)
    this.rrl = new RateLimiter(options.config.rateLimit)
    this.metrics = new DnsMetrics(options.registry)
    this.maxUdp = options.config.maxUdpPayload
    this.apexKey = encodeName(options.config.zone).toString('latin1')
    this.listeners = options.config.listen.map(l => ({
      address: l.address,
      family: net.isIPv6(l.address) ? 6 : 4,
      port: l.port,
      wantUdp: l.udp,
      wantTcp: l.tcp
    }))
  }

  /**
   * Binds every listener. Resolves when all are bound; if any fails, closes the others and
   * rejects with DnsServerError `FERRY_DNS_LISTEN` (a DNS role that serves half its addresses is
   * worse than one that fails loudly at start).
   */
  async start (): Promise<void> {
    if (this.state !== 'new') throw new DnsServerError('FERRY_DNS_STATE', `cannot start a server that is ${this.state}`)
    this.state = 'starting'
    this.unsubscribe = this.view.onChange(change => this.invalidate(change))
    try {
      for (const l of this.listeners) await this.bind(l)
    } catch (err) {
      await this.stop()
      const failed = this.listeners.filter(l => l.error !== undefined).map(l => `${l.address}:${l.port}: ${l.error}`)
      throw new DnsServerError('FERRY_DNS_LISTEN', `DNS listener failed: ${failed.join('; ') || String(err)}`, { listeners: failed })
    }
    if (this.rrl.enabled) {
      this.sweepTimer = setInterval(() => this.rrl.sweep(performance.now() / 1000), this.config.rateLimit.windowS * 1000)
      this.sweepTimer.unref()
    }
    this.state = 'running'
    this.log.info({ zone: this.config.zone, listeners: this.addresses() }, 'dns listening')
  }

  /** Closes every socket and connection. Safe to call more than once. */
  async stop (): Promise<void> {
    if (this.state === 'stopped') return
    this.state = 'stopped'
    this.unsubscribe?.()
    this.unsubscribe = undefined
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer)
    for (const c of this.connections) c.destroy()
    this.connections.clear()
    await Promise.all(this.listeners.flatMap(l => {
      const closing: Array<Promise<void>> = []
      const udp = l.udp
      const tcp = l.tcp
      l.udp = undefined
      l.tcp = undefined
      if (udp !== undefined) closing.push(new Promise(resolve => udp.close(() => resolve())))
      if (tcp !== undefined) closing.push(new Promise(resolve => tcp.close(() => resolve())))
      return closing
    }))
    this.log.info('dns stopped')
  }

  /** True when every configured listener is bound: what /readyz reports for the DNS role. */
  ready (): boolean {
    return this.state === 'running' && this.listeners.every(l => (!l.wantUdp || l.udp !== undefined) && (!l.wantTcp || l.tcp !== undefined))
  }

  status (): DnsStatus {
    const listeners: ListenerStatus[] = []
    const reasons: string[] = []
    for (const l of this.listeners) {
      for (const transport of ['udp', 'tcp'] as const) {
        if (transport === 'udp' ? !l.wantUdp : !l.wantTcp) continue
        const bound = (transport === 'udp' ? l.udp : l.tcp) !== undefined
        listeners.push({ transport, address: l.address, port: l.port, bound, ...(l.error !== undefined ? { error: l.error } : {}) })
        if (!bound) reasons.push(`dns ${transport} ${l.address}:${l.port} not bound${l.error !== undefined ? `: ${l.error}` : ''}`)
      }
    }
    if (this.state !== 'running') reasons.unshift(`dns server ${this.state}`)
    return {
      ready: reasons.length === 0,
      reasons,
      zone: this.config.zone,
      serial: this.zone.soaSerial,
      listeners,
      cachedAnswers: this.cache.size,
      rateLimitedSubnets: this.rrl.size,
      queries: this.metrics.totalQueries()
    }
  }

  /** Bound addresses, with the real port when 0 was configured. */
  addresses (): Array<{ transport: 'udp' | 'tcp', address: string, port: number }> {
    return this.status().listeners.filter(l => l.bound).map(l => ({ transport: l.transport, address: l.address, port: l.port }))
  }

  /**
   * Answers one message as if it came from `address` over `transport`, without the network
   * (and without rate limiting): for embedding (a DNS-over-HTTPS front, say) and for tests.
   * Undefined when the message gets no reply.
   */
  answer (msg: Buffer, address: string, transport: 'udp' | 'tcp' = 'udp'): Buffer | undefined {
    const udp = transport === 'udp'
    return this.fastAnswer(msg, address, udp) ?? this.fullAnswer(msg, address, udp)
  }

  private invalidate (change: DnsChange | undefined): void {
    const volumes = change?.volumes
    if (volumes === undefined) {
      this.cache.clear()
      this.zone.invalidate(true)
    } else {
      // Only these names: the rest of the cache stays warm (a route change for one volume
      // must not make every other volume a cache miss).
      for (const v of volumes) this.cache.deleteName(encodeName(`${v}.${this.config.zone}`).toString('latin1').toLowerCase())
      this.zone.invalidate(false)
      // The apex too, so that a SOA query shows the new serial. Cached negative answers keep
      // the serial they were made with; resolvers use only their TTL.
      this.cache.deleteName(this.apexKey)
    }
    this.metrics.invalidations++
    this.log.debug({ serial: this.zone.soaSerial, volumes: volumes?.length }, 'dns data changed, cached answers dropped')
  }

  // ---------------------------------------------------------------- listeners

  private async bind (l: Listener): Promise<void> {
    // Port 0: let UDP pick, then take the same number for TCP; another process can grab it in
    // between, so retry with a fresh pick a few times.
    for (let attempt = 0; ; attempt++) {
      try {
        if (l.wantUdp) await this.bindUdp(l)
        if (l.wantTcp) await this.bindTcp(l)
        l.error = undefined
        return
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        const configured = this.config.listen[this.listeners.indexOf(l)]?.port
        if (configured === 0 && code === 'EADDRINUSE' && attempt < 5) {
          await new Promise<void>(resolve => l.udp === undefined ? resolve() : l.udp.close(() => resolve()))
          l.udp = undefined
          l.port = 0
          continue
        }
        l.error = err instanceof Error ? err.message : String(err)
        throw err
      }
    }
  }

  private async bindUdp (l: Listener): Promise<void> {
    const socket = dgram.createSocket({
      type: l.family === 6 ? 'udp6' : 'udp4',
      // Replies go to the address a query came from, always an IP literal. dgram's default
      // lookup defers every send by a tick through dns.lookup; this one answers at once.
      lookup: (address: string, _family: unknown, callback: (err: Error | null, address: string, family: number) => void) => callback(null, address, l.family)
    } as dgram.SocketOptions)
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind({ address: l.address, port: l.port, exclusive: EXCLUSIVE }, () => {
        socket.removeListener('error', reject)
        resolve()
      })
    })
    // Bursts arrive faster than one event-loop turn drains; a larger receive buffer turns a
    // burst into a little latency instead of loss. Not much larger: under sustained overload
    // a deep queue only makes every answer late (1 MiB is ~1500 queries, ~40 ms at full
    // speed). The kernel caps it at net.core.rmem_max.
    try { socket.setRecvBufferSize(1024 * 1024) } catch { /* capped or refused: keep the default */ }
    socket.on('error', err => this.log.warn({ err, address: l.address }, 'dns udp socket error'))
    socket.on('message', (msg, rinfo) => this.onUdp(socket, msg, rinfo))
    l.port = socket.address().port
    l.udp = socket
  }

  private async bindTcp (l: Listener): Promise<void> {
    const server = net.createServer(sock => this.onTcp(sock))
    server.maxConnections = this.config.tcp.maxConnections
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: l.address, port: l.port, exclusive: EXCLUSIVE, ipv6Only: l.family === 6 && l.address === '::' ? false : undefined }, () => {
        server.removeListener('error', reject)
        resolve()
      })
    })
    server.on('error', err => this.log.warn({ err, address: l.address }, 'dns tcp listener error'))
    l.tcp = server
  }

  private onUdp (socket: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const start = performance.now()
    const address = rinfo.address
    if (this.rrl.enabled) {
      const verdict = this.rrl.check(address, start / 1000)
      if (verdict !== RRL_SEND) {
        if (verdict === RRL_DROP) {
          this.metrics.rateLimited++
          return
        }
        const slip = truncatedReply(msg)
        if (slip === undefined) {
          this.metrics.rateLimited++
          return
        }
        this.metrics.slips++
        socket.send(slip, rinfo.port, address)
        return
      }
    }
    let out: Buffer | undefined
    try {
      out = this.fastAnswer(msg, address, true) ?? this.fullAnswer(msg, address, true)
    } catch (err) {
      // A bug, not bad input (bad input is handled above): never let it take the process down.
      this.log.error({ err }, 'dns query failed')
      out = undefined
    }
    if (out === undefined) {
      this.metrics.malformedUdp++
      return
    }
    socket.send(out, rinfo.port, address)
    this.metrics.query(TRANSPORT_UDP, this.lastType, this.lastRcode, (performance.now() - start) / 1000)
  }

  private onTcp (sock: net.Socket): void {
    this.connections.add(sock)
    sock.setNoDelay(true)
    sock.setTimeout(this.config.tcp.idleTimeoutMs, () => sock.destroy())
    sock.on('error', () => sock.destroy())
    sock.on('close', () => this.connections.delete(sock))
    const address = sock.remoteAddress ?? ''
    let pending: Buffer = Buffer.alloc(0)
    sock.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      // RFC 7766 §6.2.1.1: several length-prefixed queries may arrive back to back.
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0)
        if (pending.length < 2 + length) break
        const msg = pending.subarray(2, 2 + length)
        pending = pending.subarray(2 + length)
        const start = performance.now()
        let out: Buffer | undefined
        try {
          out = this.fastAnswer(msg, address, false) ?? this.fullAnswer(msg, address, false)
        } catch (err) {
          this.log.error({ err }, 'dns query failed')
          out = undefined
        }
        if (out === undefined) {
          // Over TCP a message we cannot answer leaves the stream in doubt: close it.
          this.metrics.malformedTcp++
          sock.destroy()
          return
        }
        const framed = Buffer.allocUnsafe(2 + out.length)
        framed.writeUInt16BE(out.length, 0)
        out.copy(framed, 2)
        this.metrics.query(TRANSPORT_TCP, this.lastType, this.lastRcode, (performance.now() - start) / 1000)
        // A client that sends without reading must not make us buffer without bound.
        if (!sock.write(framed)) {
          sock.pause()
          sock.once('drain', () => sock.resume())
        }
      }
    })
  }

  // ---------------------------------------------------------------- fast path

  /**
   * Answers from the cache when the query has the common shape and the answer is there;
   * undefined otherwise (the full path then takes over, for the same message). Reads the
   * message by hand, bounds-checked at every step; anything unexpected defers to the full
   * path rather than deciding here.
   */
  private fastAnswer (msg: Buffer, address: string, udp: boolean): Buffer | undefined {
    const len = msg.length
    // Header: QR=0, opcode QUERY; QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1.
    if (len < 17 || ((msg[2] as number) & 0xf8) !== 0) return undefined
    if (msg[4] !== 0 || msg[5] !== 1 || ((msg[6] as number) | (msg[7] as number) | (msg[8] as number) | (msg[9] as number) | (msg[10] as number)) !== 0) return undefined
    const arcount = msg[11] as number
    if (arcount > 1) return undefined
    // The name: plain labels only (no compression pointers), at most 255 octets.
    let off = 12
    let upper = false
    for (;;) {
      if (off >= len) return undefined
      const l = msg[off] as number
      if (l === 0) break
      if (l > 63) return undefined
      const end = off + 1 + l
      if (end > len) return undefined
      for (let i = off + 1; i < end; i++) {
        const c = msg[i] as number
        if (c >= 65 && c <= 90) upper = true
      }
      off = end
    }
    const nameEnd = off + 1
    if (nameEnd - 12 > 255 || nameEnd + 4 > len) return undefined
    const qtype = ((msg[nameEnd] as number) << 8) | (msg[nameEnd + 1] as number)
    if (msg[nameEnd + 2] !== 0 || msg[nameEnd + 3] !== CLASS_IN) return undefined
    let p = nameEnd + 4
    let payload = 512
    let dnssecOk = false
    let ecsAt = -1
    if (arcount === 1) {
      // OPT: root owner, TYPE 41, CLASS payload, TTL (ext rcode, version 0, flags), RDLENGTH.
      if (p + 11 > len || msg[p] !== 0 || msg[p + 1] !== 0 || msg[p + 2] !== TYPE.OPT || msg[p + 6] !== 0) return undefined
      payload = ((msg[p + 3] as number) << 8) | (msg[p + 4] as number)
      if (payload < 512) payload = 512
      dnssecOk = ((msg[p + 7] as number) & 0x80) !== 0
      const rdEnd = p + 11 + (((msg[p + 9] as number) << 8) | (msg[p + 10] as number))
      if (rdEnd !== len) return undefined
      p += 11
      while (p < rdEnd) {
        if (p + 4 > rdEnd) return undefined
        const code = ((msg[p] as number) << 8) | (msg[p + 1] as number)
        const olen = ((msg[p + 2] as number) << 8) | (msg[p + 3] as number)
        if (p + 4 + olen > rdEnd) return undefined
        if (code === 8) {
          if (ecsAt >= 0 || !validEcs(msg, p + 4, olen)) return undefined
          ecsAt = p + 4
        }
        p += 4 + olen
      }
    } else if (p !== len) {
      return undefined
    }

    let key: string
    if (upper) {
      const scratch = this.scratch
      msg.copy(scratch, 0, 12, nameEnd)
      lowerAsciiInPlace(scratch, 0, nameEnd - 12)
      key = scratch.toString('latin1', 0, nameEnd - 12)
    } else {
      key = msg.toString('latin1', 12, nameEnd)
    }
    const entry = this.cache.get(qtype, key)
    if (entry === undefined) return undefined
    let body
    let scope = 0
    if (entry.siteDependent) {
      let site: string | undefined
      const source = ecsAt >= 0 ? msg[ecsAt + 2] as number : 0
      if (source > 0) {
        site = this.view.siteOf(ecsText(msg, ecsAt))
        scope = source
      } else {
        site = this.view.siteOf(address)
      }
      body = entry.bySite.get(site ?? '')
      if (body === undefined) return undefined
    } else {
      body = entry.body
    }
    const bytes = body.bytes
    const ecsLength = ecsAt >= 0 ? 8 + (((msg[ecsAt + 2] as number) + 7) >>> 3) : 0
    const optLength = arcount === 1 ? 11 + ecsLength : 0
    const total = bytes.length + optLength
    if (total > (udp ? (arcount === 1 ? Math.min(payload, this.maxUdp) : 512) : TCP_MAX_RESPONSE)) return undefined

    const out = Buffer.allocUnsafe(total)
    bytes.copy(out, 0)
    out[0] = msg[0] as number
    out[1] = msg[1] as number
    // RD and CD are copied from the query (RFC 1035 §4.1.1, RFC 6840 §5.9).
    out[2] = ((bytes[2] as number) & 0xfe) | ((msg[2] as number) & 0x01)
    out[3] = ((bytes[3] as number) & 0xef) | ((msg[3] as number) & 0x10)
    if (upper) msg.copy(out, 12, 12, nameEnd)
    if (arcount === 1) {
      const o = bytes.length
      out.writeUInt16BE(bytes.readUInt16BE(10) + 1, 10)
      out[o] = 0
      out[o + 1] = 0
      out[o + 2] = TYPE.OPT
      out[o + 3] = this.maxUdp >>> 8
      out[o + 4] = this.maxUdp & 0xff
      out[o + 5] = 0
      out[o + 6] = 0
      out[o + 7] = dnssecOk ? 0x80 : 0
      out[o + 8] = 0
      out[o + 9] = ecsLength >>> 8
      out[o + 10] = ecsLength & 0xff
      if (ecsAt >= 0) {
        // The query's option (code, length, family, source prefix, address) with our scope.
        msg.copy(out, o + 11, ecsAt - 4, ecsAt - 4 + ecsLength)
        out[o + 11 + 7] = scope
      }
    }
    this.lastType = qtype
    this.lastRcode = body.rcode
    this.metrics.cacheHits++
    return out
  }

  // ---------------------------------------------------------------- full path

  private fullAnswer (msg: Buffer, address: string, udp: boolean): Buffer | undefined {
    const parsed = parseQuery(msg)
    if (parsed === undefined) return undefined
    const query = parsed.query
    const head: ResponseHead = { id: query.id, queryFlags: query.flags, question: query.question }
    this.lastType = query.question?.type ?? 0
    if (!parsed.ok) {
      // RFC 6891 §7: a malformed OPT means no OPT in the FORMERR either.
      this.log.debug({ code: parsed.error.code, reason: parsed.error.message, client: address }, 'dns FORMERR')
      return this.reply(encodeError(head, RCODE.FORMERR, undefined), RCODE.FORMERR)
    }
    const edns = query.edns
    if (query.opcode !== OPCODE_QUERY) return this.reply(encodeError(head, RCODE.NOTIMP, undefined), RCODE.NOTIMP)
    if (edns !== undefined && edns.version !== 0) {
      // RFC 6891 §6.1.3: BADVERS, with an OPT of the version we do speak.
      return this.reply(encodeError(head, RCODE.BADVERS, { payload: this.maxUdp, extendedRcode: RCODE.BADVERS >>> 4, dnssecOk: edns.dnssecOk, ecs: undefined, scope: 0 }), RCODE.BADVERS)
    }
    const question = query.question
    if (question === undefined) return this.reply(encodeError(head, RCODE.FORMERR, undefined), RCODE.FORMERR)
    const opt = (scope: number) => edns === undefined
      ? undefined
      : { payload: this.maxUdp, extendedRcode: 0, dnssecOk: edns.dnssecOk, ecs: edns.ecs, scope }
    if (question.type === TYPE.OPT) return this.reply(encodeError(head, RCODE.FORMERR, opt(0)), RCODE.FORMERR)
    if (question.type === TYPE.MAILA || question.type === TYPE.MAILB) return this.reply(encodeError(head, RCODE.NOTIMP, opt(0)), RCODE.NOTIMP)

    let siteAsked = false
    let site: string | undefined
    const siteOf = (): string | undefined => {
      if (!siteAsked) {
        siteAsked = true
        site = this.clientSite(edns, address)
      }
      return site
    }
    let answer: Answer
    try {
      answer = this.zone.resolve(question, siteOf)
    } catch (err) {
      this.log.error({ err, qname: question.labels.join('.'), qtype: question.type }, 'dns view failed')
      return this.reply(encodeError(head, RCODE.SERVFAIL, opt(0)), RCODE.SERVFAIL)
    }
    const ecs = edns?.ecs
    const scope = answer.siteDependent && ecs !== undefined ? ecs.sourcePrefix : 0
    const limit = !udp ? TCP_MAX_RESPONSE : edns === undefined ? 512 : Math.min(edns.payload, this.maxUdp)
    const { message, body } = encodeResponse(head, answer, opt(scope), limit)
    if (question.qclass === CLASS_IN) {
      // Cached with the question in lower case: the fast path writes the asker's case back
      // only when it has upper-case letters.
      const bytes = Buffer.from(body)
      lowerAsciiInPlace(bytes, 12, 12 + question.raw.length)
      this.cache.set(question.type, question.key, answer.siteDependent, site ?? '', { bytes, rcode: answer.rcode })
    }
    this.metrics.cacheMisses++
    return this.reply(message, answer.rcode)
  }

  private reply (message: Buffer, rcode: number): Buffer {
    this.lastRcode = rcode
    return message
  }

  /** RFC 7871 §7.1.2: the client subnet when it carries a prefix, else the source address. */
  private clientSite (edns: Edns | undefined, address: string): string | undefined {
    const ecs: ClientSubnet | undefined = edns?.ecs
    return this.view.siteOf(ecs !== undefined && ecs.sourcePrefix > 0 ? ecsAddressText(ecs) : address)
  }
}

/**
 * Checks a client subnet option as decodeEcs does (so the fast path never accepts what the
 * full path would answer FORMERR), without allocating.
 */
function validEcs (msg: Buffer, at: number, length: number): boolean {
  if (length < 4) return false
  const family = ((msg[at] as number) << 8) | (msg[at + 1] as number)
  const source = msg[at + 2] as number
  if ((family !== 1 && family !== 2) || msg[at + 3] !== 0) return false
  if (source > (family === 1 ? 32 : 128)) return false
  const octets = (source + 7) >>> 3
  if (length - 4 !== octets) return false
  const spare = octets * 8 - source
  return spare === 0 || ((msg[at + 4 + octets - 1] as number) & ((1 << spare) - 1)) === 0
}

/** The client subnet's address as text for DnsView.siteOf, straight from the message. */
function ecsText (msg: Buffer, at: number): string {
  const octets = ((msg[at + 2] as number) + 7) >>> 3
  const b = at + 4
  const byte = (i: number): number => i < octets ? msg[b + i] as number : 0
  if (msg[at + 1] === 1) return `${byte(0)}.${byte(1)}.${byte(2)}.${byte(3)}`
  let text = ''
  for (let i = 0; i < 16; i += 2) text += (i === 0 ? '' : ':') + ((byte(i) << 8) | byte(i + 1)).toString(16)
  return text
}

/**
 * The reply a rate-limited client gets instead of silence on a slip: header and question
 * only, TC set, so a real client retries over TCP. Undefined when the question is not plain
 * enough to copy (then the response is dropped).
 */
function truncatedReply (msg: Buffer): Buffer | undefined {
  if (msg.length < 17 || ((msg[2] as number) & 0x80) !== 0 || msg[4] !== 0 || msg[5] !== 1) return undefined
  let off = 12
  for (;;) {
    if (off >= msg.length) return undefined
    const l = msg[off] as number
    if (l === 0) break
    if (l > 63) return undefined
    off += 1 + l
  }
  const end = off + 5
  if (end > msg.length) return undefined
  const out = Buffer.allocUnsafe(end)
  msg.copy(out, 0, 0, end)
  const flags = FLAG_QR | FLAG_TC | (msg.readUInt16BE(2) & 0x7900)
  out.writeUInt16BE(flags, 2)
  out.writeUInt32BE(0x00010000, 4) // QDCOUNT 1, ANCOUNT 0
  out.writeUInt32BE(0, 8) // NSCOUNT 0, ARCOUNT 0
  return out
}
