import t, { type Test } from 'tap'
import net from 'node:net'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import { request } from 'undici'
import type { ReferenceGateway } from '../../gateway/gateway.js'
import { sleep, waitFor } from '../helpers/net.js'
import { errorCode, openFds, raw, startGateways, tempFiles } from '../helpers/gateway.js'

const LIMIT = 256 * 1024

async function one (t: Test, opts = {}): Promise<ReferenceGateway> {
  const g = await startGateways(1, { maxBlockBytes: LIMIT, ...opts })
  t.teardown(g.stopAll)
  return g.gateways[0] as ReferenceGateway
}


t.test('traversal and malformed paths are a clear 400', async t => {
  const gw = await one(t)
  const cases: Array<[string, string]> = [
    ['/../x', 'INVALID_VOLUME_ID'],
    ['/%2e%2e/x', 'INVALID_VOLUME_ID'],
    ['/a/..%2fb', 'INVALID_BLOCK_ID'],
    ['/a/%2e%2e%2f%2e%2e%2fetc%2fpasswd', 'INVALID_BLOCK_ID'],
    ['/a/..', 'INVALID_BLOCK_ID'],
    ['/.tmp/x', 'INVALID_VOLUME_ID'],
    ['/a/.hidden', 'INVALID_BLOCK_ID'],
    ['/a/' + 'b'.repeat(129), 'INVALID_BLOCK_ID'],
    ['/' + 'v'.repeat(129) + '/b', 'INVALID_VOLUME_ID'],
    ['//b', 'INVALID_VOLUME_ID'],
    ['/a/', 'INVALID_BLOCK_ID'],
    ['/a/b/c', 'INVALID_PATH'],
    ['/a/b/', 'INVALID_PATH'],
    ['/../../etc/passwd', 'INVALID_PATH'],
    ['/a\\b/c', 'INVALID_VOLUME_ID'],
    ['http://evil/a/b', 'INVALID_PATH'],
    ['*', 'INVALID_PATH']
  ]
  for (const [target, code] of cases) {
    for (const method of ['GET', 'PUT']) {
      const body = method === 'PUT' ? 'content-length: 3\r\n\r\nabc' : '\r\n'
      const reply = await raw(gw.port, `${method} ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n${body}`)
      t.equal(reply.status, 400, `${method} ${target} → 400`)
      t.equal(errorCode(reply), code, `${method} ${target} → ${code}`)
      t.match(reply.text, /content-type: application\/json/i)
    }
  }
  t.notOk(existsSync(path.join(gw.dir, '..', 'x')), 'nothing written outside the directory')
  const unknown = await request(`${gw.url}/nope`)
  t.equal(unknown.statusCode, 404, 'an unknown single-segment path is a 404')
  await unknown.body.dump()
  const post = await request(`${gw.url}/a/b`, { method: 'POST', body: 'x' })
  t.equal(post.statusCode, 405)
  t.equal(post.headers.allow, 'GET, HEAD, PUT, DELETE')
  await post.body.dump()
})

t.test('raw garbage gets a 400 and the gateway keeps serving', async t => {
  const gw = await one(t)
  const garbage = [
    'GARBAGE\r\n\r\n',
    'GET /a/b HTTP/9.9\r\n\r\n',
    'GET /a/b HTTP/1.1\r\nno colon here\r\n\r\n',
    'PUT /a/b HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n',
    // Both framings at once is the request-smuggling shape; it must never be guessed at.
    'PUT /a/b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    'PUT /a/b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n',
    '\x00\x01\x02\xff\xfe binary\r\n\r\n'
  ]
  for (const g of garbage) {
    const reply = await raw(gw.port, g)
    t.equal(reply.status, 400, `400 for ${JSON.stringify(g.slice(0, 40))}`)
    t.equal(errorCode(reply), 'BAD_REQUEST')
    t.ok(reply.closed, 'and the connection is closed')
  }
  const huge = await raw(gw.port, `GET /a/b HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(64 * 1024)}\r\n\r\n`)
  t.equal(huge.status, 431, 'oversized headers → 431')
  t.notOk(existsSync(path.join(gw.dir, 'a', 'b')), 'no block was created')
  const h = await request(`${gw.url}/healthz`)
  t.equal(h.statusCode, 200, 'still healthy')
  await h.body.dump()
})

t.test('413 on Content-Length, before the body is read', async t => {
  const gw = await one(t)
  // Headers only: the gateway must answer without waiting for a body that never comes.
  const reply = await raw(gw.port, `PUT /v/big HTTP/1.1\r\nhost: x\r\ncontent-length: ${LIMIT + 1}\r\n\r\n`, 2000)
  t.equal(reply.status, 413)
  t.equal(errorCode(reply), 'PAYLOAD_TOO_LARGE')
  t.ok(reply.closed, 'connection closed rather than draining the body')

  const cont = await raw(gw.port, `PUT /v/big HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: ${LIMIT + 1}\r\n\r\n`, 2000)
  t.equal(cont.status, 413, 'Expect: 100-continue gets the 413 instead of a 100')
  t.notMatch(cont.text, /100 Continue/)

  const viaClient = await request(`${gw.url}/v/big`, { method: 'PUT', body: Buffer.alloc(LIMIT * 4) })
  t.equal(viaClient.statusCode, 413, 'a client sending the body anyway sees the 413')
  await viaClient.body.dump()
  t.notOk(existsSync(path.join(gw.dir, 'v', 'big')))

  const exact = await request(`${gw.url}/v/exact`, { method: 'PUT', body: Buffer.alloc(LIMIT) })
  t.equal(exact.statusCode, 201, 'exactly the limit is accepted')
  await exact.body.dump()
})

t.test('413 mid-stream for a chunked body, temp file removed', async t => {
  const gw = await one(t)
  async function * chunks (): AsyncGenerator<Buffer> {
    for (let i = 0; i < 64; i++) yield Buffer.alloc(16 * 1024, i)
  }
  const r = await request(`${gw.url}/v/chunked`, { method: 'PUT', body: Readable.from(chunks()) })
  t.equal(r.statusCode, 413)
  t.equal(((await r.body.json()) as { error: { code: string } }).error.code, 'PAYLOAD_TOO_LARGE')
  t.same(await tempFiles(gw.dir), [], 'temp file removed')
  t.notOk(existsSync(path.join(gw.dir, 'v', 'chunked')), 'no block')

  const ok = await request(`${gw.url}/v/chunked`, { method: 'PUT', body: Readable.from([Buffer.alloc(1000), Buffer.alloc(1000)]) })
  t.equal(ok.statusCode, 201, 'a chunked body under the limit is stored')
  await ok.body.dump()
})

t.test('Expect: 100-continue on an acceptable upload', async t => {
  const gw = await one(t)
  const socket = net.connect(gw.port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  let text = ''
  socket.setEncoding('latin1').on('data', (s: string) => { text += s })
  socket.write('PUT /v/cont HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\nconnection: close\r\n\r\n')
  await waitFor(() => text.includes('100 Continue'), '100 Continue')
  socket.write('hello')
  await waitFor(() => /HTTP\/1\.1 201/.test(text), '201 after the body')
})

t.test('client abort mid-upload: no temp file, no block, no leaked fd', async t => {
  const gw = await one(t, { maxBlockBytes: 64 * 1024 * 1024 })
  const before = await openFds()
  const socket = net.connect(gw.port, '127.0.0.1')
  await new Promise(resolve => socket.once('connect', resolve))
  socket.write(`PUT /v/aborted HTTP/1.1\r\nhost: x\r\ncontent-length: ${8 * 1024 * 1024}\r\n\r\n`)
  socket.write(Buffer.alloc(512 * 1024, 7))
  await waitFor(async () => (await tempFiles(gw.dir)).length === 1, 'the upload to reach disk')
  socket.destroy()
  await waitFor(async () => (await tempFiles(gw.dir)).length === 0, 'the temp file to be removed')
  t.notOk(existsSync(path.join(gw.dir, 'v', 'aborted')), 'no partial block visible')
  // The temp file, the server's socket and ours: all must be released.
  await waitFor(async () => (await openFds()) <= before, 'fds released')
  const r = await request(`${gw.url}/v/aborted`)
  t.equal(r.statusCode, 404)
  await r.body.dump()
  const m = await request(`${gw.url}/metrics`)
  t.match(await m.body.text(), /ferry_gateway_requests_total\{gateway="gw1",method="PUT",status="aborted"\} 1/, 'counted as aborted')
})

t.test('slow clients are cut off', async t => {
  const gw = await one(t, { headersTimeoutMs: 300, keepAliveTimeoutMs: 200 })
  // Slowloris: a request line and then nothing.
  const started = Date.now()
  const slow = await raw(gw.port, 'GET /v/b HTTP/1.1\r\nhost: x\r\n', 5000)
  t.ok(slow.closed, 'headers timeout closes the connection')
  t.equal(slow.status, 408)
  t.ok(Date.now() - started < 4000, 'well before our own give-up time')

  // An idle keep-alive connection is closed after keepAliveTimeoutMs.
  const idle = await raw(gw.port, 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n', 5000)
  t.equal(idle.status, 200)
  t.ok(idle.closed, 'idle keep-alive connection closed by the gateway')
})

t.test('a body that stops arriving is cut off by the request timeout', async t => {
  const gw = await one(t, { headersTimeoutMs: 200, requestTimeoutMs: 400 })
  const socket = net.connect(gw.port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await new Promise(resolve => socket.once('connect', resolve))
  const closed = new Promise(resolve => socket.once('close', resolve))
  socket.on('error', () => {})
  socket.resume() // a paused socket would never see the server's FIN
  socket.write('PUT /v/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc')
  await Promise.race([closed, sleep(4000).then(() => { throw new Error('not cut off') })])
  t.pass('connection closed')
  await waitFor(async () => (await tempFiles(gw.dir)).length === 0, 'the temp file to be removed')
  t.notOk(existsSync(path.join(gw.dir, 'v', 'slow')))
})
