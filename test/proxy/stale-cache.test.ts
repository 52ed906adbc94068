import { execFile } from 'node:child_process'
import fs from 'node:fs'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { request } from 'undici'
import type { StateConfigInput } from '../../state/config.js'
import { createStore, waitForReady } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { startProxy, testConfig, type ProxyUnderTest } from '../helpers/ferry.js'
import { startGateways, type Gateways } from '../helpers/gateway.js'
import { waitFor } from '../helpers/net.js'
import { REDIS_CLI, REDIS_SERVER, startRedis, type RedisServer } from '../helpers/redis.js'

/**
 * A proxy whose location cache may have missed a notification routes by the store until its
 * reload is done. Here only its subscription is cut (`CLIENT KILL TYPE pubsub`; commands still
 * work) and it waits 2 s before reconnecting: a block moved meanwhile must be read from where
 * the store says, not from where the cache last heard — the old gateway still holds the old
 * bytes, as a source does for the grace period of a move.
 */

const run = promisify(execFile)
const skip = !fs.existsSync(REDIS_SERVER) || !fs.existsSync(REDIS_CLI) ? 'redis-server or redis-cli is not installed' : false

/** A private Redis, two gateways, a proxy that reconnects 2 s after a loss, and a planner's store. */
async function rig (t: Test): Promise<{ redis: RedisServer, gws: Gateways, proxy: ProxyUnderTest, planner: StateStore }> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const state: StateConfigInput = { backend: 'redis', url: redis.url, keyPrefix: 'stale:', reconnect: { minDelayMs: 2000, maxDelayMs: 2000 } }
  const proxy = await startProxy(testConfig(gws.urls, { state }))
  t.teardown(proxy.stop)
  const planner = createStore({ ...state })
  t.teardown(() => planner.close())
  t.ok(await waitForReady(planner, 10_000), 'the planner\'s store connected')
  return { redis, gws, proxy, planner }
}

t.test('a move made while the subscription is down is followed at once, not after the reload', { skip }, async t => {
  const { redis, gws, proxy, planner } = await rig(t)

  const [gw1, gw2] = gws.urls as [string, string]
  await (await request(`${gw1}/v/b`, { method: 'PUT', body: 'old' })).body.dump()
  const placed = await planner.casLocation('v', 'b', 0, { gateway: 'gw1' })
  t.ok(placed.ok, 'placed on gw1')
  const cache = proxy.node.proxy?.sync?.cache
  await waitFor(() => cache?.get('v', 'b')?.gateway === 'gw1' && cache.fresh, 'the proxy to hear of it')
  t.equal(await (await request(`${proxy.url}/v/b`)).body.text(), 'old', 'read from gw1')

  const port = new URL(redis.url).port
  await run(REDIS_CLI, ['-p', port, 'CLIENT', 'KILL', 'TYPE', 'pubsub'])
  await waitFor(() => cache?.fresh === false, 'the proxy to notice the lost subscription', 2000, 5)
  // The move, as the planner makes it: the new copy first, then the location.
  await (await request(`${gw2}/v/b`, { method: 'PUT', body: 'new' })).body.dump()
  const moved = await planner.casLocation('v', 'b', placed.ok ? placed.location.epoch : 0, { gateway: 'gw2' })
  t.ok(moved.ok, 'moved to gw2 while the proxy cannot hear')
  t.equal(cache?.fresh, false, 'still reconnecting (the read below is not helped by a reload)')
  t.equal(cache?.get('v', 'b')?.gateway, 'gw1', 'the cache has not heard')
  t.equal(await (await request(`${proxy.url}/v/b`)).body.text(), 'new', 'the read follows the store, not the cache')
  const metrics = await (await request(`${proxy.adminUrl}/metrics`)).body.text()
  t.match(metrics, /^ferry_proxy_store_lookups_total [1-9]/m, 'counted in ferry_proxy_store_lookups_total')

  await waitFor(() => cache?.fresh === true, 'the reload after the reconnection', 10_000)
  t.equal(cache?.get('v', 'b')?.gateway, 'gw2', 'the cache caught up')
})

t.test('a PUT while the cache may be stale, of a block the store no longer places, claims it as a first write', { skip }, async t => {
  const { redis, gws, proxy, planner } = await rig(t)

  // Placed off its hashed gateway, so a claim and the cache's old location differ.
  const hashed = proxy.node.proxy?.routes.hashed('v/gone')?.id
  const old = hashed === 'gw1' ? 'gw2' : 'gw1'
  const placed = await planner.casLocation('v', 'gone', 0, { gateway: old })
  t.ok(placed.ok, `placed on ${old}`)
  const cache = proxy.node.proxy?.sync?.cache
  await waitFor(() => cache?.get('v', 'gone')?.gateway === old && cache.fresh, 'the proxy to hear of it')

  await run(REDIS_CLI, ['-p', new URL(redis.url).port, 'CLIENT', 'KILL', 'TYPE', 'pubsub'])
  await waitFor(() => cache?.fresh === false, 'the proxy to notice the lost subscription', 2000, 5)
  // What a store that came back empty looks like for this block.
  t.ok((await planner.deleteLocation('v', 'gone', placed.ok ? placed.location.epoch : 0)).ok, 'the store no longer places it')
  const res = await request(`${proxy.url}/v/gone`, { method: 'PUT', body: 'after the loss' })
  await res.body.dump()
  t.ok(res.statusCode < 300, `acknowledged (${res.statusCode})`)
  const now = await planner.getLocation('v', 'gone')
  t.ok(now !== null, 'the PUT recorded a location, as a first write does')
  const holder = gws.urls[Number(now?.gateway.slice(2)) - 1] as string
  t.equal(await (await request(`${holder}/v/gone`)).body.text(), 'after the loss', 'and the bytes are where the store says')
})
