import t from 'tap'
import { promises as dnsp } from 'node:dns'
import { parseSubnet } from '../../dns/ecs.js'
import { buildQuery, decode, tcpQuery, udpQuery } from './client.js'
import { sampleView } from './memory-view.js'
import { startServer, ZONE } from './harness.js'

// Answers follow the data: every change to the view shows in the very next answer, although
// answers are served from a cache of encoded responses. Each expectation is asked twice
// before the next change so that the second ask comes from the cache.

const EAST = parseSubnet('10.1.0.0/16')
const EAST6 = parseSubnet('2001:db8:e::/48')

t.test('volume moves, gateway health, sites, proxies', async t => {
  const view = sampleView()
  const { port4, server } = await startServer(t, view)
  const addressOf = async (volume: string, type = 1, ecs = EAST): Promise<string[]> => {
    const out: string[][] = []
    for (let i = 0; i < 2; i++) {
      const udp = decode(await udpQuery(port4, '127.0.0.1', buildQuery({ name: `${volume}.${ZONE}`, type, edns: { ecs } })))
      const [tcp] = await tcpQuery(port4, '127.0.0.1', [buildQuery({ name: `${volume}.${ZONE}`, type, edns: { ecs } })])
      out.push(udp.answers.map(a => String(a.address)), decode(tcp as Buffer).answers.map(a => String(a.address)))
    }
    // UDP and TCP, fresh and cached, must all agree.
    for (const o of out) t.same(o, out[0], `consistent answers for ${volume}`)
    return out[0] as string[]
  }

  // vol2 is only at west: an east client is sent to the west edge.
  t.same(await addressOf('vol2'), ['192.0.2.2'], 'held only at west')
  const serial0 = server.status().serial

  // The planner copies vol2 to gw-east and publishes: the next answer is the east edge.
  view.setVolume('vol2', ['gw-west', 'gw-east'])
  t.same(await addressOf('vol2'), ['192.0.2.1'], 'copy at the client\'s site: local edge')
  t.ok(server.status().serial > serial0, 'the SOA serial moved forward')
  t.same(await addressOf('vol2', 28, EAST6), ['2001:db8:e0::1'], 'and for IPv6 clients')

  // gw-east is ejected: while the healthy west copy exists, east's edge is never answered.
  view.setHealthy('gw-east', false)
  t.same(await addressOf('vol2'), ['192.0.2.2'], 'unhealthy local gateway: the healthy remote one')
  t.same(await addressOf('vol1'), ['192.0.2.2'], 'also for every other volume it held')
  t.same(await addressOf('vol2', 28, EAST6), ['2001:db8:f0::2'])

  // Both down: no healthy alternative; the best unhealthy one beats no answer.
  view.setHealthy('gw-west', false)
  t.same(await addressOf('vol2'), ['192.0.2.1'], 'nothing healthy: the nearest anyway')
  view.setHealthy('gw-east', true)
  view.setHealthy('gw-west', true)
  t.same(await addressOf('vol2'), ['192.0.2.1'], 'restored')

  // The volume is removed from the east gateway (migration done, source cleaned up).
  view.setVolume('vol2', ['gw-west'])
  t.same(await addressOf('vol2'), ['192.0.2.2'], 'moved away again')

  // A volume is deleted, then created: NXDOMAIN, then an address, on the next query each time.
  view.deleteVolume('vol2')
  for (let i = 0; i < 2; i++) {
    t.equal(decode(await udpQuery(port4, '127.0.0.1', buildQuery({ name: `vol2.${ZONE}`, type: 1, edns: { ecs: EAST } }))).rcode, 3, `deleted: NXDOMAIN [${i}]`)
  }
  view.setVolume('vol2', ['gw-east'])
  t.same(await addressOf('vol2'), ['192.0.2.1'], 'created: answered at once')

  // The site map changes: 10.1.0.0/16 now belongs to west.
  view.setSites([
    { name: 'east', subnets: ['2001:db8:e::/48'], edges: ['192.0.2.1', '2001:db8:e0::1'] },
    { name: 'west', subnets: ['10.1.0.0/16', '10.2.0.0/20'], edges: ['192.0.2.2', '2001:db8:f0::2'] },
    { name: 'home', subnets: ['127.0.0.0/8', '::1/128'], edges: ['192.0.2.3', '2001:db8:10::3'] }
  ])
  t.same(await addressOf('vol1'), ['192.0.2.2'], 'the subnet moved to west, and so did the answer for vol1')

  // The proxies change: SRV follows.
  const r = new dnsp.Resolver({ timeout: 1500, tries: 2 })
  r.setServers([`127.0.0.1:${port4}`])
  t.equal((await r.resolveSrv(`_ferry._tcp.${ZONE}`)).length, 2)
  view.setProxies([{ target: `edge-c.${ZONE}`, port: 9443, v4: ['192.0.2.9'] }])
  t.same(await r.resolveSrv(`_ferry._tcp.${ZONE}`), [{ name: `edge-c.${ZONE}`, port: 9443, priority: 0, weight: 0 }])
  t.same(await r.resolve4(`edge-c.${ZONE}`), ['192.0.2.9'], 'the new target resolves')
  await t.rejects(r.resolve4(`edge-a.${ZONE}`), { code: 'ENOTFOUND' }, 'the old one is gone (no longer a host; no such volume)')
})

t.test('the server stops listening to the view when stopped', async t => {
  const view = sampleView()
  const { server } = await startServer(t, view)
  t.equal(view.listenerCount, 1)
  await server.stop()
  t.equal(view.listenerCount, 0, 'unsubscribed')
})
