import { createHash } from 'node:crypto'
import t from 'tap'
import { request } from 'undici'
import { blockOfKey } from '../../lib/ids.js'
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
