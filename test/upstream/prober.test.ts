import http from 'node:http'
import t from 'tap'
import { Pool } from 'undici'
import { probeOnce, ProbeState } from '../../upstream/prober.js'
import { freePort } from '../helpers/net.js'

t.test('a probe passes below 500, fails on 5xx, refusal and silence, and never rejects', async t => {
  let status = 200
  let silent = false
  const server = http.createServer((req, res) => { if (!silent) res.writeHead(status).end('x') })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const pool = new Pool(`http://127.0.0.1:${port}`)
  t.teardown(async () => { await pool.destroy(); server.closeAllConnections(); server.close() })

  t.equal(await probeOnce(pool, '/healthz', 1000), null)
  status = 404
  t.equal(await probeOnce(pool, '/healthz', 1000), null, 'a gateway without the path still answers')
  status = 503
  t.equal(await probeOnce(pool, '/healthz', 1000), 'status 503')
  silent = true
  t.match(await probeOnce(pool, '/healthz', 200), /timeout|abort/i, 'a gateway that accepts and never answers fails in time')

  const closed = new Pool(`http://127.0.0.1:${await freePort()}`)
  t.teardown(() => closed.destroy())
  t.equal(await probeOnce(closed, '/healthz', 1000), 'ECONNREFUSED')
})

t.test('the verdict flips only after a run of results (no flapping on one lost probe)', async t => {
  const p = new ProbeState()
  const th = { healthyThreshold: 2, unhealthyThreshold: 3 }
  t.equal(p.up, true, 'starts up')
  t.equal(p.record('ECONNREFUSED', th, 1), false)
  t.equal(p.record(null, th, 2), false, 'a pass resets the failure run')
  t.equal(p.record('x', th, 3), false)
  t.equal(p.record('x', th, 4), false)
  t.equal(p.record('x', th, 5), true, 'third failure in a row: down')
  t.equal(p.up, false)
  t.equal(p.lastError, 'x')
  t.equal(p.lastAt, 5)
  t.equal(p.record('x', th, 6), false, 'already down: no flip')
  t.equal(p.record(null, th, 7), false)
  t.equal(p.record(null, th, 8), true, 'second pass in a row: up')
  t.equal(p.up, true)
  t.equal(p.lastError, null)
})
