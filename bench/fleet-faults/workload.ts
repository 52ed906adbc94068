/**
 * Clients that behave like users': writers that each own a volume and write, read and now and
 * then delete its blocks through both proxies, and readers that read everybody's blocks through
 * either proxy. Half the writers use an undici pool; the other half a Python-like connection that
 * sits idle for a while between bursts and is then reused. Every operation lands in the History
 * (for the lost/stale checks) and in the Tally (refusals, outages, findings).
 */
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ProxyEndpoint } from './deployment.js'
import { ClientError, IdleSocketClient, PoolClient, type HttpClient, type HttpReply } from './http-clients.js'
import { ABSENT, type AnomalyKind, type History, type Tally } from './ledger.js'

export type Outcome =
  | { kind: 'ok', version: string | undefined, anomaly?: AnomalyKind }
  | { kind: 'refused', code: string }
  | { kind: 'outage', what: string }
  | { kind: 'race' }
  | { kind: 'failure', signature: string, example: string }

export interface WorkloadOptions {
  writers: number
  blocksPerWriter: number
  readers: number
  /** Per-request client timeout: a request that takes longer is a finding. */
  timeoutMs: number
  /** Idle gaps (ms) the Python-like writers take now and then, chosen to straddle the proxy timeouts. */
  idleGapsMs: number[]
}

const FILLER = randomBytes(64 * 1024)

export function versionOf (body: Buffer): string {
  return createHash('sha256').update(body).digest('hex').slice(0, 24)
}

/** A body that names its block and sequence number, so a misrouted read is recognisable. */
function makeBody (key: string, seq: number): Buffer {
  const size = Math.random() < 0.7 ? 256 + Math.floor(Math.random() * 4096) : 16 * 1024 + Math.floor(Math.random() * 48 * 1024)
  const head = Buffer.from(`${key} #${seq} ${randomBytes(6).toString('hex')}\n`)
  const start = Math.floor(Math.random() * (FILLER.length - size))
  return Buffer.concat([head, FILLER.subarray(start, start + Math.max(0, size - head.length))])
}

function errorCodeOf (reply: HttpReply): string | undefined {
  if (!(reply.headers['content-type'] ?? '').includes('json')) return undefined
  try {
    const code = (JSON.parse(reply.body.toString('utf8')) as { error?: { code?: unknown } }).error?.code
    return typeof code === 'string' ? code : undefined
  } catch {
    return undefined
  }
}

/**
 * Block operations with their bookkeeping. Reads and deletes are checked against the history
 * here; what the outcome counts as is left to the caller (`tally`), because the recovery probe
 * expects failures while it waits and must not count them.
 */
export class BlockOps {
  private seq = 0

  constructor (readonly history: History, readonly tally: Tally, readonly timeoutMs: number) {}

  async put (client: HttpClient, via: ProxyEndpoint, volume: string, block: string, headers: Record<string, string>): Promise<Outcome> {
    const key = `${volume}/${block}`
    const seq = this.seq++
    const body = makeBody(key, seq)
    const w = this.history.beginWrite(key, 'put', versionOf(body), via.name)
    const r = await this.send(client, via, { method: 'PUT', path: `/${key}`, headers: { ...headers, 'content-type': 'application/octet-stream' }, body })
    if (r.reply !== undefined && r.reply.status >= 200 && r.reply.status < 300) {
      this.history.endWrite(w, true, r.reply.headers.etag)
      return { kind: 'ok', version: w.version }
    }
    this.history.endWrite(w, false)
    return r.outcome
  }

  async get (client: HttpClient, via: ProxyEndpoint, key: string, headers: Record<string, string>): Promise<Outcome> {
    const startedAt = performance.now()
    const r = await this.send(client, via, { method: 'GET', path: `/${key}`, headers })
    const endedAt = performance.now()
    const reply = r.reply
    if (reply === undefined || (reply.status !== 200 && reply.status !== 404)) return r.outcome
    // A 404 that ferry produced itself (typed) is not "no such block".
    if (reply.status === 404 && errorCodeOf(reply)?.startsWith('FERRY_') === true) return r.outcome
    const observed = reply.status === 404 ? ABSENT : versionOf(reply.body)
    const anomaly = this.history.checkRead(key, startedAt, endedAt, observed, via.name, this.tally.phase)
    if (anomaly !== undefined) this.tally.anomaly(anomaly)
    return { kind: 'ok', version: observed, ...(anomaly !== undefined ? { anomaly } : {}) }
  }

  async del (client: HttpClient, via: ProxyEndpoint, key: string, headers: Record<string, string>): Promise<Outcome> {
    // "Not found" on a delete is a read that saw the block absent: judged like one, against the
    // writes before this delete.
    const now = performance.now()
    const before = this.history.allowed(key, now, now)
    const w = this.history.beginWrite(key, 'delete', ABSENT, via.name)
    const r = await this.send(client, via, { method: 'DELETE', path: `/${key}`, headers })
    const reply = r.reply
    if (reply !== undefined && (reply.status === 204 || reply.status === 200 || (reply.status === 404 && errorCodeOf(reply)?.startsWith('FERRY_') !== true))) {
      this.history.endWrite(w, true)
      const anomaly = reply.status === 404 ? this.history.judge(key, before, ABSENT, via.name, this.tally.phase) : undefined
      if (anomaly !== undefined) this.tally.anomaly(anomaly)
      return { kind: 'ok', version: ABSENT, ...(anomaly !== undefined ? { anomaly } : {}) }
    }
    this.history.endWrite(w, false)
    return r.outcome
  }

  /** Counts an outcome of a client operation (not of a probe). */
  count (op: 'put' | 'get' | 'delete', o: Outcome): void {
    const t = this.tally
    if (o.kind === 'ok') {
      if (op === 'put') t.writesAcked++
      else if (op === 'delete') t.deletesAcked++
      else t.reads++
      return
    }
    if (op === 'get') t.readsFailed++
    else t.writesNotAcked++
    if (o.kind === 'refused') t.refusal(o.code)
    else if (o.kind === 'outage') t.outage(o.what)
    else if (o.kind === 'race') t.keepAliveRaces++
    else t.finding(o.signature, o.example)
  }

  private async send (client: HttpClient, via: ProxyEndpoint, req: { method: 'GET' | 'PUT' | 'DELETE', path: string, headers: Record<string, string>, body?: Buffer }): Promise<{ reply?: HttpReply, outcome: Outcome }> {
    const startedAt = performance.now()
    let reply: HttpReply
    try {
      reply = await client.request({ ...req, timeoutMs: this.timeoutMs })
    } catch (err) {
      const e = err instanceof ClientError ? err : new ClientError('EUNKNOWN', String(err))
      if (via.member.wasDown(startedAt, performance.now())) return { outcome: { kind: 'outage', what: `${via.name} down: ${e.code}` } }
      // A reused idle connection that the server closed just as the request went out: the
      // keep-alive race every HTTP/1.1 client without retries can hit (Python's requests does).
      if (e.reused && ['RemoteDisconnected', 'ECONNRESET', 'EPIPE'].includes(e.code)) return { outcome: { kind: 'race' } }
      return { outcome: { kind: 'failure', signature: `${req.method} ${client.kind}: ${e.code}`, example: `${req.method} ${via.name}${req.path}: ${e.message}` } }
    }
    const status = reply.status
    if (status < 300) return { reply, outcome: { kind: 'ok', version: undefined } }
    const code = errorCodeOf(reply)
    const retryAfter = reply.headers['retry-after'] !== undefined
    if (status === 503 && retryAfter && code !== undefined) return { reply, outcome: { kind: 'refused', code } }
    if (via.member.wasDown(startedAt, performance.now())) return { reply, outcome: { kind: 'outage', what: `${via.name} down: ${status}` } }
    const signature = `${req.method} ${status} ${code ?? '(no JSON error code)'}${status === 503 && !retryAfter ? ' without Retry-After' : ''}`
    return { reply, outcome: { kind: 'failure', signature, example: `${req.method} ${via.name}${req.path} → ${status} ${reply.body.toString('utf8').slice(0, 300)}` } }
  }
}

export class Workload {
  private stopping = false
  private loops: Array<Promise<void>> = []
  private readonly clients: HttpClient[] = []
  /** Operations completed, for "traffic is flowing" checks. */
  ops = 0

  constructor (private readonly proxies: ProxyEndpoint[], readonly blockOps: BlockOps, private readonly opts: WorkloadOptions) {}

  private get history (): History { return this.blockOps.history }

  /** Every block written once (acknowledged) before the faults begin. */
  async populate (): Promise<void> {
    await Promise.all(Array.from({ length: this.opts.writers }, async (_, i) => {
      const client = this.client(this.proxies[0] as ProxyEndpoint, 'pool')
      for (let b = 0; b < this.opts.blocksPerWriter; b++) {
        const via = this.proxies[b % this.proxies.length] as ProxyEndpoint
        const poolForVia = via === this.proxies[0] ? client : this.client(via, 'pool')
        for (let attempt = 0; ; attempt++) {
          const o = await this.blockOps.put(poolForVia, via, `w${i}`, `b${b}`, siteHeaders(i))
          if (o.kind === 'ok') break
          if (attempt > 20) throw new Error(`could not write w${i}/b${b}: ${JSON.stringify(o)}`)
          await sleep(100)
        }
      }
    }))
  }

  start (): void {
    for (let i = 0; i < this.opts.writers; i++) this.loops.push(this.writer(i))
    for (let i = 0; i < this.opts.readers; i++) this.loops.push(this.reader(i))
  }

  async stop (): Promise<void> {
    this.stopping = true
    await Promise.all(this.loops)
    this.loops = []
  }

  async close (): Promise<void> {
    await this.stop()
    await Promise.all(this.clients.map(c => c.close()))
  }

  /**
   * Once everything is quiet: every block read through every proxy must be its last acknowledged
   * version. A block whose last write failed is skipped (either answer is right).
   */
  async verifyAll (): Promise<{ checked: number, unreadable: string[] }> {
    const unreadable: string[] = []
    let checked = 0
    const clients = this.proxies.map(p => ({ p, c: this.client(p, 'pool', 4) }))
    const keys = this.history.keys().filter(k => !k.startsWith('probe/') && this.history.settledVersion(k) !== undefined)
    await Promise.all([0, 1, 2, 3].map(async lane => {
      for (let i = lane; i < keys.length; i += 4) {
        const key = keys[i] as string
        for (const { p, c } of clients) {
          let o: Outcome | undefined
          for (let attempt = 0; attempt < 10; attempt++) {
            o = await this.blockOps.get(c, p, key, {})
            if (o.kind === 'ok') break
            await sleep(200)
          }
          if (o?.kind === 'ok') checked++
          else unreadable.push(`${p.name} ${key}: ${JSON.stringify(o)}`)
        }
      }
    }))
    return { checked, unreadable }
  }

  client (via: ProxyEndpoint, kind: 'pool' | 'idle-socket', connections = 1): HttpClient {
    const url = new URL(via.url)
    const c = kind === 'pool' ? new PoolClient(via.url, connections) : new IdleSocketClient(url.hostname, Number(url.port))
    this.clients.push(c)
    return c
  }

  private async writer (i: number): Promise<void> {
    const kind = i % 2 === 0 ? 'pool' : 'idle-socket'
    const clients = this.proxies.map(p => this.client(p, kind))
    const headers = siteHeaders(i)
    const volume = `w${i}`
    while (!this.stopping) {
      const p = Math.floor(Math.random() * this.proxies.length)
      const via = this.proxies[p] as ProxyEndpoint
      const client = clients[p] as HttpClient
      const block = `b${Math.floor(Math.random() * this.opts.blocksPerWriter)}`
      const dice = Math.random()
      if (dice < 0.5) this.blockOps.count('put', await this.blockOps.put(client, via, volume, block, headers))
      else if (dice < 0.96) this.blockOps.count('get', await this.blockOps.get(client, via, `${volume}/${block}`, headers))
      else this.blockOps.count('delete', await this.blockOps.del(client, via, `${volume}/${block}`, headers))
      this.ops++
      await sleep(kind === 'idle-socket' && Math.random() < 0.02 ? this.idleGap() : 5 + Math.random() * 20)
    }
  }

  private async reader (i: number): Promise<void> {
    const clients = this.proxies.map(p => this.client(p, 'pool', 2))
    while (!this.stopping) {
      const keys = this.history.keys().filter(k => !k.startsWith('probe/'))
      const key = keys[Math.floor(Math.random() * keys.length)]
      if (key === undefined) { await sleep(50); continue }
      const p = Math.floor(Math.random() * this.proxies.length)
      this.blockOps.count('get', await this.blockOps.get(clients[p] as HttpClient, this.proxies[p] as ProxyEndpoint, key, siteHeaders(i + 1)))
      this.ops++
      await sleep(5 + Math.random() * 20)
    }
  }

  private idleGap (): number {
    const gaps = this.opts.idleGapsMs
    return gaps[Math.floor(Math.random() * gaps.length)] as number
  }
}

/** Writer i's clients come from site a, b or c (the proxies trust X-Forwarded-For from loopback). */
export function siteHeaders (i: number): Record<string, string> {
  return { 'x-forwarded-for': `127.0.${i % 3}.${10 + i}` }
}
