import t from 'tap'
import { request } from 'undici'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { startGateways } from '../helpers/gateway.js'

// Found by the fleet fault suite (test/fault/fleet.test.ts): a failing gateway's own 503 reached
// clients without Retry-After, the one thing a client needs from a 503 to back off properly.
t.test('a gateway\'s own 503 is relayed with its body and a Retry-After', async t => {
  const gws = await startGateways(1, { faults: { errorRate: 1 } })
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls))
  t.teardown(p.stop)

  for (const method of ['GET', 'PUT'] as const) {
    const r = await request(`${p.url}/v/b`, { method, ...(method === 'PUT' ? { body: 'x' } : {}) })
    const body = await r.body.json() as { error?: { code?: string } }
    t.equal(r.statusCode, 503, `${method}: the gateway's status`)
    t.equal(body.error?.code, 'FAULT_INJECTED', `${method}: the gateway's body`)
    t.equal(r.headers['retry-after'], '1', `${method}: with Retry-After`)
  }
})
