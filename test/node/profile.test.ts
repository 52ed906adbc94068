import t from 'tap'
import { request } from 'undici'
import { FerryNode } from '../../bin/node.js'
import { silentLogger } from '../../lib/log.js'
import { createRegistry } from '../../lib/metrics.js'
import { createStore } from '../../state/factory.js'
import { startGateways } from '../helpers/gateway.js'
import { testConfig } from '../helpers/ferry.js'
import { waitFor } from '../helpers/net.js'

interface VolumeProfile { volume: string, reads: number, writes: number, topSites: Array<{ key: string }>, topClients: Array<{ key: string }>, locality: number | null }

t.test('the access profile of a proxy reaches the planner process through the store', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const config = testConfig(gws.urls, { recorder: { profileIntervalMs: 200 } })
  const proxyNode = new FerryNode({ config, roles: new Set(['proxy']), logger: silentLogger, registry: createRegistry(false), store })
  const plannerNode = new FerryNode({ config, roles: new Set(['planner']), logger: silentLogger, registry: createRegistry(false), store })
  await proxyNode.start()
  await plannerNode.start()
  t.teardown(async () => { await proxyNode.stop(); await plannerNode.stop() })
  const proxy = `http://127.0.0.1:${proxyNode.proxy?.address.port ?? 0}`
  const admin = `http://127.0.0.1:${plannerNode.admin.address.port}`

  await (await request(`${proxy}/vp/b1`, { method: 'PUT', body: 'x' })).body.dump()
  for (let i = 0; i < 6; i++) await (await request(`${proxy}/vp/b1`, { headers: { 'x-forwarded-for': '127.0.1.5' } })).body.dump()
  for (let i = 0; i < 3; i++) await (await request(`${proxy}/vp/b2`, { headers: { 'x-forwarded-for': '127.0.2.5' } })).body.dump()

  const body = await waitFor(async () => {
    const r = await request(`${admin}/v1/profile?volume=vp`)
    const b = await r.body.json() as { volume?: VolumeProfile }
    return r.statusCode === 200 && b.volume?.reads === 9 ? b : undefined
  }, 'the planner to merge the proxy\'s summary', 5000, 100)
  const v = body?.volume as VolumeProfile
  t.equal(v.writes, 1)
  t.same(v.topSites.map(s => s.key).sort(), ['site-a', 'site-b', 'site-c'])
  t.equal(v.topClients[0]?.key, '127.0.1.5', 'the busiest client first')
  t.ok(v.locality !== null && v.locality >= 0 && v.locality <= 1, 'locality is a share')

  const missing = await request(`${admin}/v1/profile?volume=nope`)
  t.equal(missing.statusCode, 404)
  await missing.body.dump()
  const bad = await request(`${admin}/v1/profile?limit=0`)
  t.equal(bad.statusCode, 400)
  await bad.body.dump()
  const badId = await request(`${admin}/v1/profile?volume=..%2fetc`)
  t.equal(badId.statusCode, 400)
  await badId.body.dump()
  const metrics = await (await request(`${admin}/metrics`)).body.text()
  t.match(metrics, /ferry_profile_tracked_volumes 1/)

  // The affinity map as merged in the store: per block and per volume (host affinity).
  const aff = await waitFor(async () => {
    const r = await request(`${admin}/v1/affinity?volume=vp&block=b1`)
    const b = await r.body.json() as { scores?: Record<string, number>, preferred?: Array<{ gateway: string }> }
    return r.statusCode === 200 && (b.scores?.['site-b'] ?? 0) > 5 ? b : undefined
  }, 'the merged affinity of vp/b1', 5000, 100)
  t.equal(aff?.preferred?.[0]?.gateway, 'gw2', 'site-b reads most, so site-b\'s gateway is preferred')
  const host = await (await request(`${admin}/v1/affinity?volume=vp`)).body.json() as { hostAffinity: Record<string, Record<string, number>> }
  const shares = Object.values(host.hostAffinity.vp ?? {})
  t.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 1e-9, 'host affinity shares of vp sum to 1')
  const none = await request(`${admin}/v1/affinity?volume=vp&block=zz`)
  t.equal(none.statusCode, 404)
  await none.body.dump()
  const badPrefix = await request(`${admin}/v1/affinity?prefix=0`)
  t.equal(badPrefix.statusCode, 400)
  await badPrefix.body.dump()
})
