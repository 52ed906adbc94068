import t from 'tap'
import { waitFor } from '../helpers/net.js'
import { LocationCache, type LocationChange } from '../../state/cache.js'
import { unavailable } from '../../state/errors.js'
import type { BlockLocation, LocatedBlock, StateStore, StoreEvent, StoreEventHandler, StoreStatus } from '../../state/types.js'

/**
 * The cache's ordering rules against a scripted store: the interleavings that a real backend
 * produces only by chance (an event arriving in the middle of a resync scan) are forced here.
 */

const loc = (gateway: string, epoch: number): BlockLocation => ({ gateway, members: [gateway], inSync: [gateway], epoch, version: null, phase: 'stable', updatedAt: epoch, fence: 0 })

class FakeStore {
  status: StoreStatus = { ok: true }
  snapshot: LocatedBlock[] = []
  /** Resolved by the test to let the scan continue after its first item. */
  gate: Promise<void> | null = null
  failScan = false
  scans = 0
  private readonly handlers = new Set<StoreEventHandler>()

  emit (e: StoreEvent): void { for (const h of [...this.handlers]) h(e) }

  location (volume: string, block: string, location: BlockLocation | null, epoch = location?.epoch ?? 0): void {
    this.emit({ type: 'location', volume, block, epoch, location })
  }

  setStatus (s: StoreStatus): void {
    this.status = s
    this.emit({ type: 'status', status: s })
  }

  asStore (): StateStore {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this
    return {
      subscribe: (h: StoreEventHandler) => { self.handlers.add(h); return () => self.handlers.delete(h) },
      status: () => self.status,
      async * scanLocations () {
        self.scans++
        if (self.failScan) throw unavailable('scripted failure')
        const items = [...self.snapshot]
        for (const [i, item] of items.entries()) {
          yield item
          if (i === 0 && self.gate !== null) await self.gate
        }
      }
    } as unknown as StateStore
  }
}

t.test('events during a reload win when newer; the snapshot wins over older state', async t => {
  const fake = new FakeStore()
  fake.snapshot = [{ volume: 'v', block: 'a', location: loc('gw1', 1) }, { volume: 'v', block: 'b', location: loc('gw1', 1) }]
  const cache = new LocationCache(fake.asStore())
  t.teardown(() => cache.close())
  t.equal(await cache.start(), true)
  t.equal(cache.size, 2)

  // Second reload: the snapshot was read before some changes, which arrive as events mid-scan.
  let release!: () => void
  fake.gate = new Promise(resolve => { release = resolve })
  fake.snapshot = [
    { volume: 'v', block: 'x', location: loc('gw-x', 1) }, // first item, then the scan pauses
    { volume: 'v', block: 'a', location: loc('gw2', 5) }, // older than the event below
    { volume: 'v', block: 'b', location: loc('gw2', 2) } // deleted by the event below
  ]
  const reloading = cache.reload()
  await waitFor(() => cache.get('v', 'x') !== null, 'scan started')
  fake.location('v', 'a', loc('gw3', 6))
  fake.location('v', 'b', null, 3)
  fake.location('v', 'c', loc('gw-c', 1)) // created after the snapshot was read
  release()
  await reloading
  t.equal(cache.get('v', 'a')?.gateway, 'gw3', 'event newer than the snapshot kept')
  t.equal(cache.get('v', 'b'), null, 'delete during the scan not undone by the snapshot')
  t.equal(cache.get('v', 'c')?.gateway, 'gw-c', 'created during the scan: kept although not in the snapshot')
  t.equal(cache.get('v', 'x')?.gateway, 'gw-x')
  t.equal(cache.size, 3)
  fake.gate = null

  // The snapshot is authoritative over state cached before the reload, even at a lower epoch
  // (a tombstone expired in the store and the block was re-created at epoch 1).
  fake.snapshot = [{ volume: 'v', block: 'a', location: loc('gw-new', 1) }]
  const changes: LocationChange[] = []
  cache.onChange(c => changes.push(c))
  await cache.reload()
  t.equal(cache.get('v', 'a')?.gateway, 'gw-new')
  t.same([cache.get('v', 'b'), cache.get('v', 'c'), cache.get('v', 'x')], [null, null, null], 'everything else vanished')
  t.same(changes.map(c => [c.block, c.location?.gateway ?? null, c.previous?.gateway ?? null]).sort(),
    [['a', 'gw-new', 'gw3'], ['c', null, 'gw-c'], ['x', null, 'gw-x']], 'listeners told about each difference')
})

t.test('ordering: stale, duplicate, tombstones, frozen entries, listener faults', async t => {
  const fake = new FakeStore()
  const cache = new LocationCache(fake.asStore(), { tombstoneMs: 50 })
  t.teardown(() => cache.close())
  await cache.start()
  const seen: string[] = []
  cache.onChange(() => { throw new Error('faulty listener') })
  cache.onChange(c => seen.push(`${c.block}@${c.location?.epoch ?? 'x'}`))

  fake.location('v', 'a', loc('gw1', 2))
  fake.location('v', 'a', loc('gw0', 1))
  fake.location('v', 'a', loc('gw1', 2))
  fake.location('v', 'a', loc('gw2', 4))
  fake.location('v', 'a', loc('gw3', 3))
  t.equal(cache.get('v', 'a')?.gateway, 'gw2')
  t.same(cache.stats, { applied: 2, stale: 2, duplicate: 1, reloads: 1, reloadFailures: 0 })
  t.same(seen, ['a@2', 'a@4'], 'listeners only see applied changes; a throwing one does not stop them')
  t.throws(() => { (cache.get('v', 'a') as { gateway: string }).gateway = 'mutated' }, TypeError, 'entries are frozen')

  fake.location('v', 'a', null, 5)
  fake.location('v', 'a', loc('gw-late', 4))
  t.equal(cache.get('v', 'a'), null, 'a late older event does not resurrect a deleted block')
  await waitFor(() => {
    (cache as unknown as { pruneTombstones: (now: number) => void }).pruneTombstones(Date.now())
    return cache.apply('v', 'a', 1, loc('gw-new', 1)) === 'applied'
  }, 'tombstone forgotten after tombstoneMs', 2000)
  t.equal(cache.get('v', 'a')?.gateway, 'gw-new')
})

t.test('freshness follows the store; failed reloads are retried; resync coalesces', async t => {
  const fake = new FakeStore()
  fake.status = { ok: false, reason: 'connecting' }
  const cache = new LocationCache(fake.asStore(), { retryMs: 20 })
  t.teardown(() => cache.close())
  t.equal(await cache.start(50), false, 'start gives up waiting, without throwing')
  t.equal(cache.get('v', 'a'), undefined, 'unknown, not absent, before the first load')
  t.equal(fake.scans, 0, 'no load attempted while the store is down')

  fake.snapshot = [{ volume: 'v', block: 'a', location: loc('gw1', 1) }]
  fake.status = { ok: true }
  fake.emit({ type: 'status', status: fake.status })
  fake.emit({ type: 'resync', reason: 'connected' })
  await waitFor(() => cache.loaded, 'loaded on resync')
  t.ok(cache.fresh)
  t.equal(await cache.start(), true, 'start() after loading resolves at once')
  t.equal(fake.scans, 1, 'status ok + resync together cause one reload, not two')

  fake.setStatus({ ok: false, reason: 'redis: connection lost' })
  t.equal(cache.fresh, false)
  t.equal(cache.get('v', 'a')?.gateway, 'gw1', 'still serving while degraded')

  fake.failScan = true
  fake.status = { ok: true }
  fake.emit({ type: 'resync', reason: 'reconnected' })
  await waitFor(() => cache.stats.reloadFailures >= 2, 'failed reload retried')
  t.equal(cache.fresh, false)
  fake.failScan = false
  fake.snapshot = [{ volume: 'v', block: 'a', location: loc('gw2', 2) }]
  await waitFor(() => cache.fresh, 'a retry succeeds once the store answers')
  t.equal(cache.get('v', 'a')?.gateway, 'gw2')

  const before = fake.scans
  await Promise.all([cache.reload(), cache.reload(), cache.reload()])
  t.ok(fake.scans - before <= 2, `three concurrent reloads coalesce (${fake.scans - before} scans)`)
})
