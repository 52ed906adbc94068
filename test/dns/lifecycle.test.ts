import t from 'tap'
import dgram from 'node:dgram'
import net from 'node:net'
import { z } from 'zod'
import { createRegistry } from '../../lib/metrics.js'
import { dnsSectionSchema, parseDnsConfig } from '../../dns/config.js'
import { AuthoritativeServer } from '../../dns/server.js'
import { buildQuery, tcpQuery, udpQuery } from './client.js'
import { sampleView } from './memory-view.js'
import { startServer, ZONE } from './harness.js'

t.test('ready() and status() through start and stop', async t => {
  const view = sampleView()
  const server = new AuthoritativeServer({ config: parseDnsConfig({ listen: [{ address: '127.0.0.1', port: 0 }] }), view })
  t.equal(server.ready(), false, 'not ready before start')
  t.match(server.status().reasons, ['dns server new'])
  await server.start()
  t.teardown(() => server.stop())
  t.equal(server.ready(), true)
  const st = server.status()
  t.match(st, { ready: true, reasons: [], zone: ZONE })
  t.equal(st.listeners.length, 2, 'UDP and TCP')
  const [udp, tcp] = st.listeners
  t.equal(udp?.port, tcp?.port, 'on the same port')
  t.ok((udp?.port ?? 0) > 0, 'the picked port is reported')
  await t.rejects(server.start(), { code: 'FERRY_DNS_STATE' }, 'cannot start twice')
  await server.stop()
  t.equal(server.ready(), false, 'not ready after stop')
  t.match(server.status().reasons[0], /stopped/)
  await server.stop()
  t.pass('stop is idempotent')
  await t.rejects(udpQuery(udp?.port as number, '127.0.0.1', buildQuery({ name: ZONE, type: 6 }), 300), /no UDP reply/, 'the UDP socket is closed')
  await t.rejects(tcpQuery(tcp?.port as number, '127.0.0.1', [buildQuery({ name: ZONE, type: 6 })]), /ECONNREFUSED/, 'the TCP listener is closed')
})

t.test('a listener that cannot bind fails start, and leaves nothing open', async t => {
  // Hold a TCP port so that the server's UDP bind succeeds and its TCP bind fails.
  const blocker = net.createServer()
  await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>(resolve => blocker.close(() => resolve())))
  const port = (blocker.address() as net.AddressInfo).port
  const server = new AuthoritativeServer({ config: parseDnsConfig({ listen: [{ address: '127.0.0.1', port }] }), view: sampleView() })
  await t.rejects(server.start(), { code: 'FERRY_DNS_LISTEN', message: new RegExp(`127\\.0\\.0\\.1:${port}`) })
  t.equal(server.ready(), false)
  t.match(server.status().reasons.join('\n'), /not bound/)
  // The UDP socket it had bound is closed again.
  const probe = dgram.createSocket('udp4')
  await new Promise<void>((resolve, reject) => { probe.once('error', reject); probe.bind(port, '127.0.0.1', () => resolve()) })
  await new Promise<void>(resolve => probe.close(() => resolve()))
  t.pass('its UDP port is free again')
})

t.test('metrics on the registry', async t => {
  const { registry, port4 } = await startServer(t, sampleView())
  for (let i = 0; i < 3; i++) await udpQuery(port4, '127.0.0.1', buildQuery({ name: `vol1.${ZONE}`, type: 1 }))
  await udpQuery(port4, '127.0.0.1', buildQuery({ name: `nope.${ZONE}`, type: 28 }))
  await tcpQuery(port4, '127.0.0.1', [buildQuery({ name: ZONE, type: 6 })])
  await udpQuery(port4, '127.0.0.1', buildQuery({ name: ZONE, type: 99 }))
  const text = await registry.metrics()
  t.match(text, /ferry_dns_queries_total\{transport="udp",type="A",rcode="NOERROR"\} 3\n/)
  t.match(text, /ferry_dns_queries_total\{transport="udp",type="AAAA",rcode="NXDOMAIN"\} 1\n/)
  t.match(text, /ferry_dns_queries_total\{transport="tcp",type="SOA",rcode="NOERROR"\} 1\n/)
  t.match(text, /ferry_dns_queries_total\{transport="udp",type="other",rcode="NOERROR"\} 1\n/, 'unknown types share one label value')
  t.match(text, /ferry_dns_request_duration_seconds_count\{transport="udp"\} 5\n/)
  t.match(text, /ferry_dns_request_duration_seconds_bucket\{le="\+Inf",transport="tcp"\} 1\n/)
  t.match(text, /ferry_dns_cache_total\{result="hit"\} 2\n/, 'two of the three vol1 queries hit the cache')
  // Counters only grow: a second scrape after one more query.
  await udpQuery(port4, '127.0.0.1', buildQuery({ name: `vol1.${ZONE}`, type: 1 }))
  t.match(await registry.metrics(), /ferry_dns_queries_total\{transport="udp",type="A",rcode="NOERROR"\} 4\n/)
})

t.test('two servers, two registries: no metric name clash', async t => {
  // Metrics go to the registry passed in, never to prom-client's global one (a second server
  // would then throw "already registered").
  t.doesNotThrow(() => {
    for (let i = 0; i < 2; i++) new AuthoritativeServer({ config: parseDnsConfig(), view: sampleView(), registry: createRegistry(false) })
  })
})

t.test('config: defaults, validation, every key described', async t => {
  const cfg = parseDnsConfig()
  t.match(cfg, {
    zone: ZONE,
    ttl: 5,
    listen: [{ address: '127.0.0.1', port: 5353, udp: true, tcp: true }],
    maxUdpPayload: 1232,
    rateLimit: { responsesPerSecond: 1000, windowS: 15, slip: 2, ipv4PrefixLength: 24, ipv6PrefixLength: 56 },
    soa: { minimum: 5 }
  })
  t.equal(parseDnsConfig({ zone: 'Example.NET.' }).zone, 'example.net', 'zone normalised')
  t.equal(parseDnsConfig({ listen: [{ address: '::1', port: 53 }] }).listen[0]?.address, '::1', 'IPv6 listen address')
  t.throws(() => parseDnsConfig({ zone: 'bad zone' }))
  t.throws(() => parseDnsConfig({ listen: [{ address: 'localhost' }] }), 'addresses, not host names')
  t.throws(() => parseDnsConfig({ maxUdpPayload: 100 }))
  t.throws(() => parseDnsConfig({ rateLimit: { exempt: ['10.0.0.1'] } }), 'exempt entries are CIDRs')
  t.throws(() => parseDnsConfig({ ttl: 5, tll: 6 }), 'unknown keys are errors (typos)')

  // Walk the schema: every key of every object carries a description (the README and the
  // config reference are built from them).
  const missing: string[] = []
  const walk = (schema: z.ZodTypeAny, path: string): void => {
    let s = schema
    while (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodEffects) {
      s = s instanceof z.ZodEffects ? s.innerType() : s._def.innerType
    }
    if (s instanceof z.ZodArray) return walk(s.element, `${path}[]`)
    if (!(s instanceof z.ZodObject)) return
    for (const [key, child] of Object.entries(s.shape as Record<string, z.ZodTypeAny>)) {
      if (child.description === undefined) missing.push(`${path}.${key}`)
      walk(child, `${path}.${key}`)
    }
  }
  walk(dnsSectionSchema, 'dns')
  t.same(missing, [], 'every key has .describe()')
})
