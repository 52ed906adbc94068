/**
 * An emulated WAN link: a userspace TCP relay that adds a fixed one-way delay in each direction
 * between a listener and a target. This machine has no `netem` (no CAP_NET_ADMIN), so the fleet
 * replay (bench/fleet.ts) puts one of these between every pair of sites: a client at site X
 * reaching the edge at site Y, and the proxy at X reaching a gateway at Y.
 *
 * Written by hand on node:net rather than taken from a library: the npm TCP proxies
 * (tcp-proxy, node-tcp-proxy, …) pipe streams without delay, and a delay has to be applied per
 * chunk, in order, with backpressure and clean half-close — which is the whole of this module.
 *
 * What it emulates:
 * - each chunk is delivered `delayMs` after it arrived, in arrival order, per direction;
 * - a new connection pays the handshake: the first byte towards the target leaves no earlier
 *   than 2 × delay after the accept (SYN, SYN-ACK), then travels its own delay;
 * - a FIN travels like data (half-close is kept: `allowHalfOpen`); an RST (error, destroy)
 *   cuts the other side at once, as a reset does;
 * - the upstream connection is made from `localAddress` when given, so the target sees the
 *   client's site in the source address (ferry derives a client's site from it);
 * - backpressure: a direction with more than `highWaterBytes` queued or unflushed pauses its
 *   source until the destination drains.
 *
 * What it does not: bandwidth limits, loss, reordering. Timers fire late by the event loop's
 * lag, so the relay records every chunk's lateness (`stats()`), which the benchmark reports as
 * part of the relay's overhead.
 */
import net from 'node:net'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

export interface RelayOptions {
  /** Where to listen; port 0 picks one. */
  listenHost?: string
  listenPort?: number
  targetHost: string
  targetPort: number
  /** Source address of the upstream connection (e.g. an address in the client's site subnet). */
  localAddress?: string
  /** One-way delay added in each direction, in ms. 0: bytes are forwarded at once. */
  delayMs: number
  highWaterBytes?: number
  name?: string
}

export interface RelayStats {
  name: string
  delayMs: number
  connections: number
  open: number
  bytesUp: number
  bytesDown: number
  chunks: number
  /** How late delayed chunks were delivered against their due time (ms). */
  latenessMeanMs: number
  latenessMaxMs: number
}

interface Pending { due: number, chunk: Buffer | null }

/**
 * One direction of one connection: chunks wait in a queue until due, one timer per direction
 * (never one per chunk), so order holds whatever the timer granularity.
 */
class DelayedPipe {
  private readonly queue: Pending[] = []
  private head = 0
  private timer: NodeJS.Timeout | undefined
  private queuedBytes = 0
  private paused = false
  closed = false

  constructor (
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly delayMs: number,
    private readonly notBefore: () => number,
    private readonly highWater: number,
    private readonly onBytes: (n: number, lateMs: number) => void
  ) {
    src.on('data', (chunk: Buffer) => { this.push(chunk) })
    src.on('end', () => { this.push(null) })
    dst.on('drain', () => { this.maybeResume() })
  }

  private push (chunk: Buffer | null): void {
    if (this.closed) return
    const due = Math.max(performance.now(), this.notBefore()) + this.delayMs
    if (this.delayMs === 0 && this.queue.length === this.head && performance.now() >= this.notBefore()) {
      this.deliver(chunk, 0)
      return
    }
    this.queue.push({ due, chunk })
    if (chunk !== null) this.queuedBytes += chunk.length
    if (this.queuedBytes + this.dst.writableLength > this.highWater && !this.paused) { this.paused = true; this.src.pause() }
    this.arm()
  }

  private arm (): void {
    if (this.timer !== undefined || this.head >= this.queue.length) return
    const next = this.queue[this.head] as Pending
    this.timer = setTimeout(() => { this.timer = undefined; this.flush() }, Math.max(0, next.due - performance.now()))
  }

  private flush (): void {
    const now = performance.now()
    while (this.head < this.queue.length && (this.queue[this.head] as Pending).due <= now + 0.05) {
      const p = this.queue[this.head] as Pending
      this.queue[this.head++] = { due: 0, chunk: null }
      if (p.chunk !== null) this.queuedBytes -= p.chunk.length
      this.deliver(p.chunk, now - p.due)
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) { this.queue.splice(0, this.head); this.head = 0 }
    this.maybeResume()
    this.arm()
  }

  private deliver (chunk: Buffer | null, lateMs: number): void {
    if (this.dst.destroyed) return
    if (chunk === null) { this.dst.end(); return }
    this.dst.write(chunk)
    this.onBytes(chunk.length, lateMs)
    if (!this.paused && this.queuedBytes + this.dst.writableLength > this.highWater) { this.paused = true; this.src.pause() }
  }

  private maybeResume (): void {
    if (this.paused && this.queuedBytes + this.dst.writableLength <= this.highWater / 2) { this.paused = false; this.src.resume() }
  }

  close (): void {
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }
}

export class DelayRelay {
  private server: net.Server | undefined
  private readonly sockets = new Set<net.Socket>()
  private s = { connections: 0, bytesUp: 0, bytesDown: 0, chunks: 0, lateSum: 0, lateMax: 0, lateN: 0 }
  port = 0

  constructor (readonly opts: RelayOptions) {}

  get name (): string { return this.opts.name ?? `${this.opts.targetHost}:${this.opts.targetPort}` }
  get address (): string { return `${this.opts.listenHost ?? '127.0.0.1'}:${this.port}` }

  async start (): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, c => { this.accept(c) })
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.opts.listenPort ?? 0, this.opts.listenHost ?? '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.port = (server.address() as net.AddressInfo).port
  }

  /** Connections open right now (both legs counted once). */
  get open (): number { return this.sockets.size / 2 }

  stats (): RelayStats {
    const s = this.s
    return {
      name: this.name,
      delayMs: this.opts.delayMs,
      connections: s.connections,
      open: Math.ceil(this.open),
      bytesUp: s.bytesUp,
      bytesDown: s.bytesDown,
      chunks: s.chunks,
      latenessMeanMs: s.lateN === 0 ? 0 : Math.round((s.lateSum / s.lateN) * 1000) / 1000,
      latenessMaxMs: Math.round(s.lateMax * 1000) / 1000
    }
  }

  resetStats (): void { this.s = { connections: 0, bytesUp: 0, bytesDown: 0, chunks: 0, lateSum: 0, lateMax: 0, lateN: 0 } }

  /** Stops listening and resets every open connection; resolves once all sockets are closed. */
  async stop (): Promise<void> {
    const server = this.server
    this.server = undefined
    const closed = server === undefined ? Promise.resolve() : new Promise<void>(resolve => { server.close(() => { resolve() }) })
    for (const s of this.sockets) s.resetAndDestroy()
    await closed
  }

  private accept (client: net.Socket): void {
    const acceptedAt = performance.now()
    const d = this.opts.delayMs
    this.s.connections++
    const upstream = net.connect({
      host: this.opts.targetHost,
      port: this.opts.targetPort,
      allowHalfOpen: true,
      noDelay: true,
      ...(this.opts.localAddress !== undefined ? { localAddress: this.opts.localAddress } : {})
    })
    this.sockets.add(client)
    this.sockets.add(upstream)
    const hw = this.opts.highWaterBytes ?? 1024 * 1024
    const count = (dir: 'bytesUp' | 'bytesDown') => (n: number, late: number): void => {
      this.s[dir] += n
      this.s.chunks++
      if (d > 0) { this.s.lateSum += late; this.s.lateN++; if (late > this.s.lateMax) this.s.lateMax = late }
    }
    // Data towards the target waits for the emulated handshake (one round trip); the answer
    // direction has nothing to wait for. Writes before the real connect are queued by net.
    const up = new DelayedPipe(client, upstream, d, () => acceptedAt + 2 * d, hw, count('bytesUp'))
    const down = new DelayedPipe(upstream, client, d, () => 0, hw, count('bytesDown'))
    let done = false
    const reset = (): void => {
      if (done) return
      done = true
      up.close()
      down.close()
      // RST, not FIN: a half-open peer would otherwise wait for an end that never comes.
      if (!client.destroyed) client.resetAndDestroy()
      if (!upstream.destroyed) upstream.resetAndDestroy()
    }
    // A reset either way cuts the peer at once. A clean close (FIN both ways on that leg) cuts
    // nothing: the other leg still has delayed bytes and its FIN in flight, and closes itself.
    client.on('error', reset)
    upstream.on('error', reset)
    const closed = (s: net.Socket) => (hadError: boolean): void => {
      this.sockets.delete(s)
      if (hadError) reset()
      else if (client.destroyed && upstream.destroyed) { up.close(); down.close() }
    }
    client.on('close', closed(client))
    upstream.on('close', closed(upstream))
  }
}

/** Starts one relay per spec; on any failure, stops those already started. */
export async function startRelays (specs: RelayOptions[]): Promise<DelayRelay[]> {
  const out: DelayRelay[] = []
  try {
    for (const s of specs) {
      const r = new DelayRelay(s)
      await r.start()
      out.push(r)
    }
  } catch (err) {
    await Promise.all(out.map(r => r.stop()))
    throw err
  }
  return out
}

/**
 * The fleet's relays on their own thread: the replay's clients (hashing bodies, DNS, undici)
 * share the benchmark's event loop, and every ms that loop lags is a ms of delay the links did
 * not mean to add. A worker gives the links an event loop of their own.
 */
export class RelayThread {
  private worker: Worker | undefined
  private seq = 0
  private readonly waiting = new Map<number, (v: unknown) => void>()
  ports: number[] = []

  async start (specs: RelayOptions[]): Promise<number[]> {
    const w = new Worker(new URL(import.meta.url), { workerData: { relayThread: true } })
    this.worker = w
    w.on('message', (m: { id: number, value: unknown }) => { this.waiting.get(m.id)?.(m.value); this.waiting.delete(m.id) })
    const failed = new Promise<never>((_resolve, reject) => { w.once('error', reject) })
    const r = await Promise.race([this.call('start', specs), failed]) as { ports?: number[], error?: string }
    if (r.error !== undefined) throw new Error(r.error)
    this.ports = r.ports ?? []
    return this.ports
  }

  async stats (): Promise<RelayStats[]> { return await this.call('stats') as RelayStats[] }

  /** Terminating the thread closes every socket it holds: nothing to wait for connection by connection. */
  async stop (): Promise<void> {
    const w = this.worker
    this.worker = undefined
    if (w !== undefined) await w.terminate()
    for (const resolve of this.waiting.values()) resolve(null)
    this.waiting.clear()
  }

  private async call (op: string, arg?: unknown): Promise<unknown> {
    const id = ++this.seq
    return await new Promise(resolve => {
      this.waiting.set(id, resolve)
      this.worker?.postMessage({ id, op, arg })
    })
  }
}

if (!isMainThread && (workerData as { relayThread?: boolean } | null)?.relayThread === true && parentPort !== null) {
  const port = parentPort
  let relays: DelayRelay[] = []
  port.on('message', (m: { id: number, op: string, arg: unknown }) => {
    void (async (): Promise<unknown> => {
      if (m.op === 'start') {
        try { relays = await startRelays(m.arg as RelayOptions[]) } catch (err) { return { error: (err as Error).message } }
        return { ports: relays.map(r => r.port) }
      }
      if (m.op === 'stats') return relays.map(r => r.stats())
      return null
    })().then(value => { port.postMessage({ id: m.id, value }) })
  })
}
