/**
 * The reference gateway checks the digests a PUT declares (Content-Digest sha-256, Content-MD5)
 * before it commits, and reports what it stored (Repr-Digest, with the MD5 when asked): the
 * S3 front end leaves a signed body's hashing to it (lib/block-headers.ts "Digests").
 */
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { request } from 'undici'
import { parseDigestField } from '../../lib/block-headers.js'
import { startGateways } from '../helpers/gateway.js'

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest()
const md5 = (b: Buffer): Buffer => createHash('md5').update(b).digest()
const field = (alg: string, d: Buffer): string => `${alg}=:${d.toString('base64')}:`

t.test('declared digests are checked before the commit; what was stored is reported', async t => {
  const g = await startGateways(1)
  t.teardown(g.stopAll)
  const base = g.urls[0] as string
  const body = randomBytes(200 * 1024)

  let r = await request(`${base}/v/ok`, { method: 'PUT', body, headers: { 'content-digest': field('sha-256', sha256(body)), 'content-md5': md5(body).toString('base64'), 'want-repr-digest': 'md5=1' } })
  await r.body.dump()
  t.equal(r.statusCode, 201, 'matching digests: stored')
  const reported = parseDigestField(r.headers['repr-digest'] as string)
  t.same(reported.get('sha-256'), sha256(body), 'Repr-Digest: the SHA-256 of what was stored')
  t.same(reported.get('md5'), md5(body), 'and its MD5, asked for')
  t.equal(r.headers.etag, `"${sha256(body).toString('hex')}"`, 'the ETag as ever')

  r = await request(`${base}/v/plain`, { method: 'PUT', body: 'no digests' })
  await r.body.dump()
  t.equal(r.headers['repr-digest'], undefined, 'a PUT that neither declares nor asks: no Repr-Digest')

  const other = Buffer.from('other bytes')
  for (const [name, headers, algorithm] of [
    ['a wrong Content-Digest', { 'content-digest': field('sha-256', sha256(other)) }, 'sha-256'],
    ['a wrong Content-MD5', { 'content-md5': md5(other).toString('base64') }, 'md5']
  ] as const) {
    r = await request(`${base}/v/ok`, { method: 'PUT', body: Buffer.from('a replacement that must not land'), headers })
    const answer = await r.body.json() as { error: { code: string } }
    t.equal(r.statusCode, 400, `${name}: 400`)
    t.equal(answer.error.code, 'DIGEST_MISMATCH')
    t.equal(r.headers['x-ferry-digest-mismatch'], algorithm, 'the header names the algorithm')
    const now = await request(`${base}/v/ok`)
    t.same(Buffer.from(await now.body.arrayBuffer()), body, `${name}: the block keeps its bytes`)
    r = await request(`${base}/v/new-${algorithm}`, { method: 'PUT', body: Buffer.from('x'), headers })
    await r.body.dump()
    t.equal(r.statusCode, 400)
    const absent = await request(`${base}/v/new-${algorithm}`)
    await absent.body.dump()
    t.equal(absent.statusCode, 404, `${name}: a new block is not created`)
  }

  for (const [name, headers] of [
    ['Content-Digest without sha-256', { 'content-digest': field('sha-512', randomBytes(64)) }],
    ['Content-Digest of the wrong length', { 'content-digest': field('sha-256', randomBytes(20)) }],
    ['Content-MD5 that is not base64 of 16 bytes', { 'content-md5': 'not-a-digest' }]
  ] as const) {
    r = await request(`${base}/v/bad-header`, { method: 'PUT', body: 'x', headers })
    const answer = await r.body.json() as { error: { code: string } }
    t.equal(r.statusCode, 400, name)
    t.equal(answer.error.code, 'INVALID_HEADER', `${name}: INVALID_HEADER`)
  }
})
