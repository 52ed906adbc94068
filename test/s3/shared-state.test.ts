import t from 'tap'
import { request } from 'undici'
import { startGateways } from '../helpers/gateway.js'
import { proxyOnState } from '../helpers/ferry.js'
import { startRedis } from '../helpers/redis.js'

/**
 * Two proxies on one Redis act as one S3 endpoint: an object written through one is listed,
 * read (with its MD5 ETag and metadata) and deleted through the other — the listing comes from
 * the store's key index, never from asking gateways — and a proxy restart loses nothing.
 */

const redis = await startRedis()
t.teardown(() => redis.stop())
const gws = await startGateways(2)
t.teardown(gws.stopAll)
const state = { backend: 'redis' as const, url: redis.url }

async function call (base: string, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number, text: string, headers: Record<string, unknown> }> {
  const r = await request(base + target, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) })
  return { status: r.statusCode, text: await r.body.text(), headers: r.headers }
}

t.test('write on one proxy, list, read and delete on another; a restart keeps the index', async t => {
  const a = await proxyOnState(t, gws.urls, state)
  const b = await proxyOnState(t, gws.urls, state)
  t.equal((await call(a.url, 'PUT', '/shared?x-id=CreateBucket')).status, 200, 'CreateBucket on A')
  const put = await call(a.url, 'PUT', '/shared/dir/obj.txt?x', { 'content-type': 'text/plain', 'x-amz-meta-who': 'a' }, 'from A')
  t.equal(put.status, 200)
  const list = await call(b.url, 'GET', '/shared?list-type=2&prefix=dir/')
  t.match(list.text, /<Key>dir\/obj\.txt<\/Key>/, 'B lists what A wrote')
  const get = await call(b.url, 'GET', '/shared/dir/obj.txt?x')
  t.equal(get.text, 'from A')
  t.equal(get.headers.etag, put.headers.etag, 'the same MD5 ETag')
  t.equal(get.headers['x-amz-meta-who'], 'a')
  t.equal((await call(b.url, 'DELETE', '/shared/dir/obj.txt?x')).status, 204, 'B deletes it')
  t.notMatch((await call(a.url, 'GET', '/shared?list-type=2')).text, /obj\.txt/, 'gone from A\'s listing')
  await call(a.url, 'PUT', '/shared/kept?x', {}, 'kept')
  await a.stop()
  const c = await proxyOnState(t, gws.urls, state)
  t.match((await call(c.url, 'GET', '/shared?list-type=2')).text, /<Key>kept<\/Key>/, 'a new proxy lists it')
  t.equal((await call(c.url, 'GET', '/shared/kept?x')).text, 'kept')
})
