import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { parseStateConfig } from '../../state/config.js'
import { MemoryObjectIndex, RedisObjectIndex, type ObjectIndex, type ObjectMeta } from '../../state/objects.js'
import { startRedis } from '../helpers/redis.js'

/**
 * One contract for the object index (the S3 listings' source) on both backends: UTF-8 byte
 * order, prefixes, resuming after a key or past a whole common prefix, buckets that refuse to be
 * deleted while they hold something, uploads and their parts, the abandoned-upload query.
 */

function meta (size: number, at = 1_000): ObjectMeta {
  return { etag: 'e'.repeat(32), size, lastModified: at }
}

function contract (t: Test, name: string, make: () => Promise<ObjectIndex>): void {
  t.test(`${name}: object index contract`, async t => {
    const ix = await make()
    t.teardown(() => ix.close())
    const vol = 'v' + randomBytes(4).toString('hex')
    t.equal(await ix.bucketCreated(vol), null)
    t.equal(await ix.createBucket(vol, 5), true)
    t.equal(await ix.createBucket(vol, 6), false, 'created once')
    t.equal(await ix.bucketCreated(vol), 5)
    // UTF-8 byte order is not UTF-16 order: U+FF21 (EF BC A1) sorts before U+1F600 (F0 9F 98 80) in
    // both, but 'é' (C3 A9) after 'z'; and '/' (2F) before '0'.
    const keys = ['a/b', 'a/c/d', 'a/c/e', 'a0', 'z', 'é', '\uFF21', '\u{1F600}', 'a']
    for (const k of keys) await ix.putObject(vol, k, meta(k.length))
    const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    t.same((await ix.list(vol, '', undefined, 100)).map(o => o.key), sorted, 'all keys in UTF-8 byte order')
    t.same((await ix.list(vol, 'a/', undefined, 100)).map(o => o.key), ['a/b', 'a/c/d', 'a/c/e'], 'prefix')
    t.same((await ix.list(vol, '', { key: 'a/b', skipPrefix: false }, 2)).map(o => o.key), ['a/c/d', 'a/c/e'], 'after a key, limited')
    t.same((await ix.list(vol, '', { key: 'a/c/', skipPrefix: true }, 2)).map(o => o.key), ['a0', 'z'], 'past every key of a common prefix')
    t.same((await ix.list(vol, 'a/', { key: 'a/c/e', skipPrefix: false }, 10)).map(o => o.key), [], 'nothing after the last key of a prefix')
    t.same((await ix.list(vol, 'b', undefined, 10)), [], 'an empty prefix range')
    t.same(await ix.getObject(vol, 'a/c/d'), meta(5))
    await ix.putObject(vol, 'a/c/d', meta(99))
    t.equal((await ix.getObject(vol, 'a/c/d'))?.size, 99, 'overwritten in place')
    t.equal(await ix.countObjects(vol), keys.length, 'an overwrite adds no key')
    t.equal(await ix.deleteBucket(vol), 'not-empty')
    for (const k of keys) t.equal(await ix.deleteObject(vol, k), true)
    t.equal(await ix.deleteObject(vol, 'a'), false, 'deleted once')
    t.equal(await ix.getObject(vol, 'a'), null)

    await ix.createUpload({ uploadId: 'u1', volume: vol, key: 'k', initiated: 10, contentType: 'x/y' })
    await ix.putPart(vol, 'u1', { part: 2, etag: 'b', size: 2, lastModified: 1 })
    await ix.putPart(vol, 'u1', { part: 1, etag: 'a', size: 1, lastModified: 1 })
    t.same((await ix.listParts(vol, 'u1')).map(p => p.part), [1, 2], 'parts in order')
    t.equal((await ix.getUpload(vol, 'u1'))?.contentType, 'x/y')
    t.equal(await ix.deleteBucket(vol), 'not-empty', 'an open upload keeps the bucket')
    t.same((await ix.listUploads(vol)).map(u => u.uploadId), ['u1'])
    t.ok((await ix.staleUploads(11, 100)).some(u => u.uploadId === 'u1'), 'older than the cut')
    t.notOk((await ix.staleUploads(10, 100)).some(u => u.uploadId === 'u1'), 'not older than the cut')
    await ix.deleteUpload(vol, 'u1')
    t.equal(await ix.getUpload(vol, 'u1'), null)
    t.same(await ix.listParts(vol, 'u1'), [])
    t.equal(await ix.deleteBucket(vol), 'deleted')
    t.equal(await ix.deleteBucket(vol), 'missing')
    await ix.putObject(vol, 'late', meta(1, 77))
    t.equal(await ix.bucketCreated(vol), 77, 'an object written to a bucket never created records it')
    t.ok((await ix.listBuckets()).some(b => b.name === vol))
  })
}

contract(t, 'memory', async () => new MemoryObjectIndex())

let url = process.env.REDIS_URL
if (url === undefined || url === '') {
  const server = await startRedis()
  t.teardown(() => server.stop())
  url = server.url
}
const redisUrl = url
contract(t, 'redis', async () => {
  const ix = new RedisObjectIndex(parseStateConfig({ backend: 'redis', url: redisUrl, keyPrefix: 'ferry-test-' + randomBytes(3).toString('hex') + ':' }))
  // The client connects in the background; the first call waits for it.
  for (let i = 0; i < 100; i++) {
    try { await ix.listBuckets(); break } catch { await new Promise(resolve => setTimeout(resolve, 50)) }
  }
  return ix
})
