import t from 'tap'
import { gatewayHealthChannel, generationChannel, passiveChannel, profileChannel } from '../../state/channels.js'
import { GatewayHealthView } from '../../state/gateway-health.js'
import { MemoryBackend, MemoryStore } from '../../state/memory.js'
import type { StoreEvent } from '../../state/types.js'

/** The typed channels (state/channels.ts) and the one reading of gateway-health reports. */

t.test('each channel publishes what it decodes, and refuses what it would drop', async t => {
  const backend = new MemoryBackend()
  const a = new MemoryStore({ backend })
  const b = new MemoryStore({ backend })
  t.teardown(async () => { await a.close(); await b.close() })
  const got: unknown[] = []
  const malformed: unknown[] = []
  for (const ch of [gatewayHealthChannel, passiveChannel, profileChannel, generationChannel] as const) {
    ch.subscribe(b, (m: unknown) => got.push([ch.name, m]), m => malformed.push([ch.name, m]))
  }
  await gatewayHealthChannel.publish(a, { gateway: 'gw1', healthy: false, at: 5, from: 'p1' })
  await passiveChannel.publish(a, { from: 'p1', observations: { gw1: { requests: 3, errors: 1, latencyMs: 2.5 } } })
  await profileChannel.publish(a, { from: 'p1', snapshot: { format: 'ferry-profile' } })
  await generationChannel.publish(a, { id: 'g1', rebuilt: true })
  t.same(got, [
    ['gateway-health', { gateway: 'gw1', healthy: false, at: 5, from: 'p1' }],
    ['passive', { from: 'p1', observations: { gw1: { requests: 3, errors: 1, latencyMs: 2.5 } } }],
    ['profile', { from: 'p1', snapshot: { format: 'ferry-profile' } }],
    ['generation', { id: 'g1', rebuilt: true }]
  ], 'each subscriber gets its own channel\'s messages, decoded')

  await t.rejects(gatewayHealthChannel.publish(a, { gateway: 'a{b', healthy: true, at: 1, from: 'p1' }), { code: 'FERRY_STATE_INVALID' })
  await t.rejects(gatewayHealthChannel.publish(a, { gateway: 'gw1', healthy: 'no' as unknown as boolean, at: 1, from: 'p1' }), { code: 'FERRY_STATE_INVALID' })
  await t.rejects(profileChannel.publish(a, { from: 'p1', snapshot: [] as unknown as Record<string, unknown> }), { code: 'FERRY_STATE_INVALID' })

  // A foreign publisher's nonsense reaches onMalformed, never the handler.
  await a.publish('gateway-health', { gateway: 'gw1', healthy: true })
  await a.publish('passive', { from: 'p2', observations: { gw1: { requests: 'many' } } })
  await a.publish('profile', null)
  t.same(malformed.map(m => (m as unknown[])[0]), ['gateway-health', 'passive', 'profile'])
  t.equal(got.length, 4, 'no malformed message reached a handler')
})

t.test('decode tells another event from a malformed message', async t => {
  const loc: StoreEvent = { type: 'location', volume: 'v', block: 'b', epoch: 1, location: null }
  t.equal(gatewayHealthChannel.decode(loc), undefined)
  t.equal(gatewayHealthChannel.decode({ type: 'message', channel: 'passive', message: {} }), undefined)
  t.equal(gatewayHealthChannel.decode({ type: 'message', channel: 'gateway-health', message: { nonsense: true } }), null)
  t.same(gatewayHealthChannel.decode({ type: 'message', channel: 'gateway-health', message: { gateway: 'gw', healthy: true, at: 1, from: 'x', extra: 1 } }),
    { gateway: 'gw', healthy: true, at: 1, from: 'x' })
})

t.test('gateway health: down while any reporter\'s latest report says so, until it revokes it or the TTL passes', async t => {
  const view = new GatewayHealthView({ reportTtlMs: 1000 })
  const changes: Array<[string, boolean]> = []
  view.onChange((g, healthy) => changes.push([g, healthy]))
  const now = 10_000
  t.ok(view.isHealthy('gw1', now), 'nobody reported: healthy')
  t.equal(view.apply({ gateway: 'gw1', healthy: false, at: now, from: 'p1' }, now), true)
  t.equal(view.apply({ gateway: 'gw1', healthy: false, at: now, from: 'p2' }, now), false, 'already down')
  t.equal(view.apply({ gateway: 'gw1', healthy: true, at: now + 1, from: 'p2' }, now + 1), false, 'one reporter\'s "up" does not overrule another\'s "down"')
  t.same(view.reportedDownBy('gw1', now + 1), ['p1'])
  t.equal(view.apply({ gateway: 'gw1', healthy: true, at: now + 2, from: 'p1' }, now + 2), true, 'the reporter revokes its own "down"')
  view.apply({ gateway: 'gw2', healthy: false, at: now + 60_000, from: 'p3' }, now)
  t.notOk(view.isHealthy('gw2', now + 999), 'a report dated ahead counts from the receiving clock')
  t.ok(view.isHealthy('gw2', now + 1000), 'and lapses after the TTL')
  view.apply({ gateway: 'gw3', healthy: false, at: now, from: 'p1' }, now)
  view.forget('gw3')
  t.ok(view.isHealthy('gw3', now))
  t.same(changes, [['gw1', false], ['gw1', true], ['gw2', false], ['gw3', false]])

  const forever = new GatewayHealthView()
  forever.apply({ gateway: 'gw1', healthy: false, at: 0, from: 'p1' }, 0)
  t.notOk(forever.isHealthy('gw1', 1e12), 'without a TTL a "down" stands until revoked')
})

t.test('gateway health follows the store', async t => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const view = new GatewayHealthView({ store })
  t.teardown(() => view.close())
  await gatewayHealthChannel.publish(store, { gateway: 'gw1', healthy: false, at: Date.now(), from: 'p1' })
  t.notOk(view.isHealthy('gw1'))
  await store.publish('gateway-health', { gateway: 'gw1', healthy: true })
  t.notOk(view.isHealthy('gw1'), 'a malformed report changes nothing')
  await gatewayHealthChannel.publish(store, { gateway: 'gw1', healthy: true, at: Date.now(), from: 'p1' })
  t.ok(view.isHealthy('gw1'))
})
