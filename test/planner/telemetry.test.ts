import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { parseTelemetryCsv } from '../../planner/health/csv.js'
import { SIGNALS } from '../../planner/health/types.js'
import { HEALTH_SIGNALS } from '../../telemetry/fields.js'
import { NodeExporterScraper, nodeExporterConfigSchema, toHealthRecord } from '../../planner/telemetry.js'
import { createRegistry } from '../../lib/metrics.js'
import { createStore } from '../../state/factory.js'
import { rawRequest } from '../helpers/http.js'
import { freePort, waitFor } from '../helpers/net.js'
import { nodeExporterText } from '../agent/fixtures.js'
import { metricValue, startPlanner, TOKEN, type PlannerUnderTest } from '../agent/planner.js'

const NOW = Date.now()

async function post (p: PlannerUnderTest, body: unknown, token: string | null = TOKEN): Promise<{ status: number, code?: string, message?: string, json: Record<string, unknown> }> {
  const res = await fetch(`${p.url}/v1/telemetry`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
    body: typeof body === 'string' ? body : JSON.stringify(body)
  })
  const json = await res.json() as Record<string, unknown> & { error?: { code: string, message: string } }
  return { status: res.status, json, ...(json.error ? { code: json.error.code, message: json.error.message } : {}) }
}

t.test('the agent\'s health fields are the health model\'s signals, in its order', async t => {
  t.same([...HEALTH_SIGNALS], [...SIGNALS])
})

t.test('hostile pushes are refused with a clear 4xx and store nothing', async t => {
  const p = await startPlanner()
  t.teardown(p.stop)
  const ok = { at: NOW - 1000, cpu: 0.5 }
  const cases: Array<[string, unknown, number, string, RegExp]> = [
    ['malformed JSON', '{"gateway": "gw1", "samples": [', 400, 'FERRY_BAD_JSON', /not JSON/],
    ['no body', '', 400, 'FERRY_TELEMETRY_INVALID', /request body must be JSON/],
    ['not an object', '[1,2,3]', 400, 'FERRY_TELEMETRY_INVALID', /body: Expected object, received array/],
    ['no gateway', { samples: [ok] }, 400, 'FERRY_TELEMETRY_INVALID', /gateway: Required/],
    ['samples not a list', { gateway: 'gw1', samples: 'lots' }, 400, 'FERRY_TELEMETRY_INVALID', /samples: Expected array/],
    ['empty batch', { gateway: 'gw1', samples: [] }, 400, 'FERRY_TELEMETRY_INVALID', /at least one sample/],
    ['extra top-level key', { gateway: 'gw1', samples: [ok], admin: true }, 400, 'FERRY_TELEMETRY_INVALID', /Unrecognized key\(s\) in object: 'admin'/],
    ['NaN (sent as null)', { gateway: 'gw1', samples: [ok, { at: NOW, cpu: null }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[1\]\.cpu: Expected number, received null/],
    ['a string', { gateway: 'gw1', samples: [{ at: NOW, disk_await_ms: '3.5' }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[0\]\.disk_await_ms: Expected number, received string/],
    ['negative', { gateway: 'gw1', samples: [{ at: NOW, net_latency_ms: -1 }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[0\]\.net_latency_ms: Number must be greater than or equal to 0/],
    ['a fraction over 1', { gateway: 'gw1', samples: [{ at: NOW, mem_pressure: 42 }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[0\]\.mem_pressure: Number must be less than or equal to 1/],
    ['Infinity (1e999)', `{"gateway":"gw1","samples":[{"at":${NOW},"probe_latency_ms":1e999}]}`, 400, 'FERRY_TELEMETRY_INVALID', /samples\[0\]\.probe_latency_ms/],
    ['an unknown field', { gateway: 'gw1', samples: [{ at: NOW, cpu_util: 0.3 }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[0\]: Unrecognized key\(s\) in object: 'cpu_util'/],
    ['a planner-only field', { gateway: 'gw1', samples: [{ at: NOW, passive_requests: 5 }] }, 400, 'FERRY_TELEMETRY_INVALID', /'passive_requests'/],
    ['no time', { gateway: 'gw1', samples: [{ cpu: 0.1 }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[0\]\.at: Required/],
    ['fractional ms', { gateway: 'gw1', samples: [{ at: NOW + 0.5, cpu: 0.1 }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[0\]\.at: Expected integer, received float/],
    ['seconds, not ms', { gateway: 'gw1', samples: [{ at: Math.floor(NOW / 1000), cpu: 0.1 }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[0\]\.at: must be Unix milliseconds/],
    ['an hour in the future', { gateway: 'gw1', samples: [ok, { at: Date.now() + 3_600_000, cpu: 0.1 }] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[1\]\.at is 3[56]\d\d s ahead of the planner.s clock/],
    ['a sample that is not an object', { gateway: 'gw1', samples: [ok, 7] }, 400, 'FERRY_TELEMETRY_INVALID', /samples\[1\]: Expected object, received number/],
    ['unknown gateway', { gateway: 'gw9', samples: [ok] }, 404, 'FERRY_TELEMETRY_UNKNOWN_GATEWAY', /unknown gateway "gw9"/],
    ['a gateway id that is not one', { gateway: '../../etc', samples: [ok] }, 404, 'FERRY_TELEMETRY_UNKNOWN_GATEWAY', /unknown gateway/],
    ['too many samples', { gateway: 'gw1', samples: Array.from({ length: 1001 }, (_, i) => ({ at: NOW - i })) }, 413, 'FERRY_TELEMETRY_TOO_LARGE', /at most 1000 samples \(got 1001\)/]
  ]
  for (const [what, body, status, code, message] of cases) {
    const r = await post(p, body)
    t.equal(r.status, status, `${what}: ${status}`)
    t.equal(r.code, code, `${what}: ${code}`)
    t.match(r.message, message, `${what}: says why (${r.message ?? ''})`)
  }
  const noToken = await post(p, { gateway: 'gw1', samples: [ok] }, null)
  t.equal(noToken.status, 401)
  const badToken = await post(p, { gateway: 'gw1', samples: [ok] }, 'guess')
  t.equal(badToken.status, 401)
  t.equal(p.arrivals.length, 0, 'nothing reached the store')
  t.same(await p.store.readTelemetry('gw1'), [])
  t.ok(await metricValue(p.registry, 'ferry_telemetry_batches_refused_total', { reason: 'invalid' }) >= 10)
  t.equal(await metricValue(p.registry, 'ferry_telemetry_batches_refused_total', { reason: 'future' }), 1)

  // Over the admin server's 1 MiB body bound: refused before it is parsed.
  const huge = JSON.stringify({ gateway: 'gw1', samples: [ok], pad: 'x'.repeat(1024 * 1024) })
  const hugeReply = await rawRequest(p.url, `POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${huge.length}\r\n\r\n${huge}`)
  t.match(hugeReply, /^HTTP\/1\.1 413 .*FERRY_BODY_TOO_LARGE/s, 'over 1 MiB: 413')

  // A raw request that lies about its length is cut off by the admin server, not by us.
  const raw = await rawRequest(p.url, `POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{"`)
  t.match(raw, /^HTTP\/1\.1 400/)

  const good = await post(p, { gateway: 'gw1', samples: [ok, { at: NOW - 500, cpu: 0.25, mem_pressure: 0.1, mem_pressure_psi: 1 }] })
  t.equal(good.status, 202)
  t.same(good.json, { gateway: 'gw1', accepted: 2 })
  t.equal((await p.store.readTelemetry('gw1')).length, 2, 'and a good batch still lands')
  t.equal(await metricValue(p.registry, 'ferry_telemetry_samples_ingested_total', { gateway: 'gw1', source: 'agent' }), 2)
})

t.test('history as JSON: since, limit, unknown gateway', async t => {
  const p = await startPlanner()
  t.teardown(p.stop)
  const batch = Array.from({ length: 10 }, (_, i) => ({ at: NOW - 10_000 + i * 1000, cpu: i / 10 }))
  t.equal((await post(p, { gateway: 'gw2', samples: batch })).status, 202)
  const get = async (path: string): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await fetch(`${p.url}${path}`)
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }
  const all = await get('/v1/telemetry/gw2')
  t.equal(all.status, 200)
  t.same(all.body, { gateway: 'gw2', samples: batch })
  t.same(((await get('/v1/telemetry/gw2?limit=3')).body.samples as unknown[]), batch.slice(7), 'limit: the most recent, oldest first')
  t.same(((await get(`/v1/telemetry/gw2?since=${NOW - 3000}`)).body.samples as unknown[]), batch.slice(7))
  t.same(((await get(`/v1/telemetry/gw2?since=${new Date(NOW - 2000).toISOString()}`)).body.samples as unknown[]), batch.slice(8), 'since as ISO 8601')
  t.equal((await get('/v1/telemetry/gw2?limit=0')).status, 400)
  t.equal((await get('/v1/telemetry/gw2?limit=ten')).status, 400)
  t.equal((await get('/v1/telemetry/gw2?since=yesterday')).status, 400)
  t.equal((await get('/v1/telemetry/nope')).status, 404)
  const list = await get('/v1/telemetry')
  t.same(list.body, { gateways: [{ gateway: 'gw1', samples: 0, first: null, last: null }, { gateway: 'gw2', samples: 10, first: batch[0]?.at, last: batch[9]?.at }] })
  // A retried batch (the reply was lost) is stored once.
  t.equal((await post(p, { gateway: 'gw2', samples: batch.slice(0, 3) })).status, 202)
  t.equal((await p.store.readTelemetry('gw2')).length, 10, 'identical samples collapse')
})

t.test('CSV export round-trips through the health model\'s reader', async t => {
  const p = await startPlanner()
  t.teardown(p.stop)
  const gw1 = Array.from({ length: 5 }, (_, i) => ({
    at: NOW - 60_000 + i * 1000,
    cpu: 0.125 * i,
    mem_pressure: 0.25,
    mem_pressure_psi: 1,
    mem_used: 0.5,
    disk_util: 0.03125,
    disk_await_ms: 2.5 + i,
    net_latency_ms: 0.375,
    ...(i === 2 ? {} : { probe_latency_ms: 4.75 }),
    probe_error_rate: i === 4 ? 0.1 : 0
  }))
  const gw2 = [{ at: NOW - 30_000, cpu: 0.9 }, { at: NOW - 29_000, disk_util: 1, disk_await_ms: 250 }]
  t.equal((await post(p, { gateway: 'gw1', samples: gw1 })).status, 202)
  t.equal((await post(p, { gateway: 'gw2', samples: gw2 })).status, 202)
  // A passive-only sample has none of the health signals: no CSV row for it.
  p.ingest.recordPassive('gw2', { latencyMs: 12, errors: 0, requests: 3 })
  t.equal(await p.ingest.flushPassive(), 1)

  const one = await fetch(`${p.url}/v1/telemetry/gw1/csv`)
  t.equal(one.status, 200)
  t.match(one.headers.get('content-type'), /^text\/csv/)
  const text = await one.text()
  t.equal(text.split('\n')[0], 'timestamp,gateway,cpu,mem_pressure,disk_util,disk_await_ms,net_latency_ms,probe_latency_ms,probe_error_rate')
  const parsed = parseTelemetryCsv(text, 'gw1.csv')
  t.same(parsed, gw1.map(s => toHealthRecord('gw1', s)), 'gw1 round-trips; the missing probe stays missing')
  t.notOk('probe_latency_ms' in (parsed[2] ?? {}), 'an absent field is an empty cell, not 0')

  const both = parseTelemetryCsv(await (await fetch(`${p.url}/v1/telemetry.csv`)).text(), 'all.csv')
  t.same(both, [...gw1.map(s => toHealthRecord('gw1', s)), ...gw2.map(s => toHealthRecord('gw2', s))], 'all gateways, no row for the passive sample')
  const onlyGw2 = parseTelemetryCsv(await (await fetch(`${p.url}/v1/telemetry.csv?gateway=gw2&limit=2`)).text())
  t.same(onlyGw2, [toHealthRecord('gw2', gw2[1] as { at: number })], 'filter and limit: the 2 most recent are gw2[1] and the passive sample, which has no row')
  t.equal((await fetch(`${p.url}/v1/telemetry.csv?gateway=gw1,gw7`)).status, 404)
  t.equal((await fetch(`${p.url}/v1/telemetry/gw7/csv`)).status, 404)
  const since = parseTelemetryCsv(await (await fetch(`${p.url}/v1/telemetry/gw1/csv?since=${gw1[3]?.at ?? 0}`)).text())
  t.equal(since.length, 2)
})

t.test('passive observations from the proxies are summed per window', async t => {
  const p = await startPlanner({ passiveFlushMs: 60_000 })
  t.teardown(p.stop)
  p.ingest.recordPassive('gw1', { latencyMs: 10, errors: 0, requests: 3 })
  p.ingest.recordPassive('gw1', { latencyMs: 50, errors: 1, requests: 1 })
  p.ingest.recordPassive('gw2', { latencyMs: 7, errors: 2, requests: 2 })
  for (const bad of [{ latencyMs: NaN, errors: 0, requests: 1 }, { latencyMs: 1, errors: 2, requests: 1 }, { latencyMs: 1, errors: 0, requests: 0 }, { latencyMs: -1, errors: 0, requests: 1 }]) {
    t.doesNotThrow(() => { p.ingest.recordPassive('gw1', bad) })
  }
  t.doesNotThrow(() => { p.ingest.recordPassive('gw9', { latencyMs: 1, errors: 0, requests: 1 }) })
  t.doesNotThrow(() => { p.ingest.recordPassive('gw1', undefined as unknown as { latencyMs: number, errors: number, requests: number }) })
  t.equal(await metricValue(p.registry, 'ferry_telemetry_passive_invalid_total'), 6)
  t.equal(await p.ingest.flushPassive(), 2)
  const [s1] = await p.store.readTelemetry('gw1')
  t.same({ ...s1, at: 0 }, { at: 0, passive_latency_ms: 20, passive_error_rate: 0.25, passive_requests: 4 }, 'request-weighted mean latency, error share')
  const [s2] = await p.store.readTelemetry('gw2')
  t.equal(s2?.passive_error_rate, 1)
  t.equal(await p.ingest.flushPassive(), 0, 'nothing observed since: no sample (missing, not zero)')
  p.ingest.recordPassive('gw2', { latencyMs: 3, errors: 0, requests: 1 })
  await p.ingest.close()
  t.equal((await p.store.readTelemetry('gw2')).length, 2, 'close() flushes the last window')
})

t.test('node_exporter: scraped into the same fields; failures counted, never fatal', async t => {
  let scrape = 0
  let mode: 'ok' | '500' | 'huge' = 'ok'
  const server = http.createServer((req, res) => {
    if (mode === '500') { res.writeHead(500).end('oops'); return }
    if (mode === 'huge') { res.writeHead(200); res.end('x'.repeat(300_000)); return }
    const k = scrape++
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
    res.end(nodeExporterText({ idle: 100 + k * 4, user: 100 + k * 16, avail: 8e9 - k * 1e9, psi: 10 + k, io: 100 + k * 2, rt: 10 + k * 0.1, wt: 30 + k * 0.1, r: 1000 + k * 100, w: 1000 + k * 100 }))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.close(() => resolve()); server.closeAllConnections() }))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`
  const dead = `http://127.0.0.1:${await freePort()}/metrics`

  const store = createStore({})
  t.teardown(() => store.close())
  const registry = createRegistry(false)
  const config = nodeExporterConfigSchema.parse({ targets: { gw1: url, gw2: { url: dead, disk: 'sda' } } })
  t.equal(config.intervalMs, 5000, 'default interval')
  const scraper = new NodeExporterScraper({ store, registry, targets: config.targets, intervalMs: 50, timeoutMs: 1000, maxBytes: 100_000 })
  t.teardown(() => scraper.stop())

  const first = await scraper.scrapeOnce('gw1')
  t.same(Object.keys(first ?? {}).sort(), ['at', 'mem_used'], 'first scrape: no rates yet')
  await new Promise(resolve => setTimeout(resolve, 20))
  const second = await scraper.scrapeOnce('gw1')
  t.equal(second?.cpu, 0.8, 'cpu from node_cpu_seconds_total deltas')
  t.equal(second?.mem_pressure_psi, 1)
  t.ok((second?.mem_pressure ?? -1) >= 0 && (second?.mem_pressure ?? 2) <= 1)
  t.equal(second?.mem_used, 0.5 + 1 / 16)
  t.ok((second?.disk_util ?? -1) > 0, 'disk_util')
  t.equal(Math.round((second?.disk_await_ms ?? 0) * 1000) / 1000, 1, 'disk_await_ms')
  t.equal((await store.readTelemetry('gw1')).length, 2, 'both scrapes stored')

  t.equal(await scraper.scrapeOnce('gw2'), undefined, 'refused connection: no sample')
  t.equal(await scraper.scrapeOnce('gw-unknown'), undefined)
  mode = '500'
  t.equal(await scraper.scrapeOnce('gw1'), undefined, '500: no sample')
  mode = 'huge'
  t.equal(await scraper.scrapeOnce('gw1'), undefined, 'over maxBytes: cut off')
  t.equal(await metricValue(registry, 'ferry_telemetry_scrapes_total', { result: 'error' }), 3)
  mode = 'ok'

  scraper.start()
  await waitFor(async () => (await store.readTelemetry('gw1')).length >= 5, 'the loop keeps scraping')
  await scraper.stop()
  const n = (await store.readTelemetry('gw1')).length
  await new Promise(resolve => setTimeout(resolve, 150))
  t.equal((await store.readTelemetry('gw1')).length, n, 'stop() stops it')
  t.ok(await metricValue(registry, 'ferry_telemetry_scrapes_total', { gateway: 'gw2', result: 'error' }) >= 2)
  t.throws(() => nodeExporterConfigSchema.parse({ targets: { gw1: 'not a url' } }))
})
