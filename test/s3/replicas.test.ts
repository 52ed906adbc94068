import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { request } from 'undici'
import { blockOfKey, blockOfPart } from '../../lib/ids.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { startGateways } from '../helpers/gateway.js'
import { waitFor } from '../helpers/net.js'

// With two copies of every block, an S3 batch delete (DeleteObjects) must remove both: it once
// deleted on one gateway only, and the next read that went to the other member returned the
// deleted object.
t.test('DeleteObjects removes every copy of a replicated object', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { replication: { factor: 2, minInSync: 1 } }))
  t.teardown(p.stop)
  const call = async (method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number, text: string }> => {
    const r = await request(p.url + target, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) })
    return { status: r.statusCode, text: await r.body.text() }
  }
  t.equal((await call('PUT', '/rep?x-id=CreateBucket')).status, 200)
  for (const key of ['a.txt', 'dir/b.txt']) t.equal((await call('PUT', `/rep/${key}?x`, {}, `body of ${key}`)).status, 200)

  // Both objects are on two gateways.
  const holders = async (key: string): Promise<string[]> => {
    const out: string[] = []
    for (const [i, url] of gws.urls.entries()) {
      const r = await request(`${url}/rep/${blockOfKey(key)}`)
      await r.body.dump()
      if (r.statusCode === 200) out.push(`gw${i + 1}`)
    }
    return out
  }
  await waitFor(async () => (await holders('dir/b.txt')).length === 2, 'two copies of dir/b.txt')
  t.equal((await holders('a.txt')).length, 2, 'two copies of a.txt')

  const xml = '<Delete><Object><Key>a.txt</Key></Object><Object><Key>dir/b.txt</Key></Object></Delete>'
  const del = await call('POST', '/rep?delete', { 'content-type': 'application/xml', 'content-md5': createHash('md5').update(xml).digest('base64') }, xml)
  t.equal(del.status, 200)
  t.match(del.text, /<Deleted><Key>a\.txt<\/Key><\/Deleted>/)
  t.match(del.text, /<Deleted><Key>dir\/b\.txt<\/Key><\/Deleted>/)
  t.same(await holders('a.txt'), [], 'no gateway keeps a.txt')
  t.same(await holders('dir/b.txt'), [], 'no gateway keeps dir/b.txt')
  for (let i = 0; i < 6; i++) t.equal((await call('GET', '/rep/a.txt?x')).status, 404, 'every read: NoSuchKey')
})

// Complete and CopyObject read parts and sources themselves (not through the core's retrying read
// path): with two copies, a member that cuts its body mid-stream or answers 503 must not fail
// them. Before they read from every in-sync member in turn, Complete answered 502 when the member
// it read from died (test/fault/s3-faults.test.ts found it with a SIGKILL).
t.test('Complete and CopyObject read from the next in-sync member when one cuts its body or fails', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { replication: { factor: 2, minInSync: 1 }, s3: { multipart: { minPartBytes: 1024 } } }))
  t.teardown(p.stop)
  const call = async (method: string, target: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number, body: Buffer }> => {
    const r = await request(p.url + target, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) })
    return { status: r.statusCode, body: Buffer.from(await r.body.arrayBuffer()) }
  }
  t.equal((await call('PUT', '/mp?x-id=CreateBucket')).status, 200)
  const uploadId = /<UploadId>([^<]+)</.exec((await call('POST', '/mp/obj.bin?uploads')).body.toString())?.[1] ?? ''
  const parts = [randomBytes(300_000), randomBytes(200_000)]
  const etags: string[] = []
  for (const [i, part] of parts.entries()) {
    const r = await call('PUT', `/mp/obj.bin?partNumber=${i + 1}&uploadId=${uploadId}`, part)
    t.equal(r.status, 200, `part ${i + 1}`)
    etags.push(createHash('md5').update(part).digest('hex'))
  }
  const first = p.node.proxy?.readersOf('mp', blockOfPart(uploadId, 1)) ?? []
  t.equal(first.length, 2, 'part 1 has two in-sync members')
  const gw = gws.gateways[Number(first[0]?.id.slice(2)) - 1]
  await gw?.setFaults({ dieMidResponse: 1 })
  const xml = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>"${e}"</ETag></Part>`).join('')}</CompleteMultipartUpload>`
  const done = await call('POST', `/mp/obj.bin?uploadId=${uploadId}`, xml)
  t.equal(done.status, 200, `Complete while ${first[0]?.id ?? ''} cuts every body at half: ${done.body.toString().slice(0, 200)}`)
  await gw?.clearFaults()
  t.ok((await call('GET', '/mp/obj.bin?x')).body.equals(Buffer.concat(parts)), 'the object is both parts, whole')

  const src = p.node.proxy?.readersOf('mp', blockOfKey('obj.bin')) ?? []
  const srcGw = gws.gateways[Number(src[0]?.id.slice(2)) - 1]
  await srcGw?.setFaults({ errorRate: 1 })
  const copy = await call('PUT', '/mp/copy.bin?x', undefined, { 'x-amz-copy-source': '/mp/obj.bin' })
  t.equal(copy.status, 200, `CopyObject while ${src[0]?.id ?? ''} answers 503: ${copy.body.toString().slice(0, 200)}`)
  await srcGw?.clearFaults()
  t.ok((await call('GET', '/mp/copy.bin?x')).body.equals(Buffer.concat(parts)), 'the copy is whole')
})
