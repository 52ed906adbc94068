import t from 'tap'
import { request } from 'undici'
import { nginxAvailable, startNginxGateway } from '../helpers/nginx.js'
import { startProxy, testConfig } from '../helpers/ferry.js'

/**
 * S3 keys of any shape on nginx WebDAV gateways: blockOfKey turns each into a path segment nginx
 * stores as a file; ranges are served by nginx itself (206) or cut by the adapter, the same bytes.
 */
const probe = await nginxAvailable()

t.test('S3 over nginx WebDAV gateways: odd keys, ranges, multipart, listing', { skip: probe.ok ? false : probe.reason }, async t => {
  const a = await startNginxGateway()
  t.teardown(a.stop)
  const p = await startProxy(testConfig([a.url], { s3: { multipart: { minPartBytes: 0 } } }))
  t.teardown(p.stop)
  // ('..' as a key: WHATWG URL clients resolve it, %2E%2E included, before sending.)
  const keys = ['dir/sub/file.txt', 'ünï cödé/✓ #?%&+=.txt', 'long/' + 'é'.repeat(400), '...', '.hidden']
  for (const key of keys) {
    // Dots escaped too: a URL library would otherwise resolve a '..' segment before sending.
    const target = '/vol/' + key.split('/').map(s => encodeURIComponent(s).replace(/\./g, '%2E')).join('/') + '?x-id=PutObject'
    const body = `bytes of ${key}`
    const put = await request(p.url + target, { method: 'PUT', body })
    t.equal(put.statusCode, 200, `PUT ${key.slice(0, 30)}`)
    await put.body.dump()
    const get = await request(p.url + target.replace('PutObject', 'GetObject'))
    t.equal(await get.body.text(), body, `GET ${key.slice(0, 30)}`)
    const range = await request(p.url + target.replace('PutObject', 'GetObject'), { headers: { range: 'bytes=2-6' } })
    t.equal(range.statusCode, 206)
    t.equal(await range.body.text(), body.slice(2, 7), 'a range')
  }
  const list = await request(`${p.url}/vol?list-type=2`)
  const text = await list.body.text()
  t.equal((text.match(/<Key>/g) ?? []).length, keys.length, 'every key listed from the index')
  const up = await (await request(`${p.url}/vol/mp?uploads`, { method: 'POST' })).body.text()
  const id = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(up)?.[1] ?? ''
  const etags: string[] = []
  for (const [i, part] of ['first part ', 'second part'].entries()) {
    const r = await request(`${p.url}/vol/mp?partNumber=${i + 1}&uploadId=${id}`, { method: 'PUT', body: part })
    etags.push(String(r.headers.etag))
    await r.body.dump()
  }
  const done = await request(`${p.url}/vol/mp?uploadId=${id}`, { method: 'POST', body: `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join('')}</CompleteMultipartUpload>` })
  t.equal(done.statusCode, 200)
  await done.body.dump()
  t.equal(await (await request(`${p.url}/vol/mp?x-id=GetObject`)).body.text(), 'first part second part', 'the parts, in one file on nginx')
})
