import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { request } from 'undici'
import { ReferenceGateway } from '../../gateway/gateway.js'
import { startGateways, tempFiles } from '../helpers/gateway.js'

const etagOf = (b: Buffer): string => `"${createHash('sha256').update(b).digest('hex')}"`

async function put (url: string, body: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number, etag: string | undefined }> {
  const r = await request(url, { method: 'PUT', body, headers })
  await r.body.dump()
  return { status: r.statusCode, etag: r.headers.etag as string | undefined }
}

async function get (url: string, headers: Record<string, string> = {}): Promise<{ status: number, etag: string | undefined, body: Buffer }> {
  const r = await request(url, { headers })
  return { status: r.statusCode, etag: r.headers.etag as string | undefined, body: Buffer.from(await r.body.arrayBuffer()) }
}

t.test('bytes and ETags round-trip (empty, small, streamed)', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const base = g.urls[0]
  for (const size of [0, 1000, 300 * 1024]) {
    const data = randomBytes(size)
    const url = `${base}/vol-1/blk.${size}`
    const p = await put(url, data)
    t.equal(p.status, 201, `PUT ${size} B creates`)
    t.equal(p.etag, etagOf(data), 'PUT returns the sha256 ETag')
    const r = await get(url)
    t.equal(r.status, 200)
    t.equal(r.etag, etagOf(data), 'GET returns the same ETag')
    t.ok(r.body.equals(data), `GET returns the same ${size} bytes`)
    const h = await request(url, { method: 'HEAD' })
    await h.body.dump()
    t.equal(h.statusCode, 200)
    t.equal(h.headers['content-length'], String(size), 'HEAD gives the length')
    t.equal(h.headers.etag, etagOf(data), 'HEAD gives the ETag')
  }
})

t.test('replace, delete, and the files on disk', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const gw = g.gateways[0] as ReferenceGateway
  const url = `${gw.url}/v/b`
  t.equal((await put(url, 'one')).status, 201)
  const second = await put(url, 'two')
  t.equal(second.status, 204, 'replacing answers 204')
  t.equal(second.etag, etagOf(Buffer.from('two')))
  t.equal((await get(url)).body.toString(), 'two')
  t.equal(await readFile(path.join(gw.dir, 'v', 'b'), 'utf8'), 'two', 'stored at <dir>/<volume>/<block>')
  t.same(await tempFiles(gw.dir), [], 'no temp files left')

  const d = await request(url, { method: 'DELETE' })
  await d.body.dump()
  t.equal(d.statusCode, 204)
  const after = await request(url)
  t.equal(after.statusCode, 404)
  t.equal(((await after.body.json()) as { error: { code: string } }).error.code, 'BLOCK_NOT_FOUND')
  const again = await request(url, { method: 'DELETE' })
  await again.body.dump()
  t.equal(again.statusCode, 404, 'deleting a missing block is a 404')
})

t.test('conditional requests', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const url = `${g.urls[0]}/v/cond`
  const create = await put(url, 'v1', { 'if-none-match': '*' })
  t.equal(create.status, 201, 'If-None-Match: * creates when absent')
  t.equal((await put(url, 'v1bis', { 'if-none-match': '*' })).status, 412, 'If-None-Match: * refuses when present')
  t.equal((await get(url)).body.toString(), 'v1', 'the refused write changed nothing')

  const etag1 = create.etag as string
  t.equal((await put(url, 'v2', { 'if-match': '"0000"' })).status, 412, 'If-Match with a stale ETag is refused')
  t.equal((await put(url, 'v2', { 'if-match': `W/${etag1}` })).status, 412, 'If-Match never matches a weak tag')
  const v2 = await put(url, 'v2', { 'if-match': `"nope", ${etag1}` })
  t.equal(v2.status, 204, 'If-Match with the current ETag (in a list) succeeds')
  t.equal((await put(`${g.urls[0]}/v/absent`, 'x', { 'if-match': '*' })).status, 412, 'If-Match: * on an absent block is refused')
  t.equal((await get(`${g.urls[0]}/v/absent`, { 'if-match': '*' })).status, 412, 'GET If-Match on an absent block is 412')

  const nm = await get(url, { 'if-none-match': v2.etag as string })
  t.equal(nm.status, 304, 'GET If-None-Match with the current ETag is 304')
  t.equal(nm.etag, v2.etag, '304 carries the ETag')
  t.equal(nm.body.length, 0)
  t.equal((await get(url, { 'if-none-match': `W/${v2.etag as string}` })).status, 304, 'If-None-Match uses the weak comparison')
  t.equal((await get(url, { 'if-none-match': etag1 })).status, 200, 'an old ETag gets the new body')
  t.equal((await get(url, { 'if-match': etag1 })).status, 412, 'GET If-Match with an old ETag is 412')

  const del = await request(url, { method: 'DELETE', headers: { 'if-match': etag1 } })
  await del.body.dump()
  t.equal(del.statusCode, 412, 'DELETE If-Match with an old ETag is refused')
  const del2 = await request(url, { method: 'DELETE', headers: { 'if-match': v2.etag as string } })
  await del2.body.dump()
  t.equal(del2.statusCode, 204)
})

t.test('concurrent If-Match writes: exactly one wins', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const url = `${g.urls[0]}/v/race`
  const base = await put(url, 'base')
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => put(url, `writer-${i}`, { 'if-match': base.etag as string })))
  const won = results.filter(r => r.status === 204)
  t.equal(won.length, 1, 'one conditional write succeeds')
  t.equal(results.filter(r => r.status === 412).length, 7, 'the others get 412')
  const now = await get(url)
  t.equal(now.etag, won[0]?.etag, 'the stored block is the winner')
})

t.test('ETags survive a restart and follow out-of-band replacement', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const gw = g.gateways[0] as ReferenceGateway
  const data = randomBytes(100 * 1024)
  const url = `${gw.url}/v/persist`
  const { etag } = await put(url, data)

  // A different process on the same directory: nothing cached.
  await gw.stop()
  const fresh = new ReferenceGateway({ dir: gw.dir, port: gw.port })
  await fresh.start()
  t.teardown(() => fresh.kill())
  const r = await get(url)
  t.equal(r.etag, etag, 'same ETag from a fresh gateway on the same dir')
  t.ok(r.body.equals(data))
  await fresh.kill()

  // Crash and start again, same instance, same port.
  await gw.start()
  t.equal((await get(url)).etag, etag, 'same ETag after start()')

  // Someone replaces the file behind the gateway's back (atomically, as a tool would): the
  // cached ETag must not be served for the new bytes.
  const other = Buffer.from('replaced out of band')
  const side = path.join(gw.dir, 'side-file')
  await writeFile(side, other)
  await rename(side, path.join(gw.dir, 'v', 'persist'))
  const after = await get(url)
  t.ok(after.body.equals(other))
  t.equal(after.etag, etagOf(other), 'ETag recomputed for the new file')
})

t.test('health and metrics', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const gw = g.gateways[0] as ReferenceGateway
  const h = await request(`${gw.url}/healthz`)
  t.equal(h.statusCode, 200)
  t.match(await h.body.json(), { status: 'ok', id: 'gw1' })
  await put(`${gw.url}/v/m`, Buffer.alloc(1234))
  await (await request(`${gw.url}/v/m`)).body.dump()
  await (await request(`${gw.url}/v/missing`)).body.dump()
  for (const base of [gw.url, gw.adminUrl]) {
    const m = await request(`${base}/metrics`)
    t.equal(m.statusCode, 200)
    t.match(m.headers['content-type'], /text\/plain/)
    const text = await m.body.text()
    t.match(text, /ferry_gateway_requests_total\{gateway="gw1",method="PUT",status="201"\} 1/)
    t.match(text, /ferry_gateway_requests_total\{gateway="gw1",method="GET",status="404"\} 1/)
    t.match(text, /ferry_gateway_received_bytes_total\{gateway="gw1"\} 1234/)
    t.match(text, /ferry_gateway_sent_bytes_total\{gateway="gw1"\} 1234/)
  }
})

t.test('startGateways gives distinct gateways and stopAll removes their dirs', async t => {
  const g = await startGateways(3)
  t.teardown(g.stopAll)
  t.equal(new Set(g.urls).size, 3)
  t.same(g.gateways.map(x => x.id), ['gw1', 'gw2', 'gw3'])
  await g.gateways[1]?.kill()
  await g.stopAll()
  for (const gw of g.gateways) {
    await t.rejects(readFile(path.join(gw.dir, '.tmp')), { code: 'ENOENT' }, `${gw.id} dir removed`)
    t.notOk(gw.running)
  }
})
