import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { signedHeaders } from '../helpers/s3.js'

/**
 * The access recorder's log names who made each request (the seed's AccessLogEntry.user_id):
 * the access key that signed an S3 request, null for an anonymous one. Real proxy and gateway.
 */
t.test('the access log records the S3 access key as the user', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-s3-log-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const log = path.join(dir, 'access.jsonl')
  const KEY = { accessKeyId: 'alice-key', secret: 'alice-secret-0123' }
  const p = await startProxy(testConfig(gws.urls, { recorder: { accessLog: log }, s3: { credentials: [{ ...KEY, volumes: ['*'] }], anonymous: ['open'] } }))
  t.teardown(p.stop)
  const host = new URL(p.url).host
  const put = await request(`${p.url}/logged/dir/obj`, { method: 'PUT', body: 'by alice', headers: signedHeaders({ method: 'PUT', url: '/logged/dir/obj', host, ...KEY, body: 'by alice' }) })
  t.equal(put.statusCode, 200, 'a signed PUT')
  await put.body.dump()
  const get = await request(`${p.url}/logged/dir/obj`, { headers: signedHeaders({ method: 'GET', url: '/logged/dir/obj', host, ...KEY }) })
  t.equal(await get.body.text(), 'by alice', 'a signed GET')
  const anon = await request(`${p.url}/open/blk`, { method: 'PUT', body: 'anyone' })
  t.equal(anon.statusCode, 201, 'an anonymous PUT of the plain API on an open volume')
  await anon.body.dump()
  await p.stop()
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
  t.equal(lines.length, 3, 'one line per request')
  t.match(lines[0], { user: 'alice-key', volume: 'logged', op: 'write' }, 'the signed PUT: its access key')
  t.match(lines[1], { user: 'alice-key', volume: 'logged', op: 'read', status: 200 }, 'the signed GET: its access key')
  t.match(lines[2], { user: null, volume: 'open', block: 'blk', op: 'write' }, 'the anonymous PUT: no user')
})
