/**
 * `npm run bench -- health-e2e [--speed N] [--seed S] [--blocks N] [--clients N] [--replicas R]`
 *
 * End to end, in one run, twice: three reference gateways, a proxy and a planner in this process
 * (the sandbox set-up, on free ports), a workload through the proxy (reads and writes over a few
 * hundred blocks, the hot ones on gw1), and gw1 degrading to failure per a memory-leak scenario
 * (planner/health scenarios: its fault steps on the gateway, its telemetry pushed to the planner
 * as an agent would — a simulation, see gateway/scenario.ts). Once with prediction OFF (reactive
 * ejection only), once ON. Reports failed client requests in each, the trigger's lead time and
 * the blocks moved off gw1 before it failed. With `--replicas 2` every block has two copies (the
 * hot ones and a third of the rest with gw1 among them) and each phase also reports how long the
 * repair took to restore R after gw1 failed. Writes bench/results/health-e2e.json (R = 1) or
 * health-e2e-r<R>.json.
 *
 * The story is replayed `speed` times faster (default 20) from 700 s before the degradation
 * (the model's window, so it starts warm); lead times are given in story seconds and wall seconds.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { FerryNode } from '../bin/node.js'
import { configSchema } from '../config/schema.js'
import { ReferenceGateway } from '../gateway/gateway.js'
import { httpTelemetrySink, parseFaultTimeline, ScenarioDriver, ScenarioTelemetryFeed } from '../gateway/scenario.js'
import { silentLogger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import { generateScenario, HealthModel, scenarioRecords, type Scenario } from '../planner/health/index.js'
import { writeResult } from './lib.js'

const TOKEN = 'bench-admin-token-0123456789'

/**
 * A memory leak whose replayed stretch has no error burst before the failure (healthy telemetry
 * has failed-probe bursts, replayed as an error rate on the gateway; with the data still on gw1
 * they fail requests whatever the planner does, which is not what this measures) and whose ramp
 * fits the time budget. The first such seed from `from` on.
 */
export function pickScenario (from: number, maxRampS: number): Scenario {
  for (let seed = from; seed < from + 500; seed++) {
    const s = generateScenario('memory_leak', { seed, gateway: 'gw1' })
    const onset = s.onsetS as number
    const failure = s.failureS as number
    if (failure - onset > maxRampS) continue
    if (s.faults.some(f => f.atS >= onset - 700 && f.atS < failure && f.faults.errorRate > 0)) continue
    return s
  }
  throw new Error('no scenario fits')
}

interface PhaseResult {
  prediction: boolean
  requests: number
  failed: number
  failedAfterFailure: number
  failedReads: number
  failedWrites: number
  triggeredStoryS: number | null
  leadTimeStoryS: number | null
  leadTimeWallS: number | null
  blocksOnGw1AtStart: number
  blocksMovedBeforeFailure: number
  hotMovedBeforeFailure: number
  blocksOnGw1AtFailure: number
  /** R ≥ 2: ms from gw1's failure until no block was under-replicated (null: not within the wait, or R = 1). */
  restoreRMs: number | null
  /** R ≥ 2: blocks under-replicated at the first repair pass after the failure. */
  underReplicatedAfterFailure: number | null
  unreadableAfter: number
  lostWrites: number
  wallS: number
}

async function phase (prediction: boolean, scenario: Scenario, modelFile: string, o: { speed: number, blocks: number, clients: number, replicas: number }): Promise<PhaseResult> {
  const dirs: string[] = []
  const gws: ReferenceGateway[] = []
  for (let i = 1; i <= 3; i++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ferry-e2e-gw${i}-`))
    dirs.push(dir)
    const g = new ReferenceGateway({ id: `gw${i}`, dir, port: 0 })
    await g.start()
    gws.push(g)
  }
  const config = configSchema.parse({
    log: { level: 'silent' },
    sites: ['site-a', 'site-b', 'site-c'].map((name, i) => ({ name, subnets: [`127.0.${i}.0/24`] })),
    gateways: gws.map((g, i) => ({ id: g.id, url: g.url, site: ['site-a', 'site-b', 'site-c'][i] })),
    proxy: { listen: { host: '127.0.0.1', port: 0 }, trustedProxies: ['127.0.0.1/32'] },
    admin: { listen: { host: '127.0.0.1', port: 0 }, token: TOKEN },
    health: { active: { intervalMs: 500, timeoutMs: 500 }, passive: { failures: 2, baseEjectMs: 1000 } },
    dns: { enabled: false },
    // A member down for 5 s is lost: the repair copies its blocks elsewhere (30 s by default).
    replication: { factor: o.replicas, minInSync: 1, downAfterMs: 5000, repairIntervalMs: 500 },
    planner: {
      rebalancer: { enabled: false },
      health: { probeIntervalMs: 500, probeTimeoutMs: 500 },
      migration: { concurrency: 16, settleMs: 50, gracePeriodMs: 2000, recoveryIntervalMs: 1000 },
      prediction: { enabled: prediction, model: modelFile, tickMs: 500 }
    }
  })
  const node = new FerryNode({ config, roles: new Set(['proxy', 'planner']), logger: silentLogger, registry: createRegistry(false) })
  await node.start()
  const proxy = `http://127.0.0.1:${node.proxy?.address.port ?? 0}`
  const admin = `http://127.0.0.1:${node.admin.address.port}`
  const planner = node.planner as NonNullable<typeof node.planner>
  while (!planner.isLeader) await new Promise(resolve => setTimeout(resolve, 50))

  // Blocks: the hot ones (a fifth) and a third of the rest on gw1.
  const names: string[] = []
  const hot = Math.round(o.blocks / 5)
  const lastAcked = new Map<string, string>()
  for (let i = 0; i < o.blocks; i++) {
    const b = i < hot ? `hot${i}` : `b${i}`
    const gw = i < hot || i % 3 === 0 ? 'gw1' : i % 3 === 1 ? 'gw2' : 'gw3'
    // The set: gw first, then the next gateways in turn (distinct sites).
    const members = Array.from({ length: o.replicas }, (_, k) => `gw${((Number(gw.slice(2)) - 1 + k) % 3) + 1}`)
    await node.store.casLocation('vol', b, 0, { gateway: gw, members, inSync: members })
    const body = `v0 ${b} `.padEnd(4096, '.')
    const res = await request(`${proxy}/vol/${b}`, { method: 'PUT', body })
    await res.body.dump()
    if (res.statusCode >= 300) throw new Error(`seeding ${b}: ${res.statusCode}`)
    lastAcked.set(b, body)
    names.push(b)
  }
  console.log(`  ${prediction ? 'ON' : 'OFF'}: ${o.blocks} blocks seeded`)
  for (let i = 0; planner.fleet.blocksOn('gw1').length < hot; i++) {
    if (i > 200) throw new Error(`the planner sees ${planner.fleet.blocksOn('gw1').length} blocks on gw1, expected ≥ ${hot}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  const blocksOnGw1AtStart = planner.fleet.blocksOn('gw1').length

  const timeline = parseFaultTimeline(JSON.parse(JSON.stringify(scenario)))
  const onsetMs = (scenario.onsetS as number) * 1000
  const failureMs = timeline.failureAtMs as number
  const driver = new ScenarioDriver({ target: gws[0] as ReferenceGateway, timeline, speed: o.speed, startAtMs: onsetMs - 700_000, end: 'crash' })
  let failureWall = 0
  let movedBeforeFailure = 0
  let hotMovedBeforeFailure = 0
  let onGw1AtFailure = 0
  driver.on('step', (_i, _f, atMs) => {
    if (atMs >= failureMs && failureWall === 0) {
      failureWall = Date.now()
      onGw1AtFailure = planner.fleet.blocksOn('gw1').length
      void node.store.listMigrations({ limit: 100_000 }).then(list => {
        const moved = list.filter(m => m.from === 'gw1' && m.result === 'ok' && m.endedAt !== null && m.endedAt <= failureWall)
        movedBeforeFailure = moved.length
        hotMovedBeforeFailure = moved.filter(m => m.block.startsWith('hot')).length
      })
    }
  })
  const started = Date.now()
  await driver.start()
  const feed = new ScenarioTelemetryFeed({ driver, timeline, gateway: 'gw1', sink: httpTelemetrySink(admin, TOKEN), pushIntervalMs: 250 })
  await feed.start()

  // The workload: `clients` loops, 70% of requests on the hot blocks, one write in five.
  let stop = false
  let requests = 0
  let failed = 0
  let failedAfter = 0
  let failedReads = 0
  let failedWrites = 0
  let n = 0
  const client = async (): Promise<void> => {
    while (!stop) {
      const k = n++
      const b = names[Math.random() < 0.7 ? k % hot : hot + (k % (o.blocks - hot))] as string
      const write = Math.random() < 0.2
      let ok = false
      const body = write ? `v${k} ${b} `.padEnd(4096, '.') : ''
      try {
        const res = await request(`${proxy}/vol/${b}`, write ? { method: 'PUT', body, headersTimeout: 5000, bodyTimeout: 5000 } : { headersTimeout: 5000, bodyTimeout: 5000 })
        await res.body.dump()
        ok = res.statusCode < 300
      } catch { ok = false }
      requests++
      if (ok && write) lastAcked.set(b, body)
      if (!ok) {
        failed++
        if (write) failedWrites++; else failedReads++
        if (failureWall > 0) failedAfter++
      }
    }
  }
  const clients = Array.from({ length: o.clients }, client)
  const progress = setInterval(() => { console.log(`  story ${Math.round(driver.storyMs() / 1000)} s: ${requests} requests, ${failed} failed; on gw1 ${planner.fleet.blocksOn('gw1').length}; gw1 ${planner.health.gateway('gw1').state as string}`) }, 10_000)
  await driver.done()
  clearInterval(progress)
  await new Promise(resolve => setTimeout(resolve, 2000))
  // R ≥ 2: the workload keeps running while the repair restores R (gw1 is lost after downAfterMs).
  let restoreRMs: number | null = null
  let underAfter: number | null = null
  if (o.replicas > 1 && failureWall > 0) {
    for (const until = Date.now() + 120_000; Date.now() < until; await new Promise(resolve => setTimeout(resolve, 100))) {
      const v = planner.repair.view()
      if (v.lastPassAt === null || v.lastPassAt <= failureWall) continue
      underAfter ??= v.underReplicated
      // Restored: no block lacks a copy, and gw1 (lost, or evacuated before it failed) is in no set.
      if (v.underReplicated === 0 && planner.fleet.blocksOn('gw1').length === 0) { restoreRMs = v.lastPassAt - failureWall; break }
    }
  }
  stop = true
  await Promise.all(clients)
  await feed.stop()

  const trigger = planner.health.decisions({ gateway: 'gw1' }).reverse().find(d => d.event === 'trigger')
  const triggeredStoryS = trigger === undefined ? null : Math.round(driver.storyMs(trigger.at) / 1000 - 0)
  const wallAt = trigger?.at ?? 0
  let unreadable = 0
  let lost = 0
  for (const b of names) {
    const res = await request(`${proxy}/vol/${b}`).catch(() => null)
    const text = res === null ? null : await res.body.text()
    if (res === null || res.statusCode !== 200) unreadable++
    else if (text !== lastAcked.get(b)) lost++
  }
  const result: PhaseResult = {
    prediction,
    requests,
    failed,
    failedAfterFailure: failedAfter,
    failedReads,
    failedWrites,
    triggeredStoryS,
    leadTimeStoryS: triggeredStoryS === null ? null : Math.round(failureMs / 1000 - triggeredStoryS),
    leadTimeWallS: trigger === undefined || failureWall === 0 ? null : Math.round((failureWall - wallAt) / 100) / 10,
    blocksOnGw1AtStart,
    blocksMovedBeforeFailure: movedBeforeFailure,
    hotMovedBeforeFailure,
    blocksOnGw1AtFailure: onGw1AtFailure,
    restoreRMs,
    underReplicatedAfterFailure: underAfter,
    unreadableAfter: unreadable,
    lostWrites: lost,
    wallS: Math.round((Date.now() - started) / 1000)
  }
  await node.stop()
  await Promise.all(gws.map(g => g.kill()))
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
  return result
}

export default async function run (args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { speed: { type: 'string' }, seed: { type: 'string' }, blocks: { type: 'string' }, clients: { type: 'string' }, replicas: { type: 'string' } } })
  const speed = Number(values.speed ?? 20)
  const blocks = Number(values.blocks ?? 300)
  const clients = Number(values.clients ?? 8)
  const replicas = Number(values.replicas ?? 1)
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 3) throw new Error('--replicas: 1, 2 or 3 (three gateways)')
  const scenario = pickScenario(Number(values.seed ?? 1), 1800)
  // A model trained on a healthy fleet it never sees again (as `ferry train` on history would).
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-e2e-model-'))
  const modelFile = path.join(tmp, 'model.json')
  HealthModel.train([901, 902, 903].flatMap(seed => scenarioRecords(generateScenario('healthy', { seed, gateway: `train-${seed}`, durationS: 5400 })))).save(modelFile)
  console.log(`scenario ${scenario.name}: onset ${scenario.onsetS} s, failure ${scenario.failureS} s; replayed ×${speed} from ${(scenario.onsetS as number) - 700} s`)
  const off = await phase(false, scenario, modelFile, { speed, blocks, clients, replicas })
  console.log('prediction OFF', off)
  const on = await phase(true, scenario, modelFile, { speed, blocks, clients, replicas })
  console.log('prediction ON ', on)
  fs.rmSync(tmp, { recursive: true, force: true })
  const file = writeResult(replicas === 1 ? 'health-e2e' : `health-e2e-r${replicas}`, {
    scenario: { name: scenario.name, kind: scenario.kind, seed: scenario.seed, onsetS: scenario.onsetS, failureS: scenario.failureS, replayFromS: (scenario.onsetS as number) - 700, speed },
    workload: { blocks, hotBlocksOnGw1: Math.round(blocks / 5), clients, writeFraction: 0.2, hotFraction: 0.7, blockBytes: 4096, replicas },
    predictionOff: off,
    predictionOn: on,
    target: { failedWithPredictionOn: 0, met: on.failed === 0 }
  })
  const restore = replicas === 1 ? '' : `; R = ${replicas} restored ${off.restoreRMs ?? '—'} ms (OFF) / ${on.restoreRMs ?? '—'} ms (ON) after the failure`
  console.log(`failed client requests: prediction OFF ${off.failed} of ${off.requests}, ON ${on.failed} of ${on.requests}; lead time ${on.leadTimeStoryS} s story (${on.leadTimeWallS} s wall); ${on.blocksMovedBeforeFailure} blocks moved before the failure${restore}\n${file}`)
}
