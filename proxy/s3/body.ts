import { createHash, type Hash } from 'node:crypto'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import zlib from 'node:zlib'
import { S3Error } from './errors.js'
import { EMPTY_SHA256, sameSignature, sha256Hex, signatureOf } from './sigv4.js'

/**
 * What an S3 upload's body goes through on its way to the gateway, streaming, never buffered:
 *
 *   client ─▶ AwsChunkedDecoder (aws-chunked framing off, each chunk's signature checked,
 *             trailing checksums read) ─▶ BodyCheck (MD5 for the ETag, the declared digests
 *             and length checked) ─▶ gateway
 *
 * BodyCheck holds back the body's last piece until every check has passed at the end. A
 * gateway never sees the end of a body that fails one — with Content-Length framing it is still
 * waiting for bytes when the upload is aborted, with chunked framing it never gets the final
 * chunk — so it discards what it got: a mismatch stores nothing, and nothing is acknowledged.
 */

export type ChecksumAlgorithm = 'crc32' | 'crc32c' | 'sha1' | 'sha256'
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['crc32', 'crc32c', 'sha1', 'sha256']

/** CRC-32C (Castagnoli), which node:zlib does not have; table-driven, reflected, like the SDKs'. */
const CRC32C_TABLE = (() => {
  const t = new Int32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[n] = c
  }
  return t
})()

class Crc {
  private crc = 0
  constructor (private readonly castagnoli: boolean) {
    if (castagnoli) this.crc = 0xffffffff
  }

  update (b: Buffer): void {
    if (!this.castagnoli) { this.crc = zlib.crc32(b, this.crc); return }
    let c = this.crc
    for (let i = 0; i < b.length; i++) c = (CRC32C_TABLE[(c ^ (b[i] as number)) & 0xff] as number) ^ (c >>> 8)
    this.crc = c
  }

  digest (): Buffer {
    const out = Buffer.alloc(4)
    out.writeUInt32BE((this.castagnoli ? (this.crc ^ 0xffffffff) : this.crc) >>> 0)
    return out
  }
}

function checksummer (alg: ChecksumAlgorithm): { update: (b: Buffer) => void, digest: () => Buffer } {
  if (alg === 'crc32') return new Crc(false)
  if (alg === 'crc32c') return new Crc(true)
  const h = createHash(alg)
  return { update: b => { h.update(b) }, digest: () => h.digest() }
}

/** Where the decoder leaves the trailers it read, for BodyCheck's end-of-body verification. */
export interface Trailers { values: Map<string, string> }

export interface ChunkSigning {
  key: Buffer
  amzDate: string
  scope: string
  seed: string
}

const MAX_LINE = 4096

/**
 * Decodes `Content-Encoding: aws-chunked` (`<hex-size>[;chunk-signature=<sig>]\r\n<data>\r\n`
 * … `0…\r\n[trailers]\r\n`). With `signing`, each chunk's signature is checked against the
 * previous one (seeded by the request's signature) before the next chunk's data is passed on;
 * trailers (`x-amz-checksum-*`, and `x-amz-trailer-signature` when signed) go to `trailers`.
 * A body that ends before the final chunk fails with IncompleteBody.
 */
export class AwsChunkedDecoder extends Transform {
  private state: 'header' | 'data' | 'data-crlf' | 'trailer' | 'done' = 'header'
  private line = ''
  private left = 0
  private chunkSig = ''
  private chunkHash: Hash | undefined
  private prevSig: string
  private decoded = 0
  private trailerText = ''

  constructor (private readonly signing: ChunkSigning | undefined, private readonly trailers: Trailers, private readonly expectTrailer: boolean) {
    super()
    this.prevSig = signing?.seed ?? ''
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.consume(chunk)
      cb()
    } catch (err) {
      cb(err as Error)
    }
  }

  override _flush (cb: TransformCallback): void {
    if (this.state !== 'done') { cb(new S3Error('IncompleteBody', 'the aws-chunked body ended before its final chunk')); return }
    cb()
  }

  private consume (buf: Buffer): void {
    let i = 0
    while (i < buf.length) {
      if (this.state === 'data') {
        const n = Math.min(this.left, buf.length - i)
        const piece = buf.subarray(i, i + n)
        this.chunkHash?.update(piece)
        this.push(piece)
        this.decoded += n
        this.left -= n
        i += n
        if (this.left === 0) this.state = 'data-crlf'
        continue
      }
      // Line-oriented states: read up to CRLF.
      const nl = buf.indexOf(10, i)
      const end = nl < 0 ? buf.length : nl + 1
      this.line += buf.toString('latin1', i, end)
      i = end
      if (this.line.length > MAX_LINE) throw new S3Error('IncompleteBody', 'malformed aws-chunked body: a line over 4 KiB')
      if (nl < 0) continue
      const line = this.line.endsWith('\r\n') ? this.line.slice(0, -2) : this.line.slice(0, -1)
      this.line = ''
      this.onLine(line)
    }
  }

  private onLine (line: string): void {
    if (this.state === 'data-crlf') {
      if (line !== '') throw new S3Error('IncompleteBody', 'malformed aws-chunked body: chunk data longer than its declared size')
      this.checkChunk()
      this.state = 'header'
      return
    }
    if (this.state === 'header') {
      const semi = line.indexOf(';')
      const sizeText = semi < 0 ? line : line.slice(0, semi)
      if (!/^[0-9a-fA-F]{1,16}$/.test(sizeText)) throw new S3Error('IncompleteBody', 'malformed aws-chunked body: bad chunk size')
      const size = parseInt(sizeText, 16)
      this.chunkSig = ''
      if (semi >= 0) {
        const ext = line.slice(semi + 1)
        if (ext.startsWith('chunk-signature=')) this.chunkSig = ext.slice(16)
      }
      if (this.signing !== undefined) {
        if (this.chunkSig === '') throw new S3Error('SignatureDoesNotMatch', 'a chunk of a signed streaming upload has no chunk-signature')
        this.chunkHash = createHash('sha256')
      }
      if (size > 0) { this.left = size; this.state = 'data'; return }
      // The final, empty chunk: its signature covers the empty string.
      this.checkChunk()
      this.state = 'trailer'
      return
    }
    if (this.state === 'trailer') {
      if (line === '') { this.finishTrailers(); this.state = 'done'; return }
      const c = line.indexOf(':')
      if (c <= 0) throw new S3Error('IncompleteBody', 'malformed aws-chunked trailer')
      const name = line.slice(0, c).trim().toLowerCase()
      const value = line.slice(c + 1).trim()
      if (name === 'x-amz-trailer-signature') { this.checkTrailerSignature(value); return }
      this.trailers.values.set(name, value)
      this.trailerText += `${name}:${value}\n`
      return
    }
    throw new S3Error('IncompleteBody', 'data after the final aws-chunked chunk')
  }

  private checkChunk (): void {
    const s = this.signing
    if (s === undefined) return
    const hash = this.chunkHash?.digest('hex') ?? EMPTY_SHA256
    this.chunkHash = undefined
    const toSign = `AWS4-HMAC-SHA256-PAYLOAD\n${s.amzDate}\n${s.scope}\n${this.prevSig}\n${EMPTY_SHA256}\n${hash}`
    const expected = signatureOf(s.key, toSign)
    if (!sameSignature(expected, this.chunkSig)) throw new S3Error('SignatureDoesNotMatch', 'a chunk signature of the streaming upload does not match')
    this.prevSig = expected
  }

  private checkTrailerSignature (sig: string): void {
    const s = this.signing
    if (s === undefined) return
    const toSign = `AWS4-HMAC-SHA256-TRAILER\n${s.amzDate}\n${s.scope}\n${this.prevSig}\n${sha256Hex(this.trailerText)}`
    if (!sameSignature(signatureOf(s.key, toSign), sig)) throw new S3Error('SignatureDoesNotMatch', 'the trailer signature of the streaming upload does not match')
    this.trailerSigned = true
  }

  private trailerSigned = false

  private finishTrailers (): void {
    if (this.expectTrailer && this.signing !== undefined && this.trailers.values.size > 0 && !this.trailerSigned) {
      throw new S3Error('SignatureDoesNotMatch', 'the trailers of a signed streaming upload carry no x-amz-trailer-signature')
    }
  }

  get decodedBytes (): number { return this.decoded }
}

/**
 * `source.pipe(through)`, with what `stream.pipeline` would add that matters here: an error or a
 * premature close of the source (a client that went away mid-body) destroys `through`, so
 * whoever reads it — the gateway's request — fails instead of waiting. Not `stream.pipeline`
 * itself: per request it builds an AbortController and, on every finish, a DOMException with its
 * stack trace, which cost more than the rest of an upload's bookkeeping.
 *
 * The bytes start to flow only when `through` is first read, i.e. once the core has dispatched
 * the upload to its gateways: a transform does its work (a hash, a chunk signature) on the first
 * chunk as soon as it arrives, and the first chunk of a small upload is most of it. Until then
 * what `through` does with it may not be decided yet (BodyCheck.leaveDigestsTo).
 */
export function feed<T extends Transform> (source: Readable | NodeJS.ReadableStream, through: T): T {
  const src = source as Readable
  const onError = (err: Error): void => { through.destroy(err) }
  const onClose = (): void => {
    if (!src.readableEnded) through.destroy(Object.assign(new Error('the request body ended early'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }))
  }
  src.on('error', onError)
  src.once('close', onClose)
  src.once('end', () => { src.off('close', onClose) })
  const read = through._read
  through._read = function (size: number): void {
    through._read = read
    src.pipe(through)
    read.call(through, size)
  }
  return through
}

/** Passes on bytes first..last (inclusive) of what streams through, drops the rest. */
export class ByteRange extends Transform {
  private pos = 0
  constructor (private readonly first: number, private readonly last: number) { super() }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const from = this.pos
    this.pos += chunk.length
    const a = Math.max(this.first - from, 0)
    const b = Math.min(this.last + 1 - from, chunk.length)
    if (b > a) this.push(a === 0 && b === chunk.length ? chunk : chunk.subarray(a, b))
    cb()
  }
}

export interface BodyExpectations {
  /** Bytes the body must have (Content-Length, or x-amz-decoded-content-length). */
  length?: number
  maxBytes: number
  /** Content-MD5, base64. */
  contentMd5?: string
  /** The signed payload hash (hex) when the client signed the body itself. */
  sha256Hex?: string
  /** x-amz-checksum-<alg> from a header, base64. */
  checksum?: { alg: ChecksumAlgorithm, value: string }
  /** The checksum announced by x-amz-trailer, read from the decoder's trailers at the end. */
  trailerChecksum?: { alg: ChecksumAlgorithm, trailers: Trailers }
}

/** `md5` is undefined when the gateways that store the body compute it (BodyCheck.leaveDigestsTo). */
export interface BodyResult { md5: Buffer | undefined, size: number, checksum?: { alg: ChecksumAlgorithm, value: string } }

/**
 * Computes the MD5 (the S3 ETag) of the body as it streams and checks every declared digest and
 * the length; holds back the last piece until they pass (see above). `result` is set before the
 * last byte is released, so it is known before any gateway can have answered.
 */
export class BodyCheck extends Transform {
  result: BodyResult | undefined
  private md5: Hash | undefined
  /** Only when the client signed the body's SHA-256: most uploads do not need it. */
  private sha: Hash | undefined
  /** Hashes here (MD5, and the signed SHA-256): until leaveDigestsTo's test says the gateways do. */
  private local = true
  /** Whether the gateways receiving the body check its declared digests and answer its MD5; undefined: not known yet. */
  private upstream: (() => boolean | undefined) | undefined
  private readonly sum: { alg: ChecksumAlgorithm, h: { update: (b: Buffer) => void, digest: () => Buffer } } | undefined
  private size = 0
  private pending: Buffer | undefined

  constructor (private readonly expect: BodyExpectations) {
    super()
    const alg = expect.checksum?.alg ?? expect.trailerChecksum?.alg
    if (alg !== undefined) this.sum = { alg, h: checksummer(alg) }
  }

  /**
   * Leaves the MD5 (the ETag), Content-MD5 and the signed SHA-256 to the gateways that store the
   * body, once `upstream()` says every one of them checks a PUT's declared digests itself and
   * answers its MD5 (lib/block-headers.ts "Digests"; the reference gateway, which hashes every
   * body anyway): hashing 64 KiB twice more here was most of a signed PUT's cost at the proxy.
   * Until the body's route is known (`upstream()` undefined) it hashes, so nothing goes unchecked;
   * a body with any other receiver (nginx, whose check could not stop its commit) is checked here.
   */
  leaveDigestsTo (upstream: () => boolean | undefined): void {
    this.upstream = upstream
  }

  private decide (): void {
    const verdict = (this.upstream as () => boolean | undefined)()
    if (verdict === undefined) return
    this.upstream = undefined
    if (verdict) { this.local = false; this.md5 = undefined; this.sha = undefined }
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length
    if (this.size > this.expect.maxBytes) { cb(new S3Error('EntityTooLarge', `the body exceeds ${this.expect.maxBytes} bytes`)); return }
    if (this.expect.length !== undefined && this.size > this.expect.length) { cb(new S3Error('IncompleteBody', 'the body is longer than declared')); return }
    if (this.upstream !== undefined) this.decide()
    if (this.local) {
      (this.md5 ??= createHash('md5')).update(chunk)
      if (this.expect.sha256Hex !== undefined) (this.sha ??= createHash('sha256')).update(chunk)
    }
    this.sum?.h.update(chunk)
    const prev = this.pending
    this.pending = chunk
    if (prev !== undefined) this.push(prev)
    cb()
  }

  override _flush (cb: TransformCallback): void {
    const e = this.expect
    if (this.upstream !== undefined) this.decide()
    const md5 = this.local ? (this.md5 ?? createHash('md5')).digest() : undefined
    if (e.length !== undefined && this.size !== e.length) { cb(new S3Error('IncompleteBody', `the body has ${this.size} bytes, ${e.length} were declared`)); return }
    if (md5 !== undefined && e.contentMd5 !== undefined && md5.toString('base64') !== e.contentMd5) { cb(new S3Error('BadDigest', 'the Content-MD5 you specified did not match what we received')); return }
    if (this.local && e.sha256Hex !== undefined && (this.sha ?? createHash('sha256')).digest('hex') !== e.sha256Hex) { cb(new S3Error('XAmzContentSHA256Mismatch', 'the provided x-amz-content-sha256 header does not match what was computed')); return }
    let checksum: BodyResult['checksum']
    if (this.sum !== undefined) {
      const got = this.sum.h.digest().toString('base64')
      const want = e.checksum?.value ?? e.trailerChecksum?.trailers.values.get(`x-amz-checksum-${this.sum.alg}`)
      if (want === undefined) { cb(new S3Error('InvalidRequest', `the trailer x-amz-checksum-${this.sum.alg} announced by x-amz-trailer is missing`)); return }
      if (got !== want) { cb(new S3Error('BadDigest', `the ${this.sum.alg.toUpperCase()} you specified did not match the calculated checksum`)); return }
      checksum = { alg: this.sum.alg, value: got }
    }
    this.result = { md5, size: this.size, ...(checksum !== undefined ? { checksum } : {}) }
    if (this.pending !== undefined) this.push(this.pending)
    cb()
  }
}
