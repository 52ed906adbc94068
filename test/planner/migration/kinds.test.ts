import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { request } from 'undici'
import type { FerryConfig } from '../../../config/schema.js'
import { createStore } from '../../../state/factory.js'
import type { StateStore } from '../../../state/types.js'
import { startGateways } from '../../helpers/gateway.js'
import { startProxy, testConfig, type ProxyUnderTest } from '../../helpers/ferry.js'
import { waitFor } from '../../helpers/net.js'
import { nginxAvailable, startNginxGateway, type NginxGateway } from '../../helpers/nginx.js'
import { get, startPlanner, waitEnded, waitLeader } from './harness.js'

/**
 * Moves between gateway kinds through the real migration engine: a reference gateway (gw1,
 * content-hash ETags) and two nginx WebDAV gateways (gw2, gw3: mtime-size ETags, none on PUT).
 * Each move must end `ok` with the target holding the source's bytes, and a read through the
 * proxy afterwards must return them.
 */
const probe = await nginxAvailable()
const skip = probe.ok ? false : probe.reason

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

interface MixedFleet {
  config: FerryConfig
  store: StateStore
  urls: Record<'gw1' | 'gw2' | 'gw3', string>
  nginx: Record<'gw2' | 'gw3', NginxGateway>
  proxy: ProxyUnderTest
}

async function mixedFleet (t: Test): Promise<MixedFleet> {
  const ref = await startGateways(1)
  t.teardown(ref.stopAll)
  const gw2 = await startNginxGateway()
  t.teardown(gw2.stop)
  const gw3 = await startNginxGateway()
  t.teardown(gw3.stop)
  const urls = { gw1: ref.urls[0] as string, gw2: gw2.url, gw3: gw3.url }
  const config = testConfig(Object.values(urls), {
    gateways: [
      { id: 'gw1', url: urls.gw1, kind: 'ferry', site: 'site-a' },
      { id: 'gw2', url: urls.gw2, kind: 'webdav', site: 'site-b' },
      { id: 'gw3', url: urls.gw3, kind: 'webdav', site: 'site-c' }
    ]
  })
  const store = createStore(config.state)
  t.teardown(() => store.close())
  const proxy = await startProxy(config, { store })
  t.teardown(proxy.stop)
  return { config, store, urls, nginx: { gw2, gw3 }, proxy }
}

async function putTo (url: string, body: Buffer, headers: Record<string, string> = {}): Promise<number> {
  const res = await request(url, { method: 'PUT', body, headers })
  await res.body.dump()
  return res.statusCode
}

async function bytesAt (url: string): Promise<{ status: number, body: Buffer }> {
  const res = await request(url)
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }
}

const moves = [
  { from: 'gw1', to: 'gw2', what: 'reference gateway → nginx' },
  { from: 'gw2', to: 'gw1', what: 'nginx → reference gateway' },
  { from: 'gw2', to: 'gw3', what: 'nginx → nginx' }
] as const

for (const m of moves) {
  t.test(`a block moves ${m.what}, verified, and reads through the proxy return it`, { skip }, async t => {
    const f = await mixedFleet(t)
    const p = await startPlanner(t, f.config, f.store)
    await waitLeader(p)
    const body = randomBytes(150_000)
    const status = await putTo(`${f.urls[m.from]}/vol/blk`, body)
    t.equal(status, 201, 'written to the source')
    t.ok((await f.store.casLocation('vol', 'blk', 0, { gateway: m.from })).ok)

    const { migrations } = await p.move({ volume: 'vol', block: 'blk', to: m.to })
    const rec = await waitEnded(p, migrations[0]!.id)
    t.match(rec, { result: 'ok', error: null, bytes: body.length }, `the move completed (${String(rec.error)})`)
    t.match(await f.store.getLocation('vol', 'blk'), { gateway: m.to, phase: 'stable' })

    const onTarget = await bytesAt(`${f.urls[m.to]}/vol/blk`)
    t.equal(onTarget.status, 200)
    t.equal(sha256(onTarget.body), sha256(body), 'the target holds the source\'s bytes')
    if (m.to === 'gw1') t.equal((await get(`${f.urls.gw1}/vol/blk`)).etag, `"${sha256(body)}"`, 'with the reference gateway\'s content-hash ETag')
    else t.ok((await readFile(path.join(f.nginx[m.to].root, 'vol', 'blk'))).equals(body), 'in nginx\'s document root')
    t.equal((await bytesAt(`${f.urls[m.from]}/vol/blk`)).status, 404, 'the source copy was removed after the grace period')

    const viaProxy = await bytesAt(`${f.proxy.url}/vol/blk`)
    t.equal(viaProxy.status, 200)
    t.equal(sha256(viaProxy.body), sha256(body), 'a read through the proxy returns the same bytes')
    const history = await f.store.blockHistory('vol', 'blk')
    t.same(history.filter(h => h.reason.startsWith('migration:')).map(h => h.reason.split(':')[2]), ['join', 'in-sync', 'leave', 'remove'], 'a membership change: the target was marked in sync only once verified')
  })
}

t.test('a same-size write to an nginx source during the copy, keeping its ETag, is copied again', { skip }, async t => {
  // nginx's ETag is mtime-size and its dav module takes the mtime from the request's Date
  // header: two different blocks of one size written with one Date share an ETag, exactly as
  // two writes in the same second do. The check before the target is marked in sync must look at the bytes.
  const f = await mixedFleet(t)
  const p = await startPlanner(t, f.config, f.store, { migration: { bandwidthBytesPerSec: 400_000, burstBytes: 64 * 1024, copyTimeoutMs: 20_000 } })
  await waitLeader(p)
  const date = new Date().toUTCString()
  const older = randomBytes(800_000)
  const newer = randomBytes(800_000)
  t.equal(await putTo(`${f.urls.gw2}/vol/w`, older, { date }), 201)
  const etagBefore = (await request(`${f.urls.gw2}/vol/w`, { method: 'HEAD' })).headers.etag
  t.ok((await f.store.casLocation('vol', 'w', 0, { gateway: 'gw2' })).ok)

  const { migrations } = await p.move({ volume: 'vol', block: 'w', to: 'gw1' })
  const id = migrations[0]!.id
  await waitFor(async () => ((await p.engine.get(id)).progress?.bytes ?? 0) > 100_000, 'the copy to be under way')
  // A write that reaches the source only (a proxy that sent it before the target joined; we play the proxy).
  t.equal(await putTo(`${f.urls.gw2}/vol/w`, newer, { date }), 204)
  t.equal((await request(`${f.urls.gw2}/vol/w`, { method: 'HEAD' })).headers.etag, etagBefore, 'nginx kept the ETag though the bytes changed')

  const rec = await waitEnded(p, id, 20_000)
  t.equal(rec.result, 'ok', String(rec.error))
  t.equal(p.engine.recopies, 1, 'copied again once')
  t.equal((await get(`${f.urls.gw1}/vol/w`)).etag, `"${sha256(newer)}"`, 'the target holds the newer bytes')
  t.equal(sha256((await bytesAt(`${f.proxy.url}/vol/w`)).body), sha256(newer), 'and so does a read through the proxy')
})

t.test('a whole volume drains off an nginx gateway onto both other kinds', { skip }, async t => {
  const f = await mixedFleet(t)
  const p = await startPlanner(t, f.config, f.store)
  await waitLeader(p)
  const blocks = Array.from({ length: 12 }, (_, i) => ({ name: `b${i}`, body: randomBytes(1000 + i * 4093) }))
  for (const b of blocks) {
    t.equal(await putTo(`${f.urls.gw2}/dv/${b.name}`, b.body), 201)
    t.ok((await f.store.casLocation('dv', b.name, 0, { gateway: 'gw2' })).ok)
  }
  await p.drain('gw2')
  await waitFor(async () => {
    const rs = await p.store.listMigrations({ limit: 100 })
    return rs.length === blocks.length && rs.every(r => r.result !== null)
  }, 'every migration off gw2 to end', 20_000)
  const records = await p.store.listMigrations({ limit: 100 })
  t.same(records.filter(r => r.result !== 'ok').map(r => `${r.block}: ${String(r.error)}`), [], 'every move completed')
  t.same(new Set(records.map(r => r.to)), new Set(['gw1', 'gw3']), 'onto both a reference and an nginx gateway')
  for (const b of blocks) {
    const got = await bytesAt(`${f.proxy.url}/dv/${b.name}`)
    t.equal(sha256(got.body), sha256(b.body), `${b.name} reads back through the proxy`)
  }
})
