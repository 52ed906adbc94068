import t from 'tap'
import { randomBytes } from 'node:crypto'
import { request } from 'undici'
import { FerryError } from '../../lib/errors.js'
import { createRegistry } from '../../lib/metrics.js'
import { silentLogger } from '../../lib/log.js'
import { Planner } from '../../planner/planner.js'
import { parsePlannerConfig } from '../../planner/config.js'
import { AdminServer } from '../../admin/server.js'
import { registerPlannerAdmin } from '../../planner/admin-routes.js'
import { createStore, waitForReady } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { TEST_ADMIN_TOKEN } from '../helpers/ferry.js'
import { sleep, waitFor } from '../helpers/net.js'
import { startRedis } from '../helpers/redis.js'
import { get, put, rig, testPlannerConfig, waitEnded, waitLeader } from './migration/harness.js'

t.test('config: defaults, and the rules that span keys', async t => {
  const cfg = parsePlannerConfig(undefined)
  t.equal(cfg.lease.ttlMs, 10_000)
  t.throws(() => parsePlannerConfig({ lease: { ttlMs: 1000, renewIntervalMs: 800 } }), /renewIntervalMs/)
  t.throws(() => parsePlannerConfig({ migration: { settleMs: 2000, copyTimeoutMs: 1000 } }), /settleMs/)
  t.throws(() => parsePlannerConfig({ rebalancer: { margni: 0.2 } }), /margni/, 'unknown keys are refused')
})

t.test('two planners on one store: exactly one acts', async t => {
  const r = await rig(t)
  const a = await r.planner({ holder: 'a' })
  const b = await r.planner({ holder: 'b' })
  await waitFor(() => a.engine.isActive || b.engine.isActive, 'a leader')
  for (let i = 0; i < 20; i++) {
    t.equal(Number(a.engine.isActive) + Number(b.engine.isActive), 1, 'one leader at a time')
    await sleep(50)
  }
  const [leader, standby] = a.engine.isActive ? [a, b] : [b, a]
  await t.rejects(standby.move({ volume: 'v', block: 'x', to: 'gw1' }), { code: 'FERRY_PLANNER_NOT_LEADER', statusCode: 503 })
  // A graceful stop hands the lease over at once, not after the TTL.
  const stopped = Date.now()
  await leader.stop()
  await waitLeader(standby, 600)
  t.ok(Date.now() - stopped < 600, `taken over in ${Date.now() - stopped} ms`)
})

t.test('a drain lives in the store: a new leader carries it on, and any planner can end it', async t => {
  const r = await rig(t)
  const a = await r.planner({ holder: 'a' })
  await waitLeader(a, 5000)
  // Nothing is placed on gw1, so no move is running when the leader dies: a drain read back from
  // the moves in flight (as before) was lost here, and gw1 took new blocks again.
  const status = await a.drain('gw1')
  t.match(status, { gateway: 'gw1', cause: 'operator', state: 'drained' })
  t.same((await r.store.listDrains()).map(d => ({ gateway: d.gateway, cause: d.cause, to: d.to })), [{ gateway: 'gw1', cause: 'operator', to: null }])

  const b = await r.planner({ holder: 'b' })
  await a.kill()
  await waitLeader(b, 10_000)
  t.match(b.drainStatus('gw1'), { gateway: 'gw1', cause: 'operator', startedAt: status.startedAt }, 'the new leader has the drain')
  await t.rejects(b.move({ volume: 'v', block: 'x', to: 'gw1' }), { code: 'FERRY_TARGET_UNAVAILABLE' }, 'and gw1 is still no target')

  const c = await r.planner({ holder: 'c' })
  t.equal(c.engine.isActive, false, 'c stands by')
  t.equal(await c.undrain('gw1'), true, 'a standby ends the drain in the store')
  await waitFor(() => b.drainStatus('gw1') === undefined, 'the leader to lift it at its next tick', 5000)
  await b.move({ volume: 'v', block: 'x', to: 'gw1' }).catch((err: FerryError) => { t.not(err.code, 'FERRY_TARGET_UNAVAILABLE', 'gw1 is a target again') })
  t.same(await r.store.listDrains(), [])
})

/**
 * A store that can be cut off from one planner's lease renewals (the planner pauses, or its
 * link to the store fails) while everything else keeps working.
 */
function partitionable (store: StateStore): { store: StateStore, cut: () => void } {
  let cut = false
  const wrapped = new Proxy(store, {
    get (target, prop, receiver) {
      if (prop === 'renewLease' || prop === 'acquireLease') {
        return async (...args: unknown[]) => {
          if (cut) throw new FerryError('FERRY_STATE_UNAVAILABLE', 'state store unavailable: partitioned by the test', 503)
          return await (target[prop] as (...a: unknown[]) => Promise<unknown>).apply(target, args)
        }
      }
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
  return { store: wrapped, cut: () => { cut = true } }
}

t.test('leader election on Redis: a partitioned leader stops before its successor starts; its late writes are refused', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // Two store clients, as two planner processes would have.
  const sa = createStore({ backend: 'redis', url: redis.url })
  const sb = createStore({ backend: 'redis', url: redis.url })
  t.teardown(() => sa.close())
  t.teardown(() => sb.close())
  t.ok(await waitForReady(sa) && await waitForReady(sb))
  const r = await rig(t, { store: sb })
  const pa = partitionable(sa)
  // Slow enough that the copy cannot finish within the lease TTL (2 s) after the cut: the old
  // leader stands down mid-copy, so its successor must recover the copy (the take-over after a
  // flip is tested in migration/failures.test.ts).
  const slow = { bandwidthBytesPerSec: 250_000, burstBytes: 64 * 1024 }
  const a = await r.planner({ holder: 'a', migration: slow }, { store: pa.store })
  await waitLeader(a)
  const b = await r.planner({ holder: 'b', migration: slow })
  await sleep(400)
  t.notOk(b.engine.isActive, 'the standby waits while the leader renews')

  // A migration under way when the leader is cut off.
  const [gw1] = r.gws.urls as [string]
  await put(`${gw1}/v/m`, randomBytes(1_000_000))
  await r.store.casLocation('v', 'm', 0, { gateway: 'gw1' })
  const { migrations } = await a.move({ volume: 'v', block: 'm', to: 'gw2' })
  const id = migrations[0]!.id
  await waitFor(async () => ((await a.engine.get(id)).progress?.bytes ?? 0) > 100_000, 'the copy to be under way')
  const oldFence = a.leader.fence()!
  let deposedAt = 0
  let electedAt = 0
  a.leader.once('deposed', () => { deposedAt = performance.now() })
  b.leader.once('elected', () => { electedAt = performance.now() })
  pa.cut()

  await waitLeader(b, 5000)
  // The same moment on the wall clock the store's history uses.
  const electedWall = Date.now() - (performance.now() - electedAt)
  t.ok(deposedAt > 0 && deposedAt < electedAt, `the old leader stood down ${(electedAt - deposedAt).toFixed(0)} ms before the new one was elected`)
  t.notOk(a.engine.isActive, 'the old leader\'s engine stopped')
  t.ok(b.leader.fence()!.token > oldFence.token, 'the new token is higher')

  const late = await sa.casLocation('v', 'm', (await sa.getLocation('v', 'm'))!.epoch, { gateway: 'gw3' }, { fence: oldFence, reason: 'late write' })
  t.match(late, { ok: false, reason: 'fenced' }, 'a late compare-and-set with the old token is refused')
  const lateDelete = await sa.deleteLocation('v', 'm', undefined, { fence: oldFence })
  t.match(lateDelete, { ok: false, reason: 'fenced' }, 'so is a late delete')

  const rec = await waitEnded(b, id, 15_000)
  t.equal(rec.result, 'ok', `the new leader finished the migration (${rec.error})`)
  const history = await r.store.blockHistory('v', 'm')
  t.notOk(history.some(h => h.reason === `migration:${id}:rollback`), 'the deposed leader rolled nothing back itself')
  t.notOk(history.some(h => h.reason === `migration:${id}:in-sync` && h.at <= electedWall), 'the old leader did not mark the target in sync before it stood down')
  t.ok(history.some(h => h.reason === `migration:${id}:recover`), 'its successor recovered the interrupted copy (took the joiner out, copied again)')
  t.match(await r.store.getLocation('v', 'm'), { gateway: 'gw2', phase: 'stable' })
})

// JSON answers are checked with t.match against their documented shape, not by the compiler.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any

t.test('operator API: auth, validation, moves with progress, history, drain', async t => {
  const r = await rig(t)
  const admin = new AdminServer({ host: '127.0.0.1', port: 0, registry: createRegistry(false), token: TEST_ADMIN_TOKEN, logger: silentLogger })
  await admin.listen()
  t.teardown(() => admin.close())
  const p = new Planner({
    config: { gateways: r.config.gateways, sites: r.config.sites, planner: testPlannerConfig(), state: r.config.state },
    store: r.store
  })
  registerPlannerAdmin(admin, p)
  await p.start()
  t.teardown(() => p.stop())
  await waitLeader(p)
  const base = `http://127.0.0.1:${admin.address.port}`
  const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }
  const call = async (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, headers: Record<string, string> = auth): Promise<{ status: number, json: Json }> => {
    const res = await request(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    return { status: res.statusCode, json: await res.body.json() as Json }
  }

  const proxy = await r.proxy()
  for (let i = 0; i < 6; i++) t.equal((await put(`${proxy.url}/vol/b${i}`, `content ${i}`)).status, 201)
  await waitFor(() => [0, 1, 2, 3, 4, 5].every(i => p.locations.get('vol', `b${i}`) != null), 'locations')

  t.equal((await call('POST', '/v1/migrations', { volume: 'vol', block: 'b0', to: 'gw2' }, { 'content-type': 'application/json' })).status, 401, 'no token: 401')
  t.equal((await call('POST', '/v1/migrations', { volume: 'vol', block: 'b0', to: 'gw2' }, { ...auth, authorization: 'Bearer wrong-token-wrong-token' })).status, 401, 'wrong token: 401')
  for (const bad of [{}, { volume: '../etc' }, { volume: 'vol', to: 5 }, { volume: 'vol', extra: true }, []]) {
    const res = await call('POST', '/v1/migrations', bad)
    t.equal(res.status, 400, `bad body ${JSON.stringify(bad)}: 400`)
    t.equal(res.json.error.code, 'FERRY_PLANNER_BAD_REQUEST')
  }
  t.match(await call('POST', '/v1/migrations', { volume: 'vol', block: 'b0', to: 'gw9' }), { status: 404, json: { error: { code: 'FERRY_UNKNOWN_GATEWAY' } } })
  t.match(await call('POST', '/v1/migrations', { volume: 'nothing' }), { status: 404, json: { error: { code: 'FERRY_BLOCK_NOT_FOUND' } } })
  t.match(await call('POST', '/v1/gateways/gw9/drain', {}), { status: 404, json: { error: { code: 'FERRY_UNKNOWN_GATEWAY' } } })
  t.match(await call('GET', '/v1/migrations?limit=abc'), { status: 400, json: { error: { code: 'FERRY_PLANNER_BAD_REQUEST' } } })

  const b0 = p.locations.get('vol', 'b0')!.gateway
  const to = b0 === 'gw2' ? 'gw3' : 'gw2'
  const moved = await call('POST', '/v1/migrations', { volume: 'vol', block: 'b0', to })
  t.equal(moved.status, 202)
  const id = moved.json.migrations[0].id as string
  t.match(await call('POST', '/v1/migrations', { volume: 'vol', block: 'b0', to: b0 }), { status: 409, json: { error: { code: 'FERRY_BLOCK_BUSY' } } })
  await waitEnded(p, id)
  const one = await call('GET', `/v1/migrations/${id}`)
  t.match(one, { status: 200, json: { id, volume: 'vol', block: 'b0', from: b0, to, result: 'ok', phase: 'done', bytes: 'content 0'.length } })
  t.match(await call('GET', '/v1/migrations/m-nope'), { status: 404, json: { error: { code: 'FERRY_MIGRATION_NOT_FOUND' } } })
  const hist = await call('GET', '/v1/blocks/vol/b0/history')
  t.equal(hist.status, 200)
  // (The proxy's record of the first write's version, `write`, lands whenever its flush runs.)
  t.same(hist.json.history.filter((h: { reason: string }) => h.reason !== 'write').map((h: { reason: string }) => h.reason.replace(/^migration:[^:]+:/, '')), ['first-write', 'join', 'in-sync', 'leave', 'remove'], 'per-block version history: the membership change step by step')
  t.ok(hist.json.history.every((h: { epoch: number }, i: number, all: Array<{ epoch: number }>) => i === 0 || h.epoch >= all[i - 1]!.epoch), 'oldest first')
  t.match(hist.json.location, { gateway: to, phase: 'stable' })
  const list = await call('GET', '/v1/migrations')
  t.ok(list.json.migrations.some((m: { id: string }) => m.id === id), 'listed')

  // Drain: everything off gw1, visible with progress, and gw1 receives nothing meanwhile.
  const drained = await call('POST', '/v1/gateways/gw1/drain', {})
  t.equal(drained.status, 202)
  t.match(drained.json, { gateway: 'gw1', state: /draining|drained/ })
  await waitFor(async () => (await call('GET', '/v1/gateways/gw1/drain')).json.state === 'drained', 'the drain to finish', 15_000)
  const status = (await call('GET', '/v1/gateways/gw1/drain')).json
  t.match(status, { remaining: 0, migrations: { failed: 0, active: 0 } })
  t.equal(status.migrations.ok, status.migrations.started)
  for (let i = 0; i < 6; i++) {
    t.not(p.locations.get('vol', `b${i}`)?.gateway, 'gw1', `b${i} is off gw1`)
    t.equal((await get(`${proxy.url}/vol/b${i}`)).body, `content ${i}`, `b${i} reads the same through the proxy`)
  }
  t.match(await call('POST', '/v1/migrations', { volume: 'vol', block: 'b1', to: 'gw1' }), { status: 409, json: { error: { code: 'FERRY_TARGET_UNAVAILABLE' } } }, 'a draining gateway is no target')
  t.equal((await call('DELETE', '/v1/gateways/gw1/drain')).json.wasDraining, true)

  // A whole volume, each block to its best gateway (no affinity yet: spread like hashing).
  const vol = await call('POST', '/v1/migrations', { volume: 'vol' })
  t.equal(vol.status, 202)
  t.equal(vol.json.migrations.length + vol.json.skipped.length, 6, 'every block of the volume was considered')
  for (const m of vol.json.migrations) await waitEnded(p, m.id)
  const planner = (await call('GET', '/v1/planner')).json
  t.match(planner, { leader: true, migrations: { running: 0, queued: 0 } })
})

t.test('gateway health: the proxies\' reports and the planner\'s own probes', async t => {
  const r = await rig(t)
  const p = await r.planner({ health: { reportTtlMs: 400, probeIntervalMs: 100, probeTimeoutMs: 200, unhealthyThreshold: 2 } })
  await waitLeader(p)
  t.ok(p.fleet.isTarget('gw2'))
  await r.store.publish('gateway-health', { gateway: 'gw2', healthy: false, at: Date.now(), from: 'proxy-1' })
  t.notOk(p.fleet.isHealthy('gw2'), 'a proxy\'s "down" report takes a gateway out at once')
  await t.rejects(p.move({ volume: 'v', block: 'b', to: 'gw2' }), { code: 'FERRY_TARGET_UNAVAILABLE' })
  await r.store.publish('gateway-health', { gateway: 'gw2', healthy: true, at: Date.now(), from: 'proxy-1' })
  t.ok(p.fleet.isHealthy('gw2'), 'and the same proxy\'s "up" brings it back')
  await r.store.publish('gateway-health', { gateway: 'gw2', healthy: false, at: Date.now(), from: 'proxy-2' })
  await r.store.publish('gateway-health', { gateway: 'gw9', healthy: false, at: Date.now(), from: 'proxy-2' })
  await r.store.publish('gateway-health', { nonsense: true })
  t.notOk(p.fleet.isHealthy('gw2'))
  await waitFor(() => p.fleet.isHealthy('gw2'), 'the report of a proxy that went quiet to expire', 2000)
  await r.gws.gateways[2]!.kill()
  await waitFor(() => !p.fleet.isHealthy('gw3'), 'the planner\'s probes to see gw3 down', 3000)
  t.match(p.status(), { gateways: [{ id: 'gw1', healthy: true }, { id: 'gw2', healthy: true }, { id: 'gw3', healthy: false, probe: { up: false } }] })
  await r.gws.gateways[2]!.start()
  await waitFor(() => p.fleet.isHealthy('gw3'), 'gw3 back', 3000)
})
