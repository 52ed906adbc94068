import t, { type Test } from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool, request } from 'undici'
import type { GatewayConfig } from '../../../fleet/schema.js'
import { gatewayDispatcher, s3Signer } from '../../../upstream/s3.js'
import { createStore } from '../../../state/factory.js'
import { startGateways } from '../../helpers/gateway.js'
import { startProxy, testConfig } from '../../helpers/ferry.js'
import { waitFor } from '../../helpers/net.js'
import { nginxAvailable, startNginxGateway } from '../../helpers/nginx.js'
import { radosgwAvailable, startRadosgw } from '../../helpers/radosgw.js'
import { startPlanner, waitEnded, waitLeader } from './harness.js'

/**
 * A move onto nginx WebDAV while a client writes the block: the write reaches the joining target
 * (proxies tee it to every member) at the worst moments of the copy, ordered deterministically by
 * a gateway fault — an HTTP interposer in front of each gateway that holds one request or answer
 * until the other side of the race has happened. nginx ignores If-Match / If-None-Match on PUT, so
 * the copy is staged under a private name and moved into place with MOVE and `Overwrite: F`
 * (planner/migration/copy.ts).
 */
const probe = await nginxAvailable()
const skip = probe.ok ? false : probe.reason
const rgwProbe = await radosgwAvailable()
const skipS3 = rgwProbe.ok ? false : rgwProbe.reason

interface Exchange { method: string, path: string, body: Buffer }

/** An HTTP forwarder to `upstream`; `hold` may delay a request before it is forwarded, `after` its answer before it is relayed. */
async function interposer (t: Test, upstream: string, hooks: { hold?: (x: Exchange) => Promise<void> | undefined, after?: (x: Exchange, status: number) => Promise<void> | undefined }, keepHost = false): Promise<string> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        const x: Exchange = { method: req.method ?? 'GET', path: req.url ?? '/', body: Buffer.concat(chunks) }
        await hooks.hold?.(x)
        const headers: Record<string, string> = {}
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && (keepHost || k !== 'host') && k !== 'connection' && k !== 'transfer-encoding') headers[k] = v
        const hasBody = x.body.length > 0 || x.method === 'PUT'
        const up = await request(upstream + x.path, { method: x.method as 'PUT', headers: { ...headers, ...(hasBody ? { 'content-length': String(x.body.length) } : {}) }, ...(hasBody ? { body: x.body } : {}) })
        const body = Buffer.from(await up.body.arrayBuffer())
        await hooks.after?.(x, up.statusCode)
        const out: Record<string, string> = {}
        for (const [k, v] of Object.entries(up.headers)) if (typeof v === 'string' && k !== 'connection' && k !== 'transfer-encoding' && k !== 'keep-alive') out[k] = v
        if (x.method !== 'HEAD') out['content-length'] = String(body.length)
        res.writeHead(up.statusCode, out)
        res.end(x.method === 'HEAD' ? undefined : body)
      })().catch(err => { res.destroy(err as Error) })
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const V1 = Buffer.from('v1 '.repeat(700))
const V2 = Buffer.from('v2, written during the move '.repeat(90))

async function text (url: string): Promise<{ status: number, body: string }> {
  const res = await request(url)
  return { status: res.statusCode, body: await res.body.text() }
}

type Hooks = Parameters<typeof interposer>[2]
interface Setup { proxyUrl: string, onTarget: (path: string) => Promise<{ status: number, body: string }>, move: () => Promise<{ result: string | null, error: string | null }> }

/**
 * A reference gateway (gw1, where the block is) and the move's target (gw2): nginx WebDAV (with
 * `dav_methods`), or radosgw as an `s3` gateway; each behind an interposer with its hooks.
 */
async function setup (t: Test, hooks: { gw1?: Hooks, gw2?: Hooks }, target: { kind: 'webdav', davMethods?: string } | { kind: 's3' } | { kind: 'ferry' } = { kind: 'webdav' }, migration: Record<string, number> = {}): Promise<Setup> {
  const refs = await startGateways(1)
  t.teardown(refs.stopAll)
  const ref = refs.urls[0] as string
  const gw1 = await interposer(t, ref, hooks.gw1 ?? {})
  let gw2: Record<string, unknown>
  let onTarget: Setup['onTarget'] = async () => { throw new Error('no target') }
  let rgwUrl = ''
  if (target.kind === 'ferry') {
    const refs2 = await startGateways(1)
    t.teardown(refs2.stopAll)
    const direct = refs2.urls[0] as string
    gw2 = { id: 'gw2', url: await interposer(t, direct, hooks.gw2 ?? {}), kind: 'ferry', site: 'site-b' }
    onTarget = async path => await text(direct + path)
  } else if (target.kind === 'webdav') {
    const ngx = await startNginxGateway(target.davMethods === undefined ? {} : { davMethods: target.davMethods })
    t.teardown(ngx.stop)
    gw2 = { id: 'gw2', url: await interposer(t, ngx.url, hooks.gw2 ?? {}), kind: 'webdav', site: 'site-b' }
    onTarget = async path => await text(ngx.url + path)
  } else {
    const rgw = await startRadosgw()
    t.teardown(rgw.stop)
    rgwUrl = rgw.url
    process.env.FERRY_TEST_RGW_SECRET = rgw.secret
    // SigV4 signs the Host header: the interposer passes on the one ferry signed.
    gw2 = { id: 'gw2', url: await interposer(t, rgw.url, hooks.gw2 ?? {}, true), kind: 's3', site: 'site-b', s3: { bucket: 'teed', region: rgw.region, accessKeyId: rgw.accessKeyId, secretEnv: 'FERRY_TEST_RGW_SECRET' } }
  }
  const config = testConfig([gw1, gw2.url as string], {
    gateways: [{ id: 'gw1', url: gw1, kind: 'ferry', site: 'site-a' }, gw2],
    replication: { factor: 1, minInSync: 1 }
  })
  if (target.kind === 's3') {
    // Straight to radosgw, signed as ferry signs.
    const s3gw = { ...config.gateways[1] as GatewayConfig, url: rgwUrl }
    const direct = gatewayDispatcher(s3gw, new Pool(rgwUrl))
    t.teardown(() => direct.close())
    const signer = s3Signer(s3gw)
    const mk = signer.sign({ method: 'PUT', path: signer.bucketPath('') })
    const created = await request(rgwUrl + mk.path, { method: 'PUT', headers: mk.headers as Record<string, string> })
    await created.body.dump()
    t.equal(created.statusCode, 200, 'bucket created')
    onTarget = async path => {
      const r = await direct.request({ method: 'GET', path })
      return { status: r.statusCode, body: await r.body.text() }
    }
  }
  const store = createStore(config.state)
  t.teardown(() => store.close())
  const proxy = await startProxy(config, { store })
  t.teardown(proxy.stop)
  const p = await startPlanner(t, config, store, { migration: { settleMs: 300, gracePeriodMs: 200, ...migration } })
  await waitLeader(p)
  t.ok((await store.casLocation('vol', 'blk', 0, { gateway: 'gw1' })).ok, 'the block is on gw1')
  const first = await request(`${proxy.url}/vol/blk`, { method: 'PUT', body: V1 })
  await first.body.dump()
  t.equal(first.statusCode, 201, 'v1 written through the proxy')
  return {
    proxyUrl: proxy.url,
    onTarget,
    move: async () => {
      // radosgw under load can miss the planner's first probes (300 ms): wait until gw2 is up.
      const { migrations } = await waitFor(async () => await p.move({ volume: 'vol', block: 'blk', to: 'gw2' }).catch((err: unknown) => {
        if ((err as { code?: string }).code === 'FERRY_TARGET_UNAVAILABLE') return undefined
        throw err
      }), 'gw2 to be up', 10_000, 50) as Awaited<ReturnType<typeof p.move>>
      return await waitEnded(p, migrations[0]!.id, 20_000)
    }
  }
}

/**
 * CI's flaky `move-to-webdav`: the client's write reached nginx between the copy's PUT and its
 * read-back, which then saw the newer bytes and took them for corruption (FERRY_COPY_VERIFY_FAILED,
 * the move rolled back). Here nginx's answer to the copy's PUT is held until that write is
 * acknowledged through the proxy.
 */
for (const dav of ['PUT DELETE MOVE', 'PUT DELETE'] as const) {
  t.test(`a write teed to the nginx target between the copy's PUT and its read-back is kept, not taken for corruption (dav_methods ${dav})`, { skip }, async t => {
    let proxyUrl = ''
    let armed = true
    let during: number | undefined
    const f = await setup(t, {
      gw2: {
        after: (x, status) => {
          // The copy's PUT: to its staging name with MOVE; without, to the block's own name (after
          // a staged attempt whose MOVE nginx refused).
          const copyPut = x.method === 'PUT' && x.body.equals(V1) && (dav.includes('MOVE') ? x.path.startsWith('/vol/.ferry-copy.blk.') : x.path === '/vol/blk')
          if (!armed || !copyPut || status >= 300) return undefined
          armed = false
          return (async () => {
            const r = await request(`${proxyUrl}/vol/blk`, { method: 'PUT', body: V2 })
            await r.body.dump()
            during = r.statusCode
          })()
        }
      }
    }, { kind: 'webdav', davMethods: dav })
    proxyUrl = f.proxyUrl
    const rec = await f.move()
    t.notOk(armed, 'the copy\'s PUT reached nginx')
    t.ok(during !== undefined && during >= 200 && during < 300, `the write during the move was acknowledged (${String(during)})`)
    t.match(rec, { result: 'ok', error: null }, `the move completed (${String(rec.error)})`)
    t.same(await f.onTarget('/vol/blk'), { status: 200, body: V2.toString() }, 'nginx holds the newer write')
    t.same(await text(`${f.proxyUrl}/vol/blk`), { status: 200, body: V2.toString() }, 'a read through the proxy returns it')
  })
}

/**
 * The stale shape of the first 10,000-move run: the copy read v1 from the source; a client's v2
 * reached the target before the copy's PUT while its way to the source was slow. An
 * unconditional copy overwrote v2 with v1 on the target, the verify found source and target equal (v1,
 * v2 still on its way to the source), the target went in sync and took the source's place, and
 * v2 was acknowledged: every later read returned v1. Here the source's answer to the copy's GET
 * is held until v2 is on the target, and v2's PUT to the source until the verify has read the source.
 */
for (const kind of ['webdav', 's3'] as const) {
  t.test(`a copy never overwrites a write teed to the ${kind === 's3' ? 'radosgw' : 'nginx'} target after it began, though that write is late on the source`, { skip: kind === 's3' ? skipS3 : skip }, async t => {
    let proxyUrl = ''
    let state: 'copy-read' | 'verify-read' | 'done' = 'copy-read'
    let onTarget: () => void = () => {}
    const v2OnTarget = new Promise<void>(resolve => { onTarget = resolve })
    let release: () => void = () => {}
    const released = new Promise<void>(resolve => { release = resolve })
    let write: Promise<number> | undefined
    const f = await setup(t, {
      gw1: {
        hold: x => x.method === 'PUT' && x.body.equals(V2) ? released : undefined,
        after: x => {
          if (x.method !== 'GET' || x.path !== '/vol/blk') return undefined
          if (state === 'copy-read') {
            state = 'verify-read'
            write = request(`${proxyUrl}/vol/blk`, { method: 'PUT', body: V2 }).then(async r => { await r.body.dump(); return r.statusCode })
            // Bounded: a proxy that had not heard of the new member would not send it v2.
            return Promise.race([v2OnTarget, new Promise<void>(resolve => setTimeout(resolve, 5000))])
          }
          if (state === 'verify-read') { state = 'done'; release() }
          return undefined
        }
      },
      gw2: {
        after: (x, status) => { if (x.method === 'PUT' && x.body.equals(V2) && status < 300) onTarget(); return undefined }
      }
    }, kind === 's3' ? { kind: 's3' } : { kind: 'webdav' })
    proxyUrl = f.proxyUrl
    const rec = await f.move()
    t.equal(state, 'done', 'the copy read the source, then the verify did')
    const status = await write
    t.ok(status !== undefined && status >= 200 && status < 300, `the write during the move was acknowledged (${String(status)})`)
    t.match(rec, { result: 'ok', error: null }, `the move completed (${String(rec.error)})`)
    t.same(await f.onTarget('/vol/blk'), { status: 200, body: V2.toString() }, 'the target holds the newer write')
    t.same(await text(`${f.proxyUrl}/vol/blk`), { status: 200, body: V2.toString() }, 'a read through the proxy returns the acknowledged write, not the one before')
  })
}

/**
 * Real corruption is still caught: nginx stores other bytes than the copy sent (a byte flipped
 * on the way, by the interposer). With MOVE the staged copy is read back under its private
 * name, where nothing else writes, and the mismatch fails the copy at once; without MOVE the
 * read-back at the block's name cannot tell corruption from a newer write, so the verify step
 * compares source and target, copies again while they differ, and fails after maxRecopies.
 * Either way the move fails with FERRY_COPY_VERIFY_FAILED and the block stays where it was.
 */
for (const dav of ['PUT DELETE MOVE', 'PUT DELETE'] as const) {
  t.test(`a copy nginx stores corrupted fails the move (dav_methods ${dav})`, { skip }, async t => {
    let corrupted = 0
    const f = await setup(t, {
      gw2: {
        hold: x => {
          // Without MOVE, only the copies at the block's own name: those whose read-back is ambiguous.
          if (x.method === 'PUT' && x.body.equals(V1) && (dav.includes('MOVE') || x.path === '/vol/blk')) { x.body[10] = (x.body[10] as number) ^ 1; corrupted++ }
          return undefined
        }
      }
      // Without MOVE the corrupted bytes at the block's name cannot be told from a write teed
      // there and late on the source: they are copied over once the source has stayed the same
      // for lateWriteMs (35 s by default; kept short here).
    }, { kind: 'webdav', davMethods: dav }, { lateWriteMs: 300 })
    const rec = await f.move()
    t.match(rec, { result: 'rolled-back', error: dav.includes('MOVE') ? /^FERRY_COPY_VERIFY_FAILED: .*differs from the bytes sent/ : /^FERRY_COPY_VERIFY_FAILED: .*after 3 re-copies/ }, String(rec.error))
    t.equal(corrupted, dav.includes('MOVE') ? 1 : 4, 'caught at once by the staged read-back, or after the first copy and maxRecopies (3) more')
    t.same(await text(`${f.proxyUrl}/vol/blk`), { status: 200, body: V1.toString() }, 'reads still return the block from the source')
    t.equal((await f.onTarget('/vol/blk')).status, 404, 'the failed target\'s copy was removed')
  })
}

/**
 * The stale read of the 10,000-move run at R = 2 (b22 read v80 63 ms after v81 was acknowledged,
 * from the member that had joined and gone in sync during v81): v2 reached the reference
 * gateway target while its way to the source was slow; the verify found the target differing
 * from a source that stayed the same and copied again, re-reading the target's version — v2's —
 * as the copy's If-Match, so v1 replaced v2; source and target then matched (v1), the target went
 * in sync, v2 landed on the source and was acknowledged, and reads of the target returned v1.
 * Here v2's PUT to the source is held for 2.5 s (far longer than three checks of the verify).
 */
t.test('a copy again never replaces a write teed to the reference gateway target that is late on the source', async t => {
  let proxyUrl = ''
  let write: Promise<number> | undefined
  let copies = 0
  let onTarget: () => void = () => {}
  const v2OnTarget = new Promise<void>(resolve => { onTarget = resolve })
  const f = await setup(t, {
    gw1: { hold: x => x.method === 'PUT' && x.body.equals(V2) ? new Promise<void>(resolve => setTimeout(resolve, 2500)) : undefined },
    gw2: {
      after: (x, status) => {
        if (x.method === 'PUT' && x.body.equals(V2) && status < 300) onTarget()
        if (x.method !== 'PUT' || !x.body.equals(V1)) return undefined
        copies++
        if (copies !== 1 || status >= 300) return undefined
        // The copy's answer waits until v2 is on the target: the verify then finds them differing.
        write = request(`${proxyUrl}/vol/blk`, { method: 'PUT', body: V2 }).then(async r => { await r.body.dump(); return r.statusCode })
        return Promise.race([v2OnTarget, new Promise<void>(resolve => setTimeout(resolve, 5000))])
      }
    }
  }, { kind: 'ferry' })
  proxyUrl = f.proxyUrl
  const rec = await f.move()
  const status = await write
  t.ok(status !== undefined && status >= 200 && status < 300, `the write during the move was acknowledged (${String(status)})`)
  t.match(rec, { result: 'ok', error: null }, `the move completed (${String(rec.error)})`)
  t.equal(copies, 1, 'the source\'s older bytes were not copied onto the target again')
  t.same(await f.onTarget('/vol/blk'), { status: 200, body: V2.toString() }, 'the target holds the acknowledged write')
  t.same(await text(`${f.proxyUrl}/vol/blk`), { status: 200, body: V2.toString() }, 'a read through the proxy returns it, not the one before')
})

/**
 * A HEAD of the target that failed under load left the copy without a precondition: a write teed
 * to the target before the copy's PUT was overwritten by the source's older bytes. The target's
 * version is now read before it joins (no proxy sends it writes yet), retried while the gateway
 * fails, and a copy is never unconditional. Here the target's first HEAD is cut, and v2 reaches
 * the target between the copy's read of the source and its PUT while its way to the source is slow.
 */
t.test('a HEAD of the reference gateway target that fails is retried, and the copy stays conditional', async t => {
  let proxyUrl = ''
  let heads = 0
  let write: Promise<number> | undefined
  let onTarget: () => void = () => {}
  const v2OnTarget = new Promise<void>(resolve => { onTarget = resolve })
  let copyRead = false
  const f = await setup(t, {
    gw1: {
      hold: x => x.method === 'PUT' && x.body.equals(V2) ? new Promise<void>(resolve => setTimeout(resolve, 2500)) : undefined,
      after: x => {
        if (x.method !== 'GET' || x.path !== '/vol/blk' || copyRead) return undefined
        copyRead = true
        write = request(`${proxyUrl}/vol/blk`, { method: 'PUT', body: V2 }).then(async r => { await r.body.dump(); return r.statusCode })
        return Promise.race([v2OnTarget, new Promise<void>(resolve => setTimeout(resolve, 5000))])
      }
    },
    gw2: {
      hold: x => {
        if (x.method === 'HEAD' && x.path === '/vol/blk' && heads++ === 0) throw new Error('cut, as a timeout under load')
        return undefined
      },
      after: (x, status) => { if (x.method === 'PUT' && x.body.equals(V2) && status < 300) onTarget(); return undefined }
    }
  }, { kind: 'ferry' })
  proxyUrl = f.proxyUrl
  const rec = await f.move()
  t.ok(heads >= 2, `the target's HEAD was tried again (${heads})`)
  t.ok(copyRead, 'the copy read the source')
  const status = await write
  t.ok(status !== undefined && status >= 200 && status < 300, `the write during the move was acknowledged (${String(status)})`)
  t.match(rec, { result: 'ok', error: null }, `the move completed (${String(rec.error)})`)
  t.same(await f.onTarget('/vol/blk'), { status: 200, body: V2.toString() }, 'the target holds the acknowledged write')
  t.same(await text(`${f.proxyUrl}/vol/blk`), { status: 200, body: V2.toString() }, 'a read through the proxy returns it, not the one before')
})
