import { request } from 'undici'
import { loadConfigFile } from '../config/load.js'
import { isFerryError } from '../lib/errors.js'
import { isUsageError, parseFlags, usage } from './args.js'

/**
 * `ferry ctl`: the operator's command line against a running ferry's admin API. Tables for
 * people, `--json` for scripts (the API's own answer, unchanged). Exit codes are part of the
 * interface (README "ferry ctl"): scripts branch on them, never on the text.
 */
export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3, unauthorized: 4, notReady: 5 } as const

export const CTL_USAGE = `usage: ferry ctl [--admin URL] [--token T] [--json] <command> [args]

  --admin URL     the admin listener (default $FERRY_ADMIN_URL, else http://127.0.0.1:9090); an https:// listener
                  with a private CA: NODE_EXTRA_CA_CERTS=ca.pem
  --token T       bearer token for actions (default $FERRY_ADMIN_TOKEN)
  --json          print the API's JSON instead of tables

commands:
  status                               readiness, planner, gateways, migrations at a glance (exit 5 when not ready)
  gateways                             gateways: health, predicted score and interval, trigger, blocks, capacity
  block VOLUME/BLOCK                   where a block is and why: location, access scores per site, gateway ranking
  migrations [--active] [--limit N] [--watch]
                                       migrations with progress, bytes, rate and ETA (--watch: until none is active)
  drain GATEWAY [--to GATEWAY]         move every block off a gateway and keep new ones away
  undrain GATEWAY                      end a drain
  move VOLUME[/BLOCK] [GATEWAY]        move a block (or every block of a volume) to GATEWAY, or to its best gateway
  pause | resume                       stop / restart data movement (running migrations finish)
  plan [--limit N]                     dry run: the rebalancer's next round (each candidate, its inputs and verdict),
                                       drains and repairs pending; nothing is moved
  reload                               make the process re-read its config file (ferry start only)
  config check FILE                    validate a config file here, without a server (exit 1 with file:line errors)

exit codes: 0 ok, 1 refused or failed (the API's error code is printed), 2 usage, 3 admin listener unreachable,
            4 unauthorized (token missing or wrong), 5 not ready (status)
`

class CtlError extends Error {
  constructor (message: string, readonly exit: number) { super(message) }
}

interface Ctx {
  admin: string
  token: string | undefined
  json: boolean
  out: (s: string) => void
}

async function call (ctx: Ctx, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, okStatuses: number[] = []): Promise<{ status: number, body: unknown }> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (ctx.token !== undefined && ctx.token !== '') headers.authorization = `Bearer ${ctx.token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  let res
  try {
    res = await request(`${ctx.admin}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), headersTimeout: 15_000, bodyTimeout: 15_000 })
  } catch (err) {
    throw new CtlError(`cannot reach the admin listener at ${ctx.admin}: ${(err as Error).message}`, EXIT.unreachable)
  }
  const text = await res.body.text()
  let parsed: unknown = text
  try { parsed = JSON.parse(text) } catch { /* not JSON: shown as text */ }
  if (res.statusCode >= 400 && !okStatuses.includes(res.statusCode)) {
    const e = (parsed as { error?: { code?: string, message?: string } }).error
    const what = e !== undefined ? `${e.message ?? ''} [${e.code ?? res.statusCode}]` : `HTTP ${res.statusCode}`
    if (res.statusCode === 401) throw new CtlError(`${what}${ctx.token === undefined ? ' — pass --token or set FERRY_ADMIN_TOKEN' : ''}`, EXIT.unauthorized)
    throw new CtlError(`${method} ${path}: ${what}`, EXIT.refused)
  }
  return { status: res.statusCode, body: parsed }
}

async function getJson<T> (ctx: Ctx, path: string): Promise<T> {
  return (await call(ctx, 'GET', path)).body as T
}

/** Plain column padding: no table library is worth a dependency for this. */
export function table (head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(head), ...rows.map(line)].join('\n') + '\n'
}

export function bytes (n: number | null | undefined): string {
  if (n === null || n === undefined) return '-'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`
}

function duration (ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-'
  if (ms < 1000) return `${ms}ms`
  const s = Math.round(ms / 1000)
  return s < 120 ? `${s}s` : `${Math.floor(s / 60)}m${s % 60}s`
}

const n2 = (v: number | null | undefined): string => v === null || v === undefined ? '-' : v.toFixed(2)

function bar (pct: number | null, width = 20): string {
  if (pct === null) return `[${'?'.repeat(width)}]`
  const full = Math.round((pct / 100) * width)
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${pct.toFixed(0).padStart(3)}%`
}

function print (ctx: Ctx, value: unknown, human: () => string): void {
  ctx.out(ctx.json ? JSON.stringify(value, null, 2) + '\n' : human())
}

// ───────────────────────────── commands ─────────────────────────────

interface GatewayView {
  id: string, site: string, url: string, healthy: boolean, reason: string | null, inflight: number
  predictedHealth?: { score: number, lower: number, upper: number, confidence: number } | null
  trigger?: string
}
interface PlannerGateway { id: string, draining: boolean, placedBlocks: number, usedBytesEstimate: number, capacityBytes: number }
interface PlannerView { leader: boolean, holder: string, paused: boolean, migrations: { queued: number, running: number, ended: Record<string, number> }, gateways: PlannerGateway[] }
interface MigrationView {
  id: string, volume: string, block: string, from: string, to: string, reason: string | null, phase: string
  bytes: number, totalBytes: number | null, startedAt: number, endedAt: number | null, result: string | null, error: string | null
  progress: { state: string, percent: number | null, bytesPerSec: number | null, etaMs: number | null } | null
}

async function optionalPlanner (ctx: Ctx): Promise<PlannerView | null> {
  const r = await call(ctx, 'GET', '/v1/planner', undefined, [404])
  return r.status === 404 ? null : r.body as PlannerView
}

async function status (ctx: Ctx): Promise<number> {
  const ready = (await call(ctx, 'GET', '/readyz', undefined, [503])).body as { status: string, reasons: string[], degraded: string[] }
  const [gws, planner] = await Promise.all([getJson<{ gateways: GatewayView[] }>(ctx, '/v1/gateways').catch(() => ({ gateways: [] as GatewayView[] })), optionalPlanner(ctx)])
  print(ctx, { ready, gateways: gws.gateways, planner }, () => {
    const healthy = gws.gateways.filter(g => g.healthy).length
    const lines = [
      `admin       ${ctx.admin}`,
      `readiness   ${ready.status}${[...ready.reasons, ...ready.degraded].map(r => `\n            - ${r}`).join('')}`,
      `gateways    ${healthy}/${gws.gateways.length} healthy${gws.gateways.filter(g => !g.healthy).map(g => `; ${g.id} ${g.reason ?? 'down'}`).join('')}`
    ]
    if (planner !== null) {
      const ended = Object.entries(planner.migrations.ended).map(([k, v]) => `${k} ${v}`).join(', ')
      lines.push(`planner     ${planner.leader ? 'leader' : 'standby'} (${planner.holder})`)
      lines.push(`movement    ${planner.paused ? 'PAUSED' : 'on'}; ${planner.migrations.running} running, ${planner.migrations.queued} queued; ended: ${ended}`)
      const draining = planner.gateways.filter(g => g.draining).map(g => g.id)
      if (draining.length > 0) lines.push(`draining    ${draining.join(', ')}`)
    } else {
      lines.push('planner     not in this process')
    }
    return lines.join('\n') + '\n'
  })
  return ready.status === 'not ready' ? EXIT.notReady : EXIT.ok
}

async function gateways (ctx: Ctx): Promise<number> {
  const [gws, planner] = await Promise.all([getJson<{ gateways: GatewayView[] }>(ctx, '/v1/gateways'), optionalPlanner(ctx)])
  const byId = new Map((planner?.gateways ?? []).map(g => [g.id, g]))
  print(ctx, gws, () => table(
    ['GATEWAY', 'SITE', 'HEALTH', 'PREDICTED [INTERVAL]', 'TRIGGER', 'DRAINING', 'BLOCKS', 'USED/CAPACITY', 'INFLIGHT'],
    gws.gateways.map(g => {
      const p = byId.get(g.id)
      const ph = g.predictedHealth
      return [
        g.id, g.site, g.healthy ? 'healthy' : `DOWN ${g.reason ?? ''}`.trim(),
        ph ? `${n2(ph.score)} [${n2(ph.lower)}, ${n2(ph.upper)}]` : '-',
        g.trigger ?? '-', p ? (p.draining ? 'yes' : 'no') : '-', p ? String(p.placedBlocks) : '-',
        p ? `${bytes(p.usedBytesEstimate)}/${p.capacityBytes > 0 ? bytes(p.capacityBytes) : 'unlimited'}` : '-',
        String(g.inflight)
      ]
    })
  ))
  return EXIT.ok
}

function blockArg (text: string | undefined, needBlock: boolean): { volume: string, block: string | undefined } {
  if (text === undefined) throw usage(needBlock ? 'needs VOLUME/BLOCK' : 'needs VOLUME[/BLOCK]')
  const [volume, block, ...rest] = text.split('/')
  if (volume === undefined || volume === '' || rest.length > 0 || (needBlock && (block === undefined || block === ''))) throw usage(`not ${needBlock ? 'VOLUME/BLOCK' : 'VOLUME[/BLOCK]'}: ${text}`)
  return { volume, block: block === '' ? undefined : block }
}

async function block (ctx: Ctx, args: string[]): Promise<number> {
  const { volume, block } = blockArg(args[0], true)
  const path = `${encodeURIComponent(volume)}/${encodeURIComponent(block as string)}`
  const where = await getJson<{ location: { gateway: string | null, placed: boolean, epoch?: number, phase?: string, target?: string }, access: { sites?: Record<string, number> } | null }>(ctx, `/v1/blocks/${path}`)
  const aff = await call(ctx, 'GET', `/v1/affinity?volume=${encodeURIComponent(volume)}&block=${encodeURIComponent(block as string)}`, undefined, [404])
  const affinity = aff.status === 404 ? null : aff.body as { scores: Record<string, number>, reads: number, writes: number, preferred: Array<{ gateway: string, site?: string, costMs?: number }> }
  print(ctx, { ...where, affinity }, () => {
    const l = where.location
    const lines = [
      `block       ${volume}/${block}`,
      `location    ${l.gateway ?? 'none'} (${l.placed ? `placed, epoch ${l.epoch ?? '-'}, ${l.phase ?? ''}${l.target ? ` → ${l.target}` : ''}` : 'not placed: routed by hash'})`
    ]
    if (affinity !== null) {
      lines.push(`accesses    ${affinity.reads} reads, ${affinity.writes} writes`)
      lines.push('scores      ' + (Object.entries(affinity.scores).map(([s, v]) => `${s} ${v.toFixed(2)}`).join(', ') || 'none'))
      lines.push('ranking     ' + affinity.preferred.map((p, i) => `${i + 1}. ${p.gateway}${p.costMs !== undefined ? ` (${p.costMs.toFixed(1)} ms expected)` : ''}`).join('  '))
    } else {
      lines.push('affinity    no accesses recorded (or no planner in this process)')
    }
    return lines.join('\n') + '\n'
  })
  return EXIT.ok
}

function migrationRows (list: MigrationView[]): string {
  return table(
    ['ID', 'BLOCK', 'FROM→TO', 'REASON', 'PHASE', 'PROGRESS', 'BYTES', 'RATE', 'ETA', 'RESULT'],
    list.map(m => {
      const pct = m.result === 'ok' ? 100 : m.progress?.percent ?? (m.totalBytes ? Math.min(100, (100 * m.bytes) / m.totalBytes) : null)
      return [
        m.id, `${m.volume}/${m.block}`, `${m.from}→${m.to}`, m.reason ?? '', m.progress?.state ?? m.phase, bar(pct),
        `${bytes(m.bytes)}${m.totalBytes !== null ? `/${bytes(m.totalBytes)}` : ''}`,
        m.progress?.bytesPerSec ? `${bytes(m.progress.bytesPerSec)}/s` : '-',
        m.result === null ? duration(m.progress?.etaMs) : `took ${duration((m.endedAt ?? m.startedAt) - m.startedAt)}`,
        m.result === null ? 'active' : `${m.result}${m.error ? `: ${m.error}` : ''}`
      ]
    })
  )
}

async function migrations (ctx: Ctx, argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { active: { type: 'boolean', default: false }, limit: { type: 'string' }, watch: { type: 'boolean', default: false }, 'interval-ms': { type: 'string', default: '1000' } })
  const limit = values.limit === undefined ? 20 : Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1) throw usage(`--limit must be a positive integer: ${values.limit}`)
  const q = `/v1/migrations?limit=${limit}${values.active ? '&active=true' : ''}`
  if (!values.watch) {
    const r = await getJson<{ migrations: MigrationView[] }>(ctx, q)
    print(ctx, r, () => r.migrations.length === 0 ? 'no migrations\n' : migrationRows(r.migrations))
    return EXIT.ok
  }
  // --watch follows the migrations active now until every one has ended, then prints them once more.
  const interval = Number(values['interval-ms'])
  const watched = new Set((await getJson<{ migrations: MigrationView[] }>(ctx, '/v1/migrations?active=true&limit=1000')).migrations.map(m => m.id))
  const tty = process.stdout.isTTY === true && !ctx.json
  while (true) {
    const all = (await getJson<{ migrations: MigrationView[] }>(ctx, `/v1/migrations?limit=${Math.max(limit, watched.size)}`)).migrations
    // Nothing active when it started: the recent ones, once.
    const list = watched.size > 0 ? all.filter(m => watched.has(m.id)) : all
    const active = list.filter(m => m.result === null).length
    if (tty) process.stdout.write('\x1b[2J\x1b[H')
    print(ctx, { migrations: list }, () => `${active} active — ${new Date().toLocaleTimeString()}\n` + (list.length === 0 ? 'no migrations\n' : migrationRows(list)))
    if (active === 0) return EXIT.ok
    await new Promise(resolve => setTimeout(resolve, interval))
  }
}

interface PlanView {
  at: number, leader: boolean, holder: string, paused: boolean, queue: { queued: number, running: number }
  rebalancer: {
    enabled: boolean, wouldRun: boolean, scanned: number, candidates: number, moves: number, bytes: number, skipped: Record<string, number>
    rules: Record<string, number>
    decisions: Array<{ volume: string, block: string, from: string, to: string, gainMs: number | null, score: number, benefit: number | null, sizeBytes: number, sites: Record<string, number>, verdict: string }>
  }
  drains: Array<{ gateway: string, cause: string, state: string, remaining: number, migrations: { active: number }, stuck: number }>
  repairs: { factor: number, underReplicated: number, unavailable: number, down: Array<{ gateway: string, lost: boolean }>, pending: MigrationView[] }
  migrations: MigrationView[]
}

async function plan (ctx: Ctx, argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { limit: { type: 'string' } })
  const limit = values.limit === undefined ? 20 : Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1) throw usage(`--limit must be a positive integer: ${values.limit}`)
  const p = await getJson<PlanView>(ctx, `/v1/plan?limit=${limit}`)
  print(ctx, p, () => {
    const r = p.rebalancer
    const skipped = Object.entries(r.skipped).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ')
    const why = !r.enabled ? 'the rebalancer is disabled' : p.paused ? 'data movement is paused' : !p.leader ? 'this planner is on standby' : ''
    const lines = [
      `plan        ${new Date(p.at).toISOString()}, planner ${p.leader ? 'leader' : 'standby'} (${p.holder}); nothing was moved`,
      `next round  ${r.wouldRun ? 'would run now' : `would not run: ${why}`}; ${r.scanned} blocks scanned, ${r.candidates} beat the margin, ${r.moves} would move (${bytes(r.bytes)})${skipped === '' ? '' : `; skipped: ${skipped}`}`,
      `rules       ${Object.entries(r.rules).map(([k, v]) => `${k} ${v}`).join(', ')}`
    ]
    let out = lines.join('\n') + '\n'
    if (r.decisions.length > 0) {
      out += '\n' + table(['BLOCK', 'FROM→TO', 'ACCESS SCORES BY SITE', 'GAIN MS/ACCESS', 'SCORE', 'BENEFIT', 'SIZE', 'VERDICT'], r.decisions.map(d => [
        `${d.volume}/${d.block}`, `${d.from}→${d.to}`, Object.entries(d.sites).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ') || '-',
        d.gainMs === null ? 'source down' : d.gainMs.toFixed(2), d.score.toFixed(2),
        d.benefit === null ? '-' : d.benefit.toFixed(2), d.sizeBytes > 0 ? bytes(d.sizeBytes) : '-', d.verdict === 'move' ? 'MOVE' : d.verdict === 'member' ? 'refused: already in sync there' : `skip: ${d.verdict}`
      ]))
      if (r.decisions.length < r.candidates) out += `(${r.candidates - r.decisions.length} more; --limit N)\n`
    }
    out += '\n' + (p.drains.length === 0
      ? 'drains      none\n'
      : table(['DRAIN', 'CAUSE', 'STATE', 'REMAINING', 'ACTIVE', 'STUCK'], p.drains.map(d => [d.gateway, d.cause, d.state, String(d.remaining), String(d.migrations.active), String(d.stuck)])))
    const rp = p.repairs
    out += `repairs     R = ${rp.factor}: ${rp.underReplicated} under-replicated, ${rp.unavailable} unavailable${rp.down.length > 0 ? `; down: ${rp.down.map(d => `${d.gateway}${d.lost ? ' (lost)' : ''}`).join(', ')}` : ''}; ${rp.pending.length} repair(s) pending\n`
    if (rp.pending.length > 0) out += migrationRows(rp.pending)
    out += `queue       ${p.queue.queued} queued, ${p.queue.running} running${p.migrations.length > 0 ? '' : '\n'}`
    if (p.migrations.length > 0) out += '\n' + migrationRows(p.migrations)
    return out
  })
  return EXIT.ok
}

async function action (ctx: Ctx, method: 'POST' | 'DELETE', path: string, body: unknown, human: (r: Record<string, unknown>) => string): Promise<number> {
  const r = await call(ctx, method, path, body)
  print(ctx, r.body, () => human(r.body as Record<string, unknown>))
  return EXIT.ok
}

async function config (argv: string[], ctx: Ctx): Promise<number> {
  const [sub, file, ...rest] = argv
  if (sub !== 'check' || file === undefined || rest.length > 0) throw usage('config check FILE')
  try {
    loadConfigFile(file)
  } catch (err) {
    if (!isFerryError(err)) throw err
    throw new CtlError(`${err.message} [${err.code}]`, EXIT.refused)
  }
  print(ctx, { file, valid: true }, () => `${file}: ok\n`)
  return EXIT.ok
}

/** Runs `ferry ctl …` and returns the exit code; output goes to `out`, errors to `err`. */
export async function ctlCommand (argv: string[], out: (s: string) => void = s => { process.stdout.write(s) }, err: (s: string) => void = s => { process.stderr.write(s) }): Promise<number> {
  // Global flags come before the command; the rest belongs to the command.
  let first = -1
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--admin' || a === '--token') { i++; continue }
    if (!a.startsWith('-')) { first = i; break }
  }
  const globals = first === -1 ? argv : argv.slice(0, first)
  const [name, ...rest] = first === -1 ? [] : argv.slice(first)
  try {
    const { values } = parseFlags(globals, { admin: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } })
    if (values.help || name === undefined || name === 'help') { out(CTL_USAGE); return values.help || name === 'help' ? EXIT.ok : EXIT.usage }
    // --json is also accepted after the command (`ferry ctl gateways --json`): scripts write it either way.
    const json = values.json || rest.includes('--json')
    const args = rest.filter(a => a !== '--json')
    const admin = (values.admin ?? process.env.FERRY_ADMIN_URL ?? 'http://127.0.0.1:9090').replace(/\/+$/, '')
    if (!/^https?:\/\/[^/]+$/.test(admin)) throw usage(`--admin must be http(s)://host:port: ${admin}`)
    const ctx: Ctx = { admin, token: values.token ?? process.env.FERRY_ADMIN_TOKEN, json, out }
    const gw = (): string => { const g = args[0]; if (g === undefined || g.startsWith('-')) throw usage(`${name} needs GATEWAY`); return encodeURIComponent(g) }
    switch (name) {
      case 'status': return await status(ctx)
      case 'gateways': return await gateways(ctx)
      case 'block': return await block(ctx, args)
      case 'migrations': return await migrations(ctx, args)
      case 'plan': return await plan(ctx, args)
      case 'drain': {
        const { values: v, positionals } = parseFlags(args, { to: { type: 'string' } })
        if (positionals.length !== 1) throw usage('drain GATEWAY [--to GATEWAY]')
        return await action(ctx, 'POST', `/v1/gateways/${encodeURIComponent(positionals[0] as string)}/drain`, v.to === undefined ? {} : { to: v.to },
          r => `draining ${String(r.gateway)}: ${String(r.remaining ?? '?')} blocks to move\n`)
      }
      case 'undrain': return await action(ctx, 'DELETE', `/v1/gateways/${gw()}/drain`, undefined, r => `${String(r.gateway)}: ${r.wasDraining === true ? 'drain ended' : 'was not draining'}\n`)
      case 'move': {
        if (args.length < 1 || args.length > 2) throw usage('move VOLUME[/BLOCK] [GATEWAY]')
        const { volume, block } = blockArg(args[0], false)
        const to = args[1]
        return await action(ctx, 'POST', '/v1/migrations', { volume, ...(block !== undefined ? { block } : {}), ...(to !== undefined ? { to } : {}) }, r => {
          const started = (r.migrations as MigrationView[] | undefined) ?? []
          const skipped = (r.skipped as unknown[] | undefined) ?? []
          return `${started.length} migration(s) started${skipped.length > 0 ? `, ${skipped.length} skipped` : ''}\n` + (started.length > 0 ? migrationRows(started) : '')
        })
      }
      case 'pause': return await action(ctx, 'POST', '/v1/planner/pause', undefined, r => `data movement paused (${String(r.running)} running will finish, ${String(r.queued)} queued wait)\n`)
      case 'resume': return await action(ctx, 'POST', '/v1/planner/resume', undefined, r => `data movement resumed (${String(r.queued)} queued)\n`)
      case 'reload': {
        const r = await call(ctx, 'POST', '/v1/config/reload', undefined, [404])
        if (r.status === 404) throw new CtlError('this process does not reload from a file (only `ferry start --config FILE` does; the sandbox runs an embedded config)', EXIT.refused)
        print(ctx, r.body, () => (r.body as { changed: boolean }).changed ? 'config reloaded: changes applied\n' : 'config reloaded: no change\n')
        return EXIT.ok
      }
      case 'config': return await config(args, ctx)
      default: throw usage(`unknown ctl command "${name}"`)
    }
  } catch (e) {
    if (e instanceof CtlError) { err(`ferry ctl: ${e.message}\n`); return e.exit }
    if (isUsageError(e)) {
      err(`ferry ctl: ${(e as Error).message}\n\n${CTL_USAGE}`)
      return EXIT.usage
    }
    throw e
  }
}
