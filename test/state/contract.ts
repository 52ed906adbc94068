import type { Test } from 'tap'
import { sleep, waitFor } from '../helpers/net.js'
import { LocationCache, type LocationChange } from '../../state/cache.js'
import { decayScores } from '../../state/affinity.js'
import type { BlockLocation, StateStore, StoreEvent, StoreEventHandler } from '../../state/types.js'
import type { Harness } from './harness.js'
import { keySlot } from '../../state/redis/slot.js'

/**
 * The executable contract of state/types.ts, run unchanged against every backend. Each subtest
 * works in a fresh namespace, so subtests neither see nor disturb one another's data.
 */

function collect (store: StateStore): StoreEvent[] {
  const out: StoreEvent[] = []
  store.subscribe(e => out.push(e))
  return out
}

const locEvents = (events: StoreEvent[]): Array<Extract<StoreEvent, { type: 'location' }>> =>
  events.filter((e): e is Extract<StoreEvent, { type: 'location' }> => e.type === 'location')

/**
 * A store wrapper that loses chosen notifications and can force a resync. Losses are chosen by
 * content, not by time: on a Cluster an event may arrive late through the cluster bus, and a
 * time window would then let it through.
 */
class LossyStore {
  readonly lost = new Set<string>()
  private readonly handlers = new Set<StoreEventHandler>()
  constructor (readonly inner: StateStore) {
    inner.subscribe(e => {
      if (e.type === 'location' && this.lost.has(`${e.block}@${e.epoch}`)) return
      for (const h of this.handlers) h(e)
    })
  }

  asStore (): StateStore {
    return new Proxy(this.inner, {
      get: (target, prop, receiver) => {
        if (prop === 'subscribe') {
          return (h: StoreEventHandler) => { this.handlers.add(h); return () => this.handlers.delete(h) }
        }
        const v = Reflect.get(target, prop, receiver) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      }
    })
  }

  emit (e: StoreEvent): void { for (const h of this.handlers) h(e) }
}

export function contractSuite (t: Test, h: Harness): void {
  t.test('locations: compare-and-set on the epoch', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()

    t.equal(await store.getLocation('vol1', 'b1'), null, 'absent at first')
    const created = await store.casLocation('vol1', 'b1', 0, { gateway: 'gw1', version: '"e1"' })
    t.ok(created.ok, 'create with expected epoch 0')
    if (!created.ok) return
    t.match(created.location, { gateway: 'gw1', epoch: 1, version: '"e1"', phase: 'stable', fence: 0 })
    t.equal(created.location.target, undefined)
    t.ok(created.location.updatedAt > Date.now() - 60_000)

    const again = await store.casLocation('vol1', 'b1', 0, { gateway: 'gw2' })
    t.same(again, { ok: false, reason: 'epoch', current: created.location }, 'a second create fails and returns the current location')

    const copying = await store.casLocation('vol1', 'b1', 1, { gateway: 'gw1', phase: 'copying', target: 'gw2' })
    t.ok(copying.ok)
    if (!copying.ok) return
    t.match(copying.location, { gateway: 'gw1', epoch: 2, phase: 'copying', target: 'gw2', version: '"e1"' }, 'version kept when omitted')

    const stale = await store.casLocation('vol1', 'b1', 1, { gateway: 'gw3' })
    t.equal(stale.ok, false, 'stale expected epoch refused')
    if (!stale.ok) t.equal(stale.current?.epoch, 2)

    const flipped = await store.casLocation('vol1', 'b1', 2, { gateway: 'gw2', phase: 'done', version: null })
    t.ok(flipped.ok && flipped.location.version === null && flipped.location.target === undefined, 'version cleared with null; target dropped')
    t.same(await store.getLocation('vol1', 'b1'), flipped.ok ? flipped.location : null, 'get returns what cas returned')

    await t.rejects(store.casLocation('vol1', 'b1', 3, { gateway: 'gw2', phase: 'copying' }), { code: 'FERRY_STATE_INVALID' }, 'copying needs a target')
    await t.rejects(store.casLocation('vol1', 'b1', 3, { gateway: 'gw2', target: 'gw2' }), { code: 'FERRY_STATE_INVALID' }, 'target differs from gateway')
    await t.rejects(store.casLocation('vol1', 'b1', -1, { gateway: 'gw2' }), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(store.casLocation('vol1', 'b1', 3, { gateway: 'gw2', phase: 'moving' as never }), { code: 'FERRY_STATE_INVALID' })
  })

  t.test('locations: concurrent compare-and-set from two stores, exactly one wins', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const a = (await ns.connect()).store
    const b = (await ns.connect()).store
    for (let round = 0; round < 5; round++) {
      const block = `race${round}`
      const attempts = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? a : b).casLocation('v', block, 0, { gateway: `gw${i}` }))
      const results = await Promise.all(attempts)
      const winners = results.filter(r => r.ok)
      t.equal(winners.length, 1, `round ${round}: one winner`)
      const final = await a.getLocation('v', block)
      t.equal(final?.epoch, 1)
      t.equal(final?.gateway, winners[0]?.ok ? winners[0].location.gateway : undefined, 'the winner is what is stored')
      for (const r of results) if (!r.ok) t.equal(r.current?.gateway, final?.gateway, 'losers see the winner')
    }
  })

  t.test('locations: replica sets (members, in-sync members), events, and a record from before them', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    const watcher = (await ns.connect()).store
    const events = collect(watcher)

    const single = await store.casLocation('v', 'one', 0, { gateway: 'gw1' })
    t.ok(single.ok)
    if (single.ok) t.match(single.location, { gateway: 'gw1', members: ['gw1'], inSync: ['gw1'] }, 'a location without a set is a set of one')

    const set = await store.casLocation('v', 'rs', 0, { gateway: 'gw2', members: ['gw2', 'gw3', 'gw1'], inSync: ['gw2', 'gw3'] })
    t.ok(set.ok)
    if (!set.ok) return
    t.same(set.location.members, ['gw2', 'gw3', 'gw1'], 'order kept')
    t.same(set.location.inSync, ['gw2', 'gw3'])
    t.same(await store.getLocation('v', 'rs'), set.location, 'get returns the set')
    const defaults = await store.casLocation('v', 'rs2', 0, { gateway: 'gw1', members: ['gw1', 'gw2'] })
    t.ok(defaults.ok && defaults.location.inSync.join() === 'gw1,gw2', 'inSync defaults to every member')

    // A member that failed a write leaves the in-sync set: a compare-and-set like any other.
    const shrunk = await store.casLocation('v', 'rs', set.location.epoch, { gateway: 'gw3', members: ['gw3', 'gw1', 'gw2'], inSync: ['gw3'] }, { reason: 'write-failed:gw2' })
    t.ok(shrunk.ok)
    if (!shrunk.ok) return
    t.match(shrunk.location, { gateway: 'gw3', members: ['gw3', 'gw1', 'gw2'], inSync: ['gw3'], epoch: set.location.epoch + 1 })
    let seen: BlockLocation | null | undefined
    await waitFor(() => {
      seen = locEvents(events).find(e => e.block === 'rs' && e.epoch === shrunk.location.epoch)?.location
      return seen !== undefined
    }, 'the shrink event')
    t.same(seen, shrunk.location, 'the event carries the set')
    const scanned: BlockLocation[] = []
    for await (const b of store.scanLocations()) if (b.block === 'rs') scanned.push(b.location)
    t.same(scanned, [shrunk.location], 'scans carry the set')

    await t.rejects(store.casLocation('v', 'bad', 0, { gateway: 'gw1', members: ['gw2'] }), { code: 'FERRY_STATE_INVALID' }, 'members must contain gateway')
    await t.rejects(store.casLocation('v', 'bad', 0, { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw2'] }), { code: 'FERRY_STATE_INVALID' }, 'gateway must be in sync')
    await t.rejects(store.casLocation('v', 'bad', 0, { gateway: 'gw1', members: ['gw1', 'gw1'] }), { code: 'FERRY_STATE_INVALID' }, 'no member twice')
    await t.rejects(store.casLocation('v', 'bad', 0, { gateway: 'gw1', members: ['gw1'], inSync: ['gw1', 'gw4'] }), { code: 'FERRY_STATE_INVALID' }, 'in-sync members are members')
    await t.rejects(store.casLocation('v', 'bad', 0, { gateway: 'gw1', members: [] }), { code: 'FERRY_STATE_INVALID' }, 'never empty')

    if (ns.raw !== undefined) {
      // What a ferry from before replica sets stored: no m, no i.
      const key = `${ns.raw.keyPrefix}{v/old}:loc`
      await ns.raw.client.hset(key, 'g', 'gw2', 'e', '3', 'p', 'stable', 'u', String(Date.now()), 'f', '0', 'v', '"x"')
      t.match(await store.getLocation('v', 'old'), { gateway: 'gw2', members: ['gw2'], inSync: ['gw2'], epoch: 3, version: '"x"' }, 'an old record reads as a set of one')
      t.same(await ns.raw.client.hgetall(`${ns.raw.keyPrefix}{v/one}:loc`).then(x => Object.keys(x).sort()), ['e', 'f', 'g', 'p', 'u'], 'a set of one is stored as before')
    }
  })

  t.test('locations: setVersion refused once the epoch moved; history', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    await store.casLocation('v', 'b', 0, { gateway: 'gw1' })
    const v1 = await store.setVersion('v', 'b', 1, '"etag-1"')
    t.ok(v1.ok && v1.location.version === '"etag-1"', 'version recorded at the current epoch')
    const same = await store.setVersion('v', 'b', 1, '"etag-1"')
    t.ok(same.ok, 'same version again is fine (idempotent)')
    await store.casLocation('v', 'b', 1, { gateway: 'gw2' }, { reason: 'migration:m-1' })
    const late = await store.setVersion('v', 'b', 1, '"etag-late"')
    t.equal(late.ok, false, 'a write acknowledged at the old epoch is refused')
    if (!late.ok) t.match(late.current, { epoch: 2, gateway: 'gw2', version: '"etag-1"' })
    t.equal((await store.getLocation('v', 'b'))?.version, '"etag-1"', 'the refused version did not land')
    t.equal((await store.setVersion('v', 'missing', 1, 'x')).ok, false, 'absent block refused')

    const hist = await store.blockHistory('v', 'b')
    t.same(hist.map(e => [e.epoch, e.gateway, e.version, e.reason]), [
      [1, 'gw1', null, 'cas'],
      [1, 'gw1', '"etag-1"', 'write'],
      [2, 'gw2', '"etag-1"', 'migration:m-1']
    ], 'history oldest first, identical version not repeated')

    for (let i = 0; i < 6; i++) await store.setVersion('v', 'b', 2, `"w${i}"`)
    const bounded = await store.blockHistory('v', 'b')
    t.equal(bounded.length, 4, 'history is bounded (history.limit = 4)')
    t.same(bounded.map(e => e.version), ['"w2"', '"w3"', '"w4"', '"w5"'], 'oldest dropped first')
    t.same(await store.blockHistory('v', 'nothing'), [])
  })

  t.test('locations: delete keeps the epoch (tombstone), scan sees live ones only', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    const events = collect(store)
    await store.casLocation('v', 'gone', 0, { gateway: 'gw1' })
    await store.casLocation('v', 'gone', 1, { gateway: 'gw2' })
    t.same(await store.deleteLocation('v', 'gone', 1), { ok: false, reason: 'epoch', current: await store.getLocation('v', 'gone') }, 'expected epoch checked')
    t.same(await store.deleteLocation('v', 'gone', 2), { ok: true, deleted: true })
    t.equal(await store.getLocation('v', 'gone'), null)
    t.same(await store.deleteLocation('v', 'gone'), { ok: true, deleted: false }, 'deleting nothing is not an error')
    const recreated = await store.casLocation('v', 'gone', 0, { gateway: 'gw3' })
    t.ok(recreated.ok && recreated.location.epoch === 4, 'a re-created block continues after the tombstone epoch (3)')
    t.equal(recreated.ok && recreated.location.version, null, 'no version carried over a delete')
    await waitFor(() => locEvents(events).length === 4, 'four location events')
    t.same(locEvents(events).map(e => [e.epoch, e.location?.gateway ?? null]), [[1, 'gw1'], [2, 'gw2'], [3, null], [4, 'gw3']])

    for (let i = 0; i < 30; i++) await store.casLocation(`vol${i % 3}`, `blk${i}`, 0, { gateway: 'gw1' })
    await store.deleteLocation('vol0', 'blk0')
    const seen = new Map<string, BlockLocation>()
    for await (const r of store.scanLocations()) seen.set(`${r.volume}/${r.block}`, r.location)
    t.equal(seen.size, 30, '29 blocks + the re-created one')
    t.notOk(seen.has('vol0/blk0'), 'deleted block not listed')
    t.equal(seen.get('v/gone')?.epoch, 4)
    t.equal(seen.get('vol2/blk29')?.gateway, 'gw1')
  })

  t.test('affinity: decayed merge from two proxies', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const p1 = (await ns.connect()).store
    const p2 = (await ns.connect()).store
    const H = 1000 // TEST_LIMITS half-life
    const t0 = Date.now() - 10_000
    // Proxy 1 flushes at t0 + H, proxy 2's older batch (t0) arrives after it: order must not matter.
    await p1.mergeAccess([
      { volume: 'v', block: 'b', site: 'eu', reads: 8, writes: 2, lastAccessMs: t0 + H },
      { volume: 'v', block: 'b', site: 'us', reads: 4, writes: 0, lastAccessMs: t0 + H }
    ])
    await p2.mergeAccess([
      { volume: 'v', block: 'b', site: 'eu', reads: 10, writes: 0, lastAccessMs: t0 },
      { volume: 'v', block: 'b', site: '', reads: 1, writes: 1, lastAccessMs: t0 },
      { volume: 'v', block: 'other', site: 'asia', reads: 1, writes: 0, lastAccessMs: t0, weight: 5 }
    ])
    const a = await p1.getAffinity('v', 'b')
    t.ok(a)
    if (!a) return
    t.equal(a.scoredAt, t0 + H)
    t.ok(Math.abs(a.scores.eu! - (10 + 10 * 0.5)) < 1e-9, `eu = 10 + 10·½ (got ${a.scores.eu})`)
    t.ok(Math.abs(a.scores.us! - 4) < 1e-9, 'us = 4')
    t.ok(Math.abs(a.scores['']! - 1) < 1e-9, 'unknown site = 2·½')
    t.same([a.reads, a.writes, a.lastAccess], [23, 3, t0 + H], 'counts summed, last access is the latest')

    // A later flush decays what is stored.
    await p2.mergeAccess([{ volume: 'v', block: 'b', site: 'us', reads: 1, writes: 0, lastAccessMs: t0 + 3 * H }])
    const later = (await p1.getAffinity('v', 'b'))!
    t.ok(Math.abs(later.scores.eu! - 15 * 0.25) < 1e-9, 'eu decayed two half-lives')
    t.ok(Math.abs(later.scores.us! - (4 * 0.25 + 1)) < 1e-9, 'us decayed then incremented')
    const now = decayScores(later, t0 + 4 * H, H)
    t.ok(Math.abs(now.eu! - 15 * 0.125) < 1e-9, 'decayScores brings scores to a later time')

    t.equal((await p1.getAffinity('v', 'other'))?.scores.asia, 5, 'explicit weight used')

    const all = new Map<string, number>()
    for await (const e of p2.scanAffinity()) all.set(`${e.volume}/${e.block}`, e.reads)
    t.same([...all.keys()].sort(), ['v/b', 'v/other'])
    t.equal(await p1.getAffinity('v', 'never'), null)
    await p1.mergeAccess([])
    await t.rejects(p1.mergeAccess([{ volume: 'v', block: 'b', site: 'e u', reads: 1, writes: 0, lastAccessMs: t0 }]), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(p1.mergeAccess([{ volume: 'v', block: 'b', site: 'eu', reads: -1, writes: 0, lastAccessMs: t0 }]), { code: 'FERRY_STATE_INVALID' })
  })

  t.test('affinity: cold entries expire, access refreshes the TTL', async t => {
    const ns = await h.namespace({ affinity: { halfLifeMs: 1000, ttlMs: 600 } })
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    const d = (block: string): Parameters<StateStore['mergeAccess']>[0] => [{ volume: 'v', block, site: 's', reads: 1, writes: 0, lastAccessMs: Date.now() }]
    await store.mergeAccess([...d('hot'), ...d('cold')])
    await sleep(350)
    await store.mergeAccess(d('hot'))
    await sleep(350)
    t.ok(await store.getAffinity('v', 'hot'), 'refreshed entry still there after the first TTL')
    await waitFor(async () => (await store.getAffinity('v', 'cold')) === null, 'cold entry expired', 3000)
    await waitFor(async () => (await store.getAffinity('v', 'hot')) === null, 'the refreshed entry expires too once accesses stop', 3000)
    let n = 0
    for await (const _ of store.scanAffinity()) n++
    t.equal(n, 0, 'nothing left to scan')
  })

  t.test('sessions: bindings, state, TTL, across stores', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const p1 = (await ns.connect()).store
    const p2 = (await ns.connect()).store
    const s = await p1.putSession('sess-1', { bindings: { vol1: 'gw1' }, state: { cart: [1, 2], n: 3 } }, 60_000)
    t.same(s.bindings, { vol1: 'gw1' })
    const seen = await p2.getSession('sess-1')
    t.same(seen?.bindings, { vol1: 'gw1' }, 'another proxy sees the binding')
    t.same(seen?.state, { cart: [1, 2], n: 3 }, 'and the state')

    await Promise.all([p1.bindSession('sess-1', 'vol2', 'gw2', 60_000), p2.bindSession('sess-1', 'vol3', 'gw3', 60_000)])
    const bound = await p1.getSession('sess-1')
    t.same(bound?.bindings, { vol1: 'gw1', vol2: 'gw2', vol3: 'gw3' }, 'concurrent binds of different volumes both kept')
    t.same(bound?.state, { cart: [1, 2], n: 3 }, 'binding keeps the state')
    await p2.bindSession('sess-1', 'vol1', 'gw9', 60_000)
    t.equal((await p1.getSession('sess-1'))?.bindings.vol1, 'gw9', 'rebinding a volume replaces it')

    await p1.bindSession('sess-new', 'vol1', 'gw1', 60_000)
    t.match(await p2.getSession('sess-new'), { bindings: { vol1: 'gw1' }, state: {} }, 'bind creates a session')

    await p1.putSession('short', { bindings: {} }, 300)
    t.equal(await p1.touchSession('short', 300), true)
    await waitFor(async () => (await p2.getSession('short')) === null, 'session expired', 3000)
    t.equal(await p1.touchSession('short', 1000), false, 'touching an expired session reports false')

    await t.rejects(p1.putSession('big', { bindings: {}, state: { blob: 'x'.repeat(4096) } }, 1000), { code: 'FERRY_STATE_TOO_LARGE' })
    await t.rejects(p1.putSession('s', { bindings: {} }, 0), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(p1.putSession('s', { bindings: {}, state: { n: 1n } as never }, 1000), { code: 'FERRY_STATE_INVALID' })
  })

  t.test('telemetry: bounded by count and by age', async t => {
    const ns = await h.namespace({ telemetry: { maxSamples: 5, maxAgeMs: 5000 } })
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    const now = Date.now()
    await store.appendTelemetry('gw1', [{ at: now - 60_000, cpu: 0.1 }]) // older than maxAgeMs: dropped at once
    const samples = Array.from({ length: 8 }, (_, i) => ({ at: now - 800 + i * 100, cpu: i / 10, memPressure: i }))
    await store.appendTelemetry('gw1', samples.slice(0, 3))
    await store.appendTelemetry('gw1', samples.slice(3))
    const all = await store.readTelemetry('gw1')
    t.same(all, samples.slice(3), 'the 5 most recent, oldest first')
    t.same(await store.readTelemetry('gw1', { limit: 2 }), samples.slice(6), 'limit keeps the newest')
    t.same(await store.readTelemetry('gw1', { since: samples[5]!.at }), samples.slice(5), 'since is inclusive')
    t.same(await store.readTelemetry('gw2'), [], 'other gateways are separate')
    await t.rejects(store.appendTelemetry('gw1', [{ at: now, cpu: Number.NaN }]), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(store.appendTelemetry('gw1', [{ at: now, 'bad name': 1 }]), { code: 'FERRY_STATE_INVALID' })

    const ns2 = await h.namespace({ telemetry: { maxSamples: 100, maxAgeMs: 400 } })
    t.teardown(() => ns2.close())
    const s2 = (await ns2.connect()).store
    await s2.appendTelemetry('gw1', [{ at: Date.now(), cpu: 1 }])
    t.equal((await s2.readTelemetry('gw1')).length, 1)
    await waitFor(async () => (await s2.readTelemetry('gw1')).length === 0, 'samples aged out', 3000)
  })

  t.test('migrations: log, progress, result, bounded', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    const base = Date.now() - 100_000
    const m1 = await store.appendMigration({ id: 'm1', volume: 'v', block: 'b1', from: 'gw1', to: 'gw2', startedAt: base, reason: 'rebalance', totalBytes: 1000 })
    t.match(m1, { id: 'm1', phase: 'queued', bytes: 0, totalBytes: 1000, result: null, endedAt: null, error: null, reason: 'rebalance' })
    await t.rejects(store.appendMigration({ id: 'm1', volume: 'v', block: 'b1', from: 'gw1', to: 'gw2' }), { code: 'FERRY_STATE_CONFLICT' })

    const progress = await store.updateMigration('m1', { phase: 'copying', bytes: 500 })
    t.match(progress, { phase: 'copying', bytes: 500, result: null })
    t.same((await store.listMigrations({ active: true })).map(m => m.id), ['m1'])
    const done = await store.updateMigration('m1', { phase: 'done', bytes: 1000, result: 'ok' })
    t.equal(done?.result, 'ok')
    t.ok((done?.endedAt ?? 0) >= (done?.startedAt ?? Infinity), 'endedAt set with the result')
    await store.updateMigration('m1', { endedAt: base + 10 })
    t.same(await store.listMigrations({ active: true }), [], 'no longer active')
    t.match(await store.getMigration('m1'), { id: 'm1', result: 'ok', bytes: 1000, endedAt: base + 10 })
    t.equal(await store.updateMigration('nope', { bytes: 1 }), null)

    for (let i = 2; i <= 6; i++) {
      await store.appendMigration({ id: `m${i}`, volume: 'v', block: `b${i}`, from: 'gw1', to: 'gw2', startedAt: base + i * 1000 })
    }
    for (let i = 2; i <= 5; i++) await store.updateMigration(`m${i}`, { result: i === 3 ? 'failed' : 'ok', error: i === 3 ? 'target 503' : null, endedAt: base + 50_000 + i })
    const listed = await store.listMigrations({ limit: 10 })
    t.same(listed.map(m => m.id), ['m6', 'm5', 'm4', 'm3'], 'newest first; finished trimmed to 3 (m1, m2 dropped); active m6 kept')
    t.equal(listed.find(m => m.id === 'm3')?.error, 'target 503')
    t.equal(await store.getMigration('m2'), null, 'trimmed record is gone')
    t.same((await store.listMigrations({ limit: 2 })).map(m => m.id), ['m6', 'm5'])
    t.same((await store.listMigrations({ active: true })).map(m => m.id), ['m6'])
    await t.rejects(store.updateMigration('m6', { result: 'maybe' as never }), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(store.appendMigration({ id: 'bad id', volume: 'v', block: 'b', from: 'a', to: 'b' }), { code: 'FERRY_STATE_INVALID' })
  })

  t.test('lease: exclusive, expiry, takeover with a larger token, fencing', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const a = (await ns.connect()).store
    const b = (await ns.connect()).store
    const first = await a.acquireLease('planner', 'host-a:1', 400)
    t.ok(first, 'a acquires')
    if (!first) return
    t.equal(await b.acquireLease('planner', 'host-b:1', 400), null, 'b cannot while a holds it')
    t.same(await a.acquireLease('planner', 'host-a:1', 400), first, 're-acquire by the holder returns its token')
    t.equal(await a.renewLease('planner', 'host-a:1', first.token, 400), true)
    t.equal(await b.renewLease('planner', 'host-b:1', first.token, 400), false, 'renew by someone else fails')
    t.match(await b.getLease('planner'), { holder: 'host-a:1', token: first.token })

    // Fenced writes by the holder succeed and raise the block's high-water mark.
    const w = await a.casLocation('v', 'b', 0, { gateway: 'gw1' }, { fence: { lease: 'planner', token: first.token } })
    t.ok(w.ok && w.location.fence === first.token, 'fenced cas by the leader')

    const second = (await waitFor(() => b.acquireLease('planner', 'host-b:1', 5000), 'lease expiry and takeover', 3000, 50))!
    t.ok(second.token > first.token, `token grows (${first.token} → ${second.token})`)
    t.equal(await a.renewLease('planner', 'host-a:1', first.token, 400), false, 'deposed holder cannot renew')
    t.equal(await a.releaseLease('planner', 'host-a:1', first.token), false, 'nor release')

    const late = await a.casLocation('v', 'b', 1, { gateway: 'gw-late' }, { fence: { lease: 'planner', token: first.token } })
    t.match(late, { ok: false, reason: 'fenced' }, "deposed planner's late write refused although its epoch is right")
    const lateCreate = await a.casLocation('v', 'untouched', 0, { gateway: 'gw-late' }, { fence: { lease: 'planner', token: first.token } })
    t.match(lateCreate, { ok: false, reason: 'fenced' }, 'also on a block the new leader never wrote')
    t.match(await a.deleteLocation('v', 'b', 1, { fence: { lease: 'planner', token: first.token } }), { ok: false, reason: 'fenced' })
    t.equal((await b.getLocation('v', 'b'))?.gateway, 'gw1', 'nothing changed')

    const ok = await b.casLocation('v', 'b', 1, { gateway: 'gw2' }, { fence: { lease: 'planner', token: second.token } })
    t.ok(ok.ok && ok.location.fence === second.token, 'new leader writes')
    t.match(await b.casLocation('v', 'b', 2, { gateway: 'gw3' }, { fence: { lease: 'other', token: second.token } }), { ok: false, reason: 'fenced' }, 'a lease nobody holds fences')

    t.equal(await b.releaseLease('planner', 'host-b:1', second.token), true)
    t.equal(await b.getLease('planner'), null)
    const third = await a.acquireLease('planner', 'host-a:1', 1000)
    t.ok(third && third.token > second.token, 'tokens keep increasing across release and re-acquire')
    await t.rejects(a.acquireLease('planner', '', 1000), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(a.casLocation('v', 'b', 2, { gateway: 'gw3' }, { fence: { lease: 'planner', token: 0 } }), { code: 'FERRY_STATE_INVALID' })
  })

  t.test('generation: one marker for every store, created rebuilding, finished once', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const a = (await ns.connect()).store
    const b = (await ns.connect()).store
    const [ga, gb] = await Promise.all([a.generation(), b.generation()])
    t.equal(ga.id, gb.id, 'two stores racing to create it get the same marker')
    t.match(ga, { rebuilding: true, rebuiltAt: null }, 'a new marker says the locations are not rebuilt yet')
    t.equal(await a.finishRebuild('not-this-one'), false, 'another generation cannot finish it')
    t.equal((await b.generation()).rebuilding, true)
    t.equal(await a.finishRebuild(ga.id), true)
    const done = await b.generation()
    t.match(done, { id: ga.id, rebuilding: false }, 'every store sees it rebuilt')
    t.ok(typeof done.rebuiltAt === 'number' && done.rebuiltAt >= ga.createdAt)
    t.equal(await b.finishRebuild(ga.id), true, 'finishing twice is harmless')
    t.equal((await a.generation()).rebuiltAt, done.rebuiltAt, 'and keeps the first time')
  })

  t.test('documents: last write wins, seen by every store, bounded, checked', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const a = (await ns.connect()).store
    const b = (await ns.connect()).store
    t.equal(await b.getDocument('placement-table'), null, 'absent: null')
    await a.putDocument('placement-table', { v: 1, list: [1, 2] })
    await a.putDocument('placement-table', { v: 2, list: [3] })
    t.same(await b.getDocument('placement-table'), { v: 2, list: [3] }, 'the last write, through another store')
    await t.rejects(a.putDocument('Bad Name', {}), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(a.putDocument('big', 'x'.repeat(5 * 1024 * 1024)), { code: 'FERRY_STATE_TOO_LARGE' })
    await t.rejects(a.putDocument('fn', undefined), { code: 'FERRY_STATE_INVALID' })
  })

  t.test('drains: written by one store, seen by another, replaced, ended; bad records refused', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const a = (await ns.connect()).store
    const b = (await ns.connect()).store
    t.same(await b.listDrains(), [])
    await a.putDrain({ gateway: 'gw1', cause: 'health', to: null, startedAt: 1000 })
    await a.putDrain({ gateway: 'gw2', cause: 'operator', to: 'gw3', startedAt: 2000 })
    const byGateway = (list: Array<{ gateway: string }>): unknown[] => [...list].sort((x, y) => x.gateway.localeCompare(y.gateway))
    t.same(byGateway(await b.listDrains()), [
      { gateway: 'gw1', cause: 'health', to: null, startedAt: 1000 },
      { gateway: 'gw2', cause: 'operator', to: 'gw3', startedAt: 2000 }
    ], 'another store (a new leader) reads every drain back as written')
    await b.putDrain({ gateway: 'gw1', cause: 'operator', to: null, startedAt: 3000 })
    t.same((await a.listDrains()).find(d => d.gateway === 'gw1'), { gateway: 'gw1', cause: 'operator', to: null, startedAt: 3000 }, 'an operator drain replaces an evacuation')
    t.equal(await a.deleteDrain('gw1'), true)
    t.equal(await b.deleteDrain('gw1'), false, 'ending it twice: nothing to end')
    t.same((await b.listDrains()).map(d => d.gateway), ['gw2'])
    await t.rejects(a.putDrain({ gateway: 'bad id!', cause: 'operator', to: null, startedAt: 1 }), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(a.putDrain({ gateway: 'gw4', cause: 'whim' as 'operator', to: null, startedAt: 1 }), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(a.putDrain({ gateway: 'gw4', cause: 'operator', to: null, startedAt: -5 }), { code: 'FERRY_STATE_INVALID' })
    t.same((await b.listDrains()).map(d => d.gateway), ['gw2'], 'nothing refused was stored')
  })

  t.test('notifications: in order to every store, messages and channels', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const p1 = (await ns.connect()).store
    const p2 = (await ns.connect()).store
    const e1 = collect(p1)
    const e2 = collect(p2)
    const N = 50
    for (let i = 0; i < N; i++) {
      const r = await p1.casLocation('v', 'hot', i, { gateway: `gw${i % 3}` })
      t.ok(r.ok)
      await p1.casLocation('v', `cold${i}`, 0, { gateway: 'gw1' })
    }
    await p1.publish('gateway-health', { gateway: 'gw2', healthy: false, score: 0.2 })
    await p1.publish('config', 'reloaded')
    await waitFor(() => e2.filter(e => e.type === 'message').length === 2 && locEvents(e2).length === 2 * N && locEvents(e1).length === 2 * N,
      'everything delivered to both stores')
    const hot = locEvents(e2).filter(e => e.block === 'hot')
    t.same(hot.map(e => e.epoch), Array.from({ length: N }, (_, i) => i + 1), 'every epoch, in order')
    t.same(hot.map(e => e.location?.gateway), Array.from({ length: N }, (_, i) => `gw${i % 3}`))
    t.equal(locEvents(e2).length, 2 * N)
    // (Order between different blocks, or between blocks and messages, is only promised on a
    // single server: on a Cluster they are published from different nodes. See README.)
    t.same(e2.filter(e => e.type === 'message'), [
      { type: 'message', channel: 'gateway-health', message: { gateway: 'gw2', healthy: false, score: 0.2 } },
      { type: 'message', channel: 'config', message: 'reloaded' }
    ], 'messages in publish order')
    t.same(locEvents(e1).length, 2 * N, 'the publisher receives its own events too')
    const last = hot[hot.length - 1]!
    t.same(last.location, await p2.getLocation('v', 'hot'), 'the event carries the whole location')

    await t.rejects(p1.publish('Bad Channel', 1), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(p1.publish('big', 'x'.repeat(70_000)), { code: 'FERRY_STATE_TOO_LARGE' })
  })

  t.test('LocationCache: follows a second store, ignores stale and duplicate, resyncs', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const writer = (await ns.connect()).store
    const reader = new LossyStore((await ns.connect()).store)
    await writer.casLocation('v', 'a', 0, { gateway: 'gw1' })
    await writer.casLocation('v', 'b', 0, { gateway: 'gw1' })
    const cache = new LocationCache(reader.asStore())
    t.teardown(() => cache.close())
    t.equal(cache.get('v', 'a'), undefined, 'unknown before loading')
    t.equal(await cache.start(), true, 'loaded')
    t.equal(cache.get('v', 'a')?.gateway, 'gw1')
    t.equal(cache.get('v', 'zzz'), null, 'complete cache: absent means absent')
    t.equal(cache.size, 2)
    const changes: LocationChange[] = []
    cache.onChange(c => changes.push(c))

    const moved = await writer.casLocation('v', 'a', 1, { gateway: 'gw2' })
    await waitFor(() => cache.get('v', 'a')?.epoch === 2, 'cache follows the change')
    t.equal(cache.get('v', 'a')?.gateway, 'gw2')
    t.equal(cache.apply('v', 'a', 2, moved.ok ? moved.location : null), 'duplicate')
    t.equal(cache.apply('v', 'a', 1, { ...cache.get('v', 'a')!, epoch: 1, gateway: 'gw-old' }), 'stale')
    t.equal(cache.get('v', 'a')?.gateway, 'gw2', 'stale change not applied')
    t.ok(cache.stats.duplicate >= 1 && cache.stats.stale >= 1)
    await writer.deleteLocation('v', 'b')
    await waitFor(() => cache.get('v', 'b') === null, 'delete applied')
    t.equal(cache.apply('v', 'b', 1, { gateway: 'gw-zombie', members: ['gw-zombie'], inSync: ['gw-zombie'], epoch: 1, version: null, phase: 'stable', updatedAt: 0, fence: 0 }), 'stale', 'tombstone stops a late older event')

    // Lose notifications, then resync.
    for (const lost of ['a@3', 'c@1', 'b@3', 'c@2', 'd@1']) reader.lost.add(lost)
    t.ok((await writer.casLocation('v', 'a', 2, { gateway: 'gw3' })).ok)
    t.ok((await writer.casLocation('v', 'c', 0, { gateway: 'gw1' })).ok)
    t.ok((await writer.casLocation('v', 'b', 0, { gateway: 'gw5' })).ok)
    t.ok((await writer.deleteLocation('v', 'c')).ok)
    t.ok((await writer.casLocation('v', 'd', 0, { gateway: 'gw4' })).ok)
    await sleep(50)
    t.equal(cache.get('v', 'a')?.gateway, 'gw2', 'missed the change')
    changes.length = 0
    const reloads = cache.stats.reloads
    reader.emit({ type: 'resync', reason: 'test' })
    await waitFor(() => cache.stats.reloads > reloads, 'resync reloads the cache')
    t.equal(cache.get('v', 'd')?.gateway, 'gw4', 'resync picks up what was missed')
    t.equal(cache.get('v', 'a')?.gateway, 'gw3')
    t.equal(cache.get('v', 'b')?.gateway, 'gw5', 're-created block after a delete')
    t.equal(cache.get('v', 'b')?.epoch, 3, 'created 1, deleted 2, re-created 3')
    t.equal(cache.get('v', 'c'), null)
    t.same(changes.map(c => [c.block, c.location?.gateway ?? null, c.source]).sort(), [['a', 'gw3', 'resync'], ['b', 'gw5', 'resync'], ['d', 'gw4', 'resync']])
    t.ok(cache.fresh)
    t.equal(cache.size, 3)
  })

  t.test('hostile input: refused before reaching the backend', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store, registry } = await ns.connect()
    const bad = ['', 'a}b', 'a{b', 'x/y', 'a*', 'a:b', 'sp ace', 'new\nline', '.hidden', '..', 'x'.repeat(129), 'é', 42 as unknown as string]
    for (const id of bad) {
      const label = JSON.stringify(id)
      await t.rejects(store.getLocation(id, 'b'), { code: 'FERRY_STATE_INVALID' }, `volume ${label}`)
      await t.rejects(store.casLocation('v', id, 0, { gateway: 'gw' }), { code: 'FERRY_STATE_INVALID' }, `block ${label}`)
      await t.rejects(store.casLocation('v', 'b', 0, { gateway: id }), { code: 'FERRY_STATE_INVALID' }, `gateway ${label}`)
      await t.rejects(store.getSession(id), { code: 'FERRY_STATE_INVALID' }, `session ${label}`)
      await t.rejects(store.acquireLease(id, 'h', 1000), { code: 'FERRY_STATE_INVALID' }, `lease ${label}`)
      await t.rejects(store.readTelemetry(id), { code: 'FERRY_STATE_INVALID' }, `telemetry gateway ${label}`)
    }
    await t.rejects(store.getAffinity('v', 'b}x'), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(store.setVersion('v', 'b', 1, 'bad\r\nversion'), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(store.casLocation('v', 'b', 0, { gateway: 'gw' }, { reason: 'x'.repeat(201) }), { code: 'FERRY_STATE_INVALID' })
    await t.rejects(store.acquireLease('planner', 'bad\u0000holder', 1000), { code: 'FERRY_STATE_INVALID' })

    // Metered the same on every backend: each refused call once, as an error, with no duration.
    const samples = async (name: string, op: string): Promise<Array<{ labels: Record<string, unknown>, value: number }>> =>
      ((await registry.getSingleMetric(name)?.get())?.values ?? []).filter(v => v.labels.op === op)
    const results = async (op: string): Promise<Record<string, number>> =>
      Object.fromEntries((await samples('ferry_state_operations_total', op)).map(v => [String(v.labels.result), v.value]))
    t.same(await results('getLocation'), { error: bad.length }, 'refused getLocation calls: counted as errors')
    t.same(await results('casLocation'), { error: 2 * bad.length + 1 }, 'refused casLocation calls: counted as errors')
    t.same(await results('acquireLease'), { error: bad.length + 1 }, 'refused acquireLease calls: counted as errors')
    t.same(await samples('ferry_state_operation_duration_seconds', 'getLocation'), [], 'and never timed as a backend call')

    // Ids that look alike stay apart: the key of (a, b.c) is not the key of (a.b, c).
    await store.casLocation('a', 'b.c', 0, { gateway: 'gw1' })
    await store.casLocation('a.b', 'c', 0, { gateway: 'gw2' })
    await store.casLocation('-a_', '-', 0, { gateway: 'gw3' })
    t.equal((await store.getLocation('a', 'b.c'))?.gateway, 'gw1')
    t.equal((await store.getLocation('a.b', 'c'))?.gateway, 'gw2')
    t.equal((await store.getLocation('-a_', '-'))?.gateway, 'gw3')
    let n = 0
    for await (const _ of store.scanLocations()) n++
    t.equal(n, 3)

    // Malformed notifications are ignored and counted; a faulty handler hurts no one.
    const events = collect(store)
    store.subscribe(() => { throw new Error('faulty consumer') })
    const after = collect(store)
    const malformed = [
      'not json',
      '{"v":2,"k":"msg","ch":"config","m":1}',
      '{"v":1,"k":"loc","vol":"a}","blk":"b","e":1}',
      '{"v":1,"k":"loc","vol":"a","blk":"b","e":0}',
      '{"v":1,"k":"loc","vol":"a","blk":"b","e":2,"loc":{"g":"gw","e":3,"p":"stable","u":1}}',
      '{"v":1,"k":"msg","ch":"UPPER","m":1}',
      '[]',
      'null'
    ]
    const malformedCount = async (): Promise<number> =>
      (await registry.getSingleMetric('ferry_state_malformed_messages_total')?.get())?.values[0]?.value ?? 0
    for (const m of malformed) await ns.injectRaw(m)
    await ns.injectRaw('{"v":1,"k":"msg","ch":"config","m":"still here"}')
    await waitFor(async () => events.some(e => e.type === 'message') && await malformedCount() === malformed.length,
      'the valid message delivered and every malformed one counted')
    t.same(events.filter(e => e.type === 'message'), [{ type: 'message', channel: 'config', message: 'still here' }], 'only the valid one delivered')
    t.equal(after.length, events.length, 'handlers after a throwing one still get events')
  })

  t.test('status and close', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    t.same(store.status(), { ok: true })
    const events = collect(store)
    await store.close()
    t.same(store.status(), { ok: false, reason: 'closed' })
    t.ok(events.some(e => e.type === 'status' && !e.status.ok), 'status event on close')
    await t.rejects(store.getLocation('v', 'b'), { code: 'FERRY_STATE_CLOSED' })
    await store.close()
  })
}

/** Redis only: a batch is one write (one round trip) per node, whatever its size. */
export function pipeliningSuite (t: Test, h: Harness, countWrites: (store: StateStore, fn: () => Promise<unknown>) => Promise<number[]>): void {
  t.test('batches: one round trip per node', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    const refs = Array.from({ length: 300 }, (_, i) => ({ volume: `v${i % 7}`, block: `b${i}` }))
    const readAll = async (): Promise<unknown> => await Promise.all(refs.map(r => store.getLocation(r.volume, r.block)))
    await readAll() // warm-up: cluster node connections are opened lazily
    const deltas = refs.map(r => ({ ...r, site: 'eu', reads: 1, writes: 0, lastAccessMs: Date.now() }))
    await store.mergeAccess(deltas.slice(0, 10)) // and scripts are loaded once per connection

    const reads = await countWrites(store, readAll)
    t.ok(reads.every(n => n <= 1) && reads.some(n => n === 1), `300 reads issued together: writes per node ${JSON.stringify(reads)}`)
    const merges = await countWrites(store, () => store.mergeAccess(deltas))
    t.ok(merges.every(n => n <= 1) && merges.some(n => n === 1), `mergeAccess of 300 blocks: writes per node ${JSON.stringify(merges)}`)
    t.equal((await store.getAffinity('v0', 'b0'))?.reads, 2, 'and the merge landed')
  })
}

/**
 * Redis only: mergeAccess sends one script call per batch on a standalone server and one per
 * slot on a Cluster (`scriptCalls` reads INFO commandstats on a private server), and a damaged
 * key fails only its own block.
 */
export function mergeScriptSuite (t: Test, h: Harness, opts: { cluster: boolean, scriptCalls: () => Promise<number> }): void {
  t.test('mergeAccess: script calls per batch', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    const now = Date.now()
    await store.mergeAccess([{ volume: 'w', block: 'warm', site: 'eu', reads: 1, writes: 0, lastAccessMs: now }]) // loads the script
    for (const n of [1, 2, 300, 2500]) {
      const refs = Array.from({ length: n }, (_, i) => ({ volume: `v${i % 7}`, block: `n${n}b${i}` }))
      // Two sites for some blocks: one call still covers every (block, site) delta of the batch.
      const deltas = refs.flatMap((r, i) => [
        { ...r, site: 'eu', reads: 1, writes: 0, lastAccessMs: now },
        ...(i % 3 === 0 ? [{ ...r, site: 'us', reads: 0, writes: 1, lastAccessMs: now - 10 }] : [])
      ])
      // Calls of at most 500 blocks each; on a Cluster, one per slot (the hash tag is {vol/blk}).
      const slots = new Set(refs.map(r => keySlot(`x{${r.volume}/${r.block}}:aff`)))
      const expected = opts.cluster ? slots.size : Math.ceil(n / 500)
      const before = await opts.scriptCalls()
      await store.mergeAccess(deltas)
      const calls = await opts.scriptCalls() - before
      t.equal(calls, expected, `${n} blocks, ${deltas.length} deltas: ${calls} script calls (expected ${expected})`)
      const last = refs[n - 1]!
      const a = await store.getAffinity(last.volume, last.block)
      t.same([a?.reads, a?.writes], (n - 1) % 3 === 0 ? [1, 1] : [1, 0], 'and the merge landed')
    }
  })

  t.test('mergeAccess: a damaged key fails only its own block', async t => {
    const ns = await h.namespace()
    t.teardown(() => ns.close())
    const { store } = await ns.connect()
    const raw = ns.raw!
    await raw.client.set(`${raw.keyPrefix}{v/str}:aff`, 'not a hash')
    await raw.client.hset(`${raw.keyPrefix}{v/nan}:aff`, 'at', '1', 's:eu', 'x')
    const now = Date.now()
    const d = (block: string): { volume: string, block: string, site: string, reads: number, writes: number, lastAccessMs: number } =>
      ({ volume: 'v', block, site: 'eu', reads: 2, writes: 1, lastAccessMs: now })
    await t.rejects(store.mergeAccess([d('a'), d('str'), d('nan'), d('b')]), { code: 'FERRY_STATE_ERROR' })
    t.same([(await store.getAffinity('v', 'a'))?.reads, (await store.getAffinity('v', 'b'))?.reads], [2, 2], 'the other blocks are merged')
    t.equal(await raw.client.get(`${raw.keyPrefix}{v/str}:aff`), 'not a hash', 'the damaged key is left alone')
    t.same(await raw.client.hgetall(`${raw.keyPrefix}{v/nan}:aff`), { at: '1', 's:eu': 'x' }, 'a half-merged block is not written')
    await store.mergeAccess([d('a')])
    t.equal((await store.getAffinity('v', 'a'))?.reads, 4, 'later batches still merge')
  })
}
