/**
 * The fault schedule: each step breaks one thing the way it breaks in production, then removes
 * the cause; the runner (schedule.ts) then measures how long until the fleet serves again.
 */
import dns from 'node:dns'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { ADMIN_TOKEN, ZONE, type FleetDeployment, type Member, type ProxyEndpoint } from './deployment.js'
import { IdleSocketClient, PoolClient, type HttpClient } from './http-clients.js'
import type { Tally } from './ledger.js'
import { siteHeaders, type BlockOps, type Outcome } from './workload.js'

export interface ScheduleTiming {
  /** How long each fault is left in force while the clients keep going. */
  holdMs: number
  /** Quiet time after a recovery before the next fault. */
  settleMs: number
  /** A step that has not recovered by then has failed. */
  recoveryDeadlineMs: number
}

export interface FaultContext {
  deployment: FleetDeployment
  blockOps: BlockOps
  tally: Tally
  probe: RecoveryProbe
  timing: ScheduleTiming
  /** How many times this step has run before (faults alternate their target by it). */
  round: number
  /** The writers' volumes and how many blocks each has. */
  volumes: string[]
  blocksPerVolume: number
  log: (line: string) => void
}

export interface FaultStep {
  name: string
  /** The step keeps its fault in force for as long as it needs inside inject (no extra hold). */
  holdsItself?: boolean
  /** Client failures that are the fault's legitimate consequence (counted, not findings) until it has recovered. */
  tolerates?: RegExp
  /** Breaks something; returns once the fault is in force. */
  inject (ctx: FaultContext): Promise<void>
  /** Removes the cause (restart, fault lifted). Recovery is timed from its start. */
  lift (ctx: FaultContext): Promise<void>
  /** What, beyond the recovery probe, is still not back (undefined: nothing). */
  pending? (ctx: FaultContext): Promise<string | undefined>
  /** Checks once recovered; each returned string is a problem. */
  verify? (ctx: FaultContext): Promise<string[]>
}

// ─────────────────────────────── admin API ───────────────────────────────

export async function adminCall<T> (url: string, opts: { method?: 'GET' | 'POST' | 'PUT' | 'DELETE', body?: unknown, token?: string } = {}): Promise<{ status: number, json: T }> {
  const r = await request(url, {
    method: opts.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...(opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : {}) },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    headersTimeout: 15_000,
    bodyTimeout: 15_000
  })
  const text = await r.body.text()
  let json: unknown
  try { json = JSON.parse(text) } catch { json = text }
  return { status: r.statusCode, json: json as T }
}

/** A counter's value from a Prometheus text page (0 when absent). */
export async function metric (adminUrl: string, series: string): Promise<number> {
  const r = await request(`${adminUrl}/metrics`, { headersTimeout: 5000, bodyTimeout: 5000 })
  const text = await r.body.text()
  const line = text.split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

interface MigrationView {
  id: string
  volume: string
  block: string
  from: string
  to: string
  phase: string
  result: string | null
  error: string | null
  startedAt: number
  endedAt: number | null
}

/**
 * Writers delete blocks now and then, and a volume move also takes the blocks the planner only
 * knows from their accesses: a migration of a block deleted before or during it ends without
 * copying (the source no longer has it). Any other unsuccessful end is a problem.
 */
function unexplained (ctx: FaultContext, ms: MigrationView[]): MigrationView[] {
  return ms.filter(m => m.result !== 'ok' && !(/FERRY_SOURCE_MISSING/.test(m.error ?? '') &&
    ctx.blockOps.history.mayBeAbsentBetween(`${m.volume}/${m.block}`, m.startedAt - 1000, (m.endedAt ?? Date.now()) + 1000)))
}

async function blockGateway (adminUrl: string, key: string): Promise<string | undefined> {
  const { status, json } = await adminCall<{ location?: { gateway?: string | null } }>(`${adminUrl}/v1/blocks/${key}`)
  return status === 200 ? json.location?.gateway ?? undefined : undefined
}

/**
 * Asks the planner to move a volume; returns the migrations it started. A 409 (every block
 * already there, or busy with a move the rebalancer started) starts none; anything else is wrong.
 */
async function moveVolume (ctx: FaultContext, volume: string, to: string): Promise<MigrationView[]> {
  // A typed 503 (the store timing out on a loaded machine, a planner between leaderships) is
  // retried for a while, as an operator's script would: the step tests the fleet, not the call.
  const post = async (): Promise<{ status: number, json: { migrations?: MigrationView[] } }> => await adminCall<{ migrations?: MigrationView[] }>(`${ctx.deployment.plannerAdminUrl}/v1/migrations`, {
    method: 'POST', body: { volume, to, reason: 'fault-suite' }, token: ADMIN_TOKEN
  })
  let { status, json } = await post()
  for (const until = Date.now() + 30_000; status === 503 && Date.now() < until;) {
    ctx.log(`moving ${volume} to ${to}: 503 ${JSON.stringify(json)}; retrying`)
    await sleep(1000);
    ({ status, json } = await post())
  }
  if (status === 409) {
    ctx.log(`moving ${volume} to ${to}: nothing to start (${JSON.stringify(json)})`)
    return []
  }
  if (status !== 202) throw new Error(`POST /v1/migrations ${volume} → ${to}: ${status} ${JSON.stringify(json)}`)
  return json.migrations ?? []
}

async function migrations (ctx: FaultContext, ids: readonly string[]): Promise<MigrationView[]> {
  const out: MigrationView[] = []
  for (const id of ids) {
    const { status, json } = await adminCall<MigrationView>(`${ctx.deployment.plannerAdminUrl}/v1/migrations/${id}`)
    if (status === 200) out.push(json)
  }
  return out
}

// ─────────────────────────────── recovery ───────────────────────────────

/** Reads in parallel per proxy when the probe reads every block: a round stays short under load. */
const PROBE_LANES = 4

/**
 * "Serving again" means: /readyz is 200 and ready on every admin port, DNS answers, through each
 * proxy a fresh write of one block on each gateway is acknowledged and then read back, with
 * exactly those bytes, through the other proxy — and every block the writers have is readable
 * through each proxy with a version it may have (blocks moved off their hash choice included).
 */
export class RecoveryProbe {
  private blocks: Array<{ key: string, gateway: string }> = []
  private readonly clients: HttpClient[]
  private readonly resolver = new dns.promises.Resolver({ timeout: 1000, tries: 1 })

  constructor (private readonly deployment: FleetDeployment, private readonly blockOps: BlockOps) {
    this.clients = deployment.proxies.map(p => new PoolClient(p.url, PROBE_LANES))
    this.resolver.setServers([`127.0.0.1:${deployment.dnsPort}`])
  }

  /** Probe blocks until every gateway holds one: written from each site in turn, so first-touch
   * placement (the writer's site) puts one on every site's gateway. */
  async setup (): Promise<void> {
    const want = new Set(this.deployment.gateways.map(g => g.id))
    const a = this.deployment.proxies[0] as ProxyEndpoint
    for (let n = 0; want.size > 0 && n < 100; n++) {
      const key = `probe/p${n}`
      const o = await this.blockOps.put(this.clients[0] as HttpClient, a, 'probe', `p${n}`, siteHeaders(n))
      if (o.kind !== 'ok') throw new Error(`probe write ${key}: ${JSON.stringify(o)}`)
      const gw = await blockGateway(a.adminUrl, key)
      if (gw !== undefined && want.delete(gw)) this.blocks.push({ key, gateway: gw })
    }
    if (want.size > 0) throw new Error(`no probe block landed on ${[...want].join(', ')}`)
  }

  /** One round; undefined when everything passed, else the first thing that did not. */
  async round (): Promise<string | undefined> {
    for (const url of this.deployment.adminUrls()) {
      const r = await adminCall<{ status?: string, reasons?: string[], degraded?: string[] }>(`${url}/readyz`).catch((err: Error) => ({ status: 0, json: { status: err.message } }))
      if (r.status !== 200 || r.json.status !== 'ready') return `${url}/readyz: ${r.status} ${JSON.stringify(r.json)}`
    }
    try {
      await this.resolver.resolve4(`probe.${ZONE}`)
    } catch (err) {
      const code = (err as { code?: string }).code
      if (code !== 'ENOTFOUND' && code !== 'ENODATA') return `DNS on ${this.deployment.dnsPort}: ${code ?? String(err)}`
    }
    const proxies = this.deployment.proxies
    for (let i = 0; i < proxies.length; i++) {
      const via = proxies[i] as ProxyEndpoint
      const other = proxies[(i + 1) % proxies.length] as ProxyEndpoint
      for (const { key } of this.blocks) {
        const [volume, block] = key.split('/') as [string, string]
        const w = await this.blockOps.put(this.clients[i] as HttpClient, via, volume, block, {})
        if (w.kind !== 'ok') return `write ${key} via ${via.name}: ${describe(w)}`
        const r = await this.blockOps.get(this.clients[(i + 1) % proxies.length] as HttpClient, other, key, {})
        if (r.kind !== 'ok') return `read ${key} via ${other.name}: ${describe(r)}`
        if (r.version !== w.version) return `read ${key} via ${other.name}: not the version just written`
      }
    }
    // Every block the writers have: readable through each proxy, with a version it may have.
    const keys = this.blockOps.history.keys().filter(k => !k.startsWith('probe/'))
    const lanes = proxies.flatMap((via, i) => Array.from({ length: PROBE_LANES }, (_, lane) => ({ via, client: this.clients[i] as HttpClient, lane })))
    const unreadable = await Promise.all(lanes.map(async ({ via, client, lane }) => {
      for (let k = lane; k < keys.length; k += PROBE_LANES) {
        const key = keys[k] as string
        const r = await this.blockOps.get(client, via, key, {})
        if (r.kind !== 'ok') return `read ${key} via ${via.name}: ${describe(r)}`
        if (r.anomaly !== undefined) return `read ${key} via ${via.name}: ${r.anomaly}`
      }
      return undefined
    }))
    return unreadable.find(u => u !== undefined)
  }

  async close (): Promise<void> { await Promise.all(this.clients.map(c => c.close())) }
}

function describe (o: Outcome): string {
  return o.kind === 'failure' ? o.example : o.kind === 'refused' ? `503 ${o.code}` : o.kind === 'outage' ? o.what : o.kind
}

// ─────────────────────────────── the faults ───────────────────────────────

async function plannerLeads (ctx: FaultContext): Promise<string | undefined> {
  const { json } = await adminCall<{ leader?: boolean }>(`${ctx.deployment.plannerAdminUrl}/v1/planner`)
  return json.leader === true ? undefined : 'the planner does not hold the leader lease yet'
}

/** Planner SIGKILLed while it copies a volume, then restarted: the new leader finishes or rolls back. */
function plannerKill (): FaultStep {
  let started: string[] = []
  return {
    name: 'planner-kill',
    async inject (ctx) {
      const a = ctx.deployment.proxies[0] as ProxyEndpoint
      // A volume is moved to the reference gateway holding the fewest of its blocks, so most of
      // them have to be copied; copies are slowed to a crawl, so the kill lands mid-copy.
      for (let attempt = 0; attempt < 4; attempt++) {
        const volume = ctx.volumes[(ctx.round * 2 + attempt) % ctx.volumes.length] as string
        const onGw = new Map<string, number>([['gw1', 0], ['gw2', 0]])
        for (let b = 0; b < ctx.blocksPerVolume; b++) {
          const g = await blockGateway(a.adminUrl, `${volume}/b${b}`)
          if (g !== undefined && onGw.has(g)) onGw.set(g, (onGw.get(g) ?? 0) + 1)
        }
        const to = [...onGw.entries()].sort((x, y) => x[1] - y[1])[0]?.[0] as string
        started = (await moveVolume(ctx, volume, to)).map(m => m.id)
        ctx.log(`planner-kill: moving ${volume} to ${to}: ${started.length} migrations`)
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline) {
          const now = await migrations(ctx, started)
          const active = now.filter(m => m.result === null && (m.phase === 'copying' || m.phase === 'cutover'))
          if (active.length > 0) {
            await ctx.deployment.kill('planner')
            ctx.log(`planner-kill: killed with ${active.map(m => `${m.block} ${m.phase}`).join(', ')} in flight`)
            return
          }
          if (now.every(m => m.result !== null)) break
          await sleep(20)
        }
      }
      // Nothing could be caught mid-copy: kill anyway, still a planner crash under load.
      ctx.log('planner-kill: no migration caught in flight; killing the planner anyway')
      await ctx.deployment.kill('planner')
    },
    async lift (ctx) { await ctx.deployment.restart('planner') },
    async pending (ctx) {
      const leads = await plannerLeads(ctx)
      if (leads !== undefined) return leads
      const open = (await migrations(ctx, started)).filter(m => m.result === null)
      return open.length === 0 ? undefined : `migrations still open: ${open.map(m => `${m.block}:${m.phase}`).join(', ')}`
    },
    async verify (ctx) {
      const done = await migrations(ctx, started)
      ctx.log(`planner-kill: migrations ended ${done.map(m => `${m.block}:${m.result ?? '-'}${m.error !== null ? `(${m.error})` : ''}`).join(', ')}`)
      // Rolled back is a fine end for a copy its planner died in; failing for another reason is not.
      return unexplained(ctx, done).filter(m => m.result !== 'rolled-back')
        .map(m => `migration ${m.volume}/${m.block} ${m.from} → ${m.to} ended ${m.result ?? 'open'}: ${m.error ?? ''}`)
    }
  }
}

/** A volume moved onto the nginx WebDAV gateway: every block must arrive (no failed copy). */
function moveToWebdav (): FaultStep {
  let started: string[] = []
  return {
    name: 'move-to-webdav',
    async inject (ctx) {
      const volume = ctx.volumes[(ctx.round * 2 + 1) % ctx.volumes.length] as string
      started = (await moveVolume(ctx, volume, 'gw3')).map(m => m.id)
      ctx.log(`move-to-webdav: moving ${volume} to gw3: ${started.length} migrations`)
    },
    async lift () {},
    async pending (ctx) {
      const open = (await migrations(ctx, started)).filter(m => m.result === null)
      return open.length === 0 ? undefined : `migrations onto gw3 still open: ${open.length}`
    },
    async verify (ctx) {
      return unexplained(ctx, await migrations(ctx, started))
        .map(m => `migration ${m.volume}/${m.block} ${m.from} → gw3 ended ${m.result ?? 'open'}: ${m.error ?? ''}`)
    }
  }
}

interface StoreSnapshot {
  at: number
  /** Block → location epoch, as proxy A sees it (null: no location). */
  epochs: Map<string, number | null>
  migrationIds: string[]
  fence: number | null
}

async function storeSnapshot (ctx: FaultContext): Promise<StoreSnapshot> {
  const a = ctx.deployment.proxies[0] as ProxyEndpoint
  const epochs = new Map<string, number | null>()
  for (const key of ctx.blockOps.history.keys()) {
    const { status, json } = await adminCall<{ location?: { placed?: boolean, epoch?: number } }>(`${a.adminUrl}/v1/blocks/${key}`)
    if (status === 200) epochs.set(key, json.location?.placed === true ? json.location.epoch ?? null : null)
  }
  const log = await adminCall<{ migrations?: Array<{ id: string }> }>(`${ctx.deployment.plannerAdminUrl}/v1/migrations?limit=10000`)
  const planner = await adminCall<{ token?: number | null }>(`${ctx.deployment.plannerAdminUrl}/v1/planner`)
  return { at: Date.now(), epochs, migrationIds: (log.json.migrations ?? []).map(m => m.id), fence: planner.json.token ?? null }
}

/**
 * Redis SIGKILLed under load and restarted. With persistence (AOF) everything must come back:
 * no location lost or moved back in epoch, the migration log whole, the planner's fencing token
 * never lower. Restarted empty (`wipe`, or a deployment without persistence), ferry must rebuild
 * and the clients must lose nothing — typed 503s meanwhile are fine.
 */
function redisKill (wipe: boolean): FaultStep {
  let before: StoreSnapshot | undefined
  return {
    name: wipe ? 'redis-restart-empty' : 'redis-kill',
    async inject (ctx) {
      before = !wipe && ctx.deployment.opts.redisPersistence === 'aof' ? await storeSnapshot(ctx) : undefined
      await ctx.deployment.kill('redis')
    },
    async lift (ctx) {
      if (wipe) await ctx.deployment.wipeRedisData()
      await ctx.deployment.restart('redis')
    },
    // The lease lived in Redis too: the fleet is whole again once a planner leads.
    pending: plannerLeads,
    async verify (ctx) {
      if (before === undefined) return []
      const was = before
      const now = await storeSnapshot(ctx)
      const problems: string[] = []
      for (const [key, epoch] of was.epochs) {
        if (epoch === null || ctx.blockOps.history.mayBeAbsentBetween(key, was.at - 1000, now.at)) continue
        const after = now.epochs.get(key)
        if (after === null || after === undefined || after < epoch) problems.push(`${key}: location epoch ${epoch} before the Redis restart, ${String(after)} after`)
      }
      const missing = was.migrationIds.filter(id => !now.migrationIds.includes(id))
      if (missing.length > 0) problems.push(`${missing.length} migrations gone from the log after the Redis restart (e.g. ${missing[0] as string})`)
      if (was.fence !== null && (now.fence === null || now.fence < was.fence)) problems.push(`planner fencing token ${was.fence} before the Redis restart, ${String(now.fence)} after`)
      return problems.slice(0, 10)
    }
  }
}

function proxyKill (): FaultStep {
  let victim = ''
  return {
    name: 'proxy-kill',
    async inject (ctx) {
      victim = (ctx.deployment.proxies[ctx.round % 2] as ProxyEndpoint).name
      await ctx.deployment.kill(victim)
      ctx.log(`proxy-kill: ${victim}`)
    },
    async lift (ctx) { await ctx.deployment.restart(victim) }
  }
}

/**
 * A block lives on one gateway: while that gateway is dead or failing, ferry can only answer
 * for it with a typed gateway error (a request cut mid-way may have been applied, so it is no
 * refusal). Anywhere else these are findings.
 */
const GATEWAY_ERRORS = /^(GET|PUT|DELETE) 50[24] FERRY_GATEWAY_(ERROR|TIMEOUT)$/

function gatewayErrors (): FaultStep {
  const url = (ctx: FaultContext): string => ctx.deployment.gateways.find(g => g.id === 'gw2')?.faultsUrl as string
  return {
    name: 'gateway-error-rate',
    tolerates: GATEWAY_ERRORS,
    async inject (ctx) {
      const r = await adminCall(url(ctx), { method: 'PUT', body: { errorRate: 1 } })
      if (r.status !== 200) throw new Error(`PUT gw2 faults: ${r.status} ${JSON.stringify(r.json)}`)
    },
    async lift (ctx) {
      const r = await adminCall(url(ctx), { method: 'DELETE' })
      if (r.status !== 200) throw new Error(`DELETE gw2 faults: ${r.status} ${JSON.stringify(r.json)}`)
    }
  }
}

function gatewayKill (): FaultStep {
  let victim = ''
  return {
    name: 'gateway-kill',
    tolerates: GATEWAY_ERRORS,
    async inject (ctx) {
      victim = ctx.round % 2 === 0 ? 'gw1' : 'gw2'
      await ctx.deployment.kill(victim)
      ctx.log(`gateway-kill: ${victim}`)
    },
    async lift (ctx) { await ctx.deployment.restart(victim) }
  }
}

/**
 * Config rewritten, checked with `ferry check` and SIGHUP sent to every ferry process: a valid
 * change takes effect (the Via pseudonym); an invalid file is refused by `check` with
 * file:line:col errors (never a stack trace) and by the processes, counted, while the previous
 * config keeps serving.
 */
function configReload (): FaultStep {
  const via = (round: number): string => `ferry-r${round}`
  const readVia = async (p: ProxyEndpoint): Promise<string | undefined> => {
    const r = await request(`${p.url}/probe/p0`, { headersTimeout: 5000, bodyTimeout: 5000 })
    await r.body.dump()
    return typeof r.headers.via === 'string' ? r.headers.via : undefined
  }
  const reloads = async (ctx: FaultContext, result: 'success' | 'failure'): Promise<number[]> =>
    await Promise.all(ctx.deployment.adminUrls().map(u => metric(u, `ferry_config_reloads_total{result="${result}"}`)))
  const problems: string[] = []
  const checkConfig = async (ctx: FaultContext, name: string, valid: boolean): Promise<void> => {
    const r = await ctx.deployment.check(name)
    const first = r.output.trim().split('\n').slice(0, 3).join(' | ')
    if (r.code !== (valid ? 0 : 1)) problems.push(`ferry check on ${name}'s ${valid ? 'valid' : 'invalid'} config exited ${String(r.code)}: ${first}`)
    else if (!valid && !/\.yaml:\d+:\d+: /.test(r.output)) problems.push(`ferry check on ${name}'s invalid config names no file:line:col: ${first}`)
    if (/\n\s+at /.test(r.output)) problems.push(`ferry check on ${name}'s config printed a stack trace: ${first}`)
  }
  const rewrite = async (ctx: FaultContext, result: 'success' | 'failure', edit: Parameters<FleetDeployment['writeConfig']>[1], check = true): Promise<void> => {
    const before = await reloads(ctx, result)
    const members = ctx.deployment.ferryMembers()
    for (const m of members) ctx.deployment.writeConfig(m.name, edit)
    // The files differ only in their ports: checking one of them is what an operator would do.
    if (check) await checkConfig(ctx, (members[0] as Member).name, result === 'success')
    for (const m of members) ctx.deployment.signal(m.name, 'SIGHUP')
    const deadline = Date.now() + 10_000
    for (;;) {
      const now = await reloads(ctx, result)
      if (now.every((n, i) => n > (before[i] as number))) return
      if (Date.now() > deadline) throw new Error(`config reload (${result}) not counted on every process: ${before.join(',')} → ${now.join(',')}`)
      await sleep(50)
    }
  }
  return {
    name: 'config-reload',
    async inject (ctx) {
      problems.length = 0
      const token = via(ctx.round)
      await rewrite(ctx, 'success', c => ({ ...c, proxy: { ...(c.proxy as object), via: token } }))
      for (const p of ctx.deployment.proxies) {
        const seen = await readVia(p)
        if (seen?.endsWith(`1.1 ${token}`) !== true) problems.push(`${p.name}: after a valid reload Via is ${String(seen)}, not ${token}`)
      }
      // Refused: a value out of range, a gateway URL that is no URL, a file that is not YAML.
      await rewrite(ctx, 'failure', c => ({ ...c, proxy: { ...(c.proxy as object), via: token + '-bad', idleTimeoutMs: -1 } }))
      await rewrite(ctx, 'failure', c => ({ ...c, gateways: (c.gateways as Array<Record<string, unknown>>).map((g, i) => i === 0 ? { ...g, url: 'http://bad url:99999' } : g) }))
      await rewrite(ctx, 'failure', () => 'proxy: [this is: not: yaml\n')
      for (const p of ctx.deployment.proxies) {
        const seen = await readVia(p)
        if (seen?.endsWith(`1.1 ${token}`) !== true) problems.push(`${p.name}: after invalid reloads Via is ${String(seen)}, not the previous ${token}`)
      }
    },
    // Back to the file every process started with (checked then): recovery is SIGHUP → serving.
    async lift (ctx) { await rewrite(ctx, 'success', c => c, false) },
    async verify () { return [...problems] }
  }
}

/**
 * Connections left idle past every proxy timeout (idle keep-alive, headers, body), then reused:
 * Python-like sockets and undici pools on the proxy and admin ports, a connection that never
 * sends a request, and an upload that stalls mid-body.
 */
function idleConnections (): FaultStep {
  interface Idle { name: string, client: HttpClient, path: string }
  let idle: Idle[] = []
  let silent: net.Socket[] = []
  let stalled: Array<{ name: string, reply: Promise<string> }> = []
  const problems: string[] = []
  return {
    name: 'idle-connections',
    holdsItself: true,
    async inject (ctx) {
      const d = ctx.deployment
      idle = []
      for (const p of d.proxies) {
        const url = new URL(p.url)
        idle.push({ name: `${p.name} idle-socket`, client: new IdleSocketClient(url.hostname, Number(url.port)), path: '/probe/p0' })
        idle.push({ name: `${p.name} pool`, client: new PoolClient(p.url), path: '/probe/p0' })
      }
      for (const m of d.ferryMembers()) {
        const url = new URL(d.adminUrlOf(m.name))
        idle.push({ name: `${m.name} admin idle-socket`, client: new IdleSocketClient(url.hostname, Number(url.port)), path: '/readyz' })
        idle.push({ name: `${m.name} admin pool`, client: new PoolClient(url.origin), path: '/readyz' })
      }
      for (const i of idle) {
        const r = await i.client.request({ method: 'GET', path: i.path, timeoutMs: 5000 })
        if (r.status !== 200) throw new Error(`${i.name}: first request ${r.status}`)
      }
      silent = d.proxies.map(p => net.connect(Number(new URL(p.url).port), '127.0.0.1'))
      for (const s of silent) s.on('error', () => {})
      stalled = d.proxies.map(p => ({ name: p.name, reply: stallUpload(p) }))
      // Well past every timeout involved (the proxy's three and the admin listener's 5 s
      // keep-alive), so that a loaded machine's late timers cannot turn this into the keep-alive race.
      const o = d.opts
      await sleep(Math.max(o.idleTimeoutMs, o.headersTimeoutMs, o.bodyIdleTimeoutMs, 5000) + 3000)
    },
    // The idle time is over: every connection is used again.
    async lift (ctx) {
      problems.length = 0
      for (const i of idle) {
        try {
          const r = await i.client.request({ method: 'GET', path: i.path, timeoutMs: 5000 })
          // /readyz answers 503 while a process is not ready: an answer all the same, which is
          // what this step asks of a connection that idled.
          if (r.status !== 200 && !(i.path === '/readyz' && r.status === 503)) problems.push(`${i.name}: reused after idling, got ${r.status}`)
        } catch (err) {
          problems.push(`${i.name}: reused after idling: ${(err as Error).message}`)
        }
        await i.client.close()
      }
      for (const s of stalled) {
        const text = await s.reply
        // The proxy owes the stalled client a typed 408 (or, if it cut first, at least no crash).
        if (text !== '' && !/^HTTP\/1\.1 408/.test(text)) problems.push(`${s.name}: a stalled upload got ${text.split('\r\n')[0]}`)
        ctx.log(`idle-connections: stalled upload on ${s.name}: ${text === '' ? 'connection closed without an answer' : text.split('\r\n')[0]}`)
      }
      for (const s of silent) s.destroy()
    },
    async verify () { return [...problems] }
  }
}

/** A PUT that sends its headers and a little of its body, then nothing: what came back. */
async function stallUpload (p: ProxyEndpoint): Promise<string> {
  return await new Promise(resolve => {
    const s = net.connect(Number(new URL(p.url).port), '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => { s.destroy() }, 60_000)
    s.on('data', d => { text += d.toString('latin1') })
    s.on('error', () => {})
    s.on('close', () => { clearTimeout(timer); resolve(text) })
    s.write('PUT /stalled/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n' + 'x'.repeat(100))
  })
}

export const FAULTS = {
  'planner-kill': plannerKill,
  'move-to-webdav': moveToWebdav,
  'redis-kill': () => redisKill(false),
  'redis-restart-empty': () => redisKill(true),
  'proxy-kill': proxyKill,
  'gateway-error-rate': gatewayErrors,
  'gateway-kill': gatewayKill,
  'config-reload': configReload,
  'idle-connections': idleConnections
} satisfies Record<string, () => FaultStep>

export type FaultName = keyof typeof FAULTS
export const FAULT_NAMES = Object.keys(FAULTS) as FaultName[]
