import t from 'tap'
import dgram from 'node:dgram'
import { parseDnsConfig } from '../../dns/config.js'
import { RRL_DROP, RRL_SEND, RRL_SLIP, RateLimiter } from '../../dns/rrl.js'
import { buildQuery, decode, tcpQuery, udpQuery } from './client.js'
import { sampleView } from './memory-view.js'
import { startServer, ZONE } from './harness.js'

const limiter = (o: Record<string, unknown>): RateLimiter => new RateLimiter(parseDnsConfig({ rateLimit: o }).rateLimit)

t.test('per-subnet balance, slip, window, grouping', async t => {
  const rrl = limiter({ responsesPerSecond: 10, windowS: 2, slip: 2 })
  const verdicts = Array.from({ length: 16 }, () => rrl.check('10.0.0.1', 100))
  t.same(verdicts.slice(0, 10), Array(10).fill(RRL_SEND), 'a burst up to the rate is answered')
  t.same(verdicts.slice(10), [RRL_DROP, RRL_SLIP, RRL_DROP, RRL_SLIP, RRL_DROP, RRL_SLIP], 'then every 2nd limited response slips')
  t.equal(rrl.check('10.0.0.200', 100), RRL_DROP, 'the same /24 shares the balance')
  t.equal(rrl.check('::ffff:10.0.0.7', 100), RRL_SLIP, 'IPv4-mapped IPv6 is the IPv4 subnet')
  t.equal(rrl.check('10.0.1.1', 100), RRL_SEND, 'the next /24 is separate')

  // Keep flooding: the debt grows to rate × window (20) and no further.
  for (let i = 0; i < 1000; i++) rrl.check('10.0.0.1', 100)
  // Debt −20 at t=100. At 101.5: +15 −1 = −6, limited. At 102.2: +7 −1 = 0, answered.
  t.not(rrl.check('10.0.0.1', 101.5), RRL_SEND, '1.5 s later: still in debt')
  t.equal(rrl.check('10.0.0.1', 102.2), RRL_SEND, 'free again once rate × window is repaid, however long the flood was')

  const v6 = limiter({ responsesPerSecond: 1, slip: 0, ipv6PrefixLength: 56 })
  t.equal(v6.check('2001:db8:0:100::1', 5), RRL_SEND)
  t.equal(v6.check('2001:db8:0:1ff::2', 5), RRL_DROP, 'same /56')
  t.equal(v6.check('2001:db8:0:200::1', 5), RRL_SEND, 'next /56')
  t.equal(v6.check('2001:db8:0:100::1', 5), RRL_DROP, 'slip 0 never slips')

  const all = limiter({ responsesPerSecond: 1, slip: 1 })
  all.check('192.0.2.1', 1)
  t.equal(all.check('192.0.2.1', 1), RRL_SLIP, 'slip 1: every limited response is a TC reply')

  const exempt = limiter({ responsesPerSecond: 1, exempt: ['10.9.0.0/16', 'fd00::/8'] })
  for (let i = 0; i < 5; i++) t.equal(exempt.check('10.9.3.4', 1), RRL_SEND, `exempt subnet [${i}]`)
  exempt.check('fd00::1', 1)
  t.equal(exempt.check('fd00::1', 1), RRL_SEND, 'exempt IPv6')

  const off = limiter({ responsesPerSecond: 0 })
  for (let i = 0; i < 100; i++) off.check('10.0.0.1', 1)
  t.equal(off.check('10.0.0.1', 1), RRL_SEND, '0 turns it off')
  t.equal(off.size, 0, 'and tracks nothing')

  const small = limiter({ responsesPerSecond: 1, maxTableSize: 2, windowS: 1 })
  small.check('10.0.1.1', 1)
  small.check('10.0.2.1', 1)
  t.equal(small.check('10.0.3.1', 1), RRL_SEND, 'table full: newcomers share one bucket...')
  t.equal(small.check('10.0.4.1', 1), RRL_DROP, '...and are limited together')
  t.equal(small.size, 2, 'the table does not grow past its bound')
  t.equal(small.check('10.0.5.1', 10), RRL_SEND, 'idle entries are swept when room is needed')
  small.sweep(100)
  t.equal(small.size, 0, 'sweep forgets quiet subnets')
})

t.test('observable on the wire: drops, TC slips, TCP unaffected, metrics', async t => {
  const view = sampleView()
  const { server, registry, port4, port6 } = await startServer(t, view, { rateLimit: { responsesPerSecond: 10, windowS: 1, slip: 2 } })
  const sock = dgram.createSocket('udp4')
  t.teardown(() => new Promise<void>(resolve => sock.close(() => resolve())))
  const replies: Buffer[] = []
  sock.on('message', m => replies.push(m))
  await new Promise<void>(resolve => sock.bind(0, '127.0.0.1', () => resolve()))
  const q = buildQuery({ name: `vol1.${ZONE}`, type: 1 })
  for (let i = 0; i < 200; i++) sock.send(q, port4, '127.0.0.1')
  await new Promise(resolve => setTimeout(resolve, 300))

  const full = replies.filter(r => !decode(r).tc)
  const slipped = replies.filter(r => decode(r).tc)
  t.ok(full.length >= 10 && full.length <= 20, `about the rate answered in full (${full.length})`)
  t.ok(slipped.length >= 50, `limited responses slip as TC replies (${slipped.length})`)
  t.ok(replies.length < 150, `the rest are dropped (${replies.length} replies to 200 queries)`)
  for (const r of slipped) t.match(decode(r), { qr: true, tc: true, counts: [1, 0, 0, 0] }, 'a slip is a bare truncated reply')
  t.ok(Math.max(...slipped.map(r => r.length)) <= q.length, 'and no larger than the query: nothing to amplify')

  const [overTcp] = await tcpQuery(port4, '127.0.0.1', [q])
  t.same(decode(overTcp as Buffer).answers.map(a => a.address), ['192.0.2.1'], 'TCP is never limited: the slipped client gets its answer')
  if (port6 !== undefined) {
    t.equal(decode(await udpQuery(port6, '::1', q)).answers.length, 1, 'another subnet is not affected')
  }

  const text = await registry.metrics()
  t.match(text, /ferry_dns_dropped_total\{transport="udp",reason="rate_limited"\} [1-9]\d*/, 'drops counted')
  t.match(text, /ferry_dns_rate_limited_slips_total [1-9]\d*/, 'slips counted')
  t.ok(server.status().rateLimitedSubnets >= 1)
})

t.test('exempt subnets are never limited', async t => {
  const { port4 } = await startServer(t, sampleView(), { rateLimit: { responsesPerSecond: 1, exempt: ['127.0.0.0/8'] } })
  for (let i = 0; i < 20; i++) {
    t.equal(decode(await udpQuery(port4, '127.0.0.1', buildQuery({ name: `vol1.${ZONE}`, type: 1 }))).answers.length, 1)
  }
})
