import type { IncomingMessage } from 'node:http'
import { canonicalRequest, sha256Hex, signatureOf, signingKey, type SignedRequest } from '../../proxy/s3/sigv4.js'

/**
 * Headers of a SigV4-signed request (the `Authorization` header form, payload hash signed), as a
 * client computes them, for tests that send S3 requests without an SDK.
 */
export function signedHeaders (opts: { method: string, url: string, host: string, accessKeyId: string, secret: string, body?: Buffer | string, region?: string, date?: Date }): Record<string, string> {
  const amzDate = (opts.date ?? new Date()).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
  const headers: Record<string, string> = { host: opts.host, 'x-amz-date': amzDate, 'x-amz-content-sha256': sha256Hex(opts.body ?? '') }
  const names = Object.keys(headers).sort()
  const scope = `${amzDate.slice(0, 8)}/${opts.region ?? 'us-east-1'}/s3/aws4_request`
  const sig: SignedRequest = { accessKeyId: opts.accessKeyId, amzDate, scope, signedHeaders: names, signature: '', payloadHash: headers['x-amz-content-sha256'] as string, presigned: false }
  const canonical = canonicalRequest({ method: opts.method, url: opts.url, headers } as unknown as IncomingMessage, sig)
  const signature = signatureOf(signingKey(opts.secret, scope), `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256Hex(canonical)}`)
  return { ...headers, authorization: `AWS4-HMAC-SHA256 Credential=${opts.accessKeyId}/${scope},SignedHeaders=${names.join(';')},Signature=${signature}` }
}
