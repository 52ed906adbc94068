import t from 'tap'
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
t.test('a starting proxy takes no request before it knows where blocks are', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const store = createStore({})
  t.teardown(() => store.close())
  const config = testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: await freePort() }, trustedProxies: [] } })

  // A block placed off its hash choice, as a finished migration leaves it.
  const ids = config.gateways.map(g => g.id)
  const hashed = rendezvousPick(blockKey('v', 'moved'), ids.map(rendezvousNode))
  const target = ids.find(id => id !== hashed) as string
  await (await request(`${gws.urls[ids.indexOf(target)] as string}/v/moved`, { method: 'PUT', body: 'moved here' })).body.dump()
  t.ok((await store.casLocation('v', 'moved', 0, { gateway: target })).ok)

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
