/**
 * `npm run bench -- placement-retrain [--blocks N]`: how long the live planner's retraining of
 * the placement model takes at N blocks of history (issue 21: "retraining time at 1 M blocks").
 * The class the planner runs, LivePlacement.retrain, over a synthetic history of N blocks (first
 * writes with origin and path, per-site access scores; 20,000 volumes, four sites) with
 * placement.maxHistory and maxTrainingBlocks raised to N. Two retrains: the first model, then a
 * candidate compared with it on held-out blocks; wall time and the process's CPU time of each.
 * Writes bench/results/placement-retrain.json.
 */
import os from 'node:os'
import { parseArgs } from 'node:util'
import { AffinityScorer, latencyMatrix } from '../planner/affinity/index.js'
import { NgramHashEmbedder } from '../planner/partition/embedder.js'
import { LivePlacement } from '../planner/partition/live.js'
import type { TrainingExample } from '../planner/partition/model.js'
import { parsePlacementConfig } from '../placement/config.js'
import { createStore } from '../state/factory.js'
import { writeResult } from './lib.js'

const SITES = ['na-east', 'na-west', 'europe', 'asia']
const VOLUMES = 20_000
const H = 600_000

export default async function run (argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { blocks: { type: 'string' } }, strict: true })
  const N = Number(values.blocks ?? 1_000_000)
  if (!Number.isInteger(N) || N < 100) throw new Error('--blocks: an integer ≥ 100')
  const t0 = Date.UTC(2026, 11, 4)
  let now = t0 + N
  const scorer = new AffinityScorer({ latency: latencyMatrix({ 'na-east': { 'na-west': 60, europe: 90, asia: 170 }, 'na-west': { europe: 90, asia: 110 }, europe: { asia: 200 } }, { sameSiteMs: 2, defaultMs: 200 }) })
  const live = new LivePlacement({
    store: createStore({ backend: 'memory' }),
    config: parsePlacementConfig({ maxHistory: N, maxTrainingBlocks: N }),
    embedder: new NgramHashEmbedder(),
    now: () => now,
    host: { isLeader: () => false, gateways: () => SITES.map((site, i) => ({ id: `gw${i}`, site, capacityBytes: 0, usedBytes: 0, healthy: true })), scorer: () => scorer, meanBlockBytes: () => 1, halfLifeMs: () => H }
  })
  let seed = 11
  const rnd = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32 }
  const examples: TrainingExample[] = []
  const genStarted = performance.now()
  for (let i = 0; i < N; i++) {
    const v = i % VOLUMES
    const home = SITES[(v * 7) % SITES.length] as string
    const origin = rnd() < 0.8 ? home : SITES[Math.floor(rnd() * SITES.length)] as string
    const volume = `vol${v}`
    const block = `b${i.toString(36)}`
    const path = `/proj${v % 50}/vol${v}/dir${(i >> 7) % 8}/file${i}.dat`
    live.noteFirstWrite({ volume, block, origin, at: t0 + i, path })
    const scores: Record<string, number> = { [origin]: 1 }
    const reads = Math.floor(rnd() * 6)
    for (let k = 0; k < reads; k++) { const s = rnd() < 0.7 ? home : SITES[Math.floor(rnd() * SITES.length)] as string; scores[s] = (scores[s] ?? 0) + 1 }
    examples.push({ meta: live.metaOf(volume, block), scores })
  }
  const genMs = performance.now() - genStarted
  const rss0 = process.memoryUsage().rss
  const runs = []
  for (const reason of ['first model', 'candidate against the model in use']) {
    const started = performance.now()
    const cpu = process.cpuUsage()
    const r = await live.retrain(reason, examples)
    const ms = performance.now() - started
    // CPU time of the process (every thread): at load 15+ on two cores wall time mostly measures
    // the other processes' time slices.
    const used = process.cpuUsage(cpu)
    const cpuMs = Math.round((used.user + used.system) / 1000)
    runs.push({ reason, wallMs: Math.round(ms), cpuMs, durationMs: r.durationMs, swapped: r.swapped, why: r.why ?? null, examples: r.examples, heldOutScored: r.heldOut, crossEntropy: r.crossEntropy })
    console.log(`placement-retrain ${N} blocks, ${reason}: ${Math.round(ms)} ms wall, ${cpuMs} ms CPU (${r.examples} examples, ${r.heldOut} held-out blocks scored, swapped ${r.swapped}${r.why === undefined ? '' : `: ${r.why}`})`)
    now += 60_000
  }
  const file = writeResult('placement-retrain', { setup: { blocks: N, volumes: VOLUMES, sites: SITES, embedder: 'ngram', generateMs: Math.round(genMs), loadAverage: os.loadavg(), rssMBBefore: Math.round(rss0 / 1e6), rssMBAfter: Math.round(process.memoryUsage().rss / 1e6) }, runs })
  console.log(`  wrote ${file}`)
}
