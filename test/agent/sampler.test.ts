import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { FIELDS, fieldRange, type FieldName } from '../../telemetry/fields.js'
import { httpProbe, parsePeer, tcpConnectRtt } from '../../agent/probes.js'
import { Sampler } from '../../agent/sampler.js'
import { freePort } from '../helpers/net.js'

function checkRanges (t: Test, sample: Record<string, number | undefined>): void {
  for (const [k, v] of Object.entries(sample)) {
    if (k === 'at') continue
    t.ok(k in FIELDS, `${k} is a known field`)
    const [lo, hi] = fieldRange(k as FieldName)
    t.ok(typeof v === 'number' && v >= lo && v <= hi, `${k}=${String(v)} in [${lo}, ${hi}]`)
  }
}

async function listen (server: net.Server): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

t.test('samples this machine: every /proc field present and in range', async t => {
  const sampler = new Sampler()
  await sampler.prime()
  // Some CPU and disk work between the readings so the rates are over a real interval.
  await new Promise(resolve => setTimeout(resolve, 150))
  const before = Date.now()
  const r = await sampler.sample()
  t.ok(r.sample.at >= before && r.sample.at <= Date.now() + 1, 'at is now, in Unix ms')
  t.type(r.sample.cpu, 'number', 'cpu from /proc/stat')
  t.type(r.sample.mem_pressure, 'number', 'mem_pressure')
  t.type(r.sample.mem_used, 'number', 'mem_used from /proc/meminfo')
  const hasPsi = await import('node:fs').then(fs => { try { fs.readFileSync('/proc/pressure/memory'); return true } catch { return false } })
  t.equal(r.sample.mem_pressure_psi, hasPsi ? 1 : 0, `PSI on this kernel: ${hasPsi}`)
  t.type(r.sample.disk_util, 'number', `disk_util (${r.disk ?? '?'})`)
  t.type(r.sample.disk_await_ms, 'number', 'disk_await_ms')
  t.notOk('net_latency_ms' in r.sample, 'no peers configured: no network field')
  t.notOk('probe_latency_ms' in r.sample, 'no probe configured: no probe field')
  checkRanges(t, r.sample)
  t.notOk(r.unavailable.includes('stat') || r.unavailable.includes('meminfo'), 'stat and meminfo readable')
})

t.test('a /proc without PSI, diskstats or a readable stat: fields missing, no crash', async t => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ferry-proc-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  await writeFile(path.join(root, 'stat'), 'cpu  100 0 100 800\n')
  await writeFile(path.join(root, 'meminfo'), 'MemTotal: 1000 kB\nMemAvailable: 250 kB\n')
  const sampler = new Sampler({ procRoot: root })
  await sampler.prime()
  await writeFile(path.join(root, 'stat'), 'cpu  150 0 150 900\n')
  const r = await sampler.sample()
  t.equal(r.sample.cpu, 0.5)
  t.equal(r.sample.mem_pressure, 0.75, 'fallback: 1 - MemAvailable/MemTotal')
  t.equal(r.sample.mem_pressure_psi, 0, 'and says so')
  t.notOk('disk_util' in r.sample)
  t.same(r.unavailable.sort(), ['diskstats', 'psi'])

  // PSI appears (e.g. a remount); the stat file turns to garbage; meminfo disappears.
  await mkdir(path.join(root, 'pressure'))
  await writeFile(path.join(root, 'pressure', 'memory'), 'some avg10=40.00 avg60=0.00 avg300=0.00 total=1\n')
  await writeFile(path.join(root, 'stat'), 'cpu  garbage\n')
  await rm(path.join(root, 'meminfo'))
  const r2 = await sampler.sample()
  t.equal(r2.sample.mem_pressure, 0.4)
  t.equal(r2.sample.mem_pressure_psi, 1)
  t.notOk('cpu' in r2.sample)
  t.notOk('mem_used' in r2.sample)
  t.same(r2.unavailable.sort(), ['diskstats', 'meminfo', 'stat'])

  const empty = new Sampler({ procRoot: path.join(root, 'does-not-exist') })
  await empty.prime()
  const r3 = await empty.sample()
  t.same(Object.keys(r3.sample), ['at'], 'nothing readable: a sample with only its time')
})

t.test('peers: TCP connect latency, unreachable peers counted', async t => {
  const server = net.createServer(s => s.destroy())
  const port = await listen(server)
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  const dead = await freePort()

  const rtt = await tcpConnectRtt({ host: '127.0.0.1', port }, 1000)
  t.ok(rtt !== undefined && rtt >= 0 && rtt < 1000, `connect rtt ${String(rtt)} ms`)
  t.equal(await tcpConnectRtt({ host: '127.0.0.1', port: dead }, 1000), undefined, 'refused')

  const s = new Sampler({ procRoot: '/nonexistent', peers: [{ host: '127.0.0.1', port }, { host: '127.0.0.1', port: dead }], timeoutMs: 500 })
  const r = await s.sample()
  t.ok(r.sample.net_latency_ms !== undefined && r.sample.net_latency_ms < 500, 'latency from the reachable peer')
  t.equal(r.sample.net_error_rate, 0.5)
  const allDead = await new Sampler({ procRoot: '/nonexistent', peers: [{ host: '127.0.0.1', port: dead }], timeoutMs: 300 }).sample()
  t.equal(allDead.sample.net_latency_ms, 300, 'nobody reachable: the timeout, a lower bound')
  t.equal(allDead.sample.net_error_rate, 1)
  t.ok(allDead.unavailable.includes('peers'))

  t.same(parsePeer('10.0.0.1:9001'), { host: '10.0.0.1', port: 9001 })
  t.same(parsePeer('[::1]:80'), { host: '::1', port: 80 })
  t.same(parsePeer('gw-2.example:9002'), { host: 'gw-2.example', port: 9002 })
  for (const bad of ['nohost', ':80', 'h:0', 'h:70000', 'h:80x', '::1:80', '']) t.equal(parsePeer(bad), undefined, `refuses ${JSON.stringify(bad)}`)
})

t.test('probe: latency and a windowed error rate from GET /healthz', async t => {
  let status = 200
  let delayMs = 0
  const server = http.createServer((_req, res) => {
    setTimeout(() => { res.writeHead(status).end('{"status":"ok"}') }, delayMs)
  })
  const port = await listen(server)
  t.teardown(() => new Promise<void>(resolve => { server.close(() => resolve()); server.closeAllConnections() }))
  const probe = new URL(`http://127.0.0.1:${port}/healthz`)

  const ok = await httpProbe(probe, 1000)
  t.ok(ok.ok)
  t.equal(ok.status, 200)
  status = 503
  const failed = await httpProbe(probe, 1000)
  t.notOk(failed.ok)
  t.equal(failed.status, 503)
  status = 200
  delayMs = 400
  const slow = await httpProbe(probe, 100)
  t.notOk(slow.ok, 'timed out')
  t.ok(slow.latencyMs >= 90 && slow.latencyMs < 400, `reported at the timeout (${Math.round(slow.latencyMs)} ms)`)
  delayMs = 0
  const refused = await httpProbe(new URL(`http://127.0.0.1:${await freePort()}/healthz`), 500)
  t.notOk(refused.ok)
  t.equal(refused.error, 'ECONNREFUSED')

  const s = new Sampler({ procRoot: '/nonexistent', probe, probeWindow: 4, timeoutMs: 1000 })
  const rates: number[] = []
  for (const st of [200, 500, 200, 200, 200, 200]) {
    status = st
    const r = await s.sample()
    t.ok((r.sample.probe_latency_ms ?? -1) >= 0)
    rates.push(r.sample.probe_error_rate ?? -1)
  }
  t.same(rates, [0, 0.5, 1 / 3, 0.25, 0.25, 0], 'the failure leaves the 4-probe window after 4 more probes')
})

t.test('probe over https: the gateway\'s CA and a client certificate from --probe-ca/--probe-cert/--probe-key', async t => {
  const { readFileSync } = await import('node:fs')
  const { makeCert } = await import('../helpers/tls.js')
  const { startGateways } = await import('../helpers/gateway.js')
  const { parseAgentArgs } = await import('../../agent/command.js')
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-agent-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const [server, client] = await Promise.all([makeCert(dir, 'server', 2), makeCert(dir, 'client', 2)])
  const gws = await startGateways(1, { tls: { cert: server.cert, key: server.key, clientCa: client.ca } })
  t.teardown(gws.stopAll)
  const probe = `${gws.urls[0] as string}/healthz`

  const base = ['--gateway', 'gw1', '--planner', 'http://127.0.0.1:1', '--probe', probe]
  const o = parseAgentArgs([...base, '--probe-ca', server.ca, '--probe-cert', client.cert, '--probe-key', client.key], { FERRY_AGENT_TOKEN: 't' })
  t.not(o, 'help')
  const tls = (o as { probeTls?: { ca?: Buffer } }).probeTls
  t.same(tls?.ca, readFileSync(server.ca), 'the files are read at start')
  const ok = await httpProbe(new URL(probe), 2000, tls)
  t.ok(ok.ok, `passes with the CA and the client certificate (${String(ok.error)})`)
  const noCa = await httpProbe(new URL(probe), 2000)
  t.notOk(noCa.ok, 'the system\'s CAs do not know the gateway\'s')
  t.match(noCa.error, /CERT|SIGNED|VERIFY/, 'a certificate error')
  const noCert = await httpProbe(new URL(probe), 2000, { ca: readFileSync(server.ca) })
  t.notOk(noCert.ok, 'no client certificate: refused by the gateway')

  t.throws(() => parseAgentArgs([...base.slice(0, 4), '--probe', 'http://127.0.0.1:9001/healthz', '--probe-ca', server.ca], { FERRY_AGENT_TOKEN: 't' }), { code: 'FERRY_AGENT_USAGE', message: /--probe-ca is for an https --probe URL/ })
  t.throws(() => parseAgentArgs([...base, '--probe-cert', client.cert], { FERRY_AGENT_TOKEN: 't' }), { code: 'FERRY_AGENT_USAGE', message: /--probe-cert and --probe-key go together/ })
  t.throws(() => parseAgentArgs([...base, '--probe-ca', path.join(dir, 'missing.pem')], { FERRY_AGENT_TOKEN: 't' }), { code: 'FERRY_AGENT_USAGE', message: /--probe-ca: cannot read/ })
})
