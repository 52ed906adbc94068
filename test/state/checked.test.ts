import t from 'tap'
import { createRegistry } from '../../lib/metrics.js'
import type { StoreBackend } from '../../state/backend.js'
import { CheckedStore } from '../../state/checked.js'
import { parseStateConfig } from '../../state/config.js'
import { unavailable } from '../../state/errors.js'
import { StateMetrics } from '../../state/metrics.js'

/**
 * The checked store against a backend that only records what reaches it: refused calls never
 * do, every call is counted once, and a closed store refuses everything.
 */
function recordingBackend (fail?: (op: string) => Error | undefined): { backend: StoreBackend, calls: string[] } {
  const calls: string[] = []
  const limits = parseStateConfig({})
  const backend = new Proxy({ name: 'memory', limits } as unknown as StoreBackend, {
    get (target, prop) {
      if (prop in target) return (target as unknown as Record<string | symbol, unknown>)[prop]
      const op = String(prop)
      if (op === 'scanLocations') return async function * () { calls.push(op); yield * [] }
      if (op === 'status') return () => ({ ok: true })
      return async () => {
        calls.push(op)
        const err = fail?.(op)
        if (err !== undefined) throw err
        return null
      }
    }
  })
  return { backend, calls }
}

async function counted (registry: ReturnType<typeof createRegistry>): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const v of (await registry.getSingleMetric('ferry_state_operations_total')?.get())?.values ?? []) {
    out[`${String(v.labels.op)}:${String(v.labels.result)}`] = v.value
  }
  return out
}

t.test('a refused call never reaches the backend and is counted once as an error', async t => {
  const registry = createRegistry(false)
  const { backend, calls } = recordingBackend()
  const store = new CheckedStore(backend, new StateMetrics(registry, 'memory'))
  await t.rejects(store.getLocation('a{b', 'x'), { code: 'FERRY_STATE_INVALID' })
  await t.rejects(store.casLocation('v', 'b', -1, { gateway: 'gw' }), { code: 'FERRY_STATE_INVALID' })
  await t.rejects(store.mergeAccess([{ volume: 'v', block: 'b', site: 'e u', reads: 1, writes: 0, lastAccessMs: 0 }]), { code: 'FERRY_STATE_INVALID' })
  await t.rejects(store.putSession('s', { bindings: {}, state: { big: 'x'.repeat(20_000) } }, 1000), { code: 'FERRY_STATE_TOO_LARGE' })
  await t.rejects(store.publish('Bad Channel', 1), { code: 'FERRY_STATE_INVALID' })
  t.same(calls, [], 'the backend saw none of them')
  t.same(await counted(registry), { 'getLocation:error': 1, 'casLocation:error': 1, 'mergeAccess:error': 1, 'putSession:error': 1, 'publish:error': 1 })

  await store.getLocation('v', 'b')
  await store.publish('config', 'x')
  for await (const _ of store.scanLocations()) t.fail('nothing to scan')
  t.same(calls, ['getLocation', 'publish', 'scanLocations'], 'valid calls reach it, once each')
  t.match(await counted(registry), { 'getLocation:ok': 1, 'publish:ok': 1, 'scanLocations:ok': 1 })
})

t.test('an unavailable backend is counted as unavailable; a closed store refuses without counting', async t => {
  const registry = createRegistry(false)
  const { backend, calls } = recordingBackend(op => op === 'getSession' ? unavailable('down') : undefined)
  const store = new CheckedStore(backend, new StateMetrics(registry, 'memory'))
  await t.rejects(store.getSession('s'), { code: 'FERRY_STATE_UNAVAILABLE' })
  t.same(await counted(registry), { 'getSession:unavailable': 1 })
  await store.close()
  await store.close()
  t.same(calls, ['getSession', 'close'], 'the backend is closed once')
  await t.rejects(store.getLocation('v', 'b'), { code: 'FERRY_STATE_CLOSED' })
  await t.rejects(async () => { for await (const _ of store.scanAffinity()) t.fail('closed') }, { code: 'FERRY_STATE_CLOSED' })
  t.same(calls, ['getSession', 'close'], 'nothing reaches a closed backend')
  t.same(await counted(registry), { 'getSession:unavailable': 1 })
})
