import { createHash } from 'node:crypto'

/**
 * Volume and block identifiers, shared by the proxy, the reference gateway and the planner.
 * They become file names on gateways and DNS labels, so the alphabet is deliberately small:
 * letters, digits, '.', '_' and '-', not starting with '.' (no hidden files, no '..' traversal),
 * at most 128 characters.
 */
export const ID_MAX_LENGTH = 128

export function isValidId (id: string): boolean {
  const n = id.length
  if (n === 0 || n > ID_MAX_LENGTH) return false
  if (id.charCodeAt(0) === 46 /* . */) return false
  for (let i = 0; i < n; i++) {
    const c = id.charCodeAt(i)
    const ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46 || c === 95
    if (!ok) return false
  }
  return true
}

/** The key of a block in maps and in the store: `volume/block` (ids cannot contain '/'). */
export function blockKey (volume: string, block: string): string {
  return volume + '/' + block
}

/** The longest S3 object key: 1,024 bytes of UTF-8. */
export const OBJECT_KEY_MAX_BYTES = 1024

/**
 * Prefixes of block ids that stand for something other than themselves: an encoded object key
 * (`_k.`, `_h.`) or a multipart upload's part (`_p.`). An object key that happens to start with
 * one is encoded too, so two different keys never share a block.
 */
const RESERVED_PREFIXES = ['_k.', '_h.', '_p.']

/**
 * The block id of an object key: the one place an S3 key (any UTF-8 up to 1,024 bytes, '/'
 * included) becomes a name every gateway kind can hold — a file name on the reference gateway,
 * a path segment on nginx WebDAV, a key on an S3 gateway. A key that is already a valid id is
 * its own block (so `/{volume}/{block}` and S3 name the same object); another key of up to 90
 * bytes becomes `_k.` + its base64url (reversible, ≤ 123 characters); a longer one `_h.` + its
 * SHA-256 (file names stop at 255 bytes). The key itself is kept in the store's object index,
 * which is what listings read, so the hashed form never needs reversing.
 */
export function blockOfKey (key: string): string {
  if (isValidId(key) && !RESERVED_PREFIXES.some(p => key.startsWith(p))) return key
  const bytes = Buffer.from(key, 'utf8')
  if (bytes.length <= 90) return '_k.' + bytes.toString('base64url')
  return '_h.' + createHash('sha256').update(bytes).digest('hex')
}

/** The block of part `part` of multipart upload `uploadId` (an id of [A-Za-z0-9]). */
export function blockOfPart (uploadId: string, part: number): string {
  return `_p.${uploadId}.${part}`
}

/**
 * Whether a string is an S3 object key ferry accepts: 1–1,024 bytes of well-formed UTF-8 (no
 * lone surrogates) without NUL (which no file system or gateway path can carry).
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

export function isValidObjectKey (key: string): boolean {
  if (key.length === 0 || key.includes('\u0000')) return false
  if (LONE_SURROGATE.test(key)) return false
  return Buffer.byteLength(key, 'utf8') <= OBJECT_KEY_MAX_BYTES
}
