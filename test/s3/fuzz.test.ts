import t from 'tap'
import { randomBytes } from 'node:crypto'
import { request } from 'undici'
import { blockOfKey } from '../../lib/ids.js'
import { startGateways } from '../helpers/gateway.js'
import { collectEscapes, startProxy, testConfig } from '../helpers/ferry.js'
import { signedHeaders } from '../helpers/s3.js'

/**
 * Random S3 requests against a real proxy and real gateways (S3_FUZZ_N, default 10,000):
 * random methods, paths, query strings (subresources, part numbers, upload ids, list params),
 * headers (x-amz-*, ranges, conditions, digests, copy sources, aws-chunked), XML bodies and
 * truncated aws-chunked bodies; a share signed (with the right or a wrong secret) after the
 * mutation. Every answer must be a success or a well-formed S3 XML error (`<Error><Code>` with
 * x-amz-request-id), the proxy must keep answering, nothing may escape as an uncaught
 * exception, and an object whose PUT was not acknowledged must be on no gateway.
 */

const N = Number(process.env.S3_FUZZ_N ?? 10_000)
const escaped = collectEscapes(t)
const gws = await startGateways(2)
t.teardown(gws.stopAll)
const KEY = { accessKeyId: 'fuzz-key', secret: 'fuzz-secret-0123' }
// A high failure limit: the limiter has its own test; here every request should reach the adapter.
const p = await startProxy(testConfig(gws.urls, { s3: { credentials: [{ ...KEY, volumes: ['*'] }], anonymous: ['*'], authFailures: { limit: 1_000_000, windowMs: 1000 }, multipart: { minPartBytes: 0 } } }))
t.teardown(p.stop)
const host = new URL(p.url).host

let seed = 0x2545f491
function rnd (n: number): number { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) % n }
function pick<T> (xs: readonly T[]): T { return xs[rnd(xs.length)] as T }

const METHODS = ['GET', 'PUT', 'HEAD', 'DELETE', 'POST', 'OPTIONS', 'PATCH'] as const
const KEYS = ['a', 'dir/b.txt', 'ünï/✓', '%', '%zz', '..', '../x', 'x'.repeat(1100), '', 'a b', 'a+b', '_k.x', '\u0000', '%00', 'é%C3']
const QUERIES = ['', '?uploads', '?uploadId=0123456789abcdef0123456789abcdef&partNumber=1', '?uploadId=zz&partNumber=0', '?partNumber=99999',
  '?list-type=2&max-keys=-1', '?list-type=2&continuation-token=%%%', '?list-type=2&delimiter=/&prefix=dir/', '?delete', '?acl', '?tagging',
  '?location', '?versioning', '?encoding-type=bad', '?marker=a&max-keys=2', '?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=0',
  '?AWSAccessKeyId=a&Signature=b', '?x-id=PutObject', '?%', '?a=%E0%A4%A']
const HEADERS: Array<Record<string, string>> = [{}, { range: 'bytes=5-1' }, { range: 'bytes=-0' }, { range: 'bytes=0-' }, { 'if-match': '"nope"' },
  { 'if-none-match': '*' }, { 'content-md5': 'bad' }, { 'content-md5': '1B2M2Y8AsgTpgAmY7PhCfg==' }, { 'x-amz-checksum-crc32': 'AAAAAA==' },
  { 'x-amz-copy-source': '/fuzz/a' }, { 'x-amz-copy-source': 'nobucket' }, { 'x-amz-copy-source-range': 'bytes=0-9', 'x-amz-copy-source': 'fuzz/a' },
  { 'x-amz-meta-big': 'm'.repeat(4000) }, { 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': '10', 'x-amz-trailer': 'x-amz-checksum-crc32' },
  { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': '5' }, { 'x-amz-metadata-directive': 'REPLACE', 'x-amz-copy-source': 'fuzz/a' },
  { authorization: 'AWS4-HMAC-SHA256 Credential=x' }, { authorization: 'AWS abc:def' }, { 'x-amz-date': 'yesterday' }]
const BODIES: Array<string | Buffer | undefined> = [undefined, '', 'hello', '<Delete><Object><Key>a</Key></Object></Delete>', '<Delete><Object><Key>a</Key></Delete>',
  '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]><Delete/>', '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"x"</ETag></Part></CompleteMultipartUpload>',
  '5\r\nhello\r\n0\r\n\r\n', '5\r\nhel', 'a;chunk-signature=zz\r\n0123456789\r\n', 'zz\r\n', '5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n']

function enc (key: string): string { return key.split('/').map(s => rnd(4) === 0 ? s : encodeURIComponent(s)).join('/') }

interface Outcome { status: number, wellFormed: boolean, why: string }

const unacknowledged: string[] = []
async function one (i: number): Promise<Outcome> {
  const method = pick(METHODS)
  const fresh = `fz/${i}`
  const key = rnd(3) === 0 ? fresh : pick(KEYS)
  const bucket = pick(['fuzz', 'fuzz', 'Bad_Bucket!', 'x'.repeat(200)])
  const url = `/${bucket}/${enc(key)}${pick(QUERIES)}`
  const headers: Record<string, string> = { ...pick(HEADERS) }
  let body = method === 'GET' || method === 'HEAD' ? undefined : pick(BODIES)
  if (body === undefined && method === 'PUT' && rnd(2) === 0) body = randomBytes(rnd(3000))
  const signed = rnd(3)
  if (signed > 0) {
    try {
      Object.assign(headers, signedHeaders({ method, url, host, accessKeyId: KEY.accessKeyId, secret: signed === 1 ? KEY.secret : 'wrong-secret-0000', ...(body !== undefined ? { body } : {}) }))
    } catch {
      // A URL no client could sign (bad percent-encoding): sent with a signature of nothing.
      headers.authorization = `AWS4-HMAC-SHA256 Credential=${KEY.accessKeyId}/20260101/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=${'0'.repeat(64)}`
      headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD'
    }
  }
  // One field mutated after signing, sometimes.
  if (signed > 0 && rnd(2) === 0) headers[pick(['x-amz-date', 'x-amz-content-sha256', 'host', 'authorization'])] = pick(['', 'x', '20200101T000000Z', 'UNSIGNED-PAYLOAD'])
  let status = 0
  let text = ''
  let rid: unknown
  let ctype: unknown
  try {
    const r = await request(p.url + url, { method, headers, ...(body !== undefined ? { body } : {}), headersTimeout: 20_000, bodyTimeout: 20_000 })
    status = r.statusCode
    rid = r.headers['x-amz-request-id']
    ctype = r.headers['content-type']
    text = await r.body.text()
  } catch (err) {
    // The proxy may cut a connection whose request body it refused: that is an answer, not a crash.
    return { status: 0, wellFormed: true, why: (err as Error).message }
  }
  if (method === 'PUT' && key === fresh && (status < 200 || status >= 300)) unacknowledged.push(`${bucket}\n${key}`)
  if (status < 400) return { status, wellFormed: true, why: '' }
  const isJson = String(ctype).startsWith('application/json')
  const ok = method === 'HEAD' ? true : isJson ? /"code":"FERRY_[A-Z_]+"/.test(text) : /^<\?xml[^>]*>\s*<Error><Code>[A-Za-z]+<\/Code><Message>/.test(text) && rid !== undefined
  return { status, wellFormed: ok, why: `${method} ${url.slice(0, 120)} → ${status} ${text.slice(0, 200)}` }
}

t.test(`${N} random S3 requests: each a success or a well-formed error, nothing stored half-way, no exit`, async t => {
  const bad: string[] = []
  const statuses = new Map<number, number>()
  let next = 0
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < N) {
      const o = await one(next++)
      statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1)
      if (!o.wellFormed) bad.push(o.why)
    }
  }))
  t.comment(`statuses: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')}`)
  t.same(bad.slice(0, 10), [], `every error answer is well-formed (${bad.length} not)`)
  const alive = await request(`${p.url}/fuzz/after?x-id=GetObject`)
  await alive.body.dump()
  t.ok(alive.statusCode === 404 || alive.statusCode === 200, 'the proxy still answers')
  let stored = 0
  for (const e of unacknowledged) {
    const [bucket, key] = e.split('\n') as [string, string]
    for (const url of gws.urls) {
      const r = await request(`${url}/${bucket}/${blockOfKey(key)}`, { method: 'HEAD' }).catch(() => undefined)
      await r?.body.dump()
      if (r?.statusCode === 200) stored++
    }
  }
  t.equal(stored, 0, `none of the ${unacknowledged.length} unacknowledged PUTs left its object on a gateway`)
  t.same(escaped, [], 'no uncaught exception')
})
