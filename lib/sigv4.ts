import { createHmac, hash } from 'node:crypto'

/**
 * AWS Signature Version 4 primitives, shared by the two sides ferry plays: the S3 front end
 * verifies clients' signatures with them (proxy/s3/sigv4.ts), and upstream/s3.ts signs ferry's
 * own requests to `s3` gateways. Below the roles so neither side imports the other.
 */

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD'

/** RFC 3986 escaping as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~ (and '/' in paths). */
const UNRESERVED = /^[A-Za-z0-9\-._~]*$/
export const UNRESERVED_OR_SLASH = /^[A-Za-z0-9\-._~/]*$/

export function uriEscape (s: string, keepSlash: boolean): string {
  if ((keepSlash ? UNRESERVED_OR_SLASH : UNRESERVED).test(s)) return s
  let out = ''
  for (const b of Buffer.from(s, 'utf8')) {
    if ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e || (keepSlash && b === 0x2f)) {
      out += String.fromCharCode(b)
    } else {
      out += '%' + (b < 16 ? '0' : '') + b.toString(16).toUpperCase()
    }
  }
  return out
}

/** One-shot crypto.hash: no Hash object per call, a third of createHash's cost on short input. */
export function sha256Hex (data: string | Buffer): string {
  return hash('sha256', data, 'hex')
}

function hmac (key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest()
}

/**
 * Signing keys by secret and scope. A key is valid for a day and a region, so a busy client
 * costs four HMACs once a day instead of on every request.
 */
const signingKeys = new Map<string, Buffer>()

/**
 * A cached signing key's HMAC pads (RFC 2104: key XOR ipad, key XOR opad), so that a signature is
 * two one-shot hashes instead of an Hmac object per request (and per chunk of a streaming upload).
 */
const pads = new WeakMap<Buffer, { inner: Buffer, outer: Buffer }>()

export function signingKey (secret: string, scope: string): Buffer {
  const id = secret + '\n' + scope
  let k = signingKeys.get(id)
  if (k === undefined) {
    const [date, region, service] = scope.split('/') as [string, string, string]
    k = hmac(hmac(hmac(hmac('AWS4' + secret, date), region), service), 'aws4_request')
    if (signingKeys.size > 1000) signingKeys.clear()
    signingKeys.set(id, k)
    const inner = Buffer.alloc(64, 0x36)
    const outer = Buffer.alloc(64, 0x5c)
    for (let i = 0; i < k.length; i++) { inner[i] = 0x36 ^ (k[i] as number); outer[i] = 0x5c ^ (k[i] as number) }
    pads.set(k, { inner, outer })
  }
  return k
}

export function signatureOf (key: Buffer, stringToSign: string): string {
  const p = pads.get(key)
  if (p === undefined) return createHmac('sha256', key).update(stringToSign).digest('hex')
  const inner = hash('sha256', Buffer.concat([p.inner, Buffer.from(stringToSign, 'utf8')]), 'buffer')
  return hash('sha256', Buffer.concat([p.outer, inner]), 'hex')
}

