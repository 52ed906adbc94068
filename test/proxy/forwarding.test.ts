import t from 'tap'
import http from 'node:http'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type net from 'node:net'
import { Readable } from 'node:stream'
import { rawRequest } from '../helpers/http.js'
import { request } from 'undici'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'

t.test('PUT then GET through the proxy returns the same bytes and ETag', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls))
  t.teardown(p.stop)

  const body = Buffer.alloc(100_000)
  for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff
  const put = await request(`${p.url}/vol1/blk-a`, { method: 'PUT', body })
  t.equal(put.statusCode, 201)
  const putTag = put.headers.etag
  await put.body.dump()
  t.match(putTag, /^"[0-9a-f]+"$/)

  const get = await request(`${p.url}/vol1/blk-a`)
  t.equal(get.statusCode, 200)
  t.equal(get.headers.etag, putTag, 'same ETag on read')
  t.equal(get.headers.via, '1.1 ferry')
  t.same(Buffer.from(await get.body.arrayBuffer()), body, 'same bytes')

  const head = await request(`${p.url}/vol1/blk-a`, { method: 'HEAD' })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-length'], String(body.length))
  await head.body.dump()

  const cond = await request(`${p.url}/vol1/blk-a`, { headers: { 'if-none-match': putTag as string } })
  t.equal(cond.statusCode, 304, 'conditional GET passes through')
  await cond.body.dump()

  const createOnly = await request(`${p.url}/vol1/blk-a`, { method: 'PUT', body: 'x', headers: { 'if-none-match': '*' } })
  t.equal(createOnly.statusCode, 412, 'If-None-Match: * refuses to overwrite')
  await createOnly.body.dump()

  const del = await request(`${p.url}/vol1/blk-a`, { method: 'DELETE' })
  t.equal(del.statusCode, 204, 'the reference gateway answers a DELETE with 204')
  await del.body.dump()
  const gone = await request(`${p.url}/vol1/blk-a`)
  t.equal(gone.statusCode, 404)
  await gone.body.dump()

  // The first write recorded the block's location (the gateway rendezvous hashing picked), so
  // every proxy sends later requests for it to the same gateway.
  const block = await request(`${p.adminUrl}/v1/blocks/vol1/blk-a`)
  const info = await block.body.json() as { location: { gateway: string, placed: boolean, epoch: number }, access: { reads: number, writes: number } }
  t.equal(info.location.placed, true)
  t.equal(info.location.epoch, 1)
  t.match(info.location.gateway, /^gw[123]$/)
  t.equal(info.access.writes, 3, 'two PUTs and a DELETE recorded as writes')
  t.equal(info.access.reads, 4, 'GET, HEAD, conditional GET and the 404 GET recorded as reads')
})

t.test('hop-by-hop headers are stripped both ways; X-Forwarded-For and Via are added', async t => {
  let seen: http.IncomingHttpHeaders = {}
  const echo = http.createServer((req, res) => {
    seen = req.headers
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { connection: 'x-upstream-hop', 'x-upstream-hop': 'secret', 'keep-alive': 'timeout=5', 'x-kept': 'yes', 'content-length': 2 })
      res.end('ok')
    })
  })
  await new Promise<void>(resolve => echo.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { echo.close(() => resolve()); echo.closeAllConnections() }))
  const port = (echo.address() as net.AddressInfo).port
  const p = await startProxy(testConfig([`http://127.0.0.1:${port}`], { health: { active: { enabled: false } } }))
  t.teardown(p.stop)

  // Raw bytes, because HTTP clients (undici included) will not send an arbitrary Connection header.
  const res = await rawRequest(p.url, 'GET /v/b HTTP/1.1\r\nHost: x\r\nConnection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\n' +
    'Proxy-Authorization: Basic Zm9v\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\nVia: 1.0 edge\r\nX-App: keep\r\n\r\n')
  t.match(res, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(res, /\r\nx-kept: yes\r\n/)
  t.notMatch(res, /x-upstream-hop/i, 'header named in upstream Connection stripped')
  t.notMatch(res, /keep-alive: timeout=5/i, 'upstream Keep-Alive not forwarded')
  t.match(res, /\r\nvia: 1\.1 ferry\r\n/)

  t.equal(seen['x-app'], 'keep')
  t.notOk(seen['x-secret-hop'], 'header named in Connection not forwarded')
  t.notOk(seen['proxy-authorization'])
  t.notOk(seen.te)
  t.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1', 'peer appended to X-Forwarded-For')
  t.equal(seen.via, '1.0 edge, 1.1 ferry')
  t.equal(seen['x-forwarded-host'], 'x', 'the client Host goes on as X-Forwarded-Host')
})

t.test('bad paths, methods and bodies get clean 4xx JSON errors', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: 0 }, maxBodyBytes: 1000 } }))
  t.teardown(p.stop)

  const badPaths = ['/onlyvolume', '/a/b/c', '/%2e%2e/x', '/a/..%2fb', '/a/%2e%2e%2fetc%2fpasswd', '/.hidden/x', '/a/.', '/a/%zz', '//b', '/a/', `/a/${'x'.repeat(129)}`, '/a/b%00c']
  // A space ends the request target, so '/a/b c' is a malformed request line: Node's parser
  // refuses it before ferry sees a path.
  const cases: Array<[string, string]> = [...badPaths.map((bad): [string, string] => [bad, 'FERRY_BAD_PATH']), ['/a/b c', 'FERRY_BAD_REQUEST']]
  for (const [bad, code] of cases) {
    const res = await rawRequest(p.url, `GET ${bad} HTTP/1.1\r\nHost: x\r\n\r\n`)
    t.match(res, /^HTTP\/1\.1 400 Bad Request\r\n/, `400 for ${bad}`)
    t.match(JSON.parse(res.slice(res.indexOf('\r\n\r\n') + 4)), { error: { code } }, `${code} for ${bad}`)
  }
  const post = await request(`${p.url}/a/b`, { method: 'POST', body: 'x' })
  t.equal(post.statusCode, 405)
  t.equal(post.headers.allow, 'GET, HEAD, PUT, DELETE')
  t.match(await post.body.json(), { error: { code: 'FERRY_METHOD_NOT_ALLOWED' } })

  const big = await request(`${p.url}/a/big`, { method: 'PUT', body: Buffer.alloc(5000) })
  t.equal(big.statusCode, 413, 'Content-Length over the limit')
  t.match(await big.body.json(), { error: { code: 'FERRY_BODY_TOO_LARGE' } })

  // Chunked (no Content-Length): refused once the stream passes the limit, and nothing stored.
  async function * chunks (): AsyncGenerator<Buffer> { for (let i = 0; i < 10; i++) yield Buffer.alloc(500, 1) }
  const chunked = await request(`${p.url}/a/chunked`, { method: 'PUT', body: Readable.from(chunks()) })
  t.equal(chunked.statusCode, 413, 'chunked body over the limit')
  await chunked.body.dump()
  const after = await request(`${p.url}/a/chunked`)
  t.equal(after.statusCode, 404, 'no partial block stored')
  await after.body.dump()

  const getBody = await request(`${p.url}/a/b`, { method: 'GET', body: 'x' })
  t.equal(getBody.statusCode, 400)
  t.match(await getBody.body.json(), { error: { code: 'FERRY_UNEXPECTED_BODY' } })
})

t.test('access recording: sites from trusted X-Forwarded-For, decayed scores, JSON-lines log', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-log-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const log = path.join(dir, 'access.jsonl')
  const p = await startProxy(testConfig(gws.urls, { recorder: { accessLog: log } }))
  t.teardown(p.stop)

  await (await request(`${p.url}/v/b`, { method: 'PUT', body: 'data' })).body.dump()
  for (let i = 0; i < 3; i++) await (await request(`${p.url}/v/b`, { headers: { 'x-forwarded-for': '127.0.1.7' } })).body.dump()
  await (await request(`${p.url}/v/b`, { headers: { 'x-forwarded-for': '198.51.100.1' } })).body.dump()

  const info = await (await request(`${p.adminUrl}/v1/blocks/v/b`)).body.json() as { access: { sites: Record<string, number>, reads: number, writes: number, score: number } }
  t.equal(info.access.writes, 1)
  t.equal(info.access.reads, 4)
  t.ok(Math.abs((info.access.sites['site-a'] ?? 0) - 1) < 0.01, 'the PUT from 127.0.0.1 counts for site-a')
  t.ok(Math.abs((info.access.sites['site-b'] ?? 0) - 3) < 0.01, 'three reads via a trusted proxy count for site-b')
  t.ok(Math.abs((info.access.sites[''] ?? 0) - 1) < 0.01, 'a client in no site is recorded under ""')
  t.ok(Math.abs(info.access.score - 5) < 0.02)

  await p.stop()
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
  t.equal(lines.length, 5)
  t.match(lines[0], { client: '127.0.0.1', site: 'site-a', volume: 'v', block: 'b', op: 'write', status: 201, gateway: 'gw1' })
  t.match(lines[1], { client: '127.0.1.7', site: 'site-b', op: 'read', status: 200 })
})

t.test('X-Forwarded-For from a peer that is not a trusted proxy is ignored', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: 0 }, trustedProxies: [] } }))
  t.teardown(p.stop)
  await (await request(`${p.url}/v/b`, { headers: { 'x-forwarded-for': '127.0.1.7' } })).body.dump()
  const info = await (await request(`${p.adminUrl}/v1/blocks/v/b`)).body.json() as { access: { sites: Record<string, number> } }
  t.same(Object.keys(info.access.sites), ['site-a'], 'the socket address decides the site')
})
