import { createHash, type Hash } from 'node:crypto'
import { Transform, pipeline, type TransformCallback } from 'node:stream'
import type { Dispatcher } from 'undici'
import { FerryError } from '../../lib/errors.js'
import { COPY_SOURCE_FAILED, COPY_TARGET_FAILED, COPY_TIMEOUT, COPY_VERIFY_FAILED, SOURCE_MISSING } from './errors.js'
import type { TokenBucket } from './token-bucket.js'

export interface CopyOptions {
  /** `/{volume}/{block}` on both gateways. */
  path: string
  bucket: TokenBucket
  timeoutMs: number
  /** Aborts the copy (planner stopping, deposed, migration cancelled). */
  signal: AbortSignal
  /** Called as bytes are read from the source (progress). */
  onBytes?: (n: number) => void
  /** Called once the source said how large the block is. */
  onSize?: (bytes: number) => void
}

export interface CopyResult {
  /** The source's ETag for exactly the bytes copied (null when the gateway sends none). */
  sourceEtag: string | null
  /** The target's ETag after the PUT: what a proxy confirming a write, and the cut-over checks, compare with. */
  targetEtag: string | null
  bytes: number
  /** Hex SHA-256 of the bytes streamed. */
  sha256: string
}

/** The reference gateway's strong ETag: the quoted hex SHA-256 of the content. */
const CONTENT_HASH_ETAG = /^"([0-9a-f]{64})"$/

/**
 * Copies one block from `source` to `target` as a stream: the GET's body is piped through a
 * meter (hash, byte count, bandwidth limit) straight into the PUT's body, so a block is never
 * held in memory and a slow target slows the read from the source (backpressure end to end).
 *
 * Verified before it counts: the byte count matches the source's Content-Length and, for
 * content-hash ETags (the reference gateway), the streamed hash matches the source's ETag and
 * the target answers the PUT with the same ETag. For opaque ETags (nginx: mtime-size) the
 * target copy is read back and hashed instead: slower, but never trusting an unverifiable copy.
 *
 * Throws FerryError SOURCE_MISSING (the source has no such block), COPY_SOURCE_FAILED,
 * COPY_TARGET_FAILED, COPY_VERIFY_FAILED or COPY_TIMEOUT; on abort, the signal's reason.
 */
export async function copyBlock (source: Dispatcher, target: Dispatcher, opts: CopyOptions): Promise<CopyResult> {
  const timeout = AbortSignal.timeout(Math.max(1, Math.ceil(opts.timeoutMs)))
  const signal = AbortSignal.any([opts.signal, timeout])
  const fail = (code: string, what: string, err?: unknown): FerryError => {
    if (opts.signal.aborted) throw opts.signal.reason
    if (timeout.aborted) return new FerryError(COPY_TIMEOUT, `copy of ${opts.path} did not finish within ${opts.timeoutMs} ms`, 504)
    const why = err === undefined ? '' : `: ${(err as { code?: string }).code ?? (err as Error).message}`
    return new FerryError(code, `${what}${why}`, 502)
  }

  let src: Dispatcher.ResponseData
  try {
    src = await source.request({ method: 'GET', path: opts.path, signal })
  } catch (err) {
    throw fail(COPY_SOURCE_FAILED, `GET ${opts.path} from the source failed`, err)
  }
  if (src.statusCode !== 200) {
    await src.body.dump().catch(() => {})
    if (src.statusCode === 404) throw new FerryError(SOURCE_MISSING, `the source no longer holds ${opts.path}`, 404)
    throw fail(COPY_SOURCE_FAILED, `GET ${opts.path} from the source answered ${src.statusCode}`)
  }
  const sourceEtag = header(src.headers, 'etag')
  const declared = header(src.headers, 'content-length')
  const size = declared === null ? null : Number(declared)
  if (size !== null) opts.onSize?.(size)

  const meter = new CopyMeter(opts.bucket, opts.onBytes)
  let sourceError: unknown
  pipeline(src.body, meter, err => { if (err) sourceError ??= err })
  let put: Dispatcher.ResponseData
  try {
    put = await target.request({
      method: 'PUT',
      path: opts.path,
      body: meter,
      headers: { 'content-type': 'application/octet-stream', ...(size === null ? {} : { 'content-length': String(size) }) },
      signal
    })
  } catch (err) {
    src.body.destroy()
    if (sourceError !== undefined) throw fail(COPY_SOURCE_FAILED, `reading ${opts.path} from the source failed mid-copy`, sourceError)
    throw fail(COPY_TARGET_FAILED, `PUT ${opts.path} to the target failed`, err)
  } finally {
    // A target that answered before reading the whole body (an error, a 413) leaves the source
    // stream half read: release its connection rather than letting it stall.
    if (!meter.writableFinished) src.body.destroy()
  }
  await put.body.dump().catch(() => {})
  if (put.statusCode < 200 || put.statusCode >= 300) throw fail(COPY_TARGET_FAILED, `PUT ${opts.path} to the target answered ${put.statusCode}`)
  if (sourceError !== undefined) throw fail(COPY_SOURCE_FAILED, `reading ${opts.path} from the source failed mid-copy`, sourceError)

  const sha256 = meter.digest()
  const bytes = meter.bytes
  if (size !== null && bytes !== size) {
    throw new FerryError(COPY_VERIFY_FAILED, `copied ${bytes} bytes of ${opts.path}, the source announced ${size}`, 502)
  }
  const targetEtag = header(put.headers, 'etag')
  const m = sourceEtag === null ? null : CONTENT_HASH_ETAG.exec(sourceEtag)
  if (m !== null) {
    if (m[1] !== sha256) throw new FerryError(COPY_VERIFY_FAILED, `the bytes read from the source do not hash to its ETag ${sourceEtag}`, 502)
    if (targetEtag !== sourceEtag) throw new FerryError(COPY_VERIFY_FAILED, `the target stored ${opts.path} with ETag ${String(targetEtag)}, the source has ${sourceEtag}`, 502)
  } else {
    await verifyByReadBack(target, opts.path, sha256, signal).catch(err => { throw err instanceof FerryError ? err : fail(COPY_TARGET_FAILED, `reading ${opts.path} back from the target failed`, err) })
  }
  return { sourceEtag, targetEtag, bytes, sha256 }
}

async function verifyByReadBack (target: Dispatcher, path: string, sha256: string, signal: AbortSignal): Promise<void> {
  const res = await target.request({ method: 'GET', path, signal })
  if (res.statusCode !== 200) {
    await res.body.dump().catch(() => {})
    throw new FerryError(COPY_VERIFY_FAILED, `reading ${path} back from the target answered ${res.statusCode}`, 502)
  }
  const hash = createHash('sha256')
  for await (const chunk of res.body) hash.update(chunk as Buffer)
  if (hash.digest('hex') !== sha256) throw new FerryError(COPY_VERIFY_FAILED, `the target's copy of ${path} differs from the bytes sent`, 502)
}

function header (headers: Record<string, string | string[] | undefined>, name: string): string | null {
  const v = headers[name]
  return typeof v === 'string' ? v : Array.isArray(v) ? (v[0] ?? null) : null
}

/**
 * Hashes and counts the bytes on their way from the source to the target, and holds each chunk
 * back for as long as the shared token bucket says. Holding the callback (not the data) is what
 * propagates the limit as backpressure: the PUT stops pulling, the GET's socket stops being read.
 */
class CopyMeter extends Transform {
  bytes = 0
  private readonly hash: Hash = createHash('sha256')

  constructor (private readonly bucket: TokenBucket, private readonly onBytes?: (n: number) => void) {
    super({ highWaterMark: 64 * 1024 })
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    const wait = this.bucket.reserve(chunk.length)
    // Progress counts bytes released to the target, so the reported rate is the limited one.
    if (wait > 0) {
      setTimeout(() => { this.onBytes?.(chunk.length); cb(null, chunk) }, wait)
    } else {
      this.onBytes?.(chunk.length)
      cb(null, chunk)
    }
  }

  digest (): string {
    return this.hash.digest('hex')
  }
}
