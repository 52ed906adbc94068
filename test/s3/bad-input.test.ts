import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { blockOfKey } from '../../lib/ids.js'
import { startGateways } from '../helpers/gateway.js'
import { collectEscapes, startProxy, testConfig } from '../helpers/ferry.js'

/**
 * Bad S3 input against a real proxy and real gateways: each gets its S3 error as XML, nothing is
 * stored half-way (a HEAD afterwards is 404 and no gateway holds the block), no process exits.
 * Unsigned requests (no credentials configured: every volume is anonymous) so that the input
 * can be anything; signing is covered by sigv4.test.ts and the real clients.
 */

const escaped = collectEscapes(t)
const gws = await startGateways(2)
t.teardown(gws.stopAll)
const p = await startProxy(testConfig(gws.urls, { s3: { multipart: { minPartBytes: 0 } } }))
t.teardown(p.stop)
const base = p.url

async function call (method: string, target: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<{ status: number, text: string, headers: Record<string, unknown> }> {
  const r = await request(base + target, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) })
  return { status: r.statusCode, text: await r.body.text(), headers: r.headers }
}

async function onAnyGateway (volume: string, key: string): Promise<boolean> {
  for (const url of gws.urls) {
    const r = await request(`${url}/${volume}/${blockOfKey(key)}`, { method: 'HEAD' })
    await r.body.dump()
    if (r.statusCode === 200) return true
  }
  return false
}

function code (text: string): string | undefined {
  return /<Code>([^<]+)<\/Code>/.exec(text)?.[1]
}

t.test('a round trip first: keys with / and any character, to every gateway kind of path', async t => {
  for (const key of ['plain-id', 'dir/sub/file.txt', 'ünï cödé/✓ #?%&+=.txt', '_k.reserved', 'x'.repeat(1024)]) {
    const target = '/vol/' + key.split('/').map(encodeURIComponent).join('/')
    const put = await call('PUT', target + '?x-id=PutObject', { 'content-type': 'text/plain' }, `body of ${key.slice(0, 20)}`)
    t.equal(put.status, 200, `PUT ${key.slice(0, 30)}`)
    t.equal(put.headers.etag, `"${createHash('md5').update(`body of ${key.slice(0, 20)}`).digest('hex')}"`, 'ETag is the MD5')
    const get = await call('GET', target + '?x-id=GetObject')
    t.equal(get.text, `body of ${key.slice(0, 20)}`)
  }
  const vhost = await call('GET', '/dir/sub/file.txt?x-id=GetObject', { host: `vol.${p.config.dns.zone}:${new URL(base).port}` })
  t.equal(vhost.text, 'body of dir/sub/file.txt', 'virtual-hosted style: Host: <bucket>.<zone>')
  const list = await call('GET', '/vol?list-type=2&encoding-type=url')
  t.match(list.text, /<Key>%C3%BCn%C3%AF%20c%C3%B6d%C3%A9\/%E2%9C%93%20%23%3F%25%26%2B%3D.txt<\/Key>/, 'encoding-type=url')
})

t.test('bad input gets S3 errors and stores nothing', async t => {
  let r = await call('POST', '/vol?delete', { 'content-type': 'application/xml' }, '<Delete><Object><Key>a</Key></Object>')
  t.equal(r.status, 400)
  t.equal(code(r.text), 'MalformedXML', 'malformed XML')
  t.match(r.headers['x-amz-request-id'], /^[0-9A-F]{16}$/, 'x-amz-request-id')
  r = await call('POST', '/vol?delete', {}, '<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><Delete><Object><Key>&b;</Key></Object></Delete>')
  t.equal(r.status, 400, 'entity definitions are refused, not expanded')

  r = await call('PUT', '/vol/meta?x-id=PutObject', { 'x-amz-meta-big': 'v'.repeat(3000) }, 'data')
  t.equal(code(r.text), 'MetadataTooLarge')
  t.equal((await call('HEAD', '/vol/meta?x')).status, 404, 'nothing stored')

  r = await call('GET', '/vol/%FF%FE?x')
  t.equal(code(r.text), 'InvalidURI', 'a key that is not UTF-8')
  r = await call('GET', '/vol/' + 'k'.repeat(1025) + '?x')
  t.equal(code(r.text), 'KeyTooLongError', 'a key over 1,024 bytes')
  r = await call('GET', '/bad%20bucket/k?x')
  t.equal(code(r.text), 'InvalidBucketName', 'a bucket that is not a volume id')

  r = await call('PUT', '/vol/md5?x', { 'content-md5': createHash('md5').update('other').digest('base64') }, 'data')
  t.equal(code(r.text), 'BadDigest', 'Content-MD5 mismatch')
  t.equal((await call('HEAD', '/vol/md5?x')).status, 404, 'nothing stored')
  t.notOk(await onAnyGateway('vol', 'md5'), 'no gateway holds the block')

  r = await call('PUT', '/vol/crc?x', { 'x-amz-checksum-crc32': 'AAAAAA==' }, 'data')
  t.equal(code(r.text), 'BadDigest', 'x-amz-checksum-crc32 mismatch')
  t.notOk(await onAnyGateway('vol', 'crc'))
  r = await call('PUT', '/vol/crc-ok?x', { 'x-amz-checksum-crc32': Buffer.from([0xad, 0xf3, 0xf3, 0x63]).toString('base64') }, 'data')
  t.equal(r.status, 200, 'the right CRC32 is accepted')

  // aws-chunked, unsigned with a trailer, cut short: the decoder never sees the final chunk.
  const chunked = { 'content-encoding': 'aws-chunked', 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'x-amz-decoded-content-length': '100', 'x-amz-trailer': 'x-amz-checksum-crc32' }
  r = await call('PUT', '/vol/chunked?x', chunked, '64\r\n' + 'a'.repeat(50))
  t.equal(code(r.text), 'IncompleteBody', 'a truncated aws-chunked body')
  t.notOk(await onAnyGateway('vol', 'chunked'), 'nothing stored')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(zlibCrc32(Buffer.alloc(100, 'a')))
  r = await call('PUT', '/vol/chunked?x', chunked, `64\r\n${'a'.repeat(100)}\r\n0\r\nx-amz-checksum-crc32:${crc.toString('base64')}\r\n\r\n`)
  t.equal(r.status, 200, 'the whole aws-chunked body with its trailer')
  t.equal((await call('GET', '/vol/chunked?x')).text, 'a'.repeat(100), 'stored without its framing')
  r = await call('PUT', '/vol/chunked2?x', chunked, `64\r\n${'a'.repeat(100)}\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n`)
  t.equal(code(r.text), 'BadDigest', 'a wrong trailing checksum')
  t.notOk(await onAnyGateway('vol', 'chunked2'))

  const up = await call('POST', '/vol/mp?uploads')
  const uploadId = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(up.text)?.[1] ?? ''
  for (const n of ['0', '10001', '-1', 'x']) {
    r = await call('PUT', `/vol/mp?partNumber=${n}&uploadId=${uploadId}`, {}, 'part')
    t.equal(code(r.text), 'InvalidArgument', `part number ${n}`)
  }
  r = await call('PUT', '/vol/mp?partNumber=1&uploadId=ffffffffffffffffffffffffffffffff', {}, 'part')
  t.equal(code(r.text), 'NoSuchUpload')
  r = await call('POST', `/vol/mp?uploadId=${uploadId}`, {}, '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"abc"</ETag></Part></CompleteMultipartUpload>')
  t.equal(code(r.text), 'InvalidPart', 'completing with a part never uploaded')
  t.equal((await call('HEAD', '/vol/mp?x')).status, 404, 'nothing stored')
  r = await call('GET', '/vol/missing?x')
  t.equal(code(r.text), 'NoSuchKey')
  r = await call('GET', '/nobucket?list-type=2')
  t.equal(code(r.text), 'NoSuchBucket')
  r = await call('GET', '/vol/crc-ok?x', { range: 'bytes=100-200' })
  t.equal(code(r.text), 'InvalidRange')
  t.equal(r.headers['content-range'], 'bytes */4')
})

t.test('multipart: parts, ranges across them, abort, and the sweep of abandoned uploads', async t => {
  const up = await call('POST', '/vol/multi/obj?uploads', { 'content-type': 'application/x-mp', 'x-amz-meta-k': 'v' })
  const uploadId = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(up.text)?.[1] ?? ''
  const parts = [Buffer.alloc(1000, 'a'), Buffer.alloc(1000, 'b'), Buffer.alloc(10, 'c')]
  const etags: string[] = []
  for (const [i, body] of parts.entries()) {
    const r = await call('PUT', `/vol/multi/obj?partNumber=${i + 1}&uploadId=${uploadId}`, {}, body)
    t.equal(r.status, 200)
    etags.push(String(r.headers.etag))
  }
  const listed = await call('GET', `/vol/multi/obj?uploadId=${uploadId}`)
  t.equal((listed.text.match(/<Part>/g) ?? []).length, 3, 'ListParts')
  const ups = await call('GET', '/vol?uploads')
  t.match(ups.text, new RegExp(`<UploadId>${uploadId}</UploadId>`), 'ListMultipartUploads')
  const xml = '<CompleteMultipartUpload>' + etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join('') + '</CompleteMultipartUpload>'
  const done = await call('POST', `/vol/multi/obj?uploadId=${uploadId}`, {}, xml)
  t.equal(done.status, 200)
  const md5s = Buffer.concat(etags.map(e => Buffer.from(e.replace(/"/g, ''), 'hex')))
  t.match(done.text, `<ETag>&quot;${createHash('md5').update(md5s).digest('hex')}-3&quot;</ETag>`, 'ETag: MD5 of the part MD5s, -3')
  const whole = Buffer.concat(parts)
  const get = await call('GET', '/vol/multi/obj?x')
  t.equal(get.text, whole.toString())
  t.equal(get.headers['content-type'], 'application/x-mp')
  t.equal(get.headers['x-amz-meta-k'], 'v')
  const cross = await call('GET', '/vol/multi/obj?x', { range: 'bytes=995-1004' })
  t.equal(cross.status, 206)
  t.equal(cross.text, 'aaaaabbbbb', 'a range across a part boundary')
  const p2 = await call('GET', '/vol/multi/obj?partNumber=2')
  t.equal(p2.text, 'b'.repeat(1000), 'GET ?partNumber=2')
  t.equal(p2.headers['x-amz-mp-parts-count'], '3')
  t.equal((await call('GET', `/vol/multi/obj?uploadId=${uploadId}`)).status, 404, 'the upload is gone once complete')

  const ab = await call('POST', '/vol/multi/aborted?uploads')
  const abortId = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(ab.text)?.[1] ?? ''
  await call('PUT', `/vol/multi/aborted?partNumber=1&uploadId=${abortId}`, {}, 'x')
  t.equal((await call('DELETE', `/vol/multi/aborted?uploadId=${abortId}`)).status, 204, 'AbortMultipartUpload')
  t.equal(code((await call('GET', `/vol/multi/aborted?uploadId=${abortId}`)).text), 'NoSuchUpload')

  const old = await call('POST', '/vol/multi/abandoned?uploads')
  const oldId = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(old.text)?.[1] ?? ''
  await call('PUT', `/vol/multi/abandoned?partNumber=1&uploadId=${oldId}`, {}, 'x')
  const s3 = p.node.proxy?.s3
  t.equal(await s3?.sweep(), 0, 'a fresh upload is not abandoned')
  p.node.reconfigure(testConfig(gws.urls, { s3: { multipart: { minPartBytes: 0, abandonAfterMs: 1 } } }))
  await new Promise(resolve => setTimeout(resolve, 5))
  t.ok((await s3?.sweep() ?? 0) >= 1, 'past multipart.abandonAfterMs it is aborted')
  t.equal(code((await call('GET', `/vol/multi/abandoned?uploadId=${oldId}`)).text), 'NoSuchUpload')
})

t.test('buckets and the plain API under configured credentials', async t => {
  const secretDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-s3-'))
  t.teardown(() => fs.rmSync(secretDir, { recursive: true, force: true }))
  const secretFile = path.join(secretDir, 'secret')
  fs.writeFileSync(secretFile, 'file-secret-0123456789\n')
  const cfg = testConfig(gws.urls, {
    s3: {
      credentials: [
        { accessKeyId: 'full-key', secretFile, volumes: ['*'] },
        { accessKeyId: 'one-volume', secret: 'one-volume-secret', volumes: ['allowed'] },
        { accessKeyId: 'reader', secret: 'reader-secret-123', volumes: ['*'], readOnly: true }
      ],
      anonymous: ['public']
    }
  })
  p.node.reconfigure(cfg)
  const plain = await call('PUT', '/private/blk', {}, 'x')
  t.equal(plain.status, 403, 'the plain API is refused on a volume not open to anonymous clients')
  t.match(plain.text, /FERRY_ACCESS_DENIED/)
  t.equal((await call('PUT', '/public/blk', {}, 'x')).status, 201, 'and served on one that is')
  t.equal(code((await call('GET', '/private/k?x')).text), 'AccessDenied', 'unsigned S3 on a closed volume')
  const hasBoto3 = await new Promise<boolean>(resolve => execFile('python3', ['-c', 'import boto3'], err => resolve(err === null)))
  if (!hasBoto3) { t.comment('python3-boto3 is not installed: the signed grants are checked by test/s3/clients.test.ts only'); return }
  const script = `
import boto3, sys
from botocore.config import Config
from botocore.exceptions import ClientError
def c(k, s):
    return boto3.client('s3', endpoint_url='${base}', region_name='us-east-1', aws_access_key_id=k, aws_secret_access_key=s,
                        config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
def code(f):
    try:
        f(); return 'ok'
    except ClientError as e:
        return e.response['Error']['Code']
full = c('full-key', 'file-secret-0123456789')
one = c('one-volume', 'one-volume-secret')
ro = c('reader', 'reader-secret-123')
print(code(lambda: full.put_object(Bucket='allowed', Key='a/b', Body=b'1')))
print(code(lambda: one.put_object(Bucket='allowed', Key='a/c', Body=b'1')))
print(code(lambda: one.put_object(Bucket='other', Key='a/c', Body=b'1')))
print(code(lambda: ro.get_object(Bucket='allowed', Key='a/b')))
print(code(lambda: ro.put_object(Bucket='allowed', Key='a/d', Body=b'1')))
print(sorted(b['Name'] for b in one.list_buckets()['Buckets']))
`
  const out = await new Promise<string>(resolve => execFile('python3', ['-c', script], { env: { ...process.env, AWS_CA_BUNDLE: '' } }, (_e, stdout, stderr) => resolve(String(stdout) + String(stderr))))
  t.same(out.trim().split('\n'), ['ok', 'ok', 'AccessDenied', 'ok', 'AccessDenied', "['allowed']"], 'grants: secret from a file, volumes, read-only; ListBuckets shows the granted ones')
  fs.writeFileSync(secretFile, 'rotated-secret-0123456789\n')
  p.node.reconfigure(cfg)
  const rotated = await new Promise<string>(resolve => execFile('python3', ['-c', script.replace('file-secret-0123456789', 'rotated-secret-0123456789')], { env: { ...process.env, AWS_CA_BUNDLE: '' } }, (_e, stdout) => resolve(String(stdout))))
  t.equal(rotated.split('\n')[0], 'ok', 'a reload reads the rotated secret file')
})

t.test('nothing escaped, the proxy still answers', async t => {
  t.same(escaped, [])
  const r = await request(`${p.adminUrl}/healthz`)
  t.equal(r.statusCode, 200)
  await r.body.dump()
})

function zlibCrc32 (b: Buffer): number {
  let c = 0xffffffff
  for (const x of b) {
    c ^= x
    for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? (c >>> 1) ^ 0xedb88320 : c >>> 1
  }
  return (c ^ 0xffffffff) >>> 0
}
