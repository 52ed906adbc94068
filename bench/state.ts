/**
 * `npm run bench -- state [options]`: the shared state on Redis, measured against its targets
 * (issue 3) in one run, every party in its own process on loopback:
 *
 * 1. Route-change propagation: a private redis-server, two reference gateways (`ferry gateway`)
 *    holding different bytes under the same block path, one `ferry start` proxy on the Redis
 *    backend. The benchmark (playing the planner) flips the block's location between the two
 *    gateways with casLocation, and at the same moment starts sending GETs through the proxy on
 *    one keep-alive connection; the figure is the time from the casLocation call to the first
 *    response whose bytes come from the new gateway. So it covers the whole path: the script
 *    commits and publishes, the proxy's subscriber receives, its LocationCache applies, its
 *    router picks the new gateway, and the answer comes back. A second series polls the proxy's
 *    admin API for the block's route instead (the same RouteTable.route() call, without the trip
 *    to a gateway): the routing decision itself, on which the target is judged. An in-process
 *    LocationCache on its own connection is timed beside both (store → cache only). Target: p99
 *    ≤ 10 ms.
 * 2. Throughput, Redis backend vs memory backend: two `ferry start` proxies (one per backend)
 *    in front of one reference gateway; wrk (or, without wrk, an undici generator in a child
 *    process) GETs 4 KiB blocks whose locations each proxy recorded on a first write through it,
 *    so every route is cached. Rounds alternate the order (ABBA); the ratio is computed per round
 *    from phases that ran back to back and judged on the median. Target: ≥ 0.95×.
 * 3. Redis commands per proxied request, amortised over the Redis phases of (2): INFO
 *    commandstats before and after each phase, divided by the requests served. Commands run
 *    inside ferry's Lua scripts are counted by Redis too; they are reported apart, and the
 *    target (≤ 0.05) is judged on the commands the proxy sends. Redis work is proportional to
 *    the distinct (block, site) pairs a proxy sees per flush interval, not to requests: the
 *    figure depends on --blocks and on the request rate, so both are reported with it.
 *
 * Options:
 *   --changes N        route changes timed (default 1000)
 *   --rounds N         throughput rounds (default 6; even balances the ABBA order)
 *   --duration S       measured seconds per throughput phase (default 5)
 *   --warmup S         warm-up seconds before each phase (default 1)
 *   --connections N    load-generator connections (default 32)
 *   --threads N        wrk threads (default 2)
 *   --blocks N         distinct 4 KiB blocks the GETs cycle over (default 256)
 *   --sweep LIST       after the rounds, one Redis phase per block count in LIST, to show how the
 *                      commands per request follow the distinct blocks per flush (default
 *                      16,64,256,1024; empty to skip)
 *   --loadgen KIND     auto | wrk | node (default auto: wrk when installed)
 *   --no-write         do not write bench/results/state.json
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool, request } from 'undici'
import { stringify } from 'yaml'
import { LocationCache } from '../state/cache.js'
import { createStore, waitForReady } from '../state/factory.js'
import type { StateStore } from '../state/types.js'
import { percentile, ratio, writeResult } from './lib.js'
import { cpuTimes, freePort, positiveInt, Procs, waitFor, type Proc } from './procs.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(here, '..', '..')
const FERRY_JS = path.resolve(here, '..', 'bin', 'ferry.js')
const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server'
const PREFIX = 'bench:'
const RESULT_MARKER = 'LOADGEN_RESULT '
const BLOCK_BYTES = 4096

/**
 * Commands ferry sends at top level. Everything else counted in commandstats during a run was
 * executed inside one of its scripts (HSET, PEXPIRE, … under an EVALSHA) — except what the
 * benchmark itself sends (INFO, CONFIG), which is left out of both.
 */
const CLIENT_COMMANDS = new Set(['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'ping', 'script|load', 'script|exists', 'scan',
  'subscribe', 'client|setname', 'select', 'auth', 'hello', 'cluster|slots', 'cluster|shards'])
const BENCH_COMMANDS = new Set(['info', 'config|resetstat', 'config|get'])

interface LoadResult {
  requests: number
  durationUs: number
  errors: { connect: number, read: number, write: number, status: number, timeout: number }
  latencyUs: { p50: number, p99: number }
}

interface Phase {
  round: number
  backend: 'memory' | 'redis'
  rps: number
  requests: number
  errors: number
  p50Ms: number
  p99Ms: number
  proxyCpuS: number
  /** Redis phases only. */
  redisClientCommands?: number
  redisScriptCommands?: number
  redisTopCommands?: Record<string, number>
}

export default async function run (args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      changes: { type: 'string', default: '1000' },
      rounds: { type: 'string', default: '6' },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      connections: { type: 'string', default: '32' },
      threads: { type: 'string', default: '2' },
      blocks: { type: 'string', default: '256' },
      sweep: { type: 'string', default: '16,64,256,1024' },
      loadgen: { type: 'string', default: 'auto' },
      'no-write': { type: 'boolean', default: false }
    }
  })
  const changes = positiveInt('--changes', values.changes)
  const rounds = positiveInt('--rounds', values.rounds)
  const duration = Number(values.duration)
  const warmup = Number(values.warmup)
  const connections = positiveInt('--connections', values.connections)
  const threads = positiveInt('--threads', values.threads)
  const blocks = positiveInt('--blocks', values.blocks)
  const sweep = values.sweep === '' ? [] : values.sweep.split(',').map(v => positiveInt('--sweep', v))
  if (!['auto', 'wrk', 'node'].includes(values.loadgen)) throw new Error(`--loadgen must be auto, wrk or node, got ${values.loadgen}`)
  const wrk = which('wrk')
  if (values.loadgen === 'wrk' && wrk === undefined) throw new Error('--loadgen wrk: wrk is not installed')
  const loadgen: 'wrk' | 'node' = values.loadgen === 'node' || wrk === undefined ? 'node' : 'wrk'
  if (!fs.existsSync(FERRY_JS)) throw new Error(`${FERRY_JS} is missing: npm run build (npm run bench does it)`)

  const tmp = fs.mkdtempSync(path.join(isWritableDir('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'ferry-bench-state-'))
  const procs = new Procs()
  const stores: StateStore[] = []
  const onSignal = (): void => { void procs.stopAll().finally(() => { fs.rmSync(tmp, { recursive: true, force: true }); process.exit(130) }) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const notes: string[] = []
  if (loadgen === 'node') notes.push('load generator: an undici closed loop in a child process (wrk not installed); it takes more CPU from the processes measured than wrk would')
  try {
    // ── shared pieces: Redis and two gateways ──
    const redisPort = await freePort()
    const redis = procs.start('redis', REDIS_SERVER, ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', tmp, '--save', '', '--appendonly', 'no',
      '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning'])
    const redisUrl = `redis://127.0.0.1:${redisPort}`
    await waitFor(async () => (await redisInfo(redisPort, 'server')).includes('redis_version'), 'redis-server', redis)
    const redisVersion = /redis_version:(\S+)/.exec(await redisInfo(redisPort, 'server'))?.[1] ?? 'unknown'
    const gateways: Array<{ id: string, url: string }> = []
    for (const id of ['gwA', 'gwB']) {
      const port = await freePort()
      const dir = path.join(tmp, id)
      fs.mkdirSync(dir)
      const p = procs.start(id, process.execPath, [FERRY_JS, 'gateway', '--dir', dir, '--port', String(port), '--admin-port', '0', '--id', id, '--log-level', 'warn'])
      const url = `http://127.0.0.1:${port}`
      await waitFor(async () => (await request(`${url}/healthz`)).statusCode === 200, id, p)
      gateways.push({ id, url })
    }
    const planner = createStore({ backend: 'redis', url: redisUrl, keyPrefix: PREFIX })
    stores.push(planner)
    if (!await waitForReady(planner, 10_000)) throw new Error('planner store did not connect')

    // ── 1. propagation ──
    console.log(`propagation: ${changes} route changes through the store, timed to the proxy's next routing decision`)
    const propagation = await measurePropagation({ procs, tmp, redisUrl, gateways, planner, changes })
    console.log(`  proxied GET served by the new gateway after p50 ${fmt(propagation.proxyMs.p50)} ms, p99 ${fmt(propagation.proxyMs.p99)} ms, max ${fmt(propagation.proxyMs.max)} ms`)
    console.log(`  proxy's route table (admin API) names it after p50 ${fmt(propagation.routeMs.p50)} ms, p99 ${fmt(propagation.routeMs.p99)} ms, max ${fmt(propagation.routeMs.max)} ms`)
    console.log(`  (casLocation round trip p50 ${fmt(propagation.casMs.p50)} ms, p99 ${fmt(propagation.casMs.p99)} ms; in-process LocationCache applied after p50 ${fmt(propagation.cacheMs.p50)} ms, p99 ${fmt(propagation.cacheMs.p99)} ms)`)
    await planner.close()
    stores.length = 0

    // ── 2 and 3. throughput and commands per request ──
    console.log(`throughput: GET ${BLOCK_BYTES} B over ${blocks} cached routes, ${rounds} rounds × ${duration} s per backend, ${loadgen} ${connections} connections`)
    const gw = gateways[0]!
    const proxies = {
      memory: await startProxy(procs, tmp, 'memory', [gw], { backend: 'memory' }),
      redis: await startProxy(procs, tmp, 'redis', [gw], { backend: 'redis', url: redisUrl, keyPrefix: PREFIX })
    }
    for (const p of Object.values(proxies)) await populate(p.url, p.volume, blocks)
    await checkPlaced(proxies.redis.adminUrl, proxies.redis.volume, blocks)
    await checkPlaced(proxies.memory.adminUrl, proxies.memory.volume, blocks)
    const lgTmp = path.join(tmp, 'loadgen')
    fs.mkdirSync(lgTmp)
    const load = (p: RunningProxy, seconds: number, n = blocks): Promise<LoadResult> =>
      runLoad(procs, loadgen, lgTmp, p, n, seconds, connections, threads)

    // A longer first warm-up for the JIT of both proxies.
    await load(proxies.memory, Math.max(2, warmup))
    await load(proxies.redis, Math.max(2, warmup))
    const phases: Phase[] = []
    for (let round = 0; round < rounds; round++) {
      const order: Array<'memory' | 'redis'> = round % 2 === 0 ? ['memory', 'redis'] : ['redis', 'memory']
      for (const backend of order) {
        const p = proxies[backend]
        if (warmup > 0) await load(p, warmup)
        // Deltas of the warm-up are flushed within one interval; let that happen before the
        // snapshot so the phase is charged for its own flushes (and, conservatively, for one
        // interval of the warm-up's tail, since a delta costs a command whatever its count).
        await sleep(1100)
        const stats0 = backend === 'redis' ? await commandStats(redisPort) : undefined
        const cpu0 = cpuTimes(p.proc.child.pid as number)
        const r = await load(p, duration)
        const cpu1 = cpuTimes(p.proc.child.pid as number)
        // The last flush of the phase's accesses happens up to one interval after it ends.
        await sleep(1100)
        const stats1 = backend === 'redis' ? await commandStats(redisPort) : undefined
        p.proc.assertAlive()
        const errors = r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout
        const phase: Phase = {
          round,
          backend,
          rps: Math.round(r.requests / (r.durationUs / 1e6)),
          requests: r.requests,
          errors,
          p50Ms: r.latencyUs.p50 / 1000,
          p99Ms: r.latencyUs.p99 / 1000,
          proxyCpuS: round3(cpu1.user + cpu1.sys - cpu0.user - cpu0.sys)
        }
        if (stats0 !== undefined && stats1 !== undefined) {
          const d = diffStats(stats0, stats1)
          phase.redisClientCommands = d.client
          phase.redisScriptCommands = d.script
          phase.redisTopCommands = d.byCommand
        }
        phases.push(phase)
        console.log(`  round ${round} ${backend.padEnd(6)} ${String(phase.rps).padStart(7)} req/s  p50 ${fmt(phase.p50Ms)} ms  p99 ${fmt(phase.p99Ms)} ms  proxy CPU ${phase.proxyCpuS} s` +
          (phase.redisClientCommands !== undefined ? `  redis: ${phase.redisClientCommands} commands sent (+${phase.redisScriptCommands} inside scripts)` : '') +
          (errors > 0 ? `  ERRORS ${errors}` : ''))
      }
    }

    // ── commands per request against the number of distinct blocks ──
    const sweepResults: Array<{ blocks: number, rps: number, requests: number, commandsSent: number, perRequest: number, perRequestIncludingScripts: number, evalshaPerSecond: number }> = []
    if (sweep.length > 0) {
      console.log(`commands per request against distinct blocks (Redis backend, ${duration} s each): ${sweep.join(', ')}`)
      await populate(proxies.redis.url, proxies.redis.volume, Math.max(...sweep), blocks)
      for (const n of sweep) {
        if (warmup > 0) await load(proxies.redis, warmup, n)
        await sleep(1100)
        const s0 = await commandStats(redisPort)
        const r = await load(proxies.redis, duration, n)
        await sleep(1100)
        const d = diffStats(s0, await commandStats(redisPort))
        const seconds = r.durationUs / 1e6 + 0.6
        const row = {
          blocks: n,
          rps: Math.round(r.requests / (r.durationUs / 1e6)),
          requests: r.requests,
          commandsSent: d.client,
          perRequest: round4(d.client / r.requests),
          perRequestIncludingScripts: round4((d.client + d.script) / r.requests),
          evalshaPerSecond: Math.round((d.byCommand.evalsha ?? 0) / seconds)
        }
        sweepResults.push(row)
        console.log(`  ${String(n).padStart(5)} blocks  ${String(row.rps).padStart(6)} req/s  ${row.perRequest} commands sent per request (${row.perRequestIncludingScripts} with those in scripts), ${row.evalshaPerSecond} EVALSHA/s`)
      }
    }

    // ── figures ──
    const perRound = Array.from({ length: rounds }, (_, round) => {
      const m = phases.find(p => p.round === round && p.backend === 'memory')!
      const r = phases.find(p => p.round === round && p.backend === 'redis')!
      return ratio(r.rps, m.rps)
    })
    const sum = (b: 'memory' | 'redis', f: (p: Phase) => number): number => phases.filter(p => p.backend === b).reduce((s, p) => s + f(p), 0)
    const medianRatio = median(perRound)
    const pooledRatio = ratio(sum('redis', p => p.requests) / sum('redis', p => p.requests / p.rps), sum('memory', p => p.requests) / sum('memory', p => p.requests / p.rps))
    // CPU-seconds per request is steadier than req/s on a shared machine (a phase that waited
    // for the CPU serves less but does not cost more per request): reported beside the ratio.
    const cpuPer1k = (b: 'memory' | 'redis'): number => round4(1000 * sum(b, p => p.proxyCpuS) / sum(b, p => p.requests))
    const cpuRatio = ratio(cpuPer1k('memory'), cpuPer1k('redis'))
    const redisRequests = sum('redis', p => p.requests)
    const clientCommands = sum('redis', p => p.redisClientCommands ?? 0)
    const scriptCommands = sum('redis', p => p.redisScriptCommands ?? 0)
    const commandsPerRequest = round4(clientCommands / redisRequests)
    const allCommandsPerRequest = round4((clientCommands + scriptCommands) / redisRequests)
    const byCommand: Record<string, number> = {}
    for (const p of phases) for (const [k, v] of Object.entries(p.redisTopCommands ?? {})) byCommand[k] = (byCommand[k] ?? 0) + v
    const errors = phases.reduce((s, p) => s + p.errors, 0)
    if (errors > 0) notes.push(`${errors} load-generator errors (see phases)`)
    const redisRps = median(phases.filter(p => p.backend === 'redis').map(p => p.rps))
    const memoryRps = median(phases.filter(p => p.backend === 'memory').map(p => p.rps))
    const spread = Math.max(...perRound) - Math.min(...perRound)
    if (spread > 0.1) notes.push(`per-round ratios spread over ${round3(spread)} (${perRound.join(', ')}): the machine was busy; trust the median`)
    const load1 = os.loadavg()[0] ?? 0
    notes.push(`load average at the end: ${round3(load1)} on ${os.cpus().length} cores (other work shares the machine)`)

    const targets = {
      // Judged on the routing decision itself (the route table, read through the proxy's admin
      // API); the proxied GET adds one trip to a gateway and back after it, reported beside it.
      propagationP99Ms: { target: 10, value: propagation.routeMs.p99, met: propagation.routeMs.p99 <= 10, dataPathP99Ms: propagation.proxyMs.p99 },
      throughputRatio: { target: 0.95, value: medianRatio, met: medianRatio >= 0.95 },
      commandsPerRequest: { target: 0.05, value: commandsPerRequest, met: commandsPerRequest <= 0.05 }
    }
    console.log('')
    console.log(`route change → proxy's routing decision: p50 ${fmt(propagation.routeMs.p50)} ms, p99 ${fmt(propagation.routeMs.p99)} ms (target p99 ≤ 10 ms: ${targets.propagationP99Ms.met ? 'met' : 'NOT met'}); → proxied GET from the new gateway: p50 ${fmt(propagation.proxyMs.p50)} ms, p99 ${fmt(propagation.proxyMs.p99)} ms`)
    console.log(`throughput redis/memory: median of per-round ratios ${medianRatio} (pooled ${pooledRatio}; ${redisRps} vs ${memoryRps} req/s) (target ≥ 0.95: ${targets.throughputRatio.met ? 'met' : 'NOT met'})`)
    console.log(`proxy CPU per 1k requests: redis ${cpuPer1k('redis')} s, memory ${cpuPer1k('memory')} s (requests per CPU-second, redis/memory: ${cpuRatio})`)
    console.log(`redis commands per proxied request: ${commandsPerRequest} sent by the proxy, ${allCommandsPerRequest} including those inside scripts (target ≤ 0.05: ${targets.commandsPerRequest.met ? 'met' : 'NOT met'}); by command: ${JSON.stringify(byCommand)}`)
    for (const n of notes) console.log(`note: ${n}`)

    if (!values['no-write']) {
      const file = writeResult('state', {
        config: { changes, rounds, sweep, durationS: duration, warmupS: warmup, connections, threads, blocks, blockBytes: BLOCK_BYTES, loadgen, loadgenVersion: loadgen === 'wrk' ? wrkVersion() : process.version, redis: redisVersion, source: source() },
        targets,
        propagation,
        throughput: { medianRatio, pooledRatio, perRound, redisMedianRps: redisRps, memoryMedianRps: memoryRps, cpuSPer1k: { redis: cpuPer1k('redis'), memory: cpuPer1k('memory') }, requestsPerCpuRatio: cpuRatio },
        commands: { perRequest: commandsPerRequest, perRequestIncludingScripts: allCommandsPerRequest, requests: redisRequests, sent: clientCommands, insideScripts: scriptCommands, byCommand, sweep: sweepResults },
        phases,
        notes
      })
      console.log(`wrote ${path.relative(ROOT, file)}`)
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await Promise.all(stores.map(s => s.close().catch(() => {})))
    await procs.stopAll()
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

// ─────────────────────────────────────────── propagation ───────────────────────────────────────────

interface Distribution { p50: number, p90: number, p99: number, max: number, mean: number }

interface Propagation {
  /** casLocation call → first proxied GET answered by the new gateway (the target's figure). */
  proxyMs: Distribution
  /** casLocation call → first answer of the proxy's admin API naming the new gateway (its route table, no gateway hop). */
  routeMs: Distribution
  /** casLocation round trip as the planner sees it. */
  casMs: Distribution
  /** casLocation call → an in-process LocationCache (its own connection) applied the change. */
  cacheMs: Distribution
  changes: number
  pollsPerChange: { data: number, route: number }
}

async function measurePropagation (o: { procs: Procs, tmp: string, redisUrl: string, gateways: Array<{ id: string, url: string }>, planner: StateStore, changes: number }): Promise<Propagation> {
  // The same block path holds different bytes on each gateway: the body says who served it.
  for (const g of o.gateways) {
    const r = await request(`${g.url}/prop/flip`, { method: 'PUT', body: g.id })
    await r.body.dump()
  }
  let epoch = 0
  const first = await o.planner.casLocation('prop', 'flip', epoch, { gateway: o.gateways[0]!.id })
  if (!first.ok) throw new Error('could not place the block')
  epoch = first.location.epoch
  const proxy = await startProxy(o.procs, o.tmp, 'prop', o.gateways, { backend: 'redis', url: o.redisUrl, keyPrefix: PREFIX })
  // An in-process observer on its own connection: store → LocationCache, without HTTP.
  const observerStore = createStore({ backend: 'redis', url: o.redisUrl, keyPrefix: PREFIX })
  const observer = new LocationCache(observerStore)
  const appliedAt = new Map<number, number>()
  observer.onChange(c => { if (c.block === 'flip' && c.location !== null) appliedAt.set(c.location.epoch, performance.now()) })
  const data = new Pool(proxy.url, { connections: 1, pipelining: 1 })
  const admin = new Pool(proxy.adminUrl, { connections: 1, pipelining: 1 })
  try {
    if (!await observer.start(10_000)) throw new Error('observer did not load')
    // Which gateway the proxy uses for the block: by the bytes of a proxied GET, or by its admin
    // API (the same RouteTable.route() call, without the hop to a gateway: less overshoot).
    const probes = {
      data: async (): Promise<string> => {
        const r = await data.request({ method: 'GET', path: '/prop/flip' })
        const body = await r.body.text()
        if (r.statusCode !== 200) throw new Error(`GET through the proxy: ${r.statusCode} ${body}`)
        return body
      },
      route: async (): Promise<string> => {
        const r = await admin.request({ method: 'GET', path: '/v1/blocks/prop/flip' })
        const body = await r.body.json() as { location: { gateway: string } }
        return body.location.gateway
      }
    }
    await waitFor(async () => await probes.data() === o.gateways[0]!.id, 'the proxy to route by the first location', proxy.proc)
    for (let i = 0; i < 200; i++) { await probes.data(); await probes.route() } // warm both paths
    const samples = { data: [] as number[], route: [] as number[], cas: [] as number[], cache: [] as number[] }
    const polls = { data: 0, route: 0 }
    for (const kind of ['data', 'route'] as const) {
      const probe = probes[kind]
      for (let i = 0; i < o.changes; i++) {
        const next = o.gateways[(epoch + 1) % 2]!.id
        const t0 = performance.now()
        let casDone = 0
        const cas = o.planner.casLocation('prop', 'flip', epoch, { gateway: next }).then(r => { casDone = performance.now(); return r })
        // Poll from the moment the change is sent: the first answer naming the new gateway ends it.
        let seen: string
        do {
          seen = await probe()
          polls[kind]++
        } while (seen !== next)
        const t1 = performance.now()
        const r = await cas
        if (!r.ok) throw new Error(`casLocation refused at epoch ${epoch}`)
        epoch = r.location.epoch
        samples[kind].push(t1 - t0)
        samples.cas.push(casDone - t0)
        await waitFor(() => appliedAt.has(epoch), 'the observer to apply the change')
        samples.cache.push((appliedAt.get(epoch) as number) - t0)
        appliedAt.delete(epoch)
      }
    }
    return {
      proxyMs: distribution(samples.data),
      routeMs: distribution(samples.route),
      casMs: distribution(samples.cas),
      cacheMs: distribution(samples.cache),
      changes: o.changes,
      pollsPerChange: { data: round3(polls.data / o.changes), route: round3(polls.route / o.changes) }
    }
  } finally {
    await data.close()
    await admin.close()
    observer.close()
    await observerStore.close()
    await o.procs.stop(proxy.proc)
  }
}

function distribution (xs: number[]): Distribution {
  const s = Float64Array.from(xs).sort()
  return {
    p50: round3(percentile(s, 50)),
    p90: round3(percentile(s, 90)),
    p99: round3(percentile(s, 99)),
    max: round3(s[s.length - 1] ?? NaN),
    mean: round3(xs.reduce((a, b) => a + b, 0) / xs.length)
  }
}

// ─────────────────────────────────────────── proxies ───────────────────────────────────────────

interface RunningProxy {
  name: string
  proc: Proc
  url: string
  adminUrl: string
  /** The volume its blocks are written under (one per proxy, so the stores never overlap). */
  volume: string
}

async function startProxy (procs: Procs, tmp: string, name: string, gateways: Array<{ id: string, url: string }>, state: Record<string, unknown>): Promise<RunningProxy> {
  const port = await freePort()
  const adminPort = await freePort()
  const file = path.join(tmp, `ferry-${name}.yaml`)
  fs.writeFileSync(file, stringify({
    log: { level: 'warn' },
    gateways: gateways.map(g => ({ id: g.id, url: g.url, site: 'bench' })),
    proxy: { listen: { host: '127.0.0.1', port } },
    admin: { listen: { host: '127.0.0.1', port: adminPort } },
    state
  }))
  const proc = procs.start(`ferry-${name}`, process.execPath, [FERRY_JS, 'start', '--config', file, '--roles', 'proxy'])
  const adminUrl = `http://127.0.0.1:${adminPort}`
  await waitFor(async () => {
    const r = await request(`${adminUrl}/readyz`)
    const body = await r.body.json() as { status?: string }
    return r.statusCode === 200 && body.status === 'ready'
  }, `ferry (${name}) to be ready`, proc)
  return { name, proc, url: `http://127.0.0.1:${port}`, adminUrl, volume: name === 'memory' ? 'mem' : name }
}

const blockPath = (volume: string, i: number): string => `/${volume}/g${String(i).padStart(5, '0')}`

/** A first write of every block through the proxy: each records the block's location (a claim). */
async function populate (url: string, volume: string, blocks: number, from = 0): Promise<void> {
  const pool = new Pool(url, { connections: 8 })
  const body = Buffer.alloc(BLOCK_BYTES, 0x61)
  try {
    for (let i = from; i < blocks; i += 8) {
      await Promise.all(Array.from({ length: Math.min(8, blocks - i) }, async (_, k) => {
        const r = await pool.request({ method: 'PUT', path: blockPath(volume, i + k), body })
        await r.body.dump()
        if (r.statusCode !== 201 && r.statusCode !== 204) throw new Error(`populate ${blockPath(volume, i + k)}: ${r.statusCode}`)
      }))
    }
  } finally {
    await pool.close()
  }
}

/** Every block is placed (has a cached location), so the GETs measure cached routes. */
async function checkPlaced (adminUrl: string, volume: string, blocks: number): Promise<void> {
  for (const i of [0, Math.floor(blocks / 2), blocks - 1]) {
    const r = await request(`${adminUrl}/v1/blocks${blockPath(volume, i)}`)
    const body = await r.body.json() as { location?: { placed?: boolean } }
    if (body.location?.placed !== true) throw new Error(`${blockPath(volume, i)} is not placed: ${JSON.stringify(body)}`)
  }
}

// ─────────────────────────────────────────── load ───────────────────────────────────────────

async function runLoad (procs: Procs, kind: 'wrk' | 'node', tmp: string, p: RunningProxy, blocks: number, seconds: number, connections: number, threads: number): Promise<LoadResult> {
  let cmd: string
  let argv: string[]
  if (kind === 'wrk') {
    const script = path.join(tmp, `wrk-${p.volume}-${blocks}.lua`)
    if (!fs.existsSync(script)) fs.writeFileSync(script, wrkScript(p.volume, blocks))
    cmd = 'wrk'
    argv = ['-t', String(threads), '-c', String(connections), '-d', `${Math.max(1, Math.round(seconds))}s`, '--timeout', '10s', '-s', script, p.url]
  } else {
    const script = path.join(tmp, 'loadgen.mjs')
    if (!fs.existsSync(script)) fs.writeFileSync(script, NODE_LOADGEN)
    cmd = process.execPath
    argv = [script, p.url, p.volume, String(blocks), String(seconds), String(connections), path.join(ROOT, 'node_modules', 'undici', 'index.js')]
  }
  const { code, stdout, stderr } = await procs.runToEnd(cmd, argv, (seconds + 30) * 1000)
  const line = stdout.split('\n').find(l => l.startsWith(RESULT_MARKER))
  if (code !== 0 || line === undefined) throw new Error(`load generator failed (exit ${String(code)}): ${cmd} ${argv.join(' ')}\n${stdout}\n${stderr}`)
  return JSON.parse(line.slice(RESULT_MARKER.length)) as LoadResult
}

/** Requests formatted once per thread and cycled over; `done` prints one JSON result line. */
function wrkScript (volume: string, blocks: number): string {
  return `-- generated by bench/state.ts
local n = ${blocks}
local reqs = {}
local i = 0
local threads = 0
function setup(thread)
  thread:set("offset", threads * 97)
  threads = threads + 1
end
function init(args)
  i = (offset or 0) % n
  for k = 0, n - 1 do
    reqs[k + 1] = wrk.format("GET", string.format("/${volume}/g%05d", k))
  end
end
function request()
  i = i % n + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('${RESULT_MARKER}{"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latencyUs":{"p50":%.1f,"p99":%.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`
}

/** The fallback load generator: closed loop, one request in flight per connection. */
const NODE_LOADGEN = `
const [url, volume, blocks, seconds, connections, undiciPath] = process.argv.slice(2)
const { Pool } = await import(undiciPath)
const pool = new Pool(url, { connections: Number(connections), pipelining: 1 })
const n = Number(blocks)
const lat = []
const errors = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 }
let requests = 0
const start = performance.now()
const end = start + Number(seconds) * 1000
await Promise.all(Array.from({ length: Number(connections) }, async (_, c) => {
  for (let i = c * 97; performance.now() < end; i++) {
    const t0 = performance.now()
    try {
      const r = await pool.request({ method: 'GET', path: '/' + volume + '/g' + String(i % n).padStart(5, '0') })
      await r.body.dump()
      if (r.statusCode !== 200) errors.status++
    } catch { errors.read++ }
    lat.push(performance.now() - t0)
    requests++
  }
}))
const durationUs = Math.round((performance.now() - start) * 1000)
await pool.close()
lat.sort((a, b) => a - b)
const pct = p => (lat[Math.min(lat.length - 1, Math.ceil(p / 100 * lat.length) - 1)] ?? 0) * 1000
process.stdout.write('${RESULT_MARKER}' + JSON.stringify({ requests, durationUs, errors, latencyUs: { p50: pct(50), p99: pct(99) } }) + '\\n')
`

// ─────────────────────────────────────────── redis ───────────────────────────────────────────

/** INFO over a raw socket (no client library to count or to skew). */
async function redisInfo (port: number, section: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1')
    let buf = ''
    sock.setEncoding('latin1')
    sock.setTimeout(2000, () => { sock.destroy(); reject(new Error('INFO timed out')) })
    sock.on('error', reject)
    sock.on('connect', () => sock.write(`INFO ${section}\r\n`))
    sock.on('data', (d: string) => {
      buf += d
      const m = /^\$(\d+)\r\n/.exec(buf)
      if (m !== null && buf.length >= m[0].length + Number(m[1]) + 2) {
        sock.end()
        resolve(buf.slice(m[0].length, m[0].length + Number(m[1])))
      }
    })
  })
}

async function commandStats (port: number): Promise<Map<string, number>> {
  const text = await redisInfo(port, 'commandstats')
  const out = new Map<string, number>()
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1] as string, Number(m[2]))
  return out
}

function diffStats (a: Map<string, number>, b: Map<string, number>): { client: number, script: number, byCommand: Record<string, number> } {
  let client = 0
  let script = 0
  const byCommand: Record<string, number> = {}
  for (const [cmd, calls] of b) {
    const d = calls - (a.get(cmd) ?? 0)
    if (d <= 0 || BENCH_COMMANDS.has(cmd)) continue
    byCommand[cmd] = d
    if (CLIENT_COMMANDS.has(cmd)) client += d
    else script += d
  }
  return { client, script, byCommand }
}

// ─────────────────────────────────────────── processes ───────────────────────────────────────────

function which (bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, bin)
    try { fs.accessSync(p, fs.constants.X_OK); return p } catch { /* next */ }
  }
  return undefined
}

function wrkVersion (): string {
  try {
    return /wrk (\S+)/.exec(execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))?.[1] ?? 'unknown'
  } catch (err) {
    // `wrk -v` exits 1 after printing its version.
    const out = String((err as { stdout?: unknown }).stdout ?? '')
    return /wrk (\S+)/.exec(out)?.[1] ?? 'unknown'
  }
}

function source (): { commit: string, dirty: string[] } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'proxy', 'state', 'bin', 'config', 'lib', 'gateway'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n').filter(l => l !== '').map(l => l.slice(3))
    return { commit, dirty }
  } catch {
    return { commit: 'unknown', dirty: [] }
  }
}

function isWritableDir (dir: string): boolean {
  try { fs.accessSync(dir, fs.constants.W_OK); return fs.statSync(dir).isDirectory() } catch { return false }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : round3(((s[m - 1] as number) + (s[m] as number)) / 2)
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000
const round4 = (x: number): number => Math.round(x * 10000) / 10000
const fmt = (x: number): string => x.toFixed(x < 10 ? 2 : 1)
