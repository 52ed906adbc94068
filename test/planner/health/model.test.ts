import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { HealthModel, MODEL_VERSION, signalHealth } from '../../../planner/health/model.js'
import { generateScenario, scenarioRecords, PRECURSOR_KINDS } from '../../../planner/health/scenarios.js'
import { evaluateModel } from '../../../planner/health/evaluate.js'
import { TriggerPolicy } from '../../../planner/health/trigger.js'
import { ferryNabScores } from '../../../planner/health/nab-detector.js'
import { probationLength } from '../../../planner/health/nab.js'
import type { TelemetryRecord } from '../../../planner/health/types.js'

// One fleet history shared by the tests: three healthy gateways, three hours each.
const history: TelemetryRecord[] = []
for (let s = 0; s < 3; s++) history.push(...scenarioRecords(generateScenario('healthy', { seed: 500 + s, durationS: 3 * 3600, gateway: `train-${s}` })))
const trained = HealthModel.train(history)
const fresh = (): HealthModel => HealthModel.fromJSON(trained.toJSON())

t.test('training learns a healthy band per signal, below the failure level', async t => {
  const file = trained.toJSON()
  t.equal(file.format, 'ferry-health')
  t.equal(file.version, MODEL_VERSION)
  t.equal(file.training.gateways, 3)
  t.equal(file.params.sampleIntervalS, 1)
  for (const spec of file.params.signals) {
    const s = file.signals[spec.name]
    t.ok(s, `${spec.name} learned`)
    if (s === undefined || spec.limit === undefined) continue
    t.ok(s.profile.hi < spec.limit, `${spec.name}: healthy band ${s.profile.hi} below the failure level ${spec.limit}`)
    t.ok(s.profile.median <= s.profile.hi)
  }
  t.throws(() => HealthModel.train([]), { code: 'FERRY_HEALTH_NO_DATA' })
  t.throws(() => HealthModel.train([{ timestamp: 1, gateway: 'g' }]), { code: 'FERRY_HEALTH_NO_DATA' })
})

t.test('the health map is 1 in the band, 0 at the failure level, monotone between', async t => {
  const spec = { name: 'cpu', direction: 'up' as const, limit: 0.9 }
  const profile = { median: 0.3, lo: 0.1, hi: 0.5, count: 100 }
  t.equal(signalHealth(spec, profile, 0.4), 1)
  t.equal(signalHealth(spec, profile, 0.95), 0)
  t.ok(Math.abs(signalHealth(spec, profile, 0.7) - 0.5) < 1e-12)
  t.equal(signalHealth({ name: 'x', direction: 'both' }, profile, 1e9), 1, 'no failure level: no contribution')
})

t.test('a healthy gateway the model has never seen scores high, with confidence', async t => {
  const m = fresh()
  const sc = generateScenario('healthy', { seed: 77, durationS: 2 * 3600 })
  const scores: number[] = []
  const confidences: number[] = []
  let outside = 0
  for (const [i, s] of sc.samples.entries()) {
    const a = m.score(sc.gateway, [s])
    if (!(a.lower <= a.score + 1e-12 && a.score <= a.upper + 1e-12 && a.lower >= 0 && a.upper <= 1)) outside++
    if (i < 600) continue // warm-up: the trend window fills
    scores.push(a.score)
    confidences.push(a.confidence)
  }
  t.equal(outside, 0, 'every score inside its interval, inside [0, 1]')
  scores.sort((a, b) => a - b)
  confidences.sort((a, b) => a - b)
  t.ok((scores[Math.floor(scores.length / 2)] as number) > 0.9, `median score ${scores[Math.floor(scores.length / 2)]}`)
  t.ok((scores[Math.floor(scores.length * 0.05)] as number) > 0.6, `5th percentile score ${scores[Math.floor(scores.length * 0.05)]}`)
  t.ok((confidences[Math.floor(confidences.length / 2)] as number) > 0.8, 'confident most of the time')
})

t.test('degradations: the score falls and the trigger fires before the failure', async t => {
  for (const kind of PRECURSOR_KINDS) {
    for (const seed of [3, 4]) {
      const sc = generateScenario(kind, { seed })
      const m = fresh()
      const policy = new TriggerPolicy()
      const failAt = sc.start + (sc.failureS as number) * 1000
      const onsetAt = sc.start + (sc.onsetS as number) * 1000
      let triggerAt: number | undefined
      let falseBeforeOnset = 0
      let scoreAtOnset = 1
      let scoreBeforeFailure = 1
      for (const s of sc.samples) {
        if (s.timestamp >= failAt) break
        const a = m.score(sc.gateway, [s])
        const d = policy.update(a)
        if (d.event === 'trigger') {
          if (s.timestamp < onsetAt) falseBeforeOnset++
          else triggerAt ??= s.timestamp
        }
        if (s.timestamp <= onsetAt) scoreAtOnset = a.score
        if (s.timestamp <= failAt - 60_000) scoreBeforeFailure = a.score
      }
      t.equal(falseBeforeOnset, 0, `${sc.name}: no trigger during the healthy prefix`)
      t.ok(scoreBeforeFailure < 0.5 && scoreBeforeFailure < scoreAtOnset, `${sc.name}: score ${scoreAtOnset.toFixed(2)} at onset, ${scoreBeforeFailure.toFixed(2)} a minute before failure`)
      t.ok(triggerAt !== undefined && failAt - triggerAt >= 60_000, `${sc.name}: triggered ${triggerAt === undefined ? 'never' : ((failAt - triggerAt) / 1000).toFixed(0) + ' s'} before failure`)
    }
  }
})

t.test('a burst while the model warms up does not trigger', async t => {
  // A gateway seen for the first time: 6 minutes in, a two-minute CPU burst close to the
  // failure level. With half a window of history a trend would extrapolate the burst.
  const m = fresh()
  const policy = new TriggerPolicy()
  const start = Date.UTC(2024, 0, 1)
  let triggers = 0
  for (let i = 0; i < 1200; i++) {
    const burst = i >= 240 && i < 360 ? 0.6 : 0
    const a = m.score('new', [{ timestamp: start + i * 1000, cpu: 0.3 + burst + 0.02 * Math.sin(i / 7), mem_pressure: 0.3, disk_util: 0.2, disk_await_ms: 3, net_latency_ms: 1, probe_latency_ms: 10, probe_error_rate: 0 }])
    if (policy.update(a).event === 'trigger') triggers++
    if (i === 100) t.ok(a.confidence < 0.5, `little confidence on 100 s of data (${a.confidence.toFixed(2)})`)
  }
  t.equal(triggers, 0)
})

t.test('intervals contain the truth at about the nominal rate on held-out data', async t => {
  const heldOut: TelemetryRecord[] = []
  for (let s = 0; s < 2; s++) heldOut.push(...scenarioRecords(generateScenario('healthy', { seed: 900 + s, durationS: 2 * 3600 })))
  const report = evaluateModel(trained, heldOut, { stride: 5 })
  t.equal(report.level, 0.9)
  const coverages = Object.values(report.coverage.signals).map(s => s.coverage)
  const mean = coverages.reduce((a, b) => a + b, 0) / coverages.length
  t.ok(Math.abs(mean - 0.9) < 0.05, `mean signal coverage ${mean.toFixed(3)} (nominal 0.9)`)
  for (const [name, s] of Object.entries(report.coverage.signals)) t.ok(s.coverage > 0.75 && s.coverage <= 1, `${name}: ${s.coverage.toFixed(3)}`)
  t.ok(report.coverage.health >= 0.85, `health interval coverage ${report.coverage.health.toFixed(3)}`)
  t.equal(report.failures.count, 0)
  t.equal(report.falseTriggers.count, 0, 'no trigger on healthy held-out telemetry')
})

t.test('scores are causal: appending future samples does not change past scores', async t => {
  const sc = generateScenario('memory_leak', { seed: 9 })
  const cut = Math.floor(sc.samples.length * 0.6)
  const run = (samples: typeof sc.samples): number[] => {
    const m = fresh()
    return samples.map(s => m.score(sc.gateway, [s]).score)
  }
  const prefix = run(sc.samples.slice(0, cut))
  const full = run(sc.samples)
  t.same(full.slice(0, cut), prefix)

  const values = Array.from({ length: 3000 }, (_, i) => Math.sin(i / 20) + (i > 2500 ? 3 : 0))
  const times = values.map((_, i) => new Date(Date.UTC(2020, 0, 1) + i * 300_000).toISOString().slice(0, 19).replace('T', ' '))
  // NAB tells a detector the probationary period of the whole file (15 % of its rows): the
  // prefix run is told the same one, and then nothing else about the future reaches row i.
  const probation = probationLength(values.length)
  const nabPrefix = ferryNabScores(times.slice(0, 2000), values.slice(0, 2000), {}, probation)
  const nabFull = ferryNabScores(times, values, {}, probation)
  t.same(Array.from(nabFull.slice(0, 2000)), Array.from(nabPrefix), 'the NAB detector too')
  t.ok(Math.max(...nabFull.slice(2500, 2510)) > Math.max(...nabFull.slice(1000, 2500)), 'and it sees the level shift')
})

t.test('score() takes in only samples newer than those it has seen', async t => {
  const sc = generateScenario('disk_latency', { seed: 2 })
  const a = fresh()
  const b = fresh()
  const one: number[] = []
  const overlapping: number[] = []
  for (let i = 0; i < 1500; i++) {
    one.push(a.score('g', [sc.samples[i] as typeof sc.samples[0]]).score)
    // The planner passes the last 30 samples every tick, newest first: same result.
    overlapping.push(b.score('g', sc.samples.slice(Math.max(0, i - 29), i + 1).reverse()).score)
  }
  t.same(overlapping, one)
  const last = b.score('g', [])
  t.equal(last.samples, 1500)
  t.equal(fresh().score('nobody').confidence, 0, 'no data: no confidence')
})

t.test('the model file round-trips, and a bad file is a typed error', async t => {
  const dir = t.testdir({})
  const file = path.join(dir, 'model.json')
  trained.save(file)
  const loaded = HealthModel.load(file)
  t.same(loaded.toJSON(), JSON.parse(JSON.stringify(trained.toJSON())))
  const sc = generateScenario('cpu_saturation', { seed: 5 })
  const x = HealthModel.load(file)
  const y = fresh()
  const sx = sc.samples.map(s => x.score(sc.gateway, [s]).score)
  const sy = sc.samples.map(s => y.score(sc.gateway, [s]).score)
  t.same(sx, sy, 'a loaded model scores exactly like the trained one')

  const text = fs.readFileSync(file, 'utf8')
  const write = (name: string, content: string): string => { const f = path.join(dir, name); fs.writeFileSync(f, content); return f }
  t.throws(() => HealthModel.load(write('truncated.json', text.slice(0, text.length / 2))), { code: 'FERRY_HEALTH_MODEL_CORRUPT' })
  t.throws(() => HealthModel.load(path.join(dir, 'missing.json')), { code: 'FERRY_HEALTH_MODEL_UNREADABLE' })
  const data = JSON.parse(text) as Record<string, unknown>
  t.throws(() => HealthModel.load(write('v99.json', JSON.stringify({ ...data, version: 99 }))), { code: 'FERRY_HEALTH_MODEL_VERSION' })
  t.throws(() => HealthModel.load(write('other.json', JSON.stringify({ ...data, format: 'something-else' }))), { code: 'FERRY_HEALTH_MODEL_FORMAT' })
  t.throws(() => HealthModel.load(write('array.json', '[1,2,3]')), { code: 'FERRY_HEALTH_MODEL_FORMAT' })
  const broken = JSON.parse(text) as { params: { horizonS: unknown }, signals: Record<string, { errors: number[] }> }
  broken.params.horizonS = -5
  t.throws(() => HealthModel.load(write('negative.json', JSON.stringify(broken))), { code: 'FERRY_HEALTH_MODEL_CORRUPT' })
  const short = JSON.parse(text) as { signals: Record<string, { errors: number[] }> }
  ;(short.signals.cpu as { errors: number[] }).errors = [1, 2]
  t.throws(() => HealthModel.load(write('short.json', JSON.stringify(short))), { code: 'FERRY_HEALTH_MODEL_CORRUPT' })
})
