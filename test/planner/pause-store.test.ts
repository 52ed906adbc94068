import t, { type Test } from 'tap'
import { request } from 'undici'
import { createRegistry } from '../../lib/metrics.js'
import { silentLogger } from '../../lib/log.js'
import { AdminServer } from '../../admin/server.js'
import { registerPlannerAdmin } from '../../planner/admin-routes.js'
import { DATA_MOVEMENT_DOC } from '../../planner/movement-switch.js'
import { createStore } from '../../state/factory.js'
import type { Planner } from '../../planner/planner.js'
import { TEST_ADMIN_TOKEN } from '../helpers/ferry.js'
import { waitFor } from '../helpers/net.js'
import { startRedis } from '../helpers/redis.js'
import { put, rig, waitLeader } from './migration/harness.js'

async function adminFor (t: Test, p: Planner): Promise<string> {
  const admin = new AdminServer({ host: '127.0.0.1', port: 0, registry: createRegistry(false), token: TEST_ADMIN_TOKEN, logger: silentLogger })
  await admin.listen()
  t.teardown(() => admin.close())
  registerPlannerAdmin(admin, p)
  return `http://127.0.0.1:${admin.address?.port ?? 0}`
}

async function post (url: string): Promise<number> {
  const r = await request(url, { method: 'POST', headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })
  await r.body.dump()
  return r.statusCode
}

// The kill switch on Redis, with planners as separate store clients (as separate processes have):
// a pause set through the leader's admin API survives the leader, and one set through a standby
// reaches the leader.
t.test('data-movement pause lives in the store: a new leader honours it', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sa = createStore({ backend: 'redis', url: redis.url })
  const sb = createStore({ backend: 'redis', url: redis.url })
  t.teardown(async () => { await sa.close(); await sb.close() })
  const r = await rig(t, { store: sa })
  const a = await r.planner({ holder: 'a' })
  await waitLeader(a, 5000)
  const adminA = await adminFor(t, a)
  t.equal(await post(`${adminA}/v1/planner/pause`), 202)
  t.match(await sb.getDocument(DATA_MOVEMENT_DOC), { paused: true, by: 'a' }, 'stored')

  const b = await r.planner({ holder: 'b' }, { store: sb })
  await a.kill()
  await waitLeader(b, 15_000)
  t.equal(b.engine.isPaused, true, 'the new leader starts paused')
  const px = await r.proxy()
  t.equal((await put(`${px.url}/v/x`, 'data')).status, 201)
  const where = await waitFor(async () => await sa.getLocation('v', 'x'), 'the block placed', 5000)
  const rec = await b.move({ volume: 'v', block: 'x', to: where?.gateway === 'gw2' ? 'gw3' : 'gw2' })
  await new Promise(resolve => setTimeout(resolve, 1000))
  t.equal((await b.engine.get(rec.migrations[0]?.id as string)).phase, 'queued', 'a move waits in the queue')

  // Resumed through a standby's admin API: the leader takes it from the store at its next tick.
  const c = await r.planner({ holder: 'c' }, { store: sa })
  t.equal(c.engine.isActive, false, 'c stands by')
  const adminC = await adminFor(t, c)
  t.equal(await post(`${adminC}/v1/planner/resume`), 202)
  await waitFor(() => !b.engine.isPaused, 'the leader to resume', 10_000, 50)
  await waitFor(async () => (await b.engine.get(rec.migrations[0]?.id as string)).result === 'ok', 'the queued move to run', 15_000, 100)
  t.pass('the queued move ran once resumed')
})
