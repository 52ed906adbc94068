import { readFileSync } from 'node:fs'
import type { Dispatcher } from 'undici'
import type { GatewayConfig, S3GatewayConfig } from '../fleet/schema.js'
import { FerryError } from '../lib/errors.js'
import { EMPTY_SHA256, UNSIGNED_PAYLOAD, sha256Hex, signatureOf, signingKey, uriEscape } from '../lib/sigv4.js'

/**
 * Kind `s3`: ferry's block requests (`/{volume}/{block}`) sent to an S3 gateway as object requests
 * on `/<bucket>/<prefix><volume>/<block>`, signed with SigV4 (upstream/README.md).
 */

/** Headers a client may have sent that must never reach the S3 gateway as ferry's own: the
 * client's signature (S3 front end) would be checked against ferry's secret and fail. */
const CLIENT_AUTH_HEADERS = new Set(['authorization', 'x-amz-date', 'x-amz-content-sha256', 'x-amz-security-token', 'host'])

/** The secret of an `s3` gateway: inline, from its file, or from its environment variable. */
export function s3Secret (gateway: GatewayConfig): string {
  const c = s3Of(gateway)
  if (c.secret !== undefined) return c.secret
  if (c.secretFile !== undefined) {
    try {
      return readFileSync(c.secretFile, 'utf8').trim()
    } catch (err) {
      throw new FerryError('FERRY_CONFIG_INVALID', `gateway ${gateway.id}: cannot read s3.secretFile ${c.secretFile}: ${(err as Error).message}`, 400)
    }
  }
  const v = process.env[c.secretEnv as string]
  if (v === undefined || v.trim() === '') throw new FerryError('FERRY_CONFIG_INVALID', `gateway ${gateway.id}: environment variable ${String(c.secretEnv)} (s3.secretEnv) is not set`, 400)
  return v.trim()
}

function s3Of (gateway: GatewayConfig): S3GatewayConfig {
  if (gateway.s3 === undefined) throw new FerryError('FERRY_CONFIG_INVALID', `gateway ${gateway.id} is of kind ${gateway.kind}, not s3`, 400)
  return gateway.s3
}

/** Header values of an undici request, whatever shape the caller gave them in. */
function headerRecord (h: Dispatcher.DispatchOptions['headers']): Record<string, string> {
  const out: Record<string, string> = {}
  if (h === null || h === undefined) return out
  const add = (k: string, v: unknown): void => {
    if (v === undefined || v === null) return
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v)
  }
  if (Array.isArray(h)) {
    for (let i = 0; i + 1 < h.length; i += 2) add(String(h[i]), h[i + 1])
  } else if (typeof (h as Iterable<unknown>)[Symbol.iterator] === 'function' && !(typeof h === 'object' && h.constructor === Object)) {
    for (const [k, v] of h as Iterable<[string, string]>) add(k, v)
  } else {
    for (const [k, v] of Object.entries(h as Record<string, unknown>)) add(k, v)
  }
  return out
}

function decodeLoose (s: string): string {
  try { return decodeURIComponent(s) } catch { return s }
}

/**
 * The canonical form of a path and query: segments and query pairs decoded and escaped the SigV4
 * way, pairs sorted. The request is sent exactly so, so what the gateway canonicalises is what
 * was signed.
 */
function canonical (path: string): { uri: string, query: string } {
  const q = path.indexOf('?')
  const uri = (q < 0 ? path : path.slice(0, q)).split('/').map(seg => uriEscape(decodeLoose(seg), false)).join('/')
  if (q < 0) return { uri, query: '' }
  const pairs: Array<[string, string]> = []
  for (const part of path.slice(q + 1).split('&')) {
    if (part === '') continue
    const i = part.indexOf('=')
    pairs.push([uriEscape(decodeLoose(i < 0 ? part : part.slice(0, i)), false), uriEscape(decodeLoose(i < 0 ? '' : part.slice(i + 1)), false)])
  }
  pairs.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)
  return { uri, query: pairs.map(([n, v]) => n + '=' + v).join('&') }
}

export interface S3Signer {
  /**
   * Signs a request for the gateway's endpoint. `path` is the S3 path (`/<bucket>/<key>?query`),
   * not a block path; returns the options to send (path in canonical form, headers signed).
   */
  sign: (opts: Dispatcher.DispatchOptions) => Dispatcher.DispatchOptions
  /** The S3 path of a block path `/{volume}/{block}[?query]`. */
  objectPath: (blockPath: string) => string
  /** The S3 path of the bucket, with a query. */
  bucketPath: (query: string) => string
  readonly prefix: string
}

export function s3Signer (gateway: GatewayConfig, now: () => number = Date.now): S3Signer {
  const c = s3Of(gateway)
  const secret = s3Secret(gateway)
  const host = new URL(gateway.url).host
  const bucket = '/' + c.bucket
  const prefix = c.prefix
  return {
    prefix,
    objectPath: p => bucket + '/' + prefix + (p.startsWith('/') ? p.slice(1) : p),
    bucketPath: query => bucket + (query === '' ? '' : '?' + query),
    sign (opts) {
      const { uri, query } = canonical(opts.path)
      const headers = headerRecord(opts.headers)
      for (const name of CLIENT_AUTH_HEADERS) delete headers[name]
      const amzDate = new Date(now()).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
      const hasBody = opts.body !== undefined && opts.body !== null
      // The body is streamed, never buffered to hash it first: UNSIGNED-PAYLOAD, which S3 allows;
      // a copy proves its bytes by the MD5 ETag instead (verify.ts).
      const payloadHash = hasBody ? UNSIGNED_PAYLOAD : EMPTY_SHA256
      headers.host = host
      headers['x-amz-date'] = amzDate
      headers['x-amz-content-sha256'] = payloadHash
      // S3 wants every x-amz-* header signed; host and those are all that is signed.
      const names = Object.keys(headers).filter(n => n === 'host' || n.startsWith('x-amz-')).sort()
      const canonicalHeaders = names.map(n => n + ':' + (headers[n] as string).trim().replace(/\s+/g, ' ') + '\n').join('')
      const signed = names.join(';')
      const request = `${opts.method}\n${uri}\n${query}\n${canonicalHeaders}\n${signed}\n${payloadHash}`
      const scope = `${amzDate.slice(0, 8)}/${c.region}/s3/aws4_request`
      const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256Hex(request)}`
      const signature = signatureOf(signingKey(secret, scope), toSign)
      headers.authorization = `AWS4-HMAC-SHA256 Credential=${c.accessKeyId}/${scope}, SignedHeaders=${signed}, Signature=${signature}`
      return { ...opts, path: uri + (query === '' ? '' : '?' + query), headers }
    }
  }
}

/**
 * The dispatcher the roles use for a gateway: its pool as is, or for kind `s3` the pool with every
 * request mapped onto the bucket and signed. Closing or destroying it closes the pool.
 */
export function gatewayDispatcher (gateway: GatewayConfig, pool: Dispatcher): Dispatcher {
  if (gateway.kind !== 's3') return pool
  const signer = s3Signer(gateway)
  return pool.compose(dispatch => (opts, handler) => dispatch(signer.sign({ ...opts, path: signer.objectPath(opts.path) }), handler))
}
