import t from 'tap'
import { request } from 'undici'
import { createStore } from '../../state/factory.js'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { waitFor } from '../helpers/net.js'
import { nginxAvailable, startNginxGateway } from '../helpers/nginx.js'

/**
 * A write in flight when its block moves from a reference gateway to an nginx one: nginx's
 * mtime-size ETag can never equal the content hash the write was acknowledged with, so the
 * proxy must confirm by the bytes — acknowledging the write the target holds, and still
 * refusing the one it does not.
 */
const probe = await nginxAvailable()

t.test('a write that raced a move onto nginx is confirmed by its bytes', { skip: probe.ok ? false : probe.reason }, async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const ngx = await startNginxGateway()
  t.teardown(ngx.stop)
  const [gw1] = gws.urls as [string]
  const store = createStore({})
  t.teardown(() => store.close())
  const config = testConfig([gw1, ngx.url], {
    gateways: [{ id: 'gw1', url: gw1, kind: 'ferry', site: 'site-a' }, { id: 'gw2', url: ngx.url, kind: 'webdav', site: 'site-b' }]
  })
  const p = await startProxy(config, { store })
  t.teardown(p.stop)
  await store.casLocation('v', 'lost', 0, { gateway: 'gw1' })
  await store.casLocation('v', 'kept', 0, { gateway: 'gw1' })
  await waitFor(() => p.node.proxy?.sync?.cache.get('v', 'kept') != null, 'locations cached')
  // Both writes are held up on their way to gw1 while their blocks move (the injected latency
  // comes before the gateway reads the request), so the moves surely happen while they are in flight.
  await gws.gateways[0]!.setFaults({ latencyMs: 1500 })

  const lost = request(`${p.url}/v/lost`, { method: 'PUT', body: 'in flight' }).then(async r => ({ status: r.statusCode, body: await r.body.text() }))
  const kept = request(`${p.url}/v/kept`, { method: 'PUT', body: 'in flight' }).then(async r => ({ status: r.statusCode, body: await r.body.text() }))
  await waitFor(() => p.node.proxy?.gateways.get('gw1')?.inflight === 2, 'both writes in flight to gw1')
  // 'kept': the planner's copy holds the bytes being written (as a re-copy in cut-over would).
  await (await request(`${ngx.url}/v/kept`, { method: 'PUT', body: 'in flight' })).body.dump()
  t.ok((await store.casLocation('v', 'kept', 1, { gateway: 'gw2', phase: 'done' })).ok)
  // 'lost': the target holds other bytes of the same size.
  await (await request(`${ngx.url}/v/lost`, { method: 'PUT', body: 'in-flight' })).body.dump()
  t.ok((await store.casLocation('v', 'lost', 1, { gateway: 'gw2', phase: 'done' })).ok)
  t.equal(p.node.proxy?.gateways.get('gw1')?.inflight, 2, 'both moved while the writes were in flight')

  const k = await kept
  t.equal(k.status, 201, `acknowledged with gw1's answer to a new block: nginx holds the bytes written (${k.body})`)
  const l = await lost
  t.equal(l.status, 503, `not acknowledged (${l.status} ${l.body})`)
  t.match(JSON.parse(l.body), { error: { code: 'FERRY_WRITE_NOT_CONFIRMED' } })
  t.equal(await (await request(`${p.url}/v/kept`)).body.text(), 'in flight', 'the acknowledged write is what a read returns')
})
