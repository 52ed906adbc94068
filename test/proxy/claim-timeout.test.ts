/**
 * A first write's claim whose answer times out may have been recorded all the same: the command
 * reached the store, only its reply was late (Redis at load 42 in a fleet replay). The proxy used
 * to write such a block to its hashed gateway alone and acknowledge it, while the store named a
 * replica set that the write never reached: reads through it answered 404 (two acknowledged
 * writes lost). Now the proxy reads the location back and writes where it says.
 *
 * The store is the real memory store; only the claim's reply is replaced by the timeout error a
 * late Redis reply produces (a late reply cannot be staged on demand with a real Redis).
 */
import t from 'tap'
import { request } from 'undici'
import { FerryError } from '../../lib/errors.js'
import { unsent } from '../../state/errors.js'
import { createStore } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { startGateways } from '../helpers/gateway.js'

t.test('a claim recorded despite a timed-out reply: the write goes to the recorded set', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, { replication: { factor: 2 } })
  const store = createStore(config.state) as StateStore
  t.teardown(() => store.close())
  const cas = store.casLocation.bind(store)
  let timedOut = 0
  store.casLocation = async (volume, block, expected, next, options) => {
    const r = await cas(volume, block, expected, next, options)
    if (options?.reason === 'first-write' && timedOut === 0) {
      timedOut++
      throw new FerryError('FERRY_STATE_UNAVAILABLE', 'state store unavailable: redis: Command timed out', 503)
    }
    return r
  }
  const proxy = await startProxy(config, { store })
  t.teardown(proxy.stop)

  const put = await request(`${proxy.url}/vol/late-claim`, { method: 'PUT', body: 'acknowledged bytes' })
  await put.body.dump()
  t.equal(timedOut, 1, 'the claim\'s reply timed out')
  t.ok(put.statusCode >= 200 && put.statusCode < 300, `the write is acknowledged (${put.statusCode})`)

  const loc = await store.getLocation('vol', 'late-claim')
  t.equal(loc?.members.length, 2, 'the claim was recorded: a set of two')
  for (const member of loc?.members ?? []) {
    const url = gws.urls[gws.gateways.findIndex(g => g.id === member)] as string
    const r = await request(`${url}/vol/late-claim`)
    t.equal(await r.body.text(), 'acknowledged bytes', `member ${member} holds the acknowledged write`)
  }
  for (let i = 0; i < 4; i++) {
    const r = await request(`${proxy.url}/vol/late-claim`)
    t.equal(await r.body.text(), 'acknowledged bytes', 'read back through the proxy')
  }
})

t.test('a claim whose outcome stays unknown (neither its answer nor a read back comes): refused, never acknowledged on a guess', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, { replication: { factor: 2 } })
  const store = createStore(config.state) as StateStore
  t.teardown(() => store.close())
  const cas = store.casLocation.bind(store)
  const get = store.getLocation.bind(store)
  let away = true
  store.casLocation = async (volume, block, expected, next, options) => {
    const r = await cas(volume, block, expected, next, options)
    if (options?.reason === 'first-write' && away) throw new FerryError('FERRY_STATE_UNAVAILABLE', 'state store unavailable: redis: Command timed out', 503)
    return r
  }
  store.getLocation = async (volume, block) => {
    if (away) throw new FerryError('FERRY_STATE_UNAVAILABLE', 'state store unavailable: redis: Command timed out', 503)
    return await get(volume, block)
  }
  const proxy = await startProxy(config, { store })
  t.teardown(proxy.stop)

  const put = await request(`${proxy.url}/vol/unknown-claim`, { method: 'PUT', body: 'first bytes' })
  const answer = await put.body.json() as { error: { code: string } }
  t.equal(put.statusCode, 503, 'not acknowledged')
  t.equal(answer.error.code, 'FERRY_STATE_UNAVAILABLE')
  t.equal(put.headers['retry-after'], '1', 'with Retry-After')
  for (const url of gws.urls) {
    const r = await request(`${url}/vol/unknown-claim`)
    await r.body.dump()
    t.equal(r.statusCode, 404, `nothing was forwarded to ${url}`)
  }

  away = false
  const retry = await request(`${proxy.url}/vol/unknown-claim`, { method: 'PUT', body: 'first bytes' })
  await retry.body.dump()
  t.ok(retry.statusCode >= 200 && retry.statusCode < 300, `the retry is acknowledged (${retry.statusCode})`)
  const loc = await get('vol', 'unknown-claim')
  t.equal(loc?.members.length, 2, 'under the set the first claim recorded')
  for (const member of loc?.members ?? []) {
    const url = gws.urls[gws.gateways.findIndex(g => g.id === member)] as string
    const r = await request(`${url}/vol/unknown-claim`)
    t.equal(await r.body.text(), 'first bytes', `member ${member} holds it`)
  }
})

t.test('a claim that never left the proxy (no connection to send it on): the hashed gateway, acknowledged and found', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, { replication: { factor: 2 } })
  const store = createStore(config.state) as StateStore
  t.teardown(() => store.close())
  const cas = store.casLocation.bind(store)
  let refused = 0
  store.casLocation = async (volume, block, expected, next, options) => {
    if (options?.reason === 'first-write' && refused === 0) {
      refused++
      throw unsent('redis: Stream isn\'t writeable and enableOfflineQueue options is false')
    }
    return await cas(volume, block, expected, next, options)
  }
  const proxy = await startProxy(config, { store })
  t.teardown(proxy.stop)

  const put = await request(`${proxy.url}/vol/unsent-claim`, { method: 'PUT', body: 'outage bytes' })
  await put.body.dump()
  t.equal(refused, 1, 'the claim was refused before it was sent')
  t.ok(put.statusCode >= 200 && put.statusCode < 300, `acknowledged: the store certainly names no other set (${put.statusCode})`)
  t.equal(await store.getLocation('vol', 'unsent-claim'), null, 'no location recorded')
  const hashed = proxy.node.proxy?.routes.hashed('vol/unsent-claim')?.id
  const url = gws.urls[gws.gateways.findIndex(g => g.id === hashed)] as string
  const direct = await request(`${url}/vol/unsent-claim`)
  t.equal(await direct.body.text(), 'outage bytes', 'on the hashed gateway')
  const r = await request(`${proxy.url}/vol/unsent-claim`)
  t.equal(await r.body.text(), 'outage bytes', 'read back through the proxy')
})
