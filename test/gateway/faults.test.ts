import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { Agent, request, type Dispatcher } from 'undici'
import type { ReferenceGateway } from '../../gateway/gateway.js'
import { sleep, waitFor } from '../helpers/net.js'
import { startGateways, tempFiles } from '../helpers/gateway.js'

async function one (t: Test, opts = {}): Promise<ReferenceGateway> {
  const g = await startGateways(1, opts)
  t.teardown(g.stopAll)
  return g.gateways[0] as ReferenceGateway
}

/** Sends a request and reports the status, or the error code when the connection failed. */
async function outcome (url: string, opts: Dispatcher.RequestOptions | object = {}): Promise<string> {
  try {
    const r = await request(url, opts as Dispatcher.RequestOptions)
    await r.body.arrayBuffer()
    return String(r.statusCode)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message
  }
}

async function admin (gw: ReferenceGateway, method: 'GET' | 'PUT' | 'DELETE', body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, json: unknown }> {
  const r = await request(`${gw.adminUrl}/faults`, { method, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body), headers })
  return { status: r.statusCode, json: await r.body.json() }
}

t.test('admin API: get, set, validate, clear', async t => {
  const gw = await one(t)
  const initial = await admin(gw, 'GET')
  t.equal(initial.status, 200)
  t.same(initial.json, { latencyMs: 0, jitterMs: 0, errorRate: 0, stall: false, dieMidResponse: 0, refuse: 'none' })

  const set = await admin(gw, 'PUT', { latencyMs: 5, errorRate: 0.25 })
  t.equal(set.status, 200)
  t.match(set.json, { latencyMs: 5, errorRate: 0.25, stall: false, refuse: 'none' }, 'omitted fields default to no fault')
  t.match(gw.faults, { latencyMs: 5, errorRate: 0.25 }, 'visible in-process')

  for (const bad of [{ errorRate: 2 }, { latencyMs: -1 }, { refuse: 'sometimes' }, { stal: true }, [1], 'null', '{not json']) {
    const r = await admin(gw, 'PUT', bad)
    t.equal(r.status, 400, `400 for ${JSON.stringify(bad)}`)
    t.match(r.json, { error: { code: /^INVALID_(FAULTS|JSON)$/ } })
  }
  t.match(gw.faults, { latencyMs: 5, errorRate: 0.25 }, 'a refused update changes nothing')

  const cleared = await admin(gw, 'DELETE')
  t.equal(cleared.status, 200)
  t.same(cleared.json, initial.json)
  await t.rejects(gw.setFaults({ errorRate: -0.1 }), { code: 'INVALID_FAULTS', statusCode: 400 }, 'in-process API validates too')
})

t.test('admin token guards changes', async t => {
  const gw = await one(t, { adminToken: 's3cret' })
  t.equal((await admin(gw, 'GET')).status, 200, 'reading needs no token')
  t.equal((await admin(gw, 'PUT', { stall: true })).status, 401)
  t.equal((await admin(gw, 'PUT', { stall: true }, { authorization: 'Bearer wrong!' })).status, 401)
  t.equal((await admin(gw, 'DELETE')).status, 401)
  t.equal(gw.faults.stall, false)
  t.equal((await admin(gw, 'PUT', { latencyMs: 1 }, { authorization: 'Bearer s3cret' })).status, 200)
})

t.test('latency', async t => {
  const gw = await one(t)
  await gw.setFaults({ latencyMs: 150, jitterMs: 50 })
  const started = performance.now()
  t.equal(await outcome(`${gw.url}/healthz`), '200')
  const took = performance.now() - started
  t.ok(took >= 145, `delayed (${Math.round(took)} ms)`)
  await gw.clearFaults()
  const quick = performance.now()
  t.equal(await outcome(`${gw.url}/healthz`), '200')
  t.ok(performance.now() - quick < 140, 'no delay once cleared')
})

t.test('error rate', async t => {
  const gw = await one(t)
  await request(`${gw.url}/v/b`, { method: 'PUT', body: 'x' }).then(r => r.body.dump())
  await gw.setFaults({ errorRate: 0.5 })
  const outcomes = await Promise.all(Array.from({ length: 200 }, () => outcome(`${gw.url}/v/b`)))
  const errors = outcomes.filter(o => o === '503').length
  t.equal(errors + outcomes.filter(o => o === '200').length, 200, 'only 200s and 503s')
  t.ok(errors >= 60 && errors <= 140, `about half fail (${errors}/200)`)
  t.equal(await outcome(`${gw.url}/healthz`), '200', 'health endpoint is not a block request')

  await gw.setFaults({ errorRate: 1 })
  const r = await request(`${gw.url}/v/new`, { method: 'PUT', body: randomBytes(100_000) })
  t.equal(r.statusCode, 503)
  t.match(await r.body.json(), { error: { code: 'FAULT_INJECTED' } })
  t.notOk(existsSync(path.join(gw.dir, 'v', 'new')), 'a failed write writes nothing')
})

t.test('stall until lifted', async t => {
  const gw = await one(t)
  await request(`${gw.url}/v/b`, { method: 'PUT', body: 'stalled bytes' }).then(r => r.body.dump())
  await gw.setFaults({ stall: true })
  let settled = false
  const pending = request(`${gw.url}/v/b`).then(async r => { settled = true; return [r.statusCode, await r.body.text()] as const })
  const health = outcome(`${gw.url}/healthz`)
  await sleep(300)
  t.notOk(settled, 'no answer while stalled')
  // The admin listener is never faulted: that is how the stall gets lifted.
  t.equal((await admin(gw, 'DELETE')).status, 200)
  t.same(await pending, [200, 'stalled bytes'], 'the held request completes once the stall is lifted')
  t.equal(await health, '200')
})

t.test('stalled requests do not hold up stop()', async t => {
  const gw = await one(t)
  await gw.setFaults({ stall: true })
  const pending = outcome(`${gw.url}/healthz`)
  await sleep(50)
  const started = performance.now()
  await gw.stop()
  t.ok(performance.now() - started < 2000, 'stop() returns promptly')
  t.not(await pending, '200', 'the stalled client gets an error, not a response')
})

t.test('die mid-response: the client gets an error, never a short body', async t => {
  const gw = await one(t)
  for (const size of [1000, 500_000]) {
    const data = randomBytes(size)
    await request(`${gw.url}/v/b${size}`, { method: 'PUT', body: data }).then(r => r.body.dump())
    await gw.setFaults({ dieMidResponse: 1 })
    const r = await request(`${gw.url}/v/b${size}`)
    t.equal(r.statusCode, 200, 'headers arrive')
    await t.rejects(r.body.arrayBuffer(), `reading the ${size} B body fails`)
    await gw.clearFaults()
    const ok = await request(`${gw.url}/v/b${size}`)
    t.ok(Buffer.from(await ok.body.arrayBuffer()).equals(data), 'whole body once cleared')
  }
})

t.test('refuse by reset, then recover', async t => {
  const gw = await one(t)
  // A warm keep-alive connection must not let requests slip past the refusal.
  const agent = new Agent({ keepAliveTimeout: 10_000 })
  t.teardown(() => agent.close())
  t.equal(await outcome(`${gw.url}/healthz`, { dispatcher: agent }), '200')
  await gw.setFaults({ refuse: 'reset' })
  const refused = await outcome(`${gw.url}/healthz`, { dispatcher: agent })
  t.not(refused, '200', `connection fails (${refused})`)
  t.equal((await admin(gw, 'GET')).status, 200, 'admin still reachable')
  await gw.clearFaults()
  t.equal(await outcome(`${gw.url}/healthz`, { dispatcher: agent }), '200', 'recovered')
})

t.test('refuse by unbinding, then recover on the same port', async t => {
  const gw = await one(t)
  const port = gw.port
  await gw.setFaults({ refuse: 'unbind' })
  t.equal(await outcome(`${gw.url}/healthz`), 'ECONNREFUSED')
  t.equal((await admin(gw, 'PUT', { refuse: 'none' })).status, 200)
  t.equal(gw.port, port)
  t.equal(await outcome(`${gw.url}/healthz`), '200', 'listening again')
  // stop() while unbound must not hang on a listener that is already closed.
  await gw.setFaults({ refuse: 'unbind' })
  await gw.stop()
  t.notOk(gw.running)
})

t.test('kill mid-traffic, then start again', async t => {
  const gw = await one(t, { maxBlockBytes: 64 * 1024 * 1024 })
  const data = randomBytes(64 * 1024)
  await request(`${gw.url}/v/keep`, { method: 'PUT', body: data }).then(r => r.body.dump())

  // An upload in progress when the process "crashes"…
  async function * slowBody (): AsyncGenerator<Buffer> {
    yield Buffer.alloc(64 * 1024)
    await new Promise(resolve => setTimeout(resolve, 10_000).unref())
  }
  const upload = outcome(`${gw.url}/v/partial`, { method: 'PUT', body: slowBody(), headers: { 'content-length': String(1 << 20) } })
  await waitFor(async () => (await tempFiles(gw.dir)).length === 1, 'the upload to start')
  // …and a read the gateway is still working on.
  await gw.setFaults({ latencyMs: 5000 })
  const inflight = outcome(`${gw.url}/v/keep`)
  await sleep(100)
  await gw.kill()
  t.notOk(gw.running)
  t.not(await inflight, '200', 'an in-flight request fails')
  t.not(await upload, '201', 'the upload fails')
  t.equal(await outcome(`${gw.url}/healthz`), 'ECONNREFUSED', 'nothing listening')
  t.equal(await outcome(`${gw.adminUrl}/faults`), 'ECONNREFUSED', 'admin is gone too')

  await gw.start()
  t.same(await tempFiles(gw.dir), [], 'no temp files after start')
  const r = await request(`${gw.url}/v/keep`)
  t.ok(Buffer.from(await r.body.arrayBuffer()).equals(data), 'data intact after the crash')
  t.equal(await outcome(`${gw.url}/v/partial`), '404', 'the interrupted upload never became a block')
})

t.test('graceful stop lets in-flight requests finish', async t => {
  const gw = await one(t)
  await gw.setFaults({ latencyMs: 300 })
  const inflight = outcome(`${gw.url}/healthz`)
  await sleep(50)
  await gw.stop()
  t.equal(await inflight, '200', 'the request in flight at stop() was answered')
  t.equal(await outcome(`${gw.url}/healthz`), 'ECONNREFUSED')
  await gw.start()
  t.same(gw.faults.latencyMs, 0, 'a restart starts with the configured faults, not the last ones')
})

t.test('faults given at construction apply from start', async t => {
  const gw = await one(t, { faults: { errorRate: 1 } })
  t.equal(await outcome(`${gw.url}/v/b`), '503')
})
