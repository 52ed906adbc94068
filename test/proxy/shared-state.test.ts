import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import { blockKey } from '../../lib/ids.js'
import type { StateConfigInput } from '../../state/config.js'
import { createStore, waitForReady } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { collectEscapes, proxyOnState, type ProxyUnderTest } from '../helpers/ferry.js'
import { startGateways, type Gateways } from '../helpers/gateway.js'
import { waitFor } from '../helpers/net.js'
import { startCluster, startRedis } from '../helpers/redis.js'

/**
 * Several proxies over one real Redis act as one: a route recorded or changed through any of
 * them (a first write, a planner's move) is what every other one uses for the next request, and
 * the affinity map in the store is the merge of what all of them saw. Every proxy here is a
 * FerryNode with its own store built from `state:` — its own connections, as separate processes
 * would have. The "planner" is one more store instance that moves blocks the way the planner does.
 */

// Nothing that escapes a store or a proxy (an 'error' without a listener, a rejected promise
// nobody awaited) may pass silently.
const escaped = collectEscapes(t)

const SESSION = 'shared-state-session-0001'

async function proxyOn (t: Test, gws: Gateways, state: StateConfigInput): Promise<ProxyUnderTest> {
  return await proxyOnState(t, gws.urls, state)
}

async function plannerOn (t: Test, state: StateConfigInput): Promise<StateStore> {
  const store = createStore(state)
  t.teardown(() => store.close())
  t.ok(await waitForReady(store, 10_000), 'planner store connected')
  return store
}

function hashedOf (p: ProxyUnderTest, volume: string, block: string): string {
  const g = p.node.proxy?.routes.hashed(blockKey(volume, block))
  if (g === undefined) throw new Error('no gateway')
  return g.id
}

const urlOf = (gws: Gateways, id: string): string => gws.urls[Number(id.slice(2)) - 1] as string

async function get (url: string, opts: { dispatcher?: Agent, headers?: Record<string, string> } = {}): Promise<{ status: number, body: string }> {
  const r = await request(url, opts)
  return { status: r.statusCode, body: await r.body.text() }
}

async function put (url: string, body: string, headers: Record<string, string> = {}): Promise<number> {
  const r = await request(url, { method: 'PUT', body, headers })
  await r.body.dump()
  return r.statusCode
}

function epochOn (p: ProxyUnderTest, volume: string, block: string): number | undefined {
  return p.node.proxy?.sync?.cache.get(volume, block)?.epoch
}

/**
 * The route checks, shared by the standalone and the Cluster runs. A first write through A is
 * steered (by a session bound to a gateway that is not the block's hash choice) so that B could
 * only find the data by the location A recorded; then the planner moves the block, removes the
 * source copy, and both proxies must read it from the new gateway and write there.
 */
async function routesAreShared (t: Test, gws: Gateways, a: ProxyUnderTest, b: ProxyUnderTest, planner: StateStore, volume: string): Promise<void> {
  const block = 'first'
  const hashed = hashedOf(a, volume, block)
  const steered = ['gw1', 'gw2', 'gw3'].find(g => g !== hashed) as string
  await planner.bindSession(SESSION, volume, steered, 60_000)

  t.equal(await put(`${a.url}/${volume}/${block}`, 'written through A', { 'x-ferry-session': SESSION }), 201, 'first write through A')
  const recorded = await planner.getLocation(volume, block)
  t.match(recorded, { gateway: steered, epoch: 1, phase: 'stable' }, 'A recorded the location before forwarding')
  t.equal((await get(`${urlOf(gws, steered)}/${volume}/${block}`)).body, 'written through A', 'the data is on the session\'s gateway')
  t.equal((await get(`${urlOf(gws, hashed)}/${volume}/${block}`)).status, 404, 'not on the hash choice')

  await waitFor(() => epochOn(b, volume, block) === 1, 'B to receive the location')
  t.same(await get(`${b.url}/${volume}/${block}`), { status: 200, body: 'written through A' }, 'B routes by the location A recorded, not by hash')

  // The planner moves the block: copy, cutover, verify, flip; then the source copy goes.
  const target = ['gw1', 'gw2', 'gw3'].find(g => g !== steered && g !== hashed) as string
  const source = urlOf(gws, steered)
  const copy = await request(`${source}/${volume}/${block}`)
  const etag = copy.headers.etag
  t.equal(await put(`${urlOf(gws, target)}/${volume}/${block}`, await copy.body.text()), 201, 'copied to the target')
  const cut = await planner.casLocation(volume, block, 1, { gateway: steered, phase: 'cutover', target }, { reason: 'test-move' })
  t.ok(cut.ok, 'cutover')
  t.equal((await request(`${source}/${volume}/${block}`, { method: 'HEAD' })).headers.etag, etag, 'source unchanged since the copy')
  const flip = await planner.casLocation(volume, block, 2, { gateway: target, phase: 'done' }, { reason: 'test-move' })
  t.ok(flip.ok, 'flipped')
  await waitFor(() => epochOn(a, volume, block) === 3 && epochOn(b, volume, block) === 3, 'both proxies to receive the flip')
  await (await request(`${source}/${volume}/${block}`, { method: 'DELETE' })).body.dump()

  t.same(await get(`${b.url}/${volume}/${block}`), { status: 200, body: 'written through A' }, 'B reads from the new location')
  t.same(await get(`${a.url}/${volume}/${block}`), { status: 200, body: 'written through A' }, 'A reads from the new location')
  const w = await put(`${b.url}/${volume}/${block}`, 'rewritten through B')
  t.equal(w, 204, 'a write through B after the move is acknowledged (204: it overwrote the copy on the target)')
  t.equal((await get(`${urlOf(gws, target)}/${volume}/${block}`)).body, 'rewritten through B', 'and lands on the new location')
  t.equal((await get(`${source}/${volume}/${block}`)).status, 404, 'not on the old one')
  t.same(await get(`${a.url}/${volume}/${block}`), { status: 200, body: 'rewritten through B' }, 'A reads B\'s write')
}

t.test('two proxies over one Redis: routes changed through either are used by the other', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const state: StateConfigInput = { backend: 'redis', url: redis.url, keyPrefix: 'routes:' }
  const a = await proxyOn(t, gws, state)
  const b = await proxyOn(t, gws, state)
  const planner = await plannerOn(t, state)

  await t.test('a first write through A, then a planner move', t => routesAreShared(t, gws, a, b, planner, 'v'))

  await t.test('a first write that fails is released, and the other proxy forgets it too', async t => {
    const block = 'failed'
    const hashed = hashedOf(a, 'v', block)
    const g = gws.gateways[Number(hashed.slice(2)) - 1]!
    await g.setFaults({ errorRate: 1 })
    t.teardown(() => g.clearFaults())
    const seenByB: Array<string | null> = []
    t.teardown(b.node.proxy!.sync!.cache.onChange(c => { if (c.block === block) seenByB.push(c.location?.gateway ?? null) }))
    t.equal(await put(`${a.url}/v/${block}`, 'refused'), 503, 'the gateway refuses the write')
    // The claim was published before the write went out; B sees it, then its release.
    await waitFor(async () => await planner.getLocation('v', block) === null, 'the claim to be released')
    await waitFor(() => seenByB.length === 2, 'B to see the claim and its release')
    t.same(seenByB, [hashed, null], 'B saw the claim, then the release')
    t.equal(b.node.proxy?.sync?.cache.get('v', block), null, 'B has no location for it')
    t.equal(a.node.proxy?.sync?.cache.get('v', block), null, 'nor has A')
    await g.clearFaults()
    t.equal(await put(`${b.url}/v/${block}`, 'second try'), 201, 'the block can be created again, through B')
    await waitFor(() => epochOn(a, 'v', block) !== undefined, 'A to see B\'s location')
    t.equal((await get(`${a.url}/v/${block}`)).body, 'second try')
    t.ok((epochOn(a, 'v', block) ?? 0) > 2, 'epochs continue past the released claim (tombstone), never reused')
  })

  await t.test('affinity is merged from both proxies', async t => {
    // Clients of site-a reach A from 127.0.0.1; clients of site-b reach B from 127.0.1.7 (the
    // whole of 127/8 is loopback on Linux), so each proxy sees one site by socket address.
    const siteB = new Agent({ localAddress: '127.0.1.7' })
    t.teardown(() => siteB.close())
    t.equal(await put(`${a.url}/aff/blk`, 'x'), 201)
    const readsA = 5
    const readsB = 7
    for (let i = 0; i < readsA; i++) t.equal((await get(`${a.url}/aff/blk`)).status, 200)
    for (let i = 0; i < readsB; i++) t.equal((await get(`${b.url}/aff/blk`, { dispatcher: siteB })).status, 200)
    await Promise.all([a.node.proxy?.sync?.flush(), b.node.proxy?.sync?.flush()])
    const entry = (await waitFor(async () => {
      const e = await planner.getAffinity('aff', 'blk')
      return e !== null && e.reads === readsA + readsB ? e : null
    }, 'every read merged into the store'))!
    t.equal(entry.writes, 1, 'the write counted once')
    t.ok((entry.scores['site-a'] ?? 0) > 0, `site-a scored (${entry.scores['site-a']})`)
    t.ok((entry.scores['site-b'] ?? 0) > 0, `site-b scored (${entry.scores['site-b']})`)
    // One write and 5 reads from site-a, 7 reads from site-b, all within a few hundred ms of a
    // ten-minute half-life: the scores are the counts, barely decayed.
    t.ok(Math.abs((entry.scores['site-a'] ?? 0) - (readsA + 1)) < 0.1, 'site-a: 6 accesses')
    t.ok(Math.abs((entry.scores['site-b'] ?? 0) - readsB) < 0.1, 'site-b: 7 accesses')
  })
})

t.test('two proxies over a three-master Redis Cluster: a route change through one is seen by the other', async t => {
  const cluster = await startCluster()
  t.teardown(() => cluster.stop())
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const state: StateConfigInput = { backend: 'redis', cluster: { nodes: cluster.nodeAddresses }, keyPrefix: 'cl:' }
  const a = await proxyOn(t, gws, state)
  const b = await proxyOn(t, gws, state)
  t.equal(a.node.store.backend, 'redis-cluster')
  const planner = await plannerOn(t, state)
  await routesAreShared(t, gws, a, b, planner, 'cv')
  // Blocks spread over the slots of all three masters: every one reaches the other proxy.
  const blocks = Array.from({ length: 12 }, (_, i) => `spread${i}`)
  for (const blk of blocks) t.equal(await put(`${a.url}/cv/${blk}`, blk), 201)
  await waitFor(() => blocks.every(blk => epochOn(b, 'cv', blk) === 1), 'B to receive every location')
  for (const blk of blocks) t.same(await get(`${b.url}/cv/${blk}`), { status: 200, body: blk })
})

t.test('nothing escaped to the process', async t => { t.same(escaped, []) })
