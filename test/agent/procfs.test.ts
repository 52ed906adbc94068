import t from 'tap'
import { parseDiskstats, parseMeminfo, parseProcStat, parsePsiSomeAvg10 } from '../../agent/procfs.js'
import { cpuUtilisation, diskUsage, median, memoryUsed } from '../../telemetry/counters.js'

const STAT = `cpu  307993 10 91241 70591 343 0 8094 680 0 0
cpu0 152209 0 46257 36525 43 0 4054 328 0 0
intr 123 0 0
ctxt 456
`

const PSI = `some avg10=12.50 avg60=3.21 avg300=0.87 total=123456
full avg10=1.00 avg60=0.00 avg300=0.00 total=789
`

const MEMINFO = `MemTotal:       24684100 kB
MemFree:         1000000 kB
MemAvailable:   12342050 kB
Buffers:          200000 kB
Cached:          3000000 kB
HugePages_Total:       0
`

// Kernel 5.x format (18 columns after the name: discards and flushes), plus a 2.6.25-era
// partition line with 4 counters, a loop device and a zram device.
const DISKSTATS_A = `   7       0 loop0 100 0 0 0 0 0 0 0 0 50 0 0 0 0 0 0 0
 253       0 zram0 10 0 0 0 900000 0 0 90000 0 900 90000 0 0 0 0 0 0
 254       0 vda 50095 8751 1957666 13288 48583 47531 6627040 34715 0 16344 55653 18908 84 4464376 5792 8587 1856
 254       1 vda1 1000 2000 3000 4000
   8       0 sda 10 0 80 5 20 0 160 15 0 30 20
`
const DISKSTATS_B = `   7       0 loop0 900 0 0 0 0 0 0 0 0 9000 0 0 0 0 0 0 0
 253       0 zram0 10 0 0 0 990000 0 0 99000 0 9900 99000 0 0 0 0 0 0
 254       0 vda 50195 8751 1957666 13688 48683 47531 6627040 35115 0 16844 55653 18908 84 4464376 5792 8587 1856
 254       1 vda1 1000 2000 3000 4000
   8       0 sda 12 0 80 9 22 0 160 19 0 40 20
`

t.test('/proc/stat: aggregate cpu line', async t => {
  const c = parseProcStat(STAT)
  // idle + iowait; total = user..steal (guest columns are already in user/nice).
  t.same(c, { idle: 70591 + 343, total: 307993 + 10 + 91241 + 70591 + 343 + 0 + 8094 + 680 })
  t.same(parseProcStat('cpu  10 0 5 85\n'), { idle: 85, total: 100 }, 'a 2.4-era line with four columns')
  t.equal(cpuUtilisation({ idle: 85, total: 100 }, { idle: 170, total: 200 }), 0.15)
  t.equal(cpuUtilisation({ idle: 85, total: 100 }, { idle: 85, total: 100 }), undefined, 'no time elapsed: no answer')
  t.equal(cpuUtilisation({ idle: 85, total: 100 }, { idle: 10, total: 50 }), undefined, 'counters went backwards (reboot): no answer')
  t.equal(cpuUtilisation(undefined, { idle: 1, total: 2 }), undefined)
})

t.test('/proc/pressure/memory and /proc/meminfo', async t => {
  t.equal(parsePsiSomeAvg10(PSI), 12.5)
  t.equal(parsePsiSomeAvg10('full avg10=1.00 avg60=0.00 avg300=0.00 total=0\n'), undefined, 'no "some" line')
  const m = parseMeminfo(MEMINFO)
  t.same(m, { totalBytes: 24684100 * 1024, availableBytes: 12342050 * 1024, exact: true })
  t.equal(memoryUsed(m?.totalBytes, m?.availableBytes), 0.5)
  const old = parseMeminfo('MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n')
  t.same(old, { totalBytes: 1000 * 1024, availableBytes: 400 * 1024, exact: false }, 'before 3.14: MemFree + Buffers + Cached')
  t.equal(memoryUsed(1000, undefined), undefined)
  t.equal(memoryUsed(0, 0), undefined)
})

t.test('/proc/diskstats: devices, busiest real device, configured device', async t => {
  const a = parseDiskstats(DISKSTATS_A)
  t.same(a.map(d => d.device), ['loop0', 'zram0', 'vda', 'sda'], 'short partition lines are skipped')
  t.same(a[2], { device: 'vda', reads: 50095, writes: 48583, readMs: 13288, writeMs: 34715, ioMs: 16344 })
  const b = parseDiskstats(DISKSTATS_B)
  // 1000 ms elapsed: vda busy 500 ms, 200 I/Os that waited 400 + 400 ms; zram is busier but virtual.
  const u = diskUsage(a, b, 1000)
  t.same(u, { device: 'vda', util: 0.5, awaitMs: 4 })
  t.same(diskUsage(a, b, 1000, 'sda'), { device: 'sda', util: 0.01, awaitMs: 2 }, '--disk picks that device')
  t.same(diskUsage(a, b, 1000, 'zram0')?.device, 'zram0', 'a virtual device when asked for by name')
  t.equal(diskUsage(a, b, 1000, 'nvme0n1'), undefined, 'a configured device that is absent: no disk fields')
  t.equal(diskUsage(a, b, 0), undefined)
  t.same(diskUsage(a, b, 100)?.util, 1, 'utilisation is clamped to 1')
  const idle = diskUsage(a, a, 1000)
  t.equal(idle?.util, 0)
  t.equal(idle?.awaitMs, 0, 'no I/O completed: await 0, not NaN')
  t.equal(diskUsage(b, a, 1000), undefined, 'counters going backwards (wrap) give no answer')
})

t.test('garbage, truncated and empty input never throws', async t => {
  const junk = ['', '\n\n', '\0\0\0', 'cpu', 'cpu  a b c d', 'cpu  1 2', 'some avg10=banana total=1', 'some avg10=250.0',
    'MemTotal: lots', 'MemTotal: 0 kB\nMemAvailable: 0 kB', '1 2 vda 3', DISKSTATS_A.slice(0, 77), STAT.slice(0, 12),
    'x'.repeat(100_000), '\u00ff\u00fe binary \u0001', '   7       0 loop0 -1 0 0 0 0 0 0 0 0 NaN 0 0 0 0']
  for (const s of junk) {
    t.doesNotThrow(() => {
      parseProcStat(s)
      parsePsiSomeAvg10(s)
      parseMeminfo(s)
      parseDiskstats(s)
    }, JSON.stringify(s.slice(0, 30)))
  }
  t.equal(parseProcStat('cpu  a b c d\n'), undefined)
  t.equal(parseProcStat(STAT.slice(0, 12)), undefined, 'a truncated cpu line (fewer than 4 columns)')
  t.equal(parsePsiSomeAvg10('some avg10=250.0 total=1'), undefined, 'a percentage over 100 is nonsense')
  t.equal(parseMeminfo('MemTotal: lots'), undefined)
  t.same(parseDiskstats('   7       0 loop0 -1 0 0 0 0 0 0 0 0 NaN 0 0 0 0'), [])
  t.same(parseDiskstats(DISKSTATS_A.slice(0, 77)).length, 1, 'a cut-off read keeps the complete lines')
})

t.test('median', async t => {
  t.equal(median([3, 1, 2]), 2)
  t.equal(median([4, 1, 2, 3]), 2.5)
  t.equal(median([7]), 7)
})
