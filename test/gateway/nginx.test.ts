import t from 'tap'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { request } from 'undici'
import { nginxAvailable, startNginxGateway } from '../helpers/nginx.js'

const nginx = await nginxAvailable()

t.test('nginx WebDAV speaks the gateway protocol', { skip: nginx.ok ? false : nginx.reason }, async t => {
  const gw = await startNginxGateway()
  t.teardown(gw.stop)
  const data = randomBytes(200 * 1024)
  const url = `${gw.url}/vol-1/blk-1`

  const created = await request(url, { method: 'PUT', body: data })
  await created.body.dump()
  t.equal(created.statusCode, 201, 'PUT creates (and the volume directory with it)')
  t.ok((await readFile(path.join(gw.root, 'vol-1', 'blk-1'))).equals(data), 'stored under <root>/<volume>/<block>')

  const got = await request(url)
  t.equal(got.statusCode, 200)
  t.ok(Buffer.from(await got.body.arrayBuffer()).equals(data), 'GET returns the same bytes')
  const etag = got.headers.etag as string
  t.match(etag, /^"[^"]+"$/, 'GET has a strong ETag')

  const head = await request(url, { method: 'HEAD' })
  await head.body.dump()
  t.equal(head.headers['content-length'], String(data.length))
  t.equal(head.headers.etag, etag)

  const notModified = await request(url, { headers: { 'if-none-match': etag } })
  await notModified.body.dump()
  t.equal(notModified.statusCode, 304, 'If-None-Match honoured')

  const replaced = await request(url, { method: 'PUT', body: 'v2' })
  await replaced.body.dump()
  t.equal(replaced.statusCode, 204, 'replacing answers 204')

  const del = await request(url, { method: 'DELETE' })
  await del.body.dump()
  t.equal(del.statusCode, 204)
  const gone = await request(url)
  await gone.body.dump()
  t.equal(gone.statusCode, 404)
})

t.test('stop() ends nginx and removes its prefix', { skip: nginx.ok ? false : nginx.reason }, async t => {
  const gw = await startNginxGateway()
  const prefix = path.dirname(gw.root)
  await gw.stop()
  await gw.stop()
  await t.rejects(request(`${gw.url}/`), { code: 'ECONNREFUSED' })
  await t.rejects(readFile(path.join(prefix, 'nginx.conf')), { code: 'ENOENT' })
})
