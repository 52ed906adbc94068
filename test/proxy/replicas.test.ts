import t, { type Test } from 'tap'
import { request } from 'undici'
import { startGateways, type Gateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { waitFor } from '../helpers/net.js'

/**
 * Replica sets through one proxy on the memory store, with real reference gateways (in this
 * process) and real sockets: writes land on every member, reads fail over, a member that fails a
 * write leaves the in-sync set before the write is acknowledged, minInSync refuses with 503.
 */

async function put (url: string, body: string): Promise<{ status: number, code?: string, retryAfter?: string, etag?: string }> {
  const res = await request(url, { method: 'PUT', body })
  const text = await res.body.text()
  let code: string | undefined
  try { code = (JSON.parse(text) as { error?: { code?: string } }).error?.code } catch { code = undefined }
  return { status: res.statusCode, code, retryAfter: res.headers['retry-after'] as string | undefined, etag: res.headers.etag as string | undefined }
}

async function get (url: string): Promise<{ status: number, body: string }> {
  const res = await request(url)
  return { status: res.statusCode, body: await res.body.text() }
}

/** `n` reference gateways and a proxy at R = 2 with `minInSync`, its routes loaded; stopped at teardown. */
async function replicated (t: Test, n: number, minInSync: number): Promise<{ gws: Gateways, p: Awaited<ReturnType<typeof startProxy>> }> {
  const gws = await startGateways(n)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { replication: { factor: 2, minInSync } }))
  t.teardown(p.stop)
  await waitFor(() => p.node.proxy?.sync?.cache.loaded, 'routes loaded')
  return { gws, p }
}

t.test('R = 2: a first write claims two members and lands on both; reads fail over; a failed member leaves the in-sync set', async t => {
  const { gws, p } = await replicated(t, 3, 1)

  const put1 = await put(`${p.url}/vol/b1`, 'one')
  t.equal(put1.status, 201, 'first write acknowledged')
  const loc = await p.node.store.getLocation('vol', 'b1')
  t.equal(loc?.members.length, 2, 'two members')
  t.same(loc?.inSync, loc?.members, 'both in sync')
  for (const id of loc?.members ?? []) {
    const g = gws.gateways[Number(id.slice(2)) - 1]!
    t.equal((await get(`${g.url}/vol/b1`)).body, 'one', `${id} holds the write`)
  }
  const outsider = gws.gateways.find(g => !(loc?.members ?? []).includes(g.id))!
  t.equal((await get(`${outsider.url}/vol/b1`)).status, 404, 'the third gateway does not')

  // Kill the member reads go to first; reads keep working.
  const head = loc!.members[0]!
  const headGw = gws.gateways[Number(head.slice(2)) - 1]!
  await headGw.kill()
  for (let i = 0; i < 20; i++) {
    const r = await get(`${p.url}/vol/b1`)
    t.equal(r.status, 200, `read ${i} with a member down`)
    if (r.status !== 200) break
    t.equal(r.body, 'one')
  }

  // A write now fails on the dead member: it leaves the in-sync set before the acknowledgement.
  const put2 = await put(`${p.url}/vol/b1`, 'two')
  t.equal(put2.status, 204, 'acknowledged by the member left (minInSync 1): 204, an overwrite')
  const after = await p.node.store.getLocation('vol', 'b1')
  t.same(after?.inSync, [loc!.members[1]], 'the dead member left the in-sync set')
  t.equal(after?.members.length, 2, 'but is still a member (to be repaired)')
  t.equal(after?.gateway, loc!.members[1], 'the in-sync member leads')

  // It comes back with the old copy: never read from.
  await headGw.restart()
  await waitFor(async () => (await request(`${headGw.url}/vol/b1`)).statusCode === 200, 'the old member is back')
  t.equal((await get(`${headGw.url}/vol/b1`)).body, 'one', 'it still holds the old version')
  for (let i = 0; i < 20; i++) t.equal((await get(`${p.url}/vol/b1`)).body, 'two', `read ${i} never returns the old copy`)
})

t.test('minInSync = 2 with one member down: 503 FERRY_REPLICAS_UNAVAILABLE with Retry-After, never acknowledged', async t => {
  const { gws, p } = await replicated(t, 2, 2)
  t.equal((await put(`${p.url}/vol/b`, 'v1')).status, 201, 'both up: acknowledged')
  await gws.gateways[1]!.kill()
  const r = await put(`${p.url}/vol/b`, 'v2')
  t.equal(r.status, 503)
  t.equal(r.code, 'FERRY_REPLICAS_UNAVAILABLE')
  t.equal(r.retryAfter, '1', 'Retry-After')
  const again = await put(`${p.url}/vol/b`, 'v3')
  t.equal(again.status, 503, 'refused again while the set has fewer in-sync members than minInSync')
  t.equal(again.code, 'FERRY_REPLICAS_UNAVAILABLE')
  t.equal((await get(`${p.url}/vol/b`)).status, 200, 'reads still served')
})

t.test('R = 1 stays a set of one', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls))
  t.teardown(p.stop)
  await waitFor(() => p.node.proxy?.sync?.cache.loaded, 'routes loaded')
  t.equal((await put(`${p.url}/vol/one`, 'x')).status, 201)
  const loc = await p.node.store.getLocation('vol', 'one')
  t.same(loc?.members, [loc?.gateway])
})

/**
 * An in-sync member that lost its copy (a replaced disk, a copy deleted by hand, a set this
 * proxy has not heard has changed) answers 404 for a block its set says it holds: the read goes
 * on to the next in-sync member rather than hiding an acknowledged write, for GET and HEAD, and
 * the member is counted, not ejected. A block deleted by a client has no location: 404 at once.
 */
t.test('R = 2: an in-sync member without its copy answers 404: the read is served by the other member', async t => {
  const { gws, p } = await replicated(t, 2, 1)
  t.equal((await put(`${p.url}/vol/lost`, 'kept elsewhere')).status, 201)
  // Both members in sync: remove the copy from each in turn, directly on the gateway.
  for (const g of gws.gateways) {
    t.equal((await request(`${g.url}/vol/lost`, { method: 'DELETE' })).statusCode, 204, `${g.id}'s copy removed by hand`)
    for (let i = 0; i < 5; i++) t.same(await get(`${p.url}/vol/lost`), { status: 200, body: 'kept elsewhere' }, `GET ${i} with ${g.id}'s copy gone`)
    const head = await request(`${p.url}/vol/lost`, { method: 'HEAD' })
    await head.body.dump()
    t.equal(head.statusCode, 200, 'HEAD too')
    t.ok(p.node.proxy?.gateways.get(g.id)?.isHealthy(Date.now()), `${g.id} is not ejected for it`)
    t.equal((await put(`${g.url}/vol/lost`, 'kept elsewhere')).status, 201, `${g.id}'s copy put back`)
  }
  const metrics = await (await request(`${p.adminUrl}/metrics`)).body.text()
  t.match(metrics, /ferry_proxy_missing_copies_total\{gateway="gw1"\} [1-9]/, 'counted per member')
  t.equal((await request(`${p.url}/vol/lost`, { method: 'DELETE' })).statusCode, 204, 'a client deletes it')
  t.equal((await get(`${p.url}/vol/lost`)).status, 404, 'then it is 404')
})
