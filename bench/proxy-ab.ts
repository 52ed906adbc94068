/**
 * `npm run bench -- proxy-ab --variants JSON [options]`: two or more builds or settings of the
 * proxy side by side, to tell whether a change to the data plane moves its CPU per request.
 * `npm run bench -- proxy` compares ferry with nginx; this compares ferry with ferry, which on a
 * shared machine needs the same care: every variant is its own `ferry start --roles proxy`
 * (bench/proxy.ts's production-shaped config, recording on, memory state) in front of ONE
 * `ferry gateway`, and each round runs every workload on every variant back to back, in ABBA
 * order, so the machine's load falls evenly on the pair. Per phase: CPU per request from
 * /proc/<pid>/stat (utime + stime), the kernel's share, minor page faults per request, GCs per
 * 1,000 requests from the variant's /metrics. Verdicts are per-round ratios of CPU per request,
 * first variant ÷ each other one (above 1: the other is cheaper), judged on their median.
 *
 * A variant: `{ "name": "semi4", "dist": "/path/to/dist", "args": ["--max-semi-space-size=4"],
 * "env": { "MALLOC_TRIM_THRESHOLD_": "33554432" }, "yaml": "planner:\n  migration: ..." }`;
 * every field but `name` is optional (`dist`: this build's dist/, `args`: node flags before
 * ferry.js, `env`: added to the environment, `yaml`: appended to the config). To compare with
 * another commit, build it in a worktree and give its dist/ (with node_modules reachable from it).
 *
 * Options: --variants JSON (required, two or more), --workloads get,put,get1m,put1m (default
 * put,put1m), --rounds N (6), --duration S (3), --warmup S (2), --connections N (32),
 * --threads N (2), --no-write. Needs wrk. Writes bench/results/proxy-ab.json.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { writeResult } from './lib.js'
import { cpuTimes, freePort, minorFaults, positiveInt, Procs, type Proc } from './procs.js'
import type { LoadgenResult } from './loadgen.js'
import { blocksOf, ferryYaml, gcFigures, median, memory, preload, runLoad, waitHttp, WORKLOADS, type GcFigures, type LoadgenSettings, type Workload, type WorkloadName } from './proxy.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const THIS_DIST = path.resolve(here, '..')

interface Variant { name: string, dist?: string, args?: string[], env?: Record<string, string>, yaml?: string }
interface Running extends Variant { url: string, adminPort: number, proc: Proc }

interface Phase {
  round: number
  workload: WorkloadName
  variant: string
  requests: number
  errors: number
  cpuMsPerRequest: number
  kernelShare: number
  faultsPerRequest: number
  majorGcPer1k: number
  minorGcPer1k: number
  load1: number
}

export default async function run (args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      variants: { type: 'string' },
      workloads: { type: 'string', default: 'put,put1m' },
      rounds: { type: 'string', default: '6' },
      duration: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '32' },
      threads: { type: 'string', default: '2' },
      'no-write': { type: 'boolean', default: false }
    }
  })
  if (values.variants === undefined) throw new Error('--variants JSON is required (see bench/proxy-ab.ts)')
  const variants = JSON.parse(values.variants) as Variant[]
  if (!Array.isArray(variants) || variants.length < 2 || variants.some(v => typeof v.name !== 'string')) throw new Error('--variants: an array of two or more { name, dist?, args?, env?, yaml? }')
  const workloads = values.workloads.split(',').map(w => {
    const found = WORKLOADS[w as WorkloadName] as Workload | undefined
    if (found === undefined) throw new Error(`--workloads: unknown ${w}`)
    return found
  })
  const rounds = positiveInt('--rounds', values.rounds)
  const duration = positiveInt('--duration', values.duration)
  const warmup = positiveInt('--warmup', values.warmup)
  const blocks = 256

  const procs = new Procs()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-proxy-ab-'))
  const gwDir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'ferry-proxy-ab-gw-'))
  const stop = (): void => { void procs.stopAll().finally(() => process.exit(130)) }
  process.once('SIGINT', stop)
  const phases: Phase[] = []
  const load0 = os.loadavg()[0] ?? 0
  try {
    const gwPort = await freePort()
    const gateway = procs.start('gateway', process.execPath, [path.join(THIS_DIST, 'bin', 'ferry.js'), 'gateway', '--dir', gwDir, '--port', String(gwPort), '--admin-port', '0', '--id', 'bench-gw', '--log-level', 'warn', '--max-block-bytes', '16MiB'], process.env)
    const gwUrl = `http://127.0.0.1:${gwPort}`
    await waitHttp(gateway, `${gwUrl}/healthz`)
    for (const w of workloads) if (w.method === 'GET') await preload(gwUrl, w, blocksOf(w, blocks))
    const running: Running[] = []
    for (const v of variants) {
      const port = await freePort()
      const adminPort = await freePort()
      const file = path.join(tmp, `${v.name}.yaml`)
      fs.writeFileSync(file, ferryYaml(gwUrl, port, adminPort, true) + (v.yaml ?? ''))
      const ferry = path.join(v.dist ?? THIS_DIST, 'bin', 'ferry.js')
      const proc = procs.start(v.name, process.execPath, [...(v.args ?? []), ferry, 'start', '--config', file, '--roles', 'proxy'], { ...process.env, ...v.env })
      running.push({ ...v, url: `http://127.0.0.1:${port}`, adminPort, proc })
    }
    for (const r of running) await waitHttp(r.proc, `http://127.0.0.1:${r.adminPort}/readyz`, 60_000)
    const lg: LoadgenSettings = { procs, kind: 'wrk', connections: positiveInt('--connections', values.connections), threads: positiveInt('--threads', values.threads), blocks, tmp }
    const wrk = async (url: string, w: Workload, seconds: number): Promise<LoadgenResult> => await runLoad(lg, url, w, seconds)
    process.stderr.write(`proxy-ab: ${variants.map(v => v.name).join(', ')} × ${workloads.map(w => w.name).join(', ')}, ${rounds} rounds of ${warmup}+${duration} s, load ${load0.toFixed(2)}\n`)
    for (let round = 0; round < rounds; round++) {
      for (const w of workloads) {
        const order = round % 2 === 0 ? running : [...running].reverse()
        for (const r of order) {
          r.proc.assertAlive()
          await wrk(r.url, w, warmup)
          const g0 = await gcFigures(r.adminPort)
          const c0 = cpuTimes(r.proc.child.pid as number)
          const f0 = minorFaults(r.proc.child.pid as number)
          const res = await wrk(r.url, w, duration)
          const c1 = cpuTimes(r.proc.child.pid as number)
          const f1 = minorFaults(r.proc.child.pid as number)
          const g1 = await gcFigures(r.adminPort)
          const n = Math.max(1, res.requests)
          const cpu = c1.user + c1.sys - c0.user - c0.sys
          const e = res.errors
          phases.push({
            round, workload: w.name, variant: r.name, requests: res.requests, errors: e.connect + e.read + e.write + e.status + e.timeout,
            cpuMsPerRequest: 1000 * cpu / n, kernelShare: cpu > 0 ? (c1.sys - c0.sys) / cpu : 0, faultsPerRequest: (f1 - f0) / n,
            majorGcPer1k: 1000 * gcCount(g0, g1, 'major') / n, minorGcPer1k: 1000 * gcCount(g0, g1, 'minor') / n, load1: os.loadavg()[0] ?? 0
          })
        }
        const line = phases.filter(p => p.round === round && p.workload === w.name)
          .map(p => `${p.variant} ${p.cpuMsPerRequest.toFixed(3)} ms/req (kernel ${(100 * p.kernelShare).toFixed(0)} %, ${p.faultsPerRequest.toFixed(0)} faults/req, ${p.majorGcPer1k.toFixed(1)} major GC/1k)${p.errors > 0 ? ` ${p.errors} errors` : ''}`).join(' | ')
        process.stderr.write(`  round ${round + 1} ${w.label}, load ${(os.loadavg()[0] ?? 0).toFixed(1)}: ${line}\n`)
      }
    }
    const load1 = os.loadavg()[0] ?? 0
    const peaks = Object.fromEntries(running.map(r => [r.name, Math.round(memory(r.proc.child.pid as number).hwm / 1e5) / 10]))
    const verdicts: Array<Record<string, unknown>> = []
    console.log(`\nload ${load0.toFixed(2)} → ${load1.toFixed(2)}; peak RSS over the run (MB): ${Object.entries(peaks).map(([k, v]) => `${k} ${v}`).join(', ')}`)
    for (const w of workloads) {
      for (const r of running) {
        const ps = phases.filter(p => p.workload === w.name && p.variant === r.name)
        console.log(`${w.label} ${r.name}: median ${median(ps.map(p => p.cpuMsPerRequest)).toFixed(3)} ms CPU/request, kernel ${(100 * median(ps.map(p => p.kernelShare))).toFixed(0)} %, ${median(ps.map(p => p.faultsPerRequest)).toFixed(0)} faults/request, ${median(ps.map(p => p.majorGcPer1k)).toFixed(1)} major GC/1k`)
      }
      const first = running[0] as Running
      for (const r of running.slice(1)) {
        const per: number[] = []
        for (let round = 0; round < rounds; round++) {
          const a = phases.find(p => p.round === round && p.workload === w.name && p.variant === first.name) as Phase
          const b = phases.find(p => p.round === round && p.workload === w.name && p.variant === r.name) as Phase
          per.push(a.cpuMsPerRequest / b.cpuMsPerRequest)
        }
        const m = median(per)
        verdicts.push({ workload: w.name, a: first.name, b: r.name, median: m, rounds: per })
        console.log(`  ${w.label}: CPU per request ${first.name} ÷ ${r.name}: median ${m.toFixed(3)} (rounds ${per.map(x => x.toFixed(2)).join(' ')})`)
      }
    }
    if (!values['no-write']) writeResult('proxy-ab', { variants, workloads: workloads.map(w => w.name), rounds, duration, warmup, load: [load0, load1], peakRssMB: peaks, verdicts, phases })
  } finally {
    process.off('SIGINT', stop)
    await procs.stopAll()
    fs.rmSync(tmp, { recursive: true, force: true })
    fs.rmSync(gwDir, { recursive: true, force: true })
  }
}

function gcCount (a: GcFigures, b: GcFigures, kind: 'major' | 'minor'): number {
  return b[kind].count - a[kind].count
}
