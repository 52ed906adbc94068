import t from 'tap'
import { generateScenario, parseScenario, scenarioRecords, SCENARIO_KINDS, PRECURSOR_KINDS } from '../../../planner/health/scenarios.js'
import { SIGNALS } from '../../../planner/health/types.js'

t.test('scenarios are reproducible from their seed', async t => {
  for (const kind of SCENARIO_KINDS) {
    const a = generateScenario(kind, { seed: 12 })
    const b = generateScenario(kind, { seed: 12 })
    const c = generateScenario(kind, { seed: 13 })
    t.equal(JSON.stringify(a), JSON.stringify(b), `${kind}: same seed, same scenario`)
    t.not(JSON.stringify(a.samples.slice(0, 50)), JSON.stringify(c.samples.slice(0, 50)), `${kind}: another seed, another gateway`)
  }
})

t.test('failures come with their time, precursors only where promised', async t => {
  for (const kind of SCENARIO_KINDS) {
    const s = generateScenario(kind, { seed: 4, durationS: 1800 })
    t.equal(s.hasPrecursor, PRECURSOR_KINDS.includes(kind))
    if (kind === 'healthy') {
      t.equal(s.failureS, null)
      t.equal(s.samples.length, 1801)
      t.ok(s.samples.every(x => (x.probe_error_rate as number) < 1), 'a healthy gateway never goes down')
      continue
    }
    const f = s.failureS as number
    t.ok(f > 1200, `${kind} fails after the healthy prefix (${f.toFixed(0)} s)`)
    const after = s.samples.filter(x => x.timestamp >= s.start + f * 1000)
    t.ok(after.length > 0 && after.every(x => x.probe_error_rate === 1 && x.probe_latency_ms === undefined), `${kind}: after the failure the probes fail`)
    const before = s.samples.filter(x => x.timestamp < s.start + f * 1000)
    t.ok(before.every(x => SIGNALS.every(k => typeof x[k] === 'number')), `${kind}: before it, every signal is reported`)
    if (s.hasPrecursor) {
      const onset = s.onsetS as number
      t.ok(onset < f, `${kind}: onset before failure`)
      const last = before[before.length - 1] as typeof before[0]
      const first = before[Math.floor(onset)] as typeof before[0]
      const signal = kind === 'memory_leak' ? 'mem_pressure' : kind === 'disk_latency' ? 'disk_await_ms' : 'cpu'
      t.ok((last[signal] as number) > 2 * (first[signal] as number) || (last[signal] as number) > 0.94, `${kind}: ${signal} degrades from ${first[signal]} to ${last[signal]}`)
    } else t.equal(s.onsetS, null)
  }
})

t.test('scenarios export as data for fault injection', async t => {
  const s = generateScenario('disk_latency', { seed: 8 })
  const copy = parseScenario(JSON.parse(JSON.stringify(s)))
  t.equal(JSON.stringify(copy), JSON.stringify(s))
  t.ok(s.faults.length > 10)
  t.ok(s.faults.every((f, i) => i === 0 || f.atS > (s.faults[i - 1] as typeof f).atS), 'fault steps in time order')
  const lastHealthy = s.faults.filter(f => f.atS < (s.failureS as number)).pop()
  t.ok((lastHealthy?.faults.latencyMs ?? 0) > 200, 'latency grows towards the failure')
  t.equal(s.faults[s.faults.length - 1]?.faults.errorRate, 1)
  t.equal(scenarioRecords(s)[0]?.gateway, s.gateway)
  t.throws(() => parseScenario({ format: 'x' }), { code: 'FERRY_SCENARIO_INVALID' })
  t.throws(() => parseScenario({ ...s, version: 2 }), { code: 'FERRY_SCENARIO_BAD_VERSION' })
  t.throws(() => generateScenario('meteor' as 'crash', { seed: 1 }), { code: 'FERRY_SCENARIO_BAD_KIND' })
})
