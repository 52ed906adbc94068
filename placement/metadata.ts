import type { IncomingHttpHeaders } from 'node:http'
import { FerryError } from '../lib/errors.js'

/** What a proxy keeps of a first write's request, besides its block and site. */
export interface RequestMetadata {
  path: string
  contentType?: string
  size?: number
  headers?: Record<string, string>
}

const utf8 = new TextDecoder('utf-8', { fatal: true })
const MAX_PATH = 2048
const MAX_CONTENT_TYPE = 256

/**
 * The content metadata of a PUT: its path, Content-Type, size and the configured metadata
 * headers (`prefixes`: exact names or prefixes such as `x-amz-meta-`). Node hands header values
 * over as latin1, one char per byte, so a value is re-read as UTF-8 bytes: text that is not
 * UTF-8 is 400 FERRY_BAD_METADATA, and more than `maxBytes` of names and values 400
 * FERRY_METADATA_TOO_LARGE — the write is refused before any byte is forwarded, rather than
 * stored with metadata nobody can read back.
 */
export function requestMetadata (url: string, headers: IncomingHttpHeaders, prefixes: readonly string[], maxBytes: number): RequestMetadata {
  const q = url.indexOf('?')
  const meta: RequestMetadata = { path: (q < 0 ? url : url.slice(0, q)).slice(0, MAX_PATH) }
  const ct = headers['content-type']
  if (typeof ct === 'string' && ct !== '') meta.contentType = ct.slice(0, MAX_CONTENT_TYPE)
  const cl = headers['content-length']
  if (typeof cl === 'string' && /^\d{1,15}$/.test(cl)) meta.size = Number(cl)
  if (prefixes.length === 0) return meta
  let bytes = 0
  let out: Record<string, string> | undefined
  for (const name in headers) {
    if (!matches(name, prefixes)) continue
    const raw = headers[name]
    const value = Array.isArray(raw) ? raw.join(', ') : raw ?? ''
    const buf = Buffer.from(value, 'latin1')
    bytes += name.length + buf.length
    if (bytes > maxBytes) throw new FerryError('FERRY_METADATA_TOO_LARGE', `metadata headers exceed ${maxBytes} bytes (placement.maxMetadataBytes)`, 400)
    let text: string
    try {
      text = utf8.decode(buf)
    } catch {
      throw new FerryError('FERRY_BAD_METADATA', `metadata header ${name} is not UTF-8 text`, 400)
    }
    out ??= {}
    out[name] = text
  }
  if (out !== undefined) meta.headers = out
  return meta
}

function matches (name: string, prefixes: readonly string[]): boolean {
  for (const p of prefixes) {
    if (p.endsWith('-') ? name.startsWith(p) : name === p) return true
  }
  return false
}
