import { createHash, type Hash } from 'node:crypto'
import { Transform, pipeline, type TransformCallback } from 'node:stream'
import type { Dispatcher } from 'undici'
import { FerryError } from '../../lib/errors.js'
import { copyDigests, writtenAtHeaders, writtenAtOf, type DigestAlgorithm, type Digests, type GatewayKind } from '../../upstream/kinds.js'
import { verifyCopy, type CopyProof } from '../../upstream/verify.js'
import type { TokenBucket } from './token-bucket.js'
import { describeGatewayError } from '../../upstream/connect.js'

/** One side of a copy: how to reach the gateway, and what kind it is (how it can prove a copy). */
export interface CopyEndpoint {
  kind: GatewayKind
  pool: Dispatcher
}

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
  /**
   * The target's ETag when the copy began (null: it held no copy). The PUT is then conditional
   * (If-Match, or If-None-Match: *): a write a proxy teed to the joining target since then is
   * newer than what the copy may have read from the source, and overwriting it would leave the
   * target older than the source once that write lands there too — and the verify could still
   * find them equal in between (the write in flight to the source), marking a stale copy in
   * sync. Only for targets that honour preconditions on PUT (the reference gateway).
   */
  unlessChangedFrom?: string | null
}

export interface CopyResult {
  /** The source's ETag for exactly the bytes copied (null when the gateway sends none). */
  sourceEtag: string | null
  /** The target's ETag for the verified copy: what the cut-over checks compare a later HEAD with. */
  targetEtag: string | null
  bytes: number
  /** Hex SHA-256 of the bytes streamed. */
  sha256: string
  /** How the target proved it holds them (upstream/verify.ts). */
  proof: CopyProof['method']
}

/**
 * Copies one block from `source` to `target` as a stream: the GET's body is piped through a
 * meter (hash, byte count, bandwidth limit) straight into the PUT's body, so a block is never
 * held in memory and a slow target slows the read from the source (backpressure end to end).
 *
 * Verified before it counts: the byte count matches the source's Content-Length, and each
 * side proves what it can for its kind (upstream/verify.ts): a content-hash ETag where the
 * gateway gives one, a digest header, else the target's copy is read back and hashed (nginx).
 *
 * Resolves null when the PUT was conditional (`unlessChangedFrom`) and the target had changed.
 * Throws FerryError FERRY_SOURCE_MISSING (the source has no such block), FERRY_COPY_SOURCE_FAILED,
 * FERRY_COPY_TARGET_FAILED, FERRY_COPY_VERIFY_FAILED or FERRY_COPY_TIMEOUT; on abort, the signal's reason.
 */
export async function copyBlock (source: CopyEndpoint, target: CopyEndpoint, opts: CopyOptions): Promise<CopyResult | null> {
  const timeout = AbortSignal.timeout(Math.max(1, Math.ceil(opts.timeoutMs)))
  const signal = AbortSignal.any([opts.signal, timeout])
  const fail = (code: 'FERRY_COPY_SOURCE_FAILED' | 'FERRY_COPY_TARGET_FAILED', what: string, err?: unknown): FerryError => {
    if (opts.signal.aborted) throw opts.signal.reason
    if (timeout.aborted) return new FerryError('FERRY_COPY_TIMEOUT', `copy of ${opts.path} did not finish within ${opts.timeoutMs} ms`, 504)
    const why = err === undefined ? '' : `: ${describeGatewayError(err)}`
    return new FerryError(code, `${what}${why}`, 502)
  }

  let src: Dispatcher.ResponseData
  try {
    src = await source.pool.request({ method: 'GET', path: opts.path, signal })
  } catch (err) {
    throw fail('FERRY_COPY_SOURCE_FAILED', `GET ${opts.path} from the source failed`, err)
  }
  if (src.statusCode !== 200) {
    await src.body.dump().catch(() => {})
    if (src.statusCode === 404) throw new FerryError('FERRY_SOURCE_MISSING', `the source no longer holds ${opts.path}`, 409)
    throw fail('FERRY_COPY_SOURCE_FAILED', `GET ${opts.path} from the source answered ${src.statusCode}`)
  }
  const sourceEtag = header(src.headers, 'etag')
  // The copy keeps its original's written-at: stamped with the time of the copy, it would look
  // newer than a write the source took while the copy ran, and a rebuild after a store loss
  // (recovery/) would pick it and serve the older bytes.
  const writtenAt = writtenAtOf(source.kind, src.headers)
  const declared = header(src.headers, 'content-length')
  const size = declared === null ? null : Number(declared)
  if (size !== null) opts.onSize?.(size)

  const meter = new CopyMeter(opts.bucket, copyDigests(target.kind), opts.onBytes)
  let sourceError: unknown
  pipeline(src.body, meter, err => { if (err) sourceError ??= err })
  let put: Dispatcher.ResponseData
  try {
    put = await target.pool.request({
      method: 'PUT',
      path: opts.path,
      body: meter,
      headers: {
        'content-type': 'application/octet-stream',
        ...(size === null ? {} : { 'content-length': String(size) }),
        ...(writtenAt === null ? {} : writtenAtHeaders(target.kind, writtenAt)),
        ...(opts.unlessChangedFrom === undefined ? {} : opts.unlessChangedFrom === null ? { 'if-none-match': '*' } : { 'if-match': opts.unlessChangedFrom })
      },
      signal
    })
  } catch (err) {
    src.body.destroy()
    if (sourceError !== undefined) throw fail('FERRY_COPY_SOURCE_FAILED', `reading ${opts.path} from the source failed mid-copy`, sourceError)
    throw fail('FERRY_COPY_TARGET_FAILED', `PUT ${opts.path} to the target failed`, err)
  } finally {
    // A target that answered before reading the whole body (an error, a 413) leaves the source
    // stream half read: release its connection rather than letting it stall.
    if (!meter.writableFinished) src.body.destroy()
  }
  await put.body.dump().catch(() => {})
  // The target took a write since the copy began: it is newer, and is kept (null: superseded).
  if (put.statusCode === 412 && opts.unlessChangedFrom !== undefined) return null
  if (put.statusCode < 200 || put.statusCode >= 300) throw fail('FERRY_COPY_TARGET_FAILED', `PUT ${opts.path} to the target answered ${put.statusCode}`)
  if (sourceError !== undefined) throw fail('FERRY_COPY_SOURCE_FAILED', `reading ${opts.path} from the source failed mid-copy`, sourceError)

  const sent = meter.digests()
  const bytes = meter.bytes
  if (size !== null && bytes !== size) {
    throw new FerryError('FERRY_COPY_VERIFY_FAILED', `copied ${bytes} bytes of ${opts.path}, the source announced ${size}`, 502)
  }
  let proof: CopyProof
  try {
    proof = await verifyCopy({
      path: opts.path,
      source: { kind: source.kind, etag: sourceEtag },
      target: { kind: target.kind, dispatcher: target.pool },
      sent,
      putHeaders: put.headers,
      signal
    })
  } catch (err) {
    throw err instanceof FerryError ? err : fail('FERRY_COPY_TARGET_FAILED', `reading ${opts.path} back from the target failed`, err)
  }
  return { sourceEtag, targetEtag: proof.targetEtag, bytes, sha256: sent.sha256, proof: proof.method }
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
  private readonly hashes: Array<[DigestAlgorithm, Hash]>

  constructor (private readonly bucket: TokenBucket, algorithms: readonly DigestAlgorithm[], private readonly onBytes?: (n: number) => void) {
    super({ highWaterMark: 64 * 1024 })
    // SHA-256 always: the cut-over checks and a read-back compare with it.
    this.hashes = [...new Set<DigestAlgorithm>(['sha256', ...algorithms])].map(a => [a, createHash(a)])
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    for (const [, h] of this.hashes) h.update(chunk)
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

  digests (): Digests {
    const out: Partial<Digests> = {}
    for (const [a, h] of this.hashes) out[a] = h.digest('hex')
    return out as Digests
  }
}
