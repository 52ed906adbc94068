import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import type { GatewayKind } from '../../../fleet/schema.js'
import { copyBlock, type CopyEndpoint } from '../../../planner/migration/copy.js'
import { TokenBucket } from '../../../planner/migration/token-bucket.js'
import { startGateways } from '../../helpers/gateway.js'
import { nginxAvailable, startNginxGateway } from '../../helpers/nginx.js'
import { put } from './harness.js'

/**
 * copyBlock on its own, onto targets that store something other than what was sent: whatever
 * the target's kind, a corrupted copy must be rejected, never counted as a move.
 */
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

function endpoint (t: Test, kind: GatewayKind, url: string): CopyEndpoint {
  const pool = new Pool(url)
  t.teardown(() => pool.close())
  return { kind, pool }
}

/**
 * A gateway that flips one byte of every block it stores. `etag`: what it answers a PUT with —
 * nothing (as nginx), or the content hash of what it stored (as a reference gateway whose disk
 * garbled the write).
 */
async function corruptingGateway (t: Test, etag: 'none' | 'content-hash'): Promise<string> {
  const blocks = new Map<string, Buffer>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const path = req.url ?? ''
      if (req.method === 'PUT') {
        const stored = Buffer.concat(chunks)
        if (stored.length > 0) stored[stored.length >> 1] = (stored[stored.length >> 1] as number) ^ 0x01
        blocks.set(path, stored)
        res.writeHead(201, etag === 'content-hash' ? { etag: `"${sha256(stored)}"` } : {})
        return res.end()
      }
      const b = blocks.get(path)
      if (b === undefined) { res.writeHead(404); return res.end() }
      res.writeHead(200, { 'content-length': b.length, etag: '"5f5e100-1"' })
      res.end(req.method === 'HEAD' ? undefined : b)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const copyOptions = { path: '/v/b', bucket: new TokenBucket(0, 1024 * 1024), timeoutMs: 10_000 }

t.test('a corrupted copy is rejected whatever the target\'s kind', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const body = randomBytes(200_000)
  await put(`${gws.urls[0]}/v/b`, body)
  const source = endpoint(t, 'ferry', gws.urls[0] as string)

  const silent = endpoint(t, 'webdav', await corruptingGateway(t, 'none'))
  await t.rejects(copyBlock(source, silent, { ...copyOptions, signal: new AbortController().signal }),
    { code: 'FERRY_COPY_VERIFY_FAILED', message: /differs from the bytes sent/ }, 'a webdav target is read back, and the flipped byte found')

  const hashing = endpoint(t, 'ferry', await corruptingGateway(t, 'content-hash'))
  await t.rejects(copyBlock(source, hashing, { ...copyOptions, signal: new AbortController().signal }),
    { code: 'FERRY_COPY_VERIFY_FAILED', message: /stored \/v\/b with ETag/ }, 'a ferry target\'s content-hash ETag of other bytes is caught')
})

const nginx = await nginxAvailable()

t.test('copies onto and off nginx are verified by reading back, with the target\'s own ETag', { skip: nginx.ok ? false : nginx.reason }, async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const ngx = await startNginxGateway()
  t.teardown(ngx.stop)
  const body = randomBytes(150_000)
  await put(`${gws.urls[0]}/v/b`, body)
  const ref = endpoint(t, 'ferry', gws.urls[0] as string)
  const dav = endpoint(t, 'webdav', ngx.url)

  const onto = await copyBlock(ref, dav, { ...copyOptions, signal: new AbortController().signal })
  t.match(onto, { proof: 'read-back', bytes: body.length, sha256: sha256(body), sourceEtag: `"${sha256(body)}"` })
  t.match(onto?.targetEtag, /^"[0-9a-f]+-[0-9a-f]+"$/, 'nginx\'s ETag of the copy it holds')

  await put(`${gws.urls[0]}/v/b`, 'replaced') // the copy back must overwrite it
  const off = await copyBlock(dav, ref, { ...copyOptions, signal: new AbortController().signal })
  t.match(off, { proof: 'etag', bytes: body.length, targetEtag: `"${sha256(body)}"`, sourceEtag: onto?.targetEtag })
})

/**
 * A copy keeps the time its original was written (gateway/README.md "Written-at"): stamped with
 * the time of the copy, it would look newer than a write its source took meanwhile, and a
 * rebuild after a store loss would serve it (recovery/README.md).
 */
t.test('a copy keeps its original\'s written-at, onto the reference gateway and onto nginx', { skip: nginx.ok ? false : nginx.reason }, async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const ngx = await startNginxGateway()
  t.teardown(ngx.stop)
  const writtenAt = Date.now() - 3_600_000 + 123 // an hour ago, with milliseconds
  const r = await fetch(`${gws.urls[0]}/v/b`, { method: 'PUT', body: 'original', headers: { 'x-ferry-written-at': String(writtenAt) } })
  t.equal(r.status, 201)
  const ref0 = endpoint(t, 'ferry', gws.urls[0] as string)
  const ref1 = endpoint(t, 'ferry', gws.urls[1] as string)
  const dav = endpoint(t, 'webdav', ngx.url)

  await copyBlock(ref0, ref1, { ...copyOptions, signal: new AbortController().signal })
  const copied = await fetch(`${gws.urls[1]}/v/b`, { method: 'HEAD' })
  t.equal(copied.headers.get('x-ferry-written-at'), String(writtenAt), 'reference → reference: to the millisecond')

  await copyBlock(ref0, dav, { ...copyOptions, signal: new AbortController().signal })
  const onNginx = await fetch(`${ngx.url}/v/b`, { method: 'HEAD' })
  t.equal(Date.parse(onNginx.headers.get('last-modified') ?? ''), Math.floor(writtenAt / 1000) * 1000, 'reference → nginx: to the second (its Date header)')

  await fetch(`${gws.urls[1]}/v/b`, { method: 'DELETE' })
  await copyBlock(dav, ref1, { ...copyOptions, signal: new AbortController().signal })
  const back = await fetch(`${gws.urls[1]}/v/b`, { method: 'HEAD' })
  t.equal(back.headers.get('x-ferry-written-at'), String(Math.floor(writtenAt / 1000) * 1000), 'nginx → reference: nginx\'s Last-Modified')

  const bad = await fetch(`${gws.urls[0]}/v/c`, { method: 'PUT', body: 'x', headers: { 'x-ferry-written-at': 'yesterday' } })
  t.equal(bad.status, 400, 'a written-at that is not ms since the epoch is refused')
  t.equal(((await bad.json()) as { error: { code: string } }).error.code, 'INVALID_HEADER')
})

/**
 * A copy onto a joining member must not overwrite a write proxies teed to it since the copy
 * began: that write is newer than what the copy read from the source, and once it lands on the
 * source too the target would be the older side — a stale copy the verify could still mark in
 * sync while that write was in flight (the 10,000-move run's stale reads). The PUT is
 * conditional on the target's version when the copy began.
 */
t.test('a conditional copy keeps a write that landed on the target since it began', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const source = endpoint(t, 'ferry', gws.urls[0] as string)
  const target = endpoint(t, 'ferry', gws.urls[1] as string)
  await put(`${gws.urls[0]}/v/c`, 'v1')
  const head = async (): Promise<string | null> => {
    const res = await target.pool.request({ method: 'HEAD', path: '/v/c' })
    await res.body.dump()
    return res.statusCode === 200 ? res.headers.etag as string : null
  }

  // The target had nothing when the copy began, and a teed write landed before its PUT.
  const before = await head()
  t.equal(before, null)
  await put(`${gws.urls[1]}/v/c`, 'v2')
  t.equal(await copyBlock(source, target, { ...copyOptions, path: '/v/c', signal: new AbortController().signal, unlessChangedFrom: before }), null, 'superseded: not copied')
  t.equal(await (await target.pool.request({ method: 'GET', path: '/v/c' })).body.text(), 'v2', 'the newer write is kept')

  // The target held a version when the copy began, and another write replaced it since.
  const held = await head()
  await put(`${gws.urls[1]}/v/c`, 'v3')
  t.equal(await copyBlock(source, target, { ...copyOptions, path: '/v/c', signal: new AbortController().signal, unlessChangedFrom: held }), null, 'superseded again')
  t.equal(await (await target.pool.request({ method: 'GET', path: '/v/c' })).body.text(), 'v3')

  // Unchanged since the copy began: the copy replaces it.
  const now = await head()
  const copied = await copyBlock(source, target, { ...copyOptions, path: '/v/c', signal: new AbortController().signal, unlessChangedFrom: now })
  t.match(copied, { proof: 'etag', bytes: 2 }, 'copied over the version it began from')
  t.equal(await (await target.pool.request({ method: 'GET', path: '/v/c' })).body.text(), 'v1')
})
