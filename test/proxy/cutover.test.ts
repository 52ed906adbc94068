import t from 'tap'
import { request } from 'undici'
import { createStore } from '../../state/factory.js'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { sleep, waitFor } from '../helpers/net.js'

/**
 * The proxy's half of "cut-over without losing writes", driven by hand through the store the
 * way the planner drives it: writes are held during cutover and released to the new location
 * at the flip; a write whose block moved while it was in flight is acknowledged only if the
 * new location holds it.
 */
t.test('writes are held during cutover and released to the new location at the flip', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const p = await startProxy(testConfig(gws.urls), { store })
  t.teardown(p.stop)
  const [gw1, gw2] = gws.urls as [string, string]

  const r1 = await store.casLocation('v', 'b', 0, { gateway: 'gw1' })
  t.ok(r1.ok)
  await (await request(`${p.url}/v/b`, { method: 'PUT', body: 'one' })).body.dump()
  t.equal(await (await request(`${gw1}/v/b`)).body.text(), 'one', 'stable: writes go to gw1')

  // Planner: copy (by hand), then cutover.
  await (await request(`${gw2}/v/b`, { method: 'PUT', body: 'one' })).body.dump()
  const cut = await store.casLocation('v', 'b', 1, { gateway: 'gw1', phase: 'cutover', target: 'gw2' })
  t.ok(cut.ok)
  await waitFor(() => p.node.proxy?.sync?.cache.get('v', 'b')?.phase === 'cutover', 'the proxy to see the cutover')

  const started = Date.now()
  const held = request(`${p.url}/v/b`, { method: 'PUT', body: 'two' }).then(async r => ({ status: r.statusCode, body: await r.body.text(), ms: Date.now() - started }))
  await sleep(300)
  t.equal(p.node.proxy?.gateways.get('gw1')?.inflight, 0, 'the write is held, not forwarded')
  const read = await request(`${p.url}/v/b`)
  t.equal(await read.body.text(), 'one', 'reads still served from the source during cutover')
  const flip = await store.casLocation('v', 'b', 2, { gateway: 'gw2', phase: 'done' })
  t.ok(flip.ok)
  const w = await held
  t.equal(w.status, 204, `the held write succeeded after the flip: it overwrote the copy on gw2 (${w.body})`)
  t.ok(w.ms >= 250, `it was held (${w.ms} ms)`)
  t.equal(await (await request(`${gw2}/v/b`)).body.text(), 'two', 'and went to the new location')
  t.equal(await (await request(`${gw1}/v/b`)).body.text(), 'one', 'not to the old one')
  t.equal(await (await request(`${p.url}/v/b`)).body.text(), 'two', 'the next read comes from the target')
})

t.test('a write held too long gets 503 with Retry-After and is not applied', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const p = await startProxy(testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: 0 }, writeHoldMs: 300 } }), { store })
  t.teardown(p.stop)
  await store.casLocation('v', 'b', 0, { gateway: 'gw1' })
  await store.casLocation('v', 'b', 1, { gateway: 'gw1', phase: 'cutover', target: 'gw2' })
  await waitFor(() => p.node.proxy?.sync?.cache.get('v', 'b')?.phase === 'cutover', 'the proxy to see the cutover')
  const res = await request(`${p.url}/v/b`, { method: 'PUT', body: 'late' })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.match(await res.body.json(), { error: { code: 'FERRY_WRITE_HELD' } })
  t.equal((await request(`${gws.urls[0]}/v/b`)).statusCode, 404, 'nothing written on the source')
  t.equal((await request(`${gws.urls[1]}/v/b`)).statusCode, 404, 'nor on the target')
})

t.test('a write in flight when its block moves is acknowledged only if the new location holds it', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const p = await startProxy(testConfig(gws.urls), { store })
  t.teardown(p.stop)
  const [gw1, gw2] = gws.urls as [string, string]
  await store.casLocation('v', 'lost', 0, { gateway: 'gw1' })
  await store.casLocation('v', 'kept', 0, { gateway: 'gw1' })
  await waitFor(() => p.node.proxy?.sync?.cache.get('v', 'kept') != null, 'locations cached')
  await gws.gateways[0]!.setFaults({ latencyMs: 400 })

  // 'lost': the block is flipped to gw2 without the in-flight write: must not be acknowledged.
  const lost = request(`${p.url}/v/lost`, { method: 'PUT', body: 'in flight' }).then(async r => ({ status: r.statusCode, body: await r.body.text() }))
  // 'kept': the planner copies the write over before flipping: acknowledged.
  const kept = request(`${p.url}/v/kept`, { method: 'PUT', body: 'in flight' }).then(async r => ({ status: r.statusCode, body: await r.body.text() }))
  await waitFor(() => p.node.proxy?.gateways.get('gw1')?.inflight === 2, 'both writes in flight to gw1')
  await store.casLocation('v', 'lost', 1, { gateway: 'gw2', phase: 'done' })
  await sleep(400) // the write lands on gw1
  await gws.gateways[0]!.clearFaults()
  await (await request(`${gw2}/v/kept`, { method: 'PUT', body: 'in flight' })).body.dump()
  await store.casLocation('v', 'kept', 1, { gateway: 'gw2', phase: 'done' })

  const l = await lost
  t.equal(l.status, 503, `not acknowledged (${l.status} ${l.body})`)
  t.match(JSON.parse(l.body), { error: { code: 'FERRY_WRITE_NOT_CONFIRMED' } })
  const k = await kept
  t.equal(k.status, 201, `acknowledged with gw1's answer to a new block (${k.body})`)
  t.equal(await (await request(`${gw1}/v/lost`)).body.text(), 'in flight', '(it did land on the old location)')
  t.equal((await request(`${p.url}/v/lost`)).statusCode, 404, 'the current location does not have it: so it was never acknowledged')
})
