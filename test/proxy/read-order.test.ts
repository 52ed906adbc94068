import t from 'tap'
import { latencyMatrix } from '../../fleet/latency.js'
import { GatewaySet } from '../../proxy/gateway-set.js'
import { nearestInSync, readOrder } from '../../proxy/replicas.js'
import type { BlockLocation } from '../../state/types.js'
import { testConfig } from '../helpers/ferry.js'

/**
 * A read of a replicated block goes to the in-sync member nearest the client by the latency
 * model (planner.latency), not to the set's head when the client's site holds no member: the
 * head is the best member for all of the block's readers, not for this one.
 */
t.test('reads go to the nearest in-sync member by planner.latency', async t => {
  // gw1 at site-a, gw2 at site-b, gw3 at site-c (testConfig); nothing listens: no request is made.
  const cfg = testConfig(['http://127.0.0.1:9', 'http://127.0.0.1:9', 'http://127.0.0.1:9'])
  const gateways = new GatewaySet(cfg.gateways, cfg.health, cfg.proxy)
  t.teardown(() => gateways.destroy())
  gateways.latency = latencyMatrix({ 'site-a': { 'site-b': 10, 'site-c': 100 }, 'site-b': { 'site-c': 50 } }, { sameSiteMs: 2, defaultMs: 200 })
  const now = Date.now()
  const loc: BlockLocation = { gateway: 'gw3', members: ['gw3', 'gw2'], inSync: ['gw3', 'gw2'], epoch: 1, version: null, phase: 'stable', updatedAt: now, fence: 0 }

  t.equal(nearestInSync(gateways, loc, 'site-a', now)?.id, 'gw2', 'site-a holds no member: gw2 (10 ms), not the head gw3 (100 ms)')
  t.same(readOrder(gateways, loc, 'site-a', now).map(g => g.id), ['gw2', 'gw3'], 'and the order fails over to the head')
  t.equal(nearestInSync(gateways, loc, 'site-c', now)?.id, 'gw3', 'a member at the client\'s own site first')
  t.equal(nearestInSync(gateways, loc, undefined, now)?.id, 'gw3', 'a client in no site: the set\'s order')
  t.equal(nearestInSync(gateways, { ...loc, inSync: ['gw3'] }, 'site-a', now)?.id, 'gw3', 'a member out of sync is never read')

  // Health still comes first: the nearer member ejected, the head serves.
  const gw2 = gateways.get('gw2')
  if (gw2 === undefined) throw new Error('no gw2')
  for (let i = 0; i < cfg.health.passive.failures; i++) gateways.reportFailure(gw2, 'test')
  t.equal(nearestInSync(gateways, loc, 'site-a', Date.now())?.id, 'gw3', 'an unhealthy member after a healthy one, however near')
})
