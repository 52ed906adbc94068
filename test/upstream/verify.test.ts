import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { MockAgent, Pool, request, type Dispatcher } from 'undici'
import { contentHashOf, digestClaims, judgeByEtag } from '../../upstream/kinds.js'
import { GatewayStatusError, verifyCopy, type CopyEvidence } from '../../upstream/verify.js'
import { nginxAvailable, startNginxGateway } from '../helpers/nginx.js'

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')
const md5 = (b: Buffer | string): string => createHash('md5').update(b).digest('hex')
const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64')

/** A gateway that must not be asked anything (proof came from the PUT's answer). */
function untouchable (): Dispatcher {
  const agent = new MockAgent()
  agent.disableNetConnect()
  return agent.get('http://gateway.invalid')
}

/** A gateway that answers one GET of `path`. */
function answering (path: string, status: number, body: Buffer | string, headers: Record<string, string> = {}): Dispatcher {
  const agent = new MockAgent()
  agent.disableNetConnect()
  const pool = agent.get('http://gateway.invalid')
  pool.intercept({ path, method: 'GET' }).reply(status, body, { headers })
  return pool
}

function evidence (over: Partial<CopyEvidence> & { sent: CopyEvidence['sent'] }): CopyEvidence {
  return {
    path: '/v/b',
    source: { kind: 'ferry', etag: null },
    target: { kind: 'webdav', dispatcher: untouchable() },
    putHeaders: {},
    signal: AbortSignal.timeout(5000),
    ...over
  }
}

t.test('which ETags prove content', async t => {
  const h = sha256('x')
  t.equal(contentHashOf('ferry', `"${h}"`), h, 'the reference gateway\'s strong ETag is the SHA-256')
  t.equal(contentHashOf('ferry', `W/"${h}"`), null, 'a weak one proves nothing')
  t.equal(contentHashOf('ferry', `"${h.toUpperCase()}"`), null, 'nor one in another form')
  t.equal(contentHashOf('ferry', '"6b12f2c7-6"'), null, 'nor an mtime-size one on a gateway configured as ferry')
  t.equal(contentHashOf('webdav', `"${h}"`), null, 'an nginx ETag never proves content, whatever it looks like')
  t.equal(contentHashOf('ferry', null), null)

  const then = { etag: '"65920080-4"', sha256: h }
  t.equal(judgeByEtag('webdav', '"65920080-4"', then), 'unproven', 'the same nginx ETag: only the bytes can tell')
  t.equal(judgeByEtag('webdav', '"65920081-4"', then), 'changed', 'another nginx ETag: a write landed')
  t.equal(judgeByEtag('webdav', null, then), 'unproven', 'no ETag: only the bytes can tell')
  t.equal(judgeByEtag('ferry', `"${h}"`, { etag: null, sha256: h }), 'same')
  t.equal(judgeByEtag('ferry', `"${sha256('y')}"`, { etag: `"${h}"`, sha256: h }), 'changed')
})

t.test('digest headers a response may carry', async t => {
  const s = sha256('block')
  const m = md5('block')
  t.same(digestClaims({ 'repr-digest': `sha-512=:AAAA:, sha-256=:${b64(s)}:` }), [{ algorithm: 'sha256', hex: s, header: 'repr-digest' }], 'RFC 9530, unknown algorithms skipped')
  t.same(digestClaims({ digest: `SHA-256=${b64(s)},MD5=${b64(m)}` }), [
    { algorithm: 'sha256', hex: s, header: 'digest' },
    { algorithm: 'md5', hex: m, header: 'digest' }
  ], 'RFC 3230')
  t.same(digestClaims({ 'content-md5': b64(m) }), [{ algorithm: 'md5', hex: m, header: 'content-md5' }])
  t.same(digestClaims({ 'repr-digest': 'sha-256=:c2hvcnQ=:', 'content-digest': `sha-256=:${b64(s)}:` }), [],
    'a digest of the wrong length is no claim; Content-Digest describes the answer\'s own body')
})

t.test('a copy is proved by what each kind can prove', async t => {
  const bytes = randomBytes(4096)
  const h = sha256(bytes)

  await t.rejects(verifyCopy(evidence({ sent: { sha256: h }, source: { kind: 'ferry', etag: `"${sha256('other')}"` } })),
    { code: 'FERRY_COPY_VERIFY_FAILED', message: /read from the source do not hash to its ETag/ }, 'a source read that does not match its content hash is not copied')

  t.same(await verifyCopy(evidence({ sent: { sha256: h }, target: { kind: 'ferry', dispatcher: untouchable() }, putHeaders: { etag: `"${h}"` } })),
    { method: 'etag', targetEtag: `"${h}"` }, 'reference gateway target: its PUT ETag, no read-back')
  await t.rejects(verifyCopy(evidence({ sent: { sha256: h }, target: { kind: 'ferry', dispatcher: untouchable() }, putHeaders: { etag: `"${sha256('corrupt')}"` } })),
    { code: 'FERRY_COPY_VERIFY_FAILED' }, 'a reference gateway that stored other bytes is caught')

  t.same(await verifyCopy(evidence({ sent: { sha256: h }, source: { kind: 'ferry', etag: `"${h}"` }, putHeaders: { 'repr-digest': `sha-256=:${b64(h)}:` } })),
    { method: 'digest', targetEtag: null }, 'a digest in the PUT answer proves it without reading back')
  await t.rejects(verifyCopy(evidence({ sent: { sha256: h }, putHeaders: { 'repr-digest': `sha-256=:${b64(sha256('corrupt'))}:` } })),
    { code: 'FERRY_COPY_VERIFY_FAILED', message: /repr-digest/ })
  await t.rejects(verifyCopy(evidence({ sent: { sha256: h, md5: md5(bytes) }, putHeaders: { 'content-md5': b64(md5('corrupt')) } })),
    { code: 'FERRY_COPY_VERIFY_FAILED', message: /content-md5/ }, 'Content-MD5 is checked when the copy computed MD5')

  const ok = answering('/v/b', 200, bytes, { etag: '"6b12f2c7-1000"' })
  t.same(await verifyCopy(evidence({ sent: { sha256: h }, source: { kind: 'ferry', etag: `"${h}"` }, target: { kind: 'webdav', dispatcher: ok }, putHeaders: { 'content-md5': b64(md5(bytes)) } })),
    { method: 'read-back', targetEtag: '"6b12f2c7-1000"' }, 'nginx target: read back and hashed; a Content-MD5 nobody computed proves nothing')
  const corrupt = Buffer.from(bytes)
  corrupt[100] = (corrupt[100] as number) ^ 0xff
  await t.rejects(verifyCopy(evidence({ sent: { sha256: h }, target: { kind: 'webdav', dispatcher: answering('/v/b', 200, corrupt) } })),
    { code: 'FERRY_COPY_VERIFY_FAILED', message: /differs from the bytes sent/ }, 'one flipped byte on the target is caught')
  await t.rejects(verifyCopy(evidence({ sent: { sha256: h }, target: { kind: 'webdav', dispatcher: answering('/v/b', 404, '') } })),
    { code: 'FERRY_COPY_VERIFY_FAILED', message: /404/ })
  const failed = verifyCopy(evidence({ sent: { sha256: h }, target: { kind: 'webdav', dispatcher: answering('/v/b', 503, '') } }))
  await t.rejects(failed, GatewayStatusError, 'a target failing the read-back proved nothing either way: a gateway failure, not a mismatch')
  await t.rejects(failed, { status: 503, code: 'HTTP_503' })
})

const nginx = await nginxAvailable()

t.test('against a real nginx: a read-back proves the copy, and catches one that differs', { skip: nginx.ok ? false : nginx.reason }, async t => {
  const gw = await startNginxGateway()
  t.teardown(gw.stop)
  const pool = new Pool(gw.url)
  t.teardown(() => pool.close())
  const bytes = randomBytes(300_000)
  await (await request(`${gw.url}/v/b`, { method: 'PUT', body: bytes })).body.dump()
  const head = await request(`${gw.url}/v/b`, { method: 'HEAD' })
  await head.body.dump()

  const proof = await verifyCopy(evidence({ sent: { sha256: sha256(bytes) }, target: { kind: 'webdav', dispatcher: pool } }))
  t.same(proof, { method: 'read-back', targetEtag: head.headers.etag }, 'verified by reading back; the ETag is nginx\'s for that version')
  await t.rejects(verifyCopy(evidence({ sent: { sha256: sha256(randomBytes(300_000)) }, target: { kind: 'webdav', dispatcher: pool } })),
    { code: 'FERRY_COPY_VERIFY_FAILED' }, 'bytes other than those sent are rejected')

})
