import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Agent, request } from 'undici'
import { parseConfig } from '../../config/load.js'
import type { FerryConfig } from '../../config/schema.js'
import { gatewaySchema, type GatewayConfig } from '../../fleet/schema.js'
import { createStore } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { listBlocks } from '../../upstream/inventory.js'
import { gatewayDispatcher, s3Signer } from '../../upstream/s3.js'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig, type ProxyUnderTest } from '../helpers/ferry.js'
import { radosgwAvailable, startRadosgw, type RadosgwGateway } from '../helpers/radosgw.js'
import { startPlanner, waitEnded, waitLeader } from '../planner/migration/harness.js'
import { waitFor } from '../helpers/net.js'
import { startRedis } from '../helpers/redis.js'

/**
 * The `s3` gateway kind against a real S3 gateway: radosgw (Ceph 16.2) on a private single-node
 * cluster (test/helpers/radosgw.ts), beside a reference gateway, behind a real proxy and planner.
 * ferry signs every request to it with SigV4; the bucket holds volume `vol`'s block `b` at key
 * `ferry/vol/b` (prefix `ferry/`).
 */
const probe = await radosgwAvailable()
const skip = probe.ok ? false : probe.reason

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex')
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

interface Fleet {
  config: FerryConfig
  store: StateStore
  rgw: RadosgwGateway
  ref: string
  s3gw: GatewayConfig
  proxy: ProxyUnderTest
  /** GET/HEAD/PUT straight to the bucket, signed as ferry signs (not through the proxy). */
  direct: (method: string, blockPath: string) => Promise<{ status: number, body: Buffer, etag: string | undefined, headers: Record<string, unknown> }>
}

async function fleet (t: Test): Promise<Fleet> {
  const rgw = await startRadosgw()
  t.teardown(rgw.stop)
  const refs = await startGateways(1)
  t.teardown(refs.stopAll)
  const secretDir = await mkdtemp(path.join(os.tmpdir(), 'ferry-s3-secret-'))
  t.teardown(() => rm(secretDir, { recursive: true, force: true }))
  const secretFile = path.join(secretDir, 'secret')
  await writeFile(secretFile, rgw.secret + '\n', { mode: 0o600 })
  const ref = refs.urls[0] as string
  const config = testConfig([ref, rgw.url], {
    gateways: [
      { id: 'gw1', url: ref, kind: 'ferry', site: 'site-a' },
      { id: 'gw2', url: rgw.url, kind: 's3', site: 'site-b', s3: { bucket: 'ferry-blocks', prefix: 'ferry/', region: rgw.region, accessKeyId: rgw.accessKeyId, secretFile } }
    ]
  })
  const s3gw = config.gateways[1] as GatewayConfig
  // The bucket is the operator's to create (upstream/README.md); done here with ferry's own signer.
  const signer = s3Signer(s3gw)
  const mk = signer.sign({ method: 'PUT', path: signer.bucketPath('') })
  const created = await request(rgw.url + mk.path, { method: 'PUT', headers: mk.headers as Record<string, string> })
  await created.body.dump()
  t.equal(created.statusCode, 200, 'bucket created')

  const store = createStore(config.state)
  t.teardown(() => store.close())
  const proxy = await startProxy(config, { store })
  t.teardown(proxy.stop)
  const agent = new Agent()
  t.teardown(() => agent.close())
  const pool = gatewayDispatcher(s3gw, agent)
  const direct: Fleet['direct'] = async (method, blockPath) => {
    const r = await pool.request({ origin: rgw.url, method: method as 'GET', path: blockPath })
    const body = Buffer.from(await r.body.arrayBuffer())
    return { status: r.statusCode, body, etag: r.headers.etag as string | undefined, headers: r.headers }
  }
  return { config, store, rgw, ref, s3gw, proxy, direct }
}

async function through (url: string, method: string, body?: Buffer): Promise<{ status: number, body: Buffer, etag: string | undefined }> {
  const r = await request(url, { method: method as 'GET', ...(body === undefined ? {} : { body }) })
  const b = Buffer.from(await r.body.arrayBuffer())
  return { status: r.statusCode, body: b, etag: r.headers.etag as string | undefined }
}

t.test('s3 gateway kind against radosgw', { skip }, async t => {
  const f = await fleet(t)

  await t.test('PUT, GET, HEAD, DELETE through the proxy land on the S3 gateway', async t => {
    t.ok((await f.store.casLocation('vol', 'p1', 0, { gateway: 'gw2' })).ok, 'the block is placed on gw2')
    const body = randomBytes(200_000)
    const put = await through(`${f.proxy.url}/vol/p1`, 'PUT', body)
    t.ok(put.status === 200 || put.status === 201, `PUT through the proxy (${put.status})`)
    const onS3 = await f.direct('GET', '/vol/p1')
    t.equal(onS3.status, 200, 'the object is in the bucket at ferry/vol/p1')
    t.equal(md5(onS3.body), md5(body), 'with the bytes written')
    t.equal(onS3.etag, `"${md5(body)}"`, 'and S3\'s MD5 ETag')
    const got = await through(`${f.proxy.url}/vol/p1`, 'GET')
    t.equal(got.status, 200)
    t.equal(sha256(got.body), sha256(body), 'GET through the proxy returns the bytes')
    const head = await through(`${f.proxy.url}/vol/p1`, 'HEAD')
    t.equal(head.status, 200, 'HEAD through the proxy')
    const del = await through(`${f.proxy.url}/vol/p1`, 'DELETE')
    t.ok(del.status === 204 || del.status === 200, `DELETE through the proxy (${del.status})`)
    t.equal((await f.direct('HEAD', '/vol/p1')).status, 404, 'gone from the bucket')
  })

  await t.test('moves reference → s3 → reference with a writer and a reader running: 0 lost, bytes checked', async t => {
    const p = await startPlanner(t, f.config, f.store, { migration: { copyTimeoutMs: 20_000 } })
    await waitLeader(p)
    const first = randomBytes(300_000)
    t.ok((await f.store.casLocation('vol', 'hot', 0, { gateway: 'gw1' })).ok)
    t.equal((await through(`${f.proxy.url}/vol/hot`, 'PUT', first)).status, 201, 'written to the reference gateway')
    // Every body the writer sent, added before it is sent: a read may return a write still in flight.
    const written = new Set<string>([sha256(first)])
    let last = sha256(first)
    let running = true
    let writes = 0
    let reads = 0
    const badReads: string[] = []
    const failedWrites: string[] = []
    const writer = (async () => {
      while (running) {
        const body = randomBytes(50_000 + Math.floor(Math.random() * 200_000))
        const h = sha256(body)
        written.add(h)
        const r = await through(`${f.proxy.url}/vol/hot`, 'PUT', body).catch((err: Error) => ({ status: 0, body: Buffer.from(err.message), etag: undefined }))
        if (r.status === 200 || r.status === 201 || r.status === 204) { last = h; writes++ } else failedWrites.push(`${r.status} ${r.body.toString().slice(0, 200)}`)
      }
    })()
    const reader = (async () => {
      while (running) {
        const r = await through(`${f.proxy.url}/vol/hot`, 'GET').catch(() => null)
        if (r === null) continue
        reads++
        if (r.status !== 200) badReads.push(`status ${r.status}`)
        else if (!written.has(sha256(r.body))) badReads.push(`bytes nobody wrote (${r.body.length})`)
      }
    })()
    for (const to of ['gw2', 'gw1'] as const) {
      const { migrations } = await p.move({ volume: 'vol', block: 'hot', to })
      const rec = await waitEnded(p, migrations[0]!.id, 30_000)
      t.equal(rec.result, 'ok', `the move to ${to} completed (${String(rec.error)})`)
      t.match(await f.store.getLocation('vol', 'hot'), { gateway: to }, `the block is on ${to}`)
    }
    running = false
    await Promise.all([writer, reader])
    t.ok(writes > 0 && reads > 0, `the writer (${writes}) and reader (${reads}) ran`)
    t.same(failedWrites, [], 'no write failed')
    t.same(badReads, [], 'every read returned bytes that were written')
    const final = await through(`${f.proxy.url}/vol/hot`, 'GET')
    t.equal(sha256(final.body), last, 'the last acknowledged write is what is read: nothing lost')

    // One more move onto s3 and stop there: the copy keeps its original's written-at as metadata.
    const { migrations } = await p.move({ volume: 'vol', block: 'hot', to: 'gw2' })
    t.equal((await waitEnded(p, migrations[0]!.id, 30_000)).result, 'ok')
    const onS3 = await f.direct('HEAD', '/vol/hot')
    t.equal(onS3.etag, `"${md5(final.body)}"`, 'the S3 gateway holds the last bytes (MD5 ETag)')
    t.ok(Number(onS3.headers['x-amz-meta-ferry-written-at']) > 0, 'with the original\'s written-at kept in x-amz-meta-ferry-written-at')
  })

  await t.test('inventory lists the bucket (ListObjectsV2, paged) for the store-rebuild path', async t => {
    const bodies = new Map<string, Buffer>()
    for (let i = 0; i < 5; i++) {
      const b = randomBytes(1000 + i)
      bodies.set(`inv${i}`, b)
    }
    // Written straight to the bucket with ferry's signer, as the proxy writes.
    const agent = new Agent()
    t.teardown(() => agent.close())
    const pool = gatewayDispatcher(f.s3gw, agent)
    for (const [name, b] of bodies) {
      const r = await pool.request({ origin: f.rgw.url, method: 'PUT', path: `/iv/${name}`, body: b, headers: { 'content-length': String(b.length) } })
      await r.body.dump()
      t.equal(r.statusCode, 200)
    }
    const listed = []
    for await (const e of listBlocks(f.s3gw)) listed.push(e)
    const iv = listed.filter(e => e.volume === 'iv').sort((a, b) => a.block < b.block ? -1 : 1)
    t.same(iv.map(e => [e.block, e.size, e.etag]), [...bodies].map(([n, b]) => [n, b.length, `"${md5(b)}"`]), 'every block with its size and MD5 ETag')
    t.ok(iv.every(e => Math.abs(e.modifiedAt - Date.now()) < 120_000), 'modifiedAt is the PUT time')
    t.ok(listed.some(e => e.volume === 'vol' && e.block === 'hot'), 'the moved block is listed too')
  })
})

t.test('a store that comes back empty is rebuilt from the S3 gateway\'s inventory', { skip }, async t => {
  const rgw = await startRadosgw()
  t.teardown(rgw.stop)
  const refs = await startGateways(1)
  t.teardown(refs.stopAll)
  const redis = await startRedis({ persistent: false })
  t.teardown(() => redis.stop())
  process.env.FERRY_TEST_RGW_SECRET = rgw.secret
  t.teardown(() => { delete process.env.FERRY_TEST_RGW_SECRET })
  const ref = refs.urls[0] as string
  const config = testConfig([ref, rgw.url], {
    // The rebuild reads the gateways cutOffServeMs (plus 1 s) after the store came back.
    state: { backend: 'redis', url: redis.url, cutOffServeMs: 3000 },
    gateways: [
      { id: 'gw1', url: ref, kind: 'ferry', site: 'site-a' },
      { id: 'gw2', url: rgw.url, kind: 's3', site: 'site-b', s3: { bucket: 'rebuild', region: rgw.region, accessKeyId: rgw.accessKeyId, secretEnv: 'FERRY_TEST_RGW_SECRET' } }
    ]
  })
  const signer = s3Signer(config.gateways[1] as GatewayConfig)
  const mk = signer.sign({ method: 'PUT', path: signer.bucketPath('') })
  await (await request(rgw.url + mk.path, { method: 'PUT', headers: mk.headers as Record<string, string> })).body.dump()
  const a = await startProxy(config)
  t.teardown(a.stop)
  await waitFor(async () => a.node.store.status().ok && (await a.node.store.generation()).rebuilding === false, 'the first (empty) rebuild to finish', 15_000)
  const acked = new Map<string, { sha: string, on: string }>()
  for (let i = 0; i < 12; i++) {
    const on = i % 3 === 0 ? 'gw1' : 'gw2'
    t.ok((await a.node.store.casLocation('rv', `b${i}`, 0, { gateway: on })).ok)
    const body = randomBytes(3000 + i * 1000)
    const r = await through(`${a.url}/rv/b${i}`, 'PUT', body)
    t.ok(r.status < 300, `b${i} written on ${on} (${r.status})`)
    acked.set(`b${i}`, { sha: sha256(body), on })
  }
  const before = (await a.node.store.generation()).id
  await redis.kill()
  await redis.restart()
  await waitFor(async () => {
    const g = await a.node.store.generation().catch(() => null)
    return g !== null && g.id !== before && !g.rebuilding
  }, 'the rebuild after the loss', 30_000)
  for (const [block, { sha, on }] of acked) {
    t.equal((await a.node.store.getLocation('rv', block))?.gateway, on, `${block} located on ${on} again`)
    const got = await through(`${a.url}/rv/${block}`, 'GET')
    t.equal(got.status === 200 ? sha256(got.body) : got.status, sha, `${block} reads back its bytes`)
  }
})

t.test('the config asks an s3 gateway for its s3 section, and no other kind', async t => {
  const gw = { id: 'g', url: 'http://127.0.0.1:1', site: 's' }
  const s3 = { bucket: 'ferry-blocks', accessKeyId: 'KEY', secretEnv: 'FERRY_TEST_S3_SECRET' }
  t.match(gatewaySchema.safeParse({ ...gw, kind: 's3' }).error?.issues[0], { path: ['s3'], message: /needs an s3 section/ })
  t.match(gatewaySchema.safeParse({ ...gw, kind: 'ferry', s3 }).error?.issues[0], { path: ['s3'], message: /only for gateways of kind s3/ })
  t.match(gatewaySchema.safeParse({ ...gw, kind: 's3', s3: { ...s3, secret: 'inline-secret' } }).error?.issues[0], { message: /exactly one of secret, secretFile, secretEnv/ })
  t.match(gatewaySchema.safeParse({ ...gw, kind: 's3', s3: { ...s3, prefix: '/abs' } }).error?.issues[0], { path: ['s3', 'prefix'] })
  const ok = gatewaySchema.parse({ ...gw, kind: 's3', s3 })
  t.match(ok.s3, { bucket: 'ferry-blocks', prefix: '', region: 'us-east-1' })
  t.throws(() => s3Signer(ok), { code: 'FERRY_CONFIG_INVALID' }, 'an unset secretEnv is a typed error')
  process.env.FERRY_TEST_S3_SECRET = 'the-secret-value'
  const signed = s3Signer(ok).sign({ method: 'GET', path: '/ferry-blocks/v/b', headers: { authorization: 'AWS4-HMAC-SHA256 client', 'x-amz-date': 'x' } })
  t.match(signed.headers, { authorization: /^AWS4-HMAC-SHA256 Credential=KEY\/\d{8}\/us-east-1\/s3\/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=[0-9a-f]{64}$/ }, 'the client\'s signature is replaced by ferry\'s')
  delete process.env.FERRY_TEST_S3_SECRET
})

t.test('a config whose s3 gateway secret cannot be read is refused, at load and so on reload', async t => {
  const text = (secret: string): string => `
sites: [{ name: s }]
gateways:
  - id: g
    url: http://127.0.0.1:1
    site: s
    kind: s3
    s3: { bucket: ferry-blocks, accessKeyId: KEY, ${secret} }
`
  t.throws(() => parseConfig(text('secretFile: /nonexistent/ferry-secret')), { message: /gateways\[0\]\.s3\.secretFile: .*cannot read s3\.secretFile/s })
  t.throws(() => parseConfig(text('secretEnv: FERRY_TEST_UNSET_SECRET')), { message: /gateways\[0\]\.s3\.secretEnv: .*is not set/s })
  t.match(parseConfig(text('secret: inline-secret-1')).gateways[0], { kind: 's3', s3: { bucket: 'ferry-blocks' } })
})
