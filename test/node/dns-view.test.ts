import t from 'tap'
import dns from 'node:dns'
import { FerryNode } from '../../bin/node.js'
import { silentLogger } from '../../lib/log.js'
import { createRegistry } from '../../lib/metrics.js'
import { createStore } from '../../state/factory.js'
import { startGateways } from '../helpers/gateway.js'
import { testConfig } from '../helpers/ferry.js'
import { freePort, waitFor } from '../helpers/net.js'

/**
 * DNS answers derived from the fleet (bin/dns-view.ts): a volume resolves to the edge with the
 * lowest expected latency to its data for the client (planner.latency: here 2 ms within a site,
 * 100 ms between): the edge of the site holding it when it is at one site, so answers follow the
 * data when blocks move; the client's own edge when the volume is spread over other sites (one
 * WAN link to each block instead of two); and never an edge for data on an unhealthy gateway
 * while a healthy one holds the volume.
 */
t.test('volume answers follow block locations and gateway health', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const dnsPort = await freePort()
  const config = testConfig(gws.urls, {
    sites: [
      { name: 'site-a', subnets: ['127.0.0.0/24'], edges: ['127.0.0.11', '::1'] },
      { name: 'site-b', subnets: ['127.0.1.0/24'], edges: ['127.0.0.12'] },
      { name: 'site-c', subnets: ['127.0.2.0/24'], edges: ['127.0.0.13'] }
    ],
    dns: { listen: [{ address: '127.0.0.1', port: dnsPort }], zone: 'fleet.test', rateLimit: { responsesPerSecond: 0 } },
    health: { active: { enabled: false }, passive: { failures: 1, baseEjectMs: 60_000 } }
  })
  const node = new FerryNode({ config, roles: new Set(['proxy', 'dns']), logger: silentLogger, registry: createRegistry(false), store })
  await node.start()
  t.teardown(() => node.stop())
  const resolver = new dns.promises.Resolver({ timeout: 1000, tries: 2 })
  resolver.setServers([`127.0.0.1:${dnsPort}`])

  // S3 is on (the default): a bucket name resolves before it holds data, to the asking client's site.
  t.same(await resolver.resolve4('fresh.fleet.test'), ['127.0.0.11'], 'no data yet: the edge of the client\'s site (127.0.0.1 is site-a)')
  t.same(await resolver.resolve4('vx.fleet.test'), ['127.0.0.11'], 'the same for vx before its blocks')
  await store.casLocation('vx', 'b1', 0, { gateway: 'gw1' })
  await store.casLocation('vx', 'b2', 0, { gateway: 'gw1' })
  await store.casLocation('vx', 'b3', 0, { gateway: 'gw2' })
  await waitFor(async () => (await resolver.resolve4('vx.fleet.test'))[0] === '127.0.0.11', 'vx on site-a (most blocks on gw1)')
  t.same(await resolver.resolve6('vx.fleet.test'), ['::1'], 'AAAA from the same site')
  t.same(await resolver.resolve4('gw3.gw.fleet.test'), ['127.0.0.13'], 'a gateway by name')
  const srv = await resolver.resolveSrv('_ferry._tcp.fleet.test')
  t.same(srv.map(r => r.name).sort(), ['site-a.edge.fleet.test', 'site-b.edge.fleet.test', 'site-c.edge.fleet.test'])
  t.equal(srv[0]?.port, node.proxy?.address.port, 'SRV names the proxy port')

  // Both gw1 blocks go to gw3: vx is spread over site-b (b3) and site-c. Through site-c's edge
  // the client (at site-a) would pay 100 ms to the edge and 100 more for b3: 134.7 ms expected,
  // against 102 ms through its own edge. (The rule before, the edge of the site holding most of
  // the volume, answered site-c's.)
  await store.casLocation('vx', 'b1', 1, { gateway: 'gw3' })
  await store.casLocation('vx', 'b2', 1, { gateway: 'gw3' })
  await waitFor(async () => (await resolver.resolve4('vx.fleet.test'))[0] === '127.0.0.11', 'a volume spread over other sites: the client\'s own edge')
  for (let i = 0; i < 3; i++) t.same(await resolver.resolve4('vx.fleet.test'), ['127.0.0.11'], 'and it stays')

  // b3 follows: all of vx is at site-c, and the answer follows the data there (as cheap as the
  // own edge in the model; the site holding the volume wins the tie).
  await store.casLocation('vx', 'b3', 1, { gateway: 'gw3' })
  await waitFor(async () => (await resolver.resolve4('vx.fleet.test'))[0] === '127.0.0.13', 'the answer to follow the data to site-c')

  // gw3 goes down (reported by the proxy), and a new block of vx lands on gw2: site-b's
  // gateway is the only healthy holder, so site-b's edge answers, not site-c's.
  node.proxy?.gateways.reportFailure(node.proxy.gateways.get('gw3')!, 'test')
  await store.casLocation('vx', 'b4', 0, { gateway: 'gw2' })
  await waitFor(async () => (await resolver.resolve4('vx.fleet.test'))[0] === '127.0.0.12', 'no edge of an unhealthy gateway while a healthy one holds the volume')
  t.pass('answers follow the data and the health')
})

t.test('without the S3 front end, a volume with no data is NXDOMAIN', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const dnsPort = await freePort({ udp: true })
  const config = testConfig(gws.urls, {
    dns: { listen: [{ address: '127.0.0.1', port: dnsPort }], zone: 'fleet.test', rateLimit: { responsesPerSecond: 0 } },
    s3: { enabled: false }
  })
  const node = new FerryNode({ config, roles: new Set(['proxy', 'dns']), logger: silentLogger, registry: createRegistry(false), store })
  await node.start()
  t.teardown(() => node.stop())
  const resolver = new dns.promises.Resolver({ timeout: 1000, tries: 2 })
  resolver.setServers([`127.0.0.1:${dnsPort}`])
  await t.rejects(resolver.resolve4('vx.fleet.test'), { code: 'ENOTFOUND' }, 'no data yet: NXDOMAIN')
})
