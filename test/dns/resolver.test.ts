import t from 'tap'
import { promises as dnsp } from 'node:dns'
import { sampleView } from './memory-view.js'
import { startServer, ZONE } from './harness.js'

// Node's own resolver (c-ares) as the client: it speaks UDP, falls back to TCP on TC, and
// maps NXDOMAIN / NODATA / REFUSED to its error codes.

function resolverFor (host: string, port: number): dnsp.Resolver {
  const r = new dnsp.Resolver({ timeout: 1500, tries: 2 })
  r.setServers([host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`])
  return r
}

t.test('Node resolver over IPv4 and IPv6 transports', async t => {
  const view = sampleView()
  // A volume with more edges than fit in one UDP answer: c-ares must retry over TCP.
  const many = Array.from({ length: 100 }, (_, i) => `198.51.100.${i + 1}`)
  view.setSites([
    { name: 'home', subnets: ['127.0.0.0/8', '::1/128'], edges: ['192.0.2.3', '2001:db8:10::3'] },
    { name: 'east', subnets: ['10.1.0.0/16'], edges: ['192.0.2.1', '2001:db8:e0::1'] },
    { name: 'west', subnets: ['10.2.0.0/20'], edges: ['192.0.2.2', '2001:db8:f0::2'] },
    { name: 'wide', subnets: [], edges: many }
  ])
  view.setGateway('gw-wide', 'wide')
  view.setVolume('wide', ['gw-wide'])
  const { port4, port6 } = await startServer(t, view)

  const servers: Array<[string, number]> = [['127.0.0.1', port4]]
  if (port6 !== undefined) servers.push(['::1', port6])
  else t.comment('::1 is not available here: IPv6 transport not tested')

  for (const [host, port] of servers) {
    await t.test(`server ${host}`, async t => {
      const r = resolverFor(host, port)
      // The client is at site "home" (loopback); vol1 lives on gw-east then gw-west, none at
      // home, so the first healthy one wins.
      t.same(await r.resolve4(`vol1.${ZONE}`), ['192.0.2.1'], 'A of a volume')
      t.same(await r.resolve6(`vol2.${ZONE}`), ['2001:db8:f0::2'], 'AAAA of a volume')
      t.same(await r.resolve4(`solo.${ZONE}`), ['192.0.2.3'], 'the local edge for a volume held at the client\'s site')
      t.same(await r.resolve4(`gw-west.gw.${ZONE}`), ['192.0.2.2'], 'a gateway by name')
      t.same(await r.resolve4(`VOL1.${ZONE.toUpperCase()}`), ['192.0.2.1'], 'names are case-insensitive')

      const soa = await r.resolveSoa(ZONE)
      t.match(soa, { nsname: `ns1.${ZONE}`, hostmaster: `hostmaster.${ZONE}`, refresh: 3600, retry: 600, expire: 86400, minttl: 5 }, 'SOA')
      t.ok(soa.serial > 0, 'SOA serial')
      t.same(await r.resolveNs(ZONE), [`ns1.${ZONE}`], 'NS')
      const srv = await r.resolveSrv(`_ferry._tcp.${ZONE}`)
      t.same(srv.sort((a, b) => a.priority - b.priority), [
        { name: `edge-a.${ZONE}`, port: 8080, priority: 10, weight: 5 },
        { name: `edge-b.${ZONE}`, port: 8080, priority: 20, weight: 5 }
      ], 'SRV of the proxies')
      t.same(await r.resolve4(`edge-a.${ZONE}`), ['192.0.2.1'], 'an in-zone SRV target resolves')

      await t.rejects(r.resolve4(`nope.${ZONE}`), { code: 'ENOTFOUND' }, 'unknown volume: NXDOMAIN')
      await t.rejects(r.resolve4(`x.y.gw.${ZONE}`), { code: 'ENOTFOUND' }, 'nothing lives deeper under gw')
      await t.rejects(r.resolveTxt(`vol1.${ZONE}`), { code: 'ENODATA' }, 'known name, other type: NODATA')
      await t.rejects(r.resolve4(`gw.${ZONE}`), { code: 'ENODATA' }, 'gw is an empty non-terminal')
      await t.rejects(r.resolve4(`_tcp.${ZONE}`), { code: 'ENODATA' }, '_tcp is an empty non-terminal')
      await t.rejects(r.resolve4('example.com'), { code: 'EREFUSED' }, 'outside the zone: REFUSED')
      await t.rejects(r.resolve4(`ferry.test`), { code: 'EREFUSED' }, 'the parent zone is outside too')

      const any = await r.resolveAny(`vol1.${ZONE}`)
      t.same(any, [{ type: 'A', address: '192.0.2.1', ttl: 5 }], 'ANY: one RRset (RFC 8482)')
      const apexAny = await r.resolveAny(ZONE)
      t.equal(apexAny.length, 1, 'ANY at the apex: one RRset')
      t.equal(apexAny[0]?.type, 'SOA')

      const wide = await r.resolve4(`wide.${ZONE}`)
      t.equal(wide.length, 100, 'an answer too large for UDP arrives complete (TC, then TCP)')
      t.same(new Set(wide), new Set(many))
    })
  }
})
