import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { S3Error } from './errors.js'

/**
 * S3's XML both ways. Request bodies (CompleteMultipartUpload, Delete, CreateBucketConfiguration)
 * are parsed with fast-xml-parser — maintained, no native parts, no DTD/entity expansion unless
 * asked (so no billion-laughs), with a validator that names what is malformed. Responses are
 * fixed shapes and are written here with one escaping function: a builder would only add a
 * detour through objects whose key order must then be kept exactly right anyway.
 */

export const XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
export const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/'

export function esc (s: string | number): string {
  return String(s).replace(/[<>&"'\r]/g, c => c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '&' ? '&amp;' : c === '"' ? '&quot;' : c === "'" ? '&apos;' : '&#13;')
}

/** `<name>value</name>`; an undefined value writes nothing. */
export function el (name: string, value: string | number | boolean | undefined): string {
  if (value === undefined) return ''
  return `<${name}>${esc(String(value))}</${name}>`
}

export function doc (root: string, inner: string): string {
  return `${XML_DECL}<${root} xmlns="${S3_NS}">${inner}</${root}>`
}

export function errorXml (code: string, message: string, resource: string, requestId: string): string {
  return `${XML_DECL}<Error>${el('Code', code)}${el('Message', message)}${el('Resource', resource)}${el('RequestId', requestId)}</Error>`
}

export function isoDate (ms: number): string {
  return new Date(ms).toISOString()
}

const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  trimValues: false,
  processEntities: true,
  htmlEntities: false,
  // Elements that may repeat are always arrays, so one Part and many Parts read the same.
  isArray: (name: string) => name === 'Part' || name === 'Object'
})

/** Parses a request body; MalformedXML for anything that is not well-formed XML with the expected root. */
export function parseXml (text: string, root: string): Record<string, unknown> {
  // No request of S3's has a DTD; refusing one outright leaves no entity expansion to bound.
  if (text.trim() === '' || /<!DOCTYPE|<!ENTITY/i.test(text) || XMLValidator.validate(text) !== true) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema')
  let out: Record<string, unknown>
  try {
    out = parser.parse(text) as Record<string, unknown>
  } catch {
    throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema')
  }
  const body = out[root]
  if (body === undefined || body === null || typeof body !== 'object') {
    if (body === '') return {}
    throw new S3Error('MalformedXML', `expected a <${root}> document`)
  }
  return body as Record<string, unknown>
}

export function text (v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return undefined
}
