import t from 'tap'
import dns from 'node:dns'
import { request } from 'undici'
import { freePort, waitFor } from './helpers/net.js'
import { spawnFerry } from './helpers/process.js'

t.test('ferry sandbox: gateways, proxy and admin on loopback, clean exit on Ctrl-C', async t => {
  const ports = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()])
  const [proxy, admin, g1, g2, g3, dnsPort] = ports as [number, number, number, number, number, number]
  const ferry = spawnFerry(['sandbox', '--proxy-port', String(proxy), '--admin-port', String(admin), '--dns-port', String(dnsPort), '--gateway-ports', `${g1},${g2},${g3}`])
  t.teardown(() => ferry.stop('SIGKILL'))
  await waitFor(() => ferry.output().includes('Ctrl-C stops everything'), 'the sandbox banner', 20_000, 100)
  t.match(ferry.output(), new RegExp(`curl -sS -X PUT --data-binary 'hello ferry' http://127\\.0\\.0\\.1:${proxy}/vol1/blk1`), 'prints curl lines for its own ports')

  const put = await request(`http://127.0.0.1:${proxy}/vol1/blk1`, { method: 'PUT', body: 'hello ferry' })
  t.equal(put.statusCode, 201)
  await put.body.dump()
  const get = await request(`http://127.0.0.1:${proxy}/vol1/blk1`, { headers: { 'x-forwarded-for': '127.0.1.9' } })
  t.equal(await get.body.text(), 'hello ferry')
  const info = await (await request(`http://127.0.0.1:${admin}/v1/blocks/vol1/blk1`)).body.json() as { access: { sites: Record<string, number> } }
  t.same(Object.keys(info.access.sites).sort(), ['site-a', 'site-b'], 'the forwarded read counts for site-b')
  const ready = await request(`http://127.0.0.1:${admin}/readyz`)
  t.equal(ready.statusCode, 200)
  await ready.body.dump()
  const gws = await (await request(`http://127.0.0.1:${admin}/v1/gateways`)).body.json() as { gateways: Array<{ url: string }> }
  t.same(gws.gateways.map(g => g.url), [g1, g2, g3].map(p => `http://127.0.0.1:${p}`))

  // The DNS role answers for the volume just written, from a real resolver.
  const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 2 })
  resolver.setServers([`127.0.0.1:${dnsPort}`])
  t.same(await resolver.resolve4('vol1.sandbox.ferry.test'), ['127.0.0.1'], 'vol1 resolves to its edge')
  // The sandbox speaks S3: a bucket is addressed as <bucket>.<zone> before it holds data.
  t.same(await resolver.resolve4('nope.sandbox.ferry.test'), ['127.0.0.1'], 'a volume without data yet: the client\'s edge')
  await t.rejects(resolver.resolve4(`${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.sandbox.ferry.test`), { code: 'ENOTFOUND' }, 'a name that is no volume id (over 128 characters): NXDOMAIN')

  t.equal(await ferry.stop('SIGINT'), 0, 'exits 0 on SIGINT')
  await t.rejects(request(`http://127.0.0.1:${proxy}/vol1/blk1`), 'proxy port closed')
  await t.rejects(request(`http://127.0.0.1:${g1}/vol1/blk1`), 'gateway ports closed')
})

t.test('ferry check and usage errors', async t => {
  const bad = spawnFerry(['start'])
  t.equal(await new Promise(resolve => bad.child.once('exit', resolve)), 2, 'missing --config is a usage error')
  t.match(bad.output(), /start needs --config FILE/)
  const unknown = spawnFerry(['frobnicate'])
  t.equal(await new Promise(resolve => unknown.child.once('exit', resolve)), 2)
  const check = spawnFerry(['check', '--config', 'config/example.yaml'])
  t.equal(await new Promise(resolve => check.child.once('exit', resolve)), 0)
  const missing = spawnFerry(['check', '--config', '/nonexistent.yaml'])
  t.equal(await new Promise(resolve => missing.child.once('exit', resolve)), 1)
  t.match(missing.output(), /FERRY_CONFIG_UNREADABLE/)
})
