import t from 'tap'
import { GenerationWatch } from '../../recovery/generation-watch.js'
import type { StateStore, StoreEvent, StoreEventHandler, StoreGeneration, StoreStatus } from '../../state/types.js'
import { sleep } from '../helpers/net.js'

/**
 * GenerationWatch's states across a store's drop and return. The moments that matter — the store
 * answers again but the marker's read has not come back, or a read sent before a drop answers
 * after it — cannot be held open on a real Redis (the read is the first command sent after the
 * reconnection), so the store here is a stub whose marker reads the test answers by hand.
 * test/proxy/store-loss.test.ts runs the whole thing on a real Redis.
 */
const tick = (): Promise<void> => new Promise(resolve => setImmediate(resolve))

class StubStore {
  status: StoreStatus = { ok: true }
  private handlers = new Set<StoreEventHandler>()
  /** Marker reads not answered yet, oldest first. */
  pending: Array<{ resolve: (g: StoreGeneration) => void, reject: (e: Error) => void }> = []

  generation (): Promise<StoreGeneration> {
    return new Promise((resolve, reject) => { this.pending.push({ resolve, reject }) })
  }

  answer (g: StoreGeneration): void { this.pending.shift()?.resolve(g) }

  /** Answers the oldest read and lets the watch take the answer in. */
  async answered (g: StoreGeneration): Promise<void> {
    this.answer(g)
    await tick()
    await tick()
  }

  emit (e: StoreEvent): void { for (const h of this.handlers) h(e) }

  drop (): void {
    this.status = { ok: false, reason: 'stub: connection lost' }
    this.emit({ type: 'status', status: this.status })
  }

  back (): void {
    this.status = { ok: true }
    this.emit({ type: 'status', status: this.status })
  }

  asStore (): StateStore {
    return {
      generation: () => this.generation(),
      status: () => this.status,
      subscribe: (h: StoreEventHandler) => { this.handlers.add(h); return () => { this.handlers.delete(h) } }
    } as unknown as StateStore
  }
}

const gen = (id: string, rebuilding = false): StoreGeneration => ({ id, createdAt: Date.now(), rebuilding, rebuiltAt: rebuilding ? null : Date.now() })

t.test('after a drop, no first write is placed until the marker is read on the new connection', async t => {
  const stub = new StubStore()
  const watch = new GenerationWatch(stub.asStore(), { pollMs: 60_000 })
  const started = watch.start()
  stub.answer(gen('g1'))
  await started
  t.equal(watch.recoveringFromLoss, false, 'connected, marker read')

  stub.drop()
  t.equal(watch.recoveringFromLoss, false, 'while the store is down, blocks without a location are routed by hash as before')
  t.equal(watch.generationUnconfirmed, true, 'but a first write\'s claim waits for a read of the marker: commands may work again before status() says so (the subscription is not back)')
  await tick()
  stub.pending.shift()?.reject(new Error('down'))
  await tick()

  stub.back()
  t.equal(watch.recoveringFromLoss, true, 'the store answers again, its marker not read yet: blocks without a location are not placed')
  await tick()
  t.equal(stub.pending.length, 1, 'the marker is read at once')
  await stub.answered(gen('g1'))
  t.equal(watch.recoveringFromLoss, false, 'the same generation: back to normal')
  t.equal(watch.generationUnconfirmed, false)

  // The store came back empty: a new marker, rebuilding.
  stub.drop()
  stub.back()
  await tick()
  await stub.answered(gen('g2', true))
  t.equal(watch.recoveringFromLoss, true, 'a new generation being rebuilt: still recovering')
  watch.close()
})

t.test('a marker read sent before a drop does not confirm the store after it', async t => {
  const stub = new StubStore()
  const watch = new GenerationWatch(stub.asStore(), { pollMs: 60_000 })
  const started = watch.start()
  stub.answer(gen('g1'))
  await started
  const inFlight = watch.check()
  stub.drop()
  stub.back()
  stub.answer(gen('g1'))
  await inFlight
  t.equal(watch.recoveringFromLoss, true, 'answered, but sent before the drop')
  await sleep(80) // the watch reads again (50 ms after a read that proved nothing)
  t.equal(stub.pending.length, 1, 'and reads again')
  await stub.answered(gen('g1'))
  t.equal(watch.recoveringFromLoss, false, 'confirmed by a read sent after it')
  watch.close()
})

t.test('the cache is trusted for cutOffServeMs after the last confirmation, and again after the next', async t => {
  const stub = new StubStore()
  const watch = new GenerationWatch(stub.asStore(), { pollMs: 60_000, cutOffServeMs: 200 })
  t.equal(watch.cacheTrusted(), true, 'no generation known yet: nothing loaded from one to distrust')
  const started = watch.start()
  stub.answer(gen('g1'))
  await started
  t.equal(watch.cacheTrusted(), true)
  stub.drop()
  await sleep(250)
  t.equal(watch.cacheTrusted(), false, 'cut off for longer than cutOffServeMs')
  for (const p of stub.pending.splice(0)) p.reject(new Error('down'))
  await tick()
  stub.back()
  await tick()
  t.equal(watch.cacheTrusted(), false, 'reconnected is not confirmed')
  await stub.answered(gen('g1'))
  t.equal(watch.cacheTrusted(), true, 'confirmed again')
  watch.close()
})
