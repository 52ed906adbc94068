/**
 * A ferry fleet deployed the way a user deploys one: every part its own process, started from the
 * built CLI with a config file written here — two proxies (the first also serving DNS), one
 * planner, a private redis-server, two reference gateways (`ferry gateway`) and one nginx WebDAV
 * gateway. The fault schedule kills, restarts and signals these processes; everything else about
 * them (exits, log lines) is watched here, so that a process dying on its own is never mistaken
 * for one the schedule killed.
 */
import { type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { stringify } from 'yaml'
import { Procs, type Proc } from '../procs.js'
import { nginxAvailable, startNginxGateway, type NginxGateway } from '../../test/helpers/nginx.js'
import { ping, REDIS_SERVER } from '../../test/helpers/redis.js'
import { freePort } from '../../test/helpers/net.js'

/** The package root: the nearest ancestor with a package.json (this file runs from bench/ and from dist/bench/). */
function packageRoot (): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir)
    if (up === dir) throw new Error('no package.json above ' + fileURLToPath(import.meta.url))
    dir = up
  }
  return dir
}

export const FERRY_JS = path.join(packageRoot(), 'dist', 'bin', 'ferry.js')

export const ADMIN_TOKEN = 'fleet-fault-admin-token-0123456789'
export const ZONE = 'fleet.ferry.test'
/** How long a process may take to answer its readiness check after it is started. */
const START_DEADLINE_MS = 120_000

/**
 * Lines that mean a process hit a bug even if it kept running: Node's own crash report, the
 * process guard's fatal lines (pino level 60), ioredis's "Unhandled error event".
 */
const BAD_LINE = /uncaughtException|unhandledRejection|uncaught exception|unhandled (promise )?rejection|Unhandled error event|"level":60[,}]|^\s*FATAL\b/i

export interface DeploymentOptions {
  /** Run directory: configs, gateway data, Redis files and one log file per process. */
  dir: string
  /** `aof`: `--appendonly yes` (a restart keeps everything); `none`: `--save "" --appendonly no`. */
  redisPersistence: 'aof' | 'none'
  /** The proxies' client-side timeouts; the idle-connection fault idles past all three. */
  idleTimeoutMs: number
  headersTimeoutMs: number
  bodyIdleTimeoutMs: number
  /** Copy bandwidth of the planner, low enough that a volume move is still running when the planner is killed. */
  migrationBytesPerSec: number
  /** Let the rebalancer move blocks on its own (background churn; the soak turns it on). */
  rebalance: boolean
  logLevel: 'info' | 'debug' | 'warn'
  /** `proxy.workers` and `dns.workers` of each proxy process. 1 keeps the CI schedule's restarts
   * quick on two loaded cores; the soak can run the production default ("auto"). */
  workers: number | 'auto'
}

export const DEFAULT_DEPLOYMENT: Omit<DeploymentOptions, 'dir'> = {
  redisPersistence: 'aof',
  idleTimeoutMs: 3000,
  headersTimeoutMs: 4000,
  bodyIdleTimeoutMs: 5000,
  migrationBytesPerSec: 96 * 1024,
  rebalance: false,
  logLevel: 'info',
  workers: 1
}

export type MemberKind = 'ferry' | 'gateway' | 'redis'

export interface UnexpectedExit {
  member: string
  code: number | null
  signal: NodeJS.Signals | null
  at: string
  lastLines: string[]
}

export interface LogProblem {
  member: string
  line: string
}

/** One long-lived part of the fleet that the schedule may kill and restart. */
export class Member {
  proc: Proc | undefined
  incarnation = 0
  /** Set before the suite stops or kills the process, so its exit is not reported. */
  exitExpected = false
  /** Down windows (performance.now() ms) caused by the suite, for telling a fault's outage from a finding. */
  readonly downWindows: Array<{ from: number, to: number | undefined }> = []
  private readonly tail: string[] = []
  private partial = ''
  private readonly log: fs.WriteStream

  constructor (
    readonly name: string,
    readonly kind: MemberKind,
    readonly logPath: string,
    private readonly launch: () => { cmd: string, args: string[], env?: NodeJS.ProcessEnv },
    /** Resolves once the process serves (it is asked again until a deadline). */
    readonly ready: () => Promise<boolean>,
    private readonly onLine: (member: Member, line: string) => void
  ) {
    this.log = fs.createWriteStream(logPath, { flags: 'a' })
  }

  get alive (): boolean { return this.proc !== undefined && this.proc.exitCode === undefined }
  get pid (): number | undefined { return this.proc?.child.pid }

  lastLines (n = 50): string[] { return this.tail.slice(-n) }

  /** Whether the suite had this member down at any time in [from, to]. */
  wasDown (from: number, to: number): boolean {
    return this.downWindows.some(w => w.from <= to && (w.to ?? Infinity) >= from)
  }

  spawn (procs: Procs, onExit: (m: Member, child: ChildProcess) => void): void {
    const { cmd, args, env } = this.launch()
    this.incarnation++
    this.exitExpected = false
    this.write(`\n===== ${this.name} #${this.incarnation} ${new Date().toISOString()}: ${path.basename(cmd)} ${args.join(' ')}\n`)
    const proc = procs.start(this.name, cmd, args, env)
    this.proc = proc
    const take = (b: Buffer): void => { this.write(b.toString('utf8')) }
    proc.child.stdout?.on('data', take)
    proc.child.stderr?.on('data', take)
    // 'close', not 'exit': the last lines a dying process prints arrive after 'exit'.
    proc.child.once('close', () => {
      this.flushPartial()
      onExit(this, proc.child)
    })
  }

  markDown (): void { this.downWindows.push({ from: performance.now(), to: undefined }) }
  markUp (): void {
    const open = this.downWindows.at(-1)
    if (open !== undefined && open.to === undefined) open.to = performance.now()
  }

  closeLog (): void { this.flushPartial(); this.log.end() }

  private write (text: string): void {
    this.log.write(text)
    const lines = (this.partial + text).split('\n')
    this.partial = lines.pop() ?? ''
    for (const line of lines) this.keep(line)
  }

  private flushPartial (): void {
    if (this.partial !== '') { this.keep(this.partial); this.partial = '' }
  }

  private keep (line: string): void {
    this.tail.push(line)
    if (this.tail.length > 200) this.tail.splice(0, this.tail.length - 200)
    this.onLine(this, line)
  }
}

export interface ProxyEndpoint {
  name: 'proxy-a' | 'proxy-b'
  url: string
  adminUrl: string
  member: Member
}

export interface GatewayEndpoint {
  id: string
  url: string
  kind: 'ferry' | 'webdav'
  /** Fault-injection admin URL (reference gateways only). */
  faultsUrl: string | undefined
  member: Member | undefined
}

interface Ports {
  redis: number
  dns: number
  planner: number
  proxyA: number
  adminA: number
  proxyB: number
  adminB: number
  gateways: Array<{ data: number, admin: number }>
}

export class FleetDeployment {
  readonly procs = new Procs()
  readonly members = new Map<string, Member>()
  readonly unexpectedExits: UnexpectedExit[] = []
  readonly logProblems: LogProblem[] = []
  proxies: ProxyEndpoint[] = []
  gateways: GatewayEndpoint[] = []
  plannerAdminUrl = ''
  dnsPort = 0
  redisPort = 0
  /** Config files of the ferry processes, by member name, and what was last written to them. */
  readonly configFiles = new Map<string, string>()
  private readonly baseConfigs = new Map<string, Record<string, unknown>>()
  private nginx: NginxGateway | undefined
  private ports: Ports | undefined
  private stopped = false

  constructor (readonly opts: DeploymentOptions) {}

  get redisDir (): string { return path.join(this.opts.dir, 'redis') }

  member (name: string): Member {
    const m = this.members.get(name)
    if (m === undefined) throw new Error(`no member ${name}`)
    return m
  }

  /** Ferry processes: the ones whose exits and log lines are findings. */
  ferryMembers (): Member[] { return [...this.members.values()].filter(m => m.kind === 'ferry') }

  adminUrls (): string[] { return this.ferryMembers().map(m => this.adminUrlOf(m.name)) }

  adminUrlOf (name: string): string {
    const url = name === 'planner' ? this.plannerAdminUrl : this.proxies.find(p => p.name === name)?.adminUrl
    if (url === undefined) throw new Error(`${name} has no admin listener`)
    return url
  }

  async start (): Promise<void> {
    const probe = await nginxAvailable()
    if (!probe.ok) throw new Error(`the fleet needs nginx with WebDAV: ${probe.reason}`)
    if (!fs.existsSync(FERRY_JS)) throw new Error(`${FERRY_JS} is missing: run npm run build`)
    if (!fs.existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} is missing (apt-get install -y redis-server, or set REDIS_SERVER_BIN)`)
    fs.mkdirSync(path.join(this.opts.dir, 'logs'), { recursive: true })
    fs.mkdirSync(this.redisDir, { recursive: true })
    const taken = new Set<number>()
    // Below the ephemeral range: a killed listener's port must still be free for its restart.
    const port = async (udp = false): Promise<number> => await freePort({ udp, taken })
    const ports: Ports = {
      redis: await port(),
      dns: await port(true),
      planner: await port(),
      proxyA: await port(),
      adminA: await port(),
      proxyB: await port(),
      adminB: await port(),
      gateways: [{ data: await port(), admin: await port() }, { data: await port(), admin: await port() }]
    }
    this.ports = ports
    this.redisPort = ports.redis
    this.dnsPort = ports.dns

    this.addRedis(ports.redis)
    ports.gateways.forEach((p, i) => { this.addReferenceGateway(`gw${i + 1}`, p.data, p.admin) })
    this.nginx = await startNginxGateway({ maxBodySize: '16m' })
    this.gateways.push({ id: 'gw3', url: this.nginx.url, kind: 'webdav', faultsUrl: undefined, member: undefined })

    this.addFerry('planner', 'planner', ports.planner, undefined)
    this.plannerAdminUrl = `http://127.0.0.1:${ports.planner}`
    this.proxies = [
      { name: 'proxy-a', url: `http://127.0.0.1:${ports.proxyA}`, adminUrl: `http://127.0.0.1:${ports.adminA}`, member: this.addFerry('proxy-a', 'proxy,dns', ports.adminA, ports.proxyA) },
      { name: 'proxy-b', url: `http://127.0.0.1:${ports.proxyB}`, adminUrl: `http://127.0.0.1:${ports.adminB}`, member: this.addFerry('proxy-b', 'proxy', ports.adminB, ports.proxyB) }
    ]

    // Storage first, then the processes that depend on it, as an operator would bring them up.
    await Promise.all(['redis', 'gw1', 'gw2'].map(n => this.launch(n)))
    await Promise.all(['planner', 'proxy-a', 'proxy-b'].map(n => this.launch(n)))
  }

  /** SIGKILL, as a crash or the OOM killer would; the member stays down until restart(). */
  async kill (name: string): Promise<void> {
    const m = this.member(name)
    const proc = m.proc
    if (proc === undefined || proc.exitCode !== undefined) throw new Error(`${name} is not running`)
    m.exitExpected = true
    m.markDown()
    proc.child.kill('SIGKILL')
    await proc.exited
  }

  /** Starts a killed member again on the same ports, data and config; resolves once it serves. */
  async restart (name: string): Promise<void> {
    const m = this.member(name)
    if (m.alive) throw new Error(`${name} is still running`)
    await this.launch(name)
  }

  /** Redis came back empty: as a server without persistence would after a crash. */
  async wipeRedisData (): Promise<void> {
    if (this.member('redis').alive) throw new Error('wipe Redis only while it is down')
    fs.rmSync(this.redisDir, { recursive: true, force: true })
    fs.mkdirSync(this.redisDir, { recursive: true })
  }

  signal (name: string, sig: NodeJS.Signals): void {
    const child = this.member(name).proc?.child
    if (child === undefined || child.exitCode !== null) throw new Error(`${name} is not running`)
    child.kill(sig)
  }

  /** The config of a ferry member as first written; `edit` returns the variant to write now. */
  writeConfig (name: string, edit: (base: Record<string, unknown>) => Record<string, unknown> | string): void {
    const base = this.baseConfigs.get(name)
    const file = this.configFiles.get(name)
    if (base === undefined || file === undefined) throw new Error(`${name} has no config file`)
    const next = edit(structuredClone(base))
    // Written whole in one rename, as config management does: a reader never sees half a file.
    const tmp = `${file}.tmp`
    fs.writeFileSync(tmp, typeof next === 'string' ? next : stringify(next))
    fs.renameSync(tmp, file)
  }

  /** `ferry check --config FILE` on a member's config file, as an operator runs it before a reload. */
  async check (name: string): Promise<{ code: number | null, output: string }> {
    const file = this.configFiles.get(name)
    if (file === undefined) throw new Error(`${name} has no config file`)
    const r = await this.procs.runToEnd(process.execPath, [FERRY_JS, 'check', '--config', file], 30_000)
    return { code: r.code, output: r.stdout + r.stderr }
  }

  /** Stops everything (SIGTERM, SIGKILL after 5 s); safe to call twice. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const m of this.members.values()) { m.exitExpected = true }
    // Clients' side first (proxies), storage last.
    for (const name of ['proxy-b', 'proxy-a', 'planner', 'gw1', 'gw2', 'redis']) {
      const p = this.members.get(name)?.proc
      if (p !== undefined) await this.procs.stop(p)
    }
    await this.procs.stopAll()
    await this.nginx?.stop()
    for (const m of this.members.values()) m.closeLog()
  }

  private async launch (name: string): Promise<void> {
    const m = this.member(name)
    m.spawn(this.procs, (member, child) => { this.onExit(member, child) })
    // Generous: at a load average of 20 (a shared 2-core machine), a proxy with two workers
    // took over 30 s to load its modules and routes; a slow start is not what the run measures.
    const deadline = Date.now() + START_DEADLINE_MS
    while (Date.now() < deadline) {
      if (!m.alive) throw new Error(`${name} exited while starting:\n${m.lastLines().join('\n')}`)
      if (await m.ready().catch(() => false)) { m.markUp(); return }
      await sleep(50)
    }
    throw new Error(`${name} did not become ready within ${START_DEADLINE_MS / 1000} s:\n${m.lastLines().join('\n')}`)
  }

  private onExit (m: Member, child: ChildProcess): void {
    if (m.exitExpected || this.stopped) return
    // An exit the schedule did not cause: a finding, with what the process said last.
    m.markDown()
    this.unexpectedExits.push({ member: m.name, code: child.exitCode, signal: child.signalCode, at: new Date().toISOString(), lastLines: m.lastLines(50) })
  }

  private onLine (m: Member, line: string): void {
    if (m.kind === 'redis') return
    if (BAD_LINE.test(line)) this.logProblems.push({ member: m.name, line: line.slice(0, 2000) })
  }

  private logPath (name: string): string { return path.join(this.opts.dir, 'logs', `${name}.log`) }

  private addRedis (port: number): void {
    const persistence = this.opts.redisPersistence === 'aof'
      ? ['--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '']
      : ['--save', '', '--appendonly', 'no']
    const m = new Member('redis', 'redis', this.logPath('redis'), () => ({
      cmd: REDIS_SERVER,
      args: ['--port', String(port), '--bind', '127.0.0.1', '--dir', this.redisDir, ...persistence,
        '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'notice']
    }), () => ping(port), (mm, l) => { this.onLine(mm, l) })
    this.members.set('redis', m)
  }

  private addReferenceGateway (id: string, port: number, adminPort: number): void {
    const dir = path.join(this.opts.dir, id)
    fs.mkdirSync(dir, { recursive: true })
    const url = `http://127.0.0.1:${port}`
    const m = new Member(id, 'gateway', this.logPath(id), () => ({
      cmd: process.execPath,
      args: [FERRY_JS, 'gateway', '--dir', dir, '--port', String(port), '--admin-port', String(adminPort), '--id', id, '--log-level', this.opts.logLevel],
      env: this.env()
    }), async () => await statusOf(`${url}/healthz`) === 200, (mm, l) => { this.onLine(mm, l) })
    this.members.set(id, m)
    this.gateways.push({ id, url, kind: 'ferry', faultsUrl: `http://127.0.0.1:${adminPort}/faults`, member: m })
  }

  private addFerry (name: string, roles: string, adminPort: number, proxyPort: number | undefined): Member {
    const file = path.join(this.opts.dir, `${name}.yaml`)
    const config = this.ferryConfig(adminPort, proxyPort)
    this.baseConfigs.set(name, config)
    this.configFiles.set(name, file)
    fs.writeFileSync(file, stringify(config))
    const adminUrl = `http://127.0.0.1:${adminPort}`
    const m = new Member(name, 'ferry', this.logPath(name), () => ({
      cmd: process.execPath,
      args: [FERRY_JS, 'start', '--config', file, '--roles', roles],
      env: this.env()
    }), async () => await statusOf(`${adminUrl}/readyz`) === 200, (mm, l) => { this.onLine(mm, l) })
    this.members.set(name, m)
    return m
  }

  /** The environment of every ferry process: the log level is ours, the admin token the config's. */
  private env (): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, FERRY_LOG_LEVEL: this.opts.logLevel }
    delete env.FERRY_ADMIN_TOKEN
    delete env.FERRY_GATEWAY_ADMIN_TOKEN
    return env
  }

  private ferryConfig (adminPort: number, proxyPort: number | undefined): Record<string, unknown> {
    const ports = this.ports as Ports
    const o = this.opts
    return {
      log: { level: o.logLevel },
      sites: [
        { name: 'site-a', subnets: ['127.0.0.0/24'], edges: ['127.0.0.1'] },
        { name: 'site-b', subnets: ['127.0.1.0/24'], edges: ['127.0.0.1'] },
        { name: 'site-c', subnets: ['127.0.2.0/24'], edges: ['127.0.0.1'] }
      ],
      gateways: this.gateways.map((g, i) => ({ id: g.id, url: g.url, kind: g.kind, site: ['site-a', 'site-b', 'site-c'][i % 3] })),
      proxy: {
        listen: { host: '127.0.0.1', port: proxyPort ?? 0 },
        workers: o.workers,
        trustedProxies: ['127.0.0.1/32'],
        idleTimeoutMs: o.idleTimeoutMs,
        headersTimeoutMs: o.headersTimeoutMs,
        bodyIdleTimeoutMs: o.bodyIdleTimeoutMs,
        connectTimeoutMs: 1000,
        upstreamHeadersTimeoutMs: 10_000,
        writeHoldMs: 2000,
        shutdownGraceMs: 2000
      },
      health: {
        passive: { failures: 3, baseEjectMs: 500, maxEjectMs: 4000 },
        active: { intervalMs: 500, timeoutMs: 500, unhealthyThreshold: 2, healthyThreshold: 1 }
      },
      recorder: { flushIntervalMs: 500, profileIntervalMs: 2000 },
      admin: { listen: { host: '127.0.0.1', port: adminPort }, token: ADMIN_TOKEN },
      state: {
        backend: 'redis',
        url: `redis://127.0.0.1:${ports.redis}`,
        keyPrefix: 'fleet:',
        connectTimeoutMs: 500,
        commandTimeoutMs: 1000,
        reconnect: { minDelayMs: 100, maxDelayMs: 1000 }
      },
      dns: {
        listen: [{ address: '127.0.0.1', port: ports.dns, udp: true, tcp: true }],
        workers: o.workers,
        zone: ZONE,
        nameservers: [{ name: `ns1.${ZONE}`, addresses: ['127.0.0.1'] }]
      },
      planner: {
        // A killed leader is replaced within ~3 s instead of 10.
        lease: { ttlMs: 3000, renewIntervalMs: 1000 },
        latency: { sameSiteMs: 2, defaultMs: 60 },
        health: { probeIntervalMs: 500, probeTimeoutMs: 500 },
        rebalancer: o.rebalance
          ? { enabled: true, intervalMs: 5000, minDwellMs: 20_000 }
          : { enabled: false },
        migration: {
          concurrency: 2,
          bandwidthBytesPerSec: o.migrationBytesPerSec,
          burstBytes: 16 * 1024,
          gracePeriodMs: 5000,
          retryDelayMs: 500,
          recoveryIntervalMs: 1000
        }
      }
    }
  }
}

export async function statusOf (url: string): Promise<number> {
  const r = await request(url, { headersTimeout: 2000, bodyTimeout: 2000 })
  await r.body.dump()
  return r.statusCode
}
