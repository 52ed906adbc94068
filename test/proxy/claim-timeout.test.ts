/**
 * A first write's claim whose answer times out may have been recorded all the same: the command
 * reached the store, only its reply was late (Redis at load 42 in a fleet replay). The proxy used
 * to write such a block to its hashed gateway alone and acknowledge it, while the store named a
 * replica set that the write never reached: reads through it answered 404 (two acknowledged
 * writes lost). Now the proxy reads the location back and writes where it says; when the read
 * fails too, it refuses the write; only a claim that certainly never left it falls back to the
 * hashed gateway.
 *
 * The store is the real memory store; only its answers are replaced by the errors a late or
 * absent Redis produces (a late reply cannot be staged on demand with a real Redis).
 */
import t, { type Test } from 'tap'
import { request } from 'undici'
import { FerryError } from '../../lib/errors.js'
import { unsent } from '../../state/errors.js'
import { createStore } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { startProxy, testConfig, type ProxyUnderTest } from '../helpers/ferry.js'
import { startGateways } from '../helpers/gateway.js'

const timedOut = (): FerryError => new FerryError('FERRY_STATE_UNAVAILABLE', 'state store unavailable: redis: Command timed out', 503)

/**
 * Three gateways, R = 2 and a memory store; `fake` replaces store calls (given the real ones)
 * before the proxy starts.
 */
async function setup (t: Test, fake: (store: StateStore, real: Pick<StateStore, 'casLocation' | 'getLocation'>) => void): Promise<{ store: StateStore, proxy: ProxyUnderTest, urlOf: (gateway: string | undefined) => string }> {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, { replication: { factor: 2 } })
  const store = createStore(config.state) as StateStore
  t.teardown(() => store.close())
  fake(store, { casLocation: store.casLocation.bind(store), getLocation: store.getLocation.bind(store) })
  const proxy = await startProxy(config, { store })
  t.teardown(proxy.stop)
  return { store, proxy, urlOf: gateway => gws.urls[gws.gateways.findIndex(g => g.id === gateway)] as string }
}

/** Every member of the block's recorded set holds `bytes`. */
async function membersHold (t: Test, f: Awaited<ReturnType<typeof setup>>, block: string, bytes: string): Promise<void> {
  const loc = await f.store.getLocation('vol', block)
  t.equal(loc?.members.length, 2, 'the claim was recorded: a set of two')
  for (const member of loc?.members ?? []) {
    const r = await request(`${f.urlOf(member)}/vol/${block}`)
    t.equal(await r.body.text(), bytes, `member ${member} holds the acknowledged write`)
  }
}

t.test('a claim recorded despite a timed-out reply: the write goes to the recorded set', async t => {
  let late = 0
  const f = await setup(t, (store, real) => {
    store.casLocation = async (volume, block, expected, next, options) => {
      const r = await real.casLocation(volume, block, expected, next, options)
      if (options?.reason === 'first-write' && late++ === 0) throw timedOut()
      return r
    }
  })
  const put = await request(`${f.proxy.url}/vol/late-claim`, { method: 'PUT', body: 'acknowledged bytes' })
  await put.body.dump()
  t.equal(late, 1, 'the claim\'s reply timed out')
  t.ok(put.statusCode >= 200 && put.statusCode < 300, `the write is acknowledged (${put.statusCode})`)
  await membersHold(t, f, 'late-claim', 'acknowledged bytes')
  for (let i = 0; i < 4; i++) {
    const r = await request(`${f.proxy.url}/vol/late-claim`)
    t.equal(await r.body.text(), 'acknowledged bytes', 'read back through the proxy')
  }
})

t.test('a claim whose outcome stays unknown (neither its answer nor a read back comes): refused, never acknowledged on a guess', async t => {
  let away = true
  const f = await setup(t, (store, real) => {
    store.casLocation = async (volume, block, expected, next, options) => {
      const r = await real.casLocation(volume, block, expected, next, options)
      if (options?.reason === 'first-write' && away) throw timedOut()
      return r
    }
    store.getLocation = async (volume, block) => {
      if (away) throw timedOut()
      return await real.getLocation(volume, block)
    }
  })
  const put = await request(`${f.proxy.url}/vol/unknown-claim`, { method: 'PUT', body: 'first bytes' })
  const answer = await put.body.json() as { error: { code: string } }
  t.equal(put.statusCode, 503, 'not acknowledged')
  t.equal(answer.error.code, 'FERRY_STATE_UNAVAILABLE')
  t.equal(put.headers['retry-after'], '1', 'with Retry-After')
  for (const gateway of ['gw1', 'gw2', 'gw3']) {
    const r = await request(`${f.urlOf(gateway)}/vol/unknown-claim`)
    await r.body.dump()
    t.equal(r.statusCode, 404, `nothing was forwarded to ${gateway}`)
  }

  away = false
  const retry = await request(`${f.proxy.url}/vol/unknown-claim`, { method: 'PUT', body: 'first bytes' })
  await retry.body.dump()
  t.ok(retry.statusCode >= 200 && retry.statusCode < 300, `the retry is acknowledged (${retry.statusCode})`)
  await membersHold(t, f, 'unknown-claim', 'first bytes')
})

t.test('a claim that never left the proxy (no connection to send it on): the hashed gateway, acknowledged and found', async t => {
  let refused = 0
  const f = await setup(t, (store, real) => {
    store.casLocation = async (volume, block, expected, next, options) => {
      if (options?.reason === 'first-write' && refused++ === 0) throw unsent('redis: Stream isn\'t writeable and enableOfflineQueue options is false')
      return await real.casLocation(volume, block, expected, next, options)
    }
  })
  const put = await request(`${f.proxy.url}/vol/unsent-claim`, { method: 'PUT', body: 'outage bytes' })
  await put.body.dump()
  t.equal(refused, 1, 'the claim was refused before it was sent')
  t.ok(put.statusCode >= 200 && put.statusCode < 300, `acknowledged: the store certainly names no other set (${put.statusCode})`)
  t.equal(await f.store.getLocation('vol', 'unsent-claim'), null, 'no location recorded')
  const direct = await request(`${f.urlOf(f.proxy.node.proxy?.routes.hashed('vol/unsent-claim')?.id)}/vol/unsent-claim`)
  t.equal(await direct.body.text(), 'outage bytes', 'on the hashed gateway')
  const r = await request(`${f.proxy.url}/vol/unsent-claim`)
  t.equal(await r.body.text(), 'outage bytes', 'read back through the proxy')
})
