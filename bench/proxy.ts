/**
 * `npm run bench -- proxy [options]`: the proxy data plane against its baselines, in one run.
 *
 * Targets, each in its own process so that its CPU time can be read from /proc/<pid>/stat:
 *   direct       the reference gateway itself (no proxy: the floor)
 *   ferry-rec    `ferry start --roles proxy` with recorder.enabled: true
 *   ferry-norec  the same with recorder.enabled: false
 *   http-proxy   a plain `http-proxy` server with a keep-alive agent (the naive Node baseline)
 *   nginx        nginx as a reverse proxy with a keep-alive upstream (skipped when not installed)
 *   ferry-r1/2/3 `ferry start --roles proxy` (recording on) with replication.factor 1, 2, 3 in front
 *                of three gateways of their own (README "Replica sets"): a PUT goes to R of them,
 *                teed from one client body; a GET to one in-sync member. Their GET blocks are
 *                written through each target before the rounds, so each has sets of its R.
 * all but ferry-rN in front of ONE reference gateway process (`ferry gateway`), on loopback, with keep-alive
 * everywhere. Workloads: GET of a 4 KiB block, PUT of a 64 KiB block, GET and PUT of a 1 MiB block
 * (16 distinct blocks; judged in MB per proxy CPU-second, which for a fixed size is the same ratio),
 * cycling over a set of blocks. The load generator is wrk when installed (a Lua script builds the requests), else the
 * undici generator of bench/loadgen.ts, in a child process either way.
 *
 * Each round runs every workload on every target: a warm-up, then a measured phase; even rounds
 * go through the targets in one order, odd rounds in the reverse order (ABBA), so slow drifts in
 * the machine's load fall evenly on each pair that is compared. Per phase: requests/s, latency
 * percentiles (from the load generator), the proxy's and the gateway's CPU-seconds (utime+stime
 * delta, split into user and kernel), the proxy's peak RSS (VmHWM), and for ferry its garbage
 * collections by kind (count and main-thread time, from its admin /metrics). Each ratio is computed per
 * round, from phases that ran back to back, and judged on the median over rounds (the machine is
 * shared, and one disturbed phase must not decide a verdict); the ratio of the pooled sums is
 * reported beside it.
 *
 * Options:
 *   --duration S       measured seconds per phase (default 6)
 *   --warmup S         warm-up seconds before each phase (default 1; at least 3 in the first
 *                      round, which also warms the JIT)
 *   --rounds N         rounds (default 6; an even number balances the ABBA order)
 *   --connections N    concurrent keep-alive connections of the load generator (default 32)
 *   --threads N        wrk threads (default 2)
 *   --targets LIST     comma-separated subset of the targets above (default all)
 *   --workloads LIST   get,put,get1m,put1m (default all)
 *   --blocks N         distinct blocks each workload cycles over (default 256)
 *   --loadgen KIND     auto | wrk | node (default auto: wrk when installed)
 *   --cpu-prof DIR     run ferry-rec under --cpu-prof, keep the profile in DIR and print its top
 *                      self-time functions (figures of that run are inflated by the profiler)
 *   --gateway-dir DIR  where the gateway's temporary block directory goes (default /dev/shm when
 *                      writable, so fsync does not put the disk into every PUT)
 *   --no-write         do not write bench/results/proxy.json (trial runs)
 *   --no-s3            skip the S3 workloads that follow the rounds
 *
 * The S3 workloads (issue 27) follow: `bench/s3.ts` run paired (a SigV4-signed GET of 4 KiB and
 * PUT of 64 KiB against the same workloads on the plain block API, on two identical proxies at
 * the same time, swapped every round), with this run's --rounds and --duration, writing
 * bench/results/s3.json. Signing every request needs the undici generator there (wrk's Lua has no
 * HMAC), so its figures are judged against their own plain baseline, never against the table above.
 */
import { spawnSync, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { parseConfig } from '../config/load.js'
import { blockKey } from '../lib/ids.js'
import { AccessRecorder } from '../proxy/access-recorder.js'
import { ratio, writeResult } from './lib.js'
import runS3 from './s3.js'
import { cpuTimes, freePort, positiveInt, Procs, type Proc } from './procs.js'
import { blockPath, RESULT_MARKER, type LoadgenResult } from './loadgen.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const RUN_JS = path.join(here, 'run.js')
const FERRY_JS = path.resolve(here, '..', 'bin', 'ferry.js')
const NGINX_BIN = '/usr/sbin/nginx'

const ALL_TARGETS = ['direct', 'ferry-rec', 'ferry-norec', 'http-proxy', 'nginx', 'ferry-r1', 'ferry-r2', 'ferry-r3'] as const
/** Targets with a replication factor: ferry (recording on) in front of three gateways of their own. */
const REPLICA_TARGETS: readonly TargetName[] = ['ferry-r1', 'ferry-r2', 'ferry-r3']
const factorOf = (t: TargetName): number => Number(t.slice('ferry-r'.length))
type TargetName = typeof ALL_TARGETS[number]

const WORKLOAD_NAMES = ['get', 'put', 'get1m', 'put1m'] as const
export type WorkloadName = typeof WORKLOAD_NAMES[number]

export interface Workload {
  name: WorkloadName
  label: string
  method: 'GET' | 'PUT'
  bytes: number
  volume: string
  prefix: string
  /** At most this many distinct blocks (1 MiB blocks: wrk keeps every request it cycles over in memory). */
  maxBlocks: number
}

const MiB = 1024 * 1024
export const WORKLOADS: Record<WorkloadName, Workload> = {
  get: { name: 'get', label: 'GET 4 KiB', method: 'GET', bytes: 4096, volume: 'bench', prefix: 'g', maxBlocks: Infinity },
  put: { name: 'put', label: 'PUT 64 KiB', method: 'PUT', bytes: 64 * 1024, volume: 'benchput', prefix: 'p', maxBlocks: Infinity },
  get1m: { name: 'get1m', label: 'GET 1 MiB', method: 'GET', bytes: MiB, volume: 'bench1m', prefix: 'G', maxBlocks: 16 },
  put1m: { name: 'put1m', label: 'PUT 1 MiB', method: 'PUT', bytes: MiB, volume: 'benchput1m', prefix: 'P', maxBlocks: 16 }
}
const GET_WORKLOADS = [WORKLOADS.get, WORKLOADS.get1m]

/** Targets of the ratios (issue 22; issue 20 for R = 2). Per proxy CPU-second; for 1 MiB blocks that is MB per CPU-second. */
const GOALS = {
  ferryVsNginxPerCpu: { get: 0.6, put: 0.4, get1m: 0.6, put1m: 0.6 } as Record<WorkloadName, number>,
  ferryVsHttpProxyPerCpu: 2,
  recordingCostMax: 0.05,
  ferryRssMaxMB: 100,
  /** Issue 20: PUT per proxy CPU-second at R = 2 ÷ at R = 1. */
  putR2VsR1PerCpu: 0.45
}

interface Target {
  name: TargetName
  url: string
  /** ferry targets: the admin listener's port. */
  adminPort?: number
  /** The proxy's process; undefined for `direct`. */
  proc: Proc | undefined
}

interface PhaseFigures {
  round: number
  target: TargetName
  workload: Workload['name']
  requests: number
  seconds: number
  rps: number
  errors: number
  latencyMs: { p50: number, p90: number, p99: number, max: number }
  proxyCpuS: number | null
  /** The kernel's part of proxyCpuS (stime): on loopback it includes TCP work for the peers. */
  proxySysCpuS: number | null
  gatewayCpuS: number
  proxyHwmMB: number | null
  proxyRssMB: number | null
  /**
   * ferry's garbage collections during the phase (its /metrics, nodejs_gc_duration_seconds): on
   * large bodies the dead 64 KiB socket buffers push V8 into major GCs, a cost no profile of
   * ferry's own code shows. null for targets that are not ferry.
   */
  gc: GcFigures | null
  /** The machine's 1-minute load average at the end of the phase: how crowded the 2 cores were. */
  load1: number
}

/** Counts and main-thread seconds by kind of GC, as prom-client's default metrics report them. */
export type GcFigures = Record<GcKind, { count: number, seconds: number }>
type GcKind = 'minor' | 'major' | 'incremental'
const GC_KINDS: readonly GcKind[] = ['minor', 'major', 'incremental']

interface Aggregate {
  target: TargetName
  workload: Workload['name']
  rounds: number
  requests: number
  seconds: number
  rps: number
  errors: number
  /** Median over rounds. */
  p50Ms: number
  p99Ms: number
  proxyCpuSPer1k: number | null
  /** Share of the proxy's CPU time spent in the kernel. */
  proxySysShare: number | null
  requestsPerProxyCpuS: number | null
  /** Body bytes moved per proxy CPU-second, MB (10^6 bytes). */
  mbPerProxyCpuS: number | null
  gatewayCpuSPer1k: number
  proxyPeakRssMB: number | null
  /** ferry's major GCs per 1,000 requests (null: not ferry). */
  majorGcPer1k: number | null
  /** ferry's GC main-thread time (every kind) per request, ms. */
  gcMsPerRequest: number | null
}

export default async function run (args: string[]): Promise<void> {
  if (args[0] === '--serve-http-proxy') return await serveHttpProxy(args.slice(1))
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      duration: { type: 'string', default: '6' },
      warmup: { type: 'string', default: '1' },
      rounds: { type: 'string', default: '6' },
      connections: { type: 'string', default: '32' },
      threads: { type: 'string', default: '2' },
      targets: { type: 'string', default: ALL_TARGETS.join(',') },
      workloads: { type: 'string', default: WORKLOAD_NAMES.join(',') },
      blocks: { type: 'string', default: '256' },
      loadgen: { type: 'string', default: 'auto' },
      'cpu-prof': { type: 'string' },
      'gateway-dir': { type: 'string' },
      'no-write': { type: 'boolean', default: false },
      'no-s3': { type: 'boolean', default: false }
    }
  })
  const duration = positive('--duration', values.duration)
  const warmup = nonNegative('--warmup', values.warmup)
  const rounds = positiveInt('--rounds', values.rounds)
  const connections = positiveInt('--connections', values.connections)
  const threads = Math.min(positiveInt('--threads', values.threads), connections)
  const blocks = positiveInt('--blocks', values.blocks)
  const targetNames = list(values.targets, ALL_TARGETS, '--targets')
  const workloads = list(values.workloads, WORKLOAD_NAMES, '--workloads').map(w => WORKLOADS[w])
  const wrk = which('wrk')
  if (!['auto', 'wrk', 'node'].includes(values.loadgen)) throw new Error(`--loadgen must be auto, wrk or node, got ${values.loadgen}`)
  if (values.loadgen === 'wrk' && wrk === undefined) throw new Error('--loadgen wrk: wrk is not installed')
  const loadgen: 'wrk' | 'node' = values.loadgen === 'node' || wrk === undefined ? 'node' : 'wrk'
  const cpuProfDir = values['cpu-prof'] === undefined ? undefined : path.resolve(values['cpu-prof'])

  const notes: string[] = []
  if (!fs.existsSync(FERRY_JS)) throw new Error(`${FERRY_JS} is missing: run through \`npm run bench -- proxy\` (its prebench builds dist/)`)
  const nginxPresent = isExecutable(NGINX_BIN)
  if (targetNames.includes('nginx') && !nginxPresent) {
    notes.push(`nginx skipped: ${NGINX_BIN} is not installed (apt-get install -y nginx)`)
    targetNames.splice(targetNames.indexOf('nginx'), 1)
  }
  if (loadgen === 'node') notes.push('load generator: the undici generator of bench/loadgen.ts (wrk not used); it competes harder for the CPU than wrk')
  if (cpuProfDir !== undefined) notes.push('ferry-rec ran under --cpu-prof: its figures are inflated by the profiler')

  const env = { ...process.env, FERRY_LOG_LEVEL: 'warn' }
  const procs = new Procs()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-proxy-'))
  const gwBase = values['gateway-dir'] ?? (isWritableDir('/dev/shm') ? '/dev/shm' : os.tmpdir())
  const gwDir = fs.mkdtempSync(path.join(gwBase, 'ferry-bench-gw-'))
  // One cleanup, whoever asks first (the signal handler or the finally below); both await it.
  let cleaning: Promise<void> | undefined
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      await procs.stopAll()
      fs.rmSync(tmp, { recursive: true, force: true })
      fs.rmSync(gwDir, { recursive: true, force: true })
    })()
    return cleaning
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\n${sig}: stopping everything the benchmark started\n`)
    // Registered before the finally's await, so this exit runs first: no stack trace for the
    // load generator that the cleanup killed.
    void cleanup().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const loadStart = os.loadavg()
  // Before anything runs: dist/ was built from this tree by prebench (others edit it meanwhile).
  const source = sourceState()
  const phases: PhaseFigures[] = []
  let profileSummary: ProfileSummary | undefined
  try {
    // The gateway every target forwards to.
    const gwPort = await freePort()
    const gateway = procs.start('gateway', process.execPath, [FERRY_JS, 'gateway', '--dir', gwDir, '--port', String(gwPort), '--admin-port', '0', '--id', 'bench-gw', '--log-level', 'warn', '--max-block-bytes', '16MiB'], env)
    const gwUrl = `http://127.0.0.1:${gwPort}`
    await waitHttp(gateway, `${gwUrl}/healthz`)
    for (const w of GET_WORKLOADS) if (workloads.includes(w)) await preload(gwUrl, w, blocksOf(w, blocks))

    // The replica targets' own three gateways (empty, so each target's store starts without locations).
    const replicaGwUrls: string[] = []
    const replicaGateways: Proc[] = []
    if (targetNames.some(t => REPLICA_TARGETS.includes(t))) {
      for (let i = 1; i <= 3; i++) {
        const port = await freePort()
        const dir = fs.mkdtempSync(path.join(gwDir, `rep${i}-`))
        const g = procs.start(`gateway-r${i}`, process.execPath, [FERRY_JS, 'gateway', '--dir', dir, '--port', String(port), '--admin-port', '0', '--id', `rep-gw${i}`, '--log-level', 'warn', '--max-block-bytes', '16MiB'], env)
        replicaGwUrls.push(`http://127.0.0.1:${port}`)
        replicaGateways.push(g)
        await waitHttp(g, `http://127.0.0.1:${port}/healthz`)
      }
    }
    const targets: Target[] = []
    for (const name of targetNames) {
      targets.push(await startTarget(name, { procs, tmp, env, gwUrl, replicaGwUrls, cpuProfDir }))
    }
    // Every replica target has rebuilt its (empty) locations from the gateways before any of them
    // writes: a target that listed another's blocks would record them as sets of one.
    const replicaTargets = targets.filter(t => REPLICA_TARGETS.includes(t.name))
    for (const t of replicaTargets) await waitHttp(t.proc as Proc, `http://127.0.0.1:${String(t.adminPort)}/readyz`)
    if (replicaTargets.length > 0) await sleep(1000)
    for (const t of replicaTargets) for (const w of GET_WORKLOADS) if (workloads.includes(w)) await preload(t.url, w, blocksOf(w, blocks))
    // Every target must answer the workload's request before anything is measured.
    const probe = GET_WORKLOADS.find(w => workloads.includes(w))
    for (const t of targets) await waitHttp(t.proc ?? gateway, t.url + (probe === undefined ? '/healthz-bench/none' : blockPath(probe.volume, probe.prefix, 0)), 20_000, probe === undefined ? 404 : 200)

    const lg: LoadgenSettings = { procs, kind: loadgen, connections, threads, blocks, tmp }
    const total = rounds * workloads.length * targets.length
    let n = 0
    process.stderr.write(`proxy bench: ${targets.map(t => t.name).join(', ')} × ${workloads.map(w => w.name).join(', ')}, ${rounds} round(s) of ${warmup}+${duration} s, ` +
      `${connections} connections, load generator ${loadgen}; about ${Math.ceil(total * (duration + warmup + 0.5) + (total / rounds) * Math.max(0, 3 - warmup))} s\n`)
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? targets : [...targets].reverse()
      for (const w of workloads) {
        for (const t of order) {
          n++
          const warm = round === 0 ? Math.max(warmup, 3) : warmup
          if (warm > 0) await runLoad(lg, t.url, w, warm)
          // A replica target's gateway figure is its first gateway's (one of the R that store a PUT).
          const f = await measure(round, t, REPLICA_TARGETS.includes(t.name) ? replicaGateways[0] as Proc : gateway, w, duration, lg)
          phases.push(f)
          process.stderr.write(`  [${n}/${total}] round ${round + 1} ${w.label.padEnd(10)} ${t.name.padEnd(11)} ${fmt(f.rps, 0).padStart(7)} req/s  ` +
            `p50 ${fmt(f.latencyMs.p50, 2)} ms  p99 ${fmt(f.latencyMs.p99, 2)} ms` +
            (f.proxyCpuS === null ? '' : `  proxy ${fmt(1000 * f.proxyCpuS / Math.max(1, f.requests), 3)} CPU-s/1k`) +
            (f.gc === null ? '' : `  major GCs ${f.gc.major.count}`) +
            (f.errors > 0 ? `  ERRORS ${f.errors}` : '') + '\n')
        }
      }
    }

    if (cpuProfDir !== undefined) {
      const ferry = targets.find(t => t.name === 'ferry-rec')?.proc
      if (ferry !== undefined) {
        await procs.stop(ferry)
        profileSummary = summariseProfile(cpuProfDir, ferry.child.pid as number)
      }
    }
  } finally {
    await cleanup()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }

  const recorderCost = targetNames.includes('ferry-rec') ? measureRecorder() : undefined
  const aggregates = aggregate(phases)
  const ratios = computeRatios(phases, aggregates, rounds, recorderCost)
  const config = {
    connections, threads, durationS: duration, warmupS: warmup, rounds, blocks, loadgen,
    loadgenVersion: loadgen === 'wrk' ? wrkVersion() : process.version,
    sizes: Object.fromEntries(workloads.map(w => [w.name, { bytes: w.bytes, blocks: blocksOf(w, blocks) }])),
    targets: targetNames, workloads: workloads.map(w => w.name),
    nginx: nginxPresent ? nginxVersion() : null,
    gatewayDir: gwBase,
    source,
    loadAverageStart: loadStart.map(v => Math.round(v * 100) / 100),
    loadAverageEnd: os.loadavg().map(v => Math.round(v * 100) / 100)
  }
  printTable(aggregates, workloads)
  if (recorderCost !== undefined) {
    console.log(`\nAccessRecorder.recordAt in this process: ${fmt(recorderCost.nsPerRecord, 0)} ns per access (${recorderCost.blocks} blocks, ` +
      `deltas drained every ${recorderCost.drainEvery} accesses; CPU time via process.cpuUsage)`)
  }
  printRatios(ratios)
  if (profileSummary !== undefined) printProfile(profileSummary)
  for (const note of notes) console.log(`note: ${note}`)
  if (!values['no-write']) {
    const file = writeResult('proxy', { config, results: aggregates, ratios, phases, recorderCost, notes, ...(profileSummary ? { profile: profileSummary } : {}) })
    console.log(`\nwrote ${path.relative(process.cwd(), file)}`)
  }
  if (!values['no-s3']) {
    console.log('\nS3 workloads (bench/s3.ts, paired):')
    await runS3(['--paired', '--rounds', String(rounds), '--duration', String(Math.max(1, Math.round(duration))), ...(values['no-write'] ? ['--no-write'] : [])])
  }
}

// ---------------------------------------------------------------------------------------------
// Targets

interface StartContext {
  procs: Procs
  tmp: string
  env: NodeJS.ProcessEnv
  gwUrl: string
  /** The replica targets' three gateways. */
  replicaGwUrls: string[]
  cpuProfDir: string | undefined
}

async function startTarget (name: TargetName, ctx: StartContext): Promise<Target> {
  if (name === 'direct') return { name, url: ctx.gwUrl, proc: undefined }
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  if (name === 'ferry-rec' || name === 'ferry-norec') {
    const adminPort = await freePort()
    const yaml = ferryYaml(ctx.gwUrl, port, adminPort, name === 'ferry-rec')
    parseConfig(yaml, `${name}.yaml`) // a schema change shows up here, with file:line:key, not as a dead child
    const file = path.join(ctx.tmp, `${name}.yaml`)
    fs.writeFileSync(file, yaml)
    const prof = name === 'ferry-rec' && ctx.cpuProfDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', ctx.cpuProfDir] : []
    if (prof.length > 0) fs.mkdirSync(ctx.cpuProfDir as string, { recursive: true })
    return { name, url, adminPort, proc: ctx.procs.start(name, process.execPath, [...prof, FERRY_JS, 'start', '--config', file, '--roles', 'proxy'], ctx.env) }
  }
  if (REPLICA_TARGETS.includes(name)) {
    const adminPort = await freePort()
    const yaml = replicaYaml(ctx.replicaGwUrls, port, adminPort, factorOf(name))
    parseConfig(yaml, `${name}.yaml`)
    const file = path.join(ctx.tmp, `${name}.yaml`)
    fs.writeFileSync(file, yaml)
    return { name, url, adminPort, proc: ctx.procs.start(name, process.execPath, [FERRY_JS, 'start', '--config', file, '--roles', 'proxy'], ctx.env) }
  }
  if (name === 'http-proxy') {
    return { name, url, proc: ctx.procs.start(name, process.execPath, [RUN_JS, 'proxy', '--serve-http-proxy', '--port', String(port), '--target', ctx.gwUrl], ctx.env) }
  }
  const prefix = path.join(ctx.tmp, 'nginx')
  fs.mkdirSync(prefix, { recursive: true })
  const conf = path.join(prefix, 'nginx.conf')
  fs.writeFileSync(conf, nginxConf(prefix, port, new URL(ctx.gwUrl).port))
  return { name, url, proc: ctx.procs.start(name, NGINX_BIN, ['-p', prefix + '/', '-c', conf, '-e', path.join(prefix, 'error.log')], ctx.env) }
}

/** A production-shaped ferry config: one site for loopback clients, default timeouts and pools. */
export function ferryYaml (gwUrl: string, port: number, adminPort: number, recording: boolean): string {
  return `# generated by bench/proxy.ts
log:
  level: warn
sites:
  - name: local
    subnets: [127.0.0.0/8]
    edges: [127.0.0.1]
gateways:
  - id: bench-gw
    url: ${gwUrl}
    site: local
proxy:
  listen: { host: 127.0.0.1, port: ${port} }
  shutdownGraceMs: 1000
recorder:
  enabled: ${recording}
admin:
  listen: { host: 127.0.0.1, port: ${adminPort} }
`
}

/** ferry-rec's config, in front of three gateways (one site each) with replication.factor `r`. */
function replicaYaml (gwUrls: string[], port: number, adminPort: number, r: number): string {
  return `# generated by bench/proxy.ts
log:
  level: warn
sites:
  - name: local
    subnets: [127.0.0.0/8]
    edges: [127.0.0.1]
  - name: s2
    subnets: [10.255.2.0/24]
  - name: s3
    subnets: [10.255.3.0/24]
gateways:
${gwUrls.map((u, i) => `  - id: rep-gw${i + 1}\n    url: ${u}\n    site: ${['local', 's2', 's3'][i]}`).join('\n')}
proxy:
  listen: { host: 127.0.0.1, port: ${port} }
  shutdownGraceMs: 1000
recorder:
  enabled: true
admin:
  listen: { host: 127.0.0.1, port: ${adminPort} }
replication:
  factor: ${r}
  minInSync: 1
`
}

/**
 * nginx tuned the way one would run it in front of a block store: one worker (ferry is one
 * process too), keep-alive to clients and to the upstream without a request cap, request bodies
 * streamed (no temp files), no access log.
 */
function nginxConf (prefix: string, port: number, gwPort: string): string {
  const root = process.getuid?.() === 0 ? 'user root;\n' : ''
  return `# generated by bench/proxy.ts
${root}daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  client_max_body_size 16m;
  client_body_buffer_size 128k;
  upstream gateway {
    server 127.0.0.1:${gwPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://gateway;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_request_buffering off;
    }
  }
}
`
}

/** Child mode: `run.js proxy --serve-http-proxy --port P --target URL`. */
async function serveHttpProxy (args: string[]): Promise<void> {
  const { values } = parseArgs({ args, strict: true, options: { port: { type: 'string' }, target: { type: 'string' } } })
  if (values.port === undefined || values.target === undefined) throw new Error('--serve-http-proxy needs --port and --target')
  const { default: httpProxy } = await import('http-proxy')
  const agent = new http.Agent({ keepAlive: true, maxSockets: 128, maxFreeSockets: 128 })
  const proxy = httpProxy.createProxyServer({ target: values.target, agent, xfwd: true })
  proxy.on('error', (_err, _req, res) => {
    if (res instanceof http.ServerResponse && !res.headersSent) { res.writeHead(502).end() } else res.destroy()
  })
  const server = http.createServer((req, res) => { proxy.web(req, res) })
  server.keepAliveTimeout = 5_000
  await new Promise<void>(resolve => server.listen(Number(values.port), '127.0.0.1', resolve))
  const stop = (): void => { server.close(); server.closeAllConnections(); agent.destroy(); process.exit(0) }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

// ---------------------------------------------------------------------------------------------
// Measuring

export interface LoadgenSettings {
  procs: Procs
  kind: 'wrk' | 'node'
  connections: number
  threads: number
  blocks: number
  tmp: string
}

async function measure (round: number, t: Target, gateway: Proc, w: Workload, seconds: number, lg: LoadgenSettings): Promise<PhaseFigures> {
  const pid = t.proc?.child.pid
  const none = { user: 0, sys: 0 }
  const p0 = pid === undefined ? none : cpuTimes(pid)
  const g0 = cpuTimes(gateway.child.pid as number)
  const gc0 = t.adminPort === undefined ? undefined : await gcFigures(t.adminPort)
  const r = await runLoad(lg, t.url, w, seconds)
  const p1 = pid === undefined ? none : cpuTimes(pid)
  const g1 = cpuTimes(gateway.child.pid as number)
  const gc1 = t.adminPort === undefined ? undefined : await gcFigures(t.adminPort)
  if (t.proc !== undefined) t.proc.assertAlive()
  gateway.assertAlive()
  const mem = pid === undefined ? undefined : memory(pid)
  const errors = r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout
  const good = r.requests - r.errors.status
  if (good <= 0) throw new Error(`${t.name} ${w.label}: no successful request (errors ${JSON.stringify(r.errors)})`)
  const secs = r.durationUs / 1e6
  return {
    round: round + 1,
    target: t.name,
    workload: w.name,
    requests: r.requests,
    seconds: round3(secs),
    rps: round3(r.requests / secs),
    errors,
    latencyMs: { p50: round3(r.latencyUs.p50 / 1000), p90: round3(r.latencyUs.p90 / 1000), p99: round3(r.latencyUs.p99 / 1000), max: round3(r.latencyUs.max / 1000) },
    proxyCpuS: pid === undefined ? null : round3(p1.user + p1.sys - p0.user - p0.sys),
    proxySysCpuS: pid === undefined ? null : round3(p1.sys - p0.sys),
    gatewayCpuS: round3(g1.user + g1.sys - g0.user - g0.sys),
    proxyHwmMB: mem === undefined ? null : round3(mem.hwm / 1e6),
    proxyRssMB: mem === undefined ? null : round3(mem.rss / 1e6),
    gc: gc0 === undefined || gc1 === undefined ? null : gcDelta(gc0, gc1),
    load1: Math.round((os.loadavg()[0] ?? 0) * 100) / 100
  }
}

/**
 * A ferry target's GC totals from its admin /metrics. Read after the load ends, so a collection
 * that straddles the phase's end counts in the next phase (the observer reports it when done).
 */
export async function gcFigures (adminPort: number): Promise<GcFigures> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
  const out = Object.fromEntries(GC_KINDS.map(k => [k, { count: 0, seconds: 0 }])) as GcFigures
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_(count|sum)\{kind="(\w+)"\} (\S+)$/gm)) {
    const kind = m[2] as GcKind
    if (!GC_KINDS.includes(kind)) continue
    if (m[1] === 'count') out[kind].count = Number(m[3])
    else out[kind].seconds = Number(m[3])
  }
  return out
}

function gcDelta (a: GcFigures, b: GcFigures): GcFigures {
  return Object.fromEntries(GC_KINDS.map(k => [k, { count: b[k].count - a[k].count, seconds: round4(b[k].seconds - a[k].seconds) }])) as GcFigures
}

export async function runLoad (lg: LoadgenSettings, url: string, w: Workload, seconds: number): Promise<LoadgenResult> {
  let cmd: string
  let argv: string[]
  if (lg.kind === 'wrk') {
    const script = path.join(lg.tmp, `wrk-${w.name}.lua`)
    if (!fs.existsSync(script)) fs.writeFileSync(script, wrkScript(w, blocksOf(w, lg.blocks)))
    cmd = 'wrk'
    argv = ['-t', String(lg.threads), '-c', String(lg.connections), '-d', `${Math.max(1, Math.round(seconds))}s`, '--timeout', '10s', '-s', script, url]
  } else {
    cmd = process.execPath
    argv = [RUN_JS, 'loadgen', '--url', url, '--method', w.method, '--connections', String(lg.connections), '--duration', String(seconds),
      '--blocks', String(blocksOf(w, lg.blocks)), '--bytes', String(w.bytes), '--volume', w.volume, '--prefix', w.prefix]
  }
  const { code, stdout, stderr } = await lg.procs.runToEnd(cmd, argv, (seconds + 30) * 1000)
  const line = stdout.split('\n').find(l => l.startsWith(RESULT_MARKER))
  if (code !== 0 || line === undefined) throw new Error(`load generator failed (exit ${String(code)}): ${cmd} ${argv.join(' ')}\n${stdout}\n${stderr}`)
  return JSON.parse(line.slice(RESULT_MARKER.length)) as LoadgenResult
}

/**
 * The wrk script: requests are formatted once per thread and cycled over, so wrk spends no time
 * building them; `done` prints the result line that loadgen.ts prints too.
 */
export function wrkScript (w: Workload, blocks: number): string {
  const body = w.method === 'PUT' ? `string.rep("x", ${w.bytes})` : 'nil'
  const headers = w.method === 'PUT' ? '{ ["Content-Type"] = "application/octet-stream" }' : '{}'
  return `-- generated by bench/proxy.ts
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
  local body = ${body}
  for k = 0, n - 1 do
    reqs[k + 1] = wrk.format("${w.method}", string.format("/${w.volume}/${w.prefix}%05d", k), ${headers}, body)
  end
end
function request()
  i = i % n + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('${RESULT_MARKER}{"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latencyUs":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"max":%.1f,"mean":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
`
}

export function blocksOf (w: Workload, blocks: number): number {
  return Math.min(blocks, w.maxBlocks)
}

/** The blocks a GET workload reads, written straight to the gateway. */
export async function preload (gwUrl: string, w: Workload, blocks: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  const body = Buffer.alloc(w.bytes, 'b')
  try {
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < blocks) {
        const p = blockPath(w.volume, w.prefix, next++)
        const { status } = await httpRequest(gwUrl + p, { method: 'PUT', agent, body })
        if (status >= 300) throw new Error(`preload PUT ${p}: status ${status}`)
      }
    }
    await Promise.all(Array.from({ length: 8 }, worker))
  } finally {
    agent.destroy()
  }
}

// ---------------------------------------------------------------------------------------------
// Figures

function aggregate (phases: PhaseFigures[]): Aggregate[] {
  const out: Aggregate[] = []
  const keys = new Set(phases.map(p => `${p.workload}\0${p.target}`))
  for (const key of keys) {
    const [workload, target] = key.split('\0') as [Workload['name'], TargetName]
    const ps = phases.filter(p => p.workload === workload && p.target === target)
    const requests = sum(ps.map(p => p.requests))
    const seconds = sum(ps.map(p => p.seconds))
    const cpu = ps[0]?.proxyCpuS === null ? null : sum(ps.map(p => p.proxyCpuS ?? 0))
    out.push({
      target,
      workload,
      rounds: ps.length,
      requests,
      seconds: round3(seconds),
      rps: round3(requests / seconds),
      errors: sum(ps.map(p => p.errors)),
      p50Ms: round3(median(ps.map(p => p.latencyMs.p50))),
      p99Ms: round3(median(ps.map(p => p.latencyMs.p99))),
      proxyCpuSPer1k: cpu === null ? null : round4(1000 * cpu / requests),
      proxySysShare: cpu === null || cpu === 0 ? null : round3(sum(ps.map(p => p.proxySysCpuS ?? 0)) / cpu),
      requestsPerProxyCpuS: cpu === null || cpu === 0 ? null : Math.round(requests / cpu),
      mbPerProxyCpuS: cpu === null || cpu === 0 ? null : round3(requests * WORKLOADS[workload].bytes / 1e6 / cpu),
      gatewayCpuSPer1k: round4(1000 * sum(ps.map(p => p.gatewayCpuS)) / requests),
      proxyPeakRssMB: ps[0]?.proxyHwmMB === null ? null : Math.max(...ps.map(p => p.proxyHwmMB ?? 0)),
      majorGcPer1k: ps.some(p => p.gc === null) ? null : round3(1000 * sum(ps.map(p => (p.gc as GcFigures).major.count)) / requests),
      gcMsPerRequest: ps.some(p => p.gc === null) ? null : round4(1000 * sum(ps.map(p => sum(GC_KINDS.map(k => (p.gc as GcFigures)[k].seconds)))) / requests)
    })
  }
  return out
}

interface RatioFigure {
  name: string
  description: string
  /** Pooled: from the sums over all rounds. */
  value: number | null
  /** The same ratio in each round alone, from phases run back to back: its spread is the noise. */
  perRound: Array<number | null>
  /** Median of perRound: what the goal is judged on, since one disturbed round cannot move it far. */
  median: number | null
  goal: string
  met: boolean | null
}

interface Goal { op: '≥' | '≤', bound: number }

function computeRatios (phases: PhaseFigures[], aggs: Aggregate[], rounds: number, recorder: RecorderCost | undefined): RatioFigure[] {
  const agg = (t: TargetName, w: Workload['name']): Aggregate | undefined => aggs.find(a => a.target === t && a.workload === w)
  const phase = (t: TargetName, w: Workload['name'], r: number): PhaseFigures | undefined => phases.find(p => p.target === t && p.workload === w && p.round === r)
  const perCpu = (p: PhaseFigures | undefined): number | null => p === undefined || p.proxyCpuS === null || p.proxyCpuS === 0 ? null : p.requests / p.proxyCpuS
  const rs = Array.from({ length: rounds }, (_, i) => i + 1)
  const div = (a: number | null | undefined, b: number | null | undefined): number | null => a === null || a === undefined || b === null || b === undefined || b === 0 ? null : ratio(a, b)
  const cost = (x: number | null): number | null => x === null ? null : round3(1 - x)
  const out: RatioFigure[] = []
  const add = (name: string, description: string, value: number | null, perRound: Array<number | null>, goal: Goal | undefined): void => {
    const known = perRound.filter((v): v is number => v !== null)
    const m = known.length > 0 ? round3(median(known)) : value
    out.push({
      name, description, value, perRound, median: m,
      goal: goal === undefined ? 'none (for information)' : `${goal.op} ${goal.bound}`,
      met: goal === undefined || m === null ? null : goal.op === '≥' ? m >= goal.bound : m <= goal.bound
    })
  }

  for (const w of [...new Set(aggs.map(a => a.workload))]) {
    const label = WORKLOADS[w].label
    add(`${w}.ferryRecVsNginxPerCpu`, `${label}: ferry (recording on) requests (and MB) per proxy CPU-second ÷ nginx's`,
      div(agg('ferry-rec', w)?.requestsPerProxyCpuS, agg('nginx', w)?.requestsPerProxyCpuS),
      rs.map(r => div(perCpu(phase('ferry-rec', w, r)), perCpu(phase('nginx', w, r)))),
      { op: '≥', bound: GOALS.ferryVsNginxPerCpu[w] })
    add(`${w}.ferryRecVsHttpProxyPerCpu`, `${label}: ferry (recording on) requests per proxy CPU-second ÷ http-proxy's`,
      div(agg('ferry-rec', w)?.requestsPerProxyCpuS, agg('http-proxy', w)?.requestsPerProxyCpuS),
      rs.map(r => div(perCpu(phase('ferry-rec', w, r)), perCpu(phase('http-proxy', w, r)))),
      w === 'get' || w === 'put' ? { op: '≥', bound: GOALS.ferryVsHttpProxyPerCpu } : undefined)
    add(`${w}.recordingCostThroughput`, `${label}: recording cost in requests/s (1 − on ÷ off)`,
      cost(div(agg('ferry-rec', w)?.rps, agg('ferry-norec', w)?.rps)),
      rs.map(r => cost(div(phase('ferry-rec', w, r)?.rps, phase('ferry-norec', w, r)?.rps))),
      { op: '≤', bound: GOALS.recordingCostMax })
    add(`${w}.recordingCostPerCpu`, `${label}: recording cost in requests per CPU-second (1 − on ÷ off)`,
      cost(div(agg('ferry-rec', w)?.requestsPerProxyCpuS, agg('ferry-norec', w)?.requestsPerProxyCpuS)),
      rs.map(r => cost(div(perCpu(phase('ferry-rec', w, r)), perCpu(phase('ferry-norec', w, r))))),
      { op: '≤', bound: GOALS.recordingCostMax })
    // The in-situ figures above compare two processes measured seconds apart, which on a shared
    // machine is noisier than a 5% effect. This one divides recordAt's CPU time, measured in a
    // tight loop in this process, by ferry's CPU time per request: a lower bound (in the proxy
    // the recorder's data is colder in cache), for information.
    const perReqMs = agg('ferry-rec', w)?.proxyCpuSPer1k
    if (recorder !== undefined && perReqMs !== null && perReqMs !== undefined) {
      add(`${w}.recordingCostLowerBound`, `${label}: recordAt CPU time in a tight loop ÷ ferry CPU time per request (lower bound of the recording cost)`,
        round4((recorder.nsPerRecord / 1e6) / perReqMs), [], undefined)
    }
  }
  for (const w of [...new Set(aggs.map(a => a.workload))]) {
    const label = WORKLOADS[w].label
    for (const r of [2, 3]) {
      const t = `ferry-r${r}` as TargetName
      add(`${w}.r${r}VsR1PerCpu`, `${label}: requests per proxy CPU-second at R = ${r} ÷ at R = 1`,
        div(agg(t, w)?.requestsPerProxyCpuS, agg('ferry-r1', w)?.requestsPerProxyCpuS),
        rs.map(x => div(perCpu(phase(t, w, x)), perCpu(phase('ferry-r1', w, x)))),
        w === 'put' && r === 2 ? { op: '≥', bound: GOALS.putR2VsR1PerCpu } : undefined)
      add(`${w}.r${r}VsR1Throughput`, `${label}: requests/s at R = ${r} ÷ at R = 1`,
        div(agg(t, w)?.rps, agg('ferry-r1', w)?.rps),
        rs.map(x => div(phase(t, w, x)?.rps, phase('ferry-r1', w, x)?.rps)), undefined)
    }
  }
  const rss = aggs.filter(a => (a.target === 'ferry-rec' || a.target === 'ferry-norec') && a.proxyPeakRssMB !== null).map(a => a.proxyPeakRssMB as number)
  add('ferryPeakRssMB', 'ferry peak RSS under load (VmHWM, highest of recording on and off), MB', rss.length === 0 ? null : Math.max(...rss), [],
    { op: '≤', bound: GOALS.ferryRssMaxMB })
  // A ratio whose targets were not in this run is left out rather than reported as n/a.
  return out.filter(r => r.value !== null)
}

function printTable (aggs: Aggregate[], workloads: Workload[]): void {
  const head = ['workload', 'target', 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU-s/1k req', '(kernel)', 'req/proxy CPU-s', 'MB/proxy CPU-s', 'gateway CPU-s/1k', 'proxy peak RSS MB', 'major GC/1k req', 'GC ms/req', 'errors']
  const rows: string[][] = []
  for (const w of workloads) {
    for (const t of ALL_TARGETS) {
      const a = aggs.find(x => x.workload === w.name && x.target === t)
      if (a === undefined) continue
      rows.push([w.label, t, fmt(a.rps, 0), fmt(a.p50Ms, 2), fmt(a.p99Ms, 2), a.proxyCpuSPer1k === null ? '–' : fmt(a.proxyCpuSPer1k, 3),
        a.proxySysShare === null ? '–' : `${Math.round(a.proxySysShare * 100)}%`,
        a.requestsPerProxyCpuS === null ? '–' : fmt(a.requestsPerProxyCpuS, 0), a.mbPerProxyCpuS === null ? '–' : fmt(a.mbPerProxyCpuS, 1), fmt(a.gatewayCpuSPer1k, 3), a.proxyPeakRssMB === null ? '–' : fmt(a.proxyPeakRssMB, 1),
        a.majorGcPer1k === null ? '–' : fmt(a.majorGcPer1k, 2), a.gcMsPerRequest === null ? '–' : fmt(a.gcMsPerRequest, 3), String(a.errors)])
    }
  }
  console.log('\n' + markdownTable(head, rows))
}

function printRatios (ratios: RatioFigure[]): void {
  console.log('\nratios: median of the rounds (each round\'s phases ran back to back), pooled over all rounds, each round:')
  for (const r of ratios) {
    const verdict = r.met === null ? '' : r.met ? '  met' : '  NOT MET'
    const spread = r.perRound.length > 0 ? `  pooled ${fmt(r.value as number, 3)}  rounds [${r.perRound.map(v => v === null ? '–' : fmt(v, 3)).join(', ')}]` : ''
    console.log(`  ${r.description}: ${r.median === null ? 'n/a' : fmt(r.median, r.median !== 0 && Math.abs(r.median) < 0.01 ? 4 : 3)}  (goal ${r.goal})${verdict}${spread}`)
  }
}

export function markdownTable (head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => i < 2 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)).join(' | ') + ' |'
  return [line(head), '| ' + widths.map((w, i) => i < 2 ? '-'.repeat(w) : '-'.repeat(w - 1) + ':').join(' | ') + ' |', ...rows.map(line)].join('\n')
}

// ---------------------------------------------------------------------------------------------
// Recording cost, measured in this process

interface RecorderCost {
  nsPerRecord: number
  blocks: number
  drainEvery: number
  records: number
}

/**
 * The CPU time of AccessRecorder.recordAt as the proxy calls it: the bench's blocks, one site,
 * the clock advancing a millisecond every few accesses, deltas drained as the state flush does.
 * process.cpuUsage counts CPU time only, so time spent preempted by other work is not charged.
 */
function measureRecorder (blocks = 256, drainEvery = 5_000, records = 2_000_000): RecorderCost {
  const rec = new AccessRecorder({ halfLifeS: 600, burstHalfLifeS: 10, burstFactor: 4, maxBlocks: 200_000, sites: ['local'], accessLog: null })
  const volume = WORKLOADS.get.volume
  const names = Array.from({ length: blocks }, (_, i) => blockPath(volume, WORKLOADS.get.prefix, i).split('/')[2] as string)
  const keys = names.map(b => blockKey(volume, b))
  let now = Date.now()
  const pass = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const k = i % blocks
      if (i % 5 === 0) now++
      rec.recordAt(keys[k] as string, volume, names[k] as string, 'local', false, now)
      if (i % drainEvery === drainEvery - 1) rec.drainDeltas()
    }
  }
  pass(records / 4) // warm the JIT
  const t0 = process.cpuUsage()
  pass(records)
  const d = process.cpuUsage(t0)
  void rec.close()
  return { nsPerRecord: Math.round(((d.user + d.system) * 1000) / records), blocks, drainEvery, records }
}

/** Which code was measured: the commit, and the files that differ from it (others edit live). */
function sourceState (): { commit: string, dirty: string[] } {
  const root = path.resolve(here, '..', '..')
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'proxy', 'config', 'lib', 'bin', 'state', 'gateway'], { cwd: root, encoding: 'utf8' })
      .split('\n').filter(Boolean).map(l => l.slice(3))
    return { commit, dirty }
  } catch {
    return { commit: 'unknown', dirty: [] }
  }
}

// ---------------------------------------------------------------------------------------------
// CPU profile of the ferry process

interface ProfileSummary {
  file: string
  samples: number
  /** Top self-time functions, % of non-idle samples. */
  top: Array<{ fn: string, where: string, selfPct: number }>
  /** Self time by origin: ferry, node internals, each npm package, GC, native. */
  byOrigin: Array<{ origin: string, selfPct: number }>
}

interface CpuProfile {
  nodes: Array<{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }>
  samples: number[]
}

function summariseProfile (dir: string, pid: number): ProfileSummary | undefined {
  const files = fs.readdirSync(dir).filter(f => f.endsWith('.cpuprofile') && f.includes(`.${pid}.`))
  const name = files.sort().at(-1)
  if (name === undefined) return undefined
  const file = path.join(dir, name)
  const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(prof.nodes.map(n => [n.id, n.callFrame]))
  const self = new Map<string, number>()
  const origin = new Map<string, number>()
  // Samples are counted rather than weighted by timeDeltas: a thread that was descheduled
  // between two samples would otherwise charge the whole wait to the frame it stopped in.
  let total = 0
  prof.samples.forEach(id => {
    const cf = byId.get(id)
    if (cf === undefined || cf.functionName === '(idle)') return
    total++
    const where = cf.url === '' ? '' : `${shortUrl(cf.url)}:${cf.lineNumber + 1}`
    const key = `${cf.functionName || '(anonymous)'}\0${where}`
    self.set(key, (self.get(key) ?? 0) + 1)
    const o = originOf(cf.functionName, cf.url)
    origin.set(o, (origin.get(o) ?? 0) + 1)
  })
  const pct = (v: number): number => Math.round((1000 * v) / Math.max(1, total)) / 10
  return {
    file,
    samples: total,
    top: [...self].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, v]) => { const [fn, where] = k.split('\0') as [string, string]; return { fn, where, selfPct: pct(v) } }),
    byOrigin: [...origin].sort((a, b) => b[1] - a[1]).map(([o, v]) => ({ origin: o, selfPct: pct(v) }))
  }
}

function shortUrl (url: string): string {
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length)
  const dist = url.indexOf('/dist/')
  if (dist >= 0) return url.slice(dist + 1)
  return url.replace(/^file:\/\//, '')
}

function originOf (fn: string, url: string): string {
  if (url === '') return fn.startsWith('(') ? fn : '(native)'
  if (url.startsWith('node:')) return 'node internals'
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (m !== null) return m[1] as string
  if (url.includes('/dist/')) return 'ferry'
  return 'other'
}

function printProfile (p: ProfileSummary): void {
  console.log(`\nferry-rec CPU profile (${p.file}, ${p.samples} samples, idle excluded)`)
  console.log('  V8 samples wall-clock: on a crowded machine the thread is often preempted inside a write(2),')
  console.log('  so native frames (writev, writeLatin1String) are over-represented; `perf record` shows on-CPU time.')
  console.log('  by origin: ' + p.byOrigin.map(o => `${o.origin} ${o.selfPct}%`).join(', '))
  console.log('  top self time:')
  for (const t of p.top) console.log(`    ${String(t.selfPct).padStart(5)}%  ${t.fn}  ${t.where}`)
}

// ---------------------------------------------------------------------------------------------
// Processes

export function memory (pid: number): { hwm: number, rss: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { hwm: kb('VmHWM'), rss: kb('VmRSS') }
}

export async function waitHttp (proc: Proc, url: string, timeoutMs = 20_000, expect = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    proc.assertAlive()
    try {
      const { status } = await httpRequest(url, { method: 'GET', agent: false })
      if (status === expect) return
      last = `status ${status}`
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(100)
  }
  throw new Error(`${proc.name} did not answer ${url} with ${expect} within ${timeoutMs} ms (${last}):\n${proc.output}`)
}

function httpRequest (url: string, opts: { method: string, agent: http.Agent | false, body?: Buffer }): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method, agent: opts.agent, timeout: 5_000, headers: opts.body === undefined ? {} : { 'content-length': opts.body.length } }, res => {
      res.resume()
      res.once('end', () => { resolve({ status: res.statusCode ?? 0 }) })
      res.once('error', reject)
    })
    req.once('timeout', () => { req.destroy(new Error('timeout')) })
    req.once('error', reject)
    req.end(opts.body)
  })
}

function which (bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && isExecutable(path.join(dir, bin))) return path.join(dir, bin)
  }
  return undefined
}

function isExecutable (file: string): boolean {
  try { fs.accessSync(file, fs.constants.X_OK); return fs.statSync(file).isFile() } catch { return false }
}

function isWritableDir (dir: string): boolean {
  try { fs.accessSync(dir, fs.constants.W_OK); return fs.statSync(dir).isDirectory() } catch { return false }
}

function wrkVersion (): string {
  // `wrk -v` exits 1 after printing its version.
  const r = spawnSync('wrk', ['-v'], { encoding: 'utf8' })
  return /wrk (\S+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? 'unknown'
}

function nginxVersion (): string {
  // `nginx -v` prints to stderr.
  const r = spawnSync(NGINX_BIN, ['-v'], { encoding: 'utf8' })
  return /nginx\/(\S+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? 'unknown'
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function list<T extends string> (text: string, allowed: readonly T[], flag: string): T[] {
  const out: T[] = []
  for (const s of text.split(',').map(x => x.trim()).filter(Boolean)) {
    if (!(allowed as readonly string[]).includes(s)) throw new Error(`${flag}: unknown "${s}" (choose from ${allowed.join(', ')})`)
    if (!out.includes(s as T)) out.push(s as T)
  }
  if (out.length === 0) throw new Error(`${flag} is empty`)
  return out
}

function positive (flag: string, text: string): number {
  const n = Number(text)
  if (!(n > 0)) throw new Error(`${flag} must be a positive number, got ${text}`)
  return n
}

function nonNegative (flag: string, text: string): number {
  const n = Number(text)
  if (!(n >= 0)) throw new Error(`${flag} must be a number ≥ 0, got ${text}`)
  return n
}

function sum (xs: number[]): number { return xs.reduce((a, b) => a + b, 0) }

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

function round3 (x: number): number { return Math.round(x * 1000) / 1000 }
function round4 (x: number): number { return Math.round(x * 10000) / 10000 }

function fmt (x: number, digits: number): string {
  return Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '–'
}
