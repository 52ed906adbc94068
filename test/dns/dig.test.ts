import t from 'tap'
import { NO_DIG, dig, hasDig, parseDig } from './client.js'
import { sampleView } from './memory-view.js'
import { startServer, ZONE } from './harness.js'

// dig as the client: the reference for what a DNS operator sees. Skipped cleanly where dig is
// not installed (CI images without bind9-dnsutils).

const digMissing = !await hasDig()

t.test('dig', { skip: digMissing ? NO_DIG : false }, async t => {
  const view = sampleView()
  const wideEdges = Array.from({ length: 60 }, (_, i) => `198.51.100.${i + 1}`)
  view.setSites([
    { name: 'east', subnets: ['10.1.0.0/16', '2001:db8:e::/48'], edges: ['192.0.2.1', '2001:db8:e0::1'] },
    { name: 'west', subnets: ['10.2.0.0/20', '2001:db8:1234:5600::/56', '2001:1000::/20'], edges: ['192.0.2.2', '2001:db8:f0::2'] },
    { name: 'home', subnets: ['127.0.0.0/8', '::1/128'], edges: ['192.0.2.3', '2001:db8:10::3'] },
    { name: 'wide', subnets: [], edges: wideEdges }
  ])
  view.setGateway('gw-wide', 'wide')
  view.setVolume('wide', ['gw-wide'])
  const { port4, port6 } = await startServer(t, view)
  const at4 = ['@127.0.0.1', '-p', String(port4)]

  for (const transport of ['udp', 'tcp'] as const) {
    await t.test(`client subnet picks the site (${transport})`, async t => {
      const extra = transport === 'tcp' ? ['+tcp'] : []
      const cases: Array<[string, string, string, string]> = [
        // [type, subnet, expected address, expected echo address/source/scope]
        ['A', '10.2.0.0/20', '192.0.2.2', '10.2.0.0/20/20'],
        ['A', '10.1.7.0/24', '192.0.2.1', '10.1.7.0/24/24'],
        ['AAAA', '2001:db8:1234:5600::/56', '2001:db8:f0::2', '2001:db8:1234:5600::/56/56'],
        ['AAAA', '2001:1000::/20', '2001:db8:f0::2', '2001:1000::/20/20'],
        ['AAAA', '2001:db8:e::/48', '2001:db8:e0::1', '2001:db8:e::/48/48'],
        // /0: the client opted out, so the source address (loopback, site home) decides and
        // the scope is 0.
        ['A', '0.0.0.0/0', '192.0.2.1', '0.0.0.0/0/0']
      ]
      for (const [type, subnet, address, echo] of cases) {
        // vol1 is held at east and west: the client's own site wins.
        const out = parseDig(await dig([...at4, `vol1.${ZONE}`, type, `+subnet=${subnet}`, ...extra]))
        t.equal(out.status, 'NOERROR', `${subnet}: status`)
        t.same(out.answer, [`vol1.${ZONE}. 5 IN ${type} ${address}`], `${subnet}: answer`)
        t.equal(out.subnet, echo, `${subnet}: echoed with scope`)
        t.ok(out.flags.includes('aa'), `${subnet}: authoritative`)
        t.notOk(out.flags.includes('ra'), `${subnet}: no recursion available`)
        t.equal(out.server, transport.toUpperCase(), `${subnet}: over ${transport}`)
      }
      // The same name from a cached answer, twice, to show the fast path echoes correctly too.
      for (let i = 0; i < 2; i++) {
        const again = parseDig(await dig([...at4, `vol1.${ZONE}`, 'AAAA', '+subnet=2001:db8:1234:5600::/56', ...extra]))
        t.equal(again.subnet, '2001:db8:1234:5600::/56/56', `repeat ${i}: /56 echoed from the cache`)
      }
      const soa = parseDig(await dig([...at4, ZONE, 'SOA', '+subnet=10.2.0.0/20', ...extra]))
      t.equal(soa.subnet, '10.2.0.0/20/0', 'an answer that does not depend on the client has scope 0')
    })
  }

  await t.test('NXDOMAIN, NODATA, REFUSED, ANY', async t => {
    const nx = parseDig(await dig([...at4, `nope.${ZONE}`, 'A']))
    t.equal(nx.status, 'NXDOMAIN')
    t.ok(nx.flags.includes('aa'))
    t.same(nx.answer, [])
    t.match(nx.authority[0], new RegExp(`^${ZONE}\\. 5 IN SOA ns1\\.${ZONE}\\. hostmaster\\.${ZONE}\\. \\d+ 3600 600 86400 5$`), 'SOA in authority, negative TTL')

    const nodata = parseDig(await dig([...at4, `vol1.${ZONE}`, 'MX']))
    t.equal(nodata.status, 'NOERROR')
    t.same(nodata.answer, [])
    t.match(nodata.authority[0], /IN SOA/, 'NODATA carries the SOA')

    const refused = parseDig(await dig([...at4, 'www.example.com', 'A']))
    t.equal(refused.status, 'REFUSED')
    t.notOk(refused.flags.includes('aa'), 'not authoritative outside the zone')

    const chaos = parseDig(await dig([...at4, 'version.bind', 'TXT', 'CH']))
    t.equal(chaos.status, 'REFUSED', 'CHAOS class is refused')

    // dig prints only "Transfer failed." for a refused AXFR; the raw tests check the REFUSED.
    t.match(await dig([...at4, ZONE, 'AXFR']), /; Transfer failed\./, 'no zone transfers')

    const any = parseDig(await dig([...at4, `vol1.${ZONE}`, 'ANY']))
    t.equal(any.answer.length, 1, 'ANY: a single RRset')
    t.match(any.answer[0], / IN A /)
  })

  await t.test('SOA, NS with glue, SRV with additional addresses', async t => {
    const ns = parseDig(await dig([...at4, ZONE, 'NS']))
    t.same(ns.answer, [`${ZONE}. 3600 IN NS ns1.${ZONE}.`])
    t.same(ns.additional, [`ns1.${ZONE}. 3600 IN A 127.0.0.1`], 'glue for the in-zone name server')

    const srv = parseDig(await dig([...at4, `_ferry._tcp.${ZONE}`, 'SRV']))
    t.same(srv.answer, [
      `_ferry._tcp.${ZONE}. 5 IN SRV 10 5 8080 edge-a.${ZONE}.`,
      `_ferry._tcp.${ZONE}. 5 IN SRV 20 5 8080 edge-b.${ZONE}.`
    ])
    t.same(srv.additional.sort(), [
      `edge-a.${ZONE}. 5 IN A 192.0.2.1`,
      `edge-a.${ZONE}. 5 IN AAAA 2001:db8:e0::1`,
      `edge-b.${ZONE}. 5 IN A 192.0.2.2`
    ].sort())
  })

  await t.test('EDNS and truncation', async t => {
    const edns = parseDig(await dig([...at4, `vol1.${ZONE}`, 'A', '+bufsize=4096']))
    t.equal(edns.udp, 1232, 'advertises the configured payload, whatever the client offers')
    const none = await dig([...at4, `vol1.${ZONE}`, 'A', '+noedns'])
    t.notMatch(none, /OPT PSEUDOSECTION/, 'no OPT to a client that sent none')

    // 60 addresses (about 1 KB) do not fit 512 octets: TC over UDP, complete over TCP.
    const cut = parseDig(await dig([...at4, `wide.${ZONE}`, 'A', '+bufsize=512', '+ignore']))
    t.ok(cut.flags.includes('tc'), 'TC set')
    t.same(cut.answer, [], 'no partial RRset')
    const retried = await dig([...at4, `wide.${ZONE}`, 'A', '+bufsize=512'])
    t.match(retried, /Truncated, retrying in TCP mode/, 'dig falls back to TCP')
    t.equal(parseDig(retried).answer.length, 60, 'and gets every address')
    const fits = parseDig(await dig([...at4, `wide.${ZONE}`, 'A', '+bufsize=1232']))
    t.notOk(fits.flags.includes('tc'), 'fits a 1232-octet payload')
    t.equal(fits.answer.length, 60)
  })

  await t.test('over IPv6', { skip: port6 === undefined ? '::1 not available' : false }, async t => {
    const at6 = ['@::1', '-p', String(port6)]
    for (const extra of [[], ['+tcp']]) {
      const out = parseDig(await dig([...at6, `vol1.${ZONE}`, 'AAAA', '+subnet=2001:db8:1234:5600::/56', ...extra]))
      t.same(out.answer, [`vol1.${ZONE}. 5 IN AAAA 2001:db8:f0::2`])
      t.equal(out.subnet, '2001:db8:1234:5600::/56/56')
    }
    const bySource = parseDig(await dig([...at6, `solo.${ZONE}`, 'AAAA']))
    t.same(bySource.answer, [`solo.${ZONE}. 5 IN AAAA 2001:db8:10::3`], 'site from the IPv6 source address')
  })
})
