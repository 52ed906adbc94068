import { timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { S3Error } from './errors.js'
import { EMPTY_SHA256, UNSIGNED_PAYLOAD, UNRESERVED_OR_SLASH, sha256Hex, signatureOf, signingKey, uriEscape } from '../../lib/sigv4.js'

// The primitives live in lib/ because upstream/ signs ferry's own requests to `s3` gateways with them.
export { EMPTY_SHA256, UNSIGNED_PAYLOAD, sha256Hex, signatureOf, signingKey, uriEscape }

/**
 * AWS Signature Version 4, the verifying side: the `Authorization` header, presigned URLs
 * (`X-Amz-Signature` in the query) and the seed of a signed streaming payload (chunked.ts).
 *
 * Written here on node:crypto rather than taken from @smithy/signature-v4 or aws4: both are
 * signers. Verifying with a signer means rebuilding the client's request as their request type
 * and letting them canonicalise it again — with their own path normalisation and escaping, which
 * for S3 must be exactly what the client did (no double escaping, no dot-segment removal) — and
 * neither exposes the seed signature and signing key that the per-chunk signatures of
 * `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` chain from. The canonical request is small and fully
 * specified; the real clients in test/s3 (aws, rclone, s3cmd, boto3) check it.
 */

export const STREAMING_SIGNED = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'
export const STREAMING_SIGNED_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER'
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER'

export interface SignedRequest {
  accessKeyId: string
  /** yyyymmddThhmmssZ */
  amzDate: string
  /** date/region/service/aws4_request */
  scope: string
  signedHeaders: string[]
  signature: string
  /** The payload hash the client signed (x-amz-content-sha256, or UNSIGNED-PAYLOAD for a presigned URL). */
  payloadHash: string
  presigned: boolean
  /** Presigned: seconds of validity from amzDate. */
  expires?: number
}

/** Reads the signature parts of a request; undefined when it is not signed with SigV4. */
export function parseSignature (req: IncomingMessage, query: URLSearchParams | undefined): SignedRequest | undefined {
  const auth = req.headers.authorization
  if (auth !== undefined) {
    if (!auth.startsWith('AWS4-HMAC-SHA256 ')) {
      throw new S3Error(auth.startsWith('AWS ') ? 'AccessDenied' : 'InvalidArgument', 'only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported')
    }
    let cred: string | undefined
    let signedHeaders: string | undefined
    let signature: string | undefined
    for (const part of auth.slice(17).split(',')) {
      const i = part.indexOf('=')
      if (i <= 0) continue
      const name = part.slice(0, i).trim()
      if (name === 'Credential') cred = part.slice(i + 1).trim()
      else if (name === 'SignedHeaders') signedHeaders = part.slice(i + 1).trim()
      else if (name === 'Signature') signature = part.slice(i + 1).trim()
    }
    if (cred === undefined || signedHeaders === undefined || signature === undefined) {
      throw new S3Error('AuthorizationHeaderMalformed', 'the Authorization header needs Credential, SignedHeaders and Signature')
    }
    const amzDate = header(req, 'x-amz-date') ?? ''
    const payloadHash = header(req, 'x-amz-content-sha256')
    if (payloadHash === undefined) throw new S3Error('InvalidRequest', 'missing required header for this request: x-amz-content-sha256')
    const c = splitCredential(cred)
    return { accessKeyId: c.accessKeyId, scope: c.scope, amzDate, signedHeaders: signedHeaderList(signedHeaders), signature, payloadHash, presigned: false }
  }
  const alg = query?.get('X-Amz-Algorithm')
  if (query === undefined || alg === null || alg === undefined) {
    // A Signature Version 2 presigned URL is signed, not anonymous: refused, never let through.
    if (query?.has('AWSAccessKeyId') === true && query.has('Signature')) throw new S3Error('InvalidRequest', 'Signature Version 2 is not supported; sign with AWS4-HMAC-SHA256 (boto3: Config(signature_version="s3v4"))')
    return undefined
  }
  if (alg !== 'AWS4-HMAC-SHA256') throw new S3Error('InvalidArgument', 'X-Amz-Algorithm must be AWS4-HMAC-SHA256')
  const cred = query.get('X-Amz-Credential')
  const signature = query.get('X-Amz-Signature')
  const signedHeaders = query.get('X-Amz-SignedHeaders')
  const amzDate = query.get('X-Amz-Date')
  const expires = Number(query.get('X-Amz-Expires') ?? '')
  if (cred === null || signature === null || signedHeaders === null || amzDate === null) {
    throw new S3Error('AuthorizationQueryParametersError', 'a presigned URL needs X-Amz-Credential, X-Amz-Date, X-Amz-SignedHeaders and X-Amz-Signature')
  }
  if (!Number.isInteger(expires) || expires < 1 || expires > 604800) {
    throw new S3Error('AuthorizationQueryParametersError', 'X-Amz-Expires must be a number of seconds from 1 to 604800')
  }
  return {
    ...splitCredential(cred), amzDate, signedHeaders: signedHeaderList(signedHeaders), signature,
    payloadHash: header(req, 'x-amz-content-sha256') ?? UNSIGNED_PAYLOAD, presigned: true, expires
  }
}

/**
 * The last credential, signed-header list and date parsed: a client sends the same ones on
 * request after request (the credential changes once a day, the date once a second), so each is
 * parsed once, not once per request. The results are never mutated.
 */
let lastCred: { text: string, parsed: { accessKeyId: string, scope: string } } | undefined
let lastSignedHeaders: { text: string, list: string[] } | undefined
let lastDate: { text: string, ms: number } | undefined

function signedHeaderList (text: string): string[] {
  if (lastSignedHeaders?.text === text) return lastSignedHeaders.list
  const list = text.split(';')
  lastSignedHeaders = { text, list }
  return list
}

function splitCredential (cred: string): { accessKeyId: string, scope: string } {
  if (lastCred?.text === cred) return lastCred.parsed
  const parsed = parseCredential(cred)
  lastCred = { text: cred, parsed }
  return parsed
}

function parseCredential (cred: string): { accessKeyId: string, scope: string } {
  // <key>/<date>/<region>/<service>/aws4_request: the scope is everything after the first '/'.
  const slash = cred.indexOf('/')
  const scope = cred.slice(slash + 1)
  if (slash <= 0 || !scope.endsWith('/aws4_request') || scope.split('/').length !== 4) {
    throw new S3Error('AuthorizationHeaderMalformed', `malformed credential ${JSON.stringify(cred.slice(0, 200))}: expected <key>/<date>/<region>/<service>/aws4_request`)
  }
  return { accessKeyId: cred.slice(0, slash), scope }
}

function header (req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v.join(',') : v
}

/** `Date.parse` of yyyymmddThhmmssZ; NaN when malformed. */
export function parseAmzDate (s: string): number {
  if (lastDate?.text === s) return lastDate.ms
  const ms = parseAmzDateText(s)
  lastDate = { text: s, ms }
  return ms
}

function parseAmzDateText (s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s)
  if (m === null) return NaN
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]))
}

function decodeLoose (s: string): string {
  try { return decodeURIComponent(s) } catch { throw new S3Error('InvalidURI', 'the request URI has an invalid percent-encoding') }
}

/**
 * The canonical URI and query of the request target as the client saw it: decoded, then escaped
 * the SigV4 way, so `%2F` vs `/` or `%7E` vs `~` in how a client happened to send it does not
 * matter, and S3's rule of escaping the path once (not twice) holds.
 */
export function canonicalTarget (rawUrl: string, dropSignature: boolean): { uri: string, query: string } {
  const q = rawUrl.indexOf('?')
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q)
  // Most paths hold nothing to decode or escape: they are their own canonical form.
  const uri = UNRESERVED_OR_SLASH.test(path) ? path : path.split('/').map(seg => uriEscape(decodeLoose(seg), false)).join('/')
  if (q < 0) return { uri, query: '' }
  const pairs: Array<[string, string]> = []
  for (const part of rawUrl.slice(q + 1).split('&')) {
    if (part === '') continue
    const i = part.indexOf('=')
    const name = decodeLoose(i < 0 ? part : part.slice(0, i))
    if (dropSignature && name === 'X-Amz-Signature') continue
    pairs.push([uriEscape(name, false), uriEscape(decodeLoose(i < 0 ? '' : part.slice(i + 1)), false)])
  }
  pairs.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)
  return { uri, query: pairs.map(([n, v]) => n + '=' + v).join('&') }
}

export function sameSignature (a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))
}

/** A header value that needs trimming or has runs of whitespace to fold into one space. */
const FOLDABLE = /^\s|\s$|\s\s|[\t\r\n]/

/** The canonical request of a signed request (the one the client hashed and signed). */
export function canonicalRequest (req: IncomingMessage, sig: SignedRequest): string {
  const { uri, query } = canonicalTarget(req.url as string, sig.presigned)
  let headers = ''
  for (const name of sig.signedHeaders) {
    const v = header(req, name)
    if (v === undefined) throw new S3Error('SignatureDoesNotMatch', `signed header ${name} is missing from the request`)
    headers += name + ':' + (FOLDABLE.test(v) ? v.trim().replace(/\s+/g, ' ') : v) + '\n'
  }
  return `${req.method as string}\n${uri}\n${query}\n${headers}\n${sig.signedHeaders.join(';')}\n${sig.payloadHash}`
}

/** Checks the request's signature with `secret`; throws SignatureDoesNotMatch. Returns the signing key (for chunk signatures). */
export function verifySignature (req: IncomingMessage, sig: SignedRequest, secret: string): Buffer {
  const canonical = canonicalRequest(req, sig)
  const toSign = `AWS4-HMAC-SHA256\n${sig.amzDate}\n${sig.scope}\n${sha256Hex(canonical)}`
  const key = signingKey(secret, sig.scope)
  if (!sameSignature(signatureOf(key, toSign), sig.signature)) {
    throw new S3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.')
  }
  return key
}
