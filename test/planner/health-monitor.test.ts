import t, { type Test } from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { createRegistry } from '../../lib/metrics.js'
import { silentLogger } from '../../lib/log.js'
import { generateScenario, HealthModel, scenarioRecords, type Scenario } from '../../planner/health/index.js'
import type { HealthDecision } from '../../planner/health-monitor.js'
import type { PredictionConfigInput } from '../../planner/config.js'
import { Planner } from '../../planner/planner.js'
import { AdminServer } from '../../admin/server.js'
import { registerPlannerAdmin } from '../../planner/admin-routes.js'
import type { StateStore, TelemetrySample } from '../../state/types.js'
import { TEST_ADMIN_TOKEN } from '../helpers/ferry.js'
import { waitFor } from '../helpers/net.js'
import { get, put, rig, testPlannerConfig, waitLeader, type Rig } from './migration/harness.js'

// JSON answers are checked with t.match against their documented shape.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any

/**
 * A model trained on a healthy fleet the tests never show it (ids train-*), as `ferry train`
 * would make from history. Trained once per test file.
 */
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-health-monitor-'))
t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
const trainingRecords = [201, 202, 203].flatMap(seed => scenarioRecords(generateScenario('healthy', { seed, gateway: `train-${seed}`, durationS: 5400 })))
const trained = HealthModel.train(trainingRecords)
const modelFile = path.join(dir, 'model.json')
trained.save(modelFile)

/** Scenario time → store time: the story is replayed a few hours back, within the store's age limit. */
const BASE = Date.now() - 4 * 3600_000

function stored (s: Scenario, from: number, to: number): TelemetrySample[] {
  const out: TelemetrySample[] = []
  for (const x of s.samples) {
    const tS = (x.timestamp - s.start) / 1000
    if (tS < from || tS >= to) continue
    const { timestamp, ...signals } = x
    out.push({ at: BASE + (timestamp - s.start), ...(signals as Record<string, number>) })
  }
  return out
}

/** Feeds `s` to `gateway` from `from` to `to` (scenario seconds), `step` seconds per tick; `onTick` may stop early. */
async function replay (p: Planner, store: StateStore, feeds: Array<{ gateway: string, s: Scenario }>, from: number, to: number, step: number, onTick?: (tS: number) => boolean | Promise<boolean>): Promise<number | null> {
  for (let tS = from; tS < to; tS += step) {
    for (const f of feeds) {
      const batch = stored(f.s, tS, tS + step)
      if (batch.length > 0) await store.appendTelemetry(f.gateway, batch)
    }
    await p.health.tick()
    if (onTick !== undefined && await onTick(tS + step)) return tS + step
  }
  return null
}

async function plannerWithAdmin (t: Test, r: Rig, prediction: PredictionConfigInput): Promise<{ p: Planner, admin: AdminServer, base: string }> {
  const admin = new AdminServer({ host: '127.0.0.1', port: 0, registry: createRegistry(false), token: TEST_ADMIN_TOKEN, logger: silentLogger })
  await admin.listen()
  t.teardown(() => admin.close())
  // The ticks are driven by the test (tickMs of an hour): behaviour, not timing.
  const p = new Planner({
    config: { gateways: r.config.gateways, sites: r.config.sites, planner: testPlannerConfig({ prediction: { tickMs: 3_600_000, ...prediction } }), state: r.config.state },
    store: r.store,
    logger: silentLogger
  })
  registerPlannerAdmin(admin, p)
  await p.start()
  t.teardown(() => p.stop())
  await waitLeader(p)
  return { p, admin, base: `http://127.0.0.1:${admin.address.port}` }
}

async function getJson (url: string): Promise<{ status: number, json: Json }> {
  const res = await request(url)
  return { status: res.statusCode, json: await res.body.json() }
}

const leak = generateScenario('memory_leak', { seed: 7, gateway: 'gw1' })
const calm = [generateScenario('healthy', { seed: 301, durationS: 7200 }), generateScenario('healthy', { seed: 302, durationS: 7200 }), generateScenario('healthy', { seed: 303, durationS: 7200 })]

t.test('a gateway whose telemetry degrades is evacuated, hottest blocks first, before it fails; no acknowledged write is lost', async t => {
  const r = await rig(t)
  const { p, admin, base } = await plannerWithAdmin(t, r, { model: modelFile })
  const proxy = await r.proxy()
  // 24 blocks on gw1, 6 on gw2; the hot ones (h*) are read often, so they score higher.
  const blocks: string[] = []
  for (let i = 0; i < 30; i++) {
    const b = i < 6 ? `h${i}` : `c${i}`
    t.ok((await r.store.casLocation('vol', b, 0, { gateway: i < 24 ? 'gw1' : 'gw2' })).ok)
    t.equal((await put(`${proxy.url}/vol/${b}`, `v0 ${b}`)).status, 201)
    blocks.push(b)
  }
  for (let k = 0; k < 8; k++) for (let i = 0; i < 6; i++) t.equal((await get(`${proxy.url}/vol/h${i}`)).status, 200)
  await waitFor(async () => (await p.targets.score('vol', 'h5')) > (await p.targets.score('vol', 'c6')), 'access scores of the hot blocks')
  await waitFor(() => p.fleet.blocksOn('gw1').length === 24, 'the planner to see the placement')

  const onset = leak.onsetS as number
  const failure = leak.failureS as number
  const feeds = [{ gateway: 'gw1', s: leak }, { gateway: 'gw2', s: calm[0]! }, { gateway: 'gw3', s: calm[1]! }]
  const triggeredAt = await replay(p, r.store, feeds, onset - 700, failure, 5, () => p.drainStatus('gw1') !== undefined)
  t.ok(triggeredAt !== null, 'the trigger fired')
  t.ok((triggeredAt as number) < failure, `${failure - (triggeredAt as number)} s of the scenario before the failure`)
  t.ok((triggeredAt as number) > onset, 'and not before the degradation began')

  const decisions = p.health.decisions({ gateway: 'gw1' })
  const trigger = decisions.find(d => d.event === 'trigger') as HealthDecision
  t.ok(trigger, 'the trigger is in the decision log')
  t.ok(trigger.inputs.score < 0.5 && trigger.inputs.confidence >= 0.5, 'with the inputs it was made from')
  t.equal(trigger.inputs.limitingSignal, 'mem_pressure', 'memory is what limits the health')
  t.ok(trigger.inputs.lower <= trigger.inputs.score && trigger.inputs.score <= trigger.inputs.upper, 'the score is inside its interval')
  const evac = decisions.find(d => d.event === 'evacuate') as HealthDecision
  t.equal(evac.evacuation?.blocks, 24, 'every block on gw1 is planned')
  t.same(evac.evacuation?.first.map(f => f.block.startsWith('h')), [true, true, true, true, true], 'hottest first')
  const scores = evac.evacuation?.first.map(f => f.score) ?? []
  t.same(scores, scores.slice().sort((a, b) => b - a), 'in order of access score')
  t.ok(evac.evacuation?.first.every(f => f.to !== 'gw1'), 'never onto the gateway at risk')
  t.notOk(p.fleet.isTarget('gw1'), 'gw1 takes no blocks while it is at risk')
  t.ok(p.health.prediction('gw1')?.unhealthy)

  // Writes keep coming while the blocks move; each acknowledged one must survive the failure.
  const acked = new Map<string, string>()
  let writing = true
  const writer = (async () => {
    for (let n = 1; writing; n++) {
      const b = blocks[n % blocks.length] as string
      const body = `v${n} ${b}`
      // A write that fails at the client is not acknowledged: what is asserted is that every
      // acknowledged one survives. (A CI run at load 14 saw ECONNRESET here, unhandled, which
      // failed the file; likely a keep-alive socket the proxy closed at its 5 s idle timeout as
      // undici reused it after the replay's idle seconds — a PUT is not retried — not proven.)
      const res = await put(`${proxy.url}/vol/${b}`, body).catch(() => null)
      if (res !== null && res.status < 300) acked.set(b, body)
    }
  })()
  await waitFor(() => p.drainStatus('gw1')?.state === 'drained', 'gw1 evacuated', 20_000)
  writing = false
  await writer
  await r.gws.gateways[0]!.kill() // the failure the model predicted
  for (const b of blocks) {
    const res = await get(`${proxy.url}/vol/${b}`)
    t.equal(res.status, 200, `${b} readable after gw1 failed`)
    t.equal(res.body, acked.get(b) ?? `v0 ${b}`, `${b}: the last acknowledged write`)
  }

  // The admin API shows it all.
  const h = await getJson(`${base}/v1/health`)
  t.equal(h.status, 200)
  t.match(h.json, { enabled: true, model: { source: 'file', path: modelFile }, gateways: [{ gateway: 'gw1', state: 'triggered', triggered: true, evacuating: true, lastDecision: { gateway: 'gw1' } }, { gateway: 'gw2' }, { gateway: 'gw3' }] })
  const gw1 = h.json.gateways[0]
  // Number.isFinite, not typeof: a NaN score would be a number, and would never trigger anything.
  for (const key of ['lower', 'score', 'upper', 'confidence']) t.ok(Number.isFinite(gw1[key]) && gw1[key] >= 0 && gw1[key] <= 1, `${key} in [0, 1] (${gw1[key]})`)
  t.ok(gw1.lower <= gw1.score && gw1.score <= gw1.upper, `the score lies within its interval (${gw1.lower} ≤ ${gw1.score} ≤ ${gw1.upper})`)
  t.ok(['degrading', 'stable', 'improving'].includes(gw1.trend.direction) && Number.isFinite(gw1.trend.perMinute), `a trend (${gw1.trend.direction}, ${gw1.trend.perMinute}/min)`)
  const d = await getJson(`${base}/v1/health/decisions?gateway=gw1&limit=50`)
  t.ok(d.json.decisions.some((x: HealthDecision) => x.event === 'trigger' && x.inputs.score === trigger.inputs.score), 'decisions on the admin API')
  t.match(await getJson(`${base}/v1/health/decisions?limit=-1`), { status: 400, json: { error: { code: 'FERRY_HEALTH_BAD_QUERY' } } })
  t.match(await getJson(`${base}/v1/health/gw9`), { status: 404, json: { error: { code: 'FERRY_HEALTH_UNKNOWN_GATEWAY' } } })
  t.match(await getJson(`${base}/v1/health/gw2`), { status: 200, json: { gateway: 'gw2', state: 'healthy', triggered: false } })
  t.match(admin.gatewayExtras('gw1'), { predictedHealth: { score: Number, lower: Number, upper: Number, confidence: Number, trend: { direction: String } }, trigger: 'triggered' }, '/v1/gateways fields')
  t.match(await getJson(`${base}/v1/drains`), { json: { drains: [{ gateway: 'gw1', cause: 'health' }] } })
})

t.test('healthy noise triggers nothing', async t => {
  const r = await rig(t)
  const { p, base } = await plannerWithAdmin(t, r, { model: modelFile })
  const feeds = [1, 2, 3].map(i => ({ gateway: `gw${i}`, s: calm[i - 1]! }))
  await replay(p, r.store, feeds, 0, 7200, 30)
  t.same(p.health.decisions().filter(d => d.event !== 'state'), [], 'no trigger in two hours of three noisy healthy gateways')

  // The intervals' coverage, measured live on what the planner saw: each nominal level within
  // 10 points (the bench measures it to 5 on more data).
  const h = await getJson(`${base}/v1/health`)
  const fleet = (h.json as { coverage: Array<{ level: number, measured: number | null, forecasts: number }> }).coverage
  t.same(fleet.map(c => c.level), [0.9, 0.8, 0.95], 'the model level, 80 % and 95 %')
  for (const c of fleet) {
    t.ok(c.forecasts > 1000, `${c.forecasts} matured forecasts`)
    t.ok(c.measured !== null && Math.abs(c.measured - c.level) <= 0.1, `${c.level}: measured ${String(c.measured)}`)
  }
  const gw1 = (h.json as { gateways: Array<{ gateway: string, intervals: Array<{ level: number, lower: number, upper: number }>, coverage: unknown[] }> }).gateways.find(g => g.gateway === 'gw1')
  t.same(gw1?.intervals.map(i => i.level), [0.8, 0.95])
  t.ok(gw1?.intervals.every(i => i.lower <= i.upper), 'each interval is ordered')
  t.equal(gw1?.coverage.length, 3)
  t.same(p.listDrains(), [])
  t.same(await r.store.listMigrations({ limit: 10 }), [], 'nothing moved')
  for (const g of ['gw1', 'gw2', 'gw3']) t.ok(p.fleet.isTarget(g), `${g} is a target`)
})

t.test('hysteresis: one trigger, held through the recovery, lifted once it is clear', async t => {
  const r = await rig(t)
  const { p } = await plannerWithAdmin(t, r, { model: modelFile, clearConsecutive: 10 })
  const onset = leak.onsetS as number
  const failure = leak.failureS as number
  // Degrade until triggered and a little beyond...
  const at = await replay(p, r.store, [{ gateway: 'gw1', s: leak }], onset - 700, failure, 5, () => p.health.decisions().some(d => d.event === 'trigger'))
  t.ok(at !== null, 'triggered')
  await replay(p, r.store, [{ gateway: 'gw1', s: leak }], at as number, Math.min(failure - 5, (at as number) + 30), 5)
  // ...then the gateway recovers (the leak is fixed: its telemetry is healthy again, continuing in time).
  const recovered: Scenario = { ...calm[2]!, start: calm[2]!.start - Math.round(failure * 1000) }
  const states: string[] = []
  await replay(p, r.store, [{ gateway: 'gw1', s: recovered }], failure, failure + 1800, 5, () => {
    states.push(p.health.gateway('gw1').state as string)
    return false
  })
  const events = p.health.decisions({ gateway: 'gw1' }).reverse().filter(d => d.event !== 'state').map(d => d.event)
  t.same(events, ['trigger', 'evacuate', 'clear', 'release'], 'one trigger, one clear: no flapping')
  const firstHealthy = states.indexOf('healthy')
  t.ok(firstHealthy + 1 >= 10, `held for ${firstHealthy + 1} ticks of recovery (clearConsecutive 10)`)
  t.notOk(states.slice(firstHealthy).includes('triggered'), 'and not triggered again')
  t.same(p.listDrains(), [], 'the evacuation is lifted')
  t.ok(p.fleet.isTarget('gw1'), 'gw1 may receive blocks again')
})

t.test('an operator\'s drain is not lifted by recovery', async t => {
  const r = await rig(t)
  const { p } = await plannerWithAdmin(t, r, { model: modelFile })
  await p.drain('gw2')
  t.notOk(await p.releaseEvacuation('gw2'), 'not a predictive evacuation')
  t.equal(p.drainStatus('gw2')?.cause, 'operator')
})

t.test('model hot swap: a new file is loaded, a bad one is refused and the model in use stays', async t => {
  const r = await rig(t)
  const file = path.join(dir, 'swap.json')
  trained.save(file)
  const { p } = await plannerWithAdmin(t, r, { model: file })
  t.match(p.health.modelStatus, { source: 'file', path: file, horizonS: 300, lastLoadError: null })
  HealthModel.train(trainingRecords.filter((_, i) => i % 3 === 0), { horizonS: 120 }).save(file)
  await waitFor(() => p.health.modelStatus.horizonS === 120, 'the new model to be loaded (fs.watch)', 10_000)
  t.pass('swapped on file change')
  fs.writeFileSync(file, '{"format":"ferry-health","version":99}')
  await waitFor(() => p.health.modelStatus.lastLoadError !== null, 'the bad file to be refused', 10_000)
  t.match(p.health.modelStatus, { horizonS: 120, lastLoadError: /FERRY_HEALTH_MODEL_VERSION/ }, 'the model in use stays')

  // Retraining from the stored history swaps too (and writes the file it watches).
  for (let i = 0; i < 3; i++) await r.store.appendTelemetry(`gw${i + 1}`, stored(calm[i]!, 0, 600))
  await p.health.retrain()
  t.match(p.health.modelStatus, { source: 'retrained', path: file, lastLoadError: null })
  t.equal(HealthModel.load(file).info.training.samples, p.health.modelStatus.samples, 'saved where the planner loads it from')
})

t.test('prediction disabled: nothing is scored', async t => {
  const r = await rig(t)
  const { p } = await plannerWithAdmin(t, r, { enabled: false })
  await replay(p, r.store, [{ gateway: 'gw1', s: leak }], (leak.failureS as number) - 300, leak.failureS as number, 30)
  t.same(p.health.decisions(), [])
  t.equal(p.health.prediction('gw1'), undefined)
})
