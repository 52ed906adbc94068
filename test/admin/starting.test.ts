/**
 * The admin listener binds before the roles register their routes (bin/node.ts start()). A call
 * in that window once got 404 "no admin endpoint" — the fault suite's POST /v1/migrations to a
 * planner that had just started — which a client takes for "this endpoint does not exist". It
 * must hear "retry" instead, and /readyz must not call the process ready meanwhile.
 */
import t from 'tap'
import { request } from 'undici'
import { AdminServer } from '../../admin/server.js'
import { silentLogger } from '../../lib/log.js'
import { createRegistry } from '../../lib/metrics.js'
import { TEST_ADMIN_TOKEN } from '../helpers/ferry.js'

t.test('a route not registered yet answers 503 FERRY_STARTING while the process starts, then 404 once started', async t => {
  const admin = new AdminServer({ host: '127.0.0.1', port: 0, registry: createRegistry(false), token: TEST_ADMIN_TOKEN, logger: silentLogger })
  admin.beginStart()
  const { port } = await admin.listen()
  t.teardown(() => admin.close())
  const base = `http://127.0.0.1:${port}`
  const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }

  const live = await request(`${base}/healthz`)
  t.equal(live.statusCode, 200, 'liveness answers at once')
  await live.body.dump()

  const early = await request(`${base}/v1/migrations`, { method: 'POST', headers: auth, body: '{}' })
  t.equal(early.statusCode, 503)
  t.equal(early.headers['retry-after'], '1')
  t.equal((await early.body.json() as { error: { code: string } }).error.code, 'FERRY_STARTING')

  const ready = await request(`${base}/readyz`)
  t.equal(ready.statusCode, 503, 'not ready while starting')
  t.match(await ready.body.json(), { status: 'not ready', reasons: [/starting/] })

  admin.route('POST', '/v1/migrations', () => ({ id: 'm1' }))
  admin.finishStart()

  const served = await request(`${base}/v1/migrations`, { method: 'POST', headers: auth, body: '{}' })
  t.equal(served.statusCode, 202)
  t.same(await served.body.json(), { id: 'm1' })
  const after = await request(`${base}/readyz`)
  t.equal(after.statusCode, 200)
  await after.body.dump()
  const missing = await request(`${base}/v1/nothing-here`)
  t.equal(missing.statusCode, 404, 'a path no role serves is a 404 once started')
  t.equal((await missing.body.json() as { error: { code: string } }).error.code, 'FERRY_NOT_FOUND')
})
