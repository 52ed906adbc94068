import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { generateScenario } from '../../planner/health/index.js'
import { loadFaultTimeline, parseFaultTimeline, remoteFaults, ScenarioDriver, ScenarioTelemetryFeed, type ScenarioSample } from '../../gateway/scenario.js'
import type { FaultsInput } from '../../gateway/faults.js'
import { startGateways } from '../helpers/gateway.js'
import { waitFor } from '../helpers/net.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-scenario-'))
t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
const file = (name: string, text: string): string => { const f = path.join(dir, name); fs.writeFileSync(f, text); return f }

t.test('scenario files are validated with errors that name the problem', async t => {
  t.throws(() => loadFaultTimeline(path.join(dir, 'missing.json')), { code: 'FERRY_SCENARIO_UNREADABLE' })
  t.throws(() => loadFaultTimeline(file('bad.json', '{"steps": [')), { code: 'FERRY_SCENARIO_INVALID', message: /not valid JSON/ })
  t.throws(() => parseFaultTimeline({ steps: [] }), { code: 'FERRY_SCENARIO_INVALID', message: /steps: needs at least one step/ })
  t.throws(() => parseFaultTimeline({ steps: [{ atMs: 0, faults: { latencyMS: 5 } }] }), { code: 'FERRY_SCENARIO_INVALID', message: /steps\.0\.faults: Unrecognized key.*latencyMS/ }, 'a misspelt fault is an error')
  t.throws(() => parseFaultTimeline({ steps: [{ atMs: 0, faults: { errorRate: 2 } }] }), { code: 'FERRY_SCENARIO_INVALID', message: /steps\.0\.faults\.errorRate/ })
  t.throws(() => parseFaultTimeline({ steps: [{ atMs: -1, faults: {} }] }), { code: 'FERRY_SCENARIO_INVALID', message: /steps\.0\.atMs/ })
  t.throws(() => parseFaultTimeline({ steps: [{ atMs: 10, faults: {} }, { atMs: 5, faults: {} }] }), { code: 'FERRY_SCENARIO_INVALID', message: /steps\.1\.atMs: steps must be in time order/ })
  t.throws(() => parseFaultTimeline({ format: 'ferry-scenario', version: 2 }), { code: 'FERRY_SCENARIO_INVALID', message: /version/ })
  t.throws(() => parseFaultTimeline([1, 2]), { code: 'FERRY_SCENARIO_INVALID' })

  const ok = parseFaultTimeline({ name: 'slow', steps: [{ atMs: 0, faults: {} }, { atMs: 100, faults: { latencyMs: 5 } }] })
  t.match(ok, { name: 'slow', durationMs: 100, failureAtMs: null, samples: [] })

  // A health scenario export is a scenario file too: its fault steps and its telemetry.
  const s = generateScenario('cpu_saturation', { seed: 3, gateway: 'gw1' })
  const h = loadFaultTimeline(file('health.json', JSON.stringify(s)))
  t.equal(h.steps.length, s.faults.length)
  t.equal(h.steps[1]?.atMs, s.faults[1]!.atS * 1000)
  t.equal(h.failureAtMs, Math.round(s.failureS! * 1000))
  t.equal(h.samples.length, s.samples.length)
  t.equal(h.samples[0]?.tMs, 0)
})

t.test('a driver applies the steps in order, holds the last, and stop() clears them', async t => {
  const applied: FaultsInput[] = []
  const target = { setFaults: async (f: FaultsInput) => { applied.push(f) } }
  const timeline = parseFaultTimeline({ steps: [0, 1, 2, 3, 4].map(i => ({ atMs: i * 1000, faults: { latencyMs: i * 10 } })) })
  const d = new ScenarioDriver({ target, timeline, speed: 100 })
  const order: number[] = []
  d.on('step', i => order.push(i))
  await d.start()
  await d.done()
  t.same(order, [0, 1, 2, 3, 4], 'every step, in order')
  t.same(applied.map(f => f.latencyMs), [0, 10, 20, 30, 40])
  await d.stop()
  t.same(applied.at(-1), {}, 'cleared on stop')
  t.throws(() => new ScenarioDriver({ target, timeline, speed: 0 }), { code: 'FERRY_SCENARIO_BAD_OPTIONS' })
})

t.test('startAtMs applies the state at that point first', async t => {
  const applied: FaultsInput[] = []
  const timeline = parseFaultTimeline({ steps: [0, 1, 2, 3].map(i => ({ atMs: i * 1000, faults: { errorRate: i / 10 } })) })
  const d = new ScenarioDriver({ target: { setFaults: async (f: FaultsInput) => { applied.push(f) } }, timeline, speed: 100, startAtMs: 2500 })
  await d.start()
  await d.done()
  t.same(applied.map(f => f.errorRate), [0.2, 0.3], 'the step in force at 2.5 s, then the rest')
})

t.test('on a real gateway: faults change behaviour on schedule, then the scenario ends with a crash', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const gw = g.gateways[0]!
  await request(`${gw.url}/v/b`, { method: 'PUT', body: 'x' }).then(r => r.body.dump())
  // Healthy, then every request fails, then the process dies. The middle step is long enough to observe.
  const timeline = parseFaultTimeline({ steps: [{ atMs: 0, faults: {} }, { atMs: 100, faults: { errorRate: 1 } }, { atMs: 60_000, faults: { errorRate: 1 } }] })
  const d = new ScenarioDriver({ target: gw, timeline, speed: 1, end: 'crash' })
  let phase = 0
  d.on('step', i => { phase = i })
  await d.start()
  // Observed with no step change during the request, so the step in force is known (on a loaded
  // machine the second step may already be due by the time the request is answered).
  for (;;) {
    const before = phase
    const first = await request(`${gw.url}/v/b`)
    await first.body.dump()
    if (phase !== before) continue
    t.equal(first.statusCode, before === 0 ? 200 : 503, `the step in force (${before}) decides the answer`)
    break
  }
  await waitFor(() => d.applied >= 1, 'the second step')
  const second = await request(`${gw.url}/v/b`)
  t.equal(second.statusCode, 503, 'errorRate 1 after the second step')
  t.match(await second.body.json(), { error: { code: 'FAULT_INJECTED' } })
  await d.stop()
  t.same(gw.faults.errorRate, 0, 'stopped: faults cleared')

  // crash: at speed, the same story ends with the gateway dead.
  const crashing = new ScenarioDriver({ target: gw, timeline, speed: 10_000, end: 'crash' })
  const crashed = new Promise<void>(resolve => crashing.once('crash', () => resolve()))
  await crashing.start()
  await crashed
  t.notOk(gw.running, 'the gateway was killed')
  await t.rejects(request(`${gw.url}/v/b`), 'nothing answers')
})

t.test('remote target: PUT /faults on the admin listener', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const gw = g.gateways[0]!
  const timeline = parseFaultTimeline({ steps: [{ atMs: 0, faults: { latencyMs: 7 } }, { atMs: 10, faults: { jitterMs: 3 } }] })
  const d = new ScenarioDriver({ target: remoteFaults(gw.adminUrl), timeline, speed: 1, clearOnStop: false })
  await d.start()
  await d.done()
  t.match(gw.faults, { latencyMs: 0, jitterMs: 3 }, 'each step replaces the whole set')
  await t.rejects(remoteFaults(gw.adminUrl).setFaults({ stall: 'yes' } as unknown as FaultsInput), { code: 'FERRY_SCENARIO_FAULTS_REFUSED' })
})

t.test('telemetry feed (simulation): the story\'s samples, in order, stamped on its own clock ending now', async t => {
  const s = generateScenario('memory_leak', { seed: 5, gateway: 'gw1' })
  const timeline = parseFaultTimeline(JSON.parse(JSON.stringify(s)))
  const pushes: ScenarioSample[][] = []
  const startAtMs = Math.max(0, timeline.durationMs - 20_000)
  const d = new ScenarioDriver({ target: { setFaults: async () => {} }, timeline, speed: 1000, startAtMs })
  await d.start()
  const feed = new ScenarioTelemetryFeed({ driver: d, timeline, gateway: 'gw1', sink: async (_gw, batch) => { pushes.push(batch) }, pushIntervalMs: 5 })
  const before = Date.now()
  await feed.start()
  await d.done()
  await feed.flush()
  await feed.stop()
  const all = pushes.flat()
  t.equal(all.length, s.samples.length, 'every sample, the history before startAtMs included (backfill)')
  t.ok(all.every((x, i) => i === 0 || x.at > all[i - 1]!.at), 'in time order')
  t.ok(all.at(-1)!.at <= Date.now() + 1000 && all.at(-1)!.at >= before - 1000, 'the last one stamped about now')
  t.equal(all.at(-1)!.at - all[0]!.at, s.samples.at(-1)!.timestamp - s.samples[0]!.timestamp, 'spaced as in the story')
  t.equal(all[10]!.mem_pressure, s.samples[10]!.mem_pressure, 'the story\'s values')
})
