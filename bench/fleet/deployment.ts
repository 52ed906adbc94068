/**
 * A four-site ferry deployment on one machine, as real processes started from the CLI with the
 * config files written here (the fleet-faults deployment's Member and port helpers, reused):
 *
 *   site i (na-east, na-west, europe, asia) = loopback subnet 127.0.<i+1>.0/24
 *     edge 127.0.<i+1>.1     one `ferry start --roles proxy,dns` (proxy :P, DNS :D, admin own port)
 *     clients 127.0.<i+1>.100  the replay's clients of that site (source address of their links)
 *     gateways                 `gatewaysPerSite` reference gateways (`ferry gateway`)
 *   one planner (`ferry start --roles planner`, only for the policy that runs it), one private
 *   redis-server.
 *
 * Every edge and DNS listens on the same ports at its own site address, as a real multi-site
 * deployment would (DNS answers addresses; the port is the fleet's). Between sites, the emulated
 * WAN (relay.ts): a client at X reaches the edge at Y, and the proxy at X reaches a gateway at
 * Y, through a relay adding the link's delay. That is the one thing that differs from a real
 * config: each proxy's `gateways[].url` points at its own site's link to the gateway (written
 * per site, `<site>.yaml`), where a real deployment would give every proxy the gateway's address.
 * The planner talks to gateways directly (its copies and probes are not what is measured).
 */
import fs from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'
import { Procs, cpuTimes } from '../procs.js'
import { Member, FERRY_JS, statusOf } from '../fleet-faults/deployment.js'
import { canBind, freePort } from '../../test/helpers/net.js'
import { ping, REDIS_SERVER } from '../../test/helpers/redis.js'
import { RelayThread, type RelayOptions } from './relay.js'

export const FLEET_ZONE = 'fleet.ferry.test'
export const FLEET_TOKEN = 'fleet-replay-admin-token-0123456789'

export interface LatencyModel { sameSiteMs: number, defaultMs: number, between: Record<string, Record<string, number>> }

export function linkMs (lat: LatencyModel, a: string, b: string): number {
  if (a === b) return lat.sameSiteMs
  return lat.between[a]?.[b] ?? lat.between[b]?.[a] ?? lat.defaultMs
}

export interface FleetOptions {
  dir: string
  sites: string[]
  latency: LatencyModel
  /** The matrix value is the round trip of an access (`rtt`: one-way = value / 2) or the one-way delay (`one-way`). */
  link: 'rtt' | 'one-way'
  gatewaysPerSite: number
  /** Run the planner (ferry's full loop) or not (hashing only). */
  planner: boolean
  /** Trace seconds per wall second: the planner's and recorder's clocks are divided by it. */
  speed: number
  /** Per-gateway capacity in bytes (0 = unlimited). */
  capacityBytes: number
  /** `replication.factor` to write into the config (undefined: not written). */
  replicas: number | undefined
  /** Fixed ports from here (refused if taken); 0: free ports below the ephemeral range. */
  basePort: number
  logLevel: 'info' | 'warn' | 'debug'
  /** A trained health model for the planner (planner.prediction.model). */
  predictionModel?: string
  /**
   * First-touch placement (`placement.enabled`): on, the proxies place new blocks by the
   * partitioning engine (write locality until the planner has trained a model); off, by
   * rendezvous hashing. The hashing policy runs with it off: with the planner off and placement
   * on, the proxies would place by write locality, which is not hashing.
   */
  placement: boolean
  /** Trace seconds between retrains of the placement model (the placement benchmark's --retrain). */
  retrainS: number
}

export interface SiteEndpoint {
  name: string
  edge: string
  clientAddress: string
  member: Member
  adminUrl: string
}

export interface GatewayEndpoint { id: string, site: string, port: number, adminPort: number, member: Member }

export class MultiSiteFleet {
  readonly procs = new Procs()
  readonly members = new Map<string, Member>()
  sites: SiteEndpoint[] = []
  gateways: GatewayEndpoint[] = []
  /** client site → edge site → port of the link's relay. */
  readonly clientLinks = new Map<string, Map<string, { port: number }>>()
  readonly relays = new RelayThread()
  proxyPort = 0
  dnsPort = 0
  redisPort = 0
  plannerAdminUrl: string | undefined
  readonly unexpectedExits: Array<{ member: string, code: number | null, signal: string | null, lastLines: string[] }> = []
  private stopped = false

  constructor (readonly o: FleetOptions) {}

  oneWayMs (a: string, b: string): number {
    const ms = linkMs(this.o.latency, a, b)
    return this.o.link === 'rtt' ? ms / 2 : ms
  }

  edgeOf (i: number): string { return `127.0.${i + 1}.1` }

  /** Picks (or checks) every port and address first: nothing starts if one is taken. */
  private async ports (): Promise<{ redis: number, planner: number, admins: number[], gw: Array<{ data: number, admin: number }> }> {
    const S = this.o.sites.length
    const G = S * this.o.gatewaysPerSite
    if (this.o.basePort === 0) {
      const taken = new Set<number>()
      // P and D must be free on every site address.
      for (;;) {
        const p = await freePort({ taken })
        const d = await freePort({ udp: true, taken })
        const ok = await Promise.all(this.o.sites.map(async (_, i) => await canBind(p, 'tcp', this.edgeOf(i)) && await canBind(d, 'tcp', this.edgeOf(i)) && await canBind(d, 'udp', this.edgeOf(i))))
        if (ok.every(Boolean)) { this.proxyPort = p; this.dnsPort = d; break }
      }
      return {
        redis: await freePort({ taken }),
        planner: await freePort({ taken }),
        admins: await Promise.all(this.o.sites.map(async () => await freePort({ taken }))),
        gw: await Promise.all(Array.from({ length: G }, async () => ({ data: await freePort({ taken }), admin: await freePort({ taken }) })))
      }
    }
    let next = this.o.basePort
    const take = (): number => next++
    this.proxyPort = take()
    this.dnsPort = take()
    const r = { redis: take(), planner: take(), admins: this.o.sites.map(take), gw: Array.from({ length: G }, () => ({ data: take(), admin: take() })) }
    const needs: Array<[number, 'tcp' | 'udp', string, string]> = [
      [r.redis, 'tcp', '127.0.0.1', 'redis'], [r.planner, 'tcp', '127.0.0.1', 'planner admin'],
      ...r.admins.map((p, i): [number, 'tcp', string, string] => [p, 'tcp', '127.0.0.1', `${this.o.sites[i] as string} admin`]),
      ...r.gw.flatMap((g, i): Array<[number, 'tcp', string, string]> => [[g.data, 'tcp', '127.0.0.1', `gateway ${i}`], [g.admin, 'tcp', '127.0.0.1', `gateway ${i} admin`]]),
      ...this.o.sites.flatMap((s, i): Array<[number, 'tcp' | 'udp', string, string]> => [
        [this.proxyPort, 'tcp', this.edgeOf(i), `${s} proxy`], [this.dnsPort, 'tcp', this.edgeOf(i), `${s} DNS`], [this.dnsPort, 'udp', this.edgeOf(i), `${s} DNS`]])
    ]
    const busy: string[] = []
    for (const [port, proto, host, what] of needs) if (!await canBind(port, proto, host)) busy.push(`${host}:${port}/${proto} (${what})`)
    if (busy.length > 0) throw new Error(`fleet: port(s) taken, not starting: ${busy.join(', ')} — free them or pick another --base-port`)
    return r
  }

  async start (): Promise<void> {
    if (!fs.existsSync(FERRY_JS)) throw new Error(`${FERRY_JS} is missing: run npm run build`)
    if (!fs.existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} is missing (apt-get install -y redis-server, or set REDIS_SERVER_BIN)`)
    fs.mkdirSync(path.join(this.o.dir, 'logs'), { recursive: true })
    const ports = await this.ports()
    this.redisPort = ports.redis

    const redisDir = path.join(this.o.dir, 'redis')
    fs.mkdirSync(redisDir, { recursive: true })
    this.add(new Member('redis', 'redis', this.log('redis'), () => ({
      cmd: REDIS_SERVER,
      args: ['--port', String(ports.redis), '--bind', '127.0.0.1', '--dir', redisDir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'no']
    }), async () => await ping(ports.redis), () => {}))

    let k = 0
    for (const site of this.o.sites) {
      for (let j = 0; j < this.o.gatewaysPerSite; j++) {
        const id = this.o.gatewaysPerSite === 1 ? `gw-${site}` : `gw-${site}-${j + 1}`
        const p = ports.gw[k++] as { data: number, admin: number }
        const dir = path.join(this.o.dir, id)
        fs.mkdirSync(dir, { recursive: true })
        const m = new Member(id, 'gateway', this.log(id), () => ({
          cmd: process.execPath,
          args: [FERRY_JS, 'gateway', '--dir', dir, '--port', String(p.data), '--admin-port', String(p.admin), '--id', id, '--log-level', this.o.logLevel],
          env: this.env()
        }), async () => await statusOf(`http://127.0.0.1:${p.data}/healthz`) === 200, () => {})
        this.add(m)
        this.gateways.push({ id, site, port: p.data, adminPort: p.admin, member: m })
      }
    }

    // The emulated WAN: every (client site → edge site) and (edge site → gateway) link.
    const specs: RelayOptions[] = []
    for (const [i, from] of this.o.sites.entries()) {
      for (const [j, to] of this.o.sites.entries()) {
        specs.push({ name: `client ${from} → edge ${to}`, targetHost: this.edgeOf(j), targetPort: this.proxyPort, localAddress: `127.0.${i + 1}.100`, delayMs: this.oneWayMs(from, to) })
      }
      for (const g of this.gateways) {
        specs.push({ name: `edge ${from} → ${g.id}`, targetHost: '127.0.0.1', targetPort: g.port, localAddress: this.edgeOf(i), delayMs: this.oneWayMs(from, g.site) })
      }
    }
    const linkPorts = await this.relays.start(specs)
    let r = 0
    const gwUrl = new Map<string, string>()
    for (const from of this.o.sites) {
      const m = new Map<string, { port: number }>()
      for (const to of this.o.sites) m.set(to, { port: linkPorts[r++] as number })
      this.clientLinks.set(from, m)
      for (const g of this.gateways) gwUrl.set(`${from}/${g.id}`, `http://127.0.0.1:${linkPorts[r++] as number}`)
    }

    for (const [i, site] of this.o.sites.entries()) {
      const adminPort = ports.admins[i] as number
      const file = path.join(this.o.dir, `${site}.yaml`)
      const cfg = this.config(site, adminPort, g => gwUrl.get(`${site}/${g.id}`) as string)
      fs.writeFileSync(file, `# ferry at site ${site}: proxy + DNS for clients in 127.0.${i + 1}.0/24 (written by bench/fleet.ts)\n` + stringify(cfg))
      const m = this.ferry(site, file, 'proxy,dns', adminPort)
      this.sites.push({ name: site, edge: this.edgeOf(i), clientAddress: `127.0.${i + 1}.100`, member: m, adminUrl: `http://127.0.0.1:${adminPort}` })
    }
    if (this.o.planner) {
      const file = path.join(this.o.dir, 'planner.yaml')
      fs.writeFileSync(file, '# ferry planner (written by bench/fleet.ts); gateways at their own addresses\n' + stringify(this.config(undefined, ports.planner, g => `http://127.0.0.1:${g.port}`)))
      this.ferry('planner', file, 'planner', ports.planner)
      this.plannerAdminUrl = `http://127.0.0.1:${ports.planner}`
    }

    // Storage first, then ferry, as an operator brings a fleet up.
    await Promise.all(['redis', ...this.gateways.map(g => g.id)].map(async n => { await this.launch(n) }))
    await Promise.all([...this.sites.map(s => s.name), ...(this.o.planner ? ['planner'] : [])].map(async n => { await this.launch(n) }))
  }

  /**
   * The config a user of a four-site fleet writes. Clocks in trace time (half-lives, intervals,
   * dwell, grace) are divided by the replay's speed, so that the planner sees in one wall
   * second what it would see in `speed` seconds of the real trace.
   */
  config (site: string | undefined, adminPort: number, url: (g: GatewayEndpoint) => string): Record<string, unknown> {
    const sp = this.o.speed
    const scaled = (ms: number, min: number): number => Math.max(min, Math.round(ms / sp))
    const cfg: Record<string, unknown> = {
      log: { level: this.o.logLevel },
      sites: this.o.sites.map((name, i) => ({ name, subnets: [`127.0.${i + 1}.0/24`], edges: [this.edgeOf(i)] })),
      gateways: this.gateways.map(g => ({ id: g.id, url: url(g), kind: 'ferry', site: g.site, capacityBytes: this.o.capacityBytes })),
      proxy: {
        listen: { host: site === undefined ? '127.0.0.1' : this.edgeOf(this.o.sites.indexOf(site)), port: site === undefined ? 0 : this.proxyPort },
        // One process per site: four sites share this machine's cores, where each real site
        // would have its own ("auto" would start one worker per core at every site).
        workers: 1,
        connectTimeoutMs: 2000,
        shutdownGraceMs: 1000
      },
      // Probes cross the emulated WAN (up to 200 ms) on a loaded machine: a 1 s timeout would
      // eject healthy gateways.
      health: { active: { intervalMs: 3000, timeoutMs: 2500 }, passive: { failures: 5 } },
      recorder: {
        // The decayed scores the rebalancer reads: 600 s of trace time.
        halfLifeS: 600 / sp,
        burstHalfLifeS: Math.max(0.1, 10 / sp),
        flushIntervalMs: Math.max(50, Math.min(1000, Math.round(scaled(30_000, 50) / 4)))
      },
      admin: { listen: { host: '127.0.0.1', port: adminPort }, token: FLEET_TOKEN },
      state: {
        backend: 'redis',
        url: `redis://127.0.0.1:${this.redisPort}`,
        keyPrefix: 'fleet:',
        // The merged affinity map's decay, which the rebalancer ranks by: 600 s of trace time,
        // like the recorder's (left at its wall-clock default, scores would barely decay over
        // the whole replay and the planner would chase the trace's first hours).
        affinity: { halfLifeMs: scaled(600_000, 100) }
      },
      dns: site === undefined ? { enabled: false, zone: FLEET_ZONE } : {
        listen: [{ address: this.edgeOf(this.o.sites.indexOf(site)), port: this.dnsPort, udp: true, tcp: true }],
        workers: 1,
        zone: FLEET_ZONE,
        nameservers: this.o.sites.map((s, i) => ({ name: `ns-${s}.${FLEET_ZONE}`, addresses: [this.edgeOf(i)] })),
        rateLimit: { responsesPerSecond: 0 }
      },
      planner: {
        latency: this.o.latency,
        rebalancer: {
          enabled: true,
          intervalMs: scaled(30_000, 100),
          minDwellMs: scaled(600_000, 100),
          maxMovesPerInterval: 64
        },
        health: { probeIntervalMs: 3000, probeTimeoutMs: 2500 },
        // A move takes ≈ 0.5 s of wall time whatever the speed (settleMs, 250 ms, is the
        // store's notification bound and is not scaled; then the copy and four compare-and-sets):
        // 40 s of trace at ×80, longer than a rebalancer round, so the default 4 slots finish
        // ≈ 8 moves per wall second where the simulation moves up to a round's budget (64) at
        // once. At 1× the same 4 slots do 240 moves per round. So the slots are scaled too (to a
        // round's budget at most), and a round's moves complete within about a round.
        migration: { gracePeriodMs: scaled(30_000, 500), concurrency: Math.min(64, Math.max(4, Math.ceil(4 * sp / 10))) },
        prediction: { enabled: true, tickMs: 500, ...(this.o.predictionModel !== undefined ? { model: this.o.predictionModel } : {}) }
      },
      // Retrain and publish in trace time, as the placement simulation does (retrain every
      // --retrain s, the table republished every rebalancer round); the proxies report their
      // first writes (the training history) as often, so a retrain sees the blocks created
      // before it. At the wall-clock defaults (10 min, 30 s) the model would be trained once
      // in a whole replay at ×80, after the trace was over.
      placement: this.o.placement
        ? { enabled: true, retrainIntervalMs: scaled(this.o.retrainS * 1000, 1000), publishIntervalMs: scaled(30_000, 100), reportIntervalMs: scaled(1000, 50) }
        : { enabled: false }
    }
    if (this.o.replicas !== undefined) cfg.replication = { factor: this.o.replicas }
    return cfg
  }

  member (name: string): Member {
    const m = this.members.get(name)
    if (m === undefined) throw new Error(`no member ${name}`)
    return m
  }

  async kill (name: string): Promise<void> {
    const m = this.member(name)
    const p = m.proc
    if (p === undefined || p.exitCode !== undefined) return
    m.exitExpected = true
    p.child.kill('SIGKILL')
    await p.exited
  }

  async restart (name: string): Promise<void> { await this.launch(name) }

  async relayStats (): Promise<Record<string, unknown>> {
    const all = await this.relays.stats()
    const n = all.reduce((a, s) => a + s.chunks, 0)
    return {
      links: all.length,
      chunks: n,
      latenessMeanMs: n === 0 ? 0 : Math.round(all.reduce((a, s) => a + s.latenessMeanMs * s.chunks, 0) / n * 1000) / 1000,
      latenessMaxMs: Math.max(0, ...all.map(s => s.latenessMaxMs)),
      openAtEnd: all.reduce((a, s) => a + s.open, 0)
    }
  }

  /** CPU seconds (user + system) each running member has used so far. */
  cpuSeconds (): Record<string, number> {
    const out: Record<string, number> = {}
    for (const m of this.members.values()) {
      const pid = m.pid
      if (pid === undefined || !m.alive) continue
      try { const c = cpuTimes(pid); out[m.name] = Math.round((c.user + c.sys) * 100) / 100 } catch { /* exited meanwhile */ }
    }
    return out
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const m of this.members.values()) m.exitExpected = true
    const order = [...this.sites.map(s => s.name), 'planner', ...this.gateways.map(g => g.id), 'redis']
    for (const n of order) {
      const p = this.members.get(n)?.proc
      if (p !== undefined) await this.procs.stop(p)
    }
    await this.procs.stopAll()
    await this.relays.stop()
    for (const m of this.members.values()) m.closeLog()
  }

  private add (m: Member): void { this.members.set(m.name, m) }
  private log (name: string): string { return path.join(this.o.dir, 'logs', `${name}.log`) }

  private env (): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, FERRY_LOG_LEVEL: this.o.logLevel }
    delete env.FERRY_ADMIN_TOKEN
    return env
  }

  private ferry (name: string, file: string, roles: string, adminPort: number): Member {
    const m = new Member(name, 'ferry', this.log(name), () => ({
      cmd: process.execPath,
      args: [FERRY_JS, 'start', '--config', file, '--roles', roles],
      env: this.env()
    }), async () => await statusOf(`http://127.0.0.1:${adminPort}/readyz`) === 200, () => {})
    this.add(m)
    return m
  }

  private async launch (name: string): Promise<void> {
    const m = this.member(name)
    m.spawn(this.procs, (member, child) => {
      if (member.exitExpected || this.stopped) return
      this.unexpectedExits.push({ member: member.name, code: child.exitCode, signal: child.signalCode, lastLines: member.lastLines(30) })
    })
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      if (!m.alive) throw new Error(`${name} exited while starting:\n${m.lastLines().join('\n')}`)
      if (await m.ready().catch(() => false)) return
      await sleep(100)
    }
    throw new Error(`${name} did not become ready within 60 s:\n${m.lastLines().join('\n')}`)
  }
}
