import t from 'tap'
import { request } from 'undici'
import { FerryNode } from '../../bin/node.js'
import { silentLogger } from '../../lib/log.js'
import { createRegistry } from '../../lib/metrics.js'
import { startGateways } from '../helpers/gateway.js'
import { testConfig } from '../helpers/ferry.js'
import { sleep } from '../helpers/net.js'

t.test('all roles in one process: blocks read from another site move there and stay readable', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, {
    sessions: { enabled: true },
    planner: { latency: { sameSiteMs: 2, defaultMs: 80 }, rebalancer: { intervalMs: 1000, minDwellMs: 60_000, minScore: 3 }, migration: { gracePeriodMs: 500 } }
  })
  const node = new FerryNode({ config, roles: new Set(['proxy', 'planner']), logger: silentLogger, registry: createRegistry(false) })
  await node.start()
  t.teardown(() => node.stop())
  const proxy = `http://127.0.0.1:${node.proxy?.address.port ?? 0}`
  const blocks = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6']
  for (const b of blocks) {
    const r = await request(`${proxy}/v/${b}`, { method: 'PUT', body: `data ${b}` })
    t.equal(r.statusCode, 201)
    await r.body.dump()
  }
  for (let i = 0; i < 10; i++) for (const b of blocks) await (await request(`${proxy}/v/${b}`, { headers: { 'x-forwarded-for': '127.0.2.9' } })).body.dump()
  const deadline = Date.now() + 20_000
  let statuses: number[] = []
  while (Date.now() < deadline) {
    await sleep(500)
    statuses = []
    for (const b of blocks) {
      const r = await request(`${proxy}/v/${b}`, { headers: { 'x-forwarded-for': '127.0.2.9' } })
      statuses.push(r.statusCode)
      await r.body.dump()
    }
    const cached = blocks.map(b => node.proxy?.sync?.cache.get('v', b))
    const stored = await Promise.all(blocks.map(b => node.store.getLocation('v', b)))
    const mismatch = blocks.filter((_, i) => cached[i]?.epoch !== stored[i]?.epoch)
    if (mismatch.length > 0) t.comment(`cache/store mismatch: ${mismatch.map(b => `${b} cache=${JSON.stringify(cached[blocks.indexOf(b)])} store=${JSON.stringify(stored[blocks.indexOf(b)])}`).join(' | ')}`)
    t.same(statuses, blocks.map(() => 200), 'every block readable')
    if (stored.every(l => l?.gateway === 'gw3' && l.phase === 'stable')) break
  }
  const stored = await Promise.all(blocks.map(b => node.store.getLocation('v', b)))
  t.same(stored.map(l => l?.gateway), blocks.map(() => 'gw3'), 'all moved to site-c')
})
