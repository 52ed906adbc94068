import { mkdtemp, readdir, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { ReferenceGateway, type GatewayOptions } from '../../gateway/gateway.js'

export interface Gateways {
  gateways: ReferenceGateway[]
  /** Data URLs, in the same order. */
  urls: string[]
  /** Stops every gateway (killed ones too) and removes their directories. Safe to call twice. */
  stopAll: () => Promise<void>
}

/**
 * Starts `n` in-process reference gateways, each on its own free port (the kernel picks: port 0,
 * so no race with other test processes) and its own temporary directory, with ids `gw1`…`gwN`.
 * Use with `t.teardown(g.stopAll)`.
 */
export async function startGateways (n: number, opts: Partial<Omit<GatewayOptions, 'dir' | 'port' | 'id'>> = {}): Promise<Gateways> {
  const gateways: ReferenceGateway[] = []
  const dirs: string[] = []
  let stopped = false
  const stopAll = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    // kill, not stop: a test that left a stall or a slow request behind must not slow teardown.
    await Promise.all(gateways.map(g => g.kill()))
    await Promise.all(dirs.map(d => rm(d, { recursive: true, force: true })))
  }
  try {
    for (let i = 1; i <= n; i++) {
      const dir = await mkdtemp(path.join(os.tmpdir(), `ferry-gw${i}-`))
      dirs.push(dir)
      const g = new ReferenceGateway({ ...opts, id: `gw${i}`, dir, port: 0 })
      gateways.push(g)
      await g.start()
    }
  } catch (err) {
    await stopAll()
    throw err
  }
  return { gateways, urls: gateways.map(g => g.url), stopAll }
}

/** What came back on a raw connection before the server closed it (or the wait ran out). */
export interface RawReply {
  text: string
  status: number
  /** True when the server closed the connection; false when we stopped waiting. */
  closed: boolean
}

/**
 * Writes exact bytes on a fresh TCP connection and collects the reply until the server closes the
 * connection or `waitMs` passes. For requests a well-behaved client library would refuse to send.
 */
export async function raw (port: number, data: string | Buffer, waitMs = 3000): Promise<RawReply> {
  return await new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const done = (closed: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text)
      resolve({ text, status: m === null ? 0 : Number(m[1]), closed })
    }
    const timer = setTimeout(() => done(false), waitMs)
    socket.setEncoding('latin1')
    socket.on('data', (s: string) => { text += s })
    socket.on('close', () => done(true))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the reply arrived is still a reply.
      if (text !== '') return
      clearTimeout(timer)
      reject(err)
    })
    socket.write(data)
  })
}

/** The JSON error code in a raw reply's body. */
export function errorCode (reply: RawReply): string | undefined {
  const body = reply.text.slice(reply.text.indexOf('\r\n\r\n') + 4)
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code
  } catch {
    return undefined
  }
}

/** Names in the gateway's upload directory (uploads in progress or leaked). */
export async function tempFiles (dir: string): Promise<string[]> {
  return await readdir(path.join(dir, '.tmp'))
}

/** How many file descriptors this process holds (Linux), to catch leaks. */
export async function openFds (): Promise<number> {
  return (await readdir('/proc/self/fd')).length
}
