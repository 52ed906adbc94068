import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { Counter, type Registry } from 'prom-client'
import { digestField, parseDigestField, TOMBSTONE_HEADER } from '../../lib/block-headers.js'
import { answerErrorsWith, discardUnreadBody } from '../../lib/http.js'
import { blockOfKey, blockOfPart, isValidId, isValidObjectKey, OBJECT_KEY_MAX_BYTES } from '../../lib/ids.js'
import type { Logger } from '../../lib/log.js'
import type { ListedObject, ListFrom, ObjectIndex, ObjectMeta, PartRecord, UploadRecord } from '../../state/objects.js'
import type { Gateway } from '../gateway-set.js'
import { PathPattern } from '../path-pattern.js'
import type { BlockOperation, ProxyRequest } from '../request.js'
import { AwsChunkedDecoder, BodyCheck, ByteRange, CHECKSUM_ALGORITHMS, feed, type BodyExpectations, type BodyResult, type ChecksumAlgorithm, type Trailers } from './body.js'
import type { S3Config } from './config.js'
import { S3Error, s3CodeOf } from './errors.js'
import { pendingS3Errors, S3Reply, type ReplyPlan } from './reply.js'
import {
  parseAmzDate, parseSignature, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, UNSIGNED_PAYLOAD,
  uriEscape, verifySignature, type SignedRequest
} from './sigv4.js'
import { doc, el, errorXml, isoDate, parseXml, text } from './xml.js'

/** What the adapter needs of the proxy core (ProxyServer): one block operation at a time. */
export interface BlockCore {
  dispatchBlock (op: BlockOperation): void
  /** The gateways a dispatched write's body goes to (every member it is fanned out to). */
  receiversOf (request: ProxyRequest): Array<Gateway | undefined>
  /** The client's address as the core sees it (X-Forwarded-For from trusted proxies). */
  clientOf (req: IncomingMessage): string
  /** The gateways a block may be read from now, best first (in-sync members only). */
  readersOf (volume: string, block: string): Gateway[]
  holdersOf (volume: string, block: string): Array<Gateway | undefined>
  readonly maxBodyBytes: number
  readonly via: string
}

interface Principal {
  /** The access key; undefined for an anonymous request. */
  user: string | undefined
  may: (volume: string, write: boolean) => boolean
}

interface Ctx {
  req: IncomingMessage
  res: ServerResponse
  requestId: string
  query: URLSearchParams
  bucket: string | undefined
  key: string | undefined
  resource: string
  principal: Principal
  sig: SignedRequest | undefined
  signingKey: Buffer | undefined
}

interface ResolvedCredential { secret: string, principal: Principal }

const OWNER = '<Owner><ID>ferry</ID><DisplayName>ferry</DisplayName></Owner>'
/** Headers S3 keeps with an object and returns on GET/HEAD. */
const KEPT_HEADERS = ['content-disposition', 'cache-control', 'content-encoding', 'content-language', 'expires'] as const
const MAX_XML_BYTES = 2 * 1024 * 1024
const MAX_PART = 10_000
const NO_QUERY = new URLSearchParams()
/** The S3 codes that count as an authentication failure (metrics and the per-address limit). */
const AUTH_FAILURES: ReadonlySet<string> = new Set(['AccessDenied', 'SignatureDoesNotMatch', 'InvalidAccessKeyId', 'RequestTimeTooSkewed'])

/**
 * Request ids: unique per process by a counter, across processes by a random prefix drawn once —
 * random bytes per request cost more than the rest of a GET's bookkeeping.
 */
const REQUEST_ID_PREFIX = randomBytes(4).toString('hex').toUpperCase()
let requestSeq = 0
function nextRequestId (): string {
  requestSeq = (requestSeq + 1) >>> 0
  return REQUEST_ID_PREFIX + requestSeq.toString(16).toUpperCase().padStart(8, '0')
}

/**
 * The S3 front end: a protocol adapter at the head of the proxy's handler chain. It parses an
 * S3 request (path style, or virtual-hosted `<bucket>.<zone>`), authenticates it (SigV4 in the
 * header, presigned, streaming), authorises the bucket, and hands the core one block operation
 * (bucket = volume, key → blockOfKey) with a handler that turns the gateway's answer into S3's.
 * Bucket operations, listings and object metadata are answered from the object index in the
 * store; bytes always go through the chain (sessions → write guard → retry → forward).
 */
export class S3Adapter {
  private cfg: S3Config
  private credentials = new Map<string, ResolvedCredential>()
  private readonly anonymousPrincipal: Principal = { user: undefined, may: v => this.anonymousMay(v) }
  private anonymous: ReadonlySet<string> = new Set()
  private suffixes: string[] = []
  private sweepTimer: NodeJS.Timeout | undefined
  private readonly authFailures: Counter
  private readonly rateLimited: Counter
  /** Authentication failures per client address in the current window (from its first failure). */
  private readonly failuresByClient = new Map<string, { count: number, until: number }>()
  private readonly requests: Counter
  private readonly digestSources: Counter<'by'>
  /** The counter's child per operation: labels hashed once, not on every request. */
  private readonly requestsByOp = new Map<string, Counter.Internal>()

  constructor (cfg: S3Config, private zone: string | undefined, private readonly core: BlockCore, readonly index: ObjectIndex, private readonly logger: Logger, registry: Registry) {
    this.cfg = cfg
    this.authFailures = new Counter({ name: 'ferry_s3_auth_failures_total', help: 'S3 requests refused by authentication or authorisation, by S3 code', labelNames: ['code'], registers: [registry] })
    this.rateLimited = new Counter({ name: 'ferry_s3_auth_rate_limited_total', help: 'signed S3 requests refused with SlowDown because their client address failed authentication too often', registers: [registry] })
    this.digestSources = new Counter({ name: 'ferry_s3_upload_digests_total', help: 'S3 uploads by who hashed the body for its ETag and declared digests: the proxy, or the gateways that stored it (lib/block-headers.ts "Digests")', labelNames: ['by'], registers: [registry] })
    this.requests = new Counter({ name: 'ferry_s3_requests_total', help: 'S3 requests by operation', labelNames: ['op'], registers: [registry] })
    this.reconfigure(cfg, zone)
  }

  /** A reload: credentials (secret files read again), anonymous volumes, virtual hosts. */
  reconfigure (cfg: S3Config, zone: string | undefined): void {
    const creds = new Map<string, ResolvedCredential>()
    for (const c of cfg.credentials) {
      let secret: string | undefined = c.secret
      try {
        if (c.secretFile !== undefined) secret = readFileSync(c.secretFile, 'utf8').trim()
        if (c.secretEnv !== undefined) secret = process.env[c.secretEnv]
      } catch (err) {
        this.logger.error({ accessKeyId: c.accessKeyId, err: (err as Error).message }, 's3: cannot read the secret of an access key; the key is refused')
      }
      if (secret === undefined || secret === '') {
        this.logger.error({ accessKeyId: c.accessKeyId }, 's3: access key without a secret; refused')
        continue
      }
      const volumes = new Set(c.volumes)
      const readOnly = c.readOnly
      // Built once per key, not per request.
      creds.set(c.accessKeyId, { secret, principal: { user: c.accessKeyId, may: (v, write) => (!write || !readOnly) && (volumes.has('*') || volumes.has(v)) } })
    }
    this.credentials = creds
    this.anonymous = new Set(cfg.anonymous ?? (cfg.credentials.length === 0 ? ['*'] : []))
    this.zone = zone
    this.suffixes = [...cfg.virtualHosts, ...(zone !== undefined ? [zone] : [])].map(s => '.' + s.toLowerCase())
    this.cfg = cfg
  }

  start (): void {
    const every = this.cfg.multipart.sweepIntervalMs
    this.sweepTimer = setInterval(() => { this.sweep().catch(err => this.logger.warn({ err: (err as Error).message }, 's3: abandoned-upload sweep failed')) }, every)
    this.sweepTimer.unref()
  }

  async close (): Promise<void> {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer)
    await this.index.close()
  }

  /** Whether the plain block API may serve `volume` to an anonymous client. */
  anonymousMay (volume: string): boolean {
    return this.anonymous.has('*') || this.anonymous.has(volume)
  }

  /**
   * Whether a request is S3 rather than the plain block API: it is signed, carries a query (every
   * S3 POST does) or x-amz- headers, addresses a bucket by host name, or lists buckets. The plain API
   * (`/{volume}/{block}`, unsigned, no query) keeps its JSON answers.
   */
  takes (req: IncomingMessage): boolean {
    if (!this.cfg.enabled) return false
    const h = req.headers
    if (h.authorization !== undefined) return true
    const url = req.url as string
    if (url === '/' || url.includes('?')) return true
    for (const name in h) if (name.startsWith('x-amz-')) return true
    return this.virtualBucket(req) !== undefined
  }

  private virtualBucket (req: IncomingMessage): string | undefined {
    const host = req.headers.host
    if (host === undefined || this.suffixes.length === 0) return undefined
    const name = host.replace(/:\d+$/, '').toLowerCase()
    for (const s of this.suffixes) if (name.endsWith(s) && name.length > s.length) return name.slice(0, -s.length)
    return undefined
  }

  handle (req: IncomingMessage, res: ServerResponse): void {
    const requestId = nextRequestId()
    res.setHeader('x-amz-request-id', requestId)
    res.setHeader('x-amz-id-2', requestId)
    let resource = '/'
    answerErrorsWith(res, (r, status, code, message, headers) => {
      const s3 = pendingS3Errors.get(r) ?? new S3Error(s3CodeOf(code, status), message)
      writeError(r, s3, resource, requestId, headers)
    })
    let ctx: Ctx | undefined
    try {
      ctx = this.parse(req, res, requestId)
      resource = ctx.resource
    } catch (err) {
      this.fail(req, res, err, resource, requestId)
      return
    }
    const c = ctx
    this.route(c).catch(err => { this.fail(req, res, err, c.resource, requestId) })
  }

  private fail (req: IncomingMessage, res: ServerResponse, err: unknown, resource: string, requestId: string): void {
    let e: S3Error
    if (err instanceof S3Error) {
      e = err
    } else if ((err as { code?: string }).code === 'FERRY_STATE_UNAVAILABLE') {
      e = new S3Error('SlowDown', 'the shared store is unavailable; retry', { 'retry-after': 1 })
    } else {
      this.logger.error({ err }, 's3: request failed')
      e = new S3Error('InternalError', 'We encountered an internal error. Please try again.')
    }
    if (AUTH_FAILURES.has(e.code)) {
      this.authFailures.inc({ code: e.code })
      this.noteAuthFailure(this.core.clientOf(req))
    }
    if (res.headersSent) { res.destroy(); return }
    // The rest of an unread body is read and discarded (or the connection closes lingering), so
    // that a client still sending it (boto3 with a wrong secret) reads this answer, not a reset.
    writeError(res, e, resource, requestId, discardUnreadBody(req, res))
  }

  // ─────────────────────────── parsing and authentication ───────────────────────────

  private parse (req: IncomingMessage, res: ServerResponse, requestId: string): Ctx {
    const url = req.url as string
    const q = url.indexOf('?')
    const rawPath = q < 0 ? url : url.slice(0, q)
    let query: URLSearchParams
    try { query = q < 0 ? NO_QUERY : new URLSearchParams(url.slice(q + 1)) } catch { throw new S3Error('InvalidURI', 'the query string is malformed') }
    let path = rawPath
    try { if (rawPath.includes('%')) path = decodeURIComponent(rawPath) } catch { throw new S3Error('InvalidURI', 'the request path has an invalid percent-encoding (not UTF-8)') }
    let bucket: string | undefined
    let key: string | undefined
    const vhost = this.virtualBucket(req)
    if (vhost !== undefined) {
      bucket = vhost
      key = path.length > 1 ? path.slice(1) : undefined
    } else if (path.length > 1) {
      const slash = path.indexOf('/', 1)
      bucket = slash < 0 ? path.slice(1) : path.slice(1, slash)
      const rest = slash < 0 ? '' : path.slice(slash + 1)
      key = rest === '' ? undefined : rest
    }
    if (bucket !== undefined && !isValidId(bucket)) throw new S3Error('InvalidBucketName', 'The specified bucket is not valid.')
    if (key !== undefined && !isValidObjectKey(key)) {
      if (Buffer.byteLength(key) > OBJECT_KEY_MAX_BYTES) throw new S3Error('KeyTooLongError', 'Your key is too long (at most 1,024 bytes of UTF-8)')
      throw new S3Error('InvalidURI', 'the object key is not valid UTF-8 or contains NUL')
    }
    const resource = bucket === undefined ? '/' : key === undefined ? `/${bucket}` : `/${bucket}/${key}`
    const { principal, sig, signingKey } = this.authenticate(req, query)
    this.countRequest(opName(req.method as string, bucket, key, query))
    return { req, res, requestId, query, bucket, key, resource, principal, sig, signingKey }
  }

  private countRequest (op: string): void {
    let child = this.requestsByOp.get(op)
    if (child === undefined) this.requestsByOp.set(op, child = this.requests.labels(op))
    child.inc()
  }

  private noteAuthFailure (client: string): void {
    const now = Date.now()
    const f = this.failuresByClient.get(client)
    if (f !== undefined && f.until > now) { f.count++; return }
    if (this.failuresByClient.size >= 100_000) {
      // Bounded: forget windows that ended; if every one is live, start over (a flood of addresses).
      for (const [k, v] of this.failuresByClient) if (v.until <= now) this.failuresByClient.delete(k)
      if (this.failuresByClient.size >= 100_000) this.failuresByClient.clear()
    }
    this.failuresByClient.set(client, { count: 1, until: now + this.cfg.authFailures.windowMs })
  }

  /** Refuses a signed request from an address over its failure limit, before any signature work. */
  private checkAuthRate (req: IncomingMessage): void {
    if (this.failuresByClient.size === 0) return
    const f = this.failuresByClient.get(this.core.clientOf(req))
    if (f === undefined || f.count < this.cfg.authFailures.limit) return
    const now = Date.now()
    if (f.until <= now) return
    this.rateLimited.inc()
    throw new S3Error('SlowDown', 'Please reduce your request rate: too many authentication failures from your address', { 'retry-after': Math.max(1, Math.ceil((f.until - now) / 1000)) })
  }

  private authenticate (req: IncomingMessage, query: URLSearchParams): { principal: Principal, sig: SignedRequest | undefined, signingKey: Buffer | undefined } {
    const sig = parseSignature(req, query)
    if (sig === undefined) {
      return { principal: this.anonymousPrincipal, sig: undefined, signingKey: undefined }
    }
    this.checkAuthRate(req)
    const cred = this.credentials.get(sig.accessKeyId)
    if (cred === undefined) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.')
    const at = parseAmzDate(sig.amzDate)
    if (Number.isNaN(at)) throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header')
    if (!sig.scope.startsWith(sig.amzDate.slice(0, 8) + '/')) throw new S3Error('AuthorizationHeaderMalformed', 'the credential scope date does not match x-amz-date')
    const now = Date.now()
    if (sig.presigned) {
      if (at > now + this.cfg.maxSkewMs) throw new S3Error('RequestTimeTooSkewed', 'The difference between the request time and the server\'s time is too large.')
      if (now > at + (sig.expires as number) * 1000) throw new S3Error('AccessDenied', 'Request has expired')
    } else if (Math.abs(now - at) > this.cfg.maxSkewMs) {
      throw new S3Error('RequestTimeTooSkewed', 'The difference between the request time and the server\'s time is too large.')
    }
    const signingKey = verifySignature(req, sig, cred.secret)
    return { principal: cred.principal, sig, signingKey }
  }

  private authorize (c: Ctx, volume: string, write: boolean): void {
    if (!c.principal.may(volume, write)) throw new S3Error('AccessDenied', 'Access Denied')
  }

  // ─────────────────────────── dispatch ───────────────────────────

  private async route (c: Ctx): Promise<void> {
    const m = c.req.method as string
    const q = c.query
    if (c.bucket === undefined) {
      if (m === 'GET') return await this.listBuckets(c)
      throw new S3Error('MethodNotAllowed', `${m} is not allowed on the service`)
    }
    const bucket = c.bucket
    if (c.key === undefined) {
      const write = m !== 'GET' && m !== 'HEAD'
      this.authorize(c, bucket, write)
      const plain = !hasSubresource(q)
      if (m === 'PUT' && plain) return await this.createBucket(c, bucket)
      if (m === 'HEAD') return await this.headBucket(c, bucket)
      if (m === 'DELETE' && plain) return await this.deleteBucket(c, bucket)
      if (m === 'POST' && q.has('delete')) return await this.deleteObjects(c, bucket)
      if (m === 'GET') {
        if (q.has('location')) return await this.bucketLocation(c, bucket)
        if (q.has('uploads')) return await this.listUploads(c, bucket)
        if (q.has('versioning')) return this.send(c, 200, doc('VersioningConfiguration', ''))
        if (q.has('acl')) return this.send(c, 200, doc('AccessControlPolicy', `${OWNER}<AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>ferry</ID><DisplayName>ferry</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList>`))
        for (const sub of ['policy', 'cors', 'lifecycle', 'tagging', 'website', 'replication', 'encryption', 'object-lock', 'logging', 'notification', 'requestPayment', 'accelerate', 'ownershipControls', 'publicAccessBlock', 'analytics', 'metrics', 'inventory', 'intelligent-tiering']) {
          if (q.has(sub)) throw new S3Error('NotImplemented', `the ${sub} subresource is not implemented by ferry`)
        }
        return await this.listObjects(c, bucket)
      }
      throw new S3Error('MethodNotAllowed', `${m} is not allowed on a bucket here`)
    }
    const key = c.key
    const write = m === 'PUT' || m === 'DELETE' || m === 'POST'
    this.authorize(c, bucket, write)
    const uploadId = q.get('uploadId')
    if (m === 'POST' && q.has('uploads')) return await this.createUpload(c, bucket, key)
    if (uploadId !== null) {
      if (m === 'PUT' && q.has('partNumber')) return await this.uploadPart(c, bucket, key, uploadId)
      if (m === 'POST') return await this.completeUpload(c, bucket, key, uploadId)
      if (m === 'DELETE') return await this.abortUpload(c, bucket, key, uploadId)
      if (m === 'GET') return await this.listParts(c, bucket, key, uploadId)
      throw new S3Error('MethodNotAllowed', `${m} is not allowed with uploadId`)
    }
    for (const sub of ['acl', 'tagging', 'retention', 'legal-hold', 'torrent', 'restore', 'select', 'attributes']) {
      if (q.has(sub)) throw new S3Error('NotImplemented', `the ${sub} subresource is not implemented by ferry`)
    }
    if (m === 'PUT') {
      if (c.req.headers['x-amz-copy-source'] !== undefined) return await this.copyObject(c, bucket, key)
      return this.putObject(c, bucket, key)
    }
    if (m === 'GET' || m === 'HEAD') return await this.getObject(c, bucket, key, m === 'HEAD')
    if (m === 'DELETE') return this.deleteObject(c, bucket, key)
    throw new S3Error('MethodNotAllowed', `${m} is not allowed on an object`)
  }

  private send (c: Ctx, status: number, body: string, headers?: Record<string, string>): void {
    c.res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), ...headers })
    c.res.end(c.req.method === 'HEAD' ? undefined : body)
  }

  private sendEmpty (c: Ctx, status: number, headers?: Record<string, string>): void {
    c.res.writeHead(status, { 'content-length': 0, ...headers })
    c.res.end()
  }

  // ─────────────────────────── buckets ───────────────────────────

  private async listBuckets (c: Ctx): Promise<void> {
    if (c.principal.user === undefined) throw new S3Error('AccessDenied', 'Access Denied')
    const all = await this.index.listBuckets()
    const mine = all.filter(b => c.principal.may(b.name, false))
    this.send(c, 200, doc('ListAllMyBucketsResult', `${OWNER}<Buckets>${mine.map(b => `<Bucket>${el('Name', b.name)}${el('CreationDate', isoDate(b.created))}</Bucket>`).join('')}</Buckets>`))
  }

  private async createBucket (c: Ctx, bucket: string): Promise<void> {
    const body = await readSmallBody(c.req, MAX_XML_BYTES)
    if (body.trim() !== '') parseXml(body, 'CreateBucketConfiguration')
    const created = await this.index.createBucket(bucket, Date.now())
    // In us-east-1 S3 answers 200 to creating a bucket the caller already has (elsewhere 409);
    // buckets here have no owner but the keys granted them, so it is always "the caller's".
    if (!created && this.cfg.region !== 'us-east-1') throw new S3Error('BucketAlreadyOwnedByYou', 'Your previous request to create the named bucket succeeded and you already own it.')
    this.sendEmpty(c, 200, { location: '/' + bucket })
  }

  private async bucketExists (bucket: string): Promise<boolean> {
    return await this.index.bucketCreated(bucket) !== null
  }

  private async headBucket (c: Ctx, bucket: string): Promise<void> {
    if (!await this.bucketExists(bucket)) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist')
    this.sendEmpty(c, 200, { 'x-amz-bucket-region': this.cfg.region })
  }

  /**
   * DeleteBucket: refused while any object is in it; its open multipart uploads are aborted with
   * it (their parts deleted), as S3 and RGW do — a tool that empties a bucket lists and deletes
   * objects only (`aws s3 rb --force`, the s3-tests clean-up), so an upload a client abandoned
   * would otherwise keep the bucket until the abandoned-upload sweep. The index still refuses
   * atomically if an object or upload arrives in between (BucketNotEmpty, the client retries).
   */
  private async deleteBucket (c: Ctx, bucket: string): Promise<void> {
    if (await this.index.countObjects(bucket) === 0) {
      for (const u of await this.index.listUploads(bucket)) await this.abort(bucket, u.uploadId)
    }
    const r = await this.index.deleteBucket(bucket)
    if (r === 'missing') throw new S3Error('NoSuchBucket', 'The specified bucket does not exist')
    if (r === 'not-empty') throw new S3Error('BucketNotEmpty', 'The bucket you tried to delete is not empty')
    this.sendEmpty(c, 204)
  }

  private async bucketLocation (c: Ctx, bucket: string): Promise<void> {
    if (!await this.bucketExists(bucket)) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist')
    // us-east-1 is reported as an empty constraint, as S3 does.
    const region = this.cfg.region === 'us-east-1' ? '' : this.cfg.region
    this.send(c, 200, `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${region}</LocationConstraint>`)
  }

  // ─────────────────────────── listing ───────────────────────────

  /**
   * ListObjects (V1), ListObjectsV2 and ListObjectVersions. Versioning is never enabled here, so
   * ListObjectVersions is S3's answer for an unversioned bucket: every object is its one version,
   * `null`, the latest; its `key-marker` is V1's `marker`. Clients and tools that empty a bucket
   * (the s3-tests clean-up, `aws s3 rb --force` on versioned-or-not buckets) list versions.
   */
  private async listObjects (c: Ctx, bucket: string): Promise<void> {
    const q = c.query
    const v2 = q.get('list-type') === '2'
    const versions = q.has('versions')
    const prefix = q.get('prefix') ?? ''
    const delimiter = q.get('delimiter') ?? ''
    const encoding = q.get('encoding-type')
    if (encoding !== null && encoding !== 'url') throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request')
    const maxKeysText = q.get('max-keys')
    const maxKeys = maxKeysText === null ? 1000 : Number(maxKeysText)
    if (!Number.isInteger(maxKeys) || maxKeys < 0) throw new S3Error('InvalidArgument', 'max-keys must be a non-negative integer')
    const limit = Math.min(maxKeys, 1000)
    let from: ListFrom | undefined
    const token = q.get('continuation-token')
    const startAfter = q.get('start-after')
    const marker = versions ? q.get('key-marker') : q.get('marker')
    // An empty token is no token (S3 and RGW list from the start; the s3-tests check it).
    if (v2 && token !== null && token !== '') from = decodeToken(token)
    else if (v2 && startAfter !== null && startAfter !== '') from = { key: startAfter, skipPrefix: false }
    else if (!v2 && marker !== null && marker !== '') from = { key: marker, skipPrefix: delimiter !== '' && marker.endsWith(delimiter) }
    if (from === undefined || limit === 0) {
      // Only an empty first page needs the bucket checked: any key proves it exists.
      if (!await this.bucketExists(bucket) && await this.index.countObjects(bucket) === 0) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist')
    }
    // max-keys=0 asks for no entries, and S3 answers IsTruncated false with none.
    const page = limit === 0 ? { contents: [], prefixes: [], truncated: false, next: undefined } : await this.listPage(bucket, prefix, delimiter, from, limit)
    const enc = (s: string): string => encoding === 'url' ? uriEscape(s, true) : s
    const contents = page.contents.map(o => versions
      ? `<Version>${el('Key', enc(o.key))}<VersionId>null</VersionId><IsLatest>true</IsLatest>${el('LastModified', isoDate(o.meta.lastModified))}${el('ETag', `"${o.meta.etag}"`)}${el('Size', o.meta.size)}${OWNER}<StorageClass>STANDARD</StorageClass></Version>`
      : `<Contents>${el('Key', enc(o.key))}${el('LastModified', isoDate(o.meta.lastModified))}${el('ETag', `"${o.meta.etag}"`)}${el('Size', o.meta.size)}${v2 ? '' : OWNER}<StorageClass>STANDARD</StorageClass></Contents>`).join('')
    const prefixes = page.prefixes.map(p => `<CommonPrefixes>${el('Prefix', enc(p))}</CommonPrefixes>`).join('')
    if (versions) {
      let head = `${el('Name', bucket)}${el('Prefix', enc(prefix))}${el('KeyMarker', enc(marker ?? ''))}${el('VersionIdMarker', q.get('version-id-marker') ?? '')}${delimiter !== '' ? el('Delimiter', enc(delimiter)) : ''}${el('MaxKeys', maxKeys)}`
      if (encoding !== null) head += el('EncodingType', encoding)
      head += el('IsTruncated', page.truncated)
      if (page.truncated && page.next !== undefined) head += `${el('NextKeyMarker', enc(page.next.key))}<NextVersionIdMarker>null</NextVersionIdMarker>`
      this.send(c, 200, doc('ListVersionsResult', head + contents + prefixes))
      return
    }
    let head = `${el('Name', bucket)}${el('Prefix', enc(prefix))}${delimiter !== '' ? el('Delimiter', enc(delimiter)) : ''}${el('MaxKeys', maxKeys)}`
    if (encoding !== null) head += el('EncodingType', encoding)
    head += el('IsTruncated', page.truncated)
    if (v2) {
      head += el('KeyCount', page.contents.length + page.prefixes.length)
      if (token !== null) head += el('ContinuationToken', token)
      if (page.truncated && page.next !== undefined) head += el('NextContinuationToken', encodeToken(page.next))
      if (startAfter !== null) head += el('StartAfter', enc(startAfter))
    } else {
      head += el('Marker', enc(marker ?? ''))
      if (page.truncated && page.next !== undefined && delimiter !== '') head += el('NextMarker', enc(page.next.key))
    }
    this.send(c, 200, doc('ListBucketResult', head + contents + prefixes))
  }

  /**
   * One page of a listing from the index: keys under `prefix` after `from`, keys that contain
   * `delimiter` after the prefix rolled up into common prefixes (each counts as one entry and
   * is skipped past in the index, so a directory of a million keys costs one step).
   */
  private async listPage (bucket: string, prefix: string, delimiter: string, from: ListFrom | undefined, maxKeys: number): Promise<{ contents: ListedObject[], prefixes: string[], truncated: boolean, next: ListFrom | undefined }> {
    const contents: ListedObject[] = []
    const prefixes: string[] = []
    let cursor = from
    let truncated = false
    let count = 0
    // How many entries to ask the index for next. A batch that ends inside a common prefix was
    // mostly wasted (its keys roll up into one entry), so the next one after it is small and
    // grows again while keys are listed one by one: a bucket of 1,000 directories of 1,000 keys
    // is listed with a seek per directory, not 1,000 keys and their metadata read per directory
    // (test/s3/listing-cost.test.ts).
    let batchSize = 1000
    outer: for (;;) {
      const want = Math.min(batchSize, maxKeys - count + 1)
      const batch = await this.index.list(bucket, prefix, cursor, want)
      if (batch.length === 0) break
      let rolledUp: string | undefined
      let endedRolledUp = false
      for (const e of batch) {
        // The rest of a common prefix already returned, within this batch.
        if (rolledUp !== undefined && e.key.startsWith(rolledUp)) { endedRolledUp = true; continue }
        endedRolledUp = false
        if (count >= maxKeys) { truncated = true; break outer }
        if (delimiter !== '') {
          const i = e.key.indexOf(delimiter, prefix.length)
          if (i >= 0) {
            const cp = e.key.slice(0, i + delimiter.length)
            prefixes.push(cp)
            count++
            cursor = { key: cp, skipPrefix: true }
            rolledUp = cp
            endedRolledUp = true
            continue
          }
        }
        contents.push(e)
        count++
        cursor = { key: e.key, skipPrefix: false }
      }
      if (batch.length < want) break
      batchSize = endedRolledUp ? 4 : Math.min(1000, batchSize * 4)
    }
    return { contents, prefixes, truncated, next: cursor }
  }

  private async listUploads (c: Ctx, bucket: string): Promise<void> {
    const prefix = c.query.get('prefix') ?? ''
    const ups = (await this.index.listUploads(bucket)).filter(u => u.key.startsWith(prefix)).slice(0, 1000)
    const body = `${el('Bucket', bucket)}<KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>${el('Prefix', prefix)}<MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>` +
      ups.map(u => `<Upload>${el('Key', u.key)}${el('UploadId', u.uploadId)}<Initiator><ID>ferry</ID><DisplayName>ferry</DisplayName></Initiator>${OWNER}<StorageClass>STANDARD</StorageClass>${el('Initiated', isoDate(u.initiated))}</Upload>`).join('')
    this.send(c, 200, doc('ListMultipartUploadsResult', body))
  }

  // ─────────────────────────── objects ───────────────────────────

  private upstreamHeaders (c: Ctx, extra: string[]): string[] {
    const peer = c.req.socket.remoteAddress ?? ''
    const xff = c.req.headers['x-forwarded-for']
    const out = [...extra, 'x-forwarded-for', xff === undefined ? peer : `${String(xff)}, ${peer}`, 'via', this.core.via]
    if (c.req.headers.host !== undefined) out.push('x-forwarded-host', c.req.headers.host)
    return out
  }

  private dispatch (c: Ctx, method: ProxyRequest['method'], volume: string, block: string, body: NodeJS.ReadableStream | null, headers: string[], plan: ReplyPlan,
    bodyError: () => S3Error | undefined = () => undefined, digests?: UploadDigests): void {
    this.core.dispatchBlock({
      req: c.req,
      res: c.res,
      method,
      volume,
      block,
      body,
      // A client's delete leaves a tombstone (gateway/README.md "Tombstones"), as on the plain path.
      upstreamHeaders: this.upstreamHeaders(c, method === 'DELETE' ? [...headers, TOMBSTONE_HEADER, '1'] : headers),
      ...(c.principal.user !== undefined ? { user: c.principal.user } : {}),
      ...(digests !== undefined ? { bodyAt: digests.bodyAt } : {}),
      wrap: (client, request) => {
        digests?.bind(request)
        return new S3Reply(client, request, plan, bodyError)
      }
    })
  }

  /**
   * The body of an upload as the gateway is to get it: aws-chunked framing decoded (chunk
   * signatures checked), and every declared digest and length checked before its end is let go.
   */
  private uploadBody (c: Ctx): { body: NodeJS.ReadableStream, check: BodyCheck, headers: string[], plainLength: number | undefined, failed: () => S3Error | undefined } {
    const { req } = c
    const h = req.headers
    const payload = c.sig?.payloadHash
    const encodings = String(h['content-encoding'] ?? '').split(',').map(s => s.trim()).filter(s => s !== '')
    // Framed when the payload hash says so, or when aws-chunked comes with its decoded length; an
    // aws-chunked label on a plain body (a signed hash, no decoded length) is only a label, which
    // is dropped from the stored Content-Encoding as S3 and RGW do (s3-tests'
    // test_object_content_encoding_aws_chunked).
    const streaming = payload === STREAMING_SIGNED || payload === STREAMING_SIGNED_TRAILER || payload === STREAMING_UNSIGNED_TRAILER ||
      (encodings.includes('aws-chunked') && h['x-amz-decoded-content-length'] !== undefined)
    let length: number | undefined
    if (streaming) {
      const d = h['x-amz-decoded-content-length']
      if (d === undefined) throw new S3Error('MissingContentLength', 'an aws-chunked upload needs x-amz-decoded-content-length')
      length = Number(d)
    } else if (h['content-length'] !== undefined) {
      length = Number(h['content-length'])
    } else if (h['transfer-encoding'] === undefined) {
      throw new S3Error('MissingContentLength', 'You must provide the Content-Length HTTP header.')
    }
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) throw new S3Error('InvalidArgument', 'invalid content length')
    if (length !== undefined && length > this.core.maxBodyBytes) throw new S3Error('EntityTooLarge', `Your proposed upload exceeds the maximum allowed size of ${this.core.maxBodyBytes} bytes`)
    const expect: BodyExpectations = { maxBytes: this.core.maxBodyBytes }
    if (length !== undefined) expect.length = length
    const md5 = h['content-md5']
    if (typeof md5 === 'string') {
      if (!/^[A-Za-z0-9+/]{22}==$/.test(md5)) throw new S3Error('InvalidDigest', 'The Content-MD5 you specified was invalid.')
      expect.contentMd5 = md5
    }
    if (payload !== undefined && /^[0-9a-f]{64}$/.test(payload)) expect.sha256Hex = payload
    else if (payload !== undefined && payload !== UNSIGNED_PAYLOAD && !streaming) throw new S3Error('InvalidArgument', 'invalid x-amz-content-sha256')
    for (const alg of CHECKSUM_ALGORITHMS) {
      const v = h[`x-amz-checksum-${alg}`]
      if (typeof v === 'string') { expect.checksum = { alg, value: v }; break }
    }
    const trailers: Trailers = { values: new Map() }
    const announced = h['x-amz-trailer']
    if (typeof announced === 'string' && announced !== '') {
      const alg = announced.toLowerCase().replace(/^x-amz-checksum-/, '') as ChecksumAlgorithm
      if (!CHECKSUM_ALGORITHMS.includes(alg)) throw new S3Error('InvalidRequest', `unsupported trailer ${announced}`)
      if (!streaming) throw new S3Error('InvalidRequest', 'x-amz-trailer needs an aws-chunked body')
      expect.trailerChecksum = { alg, trailers }
    }
    const check = new BodyCheck(expect)
    let failed: S3Error | undefined
    const note = (err: unknown): void => { if (failed === undefined && err instanceof S3Error) failed = err }
    check.on('error', note)
    let body: NodeJS.ReadableStream
    if (streaming) {
      const signed = payload === STREAMING_SIGNED || payload === STREAMING_SIGNED_TRAILER
      if (signed && (c.sig === undefined || c.signingKey === undefined)) throw new S3Error('AccessDenied', 'a signed streaming payload needs a signed request')
      const decoder = new AwsChunkedDecoder(signed ? { key: c.signingKey as Buffer, amzDate: (c.sig as SignedRequest).amzDate, scope: (c.sig as SignedRequest).scope, seed: (c.sig as SignedRequest).signature } : undefined,
        trailers, payload === STREAMING_SIGNED_TRAILER || payload === STREAMING_UNSIGNED_TRAILER)
      decoder.on('error', note)
      body = feed(feed(req, decoder), check)
    } else {
      body = feed(req, check)
    }
    // For the gateways that check what the client declared and report the MD5 themselves
    // (lib/block-headers.ts "Digests"; BodyCheck.leaveDigestsTo): others ignore these headers.
    const headers = length !== undefined ? ['content-length', String(length), 'want-repr-digest', 'md5=1'] : ['want-repr-digest', 'md5=1']
    if (expect.sha256Hex !== undefined) headers.push('content-digest', digestField([['sha-256', Buffer.from(expect.sha256Hex, 'hex')]]))
    if (expect.contentMd5 !== undefined) headers.push('content-md5', expect.contentMd5)
    // Nothing but digests to check (which gateways may take over): the body may go unwrapped.
    const plainLength = !streaming && h['content-length'] !== undefined && expect.checksum === undefined ? length : undefined
    return { body, check, headers, plainLength, failed: () => failed }
  }

  private objectHeaders (c: Ctx): Pick<ObjectMeta, 'contentType' | 'meta' | 'headers'> {
    const h = c.req.headers
    const out: Pick<ObjectMeta, 'contentType' | 'meta' | 'headers'> = {}
    if (typeof h['content-type'] === 'string') out.contentType = h['content-type']
    let bytes = 0
    for (const name in h) {
      if (!name.startsWith('x-amz-meta-')) continue
      const v = h[name]
      const value = Array.isArray(v) ? v.join(',') : String(v)
      bytes += name.length - 11 + Buffer.byteLength(value)
      ;(out.meta ??= {})[name.slice(11)] = value
    }
    if (bytes > this.cfg.maxMetadataBytes) throw new S3Error('MetadataTooLarge', `Your metadata headers exceed the maximum allowed metadata size (${this.cfg.maxMetadataBytes} bytes)`)
    for (const name of KEPT_HEADERS) {
      const v = h[name]
      // aws-chunked is the transfer framing, not the object's encoding.
      if (typeof v === 'string') {
        const value = name === 'content-encoding' ? v.split(',').map(s => s.trim()).filter(s => s !== 'aws-chunked').join(', ') : v
        if (value !== '') (out.headers ??= {})[name] = value
      }
    }
    return out
  }

  private putObject (c: Ctx, bucket: string, key: string): void {
    const headers = this.objectHeaders(c)
    const up = this.uploadBody(c)
    const block = blockOfKey(key)
    const digests = new UploadDigests(this.core, up, c.req, this.digestSources)
    this.dispatch(c, 'PUT', bucket, block, up.body, up.headers, {
      kind: 'write',
      resource: c.resource,
      requestId: c.requestId,
      commit: async answer => {
        const r = digests.result(answer)
        const etag = r.md5
        await this.index.putObject(bucket, key, { etag, size: r.size, lastModified: Date.now(), ...headers })
        const out: Record<string, string> = { etag: `"${etag}"` }
        if (r.checksum !== undefined) out[`x-amz-checksum-${r.checksum.alg}`] = r.checksum.value
        return { headers: out }
      }
    }, up.failed, digests)
  }

  private async getObject (c: Ctx, bucket: string, key: string, head: boolean): Promise<void> {
    const meta = await this.index.getObject(bucket, key)
    const h = c.req.headers
    if (meta !== null) {
      const verdict = preconditions(h, meta)
      if (verdict === 304) { this.sendEmpty(c, 304, { etag: `"${meta.etag}"`, 'last-modified': new Date(meta.lastModified).toUTCString() }); return }
      if (verdict === 412) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
    }
    let range: { start: number, end: number | undefined, suffix?: number } | undefined
    let partsCount: number | undefined
    const partNumber = c.query.get('partNumber')
    if (partNumber !== null) {
      const n = Number(partNumber)
      if (!Number.isInteger(n) || n < 1 || n > MAX_PART) throw new S3Error('InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive')
      const parts = meta?.parts ?? (meta !== null ? [meta.size] : undefined)
      if (parts === undefined) throw new S3Error('NoSuchKey', 'The specified key does not exist.')
      if (n > parts.length) throw new S3Error('InvalidPartNumber', 'The requested partnumber is not satisfiable')
      const start = parts.slice(0, n - 1).reduce((a, b) => a + b, 0)
      range = { start, end: start + (parts[n - 1] as number) - 1 }
      partsCount = parts.length
    } else if (typeof h.range === 'string') {
      range = parseRange(h.range)
    }
    if (range !== undefined && meta !== null && range.suffix === undefined && range.start >= meta.size) {
      throw new S3Error('InvalidRange', 'The requested range is not satisfiable', { 'content-range': `bytes */${meta.size}` })
    }
    this.dispatch(c, head ? 'HEAD' : 'GET', bucket, blockOfKey(key), null, [], {
      kind: 'read', head, meta, ...(range !== undefined ? { range } : {}), ...(partsCount !== undefined ? { partsCount } : {}), resource: c.resource, requestId: c.requestId
    })
  }

  private deleteObject (c: Ctx, bucket: string, key: string): void {
    this.dispatch(c, 'DELETE', bucket, blockOfKey(key), null, [], {
      kind: 'write',
      notFoundOk: true,
      resource: c.resource,
      requestId: c.requestId,
      commit: async () => {
        await this.index.deleteObject(bucket, key)
        return { status: 204, headers: {} }
      }
    })
  }

  private async deleteObjects (c: Ctx, bucket: string): Promise<void> {
    const xml = await readSmallBody(c.req, MAX_XML_BYTES)
    const md5 = c.req.headers['content-md5']
    if (md5 !== undefined && createHash('md5').update(xml).digest('base64') !== md5) throw new S3Error('BadDigest', 'The Content-MD5 you specified did not match what we received.')
    const doc_ = parseXml(xml, 'Delete')
    const objects = Array.isArray(doc_.Object) ? doc_.Object as Array<Record<string, unknown>> : []
    if (objects.length > 1000) throw new S3Error('MalformedXML', 'a Delete request names at most 1000 objects')
    const quiet = text(doc_.Quiet) === 'true'
    const results = await Promise.all(objects.map(async o => {
      const key = text(o.Key)
      if (key === undefined || !isValidObjectKey(key)) return `<Error>${el('Key', key ?? '')}<Code>InvalidArgument</Code><Message>invalid key</Message></Error>`
      try {
        await this.deleteBlock(bucket, blockOfKey(key))
        await this.index.deleteObject(bucket, key)
        return quiet ? '' : `<Deleted>${el('Key', key)}</Deleted>`
      } catch (err) {
        const e = err instanceof S3Error ? err : new S3Error('InternalError', (err as Error).message)
        return `<Error>${el('Key', key)}${el('Code', e.code)}${el('Message', e.message)}</Error>`
      }
    }))
    this.send(c, 200, doc('DeleteResult', results.join('')))
  }

  /** A GET of a block, for the adapter's own use (copy source, parts): see readBlockFrom. */
  private async readBlock (volume: string, block: string, range?: { first: number, last: number }): Promise<Readable> {
    return (await this.readBlockFrom(volume, block, range)).body
  }

  /**
   * A GET of a block from the first of its readers (core.readersOf: in-sync members, best first)
   * that answers it, skipping those in `failed` and adding each that fails now: a member killed
   * or failing must not fail a copy or a Complete while another in-sync member holds the block.
   * NoSuchKey only when every reader answered 404.
   */
  private async readBlockFrom (volume: string, block: string, range?: { first: number, last: number }, failed = new Set<string>()): Promise<{ body: Readable, gateway: string }> {
    const readers = this.core.readersOf(volume, block).filter(g => !failed.has(g.id))
    if (readers.length === 0) throw new S3Error('ServiceUnavailable', 'no gateway is available', { 'retry-after': 1 })
    const headers = range !== undefined ? { range: `bytes=${range.first}-${range.last}` } : undefined
    let last: S3Error | undefined
    for (const gw of readers) {
      failed.add(gw.id)
      const r = await gw.pool.request({ method: 'GET', path: PathPattern.gatewayPath(volume, block), headersTimeout: 10_000, ...(headers !== undefined ? { headers } : {}) }).catch((err: Error) => {
        last = new S3Error('BadGateway', `gateway ${gw.id} failed: ${err.message}`)
        return undefined
      })
      if (r === undefined) continue
      if (r.statusCode === 404) { await r.body.dump(); continue }
      if (r.statusCode !== 200 && !(range !== undefined && r.statusCode === 206)) { await r.body.dump(); last = new S3Error('BadGateway', `gateway ${gw.id} answered ${r.statusCode}`); continue }
      failed.delete(gw.id)
      if (r.statusCode === 206) return { body: r.body, gateway: gw.id }
      // A gateway that ignores Range (the reference gateway does) sent it all: pass on the range.
      return { body: range !== undefined ? feed(r.body, new ByteRange(range.first, range.last)) : r.body, gateway: gw.id }
    }
    throw last ?? new S3Error('NoSuchKey', 'The specified key does not exist.')
  }

  /**
   * Deletes a block on every gateway that holds a copy (each member of its replica set): a copy
   * left on one member would be served by the next read that goes there. Fails, and says which
   * gateway, when any of them could not be reached or refused.
   */
  private async deleteBlock (volume: string, block: string): Promise<void> {
    const holders = this.core.holdersOf(volume, block)
    if (holders.length === 0 || holders.includes(undefined)) throw new S3Error('ServiceUnavailable', 'a gateway holding the object is not available', { 'retry-after': 1 })
    await Promise.all((holders as Gateway[]).map(async gw => {
      const r = await gw.pool.request({ method: 'DELETE', path: PathPattern.gatewayPath(volume, block), headers: { [TOMBSTONE_HEADER]: '1' }, headersTimeout: 10_000 }).catch((err: Error) => {
        throw new S3Error('ServiceUnavailable', `gateway ${gw.id} could not be reached: ${err.message}`, { 'retry-after': 1 })
      })
      await r.body.dump()
      if (r.statusCode >= 300 && r.statusCode !== 404) throw new S3Error('BadGateway', `gateway ${gw.id} answered ${r.statusCode}`)
    }))
  }

  private copySource (c: Ctx): { bucket: string, key: string } {
    let src = String(c.req.headers['x-amz-copy-source'])
    const q = src.indexOf('?')
    if (q >= 0) src = src.slice(0, q)
    try { src = decodeURIComponent(src) } catch { throw new S3Error('InvalidArgument', 'Invalid copy source encoding') }
    if (src.startsWith('/')) src = src.slice(1)
    const slash = src.indexOf('/')
    if (slash <= 0) throw new S3Error('InvalidArgument', 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey')
    const bucket = src.slice(0, slash)
    const key = src.slice(slash + 1)
    if (!isValidId(bucket) || !isValidObjectKey(key)) throw new S3Error('InvalidArgument', 'invalid copy source')
    this.authorize(c, bucket, false)
    return { bucket, key }
  }

  private async copyObject (c: Ctx, bucket: string, key: string): Promise<void> {
    const src = this.copySource(c)
    const meta = await this.index.getObject(src.bucket, src.key)
    if (meta === null) throw new S3Error('NoSuchKey', 'The specified key does not exist.')
    const verdict = copyPreconditions(c.req.headers, meta)
    if (verdict !== 200) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
    const replace = String(c.req.headers['x-amz-metadata-directive'] ?? 'COPY').toUpperCase() === 'REPLACE'
    if (!replace && src.bucket === bucket && src.key === key) {
      throw new S3Error('InvalidRequest', 'This copy request is illegal because it is trying to copy an object to itself without changing the object\'s metadata, storage class, website redirect location or encryption attributes.')
    }
    const kept = replace ? this.objectHeaders(c) : { ...(meta.contentType !== undefined ? { contentType: meta.contentType } : {}), ...(meta.meta !== undefined ? { meta: meta.meta } : {}), ...(meta.headers !== undefined ? { headers: meta.headers } : {}) }
    const source = await this.readBlock(src.bucket, blockOfKey(src.key))
    const check = new BodyCheck({ maxBytes: Number.MAX_SAFE_INTEGER, length: meta.size })
    let failed: S3Error | undefined
    check.on('error', err => { if (err instanceof S3Error) failed ??= err })
    const body = feed(source, check)
    this.dispatch(c, 'PUT', bucket, blockOfKey(key), body, ['content-length', String(meta.size)], {
      kind: 'write',
      resource: c.resource,
      requestId: c.requestId,
      commit: async () => {
        const r = check.result as NonNullable<BodyCheck['result']>
        // A multipart source keeps its ETag (it names the parts, which the copy keeps).
        const etag = meta.parts !== undefined ? meta.etag : (r.md5 as Buffer).toString('hex') // a copy is hashed here: it declares no digest to leave to a gateway
        const now = Date.now()
        await this.index.putObject(bucket, key, { etag, size: r.size, lastModified: now, ...kept, ...(meta.parts !== undefined ? { parts: meta.parts } : {}) })
        return { headers: { 'content-type': 'application/xml' }, body: doc('CopyObjectResult', `${el('LastModified', isoDate(now))}${el('ETag', `"${etag}"`)}`) }
      }
    }, () => failed)
  }

  // ─────────────────────────── multipart ───────────────────────────

  private async createUpload (c: Ctx, bucket: string, key: string): Promise<void> {
    const headers = this.objectHeaders(c)
    const uploadId = randomBytes(16).toString('hex')
    await this.index.createUpload({ uploadId, volume: bucket, key, initiated: Date.now(), ...headers })
    this.send(c, 200, doc('InitiateMultipartUploadResult', `${el('Bucket', bucket)}${el('Key', key)}${el('UploadId', uploadId)}`))
  }

  private async upload (bucket: string, key: string, uploadId: string): Promise<UploadRecord> {
    const up = /^[0-9a-f]{32}$/.test(uploadId) ? await this.index.getUpload(bucket, uploadId) : null
    if (up === null || up.key !== key) throw new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.')
    return up
  }

  private async uploadPart (c: Ctx, bucket: string, key: string, uploadId: string): Promise<void> {
    const n = Number(c.query.get('partNumber'))
    if (!Number.isInteger(n) || n < 1 || n > MAX_PART) throw new S3Error('InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive')
    if (c.req.headers['x-amz-copy-source'] !== undefined) return await this.uploadPartCopy(c, bucket, key, uploadId, n)
    await this.upload(bucket, key, uploadId)
    const up = this.uploadBody(c)
    const digests = new UploadDigests(this.core, up, c.req, this.digestSources)
    this.dispatch(c, 'PUT', bucket, blockOfPart(uploadId, n), up.body, up.headers, {
      kind: 'write',
      resource: c.resource,
      requestId: c.requestId,
      commit: async answer => {
        const r = digests.result(answer)
        const etag = r.md5
        // Aborted or completed while the part streamed: the part is an orphan, not acknowledged.
        if (await this.index.getUpload(bucket, uploadId) === null) {
          await this.deleteBlock(bucket, blockOfPart(uploadId, n)).catch(() => {})
          throw new S3Error('NoSuchUpload', 'The specified upload does not exist.')
        }
        await this.index.putPart(bucket, uploadId, { part: n, etag, size: r.size, lastModified: Date.now() })
        return { headers: { etag: `"${etag}"` } }
      }
    }, up.failed, digests)
  }

  /**
   * UploadPartCopy: a part's bytes from an existing object (all of it, or x-amz-copy-source-range),
   * read from the gateway that serves it and streamed through the chain into the part's block,
   * hashed on the way for the part's ETag, exactly as an uploaded part.
   */
  private async uploadPartCopy (c: Ctx, bucket: string, key: string, uploadId: string, n: number): Promise<void> {
    const src = this.copySource(c)
    await this.upload(bucket, key, uploadId)
    const meta = await this.index.getObject(src.bucket, src.key)
    if (meta === null) throw new S3Error('NoSuchKey', 'The specified key does not exist.')
    if (copyPreconditions(c.req.headers, meta) !== 200) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
    let first = 0
    let last = meta.size - 1
    const rangeText = c.req.headers['x-amz-copy-source-range']
    if (typeof rangeText === 'string') {
      const m = /^bytes=(\d+)-(\d+)$/.exec(rangeText.trim())
      if (m === null || Number(m[2]) < Number(m[1])) throw new S3Error('InvalidArgument', 'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy')
      first = Number(m[1])
      last = Number(m[2])
      if (last >= meta.size) throw new S3Error('InvalidRange', `Range specified is not valid for source object of size: ${meta.size}`, { 'content-range': `bytes */${meta.size}` })
    }
    const size = last - first + 1
    const source = await this.readBlock(src.bucket, blockOfKey(src.key), size === meta.size ? undefined : { first, last })
    const check = new BodyCheck({ maxBytes: Number.MAX_SAFE_INTEGER, length: size })
    let failed: S3Error | undefined
    check.on('error', err => { if (err instanceof S3Error) failed ??= err })
    this.dispatch(c, 'PUT', bucket, blockOfPart(uploadId, n), feed(source, check), ['content-length', String(size)], {
      kind: 'write',
      resource: c.resource,
      requestId: c.requestId,
      commit: async () => {
        const r = check.result as NonNullable<BodyCheck['result']>
        const etag = (r.md5 as Buffer).toString('hex') // hashed here, as a copy
        if (await this.index.getUpload(bucket, uploadId) === null) {
          await this.deleteBlock(bucket, blockOfPart(uploadId, n)).catch(() => {})
          throw new S3Error('NoSuchUpload', 'The specified upload does not exist.')
        }
        const now = Date.now()
        await this.index.putPart(bucket, uploadId, { part: n, etag, size: r.size, lastModified: now })
        return { headers: { 'content-type': 'application/xml' }, body: doc('CopyPartResult', `${el('LastModified', isoDate(now))}${el('ETag', `"${etag}"`)}`) }
      }
    }, () => failed)
  }

  private async completeUpload (c: Ctx, bucket: string, key: string, uploadId: string): Promise<void> {
    if (/^[0-9a-f]{32}$/.test(uploadId) && await this.index.getUpload(bucket, uploadId) === null) {
      // A Complete retried after it succeeded (its answer lost to a timeout or a proxy restart;
      // SDKs retry it) is answered as the first was, as S3 does, while the key is still the
      // object that upload made: a NoSuchUpload would fail a client whose object is stored.
      const made = await this.index.getObject(bucket, key)
      if (made?.uploadId === uploadId) {
        await readSmallBody(c.req, MAX_XML_BYTES)
        this.send(c, 200, doc('CompleteMultipartUploadResult', `${el('Location', `/${bucket}/${key}`)}${el('Bucket', bucket)}${el('Key', key)}${el('ETag', `"${made.etag}"`)}`), { etag: `"${made.etag}"` })
        return
      }
    }
    const up = await this.upload(bucket, key, uploadId)
    const xml = await readSmallBody(c.req, MAX_XML_BYTES)
    const d = parseXml(xml, 'CompleteMultipartUpload')
    const asked = (Array.isArray(d.Part) ? d.Part as Array<Record<string, unknown>> : []).map(p => ({ part: Number(text(p.PartNumber)), etag: (text(p.ETag) ?? '').replace(/"/g, '').trim() }))
    if (asked.length === 0) throw new S3Error('MalformedXML', 'You must specify at least one part')
    const stored = new Map((await this.index.listParts(bucket, uploadId)).map(p => [p.part, p]))
    const parts: PartRecord[] = []
    let last = 0
    for (const a of asked) {
      if (!Number.isInteger(a.part) || a.part < 1 || a.part > MAX_PART) throw new S3Error('InvalidPart', `invalid part number ${a.part}`)
      if (a.part <= last) throw new S3Error('InvalidPartOrder', 'The list of parts was not in ascending order. The parts list must be specified in order by part number.')
      last = a.part
      const p = stored.get(a.part)
      if (p === undefined || p.etag !== a.etag) throw new S3Error('InvalidPart', 'One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not have matched the part\'s entity tag.')
      parts.push(p)
    }
    parts.forEach((p, i) => {
      if (i < parts.length - 1 && p.size < this.cfg.multipart.minPartBytes) throw new S3Error('EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.')
    })
    const size = parts.reduce((a, p) => a + p.size, 0)
    const etag = createHash('md5').update(Buffer.concat(parts.map(p => Buffer.from(p.etag, 'hex')))).digest('hex') + '-' + parts.length
    let failed: S3Error | undefined
    const read = this.readBlockFrom.bind(this)
    // The object is stored as one block (moved, repaired and served as a unit): the parts are
    // streamed into it in order, and deleted once it is acknowledged. A member that dies (or
    // sends short) while its part streams: the rest of the part is read from the next in-sync
    // member, from where the first stopped, so losing a gateway mid-Complete does not fail it
    // while another copy exists (test/fault/s3-faults.test.ts).
    async function * concat (): AsyncGenerator<Buffer> {
      for (const p of parts) {
        const block = blockOfPart(uploadId, p.part)
        const dead = new Set<string>()
        let n = 0
        for (;;) {
          const src = await read(bucket, block, n === 0 ? undefined : { first: n, last: p.size - 1 }, dead)
          try {
            for await (const chunk of src.body) {
              const b = chunk as Buffer
              if (n + b.length > p.size) throw (failed = new S3Error('InternalError', `part ${p.part} has more than the ${p.size} bytes acknowledged on ${src.gateway}`))
              n += b.length
              yield b
            }
          } catch (err) {
            if (err instanceof S3Error) throw err
          }
          if (n === p.size) break
          dead.add(src.gateway)
        }
      }
    }
    const body = Readable.from(concat())
    body.on('error', err => { if (err instanceof S3Error) failed ??= err })
    this.dispatch(c, 'PUT', bucket, blockOfKey(key), body, ['content-length', String(size)], {
      kind: 'write',
      resource: c.resource,
      requestId: c.requestId,
      commit: async () => {
        const { contentType, meta, headers } = up
        await this.index.putObject(bucket, key, {
          etag, size, lastModified: Date.now(), parts: parts.map(p => p.size), uploadId,
          ...(contentType !== undefined ? { contentType } : {}), ...(meta !== undefined ? { meta } : {}), ...(headers !== undefined ? { headers } : {})
        })
        await this.index.deleteUpload(bucket, uploadId)
        this.dropParts(bucket, uploadId, [...stored.keys()])
        return {
          headers: { 'content-type': 'application/xml', etag: `"${etag}"` },
          body: doc('CompleteMultipartUploadResult', `${el('Location', `/${bucket}/${key}`)}${el('Bucket', bucket)}${el('Key', key)}${el('ETag', `"${etag}"`)}`)
        }
      }
    }, () => failed)
  }

  /** Deletes an upload's part blocks in the background (their upload record is already gone). */
  private dropParts (bucket: string, uploadId: string, parts: number[]): void {
    void (async () => {
      for (const n of parts) await this.deleteBlock(bucket, blockOfPart(uploadId, n)).catch(() => {})
    })()
  }

  private async abortUpload (c: Ctx, bucket: string, key: string, uploadId: string): Promise<void> {
    await this.upload(bucket, key, uploadId)
    await this.abort(bucket, uploadId)
    this.sendEmpty(c, 204)
  }

  private async abort (bucket: string, uploadId: string): Promise<void> {
    const parts = await this.index.listParts(bucket, uploadId)
    await this.index.deleteUpload(bucket, uploadId)
    this.dropParts(bucket, uploadId, parts.map(p => p.part))
  }

  private async listParts (c: Ctx, bucket: string, key: string, uploadId: string): Promise<void> {
    await this.upload(bucket, key, uploadId)
    const marker = Number(c.query.get('part-number-marker') ?? 0)
    const max = Math.min(Number(c.query.get('max-parts') ?? 1000), 1000)
    const all = (await this.index.listParts(bucket, uploadId)).filter(p => p.part > marker)
    const page = all.slice(0, max)
    const truncated = all.length > page.length
    const body = `${el('Bucket', bucket)}${el('Key', key)}${el('UploadId', uploadId)}<Initiator><ID>ferry</ID><DisplayName>ferry</DisplayName></Initiator>${OWNER}<StorageClass>STANDARD</StorageClass>` +
      `${el('PartNumberMarker', marker)}${el('NextPartNumberMarker', page.at(-1)?.part ?? marker)}${el('MaxParts', max)}${el('IsTruncated', truncated)}` +
      page.map(p => `<Part>${el('PartNumber', p.part)}${el('LastModified', isoDate(p.lastModified))}${el('ETag', `"${p.etag}"`)}${el('Size', p.size)}</Part>`).join('')
    this.send(c, 200, doc('ListPartsResult', body))
  }

  /** Aborts uploads older than multipart.abandonAfterMs. */
  async sweep (): Promise<number> {
    const stale = await this.index.staleUploads(Date.now() - this.cfg.multipart.abandonAfterMs, 100)
    for (const u of stale) await this.abort(u.volume, u.uploadId)
    if (stale.length > 0) this.logger.info({ uploads: stale.length }, 's3: aborted abandoned multipart uploads')
    return stale.length
  }
}

function writeError (res: ServerResponse, e: S3Error, resource: string, requestId: string, headers?: Record<string, string | number>): void {
  if (res.headersSent) { res.destroy(); return }
  const head = res.req?.method === 'HEAD'
  const body = head ? '' : errorXml(e.code, e.message, resource, requestId)
  res.writeHead(e.status, { ...headers, ...e.headers, 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/** Whether the query names a subresource (not just x-id, which SDKs add, or presigning parameters). */
/**
 * Where an upload's MD5 (its ETag) and its declared digests are computed: by the gateways that
 * store the body, once every one of them has shown it checks declared digests and reports the
 * MD5 (Gateway.reportsDigests), else here (BodyCheck.leaveDigestsTo). Each answer teaches the
 * receivers' `reportsDigests` again, so a gateway that stops reporting is hashed for at once.
 * An upload with nothing left to check here (a plain body of known length, no x-amz-checksum)
 * then goes to those gateways as the client's request itself, through no stream of ours.
 */
class UploadDigests {
  private request: ProxyRequest | undefined
  /** The body went unwrapped (bodyAt): nothing here saw it. */
  private direct = false

  /** `plainLength`: the body's Content-Length when the upload may go unwrapped, else undefined. */
  constructor (private readonly core: BlockCore, private readonly up: { body: NodeJS.ReadableStream, check: BodyCheck, plainLength: number | undefined }, private readonly req: IncomingMessage, private readonly sources: Counter<'by'>) {}

  /** The write's request, once the core made it; from its first dispatch on its receivers are known. */
  bind (request: ProxyRequest): void {
    this.request = request
    this.up.check.leaveDigestsTo(() => request.attempts === 0 ? undefined : this.checkedUpstream(request))
  }

  /** BlockOperation.bodyAt: the client's request itself when the gateways check it and nothing is left to check here. */
  readonly bodyAt = (request: ProxyRequest): NodeJS.ReadableStream => {
    if (this.up.plainLength === undefined || !this.checkedUpstream(request)) return this.up.body
    this.direct = true
    return this.req
  }

  private checkedUpstream (request: ProxyRequest): boolean {
    return this.core.receiversOf(request).every(g => g !== undefined && g.kind === 'ferry' && g.reportsDigests)
  }

  /**
   * The body's MD5 (hex), size and checksum for an acknowledged upload: hashed here, or the MD5
   * the gateways report (`Repr-Digest`). A body left to gateways that did not report it is not
   * acknowledged: whether they checked what the client declared is then unknown.
   */
  result (answer: IncomingHttpHeaders): { md5: string, size: number, checksum?: BodyResult['checksum'] } {
    const reported = parseDigestField(answer['repr-digest']).get('md5')
    const ok = reported?.length === 16
    if (this.request !== undefined) for (const g of this.core.receiversOf(this.request)) if (g !== undefined) g.reportsDigests = ok
    // Unwrapped, the HTTP framing delivered exactly Content-Length bytes, or the write failed.
    const r: BodyResult = this.direct ? { md5: undefined, size: this.up.plainLength as number } : this.up.check.result as BodyResult
    const own = r.md5
    // Both known and different: the gateways stored other bytes than were sent.
    if (own !== undefined && ok && !own.equals(reported as Buffer)) throw new S3Error('InternalError', 'the gateway reports another MD5 than the body it was sent; not acknowledged, retry')
    if (own === undefined && !ok) throw new S3Error('InternalError', 'the gateway stored the object without reporting its MD5 (Repr-Digest), so what the request declared was not checked; not acknowledged, retry')
    this.sources.inc({ by: own !== undefined ? 'proxy' : 'gateway' })
    return { md5: (own ?? reported as Buffer).toString('hex'), size: r.size, ...(r.checksum !== undefined ? { checksum: r.checksum } : {}) }
  }
}

function hasSubresource (q: URLSearchParams): boolean {
  for (const k of q.keys()) if (k !== 'x-id' && !k.toLowerCase().startsWith('x-amz-')) return true
  return false
}

function opName (method: string, bucket: string | undefined, key: string | undefined, q: URLSearchParams): string {
  if (bucket === undefined) return 'ListBuckets'
  if (key === undefined) {
    if (method === 'GET') return q.has('location') ? 'GetBucketLocation' : q.has('uploads') ? 'ListMultipartUploads' : q.has('versions') ? 'ListObjectVersions' : q.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects'
    return method === 'PUT' ? 'CreateBucket' : method === 'HEAD' ? 'HeadBucket' : method === 'DELETE' ? 'DeleteBucket' : method === 'POST' ? 'DeleteObjects' : 'other'
  }
  if (q.has('uploads')) return 'CreateMultipartUpload'
  if (q.has('uploadId')) return method === 'PUT' ? 'UploadPart' : method === 'POST' ? 'CompleteMultipartUpload' : method === 'DELETE' ? 'AbortMultipartUpload' : 'ListParts'
  return method === 'PUT' ? 'PutObject' : method === 'GET' ? 'GetObject' : method === 'HEAD' ? 'HeadObject' : method === 'DELETE' ? 'DeleteObject' : 'other'
}

async function readSmallBody (req: IncomingMessage, max: number): Promise<string> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const chunk of req) {
    n += (chunk as Buffer).length
    if (n > max) throw new S3Error('EntityTooLarge', `the request body is over ${max} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function encodeToken (from: ListFrom): string {
  return Buffer.from(JSON.stringify([from.key, from.skipPrefix ? 1 : 0])).toString('base64url')
}

function decodeToken (token: string): ListFrom {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(v) && typeof v[0] === 'string' && (v[1] === 0 || v[1] === 1)) return { key: v[0], skipPrefix: v[1] === 1 }
  } catch { // falls through to the refusal below
  }
  throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect')
}

/** A single `bytes=` range; anything else (several ranges, other units) is ignored, as S3 does. */
function parseRange (h: string): { start: number, end: number | undefined, suffix?: number } | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim())
  if (m === null) return undefined
  const [, a, b] = m as unknown as [string, string, string]
  if (a === '' && b === '') return undefined
  if (a === '') return { start: 0, end: undefined, suffix: Number(b) }
  const start = Number(a)
  const end = b === '' ? undefined : Number(b)
  if (end !== undefined && end < start) return undefined
  return { start, end }
}

function etagMatches (list: string, etag: string): boolean {
  return list.split(',').some(t => { const v = t.trim().replace(/^W\//, '').replace(/"/g, ''); return v === '*' || v === etag })
}

/** RFC 9110 §13.2.2 order, S3's reading: 200 go on, 304 not modified, 412 failed. */
function preconditions (headers: IncomingMessage['headers'] | Record<string, string>, meta: ObjectMeta): 200 | 304 | 412 {
  const h = headers as Record<string, string | undefined>
  const lm = Math.floor(meta.lastModified / 1000) * 1000
  const ifMatch = h['if-match']
  if (ifMatch !== undefined && !etagMatches(ifMatch, meta.etag)) return 412
  const ius = h['if-unmodified-since']
  if (ifMatch === undefined && ius !== undefined && !Number.isNaN(Date.parse(ius)) && lm > Date.parse(ius)) return 412
  const inm = h['if-none-match']
  if (inm !== undefined && etagMatches(inm, meta.etag)) return 304
  const ims = h['if-modified-since']
  if (inm === undefined && ims !== undefined && !Number.isNaN(Date.parse(ims)) && lm <= Date.parse(ims)) return 304
  return 200
}

function copyPreconditions (h: IncomingMessage['headers'], meta: ObjectMeta): 200 | 412 {
  const map: Record<string, string> = {}
  for (const n of ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since']) {
    const v = h['x-amz-copy-source-' + n]
    if (typeof v === 'string') map[n] = v
  }
  return preconditions(map, meta) === 200 ? 200 : 412
}
