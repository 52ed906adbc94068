import type { ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import { ProxyAnswer, type IncomingHttpHeaders, type ProxyRequest, type ResponseHandler } from '../request.js'
import { S3Error, s3CodeOfGatewayStatus } from './errors.js'
import type { ObjectMeta } from '../../state/objects.js'
import { errorXml } from './xml.js'
import { DIGEST_MISMATCH_HEADER } from '../../lib/block-headers.js'

/**
 * S3 errors that end a request inside the handler chain (a chunk signature or a digest that
 * failed while the body streamed to the gateway) travel the chain as a ProxyAnswer, which every
 * stage understands; the S3 error they stand for waits here for the response's error writer.
 */
export const pendingS3Errors = new WeakMap<ServerResponse, S3Error>()

export interface ReadPlan {
  kind: 'read'
  head: boolean
  meta: ObjectMeta | null
  /** Inclusive byte range asked for (already checked against meta.size when meta is known). */
  range?: { start: number, end: number | undefined, suffix?: number }
  partsCount?: number
  resource: string
  requestId: string
}

export interface WritePlan {
  kind: 'write'
  /**
   * Runs once the gateway acknowledged the write (2xx), with the gateway's answer's headers (its
   * `Repr-Digest`, when the body's MD5 was left to it); what it returns is the client's answer.
   */
  commit: (answer: IncomingHttpHeaders) => Promise<{ status?: number, headers: Record<string, string>, body?: string }>
  /** A 404 from the gateway counts as success (DELETE of a missing object). */
  notFoundOk?: boolean
  resource: string
  requestId: string
}

export type ReplyPlan = ReadPlan | WritePlan

/**
 * The S3 adapter's handler between the chain and the client's: it sees the gateway's answer first
 * and turns it into S3's — MD5 ETags, metadata and ranges on reads; the index entry written
 * before a write is acknowledged; the gateway's errors as S3 XML.
 */
export class S3Reply implements ResponseHandler {
  private status = 0
  /** The gateway's answer's headers. */
  private answerHeaders: IncomingHttpHeaders = {}
  /** Read: body bytes seen so far and the slice to pass on (when the gateway ignored Range). */
  private pos = 0
  private slice: { start: number, end: number } | undefined
  /** Ignore the gateway from here on (we answered already). */
  private over = false

  constructor (private readonly inner: ResponseHandler, private readonly request: ProxyRequest, private readonly plan: ReplyPlan, private readonly bodyError: () => S3Error | undefined) {}

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    this.inner.onRequestStart(controller, context)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) return
    this.status = statusCode
    this.answerHeaders = headers
    const plan = this.plan
    if (plan.kind === 'write') return // answered at the end, after the commit
    if (statusCode >= 300) {
      this.over = true
      this.answer(controller, new S3Error(s3CodeOfGatewayStatus(statusCode), statusCode === 404 ? 'The specified key does not exist.' : `the gateway answered ${statusCode}`,
        statusCode === 503 ? { 'retry-after': String(headers['retry-after'] ?? 1) } : undefined))
      return
    }
    const meta = plan.meta
    const gatewayLength = Number(headers['content-length'] ?? NaN)
    const size = meta?.size ?? gatewayLength
    const out: Record<string, string> = {}
    const etag = meta !== null ? `"${meta.etag}"` : typeof headers.etag === 'string' ? headers.etag : undefined
    if (etag !== undefined) out.etag = etag
    out['content-type'] = meta?.contentType ?? 'binary/octet-stream'
    out['last-modified'] = new Date(meta?.lastModified ?? Date.now()).toUTCString()
    out['accept-ranges'] = 'bytes'
    if (meta?.meta !== undefined) for (const [k, v] of Object.entries(meta.meta)) out['x-amz-meta-' + k] = v
    if (meta?.headers !== undefined) Object.assign(out, meta.headers)
    if (plan.partsCount !== undefined) out['x-amz-mp-parts-count'] = String(plan.partsCount)
    let status = 200
    const r = plan.range
    if (r !== undefined && Number.isFinite(size)) {
      const start = r.suffix !== undefined ? Math.max(0, size - r.suffix) : r.start
      const end = Math.min(r.end ?? size - 1, size - 1)
      if (start >= size || (r.suffix !== undefined && r.suffix === 0)) {
        this.over = true
        this.answer(controller, new S3Error('InvalidRange', 'The requested range is not satisfiable', { 'content-range': `bytes */${size}` }))
        return
      }
      status = 206
      out['content-range'] = `bytes ${start}-${end}/${size}`
      out['content-length'] = String(end - start + 1)
      if (statusCode === 200) this.slice = { start, end } // the gateway sent it all: pass on the range only
    } else if (statusCode === 206 && typeof headers['content-range'] === 'string') {
      status = 206
      out['content-range'] = headers['content-range']
      out['content-length'] = String(gatewayLength)
    } else {
      out['content-length'] = String(Number.isFinite(gatewayLength) ? gatewayLength : size)
    }
    this.inner.onResponseStart(controller, status, out, statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.over || this.plan.kind === 'write') return
    const s = this.slice
    if (s === undefined) { this.inner.onResponseData(controller, chunk); return }
    const from = this.pos
    this.pos += chunk.length
    const a = Math.max(s.start - from, 0)
    const b = Math.min(s.end + 1 - from, chunk.length)
    if (b > a) this.inner.onResponseData(controller, chunk.subarray(a, b))
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (this.over) return
    const plan = this.plan
    if (plan.kind === 'read') { this.inner.onResponseEnd(controller, trailers); return }
    const ok = (this.status >= 200 && this.status < 300) || (this.status === 404 && plan.notFoundOk === true)
    if (!ok) {
      // A digest the client declared, checked by the gateway that stores the body (BodyCheck.leaveDigestsTo).
      const mismatch = this.status === 400 ? this.answerHeaders[DIGEST_MISMATCH_HEADER] : undefined
      this.answer(controller, mismatch === 'sha-256'
        ? new S3Error('XAmzContentSHA256Mismatch', 'the provided x-amz-content-sha256 header does not match what was computed')
        : mismatch === 'md5'
          ? new S3Error('BadDigest', 'the Content-MD5 you specified did not match what we received')
          : new S3Error(s3CodeOfGatewayStatus(this.status), `the gateway refused the write with ${this.status}`))
      return
    }
    plan.commit(this.answerHeaders).then(r => {
      const body = r.body ?? ''
      this.inner.onResponseStart(controller, r.status ?? 200, { ...r.headers, 'content-length': String(Buffer.byteLength(body)) })
      if (body !== '') this.inner.onResponseData(controller, Buffer.from(body))
      this.inner.onResponseEnd(controller, {})
    }, (err: unknown) => {
      // Stored on the gateway but not indexed: not acknowledged, the client retries.
      const e = err instanceof S3Error ? err : new S3Error('SlowDown', `the object index could not be updated: ${(err as Error).message}`, { 'retry-after': 1 })
      this.answer(controller, e)
    })
  }

  onResponseError (controller: Dispatcher.DispatchController | null, err: Error): void {
    const s3 = this.bodyError() ?? (err instanceof S3Error ? err : (err as { cause?: unknown }).cause instanceof S3Error ? (err as { cause: S3Error }).cause : undefined)
    if (s3 !== undefined && !this.request.res.headersSent) {
      pendingS3Errors.set(this.request.res, s3)
      this.inner.onResponseError(controller, new ProxyAnswer('FERRY_BAD_REQUEST', s3.message, s3.status))
      return
    }
    this.inner.onResponseError(controller, err)
  }

  /** An S3 error in place of the gateway's answer, written through the client's handler. */
  private answer (controller: Dispatcher.DispatchController, e: S3Error): void {
    const head = this.plan.kind === 'read' && this.plan.head
    const body = head ? '' : errorXml(e.code, e.message, this.plan.resource, this.plan.requestId)
    this.inner.onResponseStart(controller, e.status, { ...e.headers, 'content-type': 'application/xml', 'content-length': String(Buffer.byteLength(body)) })
    if (body !== '') this.inner.onResponseData(controller, Buffer.from(body))
    this.inner.onResponseEnd(controller, {})
  }
}
