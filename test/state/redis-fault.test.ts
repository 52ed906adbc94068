import t, { type Test } from 'tap'
import { startRedis } from '../helpers/redis.js'
import { freePort, sleep, waitFor } from '../helpers/net.js'
import { LocationCache } from '../../state/cache.js'
import type { StateConfigInput } from '../../state/config.js'
import { createStore, waitForReady } from '../../state/factory.js'
import type { StateStore, StoreEvent } from '../../state/types.js'

// Anything that escapes the store (an 'error' event without a listener, a rejected promise
// nobody awaited) fails this file instead of passing silently.
const escaped: unknown[] = []
const onEscape = (err: unknown): void => { escaped.push(err) }
process.on('unhandledRejection', onEscape)
process.on('uncaughtException', onEscape)
t.teardown(() => {
  process.off('unhandledRejection', onEscape)
  process.off('uncaughtException', onEscape)
})

const FAST: StateConfigInput = {
  backend: 'redis',
  commandTimeoutMs: 300,
  connectTimeoutMs: 300,
  reconnect: { minDelayMs: 50, maxDelayMs: 200 }
}

function collect (store: StateStore): StoreEvent[] {
  const out: StoreEvent[] = []
  store.subscribe(e => out.push(e))
  return out
}

async function allFailFast (t: Test, calls: Array<Promise<unknown>>, boundMs: number, what: string): Promise<void> {
  const start = Date.now()
  const settled = await Promise.allSettled(calls)
  const elapsed = Date.now() - start
  const codes = settled.map(s => s.status === 'rejected' ? (s.reason as { code?: string }).code : 'fulfilled')
  t.same([...new Set(codes)], ['FERRY_STATE_UNAVAILABLE'], `${what}: every call fails with the typed error`)
  t.ok(elapsed < boundMs, `${what}: without waiting for the backend (${elapsed} ms)`)
}

t.test('killed and restarted: fail fast, degraded, resync, serve from cache, no crash', async t => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const config = { ...FAST, url: server.url, keyPrefix: 'fault:' }
  const store = createStore(config)
  const writer = createStore(config)
  t.teardown(() => Promise.all([store.close(), writer.close()]))
  t.ok(await waitForReady(store), 'ready')
  t.ok(await waitForReady(writer), 'writer ready')
  const events = collect(store)
  const cache = new LocationCache(store, { retryMs: 50 })
  t.teardown(() => cache.close())
  t.equal(await cache.start(), true)
  await writer.casLocation('v', 'b', 0, { gateway: 'gw1' })
  await waitFor(() => cache.get('v', 'b')?.gateway === 'gw1', 'route cached')

  await server.kill()
  await waitFor(() => !store.status().ok, 'status degraded')
  t.match(store.status().reason, /redis/, `reason given: ${store.status().reason ?? ''}`)
  t.ok(events.some(e => e.type === 'status' && !e.status.ok), 'status event emitted')
  t.equal(cache.fresh, false, 'cache knows it may be stale')

  await allFailFast(t, [
    ...Array.from({ length: 20 }, () => store.getLocation('v', 'b')),
    store.casLocation('v', 'b', 1, { gateway: 'gw2' }),
    store.mergeAccess([{ volume: 'v', block: 'b', site: 's', reads: 1, writes: 0, lastAccessMs: Date.now() }]),
    store.getSession('s1'),
    store.publish('config', 'x'),
    store.acquireLease('planner', 'me', 1000)
  ], 250, 'while down')
  t.equal(cache.get('v', 'b')?.gateway, 'gw1', 'the cached route keeps serving')

  // Several reconnection attempts fail meanwhile; none may crash anything.
  await sleep(400)
  const resyncsBefore = events.filter(e => e.type === 'resync').length
  await server.restart()
  await waitFor(() => store.status().ok, 'status ok again', 10_000)
  await waitFor(() => events.filter(e => e.type === 'resync').length > resyncsBefore, 'resync after reconnection')
  const resync = events.filter((e): e is Extract<StoreEvent, { type: 'resync' }> => e.type === 'resync').pop()
  t.equal(resync?.reason, 'reconnected')
  const lastOk = events.findLastIndex(e => e.type === 'status' && e.status.ok)
  const lastDown = events.findLastIndex(e => e.type === 'status' && !e.status.ok)
  t.ok(lastDown < lastOk && lastOk < events.lastIndexOf(resync!), 'resync comes once the store is usable again')

  // The restarted server kept nothing (no persistence): after the resync the cache agrees.
  await waitFor(() => cache.fresh && cache.get('v', 'b') === null, 'cache reloaded from the (empty) store', 5000)
  t.ok(await waitForReady(writer, 10_000), 'the other store recovered too')
  await writer.casLocation('v', 'b', 0, { gateway: 'gw2' })
  await waitFor(() => cache.get('v', 'b')?.gateway === 'gw2', 'notifications flow again')
  t.equal((await store.getLocation('v', 'b'))?.gateway, 'gw2')
  t.same(escaped, [], 'nothing escaped')
})

t.test('hung server (SIGSTOP): calls time out with the typed error, status recovers by itself', async t => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const store = createStore({ ...FAST, url: server.url, keyPrefix: 'hung:' })
  t.teardown(() => store.close())
  t.ok(await waitForReady(store))
  await store.casLocation('v', 'b', 0, { gateway: 'gw1' })

  server.pause()
  try {
    await allFailFast(t, [store.getLocation('v', 'b'), store.setVersion('v', 'b', 1, 'e')], 2000, 'while hung')
    t.equal(store.status().ok, false, 'a timed-out call degrades status')
  } finally {
    server.resume()
  }
  await waitFor(() => store.status().ok, 'status recovers without traffic', 10_000)
  t.equal((await store.getLocation('v', 'b'))?.gateway, 'gw1')
  t.same(escaped, [], 'nothing escaped')
})

t.test('nothing listening at startup: fails fast, degraded with the reason', async t => {
  const port = await freePort()
  const store = createStore({ ...FAST, url: `redis://127.0.0.1:${port}`, keyPrefix: 'late:' })
  t.teardown(() => store.close())
  const events = collect(store)
  await waitFor(() => /ECONNREFUSED/.test(store.status().reason ?? ''), 'refused connection reported')
  await allFailFast(t, [store.getLocation('v', 'b'), store.blockHistory('v', 'b')], 250, 'never connected')
  t.equal(events.filter(e => e.type === 'resync').length, 0, 'no resync before the first connection')
  t.same(escaped, [], 'nothing escaped')
})
