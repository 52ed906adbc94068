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
   * Makes the PUT conditional, so that a write proxies teed to the joining target since the copy
   * began is kept rather than overwritten: it is newer than what the copy may have read from the
   * source, and overwriting it would leave the target older than the source once that write
   * lands there too — while the verify could still find them equal in between (the write in
   * flight to the source) and mark a stale copy in sync (the 5 stale reads of the first
   * 10,000-move run). The value is the ETag of bytes the target holds that are no newer than
   * the source's (If-Match: what it held before it joined, or what the verify checked), or null:
   * it holds none (If-None-Match: *). Each kind as it can (upstream/README.md
   * "Conditional copies"): the reference gateway and S3 take the header; nginx WebDAV ignores
   * both, so onto it the copy is PUT to `stagingPath` and moved into place with MOVE and
   * `Overwrite: F` (null only: the caller clears the target first).
   */
  unlessChangedFrom?: string | null
  /**
   * For a webdav target: where the conditional copy is staged, a hidden name beside the block
   * (`/{volume}/.ferry-copy.{block}.{random}`: not an id, so no inventory and no client sees it).
   */
  stagingPath?: string
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
 * Resolves null when the PUT was conditional (`unlessChangedFrom`) and the target had changed:
 * superseded. Onto nginx the copy is staged (read back from its private name, where no other
 * write lands, so a difference there is corruption) and moved into place only if the block is
 * still absent; an nginx that refuses MOVE (left out of `dav_methods`) gets the copy at the
 * block's own name, unconditionally, and a read-back that differs then counts as superseded
 * too — it cannot be told from a newer write — for the verify step to settle by comparing the
 * two sides (upstream/README.md "Conditional copies").
 * Throws FerryError FERRY_SOURCE_MISSING (the source has no such block), FERRY_COPY_SOURCE_FAILED,
 * FERRY_COPY_TARGET_FAILED, FERRY_COPY_VERIFY_FAILED or FERRY_COPY_TIMEOUT; on abort, the signal's reason.
 */
export async function copyBlock (source: CopyEndpoint, target: CopyEndpoint, opts: CopyOptions): Promise<CopyResult | null> {
  if (target.kind !== 'webdav' || opts.unlessChangedFrom === undefined) return await copyOnce(source, target, opts, opts.path, 'strict')
  if (opts.unlessChangedFrom !== null || opts.stagingPath === undefined) throw new Error('a conditional copy onto webdav needs a cleared target (unlessChangedFrom null) and a stagingPath')
  if (!moveRefused(target.pool)) {
    const staged = await stagedCopy(source, target, opts, opts.stagingPath)
    if (staged !== 'move-refused') return staged
  }
  return await copyOnce(source, target, opts, opts.path, 'superseded')
}

/**
 * The copy onto nginx that cannot overwrite a newer write: PUT to the staging name, verified by
 * reading it back there, then MOVE onto the block with `Overwrite: F` (nginx answers 412 when
 * the block exists: a write teed to the target since the caller cleared it, which is kept).
 */
async function stagedCopy (source: CopyEndpoint, target: CopyEndpoint, opts: CopyOptions, staging: string): Promise<CopyResult | null | 'move-refused'> {
  const dropStaging = async (): Promise<void> => {
    const res = await target.pool.request({ method: 'DELETE', path: staging, signal: AbortSignal.timeout(10_000) }).catch(() => null)
    await res?.body.dump().catch(() => {})
  }
  let copied: CopyResult | null
  try {
    copied = await copyOnce(source, target, { ...opts, unlessChangedFrom: undefined }, staging, 'strict')
  } catch (err) {
    await dropStaging()
    throw err
  }
  if (copied === null) { await dropStaging(); return null }
  let moved: Dispatcher.ResponseData
  try {
    moved = await target.pool.request({
      method: 'MOVE',
      path: staging,
      headers: { destination: opts.path, overwrite: 'F' },
      signal: AbortSignal.any([opts.signal, AbortSignal.timeout(Math.max(1, Math.ceil(opts.timeoutMs)))])
    })
  } catch (err) {
    await dropStaging()
    if (opts.signal.aborted) throw opts.signal.reason
    throw new FerryError('FERRY_COPY_TARGET_FAILED', `MOVE ${staging} to ${opts.path} on the target failed: ${describeGatewayError(err)}`, 502)
  }
  await moved.body.dump().catch(() => {})
  if (moved.statusCode >= 200 && moved.statusCode < 300) return copied
  await dropStaging()
  if (moved.statusCode === 412) return null
  if (moved.statusCode === 405 || moved.statusCode === 501 || moved.statusCode === 403) {
    noMove.set(target.pool, performance.now())
    return 'move-refused'
  }
  throw new FerryError('FERRY_COPY_TARGET_FAILED', `MOVE ${staging} to ${opts.path} on the target answered ${moved.statusCode}`, 502)
}

/**
 * Targets (pools) that refused MOVE, and when: their copies go to the block's name directly,
 * and MOVE is tried again after MOVE_RETRY_MS (the operator may have added it).
 */
const noMove = new WeakMap<Dispatcher, number>()
const MOVE_RETRY_MS = 600_000

function moveRefused (pool: Dispatcher): boolean {
  const at = noMove.get(pool)
  if (at === undefined) return false
  if (performance.now() - at < MOVE_RETRY_MS) return true
  noMove.delete(pool)
  return false
}

/**
 * One streamed copy to `putPath`. `readBack`: what a read-back that differs from the bytes sent
 * means — corruption (`strict`), or possibly a newer write (`superseded`: resolves null).
 */
async function copyOnce (source: CopyEndpoint, target: CopyEndpoint, opts: CopyOptions, putPath: string, readBack: 'strict' | 'superseded'): Promise<CopyResult | null> {
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
      path: putPath,
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
    throw fail('FERRY_COPY_TARGET_FAILED', `PUT ${putPath} to the target failed`, err)
  } finally {
    // A target that answered before reading the whole body (an error, a 413) leaves the source
    // stream half read: release its connection rather than letting it stall.
    if (!meter.writableFinished) src.body.destroy()
  }
  await put.body.dump().catch(() => {})
  // The target took a write since the copy began: it is newer, and is kept (null: superseded).
  if (put.statusCode === 412 && opts.unlessChangedFrom !== undefined) return null
  if (put.statusCode < 200 || put.statusCode >= 300) throw fail('FERRY_COPY_TARGET_FAILED', `PUT ${putPath} to the target answered ${put.statusCode}`)
  if (sourceError !== undefined) throw fail('FERRY_COPY_SOURCE_FAILED', `reading ${opts.path} from the source failed mid-copy`, sourceError)

  const sent = meter.digests()
  const bytes = meter.bytes
  if (size !== null && bytes !== size) {
    throw new FerryError('FERRY_COPY_VERIFY_FAILED', `copied ${bytes} bytes of ${opts.path}, the source announced ${size}`, 502)
  }
  let proof: CopyProof | null
  try {
    proof = await verifyCopy({
      path: putPath,
      source: { kind: source.kind, etag: sourceEtag },
      target: { kind: target.kind, dispatcher: target.pool },
      sent,
      putHeaders: put.headers,
      signal,
      ...(readBack === 'superseded' ? { mayBeSuperseded: true } : {})
    })
  } catch (err) {
    throw err instanceof FerryError ? err : fail('FERRY_COPY_TARGET_FAILED', `reading ${putPath} back from the target failed`, err)
  }
  if (proof === null) return null
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
