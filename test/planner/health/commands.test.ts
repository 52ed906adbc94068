import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { trainCommand, evaluateCommand } from '../../../planner/health/commands.js'
import { formatTelemetryCsv } from '../../../planner/health/csv.js'
import { generateScenario, scenarioRecords } from '../../../planner/health/scenarios.js'
import type { TelemetryRecord } from '../../../planner/health/types.js'

function capture (): { io: { stdout: { write: (s: string) => boolean }, stderr: { write: (s: string) => boolean } }, out: () => string, err: () => string } {
  let out = ''
  let err = ''
  return { io: { stdout: { write: s => { out += s; return true } }, stderr: { write: s => { err += s; return true } } }, out: () => out, err: () => err }
}

t.test('ferry train then ferry evaluate, in process', async t => {
  const train: TelemetryRecord[] = []
  for (let s = 0; s < 2; s++) train.push(...scenarioRecords(generateScenario('healthy', { seed: 40 + s, durationS: 2 * 3600, gateway: `g${s}` })))
  const test = [...scenarioRecords(generateScenario('memory_leak', { seed: 41 })), ...scenarioRecords(generateScenario('healthy', { seed: 42, durationS: 3600 }))]
  const dir = t.testdir({ 'train.csv': formatTelemetryCsv(train), 'test.csv': formatTelemetryCsv(test) })
  const model = path.join(dir, 'model.json')

  const a = capture()
  t.equal(await trainCommand(['--telemetry', path.join(dir, 'train.csv'), '--out', model, '--horizon', '240'], a.io), 0, a.err())
  t.match(a.out(), /trained on \d+ samples from 2 gateways/)
  t.match(a.out(), /horizon 240 s/)
  t.ok(fs.existsSync(model))

  const b = capture()
  t.equal(await evaluateCommand(['--model', model, '--telemetry', path.join(dir, 'test.csv')], b.io), 0, b.err())
  t.match(b.out(), /interval coverage \(nominal 90\.0%\)/)
  t.match(b.out(), /failures: 1; warned 1 \(1 at least 60 s ahead\)/)

  const c = capture()
  t.equal(await evaluateCommand(['--model', model, '--telemetry', path.join(dir, 'test.csv'), '--json', '--stride', '5'], c.io), 0)
  const report = JSON.parse(c.out()) as { horizonS: number, failures: { count: number } }
  t.equal(report.horizonS, 240)
  t.equal(report.failures.count, 1)
})

t.test('usage errors exit 2, bad files exit 1 with the error code', async t => {
  const a = capture()
  t.equal(await trainCommand(['--out', 'x.json'], a.io), 2)
  t.match(a.err(), /--telemetry is required/)
  t.match(a.err(), /usage: ferry train/)
  const b = capture()
  t.equal(await evaluateCommand(['--model', 'm.json', '--telemetry', 't.csv', '--what'], b.io), 2)
  t.match(b.err(), /Unknown option/)
  const c = capture()
  t.equal(await trainCommand(['--telemetry', '/nonexistent.csv', '--out', 'x.json', '--level', '2'], c.io), 2)
  const dir = t.testdir({ 'bad.json': '{"format":"ferry-health","version":0}', 't.csv': 'timestamp,gateway,cpu\n1,g,0.1\n' })
  const d = capture()
  t.equal(await evaluateCommand(['--model', path.join(dir, 'bad.json'), '--telemetry', path.join(dir, 't.csv')], d.io), 1)
  t.match(d.err(), /FERRY_HEALTH_MODEL_VERSION/)
  const e = capture()
  t.equal(await trainCommand(['--telemetry', '/nonexistent.csv', '--out', path.join(dir, 'm.json')], e.io), 1)
  t.match(e.err(), /FERRY_HEALTH_TELEMETRY_UNREADABLE/)
  const f = capture()
  t.equal(await trainCommand(['--help'], f.io), 0)
  t.match(f.out(), /timestamp,gateway,cpu/)
})
