import t from 'tap'
import { nodeExporterFields, nodeSnapshot, parseExposition } from '../../telemetry/node-exporter.js'
import { nodeExporterText } from './fixtures.js'

t.test('exposition format: names, labels, escapes, special values, timestamps', async t => {
  const e = parseExposition([
    '# HELP x help with "quotes" and \\ backslash',
    '# TYPE x counter',
    'x 1',
    'x{a="b"} 2 1700000000000',
    'x{a="q\\"uote",b="back\\\\slash",c="new\\nline",} 3',
    'x{ a = "spaced" } 4',
    'y{} +Inf',
    'y -Inf',
    'y NaN',
    'z 1.5e-3',
    '   indented_metric 7',
    ''
  ].join('\n'))
  t.equal(e.skipped, 0)
  t.same(e.metrics.get('x')?.map(s => s.value), [1, 2, 3, 4])
  t.same(e.metrics.get('x')?.[2]?.labels, { a: 'q"uote', b: 'back\\slash', c: 'new\nline' })
  t.same(e.metrics.get('x')?.[3]?.labels, { a: 'spaced' })
  const y = e.metrics.get('y')?.map(s => s.value) ?? []
  t.equal(y[0], Infinity)
  t.equal(y[1], -Infinity)
  t.ok(Number.isNaN(y[2]))
  t.equal(e.metrics.get('z')?.[0]?.value, 0.0015)
  t.equal(e.metrics.get('indented_metric')?.[0]?.value, 7)
})

t.test('malformed lines are skipped and counted, never thrown', async t => {
  const bad = [
    'x{a="unterminated} 1',
    'x{a=unquoted} 1',
    'x{="no name"} 1',
    'x 0x10',
    'x',
    'x{a="b"}',
    'x 1 2 3',
    'x 1 notatimestamp',
    '9starts_with_digit 1',
    'x{a="b"}1',
    '\u0000\u0001',
    'x{a="b",,} 1'
  ]
  const e = parseExposition(['good 1', ...bad, 'good 2'].join('\n'))
  t.equal(e.skipped, bad.length)
  t.same(e.metrics.get('good')?.map(s => s.value), [1, 2])
  t.notOk(e.metrics.has('x'))
  t.doesNotThrow(() => parseExposition('x{'.repeat(10_000)))
  t.doesNotThrow(() => nodeSnapshot('\u00ff'.repeat(1000) + '\nnode_cpu_seconds_total{cpu="0",mode="idle"} -5\n', 1))
})

t.test('node_exporter snapshot and fields between two scrapes', async t => {
  const a = nodeSnapshot(nodeExporterText({ idle: 100, user: 100, iowait: 0, avail: 8e9, psi: 10, io: 100, rt: 10, wt: 30, r: 1000, w: 1000 }), 1_000_000)
  t.same(a.cpu, { idle: 100, total: 200 })
  t.equal(a.memTotalBytes, 1.6e10)
  t.equal(a.memAvailableBytes, 8e9)
  t.equal(a.psiSomeSeconds, 10)
  t.same(a.disks.map(d => d.device).sort(), ['nvme0n1', 'sdb'], 'loop3 has only io_time: incomplete, left out')
  t.same(a.disks.find(d => d.device === 'nvme0n1'), { device: 'nvme0n1', ioMs: 100_000, readMs: 10_000, writeMs: 30_000, reads: 1000, writes: 1000 })

  const first = nodeExporterFields(undefined, a)
  t.same(first, { mem_used: 0.5 }, 'first scrape: only the gauge-based field (PSI is a counter here)')

  // 10 s later: CPUs 2 x 10 s, 5 s of it idle+iowait; 2.5 s stalled on memory; disk busy 4 s,
  // 100 I/Os that waited 0.1 + 0.3 s.
  const b = nodeSnapshot(nodeExporterText({ idle: 104, user: 115, iowait: 1, avail: 4e9, psi: 12.5, io: 104, rt: 10.1, wt: 30.3, r: 1050, w: 1050 }), 1_010_000)
  const f = nodeExporterFields(a, b)
  t.equal(f.cpu, 0.75)
  t.equal(f.mem_pressure, 0.25, 'stalled share of the interval')
  t.equal(f.mem_pressure_psi, 1)
  t.equal(f.mem_used, 0.75)
  t.equal(f.disk_util, 0.4)
  t.equal(Math.round((f.disk_await_ms ?? 0) * 1000) / 1000, 4)
  t.same(nodeExporterFields(a, b, 'sdb').disk_util, 0, '{disk} selects the device')

  const noPsi = nodeExporterFields(undefined, nodeSnapshot(nodeExporterText({ idle: 1, user: 1, avail: 4e9, io: 1, rt: 1, wt: 1, r: 1, w: 1 }), 5))
  t.same(noPsi, { mem_pressure: 0.75, mem_pressure_psi: 0, mem_used: 0.75 }, 'without PSI: MemAvailable/MemTotal, flagged')
  t.same(nodeExporterFields(undefined, nodeSnapshot('node_load1 1\n', 5)), {}, 'no known metrics: no fields')
})
