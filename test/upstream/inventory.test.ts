import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { request } from 'undici'
import { gatewaySchema, type GatewayConfig } from '../../fleet/schema.js'
import { INVENTORY_PAGE_SIZE, listBlocks, type InventoryEntry } from '../../upstream/inventory.js'
import { startGateways } from '../helpers/gateway.js'
import { freePort } from '../helpers/net.js'
import { nginxAvailable, startNginxGateway } from '../helpers/nginx.js'

const gateway = (url: string, kind: 'ferry' | 'webdav'): GatewayConfig => gatewaySchema.parse({ id: 'gw-under-test', url, kind, site: 's' })

async function collect (it: AsyncIterable<InventoryEntry>): Promise<InventoryEntry[]> {
  const out: InventoryEntry[] = []
  for await (const e of it) out.push(e)
  return out
}

const etagOf = (s: string): string => `"${createHash('sha256').update(s).digest('hex')}"`

t.test('the reference gateway: every block, across pages', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const gw = gws.gateways[0]!
  const url = gws.urls[0] as string
  // More blocks than one page, put in place with plain tools, plus a few written over HTTP.
  const seeded = INVENTORY_PAGE_SIZE + 321
  await mkdir(path.join(gw.dir, 'seed'), { recursive: true })
  for (let i = 0; i < seeded; i++) await writeFile(path.join(gw.dir, 'seed', `b${String(i).padStart(5, '0')}`), `s${i}`)
  for (const key of ['a/one', 'a/two', 'z/last']) await (await request(`${url}/${key}`, { method: 'PUT', body: key })).body.dump()

  const listed = await collect(listBlocks(gateway(url, 'ferry')))
  t.equal(listed.length, seeded + 3, 'every block, across two pages')
  t.same(listed.slice(0, 2), [
    { volume: 'a', block: 'one', size: 5, etag: etagOf('a/one'), modifiedAt: listed[0]!.modifiedAt },
    { volume: 'a', block: 'two', size: 5, etag: etagOf('a/two'), modifiedAt: listed[1]!.modifiedAt }
  ])
  t.equal(listed[2]!.volume, 'seed')
  t.equal(listed[2]!.etag, null, 'not hashed to be listed')
  t.same(listed.at(-1), { volume: 'z', block: 'last', size: 6, etag: etagOf('z/last'), modifiedAt: listed.at(-1)!.modifiedAt })
  t.equal(new Set(listed.map(e => `${e.volume}/${e.block}`)).size, listed.length, 'each once')
})

const nginx = await nginxAvailable()
const skip = nginx.ok ? false : nginx.reason

t.test('nginx WebDAV: volumes and blocks from its JSON autoindex', { skip }, async t => {
  const ngx = await startNginxGateway()
  t.teardown(ngx.stop)
  const keys = ['v1/a', 'v1/b.2', 'v2/c_3']
  for (const key of keys) await (await request(`${ngx.url}/${key}`, { method: 'PUT', body: `bytes of ${key}` })).body.dump()
  // Not blocks: a file at the top, names no volume or block id can have, a nested directory.
  await writeFile(path.join(ngx.root, 'stray-file'), 'x')
  await writeFile(path.join(ngx.root, 'v1', 'not an id'), 'x')
  await mkdir(path.join(ngx.root, 'v2', 'nested'))
  await mkdir(path.join(ngx.root, 'empty'))

  const listed = await collect(listBlocks(gateway(ngx.url, 'webdav')))
  t.same(listed.map(e => `${e.volume}/${e.block}`).sort(), keys, 'exactly the blocks')
  for (const e of listed) {
    const head = await request(`${ngx.url}/${e.volume}/${e.block}`, { method: 'HEAD' })
    await head.body.dump()
    t.equal(e.size, Buffer.byteLength(`bytes of ${e.volume}/${e.block}`))
    t.equal(e.etag, head.headers.etag, 'the ETag nginx answers a HEAD with')
    t.equal(e.modifiedAt, Date.parse(head.headers['last-modified'] as string), 'its Last-Modified')
  }
})

t.test('nginx without autoindex cannot be listed: a clear error', { skip }, async t => {
  const ngx = await startNginxGateway({ autoindex: false })
  t.teardown(ngx.stop)
  await (await request(`${ngx.url}/v/b`, { method: 'PUT', body: 'x' })).body.dump()
  await t.rejects(collect(listBlocks(gateway(ngx.url, 'webdav'))), {
    code: 'FERRY_INVENTORY_FAILED',
    message: /autoindex on; autoindex_format json;/,
    details: { gateway: 'gw-under-test', kind: 'webdav', status: 403 }
  })
})

t.test('a gateway of the wrong kind, or none at all, is an INVENTORY_FAILED', { skip }, async t => {
  const ngx = await startNginxGateway()
  t.teardown(ngx.stop)
  await t.rejects(collect(listBlocks(gateway(ngx.url, 'ferry'))), { code: 'FERRY_INVENTORY_FAILED', details: { status: 404 } }, 'nginx configured as a reference gateway')
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  await t.rejects(collect(listBlocks(gateway(gws.urls[0] as string, 'webdav'))), { code: 'FERRY_INVENTORY_FAILED' }, 'a reference gateway configured as webdav')
  const port = await freePort()
  await t.rejects(collect(listBlocks(gateway(`http://127.0.0.1:${port}`, 'ferry'))), { code: 'FERRY_INVENTORY_FAILED', message: /ECONNREFUSED/ }, 'nothing listening')
})

/** A fake nginx whose listings arrive a few bytes at a time, with names that tax a parser. */
async function trickleGateway (t: Test, listings: Record<string, string>): Promise<string> {
  const server = http.createServer((req, res) => {
    const body = listings[req.url ?? '']
    if (body === undefined) { res.writeHead(404); return res.end() }
    res.writeHead(200, { 'content-type': 'application/json' })
    const bytes = Buffer.from(body)
    let at = 0
    const next = (): void => {
      if (at >= bytes.length) return void res.end()
      res.write(bytes.subarray(at, at + 3))
      at += 3
      setImmediate(next)
    }
    next()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('the autoindex listing is parsed as it streams', async t => {
  const mtime = 'Fri, 04 Dec 2026 17:05:11 GMT'
  const url = await trickleGateway(t, {
    '/': `[\n{ "name":"vol", "type":"directory", "mtime":"${mtime}" },\n{ "name":"br}ace\\"q", "type":"directory", "mtime":"${mtime}" }\n]\n`,
    '/vol/': `[\n{ "name":"x\\"},{", "type":"file", "mtime":"${mtime}", "size":1 },\n{ "name":"blk", "type":"file", "mtime":"${mtime}", "size":4096 },\n` +
      `{ "name":"é-not-an-id", "type":"file", "mtime":"${mtime}", "size":2 }\n]\n`
  })
  const listed = await collect(listBlocks(gateway(url, 'webdav')))
  const at = Date.parse(mtime)
  t.same(listed, [{ volume: 'vol', block: 'blk', size: 4096, etag: `"${(at / 1000).toString(16)}-1000"`, modifiedAt: at }],
    'quotes and braces inside names do not confuse it; names that are not ids are skipped')

  const broken = await trickleGateway(t, { '/': `[\n{ "name":"vol", "type":"directory", "mtime":"${mtime}" },\n`, '/vol/': '<html>' })
  await t.rejects(collect(listBlocks(gateway(broken, 'webdav'))), { code: 'FERRY_INVENTORY_FAILED', message: /ended early/ }, 'a listing cut short')
})

t.test('an aborted listing stops with the signal\'s reason', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  await (await request(`${gws.urls[0] as string}/v/b`, { method: 'PUT', body: 'x' })).body.dump()
  const ac = new AbortController()
  const reason = new Error('stop listing')
  ac.abort(reason)
  await t.rejects(collect(listBlocks(gateway(gws.urls[0] as string, 'ferry'), { signal: ac.signal })), reason)
})
