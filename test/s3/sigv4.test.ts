import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { PassThrough, Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { AwsChunkedDecoder, BodyCheck, type Trailers } from '../../proxy/s3/body.js'
import { S3Error } from '../../proxy/s3/errors.js'
import { parseSignature, signingKey, verifySignature } from '../../proxy/s3/sigv4.js'

/**
 * Known answers from AWS's own Signature Version 4 documentation for S3 ("Example: GET Object"
 * and "Transferring Payload in Multiple Chunks"): the verifier must accept exactly what AWS's
 * signers produce, and refuse any change.
 */

const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'

function fakeRequest (method: string, url: string, headers: Record<string, string>): IncomingMessage {
  return { method, url, headers } as unknown as IncomingMessage
}

t.test('GET Object example: the documented signature verifies; any change is SignatureDoesNotMatch', async t => {
  const headers = {
    host: 'examplebucket.s3.amazonaws.com',
    range: 'bytes=0-9',
    'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'x-amz-date': '20130524T000000Z',
    authorization: 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41'
  }
  const req = fakeRequest('GET', '/test.txt', headers)
  const sig = parseSignature(req, undefined)
  t.equal(sig?.accessKeyId, 'AKIAIOSFODNN7EXAMPLE')
  t.doesNotThrow(() => verifySignature(req, sig as NonNullable<typeof sig>, SECRET), 'AWS\'s signature verifies')
  for (const [what, r] of [
    ['another range', fakeRequest('GET', '/test.txt', { ...headers, range: 'bytes=0-10' })],
    ['another path', fakeRequest('GET', '/test2.txt', headers)],
    ['a query added', fakeRequest('GET', '/test.txt?x=1', headers)],
    ['another method', fakeRequest('HEAD', '/test.txt', headers)]
  ] as const) {
    t.throws(() => verifySignature(r, sig as NonNullable<typeof sig>, SECRET), { code: 'SignatureDoesNotMatch' }, what)
  }
  t.throws(() => verifySignature(req, sig as NonNullable<typeof sig>, SECRET + 'x'), { code: 'SignatureDoesNotMatch' }, 'another secret')
})

const chunkedHeaders = {
  host: 's3.amazonaws.com',
  'x-amz-date': '20130524T000000Z',
  'x-amz-storage-class': 'REDUCED_REDUNDANCY',
  'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  'content-encoding': 'aws-chunked',
  'x-amz-decoded-content-length': '66560',
  'content-length': '66824',
  authorization: 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9'
}
const SIGS = [
  'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648',
  '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
  'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9'
]

function chunkedBody (sigs: string[], sizes = [65536, 1024]): Buffer {
  const parts: Buffer[] = []
  sizes.forEach((n, i) => {
    parts.push(Buffer.from(`${n.toString(16)};chunk-signature=${sigs[i] ?? ''}\r\n`), Buffer.alloc(n, 'a'), Buffer.from('\r\n'))
  })
  parts.push(Buffer.from(`0;chunk-signature=${sigs[sizes.length] ?? ''}\r\n\r\n`))
  return Buffer.concat(parts)
}

async function decode (body: Buffer, sliceBy: number, truncateAt?: number): Promise<{ out: Buffer, err: unknown }> {
  const req = fakeRequest('PUT', '/examplebucket/chunkObject.txt', chunkedHeaders)
  const sig = parseSignature(req, undefined) as NonNullable<ReturnType<typeof parseSignature>>
  const key = verifySignature(req, sig, SECRET)
  const trailers: Trailers = { values: new Map() }
  const decoder = new AwsChunkedDecoder({ key, amzDate: sig.amzDate, scope: sig.scope, seed: sig.signature }, trailers, false)
  const check = new BodyCheck({ maxBytes: 1 << 20, length: 66560 })
  const sink = new PassThrough()
  const chunks: Buffer[] = []
  sink.on('data', (c: Buffer) => chunks.push(c))
  const input = truncateAt === undefined ? body : body.subarray(0, truncateAt)
  const pieces: Buffer[] = []
  for (let i = 0; i < input.length; i += sliceBy) pieces.push(input.subarray(i, i + sliceBy))
  let err: unknown
  await pipeline(Readable.from(pieces), decoder, check, sink).catch((e: unknown) => { err = e })
  return { out: Buffer.concat(chunks), err }
}

t.test('multiple-chunks example: seed and chunk signatures verify in any slicing; bad or missing ones stop the body', async t => {
  const body = chunkedBody(SIGS)
  t.equal(body.length, 66824, 'the documented framing length')
  for (const by of [1 << 20, 8192, 7]) {
    const { out, err } = await decode(body, by)
    t.equal(err, undefined, `no error, fed ${by} bytes at a time`)
    t.equal(out.length, 66560)
    t.ok(out.every(b => b === 0x61), 'the decoded bytes, framing removed')
  }
  const bad = await decode(chunkedBody([SIGS[0] as string, 'f'.repeat(64), SIGS[2] as string]), 4096)
  t.ok(bad.err instanceof S3Error && bad.err.code === 'SignatureDoesNotMatch', 'a wrong chunk signature fails the body')
  t.ok(bad.out.length < 66560, 'and the body never reaches its end downstream')
  const last = await decode(chunkedBody([SIGS[0] as string, SIGS[1] as string, 'e'.repeat(64)]), 4096)
  t.ok(last.err instanceof S3Error && last.err.code === 'SignatureDoesNotMatch', 'a wrong final signature fails the body')
  t.ok(last.out.length < 66560, 'held back: the last piece is not released')
  const truncated = await decode(body, 4096, 40_000)
  t.ok(truncated.err instanceof S3Error && truncated.err.code === 'IncompleteBody', 'a truncated body is IncompleteBody')
})

t.test('signing keys are per secret and scope', async t => {
  t.not(signingKey('a-secret', '20130524/us-east-1/s3/aws4_request').toString('hex'), signingKey('b-secret', '20130524/us-east-1/s3/aws4_request').toString('hex'))
  t.equal(signingKey('a-secret', '20130524/us-east-1/s3/aws4_request').toString('hex'), signingKey('a-secret', '20130524/us-east-1/s3/aws4_request').toString('hex'))
})
