import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { Dispatcher } from 'undici'
import { FerryError } from '../lib/errors.js'
import { contentHashOf, digestClaims, etagDigestClaim, type Digests, type GatewayKind } from './kinds.js'

/** What a copy of one block knows once the target has answered its PUT. */
export interface CopyEvidence {
  /** `/{volume}/{block}` on both gateways. */
  path: string
  source: { kind: GatewayKind, etag: string | null }
  target: { kind: GatewayKind, dispatcher: Dispatcher }
  /** Digests of the bytes streamed from the source into the PUT. */
  sent: Digests
  /** The target's answer to the PUT. */
  putHeaders: IncomingHttpHeaders
  signal: AbortSignal
  /**
   * Other writes may have landed on the target's copy since the PUT (a copy at the block's own
   * name onto a kind that cannot make it conditional: nginx without MOVE). A read-back that
   * differs, or finds nothing, is then no evidence of corruption — it may be a newer write that
   * proxies teed to the target — and resolves null (superseded) instead of throwing; the
   * migration's verify step settles it by comparing source and target, and copies again while
   * they differ (FERRY_COPY_VERIFY_FAILED after planner.migration.maxRecopies).
   */
  mayBeSuperseded?: boolean
}

/** How the target proved it holds the bytes sent. */
export interface CopyProof {
  method: 'etag' | 'digest' | 'read-back'
  /**
   * The target's ETag for the verified copy (null when it sends none): what a cut-over check
   * compares a later HEAD with. nginx sends none with a PUT, so for it this is the ETag of the
   * read-back.
   */
  targetEtag: string | null
}

/**
 * Proves a copy by what each side can prove, never by comparing ETags across kinds (an nginx
 * target's mtime-size ETag never equals the reference gateway's content hash, which once made
 * every move onto nginx roll back):
 *
 * 1. the source: when its ETag is a content hash, the bytes read from it must hash to it (a
 *    read cut short or garbled on the way must not be copied as if whole);
 * 2. the target, the first that applies: its PUT answer's ETag when the kind makes it a content
 *    hash; a digest header in that answer (`Repr-Digest`, `Digest`, `Content-MD5`) for an
 *    algorithm ferry computed; otherwise the copy is read back and hashed.
 *
 * Throws FerryError FERRY_COPY_VERIFY_FAILED on any mismatch; resolves null for a read-back that
 * differs when `mayBeSuperseded`. A target that fails the read-back
 * (GatewayStatusError for an error status; connection errors and aborts as they came) has
 * proved nothing either way: the caller classifies it as a gateway failure.
 */
export async function verifyCopy (e: CopyEvidence): Promise<CopyProof | null> {
  const claimed = contentHashOf(e.source.kind, e.source.etag)
  if (claimed !== null && claimed !== e.sent.sha256) {
    throw new FerryError('FERRY_COPY_VERIFY_FAILED', `the bytes read from the source do not hash to its ETag ${String(e.source.etag)}`, 502)
  }
  const putEtag = typeof e.putHeaders.etag === 'string' ? e.putHeaders.etag : null
  const stored = contentHashOf(e.target.kind, putEtag)
  if (stored !== null) {
    if (stored !== e.sent.sha256) throw new FerryError('FERRY_COPY_VERIFY_FAILED', `the target stored ${e.path} with ETag ${putEtag as string}, the bytes sent hash to "${e.sent.sha256}"`, 502)
    return { method: 'etag', targetEtag: putEtag }
  }
  const sourceMd5 = etagDigestClaim(e.source.kind, e.source.etag)
  if (sourceMd5 !== null && e.sent.md5 !== undefined && sourceMd5.hex !== e.sent.md5) {
    throw new FerryError('FERRY_COPY_VERIFY_FAILED', `the bytes read from the source do not hash to its MD5 ETag ${String(e.source.etag)}`, 502)
  }
  let matched = false
  const etagClaim = etagDigestClaim(e.target.kind, putEtag)
  for (const c of etagClaim === null ? digestClaims(e.putHeaders) : [etagClaim, ...digestClaims(e.putHeaders)]) {
    const ours = e.sent[c.algorithm]
    if (ours === undefined) continue
    if (ours !== c.hex) throw new FerryError('FERRY_COPY_VERIFY_FAILED', `the target's ${c.header} for ${e.path} does not match the bytes sent (${c.algorithm})`, 502)
    matched = true
  }
  if (matched) return { method: 'digest', targetEtag: putEtag }
  const back = await hashBlock(e.target.dispatcher, e.path, e.signal)
  if (e.mayBeSuperseded === true && (back.status === 404 || (back.status === 200 && back.sha256 !== e.sent.sha256))) return null
  if (back.status === 404) throw new FerryError('FERRY_COPY_VERIFY_FAILED', `the target answered 404 reading ${e.path} back right after storing it`, 502)
  if (back.status !== 200) throw new GatewayStatusError(back.status, `reading ${e.path} back from the target answered ${back.status}`)
  if (back.sha256 !== e.sent.sha256) throw new FerryError('FERRY_COPY_VERIFY_FAILED', `the target's copy of ${e.path} differs from the bytes sent (read back ${back.bytes} bytes)`, 502)
  return { method: 'read-back', targetEtag: back.etag }
}

/**
 * A gateway answered a read with an error status: a gateway failure (worth another try), not
 * evidence about the bytes. `code` is `HTTP_<status>` for logs.
 */
export class GatewayStatusError extends Error {
  readonly code: string
  constructor (readonly status: number, message: string) {
    super(message)
    this.name = 'GatewayStatusError'
    this.code = `HTTP_${status}`
  }
}

/** A block read whole and hashed. */
export interface HashedBlock {
  /** The GET's status; the other fields are only filled for 200. */
  status: number
  sha256: string | null
  bytes: number
  /** The ETag the GET answered with: the version that was hashed. */
  etag: string | null
}

/**
 * GETs a block and hashes it as it streams (never held in memory). Any status is returned for
 * the caller to judge (404: gone; 5xx: try again); connection errors and aborts are thrown as
 * they came.
 */
export async function hashBlock (dispatcher: Dispatcher, path: string, signal?: AbortSignal): Promise<HashedBlock> {
  const res = await dispatcher.request({ method: 'GET', path, ...(signal === undefined ? {} : { signal }) })
  if (res.statusCode !== 200) {
    await res.body.dump().catch(() => {})
    return { status: res.statusCode, sha256: null, bytes: 0, etag: null }
  }
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  const etag = res.headers.etag
  return { status: 200, sha256: hash.digest('hex'), bytes, etag: typeof etag === 'string' ? etag : null }
}
