import t from 'tap'
import net from 'node:net'
import { parseSubnet } from '../../dns/ecs.js'
import { encodeName } from '../../dns/wire.js'
import { buildQuery, decode, tcpQuery, udpQuery } from './client.js'
import { MemoryView, sampleView } from './memory-view.js'
import { startServer, ZONE } from './harness.js'

// Byte-level checks of what the server sends, with queries built by hand.

const A = 1
const AAAA = 28
const SOA = 6

t.test('header bits, case echo, EDNS and client subnet rules', async t => {
  const view = sampleView()
  const { port4 } = await startServer(t, view)
  const ask = async (msg: Buffer): Promise<Buffer> => await udpQuery(port4, '127.0.0.1', msg)

  const r = decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: A, id: 0xbeef })))
  t.match(r, { id: 0xbeef, qr: true, aa: true, ra: false, rd: true, rcode: 0, opt: undefined })
  t.same(r.answers.map(a => a.address), ['192.0.2.1'])

  const noRd = decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: A, rd: false })))
  t.equal(noRd.rd, false, 'RD copied from the query (clear)')
  const cdQuery = buildQuery({ name: `vol1.${ZONE}`, type: A })
  cdQuery[3] = (cdQuery[3] as number) | 0x10
  t.equal(decode(await ask(cdQuery)).cd, true, 'CD copied from the query')

  // 0x20: resolvers randomise case and check the echo; the second of these is a cache hit.
  for (const name of [`VoL1.SanDBox.ferry.TEST`, `vOl1.sandbox.FERRY.test`, `vol1.sandbox.ferry.test`]) {
    const reply = await ask(buildQuery({ name, type: A }))
    const wire = encodeName(name)
    t.same(reply.subarray(12, 12 + wire.length), wire, `question echoed byte for byte: ${name}`)
    t.equal(decode(reply).answers[0]?.name, name, 'the answer owner points at the question, so it has the same case')
  }

  const edns = decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: A, edns: { payload: 4096, dnssecOk: true } })))
  t.match(edns.opt, { payload: 1232, version: 0, dnssecOk: true, ecs: undefined }, 'OPT with our payload, DO echoed')
  const noDo = decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: A, edns: {} })))
  t.equal(noDo.opt?.dnssecOk, false)

  const v56 = parseSubnet('2001:db8:1234:5600::/56')
  const withEcs = decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: AAAA, edns: { ecs: v56 } })))
  t.same(withEcs.answers.map(a => a.address), ['2001:db8:f0::2'], 'the /56 picks the west site')
  t.equal(withEcs.opt?.ecs?.family, 2)
  t.equal(withEcs.opt?.ecs?.sourcePrefix, 56, 'source prefix echoed')
  t.equal(withEcs.opt?.ecs?.scopePrefix, 56, 'scope = source for a site-dependent answer')
  t.same(withEcs.opt?.ecs?.address, v56.address, 'address echoed')

  const v20 = parseSubnet('10.2.0.0/20')
  const four = decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: A, edns: { ecs: v20 } })))
  t.same(four.answers.map(a => a.address), ['192.0.2.2'])
  t.match(four.opt?.ecs, { family: 1, sourcePrefix: 20, scopePrefix: 20 })

  const soa = decode(await ask(buildQuery({ name: ZONE, type: SOA, edns: { ecs: v20 } })))
  t.equal(soa.opt?.ecs?.scopePrefix, 0, 'scope 0 for an answer the same everywhere')
  const nx = decode(await ask(buildQuery({ name: `nope.${ZONE}`, type: A, edns: { ecs: v20 } })))
  t.equal(nx.rcode, 3)
  t.equal(nx.opt?.ecs?.scopePrefix, 0, 'scope 0 for NXDOMAIN')

  // Bits set past the prefix: FORMERR, and no OPT in it (RFC 6891 §7).
  const dirty = buildQuery({ name: `vol1.${ZONE}`, type: A, edns: { ecs: v20 } })
  dirty[dirty.length - 1] = 0x01 // the address's third octet, last in the message: 10.2.1.0 is not a /20
  const formerr = decode(await ask(dirty))
  t.equal(formerr.rcode, 1, 'FORMERR for a client subnet with host bits')
  t.equal(formerr.opt, undefined, 'without an OPT')
})

t.test('error responses', async t => {
  const { port4 } = await startServer(t, sampleView())
  const ask = async (msg: Buffer): Promise<Buffer> => await udpQuery(port4, '127.0.0.1', msg)

  const badvers = decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: A, edns: { version: 1 } })))
  t.equal(badvers.rcode, 16, 'BADVERS for EDNS version 1')
  t.equal(badvers.opt?.version, 0, 'with the version we speak')
  t.same(badvers.answers, [])

  const notify = buildQuery({ name: ZONE, type: SOA })
  notify[2] = 4 << 3 // opcode NOTIFY
  t.equal(decode(await ask(notify)).rcode, 4, 'NOTIMP for NOTIFY')
  const update = buildQuery({ name: ZONE, type: SOA })
  update[2] = 5 << 3
  t.equal(decode(await ask(update)).rcode, 4, 'NOTIMP for UPDATE')

  t.equal(decode(await ask(buildQuery({ name: ZONE, type: 252 }))).rcode, 5, 'AXFR refused')
  t.equal(decode(await ask(buildQuery({ name: ZONE, type: 251 }))).rcode, 5, 'IXFR refused')
  t.equal(decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: 41 }))).rcode, 1, 'OPT as a question is FORMERR')
  t.equal(decode(await ask(buildQuery({ name: 'version.bind', type: 16, qclass: 3 }))).rcode, 5, 'CHAOS refused')
  t.equal(decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: A, qclass: 3 }))).rcode, 5, 'in-zone name, class CH: refused')
  t.equal(decode(await ask(buildQuery({ name: `vol1.${ZONE}`, type: A, qclass: 255 }))).rcode, 0, 'class ANY is read as IN')

  const garbage = Buffer.from('1234010000010000000000000561626364', 'hex') // name cut short
  const fe = decode(await ask(garbage))
  t.match(fe, { id: 0x1234, qr: true, rcode: 1 }, 'FORMERR keeps the id')
  t.equal(fe.counts[0], 0, 'and has no question it could not read')

  const response = buildQuery({ name: `vol1.${ZONE}`, type: A })
  response[2] = (response[2] as number) | 0x80
  await t.rejects(udpQuery(port4, '127.0.0.1', response, 300), /no UDP reply/, 'a response is never answered (no reflection loops)')
  await t.rejects(udpQuery(port4, '127.0.0.1', Buffer.from('0102', 'hex'), 300), /no UDP reply/, 'a fragment of a header gets nothing')

  const bogusLabel = Buffer.concat([Buffer.from('123401000001000000000000', 'hex'), Buffer.from([3, 0x61, 0x2e, 0x62]), encodeName(ZONE), Buffer.from('00010001', 'hex')])
  t.equal(decode(await ask(bogusLabel)).rcode, 3, 'a label containing "." is no volume: NXDOMAIN')
  const compressed = Buffer.concat([Buffer.from('123401000001000000000000', 'hex'), Buffer.from([4]), Buffer.from('vol1'), encodeName(ZONE), Buffer.from('00010001', 'hex')])
  t.same(decode(await ask(compressed)).answers.map(a => a.address), ['192.0.2.1'], 'sanity: the same built by hand answers')
})

t.test('UDP size limits and truncation', async t => {
  const view = new MemoryView([
    { name: 'home', subnets: ['127.0.0.0/8'], edges: Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`) },
    { name: 'far', subnets: [], edges: Array.from({ length: 100 }, (_, i) => `203.0.113.${i + 1}`) }
  ])
  view.setGateway('g1', 'home')
  view.setGateway('g2', 'far')
  view.setVolume('forty', ['g1'])
  view.setVolume('hundred', ['g2'])
  const { port4 } = await startServer(t, view)
  const ask = async (msg: Buffer): Promise<Buffer> => await udpQuery(port4, '127.0.0.1', msg)

  // 40 A records: ~700 octets.
  for (let i = 0; i < 2; i++) {
    const plain = await ask(buildQuery({ name: `forty.${ZONE}`, type: A }))
    t.ok(plain.length <= 512, `no EDNS: within 512 octets (${plain.length}) [${i}]`)
    t.match(decode(plain), { tc: true, counts: [1, 0, 0, 0] }, 'TC, no partial answer')
    const big = await ask(buildQuery({ name: `forty.${ZONE}`, type: A, edns: { payload: 1232 } }))
    t.match(decode(big), { tc: false }, `fits EDNS 1232 [${i}]`)
    t.equal(decode(big).answers.length, 40)
  }
  // 100 A records: ~1.7 KB, more than the 1232 ferry ever sends over UDP even when offered 4096.
  const offered = decode(await ask(buildQuery({ name: `hundred.${ZONE}`, type: A, edns: { payload: 4096 } })))
  t.equal(offered.tc, true, 'capped by maxUdpPayload')
  t.ok(offered.size <= 1232)
  const [overTcp] = await tcpQuery(port4, '127.0.0.1', [buildQuery({ name: `hundred.${ZONE}`, type: A, edns: { payload: 4096 } })])
  t.equal(decode(overTcp as Buffer).answers.length, 100, 'complete over TCP')
})

t.test('TCP: pipelining, and a connection with garbage is closed', async t => {
  const { server, port4 } = await startServer(t, sampleView())
  const replies = await tcpQuery(port4, '127.0.0.1', [
    buildQuery({ name: `vol1.${ZONE}`, type: A, id: 1 }),
    buildQuery({ name: `vol2.${ZONE}`, type: AAAA, id: 2 }),
    buildQuery({ name: `nope.${ZONE}`, type: A, id: 3 })
  ])
  t.same(replies.map(r => decode(r).id), [1, 2, 3])
  t.same(decode(replies[1] as Buffer).answers.map(a => a.address), ['2001:db8:f0::2'])
  t.equal(decode(replies[2] as Buffer).rcode, 3)

  // A framed message too short to be DNS: no answer possible, the stream is closed.
  const sock = net.connect({ port: port4, host: '127.0.0.1' })
  const closed = new Promise<void>(resolve => sock.on('close', () => resolve()))
  sock.on('error', () => {})
  sock.write(Buffer.from('0003010203', 'hex'))
  await closed
  t.pass('closed')
  t.ok(server.ready(), 'and the server is fine')
  const [after] = await tcpQuery(port4, '127.0.0.1', [buildQuery({ name: `vol1.${ZONE}`, type: A })])
  t.equal(decode(after as Buffer).answers.length, 1)
})

t.test('cached answers are not recomputed until the data changes', async t => {
  const view = sampleView()
  const { port4, server } = await startServer(t, view)
  const q = buildQuery({ name: `vol1.${ZONE}`, type: A })
  await udpQuery(port4, '127.0.0.1', q)
  const after1 = view.volumeLookups
  for (let i = 0; i < 5; i++) await udpQuery(port4, '127.0.0.1', q)
  t.equal(view.volumeLookups, after1, 'five more queries, no view lookups')
  t.ok(server.metrics.cacheHits >= 5)
  view.setHealthy('gw-west', true) // any change
  await udpQuery(port4, '127.0.0.1', q)
  t.equal(view.volumeLookups, after1 + 1, 'one lookup after a change')
})

t.test('a change scoped to one volume keeps every other answer cached', async t => {
  const view = sampleView()
  const { port4, server } = await startServer(t, view)
  const ask = async (name: string, type = A): Promise<string[]> =>
    decode(await udpQuery(port4, '127.0.0.1', buildQuery({ name, type }))).answers.map(a => String(a.address ?? a.serial))
  await ask(`vol1.${ZONE}`)
  await ask(`solo.${ZONE}`)
  const serial = (await ask(ZONE, SOA))[0]
  const lookups = view.volumeLookups
  view.setVolume('SOLO', ['gw-west']) // scoped: { volumes: ['SOLO'] }, in any case
  t.same(await ask(`solo.${ZONE}`), ['192.0.2.2'], 'the changed volume answers anew')
  t.equal(view.volumeLookups, lookups + 1, 'one lookup, for it')
  t.same(await ask(`vol1.${ZONE}`), ['192.0.2.1'])
  t.equal(view.volumeLookups, lookups + 1, 'the other volume still comes from the cache')
  t.not((await ask(ZONE, SOA))[0], serial, 'the SOA shows the new serial')
  t.equal(server.status().serial, Number((await ask(ZONE, SOA))[0]))
})
