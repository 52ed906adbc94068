import t, { type Test } from 'tap'
import { request } from 'undici'
import { createStore } from '../../state/factory.js'
import type { BlockLocation, StateStore } from '../../state/types.js'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { waitFor } from '../helpers/net.js'

/**
 * The proxy's half of moves as membership changes (README "Replica sets"), driven by hand through
 * the store the way the planner drives them, for a block of one copy (R = 1). A write is never
 * held; one in flight while the set changes is settled against the set in force when it ends:
 * it bumps the epoch when a target joined after it was sent (so the planner checks the target
 * again), it puts the source back in sync when it outlived the move (the move is undone, the
 * write acknowledged), and only once the source has left the set entirely is it refused.
 */
async function rig (t: Test): Promise<{ store: StateStore, url: string, gw: string[], slow: () => Promise<void>, fast: () => Promise<void>, cached: (b: string) => BlockLocation | null | undefined, sent: () => Promise<unknown>, deaf: () => () => void, errors: () => Promise<void> }> {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const p = await startProxy(testConfig(gws.urls), { store })
  t.teardown(p.stop)
  return {
    store,
    url: p.url,
    gw: gws.urls,
    slow: async () => { await gws.gateways[0]!.setFaults({ latencyMs: 600 }) },
    fast: async () => { await gws.gateways[0]!.clearFaults() },
    errors: async () => { await gws.gateways[0]!.setFaults({ errorRate: 1 }) },
    cached: b => p.node.proxy?.sync?.cache.get('v', b),
    sent: async () => await waitFor(() => p.node.proxy?.gateways.get('gw1')?.inflight === 1, 'the write in flight to gw1'),
    // The store's notifications go unprocessed, as while the proxy's event loop is stalled on a
    // loaded machine (a stall cannot be timed against a write here; dropping them is the same to
    // the cache). Returns the undo.
    deaf: () => {
      const cache = p.node.proxy?.sync?.cache as NonNullable<NonNullable<typeof p.node.proxy>['sync']>['cache']
      const apply = cache.apply.bind(cache)
      cache.apply = (volume, block, epoch, location, source) => source === 'event' ? 'stale' : apply(volume, block, epoch, location, source)
      return () => { cache.apply = apply }
    }
  }
}

type Answer = { status: number, body: string }
const put = (url: string, body: string): Promise<Answer> => request(url, { method: 'PUT', body }).then(async r => ({ status: r.statusCode, body: await r.body.text() }))

async function set (store: StateStore, block: string, next: Pick<BlockLocation, 'gateway' | 'members' | 'inSync'>): Promise<BlockLocation> {
  const now = await store.getLocation('v', block)
  const r = await store.casLocation('v', block, now?.epoch ?? 0, next, { reason: 'test-move' })
  if (!r.ok) throw new Error(`cas ${block}: ${r.reason}`)
  return r.location
}

t.test('a write in flight when a target joins is acknowledged and bumps the epoch', async t => {
  const r = await rig(t)
  await set(r.store, 'j', { gateway: 'gw1', members: ['gw1'], inSync: ['gw1'] })
  await waitFor(() => r.cached('j') != null, 'the location cached')
  await r.slow()
  const inFlight = put(`${r.url}/v/j`, 'in flight')
  await r.sent()
  const joined = await set(r.store, 'j', { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1'] })
  const w = await inFlight
  t.equal(w.status, 201, `acknowledged, never held (${w.body})`)
  const after = await r.store.getLocation('v', 'j')
  t.ok(after!.epoch > joined.epoch, 'the write bumped the epoch after it landed')
  t.match(after, { members: ['gw1', 'gw2'], inSync: ['gw1'] }, 'the joiner stays: the planner checks it again')
  const history = await r.store.blockHistory('v', 'j')
  // The epoch after the join is the write's bump; the proxy's next flush of versions may append a
  // 'write' entry after it (CI saw one), so the bump is looked for by its epoch, not as the last.
  t.equal(history.find(h => h.epoch === joined.epoch + 1)?.reason, 'write-during-join', 'the bump is the write\'s')
})

t.test('a slow write whose proxy has not heard of a join asks the store before it is acknowledged, and bumps the epoch', async t => {
  const r = await rig(t)
  await set(r.store, 'd', { gateway: 'gw1', members: ['gw1'], inSync: ['gw1'] })
  await waitFor(() => r.cached('d') != null, 'the location cached')
  const hear = r.deaf()
  t.teardown(hear)
  // Slower than half of planner.migration.settleMs (250 ms by default): the planner may have
  // copied to a joiner meanwhile, which this write, sent to gw1 only, would be missing.
  await r.slow()
  const inFlight = put(`${r.url}/v/d`, 'unheard')
  await r.sent()
  const joined = await set(r.store, 'd', { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1'] })
  t.equal(r.cached('d')?.members.length, 1, 'the proxy has not heard of the join')
  const w = await inFlight
  t.equal(w.status, 201, `acknowledged (${w.body})`)
  const after = await r.store.getLocation('v', 'd')
  t.ok(after!.epoch > joined.epoch, 'the write bumped the epoch: the planner\'s in-sync step on the join\'s epoch fails and checks the joiner again')
  t.equal((await r.store.blockHistory('v', 'd')).at(-1)?.reason, 'write-during-join')
})

t.test('a write that outlived a move puts the source back in sync and is acknowledged', async t => {
  const r = await rig(t)
  await set(r.store, 'o', { gateway: 'gw1', members: ['gw1'], inSync: ['gw1'] })
  await waitFor(() => r.cached('o') != null, 'the location cached')
  await r.slow()
  const inFlight = put(`${r.url}/v/o`, 'outlived')
  await r.sent()
  // The whole move while the write is in flight: join, copy (nothing new yet), in sync, leave.
  await set(r.store, 'o', { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1'] })
  await set(r.store, 'o', { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1', 'gw2'] })
  await set(r.store, 'o', { gateway: 'gw2', members: ['gw2', 'gw1'], inSync: ['gw2'] })
  const w = await inFlight
  t.equal(w.status, 201, `acknowledged (${w.body})`)
  t.match(await r.store.getLocation('v', 'o'), { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1'] }, 'the source is in sync again, the target that missed the write is not')
  await r.fast()
  t.equal(await (await request(`${r.url}/v/o`)).body.text(), 'outlived', 'reads return the acknowledged write')
})

t.test('a write that outlived a move and the source\'s removal is refused (FERRY_WRITE_NOT_CONFIRMED), never acknowledged', async t => {
  const r = await rig(t)
  await set(r.store, 'l', { gateway: 'gw1', members: ['gw1'], inSync: ['gw1'] })
  await waitFor(() => r.cached('l') != null, 'the location cached')
  await r.slow()
  const inFlight = put(`${r.url}/v/l`, 'too late')
  await r.sent()
  await set(r.store, 'l', { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1'] })
  await set(r.store, 'l', { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1', 'gw2'] })
  await set(r.store, 'l', { gateway: 'gw2', members: ['gw2', 'gw1'], inSync: ['gw2'] })
  await set(r.store, 'l', { gateway: 'gw2', members: ['gw2'], inSync: ['gw2'] })
  const w = await inFlight
  t.equal(w.status, 503, `not acknowledged (${w.status} ${w.body})`)
  t.match(JSON.parse(w.body), { error: { code: 'FERRY_WRITE_NOT_CONFIRMED' } })
  t.match(await r.store.getLocation('v', 'l'), { members: ['gw2'], inSync: ['gw2'] }, 'the set is untouched')
  t.equal((await request(`${r.url}/v/l`)).statusCode, 404, 'the block\'s set does not have it: it was never acknowledged')
})

t.test('a member taken out of the in-sync set: the write that did it is acknowledged only after every proxy can have heard, and a proxy whose loop stalled reads by the store', async t => {
  const r = await rig(t)
  const [gw1, gw2] = r.gw as [string, string]
  // Writes go to both members (R = 2 by hand); gw1 fails them.
  await set(r.store, 'm', { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1', 'gw2'] })
  await waitFor(() => r.cached('m')?.inSync.length === 2, 'the set cached')
  t.equal((await put(`${r.url}/v/m`, 'v1')).status, 201, 'v1 on both members')
  await r.errors()
  const started = performance.now()
  const w = await put(`${r.url}/v/m`, 'v2')
  const took = performance.now() - started
  t.equal(w.status, 204, `v2 acknowledged by gw2 alone (${w.body})`)
  t.match(await r.store.getLocation('v', 'm'), { inSync: ['gw2'] }, 'gw1 left the in-sync set first')
  // planner.migration.settleMs is 250 ms by default: the bound is 125 + 25 ms.
  t.ok(took >= 150, `the acknowledgement waited for every proxy to hear (${Math.round(took)} ms)`)
  await r.fast()
  t.equal(await (await request(`${gw1}/v/m`)).body.text(), 'v1', 'gw1 still holds v1')

  // Another proxy's view, as while its event loop is stalled: it has not heard that gw1 left.
  await set(r.store, 'm', { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1', 'gw2'] })
  await waitFor(() => r.cached('m')?.inSync.length === 2, 'gw1 back in the cached set')
  const hear = r.deaf()
  t.teardown(hear)
  await set(r.store, 'm', { gateway: 'gw2', members: ['gw2', 'gw1'], inSync: ['gw2'] })
  t.equal(await (await request(`${gw2}/v/m`)).body.text(), 'v2')
  const end = performance.now() + 200
  while (performance.now() < end) { /* the loop stalls past settleMs / 2 */ }
  t.equal(await (await request(`${r.url}/v/m`)).body.text(), 'v2', 'the read after the stall follows the store, not the cache that still has gw1 in sync')
})
