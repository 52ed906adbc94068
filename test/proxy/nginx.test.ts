import t from 'tap'
import { request } from 'undici'
import { nginxAvailable, startNginxGateway } from '../helpers/nginx.js'
import { startProxy, testConfig } from '../helpers/ferry.js'

/**
 * The same PUT/GET/HEAD/DELETE suite as against the reference gateway, with nginx's WebDAV
 * module as a real third-party gateway behind ferry.
 */
const probe = await nginxAvailable()

t.test('ferry in front of nginx WebDAV gateways', { skip: probe.ok ? false : probe.reason }, async t => {
  const a = await startNginxGateway()
  t.teardown(a.stop)
  const b = await startNginxGateway()
  t.teardown(b.stop)
  const p = await startProxy(testConfig([a.url, b.url]))
  t.teardown(p.stop)

  const blocks = Array.from({ length: 20 }, (_, i) => ({ name: `blk${i}`, body: Buffer.alloc(1000 + i * 997, i + 1) }))
  for (const { name, body } of blocks) {
    const put = await request(`${p.url}/vol/${name}`, { method: 'PUT', body })
    t.equal(put.statusCode, 201, `PUT ${name}: a new file, so nginx answers 201`)
    await put.body.dump()
  }
  const holders = new Set<string>()
  for (const { name, body } of blocks) {
    const get = await request(`${p.url}/vol/${name}`)
    t.equal(get.statusCode, 200)
    t.same(Buffer.from(await get.body.arrayBuffer()), body, `GET ${name} returns the bytes written`)
    t.ok(get.headers.etag, 'nginx sends an ETag on reads')
    t.equal(get.headers.via, '1.1 ferry')
    const head = await request(`${p.url}/vol/${name}`, { method: 'HEAD' })
    t.equal(head.headers.etag, get.headers.etag, 'HEAD and GET agree on the ETag')
    await head.body.dump()
    const info = await (await request(`${p.adminUrl}/v1/blocks/vol/${name}`)).body.json() as { location: { gateway: string } }
    holders.add(info.location.gateway)
  }
  t.same([...holders].sort(), ['gw1', 'gw2'], 'blocks spread over both nginx gateways')

  const del = await request(`${p.url}/vol/blk0`, { method: 'DELETE' })
  t.equal(del.statusCode, 204, 'nginx answers a DELETE with 204')
  await del.body.dump()
  const gone = await request(`${p.url}/vol/blk0`)
  t.equal(gone.statusCode, 404)
  await gone.body.dump()

  const ready = await request(`${p.adminUrl}/readyz`)
  t.equal(ready.statusCode, 200, 'nginx answers the health probe (404 < 500 counts as up)')
  await ready.body.dump()
})
