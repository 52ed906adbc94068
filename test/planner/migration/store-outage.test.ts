import fs from 'node:fs'
import t from 'tap'
import { request } from 'undici'
import { createStore, waitForReady } from '../../../state/factory.js'
import { startGateways } from '../../helpers/gateway.js'
import { testConfig } from '../../helpers/ferry.js'
import { waitFor } from '../../helpers/net.js'
import { REDIS_SERVER, startRedis } from '../../helpers/redis.js'
import { startPlanner, waitEnded, waitLeader } from './harness.js'

/**
 * After a store outage the planner changes no block's set for migration.afterStoreOutageMs:
 * proxies reconnect at their own pace (with backoff) and meanwhile route and acknowledge writes
 * from the locations they had when the store went away. A move made before they are back is one
 * they cannot know of — a write acknowledged on the source alone after its copy was taken, or a
 * read of a source already removed (the stale reads of the moves history at a Redis kill).
 */

const skip = !fs.existsSync(REDIS_SERVER) ? `${REDIS_SERVER} is not installed` : false
const QUIET_MS = 2500

t.test('a move submitted as the store returns waits out afterStoreOutageMs; without an outage it does not wait', { skip }, async t => {
  const redis = await startRedis({ persistent: true })
  t.teardown(() => redis.stop())
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const state = { backend: 'redis' as const, url: redis.url, keyPrefix: 'quiet:', reconnect: { minDelayMs: 50, maxDelayMs: 200 } }
  const config = testConfig(gws.urls, { state })
  const store = createStore(config.state)
  t.teardown(() => store.close())
  t.ok(await waitForReady(store, 10_000), 'connected')
  // A long lease, so the outage does not cost the planner its leadership (that would hide the wait).
  const p = await startPlanner(t, config, store, { lease: { ttlMs: 30_000, renewIntervalMs: 1000 }, migration: { afterStoreOutageMs: QUIET_MS, gracePeriodMs: 0 } })
  await waitLeader(p)

  for (const b of ['before', 'after']) {
    await (await request(`${gws.urls[0]}/v/${b}`, { method: 'PUT', body: b })).body.dump()
    t.ok((await store.casLocation('v', b, 0, { gateway: 'gw1' })).ok, `${b} placed on gw1`)
  }
  let started = performance.now()
  const first = await p.move({ volume: 'v', block: 'before', to: 'gw2' })
  t.equal((await waitEnded(p, first.migrations[0]!.id)).result, 'ok', 'a move with no outage behind it')
  t.ok(performance.now() - started < QUIET_MS, `did not wait (${Math.round(performance.now() - started)} ms)`)

  await redis.kill()
  await waitFor(() => !store.status().ok, 'the outage to be seen', 5000, 10)
  await redis.restart()
  await waitFor(() => store.status().ok, 'the store back', 10_000, 10)
  started = performance.now()
  const second = await p.move({ volume: 'v', block: 'after', to: 'gw2' })
  const joinedAt = await waitFor(async () => ((await store.getLocation('v', 'after'))?.members.includes('gw2') === true ? performance.now() : undefined), 'gw2 to join', 10_000, 20) as number
  t.ok(joinedAt - started >= QUIET_MS - 300, `the target joined ${Math.round(joinedAt - started)} ms after the store returned (afterStoreOutageMs ${QUIET_MS})`)
  t.equal((await waitEnded(p, second.migrations[0]!.id)).result, 'ok', 'and the move then completed')
  t.same((await store.getLocation('v', 'after'))?.members, ['gw2'], 'on gw2 only')
})
