import t from 'tap'
import { parseTelemetryCsv, formatTelemetryCsv, CSV_HEADER } from '../../../planner/health/csv.js'

t.test('parses the export, with missing values left out', async t => {
  const text = [CSV_HEADER, '2024-05-01T12:00:00.000Z,gw-1,0.31,0.42,0.12,3.1,0.8,6.5,0', '1714564801000,gw-1,0.33,,0.12,3.4,,6.1,0', ''].join('\n')
  const r = parseTelemetryCsv(text)
  t.equal(r.length, 2)
  t.same(r[0], { timestamp: Date.parse('2024-05-01T12:00:00Z'), gateway: 'gw-1', cpu: 0.31, mem_pressure: 0.42, disk_util: 0.12, disk_await_ms: 3.1, net_latency_ms: 0.8, probe_latency_ms: 6.5, probe_error_rate: 0 })
  t.equal(r[1]?.timestamp, 1714564801000)
  t.notOk('mem_pressure' in (r[1] as object), 'an empty cell is missing, not zero')
  t.same(parseTelemetryCsv(formatTelemetryCsv(r)), r, 'format and parse round-trip')
  t.same(parseTelemetryCsv('timestamp,gateway,cpu\n5,g,0.5\n'), [{ timestamp: 5, gateway: 'g', cpu: 0.5 }], 'a subset of signal columns is fine')
})

t.test('bad telemetry is refused with the line that is wrong', async t => {
  t.throws(() => parseTelemetryCsv('time,gateway\n'), { code: 'FERRY_HEALTH_BAD_TELEMETRY', message: /:1: header/ })
  t.throws(() => parseTelemetryCsv('timestamp,gateway,cpu,cpuu\n'), { message: /unknown column "cpuu"/ })
  t.throws(() => parseTelemetryCsv('timestamp,gateway,cpu\n1,g,0.1\n2,g,abc\n', 'x.csv'), { message: /x\.csv:3: cpu "abc"/ })
  t.throws(() => parseTelemetryCsv('timestamp,gateway,cpu\nyesterday,g,0.1\n'), { message: /:2: timestamp/ })
  t.throws(() => parseTelemetryCsv('timestamp,gateway,cpu\n1,g\n'), { message: /:2: 2 cells/ })
  t.throws(() => parseTelemetryCsv('timestamp,gateway,cpu\n1,,0.1\n'), { message: /empty gateway/ })
})
