/**
 * `npm run bench -- planner [options]`: the planner's figures from issue 5, in one run.
 *
 * 1. Reroute latency: from the location flip (the migration engine's casLocation resolving) to
 *    the first response served by the target, as a client reading the block through a proxy
 *    sees it. The client keeps `--probes` GETs of the block in flight through the proxy during
 *    the whole migration; each gateway sits behind a tiny in-process tap that tags its responses
 *    with `x-bench-gateway`, so the client knows which gateway answered. Two set-ups:
 *      same process    proxy and planner in this process on one memory store;
 *      across processes `ferry start --roles proxy` in a child process on a private Redis, the
 *                      planner in this process on the same Redis (the flip travels through
 *                      Redis pub/sub to the proxy's LocationCache).
 *    Gateways are `ferry gateway` child processes on /dev/shm in both. Reported: p50/p99/max
 *    over `--flips` migrations each.
 * 2. Copy throughput: the same blocks copied between the same two gateways (direct, no tap) by
 *    (a) a raw undici pipe — GET from one gateway streamed into a PUT to the other — and (b)
 *    the migration engine, one migration at a time, timed from submission to the flip (so the
 *    copy with hashing, metering and verification plus every compare-and-set, the cut-over
 *    checks and `settleMs`, set to 10 ms here). Rounds alternate the order (ABBA); the ratio is
 *    judged on the median over rounds. Target: engine ≥ 0.8 × raw.
 * 3. Planner scale: bench/planner-scale.ts's `runScale()` figures, when that module is built.
 *
 * Options:
 *   --flips N          migrations timed per reroute set-up (default 300)
 *   --probes N         GETs in flight through the proxy during each migration (default 4)
 *   --copy-blocks N    blocks per copy phase (default 6)
 *   --copy-mib N       size of each block in MiB (default 32)
 *   --rounds N         copy rounds (default 4; even balances the ABBA order)
 *   --skip-redis       only the same-process reroute set-up
 *   --skip-scale       do not run planner-scale
 *   --no-write         do not write bench/results/planner.json
 */
import fs from 'node:fs'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { Pool, request } from 'undici'
import { stringify } from 'yaml'
import { configSchema } from '../config/schema.js'
import { silentLogger } from '../lib/log.js'
import type { MigrationConfigInput, PlannerConfigInput } from '../planner/config.js'
import type { FlipEvent } from '../planner/migration/engine.js'
import { Planner } from '../planner/planner.js'
import { ProxyServer } from '../proxy/server.js'
import { createStore, waitForReady } from '../state/factory.js'
import type { StateStore } from '../state/types.js'
import { percentile, ratio, writeResult } from './lib.js'
import { freePort, positiveInt, Procs, waitFor, type Proc } from './procs.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const FERRY_JS = path.resolve(here, '..', 'bin', 'ferry.js')
const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server'
const PREFIX = 'benchplanner:'
const COPY_TARGET = 0.8
const SITE = 'bench'

interface Gw { id: string, url: string, proc: Proc }
interface Stats { n: number, p50: number, p99: number, max: number, mean: number }

export default async function run (args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      flips: { type: 'string', default: '300' },
      probes: { type: 'string', default: '4' },
      'copy-blocks': { type: 'string', default: '6' },
      'copy-mib': { type: 'string', default: '32' },
      rounds: { type: 'string', default: '4' },
      'skip-redis': { type: 'boolean', default: false },
      'skip-scale': { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false }
    }
  })
  const flips = positiveInt('--flips', values.flips)
  const probes = positiveInt('--probes', values.probes)
  const copyBlocks = positiveInt('--copy-blocks', values['copy-blocks'])
  const copyMiB = positiveInt('--copy-mib', values['copy-mib'])
  const rounds = positiveInt('--rounds', values.rounds)
  if (!fs.existsSync(FERRY_JS)) throw new Error(`${FERRY_JS} is missing: npm run build (npm run bench does it)`)

  const tmp = fs.mkdtempSync(path.join(isWritableDir('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'ferry-bench-planner-'))
  const procs = new Procs()
  const closers: Array<() => Promise<unknown>> = []
  const onSignal = (): void => { void procs.stopAll().finally(() => { fs.rmSync(tmp, { recursive: true, force: true }); process.exit(130) }) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const notes: string[] = []
  try {
    const gateways: Gw[] = []
    for (const id of ['gwA', 'gwB']) gateways.push(await startGateway(procs, tmp, id))

    // ── 1. reroute latency ──
    console.log(`reroute latency: ${flips} migrations per set-up, ${probes} GETs in flight through the proxy`)
    const taps = await Promise.all(gateways.map(g => Tap.start(g.id, g.url)))
    closers.push(async () => { for (const t of taps) await t.close() })
    const tapped = taps.map(t => ({ id: t.id, url: t.url }))

    const memStore = createStore({})
    const memProxy = new ProxyServer({ config: fleetConfig(tapped, await freePort(), await freePort(), {}), store: memStore, logger: silentLogger })
    await memProxy.listen()
    const memPlanner = startPlanner(tapped, memStore, { settleMs: 5 })
    await memPlanner.start()
    const sameProcess = await measureReroute(memPlanner, `http://127.0.0.1:${memProxy.address.port}`, 'mem', flips, probes, taps, undefined, memProxy)
    report('same process', sameProcess)
    await memPlanner.stop()
    await memProxy.close()
    await memStore.close()

    let acrossProcesses: Reroute | null = null
    let redisVersion: string | null = null
    if (!values['skip-redis']) {
      const redisPort = await freePort()
      const redis = procs.start('redis', REDIS_SERVER, ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', tmp, '--save', '', '--appendonly', 'no',
        '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning'])
      const redisUrl = `redis://127.0.0.1:${redisPort}`
      await waitFor(() => ping(redisPort), 'redis-server', redis)
      redisVersion = (await redisInfo(redisPort)).match(/redis_version:(\S+)/)?.[1] ?? 'unknown'
      const state = { backend: 'redis', url: redisUrl, keyPrefix: PREFIX }
      const proxyPort = await freePort()
      const adminPort = await freePort()
      const file = path.join(tmp, 'ferry-proxy.yaml')
      fs.writeFileSync(file, stringify(fleetYaml(tapped, proxyPort, adminPort, state)))
      const proxy = procs.start('ferry-proxy', process.execPath, [FERRY_JS, 'start', '--config', file, '--roles', 'proxy'])
      // On Redis `proxy.workers` is one per core: every worker must be up, which on a loaded
      // machine took longer than the default 20 s.
      await waitFor(async () => (await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode === 200, 'the proxy to be ready', proxy, 90_000)
      const store = createStore(state as Parameters<typeof createStore>[0])
      closers.push(() => store.close())
      if (!await waitForReady(store, 10_000)) throw new Error('the planner\'s Redis store did not connect')
      // Settle ≥ the notification delay: pub/sub to another process, a millisecond or two.
      const planner = startPlanner(tapped, store, { settleMs: 25 })
      await planner.start()
      acrossProcesses = await measureReroute(planner, `http://127.0.0.1:${proxyPort}`, 'redis', flips, probes, taps, proxy)
      report(`across processes (Redis ${redisVersion})`, acrossProcesses)
      await planner.stop()
      await procs.stop(proxy)
    }

    // ── 2. copy throughput ──
    console.log(`copy throughput: ${copyBlocks} × ${copyMiB} MiB per phase, ${rounds} rounds, raw undici pipe vs migration engine`)
    const copy = await measureCopy(gateways, copyBlocks, copyMiB * 1024 * 1024, rounds)
    console.log(`  raw pipe ${mbps(copy.rawBytesPerSec)} MB/s, migrations ${mbps(copy.engineBytesPerSec)} MB/s: ratio median ${copy.medianRatio} (pooled ${copy.pooledRatio}); target ≥ ${COPY_TARGET} ${copy.medianRatio >= COPY_TARGET ? 'met' : 'NOT met'}`)

    // ── 3. planner scale (another module, when present) ──
    let scale: Record<string, unknown> | null = null
    const scaleJs = path.join(here, 'planner-scale.js')
    if (values['skip-scale']) {
      notes.push('planner scale: skipped (--skip-scale)')
    } else if (fs.existsSync(scaleJs)) {
      const mod = await import(pathToFileURL(scaleJs).href) as { runScale?: (opts: Record<string, unknown>) => Promise<Record<string, unknown>> }
      if (typeof mod.runScale !== 'function') throw new Error('bench/planner-scale.js does not export runScale()')
      console.log('planner scale (bench/planner-scale.ts):')
      scale = await mod.runScale({})
      console.log(`  ${JSON.stringify(scale)}`)
    } else {
      notes.push('planner scale: bench/planner-scale.ts is not built in this tree; its figures are missing from this run')
      console.log('planner scale: bench/planner-scale.js not found — skipped')
    }

    if (!values['no-write']) {
      const file = writeResult('planner', {
        command: `npm run bench -- planner ${args.join(' ')}`.trim(),
        reroute: {
          definition: 'served: ms from the flip (casLocation resolved in the planner) to the first response from the target at a client reading through the proxy; routed: to the target receiving its first request for the block',
          sameProcess: { ...sameProcess, store: 'memory' },
          acrossProcesses: acrossProcesses === null ? null : { ...acrossProcesses, store: `redis ${redisVersion}` },
          probesInFlight: probes
        },
        copy: {
          blockBytes: copyMiB * 1024 * 1024,
          blocksPerPhase: copyBlocks,
          rounds,
          rawBytesPerSec: Math.round(copy.rawBytesPerSec),
          engineBytesPerSec: Math.round(copy.engineBytesPerSec),
          ratios: copy.ratios,
          medianRatio: copy.medianRatio,
          pooledRatio: copy.pooledRatio,
          target: COPY_TARGET,
          met: copy.medianRatio >= COPY_TARGET,
          engineSettings: 'concurrency 1, settleMs 10, no bandwidth limit; timed from submission to the flip'
        },
        scale,
        notes
      })
      console.log(`wrote ${file}`)
    }
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {})
    await procs.stopAll()
    fs.rmSync(tmp, { recursive: true, force: true })
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

// ───────────────────────────── reroute ─────────────────────────────

function plannerSection (migration: MigrationConfigInput): PlannerConfigInput {
  return {
    holder: `bench-${process.pid}`,
    lease: { ttlMs: 5000, renewIntervalMs: 1000 },
    rebalancer: { enabled: false },
    migration: { concurrency: 1, gracePeriodMs: 500, cutoverTimeoutMs: 2000, progressIntervalMs: 10_000, ...migration }
  }
}

function startPlanner (gateways: Array<{ id: string, url: string }>, store: StateStore, migration: MigrationConfigInput): Planner {
  return new Planner({
    config: { gateways: gateways.map(g => ({ id: g.id, url: g.url, kind: 'ferry' as const, site: SITE, capacityBytes: 0 })), sites: [{ name: SITE, subnets: ['127.0.0.0/8'], edges: [] }], planner: plannerSection(migration) },
    store,
    logger: silentLogger
  })
}

/** Blocks the reroute set-ups cycle over: a block's cleanup (after the grace period) overlaps the next blocks' migrations. */
const REROUTE_BLOCKS = 16

interface Reroute {
  served: Stats
  routed: Stats
  /**
   * Where the routed time goes (same process only, where the proxy's location cache can be
   * watched): flip → the proxy's cache holds the new set (`applied`, negative when the
   * notification arrived before the planner's flip event), then → the target receives the first
   * request (`waited`: a probe's response must come back and the client send the next GET).
   */
  applied: Stats | null
  waited: Stats | null
  /**
   * The first GET of the block that entered the proxy after its cache applied the flip → the
   * target receiving it: the proxy's own part of the reroute (same process only).
   */
  proxied: Stats | null
  /** Each probe GET's round trip through the proxy during the migrations: what `waited` is made of. */
  probeRtt: Stats
  /** This process's event-loop delay during the set-up (monitorEventLoopDelay, ms). */
  loopDelay: { p50: number, p99: number, max: number }
  /** Major GCs of this process during the set-up (proxy, planner, taps and client share it in the same-process set-up). */
  majorGcs: number
}

/**
 * `flips` migrations of 4 KiB blocks, each with `probes` GETs of the block in flight through the
 * proxy; per migration, the time from the flip to the first response from the target (served)
 * and to the target's tap receiving its first request for the block (routed).
 */
async function measureReroute (planner: Planner, proxyUrl: string, volume: string, flips: number, probes: number, taps: Tap[], proc?: Proc, proxy?: ProxyServer): Promise<Reroute> {
  const proxyCache = proxy?.sync?.cache
  await waitFor(() => planner.engine.isActive, 'the planner to lead')
  const loop = monitorEventLoopDelay({ resolution: 1 })
  let majorGcs = 0
  const gcs = new PerformanceObserver(list => { for (const e of list.getEntries()) if (((e as { detail?: { kind?: number } }).detail)?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) majorGcs++ })
  const pool = new Pool(proxyUrl, { connections: probes + 2 })
  const blocks = Array.from({ length: REROUTE_BLOCKS }, (_, i) => `r${i}`)
  for (const block of blocks) {
    const first = await pool.request({ method: 'PUT', path: `/${volume}/${block}`, body: Buffer.alloc(4096, 0x62) })
    await first.body.dump()
    if (first.statusCode !== 201 && first.statusCode !== 204) throw new Error(`first write: ${first.statusCode}`)
  }
  await waitFor(() => blocks.every(b => planner.locations.get(volume, b) != null), 'the blocks\' locations')
  const served: number[] = []
  const routed: number[] = []
  const applied: number[] = []
  const waited: number[] = []
  const rtts: number[] = []
  const proxied: number[] = []
  let watchEntry: { path: string, after: () => number, at: number } | undefined
  // Added after the proxy's own listener: it runs once the proxy has dispatched the request.
  const onEntry = (req: IncomingMessage): void => {
    if (watchEntry !== undefined && watchEntry.at < 0 && req.url === watchEntry.path && watchEntry.after() >= 0) watchEntry.at = entryAt
  }
  let entryAt = 0
  const onEntryFirst = (): void => { entryAt = performance.now() }
  proxy?.server.prependListener('request', onEntryFirst)
  proxy?.server.on('request', onEntry)
  const lastId = new Map<string, string>()
  loop.enable()
  gcs.observe({ entryTypes: ['gc'] })
  try {
    for (let i = 0; i < flips; i++) {
      proc?.assertAlive()
      const block = blocks[i % blocks.length] as string
      const prev = lastId.get(block)
      // A block moves again only once its previous migration has settled (cleanup included).
      if (prev !== undefined) await waitFor(async () => (await planner.store.getMigration(prev))?.result != null, `migration of ${block} to end`, proc)
      const loc = await waitForValue(() => { const l = planner.locations.get(volume, block); return l?.phase === 'stable' ? l : undefined }, `${block} to be stable`, proc)
      const to = loc.gateway === 'gwA' ? 'gwB' : 'gwA'
      const tap = taps.find(t => t.id === to) as Tap
      let flipAt = -1
      let servedAt = -1
      let probing = true
      let appliedAt = -1
      const onFlip = (e: FlipEvent): void => { if (e.block === block) { flipAt = e.at; tap.watch(`/${volume}/${block}`) } }
      planner.engine.on('flip', onFlip)
      // The proxy's cache holds a set without the source: reads go to the target from then on.
      const offApplied = proxyCache?.onChange(c => {
        if (c.volume === volume && c.block === block && c.location !== null && !c.location.inSync.includes(loc.gateway)) appliedAt = performance.now()
      })
      watchEntry = proxy === undefined ? undefined : { path: `/${volume}/${block}`, after: () => appliedAt, at: -1 }
      const deadline = performance.now() + 10_000
      const loops = Array.from({ length: probes }, async () => {
        while (probing) {
          if (performance.now() > deadline) { probing = false; throw new Error(`migration ${i}: no response from ${to} within 10 s of its start`) }
          const sent = performance.now()
          const res = await pool.request({ method: 'GET', path: `/${volume}/${block}` })
          await res.body.dump()
          const at = performance.now()
          rtts.push(at - sent)
          if (res.statusCode !== 200) { probing = false; throw new Error(`GET during migration ${i}: ${res.statusCode}`) }
          if (flipAt >= 0 && servedAt < 0 && res.headers['x-bench-gateway'] === to) { servedAt = at; probing = false }
        }
      })
      const { migrations } = await planner.move({ volume, block, to, reason: 'bench' })
      lastId.set(block, (migrations[0] as { id: string }).id)
      await Promise.all(loops)
      planner.engine.off('flip', onFlip)
      offApplied?.()
      served.push(servedAt - flipAt)
      routed.push(tap.firstArrival - flipAt)
      if (appliedAt >= 0) { applied.push(appliedAt - flipAt); waited.push(tap.firstArrival - appliedAt) }
      if (watchEntry !== undefined && watchEntry.at >= 0) proxied.push(tap.firstArrival - watchEntry.at)
    }
  } finally {
    loop.disable()
    gcs.disconnect()
    proxy?.server.off('request', onEntryFirst)
    proxy?.server.off('request', onEntry)
    await pool.close()
  }
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100
  return {
    served: stats(served),
    routed: stats(routed),
    applied: applied.length === 0 ? null : stats(applied),
    waited: waited.length === 0 ? null : stats(waited),
    proxied: proxied.length === 0 ? null : stats(proxied),
    probeRtt: stats(rtts),
    loopDelay: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) },
    majorGcs
  }
}

/**
 * A transparent forwarder in front of a gateway that tags every response with the gateway's id,
 * so a client reading through the proxy can tell which gateway answered.
 */
class Tap {
  url = ''
  /** performance.now() when the watched path was first requested (GET) since watch(). */
  firstArrival = -1
  private watching: string | null = null
  private readonly pool: Pool
  private readonly server: http.Server

  private constructor (readonly id: string, upstream: string) {
    this.pool = new Pool(upstream, { connections: 32 })
    this.server = http.createServer((req, res) => {
      if (this.watching !== null && req.method === 'GET' && req.url === this.watching) {
        this.firstArrival = performance.now()
        this.watching = null
      }
      void forward(this.pool, id, req, res)
    })
    this.server.keepAliveTimeout = 10_000
  }

  static async start (id: string, upstream: string): Promise<Tap> {
    const tap = new Tap(id, upstream)
    await new Promise<void>(resolve => tap.server.listen(0, '127.0.0.1', resolve))
    tap.url = `http://127.0.0.1:${(tap.server.address() as net.AddressInfo).port}`
    return tap
  }

  watch (path: string): void {
    this.watching = path
    this.firstArrival = -1
  }

  async close (): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => { resolve() }))
    await this.pool.close()
  }
}

async function forward (pool: Pool, id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const hasBody = req.method === 'PUT'
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'connection' && k !== 'host' && k !== 'keep-alive') headers[k] = v
    const up = await pool.request({ method: req.method as 'GET', path: req.url as string, headers, body: hasBody ? req : null })
    const out: Record<string, string | string[]> = { 'x-bench-gateway': id }
    for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') out[k] = v
    res.writeHead(up.statusCode, out)
    await pipeline(up.body, res)
  } catch {
    if (!res.headersSent) res.writeHead(502)
    res.destroy()
  }
}

// ───────────────────────────── copy throughput ─────────────────────────────

interface CopyResult {
  rawBytesPerSec: number
  engineBytesPerSec: number
  ratios: number[]
  medianRatio: number
  pooledRatio: number
}

async function measureCopy (gateways: Gw[], blocks: number, bytes: number, rounds: number): Promise<CopyResult> {
  const [a, b] = gateways as [Gw, Gw]
  const pools = { gwA: new Pool(a.url, { connections: 4 }), gwB: new Pool(b.url, { connections: 4 }) } as Record<string, Pool>
  const store = createStore({})
  const planner = startPlanner(gateways, store, { settleMs: 10, gracePeriodMs: 0, copyTimeoutMs: 600_000 })
  await planner.start()
  try {
    await waitFor(() => planner.engine.isActive, 'the planner to lead')
    // Source blocks on gwA, located there; raw copies go to other names so the two never meet.
    const body = Buffer.alloc(bytes)
    for (let i = 0; i < body.length; i += 4096) body.writeUInt32LE((i * 2654435761) >>> 0, i)
    for (let i = 0; i < blocks; i++) {
      body.writeUInt32LE(i, 0)
      const r = await pools.gwA!.request({ method: 'PUT', path: `/copy/m${i}`, body })
      await r.body.dump()
      if (r.statusCode !== 201 && r.statusCode !== 204) throw new Error(`seed block ${i}: ${r.statusCode}`)
      const rr = await pools.gwA!.request({ method: 'PUT', path: `/copy/r${i}`, body })
      await rr.body.dump()
      await store.casLocation('copy', `m${i}`, 0, { gateway: 'gwA' })
    }
    let rawBytes = 0
    let rawSec = 0
    let engBytes = 0
    let engSec = 0
    const ratios: number[] = []
    let rawAt = 'gwA'
    // Warm-up (JIT, connections): one of each, not counted.
    await rawPhase(pools, 1, rawAt, rawAt === 'gwA' ? 'gwB' : 'gwA')
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ['raw', 'engine'] : ['engine', 'raw']
      let r = 0
      let e = 0
      for (const which of order) {
        if (which === 'raw') {
          const to = rawAt === 'gwA' ? 'gwB' : 'gwA'
          const s = await rawPhase(pools, blocks, rawAt, to)
          rawAt = to
          rawBytes += blocks * bytes
          rawSec += s
          r = (blocks * bytes) / s
        } else {
          const s = await enginePhase(planner, blocks)
          engBytes += blocks * bytes
          engSec += s
          e = (blocks * bytes) / s
        }
      }
      ratios.push(ratio(e, r))
      console.log(`  round ${round + 1}: raw ${mbps(r)} MB/s, engine ${mbps(e)} MB/s, ratio ${ratio(e, r)}`)
    }
    const sorted = [...ratios].sort((x, y) => x - y)
    const mid = sorted.length / 2
    const median = sorted.length % 2 === 1 ? sorted[Math.floor(mid)] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
    return {
      rawBytesPerSec: rawBytes / rawSec,
      engineBytesPerSec: engBytes / engSec,
      ratios,
      medianRatio: Math.round(median * 1000) / 1000,
      pooledRatio: ratio(engBytes / engSec, rawBytes / rawSec)
    }
  } finally {
    await planner.stop()
    await store.close()
    for (const p of Object.values(pools)) await p.close()
  }
}

/** The baseline: GET streamed straight into a PUT, one block at a time. Returns seconds. */
async function rawPhase (pools: Record<string, Pool>, blocks: number, from: string, to: string): Promise<number> {
  const t0 = performance.now()
  for (let i = 0; i < blocks; i++) {
    const src = await pools[from]!.request({ method: 'GET', path: `/copy/r${i}` })
    if (src.statusCode !== 200) throw new Error(`raw GET r${i} from ${from}: ${src.statusCode}`)
    const dst = await pools[to]!.request({ method: 'PUT', path: `/copy/r${i}`, body: src.body, headers: { 'content-length': String(src.headers['content-length']) } })
    await dst.body.dump()
    if (dst.statusCode !== 201 && dst.statusCode !== 204) throw new Error(`raw PUT r${i} to ${to}: ${dst.statusCode}`)
  }
  return (performance.now() - t0) / 1000
}

/** Every block migrated to the other gateway, one migration at a time, timed to each flip. Returns seconds. */
async function enginePhase (planner: Planner, blocks: number): Promise<number> {
  let total = 0
  for (let i = 0; i < blocks; i++) {
    const loc = await planner.store.getLocation('copy', `m${i}`)
    if (loc === null) throw new Error(`m${i} has no location`)
    const to = loc.gateway === 'gwA' ? 'gwB' : 'gwA'
    const flipped = new Promise<number>(resolve => {
      const on = (e: FlipEvent): void => { if (e.block === `m${i}`) { planner.engine.off('flip', on); resolve(e.at) } }
      planner.engine.on('flip', on)
    })
    const t0 = performance.now()
    const { migrations } = await planner.move({ volume: 'copy', block: `m${i}`, to, reason: 'bench' })
    total += (await flipped) - t0
    const id = (migrations[0] as { id: string }).id
    await waitFor(async () => (await planner.store.getMigration(id))?.result === 'ok', `copy migration of m${i}`, undefined, 600_000)
  }
  return total / 1000
}

// ───────────────────────────── processes and helpers ─────────────────────────────

function fleetConfig (gateways: Array<{ id: string, url: string }>, port: number, adminPort: number, state: Record<string, unknown>): ReturnType<typeof configSchema.parse> {
  return configSchema.parse(fleetYaml(gateways, port, adminPort, state))
}

function fleetYaml (gateways: Array<{ id: string, url: string }>, port: number, adminPort: number, state: Record<string, unknown>): Record<string, unknown> {
  return {
    log: { level: 'warn' },
    sites: [{ name: SITE, subnets: ['127.0.0.0/8'] }],
    gateways: gateways.map(g => ({ id: g.id, url: g.url, site: SITE })),
    proxy: { listen: { host: '127.0.0.1', port } },
    admin: { listen: { host: '127.0.0.1', port: adminPort } },
    state
  }
}

async function startGateway (procs: Procs, tmp: string, id: string): Promise<Gw> {
  const port = await freePort()
  const dir = path.join(tmp, id)
  fs.mkdirSync(dir)
  const proc = procs.start(id, process.execPath, [FERRY_JS, 'gateway', '--dir', dir, '--port', String(port), '--admin-port', '0', '--id', id, '--log-level', 'warn'])
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => (await request(`${url}/healthz`)).statusCode === 200, id, proc)
  return { id, url, proc }
}

async function ping (port: number): Promise<boolean> {
  return (await redisCommand(port, 'PING\r\n')).startsWith('+PONG')
}

async function redisInfo (port: number): Promise<string> {
  return await redisCommand(port, 'INFO server\r\n')
}

/** One raw command over a fresh socket: no client library for the benchmark's own probes. */
async function redisCommand (port: number, command: string): Promise<string> {
  return await new Promise(resolve => {
    const sock = net.connect({ port, host: '127.0.0.1' })
    let buf = ''
    const done = (): void => { sock.destroy(); resolve(buf) }
    sock.setTimeout(1000, done)
    sock.on('error', done)
    sock.on('connect', () => sock.write(command))
    sock.on('data', d => {
      buf += d.toString('latin1')
      // A status reply ends at its first CRLF; a bulk reply ($len) once len bytes are in.
      const m = /^\$(\d+)\r\n/.exec(buf)
      if ((buf.startsWith('+') && buf.includes('\r\n')) || (m !== null && buf.length >= m[0].length + Number(m[1]))) done()
    })
  })
}

function stats (samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b)
  const mean = sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length)
  const r = (x: number): number => Math.round(x * 1000) / 1000
  return { n: sorted.length, p50: r(percentile(sorted, 50)), p99: r(percentile(sorted, 99)), max: r(sorted.at(-1) ?? NaN), mean: r(mean) }
}


function isWritableDir (dir: string): boolean {
  try { fs.accessSync(dir, fs.constants.W_OK); return true } catch { return false }
}

const fmt = (ms: number): string => ms.toFixed(2)

function report (what: string, r: Reroute): void {
  console.log(`  ${what}: served p50 ${fmt(r.served.p50)} ms, p99 ${fmt(r.served.p99)} ms, max ${fmt(r.served.max)} ms; routed p50 ${fmt(r.routed.p50)} ms, p99 ${fmt(r.routed.p99)} ms`)
  if (r.applied !== null && r.waited !== null) {
    console.log(`    routed = flip → proxy cache applied (p50 ${fmt(r.applied.p50)}, p99 ${fmt(r.applied.p99)}, max ${fmt(r.applied.max)} ms)` +
      ` + applied → target's first request (p50 ${fmt(r.waited.p50)}, p99 ${fmt(r.waited.p99)}, max ${fmt(r.waited.max)} ms)`)
    if (r.proxied !== null) console.log(`    first GET entering the proxy after the flip → the target receives it: p50 ${fmt(r.proxied.p50)}, p99 ${fmt(r.proxied.p99)}, max ${fmt(r.proxied.max)} ms (n ${r.proxied.n})`)
  }
  console.log(`    probe GET round trip p50 ${fmt(r.probeRtt.p50)} / p99 ${fmt(r.probeRtt.p99)} ms; this process's event-loop delay p50 ${fmt(r.loopDelay.p50)} / p99 ${fmt(r.loopDelay.p99)} / max ${fmt(r.loopDelay.max)} ms; ${r.majorGcs} major GCs; load ${os.loadavg()[0]?.toFixed(1)}`)
}

async function waitForValue<T> (fn: () => T | undefined, what: string, proc?: Proc): Promise<T> {
  let v: T | undefined
  await waitFor(() => (v = fn()) !== undefined, what, proc)
  return v as T
}
const mbps = (bytesPerSec: number): string => (bytesPerSec / 1e6).toFixed(0)
