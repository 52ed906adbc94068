/**
 * An S3 upload's MD5 (its ETag) and the digests its client declared (the signed
 * x-amz-content-sha256, Content-MD5) are computed by the gateways that store the body once every
 * one of them has shown it checks them (lib/block-headers.ts "Digests"); else by the proxy. Either
 * way a body that does not match is refused with S3's code and stored nowhere, and no member of
 * its replica set is demoted for refusing it.
 */
import { createHash } from 'node:crypto'
import t from 'tap'
import { request } from 'undici'
import { blockOfKey } from '../../lib/ids.js'
import { createStore } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { startGateways } from '../helpers/gateway.js'
import { nginxAvailable, startNginxGateway } from '../helpers/nginx.js'
import { signedHeaders } from '../helpers/s3.js'

const KEY = { accessKeyId: 'digest-key', secret: 'digest-secret-0123456789' }
const md5 = (s: string): string => createHash('md5').update(s).digest('hex')
const code = (xml: string): string | undefined => /<Code>([^<]+)<\/Code>/.exec(xml)?.[1]

async function uploadsBy (adminUrl: string): Promise<Record<string, number>> {
  const text = await (await request(`${adminUrl}/metrics`)).body.text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^ferry_s3_upload_digests_total\{by="(\w+)"\} (\d+)/gm)) out[m[1] as string] = Number(m[2])
  return out
}

function s3 (url: string) {
  const host = new URL(url).host
  /** A signed PUT whose signature covers `signedBody`; `body` is what is sent (a mismatch when they differ). */
  const put = async (target: string, body: string, signedBody = body, extra: Record<string, string> = {}): Promise<{ status: number, etag: string | undefined, text: string }> => {
    const headers = { ...signedHeaders({ method: 'PUT', url: target, host, ...KEY, body: signedBody }), ...extra }
    const r = await request(url + target, { method: 'PUT', headers, body })
    return { status: r.statusCode, etag: r.headers.etag as string | undefined, text: await r.body.text() }
  }
  const get = async (target: string): Promise<{ status: number, etag: string | undefined, text: string }> => {
    const r = await request(url + target, { headers: signedHeaders({ method: 'GET', url: target, host, ...KEY }) })
    return { status: r.statusCode, etag: r.headers.etag as string | undefined, text: await r.body.text() }
  }
  return { put, get }
}

t.test('replica sets of reference gateways: the gateways check and report, a mismatch stores nothing and demotes nobody', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, { replication: { factor: 2, minInSync: 2 }, s3: { credentials: [{ ...KEY, volumes: ['*'] }] } })
  const store = createStore(config.state) as StateStore
  t.teardown(() => store.close())
  const p = await startProxy(config, { store })
  t.teardown(p.stop)
  const { put, get } = s3(p.url)
  const onGateways = async (key: string): Promise<string[]> => {
    const out: string[] = []
    for (const url of gws.urls) {
      const r = await request(`${url}/dig/${blockOfKey(key)}`)
      out.push(r.statusCode === 200 ? await r.body.text() : (await r.body.dump(), '-'))
    }
    return out
  }

  let r = await put('/dig/first.txt', 'the first upload')
  t.equal(r.status, 200, 'a signed upload')
  t.equal(r.etag, `"${md5('the first upload')}"`, 'ETag: the MD5')
  t.same(await uploadsBy(p.adminUrl), { proxy: 1 }, 'hashed by the proxy while the gateways have not shown they check')
  for (const key of ['second.txt', 'dir/third.txt']) {
    r = await put(`/dig/${key}`, `body of ${key}`)
    t.equal(r.status, 200)
    t.equal(r.etag, `"${md5(`body of ${key}`)}"`, `${key}: the MD5 the gateways reported`)
    const back = await get(`/dig/${key}`)
    t.equal(back.text, `body of ${key}`)
    t.equal(back.etag, r.etag, 'read back with that ETag')
  }
  const by = await uploadsBy(p.adminUrl)
  t.ok((by.gateway ?? 0) >= 1, `then left to the gateways (${JSON.stringify(by)})`)

  r = await put('/dig/second.txt', 'a forged replacement', 'the body that was signed')
  t.equal(r.status, 400)
  t.equal(code(r.text), 'XAmzContentSHA256Mismatch', 'a body that is not the signed one')
  t.equal((await get('/dig/second.txt')).text, 'body of second.txt', 'the object keeps its bytes')
  t.notOk((await onGateways('second.txt')).includes('a forged replacement'), 'no gateway stored the forgery')
  r = await put('/dig/new.txt', 'a forged new object', 'the body that was signed')
  t.equal(code(r.text), 'XAmzContentSHA256Mismatch')
  t.same((await onGateways('new.txt')).filter(b => b !== '-'), [], 'a new key: stored nowhere')
  r = await put('/dig/md5.txt', 'checked bytes', 'checked bytes', { 'content-md5': createHash('md5').update('other').digest('base64') })
  t.equal(code(r.text), 'BadDigest', 'a Content-MD5 that does not match')
  t.same((await onGateways('md5.txt')).filter(b => b !== '-'), [], 'stored nowhere')

  const loc = await store.getLocation('dig', blockOfKey('second.txt'))
  t.equal(loc?.inSync.length, 2, 'both members are still in sync: refusing a bad body is not a failure')
  r = await put('/dig/second.txt', 'an honest replacement')
  t.equal(r.status, 200, 'the next honest upload is acknowledged (minInSync 2)')
  t.equal((await get('/dig/second.txt')).text, 'an honest replacement')
})

const probe = await nginxAvailable()

t.test('a gateway that does not check (nginx, even with the default kind): the proxy hashes and refuses', { skip: probe.ok ? false : probe.reason }, async t => {
  const a = await startNginxGateway()
  t.teardown(a.stop)
  // No `kind: webdav`: the kind's default is ferry, and nginx never shows it checks digests.
  const p = await startProxy(testConfig([a.url], { s3: { credentials: [{ ...KEY, volumes: ['*'] }] } }))
  t.teardown(p.stop)
  const { put, get } = s3(p.url)
  for (let i = 0; i < 3; i++) {
    const r = await put(`/ng/k${i}`, `bytes ${i}`)
    t.equal(r.status, 200)
    t.equal(r.etag, `"${md5(`bytes ${i}`)}"`, 'the MD5, computed by the proxy')
  }
  t.same(await uploadsBy(p.adminUrl), { proxy: 3 }, 'every upload hashed by the proxy')
  const r = await put('/ng/forged', 'a forged body', 'the signed body')
  t.equal(code(r.text), 'XAmzContentSHA256Mismatch', 'refused by the proxy')
  const direct = await request(`${a.url}/ng/forged`)
  await direct.body.dump()
  t.equal(direct.statusCode, 404, 'nginx never received the end of it')
  t.equal((await get('/ng/k1')).text, 'bytes 1')
})
