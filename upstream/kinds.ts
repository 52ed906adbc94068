import type { IncomingHttpHeaders } from 'node:http'
import type { GatewayKind } from '../fleet/schema.js'
import { parseDigestField, parseWrittenAt, WRITTEN_AT_HEADER } from '../lib/block-headers.js'

export type { GatewayKind }

/** A digest of a block's bytes: what an ETag or a digest header claims, or what ferry computed. */
export type DigestAlgorithm = 'sha256' | 'md5'

/** Hex digests of one byte stream. SHA-256 is always computed; MD5 only where a kind can be checked with it. */
export interface Digests {
  sha256: string
  md5?: string
}

/** The reference gateway's strong ETag: the quoted hex SHA-256 of the content. */
const SHA256_ETAG = /^"([0-9a-f]{64})"$/

/** Where a copy onto an `s3` gateway keeps its original's written-at: user metadata, returned by GET and HEAD. */
export const S3_WRITTEN_AT_HEADER = 'x-amz-meta-ferry-written-at'

/**
 * The hex SHA-256 a gateway's ETag proves the block's bytes hash to, or null when it proves
 * nothing about them. Only the reference gateway's ETag is a content hash. nginx's is
 * `"<mtime hex>-<size hex>"`: two different contents written in the same second (or with the
 * same `Date` header, which nginx's dav module takes as the mtime) and of the same size share
 * it, so an nginx ETag can tell that a block changed but never that it did not.
 */
export function contentHashOf (kind: GatewayKind, etag: string | null | undefined): string | null {
  if (kind !== 'ferry' || typeof etag !== 'string') return null
  return SHA256_ETAG.exec(etag)?.[1] ?? null
}

/**
 * Which digests a copy onto `kind` should compute while it streams, besides SHA-256: those the
 * target may answer with. Neither the reference gateway nor nginx offers MD5, so none yet; an
 * S3 kind (MD5 ETags) will add `md5` here.
 */
export function copyDigests (target: GatewayKind): readonly DigestAlgorithm[] {
  return target === 's3' ? ['sha256', 'md5'] : ['sha256']
}

/** An S3 gateway's ETag for an object stored by one PUT: the quoted hex MD5 of the content. A
 * multipart object's (`"<hex>-<parts>"`) is not, and ferry never writes one. */
const MD5_ETAG = /^"([0-9a-f]{32})"$/

/** What a kind's ETag claims as a digest other than `contentHashOf`'s SHA-256: an `s3` ETag's MD5. */
export function etagDigestClaim (kind: GatewayKind, etag: string | null | undefined): DigestClaim | null {
  if (kind !== 's3' || typeof etag !== 'string') return null
  const hex = MD5_ETAG.exec(etag)?.[1]
  return hex === undefined ? null : { algorithm: 'md5', hex, header: 'etag' }
}

/** One digest a response claims for the block's bytes. */
export interface DigestClaim {
  algorithm: DigestAlgorithm
  hex: string
  /** The header it came from, for messages. */
  header: string
}

/**
 * Digests a response claims for the stored bytes: `Repr-Digest` (RFC 9530; `sha-256=:b64:`),
 * `Digest` (RFC 3230; `SHA-256=b64`, `MD5=b64`) and `Content-MD5` (base64). Algorithms ferry
 * does not compute are left out. `Content-Digest` is not used: in an answer to a PUT it covers
 * the answer's own (empty) body, not the stored block.
 */
export function digestClaims (headers: IncomingHttpHeaders): DigestClaim[] {
  const claims: DigestClaim[] = []
  const add = (algorithm: string, raw: Buffer, header: string): void => {
    const a = algorithm.trim().toLowerCase()
    const alg: DigestAlgorithm | null = a === 'sha-256' ? 'sha256' : a === 'md5' ? 'md5' : null
    if (alg === null) return
    const hex = raw.toString('hex')
    if (hex.length === (alg === 'sha256' ? 64 : 32)) claims.push({ algorithm: alg, hex, header })
  }
  for (const [alg, raw] of parseDigestField(headers['repr-digest'])) add(alg, raw, 'repr-digest')
  for (const member of headerList(headers.digest)) {
    const eq = member.indexOf('=')
    if (eq > 0) add(member.slice(0, eq), Buffer.from(member.slice(eq + 1).trim(), 'base64'), 'digest')
  }
  const md5 = headers['content-md5']
  if (typeof md5 === 'string') add('md5', Buffer.from(md5.trim(), 'base64'), 'content-md5')
  return claims
}

function headerList (v: string | string[] | undefined): string[] {
  if (v === undefined) return []
  return (Array.isArray(v) ? v : [v]).flatMap(s => s.split(',')).map(s => s.trim()).filter(s => s !== '')
}

/**
 * What a gateway's current ETag says about whether it still holds bytes seen before (`then`:
 * the ETag they had, and their SHA-256):
 * - `same`: proven — the kind's ETag is a content hash and it is theirs;
 * - `changed`: proven different — a content hash of other bytes, or another ETag than before;
 * - `unproven`: the ETag is the same opaque one (nginx) or missing: only the bytes can tell.
 */
export type EtagVerdict = 'same' | 'changed' | 'unproven'

export function judgeByEtag (kind: GatewayKind, now: string | null | undefined, then: { etag: string | null, sha256: string }): EtagVerdict {
  const proven = contentHashOf(kind, now)
  if (proven !== null) return proven === then.sha256 ? 'same' : 'changed'
  if (typeof now === 'string' && then.etag !== null && now !== then.etag) return 'changed'
  return 'unproven'
}

/**
 * When the bytes a gateway answered a GET or HEAD with were first written, ms since the epoch:
 * the reference gateway says it (`x-ferry-written-at`), nginx's `Last-Modified` is its file's
 * mtime to the second; an S3 gateway's copy keeps it in `x-amz-meta-ferry-written-at`, else its
 * `Last-Modified` is the PUT's time. Null when the answer does not tell.
 */
export function writtenAtOf (kind: GatewayKind, headers: IncomingHttpHeaders): number | null {
  if (kind === 'ferry') return parseWrittenAt(headers[WRITTEN_AT_HEADER])
  if (kind === 's3') {
    const kept = parseWrittenAt(headers[S3_WRITTEN_AT_HEADER])
    if (kept !== null) return kept
  }
  const lastModified = headers['last-modified']
  if (typeof lastModified !== 'string') return null
  const ms = Date.parse(lastModified)
  return Number.isFinite(ms) ? ms : null
}

/**
 * Headers that make a PUT onto `kind` keep the time its bytes were first written, so a copy never
 * looks newer than its original to a store-loss rebuild (recovery/README.md). nginx's dav module
 * takes a PUT's `Date` header as the file's mtime (to the second).
 */
export function writtenAtHeaders (kind: GatewayKind, writtenAt: number): Record<string, string> {
  if (kind === 'ferry') return { [WRITTEN_AT_HEADER]: String(writtenAt) }
  // S3 sets Last-Modified itself; user metadata keeps the original's time with the object.
  if (kind === 's3') return { [S3_WRITTEN_AT_HEADER]: String(writtenAt) }
  return { date: new Date(writtenAt).toUTCString() }
}
