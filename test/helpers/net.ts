import dgram from 'node:dgram'
import fs from 'node:fs'
import net from 'node:net'

/**
 * A port that was free a moment ago on 127.0.0.1, for a listener that must be told its port
 * before it starts, or that is killed and restarted on the same port. It is drawn at random below
 * the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range): a port the kernel picked
 * is free again the moment it is closed, and the next outgoing connection of anything running in
 * parallel may take it as its source port, so the listener meant for it fails with EADDRINUSE
 * (seen in CI). Ports below the range are only ever taken by explicit binds. `udp`: free for UDP
 * too (a DNS listener); `taken`: ports already handed out by the caller, never given twice.
 */
export async function freePort (opts: { udp?: boolean, taken?: Set<number> } = {}): Promise<number> {
  const below = Math.max(11_000, ephemeralStart())
  for (let attempt = 0; attempt < 500; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (below - 10_000))
    if (opts.taken?.has(port) === true) continue
    if (await canBind(port, 'tcp') && (opts.udp !== true || await canBind(port, 'udp'))) {
      opts.taken?.add(port)
      return port
    }
  }
  throw new Error('no free port below the ephemeral range after 500 tries')
}

function ephemeralStart (): number {
  try {
    return Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768
  } catch {
    return 32768
  }
}

/** Whether `port` can be bound on `host` right now (and is released again at once). */
export async function canBind (port: number, proto: 'tcp' | 'udp', host = '127.0.0.1'): Promise<boolean> {
  return await new Promise(resolve => {
    if (proto === 'udp') {
      const s = dgram.createSocket('udp4')
      s.once('error', () => { s.close(); resolve(false) })
      s.bind(port, host, () => { s.close(() => { resolve(true) }) })
      return
    }
    const srv = net.createServer()
    srv.unref()
    srv.once('error', () => { resolve(false) })
    srv.listen(port, host, () => { srv.close(() => { resolve(true) }) })
  })
}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Polls `fn` until it returns truthy or `timeoutMs` passes; throws with `what` on timeout. */
export async function waitFor<T> (fn: () => T | Promise<T>, what: string, timeoutMs = 15_000, stepMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) { last = err }
    await sleep(stepMs)
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

/**
 * A TCP relay to a local port that can be cut (existing connections closed, new ones refused):
 * one process losing its store while the others keep it, as a partition does.
 */
export class TcpRelay {
  private readonly server: net.Server
  private readonly sockets = new Set<net.Socket>()
  private cut = false

  constructor (private readonly targetPort: number) {
    this.server = net.createServer(client => {
      if (this.cut) { client.destroy(); return }
      const upstream = net.connect(this.targetPort, '127.0.0.1')
      for (const [s, other] of [[client, upstream], [upstream, client]] as const) {
        this.sockets.add(s)
        s.on('error', () => other.destroy())
        s.on('close', () => { this.sockets.delete(s); other.destroy() })
      }
      client.pipe(upstream)
      upstream.pipe(client)
    })
  }

  async listen (): Promise<number> {
    await new Promise<void>(resolve => this.server.listen(0, '127.0.0.1', resolve))
    return (this.server.address() as net.AddressInfo).port
  }

  disconnect (): void {
    this.cut = true
    for (const s of this.sockets) s.destroy()
  }

  reconnect (): void { this.cut = false }

  async close (): Promise<void> {
    this.disconnect()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }
}
