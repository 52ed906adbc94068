/**
 * `npm run bench -- planner-scale [--blocks N] [--sites N] [--gateways N] [--records N] [--rounds N]`
 *
 * The planner's working set at fleet scale, on one core:
 *
 *   memory     N tracked blocks (default 1,000,000) in an AffinityTable: heap + array buffers
 *              after a full GC, minus the same before, divided by N. Includes the block id
 *              strings, the Map entries, the columns and the preferred lists. Target ≤ 200 bytes.
 *   recompute  every block's preferred list recomputed (PreferenceKernel over the columns),
 *              median of --rounds. Target ≤ 2 s.
 *   ingest     access records per second into the affinity table (recordAt: what the planner
 *              does with each merged access), into the profiler (record), and into both, from
 *              a pre-built skewed stream over the N blocks (new block id strings per record, as
 *              the proxy parses them). Target ≥ 200,000 records/s per core for both together.
 *
 * `runScale(opts)` returns the figures (bench/planner.ts includes them in planner.json);
 * `run(args)` prints them. The machine is shared: run it when it is quiet, and read the
 * `loadavg` figure next to the result.
 */
import os from 'node:os'
import v8 from 'node:v8'
import vm from 'node:vm'
import { AffinityScorer, AffinityTable, latencyMatrix, type GatewayInfo } from '../planner/affinity/index.js'
import { AccessProfiler, type AccessRecord } from '../planner/profiler.js'

export interface ScaleOptions {
  blocks?: number
  sites?: number
  gateways?: number
  records?: number
  rounds?: number
  volumes?: number
}

const TARGET_BYTES_PER_BLOCK = 200
const TARGET_RECOMPUTE_MS = 2000
const TARGET_RECORDS_PER_S = 200_000

function gcFunction (): () => void {
  v8.setFlagsFromString('--expose-gc')
  return vm.runInNewContext('gc') as () => void
}

function memory (gc: () => void): number {
  gc()
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

/** Block i's ids: 1000 volumes, 16-hex-digit block ids (a content-hash-like id). */
function volumeOf (i: number, volumes: number): string { return 'vol-' + String(i % volumes).padStart(4, '0') }
function blockOf (i: number): string { return (Math.imul(i, 0x9e3779b1) >>> 0).toString(16).padStart(8, '0') + i.toString(16).padStart(8, '0') }

function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => { a = (Math.imul(a, 1664525) + 1013904223) >>> 0; return a / 2 ** 32 }
}

export async function runScale (opts: ScaleOptions = {}): Promise<Record<string, unknown>> {
  const N = opts.blocks ?? 1_000_000
  const S = opts.sites ?? 4
  const G = opts.gateways ?? 4
  const R = opts.records ?? 2_000_000
  const rounds = opts.rounds ?? 3
  const V = opts.volumes ?? 1000
  const gc = gcFunction()
  const sites = Array.from({ length: S }, (_, i) => `site-${i}`)
  const between: Record<string, Record<string, number>> = {}
  for (let a = 0; a < S; a++) for (let b = a + 1; b < S; b++) (between[sites[a] as string] ??= {})[sites[b] as string] = 20 + 30 * ((a + b) % 5)
  const scorer = new AffinityScorer({ latency: latencyMatrix(between, { sameSiteMs: 2, defaultMs: 200 }) })
  const gateways: GatewayInfo[] = Array.from({ length: G }, (_, g) => ({ id: `gw-${g}`, site: sites[g % S] as string, capacityBytes: 0, usedBytes: 0, healthy: true }))
  const t0 = 1_700_000_000_000

  // ── memory: N blocks, each accessed once from one site, with a location and a size.
  const before = memory(gc)
  const table = new AffinityTable({ sites, halfLifeMs: 600_000, now: t0, initialCapacity: N, maxBlocks: Math.max(N, 2_000_000) })
  const r0 = rng(1)
  for (let i = 0; i < N; i++) {
    const volume = volumeOf(i, V)
    const block = blockOf(i)
    table.record(volume, block, sites[Math.floor(r0() * S)], false, t0 + i)
    table.setBlock(volume, block, { sizeBytes: 4096, current: `gw-${i % G}` })
  }
  const kernel = scorer.compile(table.sites, gateways)
  table.recomputePreferred(kernel, t0 + N) // allocates the preferred-list column: part of the footprint
  const after = memory(gc)
  const bytesPerBlock = (after - before) / N

  // ── recompute all preferred lists.
  const recompute: number[] = []
  for (let r = 0; r < rounds; r++) {
    const k = scorer.compile(table.sites, gateways)
    const started = process.hrtime.bigint()
    table.recomputePreferred(k, t0 + N)
    recompute.push(Number(process.hrtime.bigint() - started) / 1e6)
  }
  recompute.sort((a, b) => a - b)
  const recomputeMs = recompute[Math.floor(rounds / 2)] as number

  // ── ingest: a skewed stream (a few hot blocks, a long tail), fresh block id strings per record.
  const r1 = rng(2)
  const idx = new Int32Array(R)
  for (let i = 0; i < R; i++) idx[i] = Math.floor(N * Math.pow(r1(), 3))
  const vols: string[] = new Array(R)
  const blks: string[] = new Array(R)
  const slots = new Uint8Array(R)
  const writes = new Uint8Array(R)
  const records: AccessRecord[] = new Array(R)
  for (let i = 0; i < R; i++) {
    const b = idx[i] as number
    const volume = volumeOf(b, V)
    const block = blockOf(b)
    const site = Math.floor(r1() * S)
    vols[i] = volume
    blks[i] = block
    slots[i] = site + 1 // slot 0 is ''
    writes[i] = r1() < 0.2 ? 1 : 0
    records[i] = { volume, block, client: `10.${site}.${Math.floor(r1() * 256)}.${Math.floor(r1() * 40)}`, site: sites[site] as string, servedBySite: sites[Math.floor(r1() * S)] as string, write: writes[i] === 1, at: t0 + N + i, bytes: 4096 }
  }
  const profiler = new AccessProfiler({ now: t0 })
  const rate = (f: () => void): number => {
    const started = process.hrtime.bigint()
    f()
    return Math.round(R / (Number(process.hrtime.bigint() - started) / 1e9))
  }
  const affinityRate = rate(() => { for (let i = 0; i < R; i++) table.recordAt(vols[i] as string, blks[i] as string, slots[i] as number, 1 - (writes[i] as number), writes[i] as number, t0 + N + i) })
  const profilerRate = rate(() => { for (let i = 0; i < R; i++) profiler.record(records[i] as AccessRecord) })
  const profiler2 = new AccessProfiler({ now: t0 })
  const bothRate = rate(() => {
    for (let i = 0; i < R; i++) {
      table.recordAt(vols[i] as string, blks[i] as string, slots[i] as number, 1 - (writes[i] as number), writes[i] as number, t0 + N + i)
      profiler2.record(records[i] as AccessRecord)
    }
  })

  return {
    config: { blocks: N, sites: S, gateways: G, volumes: V, records: R, rounds, keyLength: (volumeOf(0, V) + '/' + blockOf(0)).length },
    memory: {
      bytesPerBlock: Math.round(bytesPerBlock * 10) / 10,
      totalMiB: Math.round((after - before) / 2 ** 20),
      columnBytesPerBlock: Math.round(table.columnBytes() / N * 10) / 10,
      note: 'heapUsed + arrayBuffers after full GC, minus before: block id strings, Map entries, columns, preferred lists'
    },
    recompute: { medianMs: Math.round(recomputeMs), roundsMs: recompute.map(x => Math.round(x)), blocksPerSecond: Math.round(N / (recomputeMs / 1000)) },
    ingest: {
      affinityRecordsPerS: affinityRate,
      profilerRecordsPerS: profilerRate,
      bothRecordsPerS: bothRate,
      profilerTracked: { blocks: profiler2.trackedBlocks, volumes: profiler2.trackedVolumes, evictedBlocks: profiler2.evictedBlocks }
    },
    targets: {
      bytesPerBlock: TARGET_BYTES_PER_BLOCK,
      bytesPerBlockMet: bytesPerBlock <= TARGET_BYTES_PER_BLOCK,
      recomputeMs: TARGET_RECOMPUTE_MS,
      recomputeMet: recomputeMs <= TARGET_RECOMPUTE_MS,
      recordsPerS: TARGET_RECORDS_PER_S,
      ingestMet: bothRate >= TARGET_RECORDS_PER_S
    },
    loadavg: os.loadavg().map(x => Math.round(x * 100) / 100)
  }
}

export default async function run (argv: string[]): Promise<void> {
  const num = (flag: string): number | undefined => {
    const i = argv.indexOf(flag)
    if (i < 0) return undefined
    const v = Number(argv[i + 1])
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${flag} needs a positive integer`)
    return v
  }
  const opts: ScaleOptions = {}
  for (const [flag, key] of [['--blocks', 'blocks'], ['--sites', 'sites'], ['--gateways', 'gateways'], ['--records', 'records'], ['--rounds', 'rounds'], ['--volumes', 'volumes']] as const) {
    const v = num(flag)
    if (v !== undefined) opts[key] = v
  }
  const r = await runScale(opts)
  console.log(JSON.stringify(r, null, 2))
}
