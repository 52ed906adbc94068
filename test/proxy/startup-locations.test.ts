import t, { type Test } from 'tap'
import { request } from 'undici'
import { FerryNode } from '../../bin/node.js'
import { blockKey } from '../../lib/ids.js'
import { silentLogger } from '../../lib/log.js'
import { createRegistry } from '../../lib/metrics.js'
import { rendezvousNode, rendezvousPick } from '../../lib/rendezvous.js'
import { createStore } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { testConfig } from '../helpers/ferry.js'
import { startGateways } from '../helpers/gateway.js'
import { freePort, sleep } from '../helpers/net.js'

// Found by the fleet fault suite (test/fault/fleet.test.ts, proxy-kill): a restarted proxy took
// requests before it had loaded the block locations, so for a moment a block the planner had
// moved was routed by hash to a gateway that does not hold it, and an acknowledged write read 404.
/**
 * Two gateways, a memory store and a proxy config, with block v/moved placed off its hash choice
 * (as a finished migration leaves it): read by hash, it would be a 404.
 */
async function movedBlock (t: Test): Promise<{ store: StateStore, config: ReturnType<typeof testConfig> }> {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const config = testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: await freePort() }, trustedProxies: [] } })
  const ids = config.gateways.map(g => g.id)
  const hashed = rendezvousPick(blockKey('v', 'moved'), ids.map(rendezvousNode))
  const target = ids.find(id => id !== hashed) as string
  await (await request(`${gws.urls[ids.indexOf(target)] as string}/v/moved`, { method: 'PUT', body: 'moved here' })).body.dump()
  t.ok((await store.casLocation('v', 'moved', 0, { gateway: target })).ok)
  return { store, config }
}

t.test('a starting proxy takes no request before it knows where blocks are', async t => {
  const { store, config } = await movedBlock(t)

  // The locations arrive slowly, as from a busy Redis.
  const slow = new Proxy(store, {
    get (inner, key) {
      if (key === 'scanLocations') {
        return async function * () { await sleep(800); yield * inner.scanLocations() }
      }
      const v = Reflect.get(inner, key, inner) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(inner) : v
    }
  }) as StateStore
  const node = new FerryNode({ config, roles: new Set(['proxy']), logger: silentLogger, registry: createRegistry(false), store: slow })
  const starting = node.start()
  t.teardown(async () => { await starting.catch(() => {}); await node.stop() })

  // The first answer the listener gives, as a client retrying its connection would get it.
  let first: { status: number, body: string } | undefined
  const deadline = Date.now() + 20_000
  while (first === undefined && Date.now() < deadline) {
    try {
      const r = await request(`http://127.0.0.1:${config.proxy.listen.port}/v/moved`)
      first = { status: r.statusCode, body: await r.body.text() }
    } catch {
      await sleep(5)
    }
  }
  t.same(first, { status: 200, body: 'moved here' }, 'the first request is served from the block\'s location')
  await starting
})

// Found by the 30-minute soak (proxy-kill at load 30): the restarted proxy's first load of the
// locations timed out against a busy Redis, it listened anyway, and a block the planner had moved
// was read by hash from a gateway without it: 404 for an acknowledged write.
t.test('a proxy that started without its locations answers 503 for blocks it does not know, never 404', async t => {
  const { store, config } = await movedBlock(t)

  // The store answers neither a scan nor a lookup until `answering` (a Redis timing out under
  // load). A proxy whose cache is not loaded asks the store for each block's location; here that
  // fails too, so it cannot tell "no location" from "not known yet".
  let answering = false
  const timedOut = (): Error => Object.assign(new Error('state store unavailable: redis: Command timed out'), { code: 'FERRY_STATE_UNAVAILABLE' })
  const unanswered = new Proxy(store, {
    get (inner, key) {
      if (key === 'scanLocations') {
        return async function * () {
          if (!answering) throw timedOut()
          yield * inner.scanLocations()
        }
      }
      if (key === 'getLocation') {
        return async (volume: string, block: string) => {
          if (!answering) throw timedOut()
          return await inner.getLocation(volume, block)
        }
      }
      const v = Reflect.get(inner, key, inner) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(inner) : v
    }
  }) as StateStore
  const node = new FerryNode({ config, roles: new Set(['proxy']), logger: silentLogger, registry: createRegistry(false), store: unanswered })
  t.teardown(() => node.stop())
  await node.start()

  const url = `http://127.0.0.1:${config.proxy.listen.port}/v/moved`
  const r = await request(url)
  const body = await r.body.json() as { error?: { code?: string } }
  t.equal(r.statusCode, 503, 'a read of a block it has no location for is refused while no load has succeeded')
  t.equal(body.error?.code, 'FERRY_LOCATIONS_NOT_LOADED')
  t.equal(r.headers['retry-after'], '1', 'with Retry-After')

  answering = true
  let served: { status: number, body: string } | undefined
  const meanwhile = new Set<number>()
  const deadline = Date.now() + 20_000
  while (served?.status !== 200 && Date.now() < deadline) {
    const g = await request(url)
    served = { status: g.statusCode, body: await g.body.text() }
    if (served.status !== 200) {
      meanwhile.add(served.status)
      await sleep(100)
    }
  }
  t.same(served, { status: 200, body: 'moved here' }, 'served from its location once the store answers')
  t.ok([...meanwhile].every(s => s === 503), `only 503s until then, never a 404 (${[...meanwhile].join(', ') || 'none'})`)
})
