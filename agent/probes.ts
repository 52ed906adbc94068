/**
 * The agent's two active measurements: a TCP connect round trip to each peer (network latency
 * without depending on what the peer serves) and a GET of the gateway's own health endpoint.
 * Both always resolve, never reject: a failure is a measurement too.
 */
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { performance } from 'node:perf_hooks'

export interface Peer {
  host: string
  port: number
}

/** `host:port`, `1.2.3.4:port` or `[::1]:port`; undefined when malformed. */
export function parsePeer (text: string): Peer | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text.trim())
  if (m === null) return undefined
  const port = Number(m[3])
  if (port < 1 || port > 65535) return undefined
  return { host: (m[1] ?? m[2]) as string, port }
}

/**
 * Milliseconds until the TCP handshake completed, or undefined when the peer refused, did not
 * answer within `timeoutMs`, or the name did not resolve. The connection is closed at once:
 * nothing is sent, so any TCP service (the peer gateways' data ports) can be measured.
 * Includes name resolution when `host` is a name; use addresses for a pure network figure.
 */
export async function tcpConnectRtt (peer: Peer, timeoutMs: number): Promise<number | undefined> {
  return await new Promise(resolve => {
    const started = performance.now()
    const socket = net.connect({ host: peer.host, port: peer.port })
    const done = (rtt: number | undefined): void => {
      clearTimeout(timer)
      socket.removeAllListeners()
      socket.on('error', () => {}) // a late RST after destroy() must not become an uncaught error
      socket.destroy()
      resolve(rtt)
    }
    const timer = setTimeout(() => { done(undefined) }, timeoutMs)
    socket.once('connect', () => { done(performance.now() - started) })
    socket.once('error', () => { done(undefined) })
  })
}

export interface ProbeResult {
  ok: boolean
  /** Until the whole body arrived, or until the failure (the timeout when it timed out). */
  latencyMs: number
  status?: number
  error?: string
}

/** Health bodies are tiny; a probe never buffers more than this. */
const PROBE_BODY_MAX = 64 * 1024

/** An https probe's CA (instead of the system's) and client certificate, PEM bytes. */
export interface ProbeTls { ca?: Buffer, cert?: Buffer, key?: Buffer }

/**
 * GET `url` on a fresh connection (no keep-alive: a gateway that stopped accepting connections
 * must fail its probe even while an old idle connection would still work). ok = 2xx.
 */
export async function httpProbe (url: URL, timeoutMs: number, tls: ProbeTls = {}): Promise<ProbeResult> {
  return await new Promise(resolve => {
    const started = performance.now()
    let settled = false
    const finish = (r: Omit<ProbeResult, 'latencyMs'>): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      resolve({ ...r, latencyMs: performance.now() - started })
    }
    const client = url.protocol === 'https:' ? https : http
    const req = client.get(url, { agent: false, headers: { 'user-agent': 'ferry-agent' }, ...(url.protocol === 'https:' ? tls : {}) }, res => {
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > PROBE_BODY_MAX) finish({ ok: false, status: res.statusCode, error: 'probe body too large' })
      })
      res.on('end', () => {
        const status = res.statusCode ?? 0
        finish(status >= 200 && status < 300 ? { ok: true, status } : { ok: false, status, error: `status ${status}` })
      })
      res.on('error', err => { finish({ ok: false, status: res.statusCode, error: err.message }) })
    })
    req.on('error', err => { finish({ ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message }) })
    const timer = setTimeout(() => { finish({ ok: false, error: `timeout after ${timeoutMs} ms` }) }, timeoutMs)
  })
}
