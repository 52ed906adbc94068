import t from 'tap'
import { request } from 'undici'
import { startGateways } from '../helpers/gateway.js'
import { collectEscapes, startProxy, testConfig } from '../helpers/ferry.js'
import { signedHeaders } from '../helpers/s3.js'

/**
 * Authentication failures are rate-limited per client address: past s3.authFailures.limit
 * failures within the window, every signed request from that address is 503 SlowDown with
 * Retry-After — even a correctly signed one — while other addresses are served; after the window
 * the address is served again. Real proxy and gateways; client addresses through X-Forwarded-For
 * from the trusted 127.0.0.1.
 */

const escaped = collectEscapes(t)
const gws = await startGateways(2)
t.teardown(gws.stopAll)
const KEY = { accessKeyId: 'limit-key', secret: 'limit-secret-0123' }
const p = await startProxy(testConfig(gws.urls, { s3: { credentials: [{ ...KEY, volumes: ['*'] }], authFailures: { limit: 5, windowMs: 3000 } } }))
t.teardown(p.stop)
const host = new URL(p.url).host

async function get (from: string, secret: string): Promise<{ status: number, code: string | undefined, retryAfter: unknown }> {
  const url = '/lim/obj'
  const r = await request(p.url + url, { headers: { ...signedHeaders({ method: 'GET', url, host, accessKeyId: KEY.accessKeyId, secret }), 'x-forwarded-for': from } })
  const text = await r.body.text()
  return { status: r.statusCode, code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1], retryAfter: r.headers['retry-after'] }
}

t.test('a client past its failure limit is slowed down; others are not', async t => {
  const put = await request(`${p.url}/lim/obj`, { method: 'PUT', body: 'limited', headers: signedHeaders({ method: 'PUT', url: '/lim/obj', host, ...KEY, body: 'limited' }) })
  await put.body.dump()
  t.equal(put.statusCode, 200, 'a signed PUT')
  for (let i = 0; i < 5; i++) {
    const r = await get('127.0.2.9', 'a-wrong-secret-000')
    t.same([r.status, r.code], [403, 'SignatureDoesNotMatch'], `failure ${i + 1} is SignatureDoesNotMatch`)
  }
  const wrong = await get('127.0.2.9', 'a-wrong-secret-000')
  t.same([wrong.status, wrong.code], [503, 'SlowDown'], 'the next one is SlowDown')
  t.ok(Number(wrong.retryAfter) >= 1, 'with Retry-After')
  const right = await get('127.0.2.9', KEY.secret)
  t.same([right.status, right.code], [503, 'SlowDown'], 'a correct signature from that address too, until the window ends')
  const other = await get('127.0.1.7', KEY.secret)
  t.equal(other.status, 200, 'another address is served')
  const metrics = await request(`${p.adminUrl}/metrics`)
  const text = await metrics.body.text()
  t.match(text, /ferry_s3_auth_rate_limited_total \d*[1-9]/, 'counted in ferry_s3_auth_rate_limited_total')
  t.match(text, /ferry_s3_auth_failures_total\{code="SignatureDoesNotMatch"\} 5/, 'the failures counted by code')
  await new Promise(resolve => setTimeout(resolve, 3200))
  const later = await get('127.0.2.9', KEY.secret)
  t.equal(later.status, 200, 'after the window the address is served again')
  t.same(escaped, [], 'no uncaught exception')
})
