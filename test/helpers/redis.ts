import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { freePort, sleep, TcpRelay, waitFor } from './net.js'

/**
 * Private redis-server processes for tests: one per call, on a free loopback port, with
 * persistence off, in a temp dir that is removed on stop. Every child is also killed on process
 * exit, so a failing (or crashing) test never leaves a server behind for the next run.
 */

export const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server'
export const REDIS_CLI = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli'

export interface RedisServer {
  readonly url: string
  readonly port: number
  readonly host: string
  /** SIGTERM (SIGKILL after 2 s), then remove the temp dir. Idempotent. */
  stop (): Promise<void>
  /** SIGKILL, as a crash would; the dir is kept so `restart()` can follow. */
  kill (): Promise<void>
  /** Start again on the same port (after `kill()` or while running). Data is kept only when persistent. */
  restart (): Promise<void>
  /** SIGSTOP: the port keeps accepting connections but nothing answers (a hung server). */
  pause (): void
  /** SIGCONT after `pause()`. */
  resume (): void
}

export interface RedisCluster {
  readonly nodes: Array<{ host: string, port: number }>
  /** `host:port` strings, the form `state.cluster.nodes` takes. */
  readonly nodeAddresses: string[]
  stop (): Promise<void>
}

const live = new Set<ChildProcess>()
const dirs = new Set<string>()
let exitHookInstalled = false

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const child of live) {
      try { child.kill('SIGKILL') } catch { /* already gone */ }
    }
    for (const dir of dirs) {
      try { rmSync(dir, { recursive: true, force: true }) } catch { /* best effort */ }
    }
  })
}

function tempDir (tag: string): string {
  installExitHook()
  const dir = mkdtempSync(path.join(os.tmpdir(), `ferry-redis-${tag}-`))
  dirs.add(dir)
  return dir
}

function removeDir (dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  dirs.delete(dir)
}

/** Sends PING over a raw socket; true on +PONG. No client library, so it cannot mask a bug in one. */
export async function ping (port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return await new Promise(resolve => {
    const sock = net.connect({ port, host })
    let buf = ''
    const done = (ok: boolean): void => { sock.destroy(); resolve(ok) }
    sock.setTimeout(timeoutMs, () => done(false))
    sock.on('error', () => done(false))
    sock.on('connect', () => sock.write('PING\r\n'))
    sock.on('data', d => {
      buf += d.toString('latin1')
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'))
    })
  })
}

async function waitExit (child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>(resolve => {
    const timer = setTimeout(() => { child.kill('SIGKILL') }, graceMs)
    child.once('exit', () => { clearTimeout(timer); resolve() })
  })
}

function spawnServer (port: number, dir: string, extra: string[]): { child: ChildProcess, output: () => string } {
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'no',
    '--loglevel', 'warning', ...extra
  ]
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  child.once('exit', () => live.delete(child))
  let out = ''
  const keep = (d: Buffer): void => { out = (out + d.toString()).slice(-4000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return { child, output: () => out }
}

async function startProcess (port: number, dir: string, extra: string[]): Promise<ChildProcess> {
  const { child, output } = spawnServer(port, dir, extra)
  const spawnError = new Promise<never>((_resolve, reject) => {
    child.once('error', reject)
    child.once('exit', code => reject(new Error(`redis-server on ${port} exited (${code}): ${output()}`)))
  })
  spawnError.catch(() => { /* surfaced by the race below */ })
  try {
    await Promise.race([waitFor(() => ping(port), `redis-server on port ${port}`, 5000, 10), spawnError])
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return child
}

/**
 * A private redis-server. `persistent`: an append-only file fsynced on every write, so a SIGKILL
 * and `restart()` keep every acknowledged write; without it (the default, and Redis's common
 * deployment as a cache) a restart comes back empty.
 */
export async function startRedis (opts: { persistent?: boolean } = {}): Promise<RedisServer> {
  const dir = tempDir('single')
  const port = await freePort()
  const extra = opts.persistent === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : []
  let child: ChildProcess | null = null
  let stopped = false
  try {
    child = await startProcess(port, dir, extra)
  } catch (err) {
    removeDir(dir)
    throw err
  }
  const server: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    port,
    host: '127.0.0.1',
    async stop () {
      if (stopped) return
      stopped = true
      if (child) {
        child.kill('SIGCONT')
        child.kill('SIGTERM')
        await waitExit(child, 2000)
      }
      removeDir(dir)
    },
    async kill () {
      if (!child) return
      child.kill('SIGKILL')
      await waitExit(child, 2000)
      child = null
    },
    pause () {
      child?.kill('SIGSTOP')
    },
    resume () {
      child?.kill('SIGCONT')
    },
    async restart () {
      if (stopped) throw new Error('redis-server was stopped')
      if (child) await server.kill()
      // The kernel may keep the port in TIME_WAIT for a moment; redis sets SO_REUSEADDR, but
      // retry briefly rather than fail the test on a race with the old socket.
      let lastErr: unknown
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          child = await startProcess(port, dir, extra)
          return
        } catch (err) {
          lastErr = err
          await sleep(100)
        }
      }
      throw lastErr
    }
  }
  return server
}

function cli (args: string[], timeoutMs = 15000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(REDIS_CLI, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

/**
 * A private Redis and a relay in front of it that the test can cut: the processes given
 * `relayUrl` lose the store while those given `redis.url` keep it. Both stopped at teardown.
 */
export async function startRelayedRedis (t: Test, opts: { persistent?: boolean } = {}): Promise<{ redis: RedisServer, relay: TcpRelay, relayUrl: string }> {
  const redis = await startRedis(opts)
  t.teardown(() => redis.stop())
  const relay = new TcpRelay(redis.port)
  const relayPort = await relay.listen()
  t.teardown(() => relay.close())
  return { redis, relay, relayUrl: `redis://127.0.0.1:${relayPort}` }
}

/** Three masters, no replicas, all slots assigned; resolves once every node reports cluster_state:ok. */
export async function startCluster (masters = 3): Promise<RedisCluster> {
  const dir = tempDir('cluster')
  const children: ChildProcess[] = []
  const nodes: Array<{ host: string, port: number }> = []
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    for (const c of children) c.kill('SIGTERM')
    await Promise.all(children.map(c => waitExit(c, 2000)))
    removeDir(dir)
  }
  try {
    const ports = new Set<number>()
    while (ports.size < masters * 2) ports.add(await freePort())
    const list = [...ports]
    for (let i = 0; i < masters; i++) {
      const port = list[i]!
      const busPort = list[masters + i]!
      const nodeDir = path.join(dir, String(port))
      mkdirSync(nodeDir)
      // An explicit bus port: the default (port + 10000) may be taken or out of range.
      children.push(await startProcess(port, nodeDir, [
        '--cluster-enabled', 'yes', '--cluster-port', String(busPort),
        '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'
      ]))
      nodes.push({ host: '127.0.0.1', port })
    }
    await cli(['--cluster', 'create', ...nodes.map(n => `${n.host}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], 30000)
    await waitFor(async () => {
      for (const n of nodes) {
        const info = await cli(['-h', n.host, '-p', String(n.port), 'cluster', 'info'], 2000)
        if (!info.includes('cluster_state:ok') || !info.includes(`cluster_known_nodes:${masters}`)) return false
      }
      return true
    }, 'cluster_state:ok on every node', 20000, 100)
  } catch (err) {
    await stop()
    throw err
  }
  return { nodes, nodeAddresses: nodes.map(n => `${n.host}:${n.port}`), stop }
}
