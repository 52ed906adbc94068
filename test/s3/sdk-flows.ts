import { createHash, randomBytes } from 'node:crypto'
import { promises as dns } from 'node:dns'
import http from 'node:http'
import https from 'node:https'
import type { LookupFunction } from 'node:net'
import { Readable } from 'node:stream'
import { crc32 } from 'node:zlib'
import type { Test } from 'tap'

/**
 * The AWS SDK for JavaScript v3 (`@aws-sdk/client-s3`, the current release from npm) against a
 * running ferry, with the SDK's defaults: flexible checksums on every upload (CRC32 in a header
 * for a buffer, an aws-chunked body with a trailing CRC32 for a stream), response checksums
 * validated when present. Used by clients.test.ts (HTTP, and a virtual-hosted client that finds
 * `<bucket>.<zone>` through ferry's DNS) and https-clients.test.ts (HTTPS).
 *
 * The SDK is a devDependency (npm ci installs it); it is loaded by name at run time so a checkout
 * whose node_modules predates it type-checks, and the flows skip saying so.
 */

// The few shapes of the SDK these flows touch (the SDK's own types are not needed to drive it).
type Output = Record<string, unknown> & { Body?: { transformToByteArray: () => Promise<Uint8Array> } }
interface SentRequest { request: { hostname: string, path: string, headers: Record<string, string> } }
interface MiddlewareStack { add: (mw: (next: (a: SentRequest) => Promise<unknown>) => (a: SentRequest) => Promise<unknown>, o: Record<string, unknown>) => void }
interface S3ClientLike { send: (command: unknown) => Promise<Output>, destroy: () => void }
type CommandClass = new (input: Record<string, unknown>) => unknown
interface Sdk {
  S3Client: new (cfg: Record<string, unknown>) => S3ClientLike
  [command: string]: unknown
}

const SDK_MODULE = '@aws-sdk/client-s3'

export async function loadSdk (): Promise<Sdk | string> {
  try {
    return await import(SDK_MODULE) as Sdk
  } catch (err) {
    return `${SDK_MODULE} is not installed (npm ci installs it): ${(err as Error).message.split('\n')[0] ?? ''}`
  }
}

export interface SdkTarget {
  /** http://127.0.0.1:port or https://127.0.0.1:port */
  endpoint: string
  accessKey: string
  secret: string
  /** PEM CA the proxy's certificate chains to (HTTPS). */
  ca?: string
  /** A bucket name not used by anything else against this ferry. */
  bucket: string
}

function crc32Base64 (b: Uint8Array): string {
  const out = Buffer.alloc(4)
  out.writeUInt32BE(crc32(b) >>> 0)
  return out.toString('base64')
}

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex')

/** An S3 error's code as the SDK reports it (the XML `<Code>`), or 'none'. */
async function errorName (p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'none'
  } catch (err) {
    return (err as { name?: string, Code?: string }).Code ?? (err as { name?: string }).name ?? String(err)
  }
}

function client (sdk: Sdk, target: SdkTarget, extra: Record<string, unknown> = {}): S3ClientLike {
  const agent = target.ca !== undefined ? { httpsAgent: new https.Agent({ ca: target.ca, keepAlive: true }) } : {}
  return new sdk.S3Client({
    endpoint: target.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKey, secretAccessKey: target.secret },
    maxAttempts: 1,
    ...(target.ca !== undefined ? { requestHandler: agent } : {}),
    ...extra
  })
}

/** Runs the flows as subtests of `t`; every assertion names the flow. */
export async function sdkFlows (t: Test, sdk: Sdk, target: SdkTarget): Promise<void> {
  const cmd = (name: string, input: Record<string, unknown>): unknown => new (sdk[name] as CommandClass)(input)
  const s3 = client(sdk, target)
  t.teardown(() => { s3.destroy() })
  // The headers of the last request sent, to show which framing the SDK's defaults chose.
  let sent: Record<string, string> = {}
  ;(s3 as S3ClientLike & { middlewareStack: MiddlewareStack }).middlewareStack.add(next => async args => { sent = { ...args.request.headers }; return await next(args) }, { step: 'finalizeRequest', name: 'ferryHeaderProbe' })
  const Bucket = target.bucket

  await s3.send(cmd('CreateBucketCommand', { Bucket }))
  t.ok(await s3.send(cmd('HeadBucketCommand', { Bucket })), 'CreateBucket, HeadBucket')

  // A buffer body: the SDK sends its CRC32 in x-amz-checksum-crc32 (default since 3.729).
  const small = randomBytes(100_003)
  const put = await s3.send(cmd('PutObjectCommand', {
    Bucket, Key: 'dir/small file.bin', Body: small, ContentType: 'application/x-ferry', Metadata: { colour: 'teal' }
  }))
  t.equal(put.ETag, `"${md5(small)}"`, 'PutObject (buffer): the ETag is the MD5')
  t.equal(put.ChecksumCRC32, crc32Base64(small), 'PutObject (buffer): the CRC32 the SDK sent was checked and echoed')

  // A stream body of known length: the SDK frames it aws-chunked with a trailing CRC32.
  const streamed = randomBytes(3 * 1024 * 1024 + 7)
  const sput = await s3.send(cmd('PutObjectCommand', {
    Bucket, Key: 'dir/streamed.bin', Body: Readable.from([streamed.subarray(0, 1_000_000), streamed.subarray(1_000_000)]), ContentLength: streamed.length
  }))
  t.same([sent['content-encoding'], sent['x-amz-trailer']], ['aws-chunked', 'x-amz-checksum-crc32'], `the SDK framed the stream aws-chunked with a trailing CRC32 (${sent['x-amz-content-sha256'] ?? ''})`)
  t.equal(sput.ETag, `"${md5(streamed)}"`, 'PutObject (stream, aws-chunked + trailer): the ETag is the MD5 of the decoded body')
  t.equal(sput.ChecksumCRC32, crc32Base64(streamed), 'PutObject (stream): the trailing CRC32 was checked and echoed')

  const got = await s3.send(cmd('GetObjectCommand', { Bucket, Key: 'dir/streamed.bin' }))
  t.ok(Buffer.from(await (got.Body as NonNullable<Output['Body']>).transformToByteArray()).equals(streamed), 'GetObject: the stored bytes are the body, not its framing')
  const ranged = await s3.send(cmd('GetObjectCommand', { Bucket, Key: 'dir/small file.bin', Range: 'bytes=10-19' }))
  t.same(Buffer.from(await (ranged.Body as NonNullable<Output['Body']>).transformToByteArray()), small.subarray(10, 20), 'GetObject with Range')
  t.equal(ranged.ContentRange, `bytes 10-19/${small.length}`, 'Content-Range')
  const head = await s3.send(cmd('HeadObjectCommand', { Bucket, Key: 'dir/small file.bin' }))
  t.same([head.ContentLength, head.ContentType, head.Metadata], [small.length, 'application/x-ferry', { colour: 'teal' }], 'HeadObject: size, Content-Type, metadata')

  // A checksum that does not match what the SDK sends: nothing is stored.
  const wrongSum = await errorName(s3.send(cmd('PutObjectCommand', { Bucket, Key: 'dir/never.bin', Body: small, ChecksumCRC32: 'AAAAAA==' })))
  t.match(wrongSum, /BadDigest|InvalidRequest|XAmzContentChecksumMismatch/, `a wrong x-amz-checksum-crc32 is refused (${wrongSum})`)
  t.equal(await errorName(s3.send(cmd('HeadObjectCommand', { Bucket, Key: 'dir/never.bin' }))), 'NotFound', 'and stores nothing')

  // Multipart: two parts (5 MiB and the rest), each with the SDK's default checksum.
  const big = randomBytes(5 * 1024 * 1024 + 333_333)
  const cut = 5 * 1024 * 1024
  const up = await s3.send(cmd('CreateMultipartUploadCommand', { Bucket, Key: 'dir/multi.bin' }))
  const UploadId = up.UploadId as string
  const parts: Array<{ PartNumber: number, ETag: string }> = []
  for (const [i, body] of [big.subarray(0, cut), big.subarray(cut)].entries()) {
    const p = await s3.send(cmd('UploadPartCommand', { Bucket, Key: 'dir/multi.bin', UploadId, PartNumber: i + 1, Body: body }))
    parts.push({ PartNumber: i + 1, ETag: p.ETag as string })
  }
  const listed = await s3.send(cmd('ListPartsCommand', { Bucket, Key: 'dir/multi.bin', UploadId }))
  t.equal((listed.Parts as unknown[]).length, 2, 'ListParts')
  const done = await s3.send(cmd('CompleteMultipartUploadCommand', { Bucket, Key: 'dir/multi.bin', UploadId, MultipartUpload: { Parts: parts } }))
  const want = md5(Buffer.concat([big.subarray(0, cut), big.subarray(cut)].map(b => createHash('md5').update(b).digest()))) + '-2'
  t.equal(done.ETag, `"${want}"`, 'CompleteMultipartUpload: the MD5-of-MD5s ETag')
  const across = await s3.send(cmd('GetObjectCommand', { Bucket, Key: 'dir/multi.bin', Range: `bytes=${cut - 5}-${cut + 4}` }))
  t.same(Buffer.from(await (across.Body as NonNullable<Output['Body']>).transformToByteArray()), big.subarray(cut - 5, cut + 5), 'a range across the part boundary')

  const lv2 = await s3.send(cmd('ListObjectsV2Command', { Bucket, Prefix: 'dir/', Delimiter: '/' }))
  t.same((lv2.Contents as Array<{ Key: string }>).map(o => o.Key), ['dir/multi.bin', 'dir/small file.bin', 'dir/streamed.bin'], 'ListObjectsV2')

  const copy = await s3.send(cmd('CopyObjectCommand', { Bucket, Key: 'copied/small.bin', CopySource: `${Bucket}/dir/small%20file.bin` }))
  t.equal((copy.CopyObjectResult as { ETag: string }).ETag, `"${md5(small)}"`, 'CopyObject')
  const del = await s3.send(cmd('DeleteObjectsCommand', { Bucket, Delete: { Objects: [{ Key: 'copied/small.bin' }, { Key: 'dir/multi.bin' }] } }))
  t.equal((del.Deleted as unknown[]).length, 2, 'DeleteObjects')
  t.equal(await errorName(s3.send(cmd('GetObjectCommand', { Bucket, Key: 'dir/multi.bin' }))), 'NoSuchKey', 'a deleted key is NoSuchKey')

  const wrong = client(sdk, { ...target, secret: target.secret + 'x' })
  t.teardown(() => { wrong.destroy() })
  t.equal(await errorName(wrong.send(cmd('ListObjectsV2Command', { Bucket }))), 'SignatureDoesNotMatch', 'a wrong secret is SignatureDoesNotMatch')
}

/**
 * A lookup for node:net that asks ferry's DNS (the server at 127.0.0.1:`port`), as a client whose
 * resolver points at ferry for the zone does. Names outside the zone fall back to the system.
 */
export function ferryLookup (port: number, zone: string): LookupFunction {
  const resolver = new dns.Resolver({ timeout: 2000, tries: 2 })
  resolver.setServers([`127.0.0.1:${port}`])
  return (hostname, options, callback) => {
    const inZone = hostname.toLowerCase().endsWith('.' + zone)
    const answer = inZone ? resolver.resolve4(hostname) : dns.lookup(hostname, { family: 4 }).then(a => [a.address])
    answer.then(addresses => {
      const address = addresses[0]
      if (address === undefined) throw new Error(`no A record for ${hostname}`)
      if (options.all === true) (callback as unknown as (e: null, a: Array<{ address: string, family: number }>) => void)(null, addresses.map(a => ({ address: a, family: 4 })))
      else callback(null, address, 4)
    }).catch((err: NodeJS.ErrnoException) => { callback(err, '', 4) })
  }
}

/**
 * Virtual-hosted style through ferry's DNS: the SDK addresses `<bucket>.<zone>:<port>` (no path
 * style), the name is resolved by ferry's DNS, and the proxy takes the bucket from `Host`.
 * Returns the addresses ferry's DNS gave for the bucket's name.
 */
export async function virtualHostedFlow (t: Test, sdk: Sdk, target: SdkTarget & { zone: string, proxyPort: number, dnsPort: number }): Promise<void> {
  const cmd = (name: string, input: Record<string, unknown>): unknown => new (sdk[name] as CommandClass)(input)
  const lookup = ferryLookup(target.dnsPort, target.zone)
  const resolved = await new Promise<string>((resolve, reject) => {
    lookup(`${target.bucket}.${target.zone}`, {}, (err, address) => { if (err !== null) reject(err); else resolve(String(address)) })
  })
  t.match(resolved, /^127\./, `ferry's DNS answers ${target.bucket}.${target.zone} with an edge (${resolved})`)
  const seen: string[] = []
  const httpAgent = new http.Agent({ keepAlive: true, lookup })
  // The Host each request went out with, as the proxy saw it: proves virtual-hosted addressing.
  const s3 = new sdk.S3Client({
    endpoint: `http://${target.zone}:${target.proxyPort}`,
    region: 'us-east-1',
    forcePathStyle: false,
    credentials: { accessKeyId: target.accessKey, secretAccessKey: target.secret },
    maxAttempts: 1,
    requestHandler: { httpAgent }
  }) as S3ClientLike & { middlewareStack: MiddlewareStack }
  s3.middlewareStack.add(next => async args => { seen.push(`${args.request.hostname} ${args.request.path}`); return await next(args) }, { step: 'finalizeRequest', name: 'ferryHostProbe' })
  t.teardown(() => { s3.destroy(); httpAgent.destroy() })
  const Bucket = target.bucket
  await s3.send(cmd('CreateBucketCommand', { Bucket }))
  const body = randomBytes(4096)
  const put = await s3.send(cmd('PutObjectCommand', { Bucket, Key: 'vhost/a b.txt', Body: body }))
  t.equal(put.ETag, `"${md5(body)}"`, 'virtual-hosted PutObject')
  const got = await s3.send(cmd('GetObjectCommand', { Bucket, Key: 'vhost/a b.txt' }))
  t.ok(Buffer.from(await (got.Body as NonNullable<Output['Body']>).transformToByteArray()).equals(body), 'virtual-hosted GetObject')
  const listed = await s3.send(cmd('ListObjectsV2Command', { Bucket, Prefix: 'vhost/' }))
  t.same((listed.Contents as Array<{ Key: string }>).map(o => o.Key), ['vhost/a b.txt'], 'virtual-hosted ListObjectsV2')
  t.ok(seen.length >= 4 && seen.every(s => s.startsWith(`${Bucket}.${target.zone} /`) && !s.includes(` /${Bucket}`)), `every request addressed <bucket>.<zone> with the key as the path: ${seen.slice(0, 3).join(', ')}`)
}
