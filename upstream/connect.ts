import { createHash, X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import { Pool, type Dispatcher } from 'undici'
import type { GatewayConfig, GatewayTlsConfig } from '../fleet/schema.js'
import { FerryError } from '../lib/errors.js'
import { loadTlsPair } from '../lib/tls.js'
import { gatewayDispatcher } from './s3.js'

/**
 * How every role connects to a gateway: the one place that turns a gateway's `url` and `tls`
 * into connections (the proxy's pools, the planner's, the inventory's), and that says what a
 * failed TLS handshake means. A second pool factory would be a second place to forget the CA.
 */

/** What an `https` gateway's connections are built with: undici's TLS connect options. */
export interface GatewayTls {
  connect: { ca?: Buffer[], cert?: Buffer, key?: Buffer, servername?: string }
  /**
   * A digest of the files' contents and the servername: a reload that finds it changed (a renewed
   * certificate under the same path) builds new pools, one that finds it the same keeps them.
   */
  fingerprint: string
}

function invalid (gateway: GatewayConfig, key: keyof GatewayTlsConfig, message: string): FerryError {
  return new FerryError('FERRY_TLS_INVALID', `gateway ${gateway.id}: tls.${key}: ${message}`, 400, { gateway: gateway.id, key, reason: message })
}

/** The certificates of a PEM bundle, each checked: a CA file that does not parse, or has expired, fails every connection. */
function loadCa (gateway: GatewayConfig, file: string, now: number): Buffer[] {
  let text: string
  try { text = fs.readFileSync(file, 'utf8') } catch (err) { throw invalid(gateway, 'ca', `cannot read ${file}: ${(err as Error).message}`) }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  if (blocks.length === 0) throw invalid(gateway, 'ca', `${file} holds no PEM certificate`)
  return blocks.map((pem, i) => {
    let x509: X509Certificate
    try { x509 = new X509Certificate(pem) } catch (err) { throw invalid(gateway, 'ca', `certificate ${i + 1} of ${file} does not parse: ${(err as Error).message}`) }
    if (Date.parse(x509.validTo) <= now) throw invalid(gateway, 'ca', `the CA certificate ${x509.subject.replace(/\n/g, ', ')} in ${file} expired on ${x509.validTo}`)
    return Buffer.from(pem)
  })
}

/**
 * Reads and checks a gateway's TLS files; null for a plain `http` gateway, and for an `https` one
 * without a `tls` section (the system's CAs, and NODE_EXTRA_CA_CERTS, as any Node client).
 * Throws FerryError FERRY_TLS_INVALID (details: gateway, key) when a file cannot be used.
 */
export function loadGatewayTls (gateway: GatewayConfig, now = Date.now()): GatewayTls | null {
  const tls = gateway.tls
  if (tls === undefined || !/^https:/i.test(gateway.url)) return null
  const connect: GatewayTls['connect'] = {}
  const hash = createHash('sha256')
  if (tls.ca !== undefined) {
    connect.ca = loadCa(gateway, tls.ca, now)
    for (const c of connect.ca) hash.update(c)
  }
  if (tls.cert !== undefined && tls.key !== undefined) {
    let pair
    try {
      pair = loadTlsPair({ cert: tls.cert, key: tls.key }, now)
    } catch (err) {
      throw invalid(gateway, /TLS key|private key|the key /.test((err as Error).message) ? 'key' : 'cert', (err as Error).message)
    }
    connect.cert = pair.cert
    connect.key = pair.key
    hash.update(pair.cert).update(pair.key)
  }
  if (tls.servername !== undefined) {
    connect.servername = tls.servername
    hash.update('\0' + tls.servername)
  }
  return { connect, fingerprint: hash.digest('hex') }
}

/** The fingerprint of a gateway's TLS material ('' for none), or null when it cannot be loaded now. */
export function gatewayTlsFingerprint (gateway: GatewayConfig): string | null {
  try { return loadGatewayTls(gateway)?.fingerprint ?? '' } catch { return null }
}

/**
 * Whether a pool made for `old` still reaches `next` after a reload: the same address, protocol,
 * S3 signing and TLS files. (Renewed certificates at the same paths are the TLS fingerprint's
 * concern, which each owner of a pool checks on its own schedule.)
 */
export function poolStillServes (old: Pick<GatewayConfig, 'url' | 'kind' | 's3' | 'tls'>, next: GatewayConfig): boolean {
  return old.url === next.url && old.kind === next.kind && JSON.stringify(old.s3) === JSON.stringify(next.s3) && JSON.stringify(old.tls) === JSON.stringify(next.tls)
}

/**
 * A keep-alive pool to the gateway: `options` (connections, timeouts) with the gateway's TLS
 * options added to `connect`, and for kind `s3` every request mapped onto the bucket and signed
 * (upstream/s3.ts). Closing or destroying it closes the pool.
 */
export function gatewayPool (gateway: GatewayConfig, options: Pool.Options = {}): Dispatcher {
  return gatewayDispatcher(gateway, rawGatewayPool(gateway, options))
}

/** The pool without the s3 mapping: for callers that sign bucket-level requests themselves (the inventory). */
export function rawGatewayPool (gateway: GatewayConfig, options: Pool.Options = {}): Pool {
  const tls = loadGatewayTls(gateway)
  const connect = tls === null ? options.connect : { ...(options.connect as object | undefined), ...tls.connect }
  return new Pool(new URL(gateway.url).origin, { ...options, ...(connect === undefined ? {} : { connect: connect as Pool.Options['connect'] }) })
}

/**
 * Node's codes for a certificate that did not verify (OpenSSL's X509_V_ERR names, and the host
 * name check), and OpenSSL's for a handshake that failed: an alert from the gateway (it refused
 * ferry's client certificate), or a plain-HTTP server behind an `https` url.
 */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REJECTED',
  'CERT_REVOKED', 'INVALID_CA', 'INVALID_PURPOSE', 'PATH_LENGTH_EXCEEDED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_TLS_CERT_ALTNAME_FORMAT', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD', 'EPROTO'
])

/** When `err` is a failed TLS handshake with a gateway: its code and Node's words for it; else null. */
export function tlsFailureOf (err: unknown): { code: string, reason: string } | null {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 3; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_'))) {
      // OpenSSL's own messages carry a file and line after the words that matter.
      const reason = ((e as Error).message ?? code).split(':../deps/')[0]?.trim() ?? code
      return { code, reason }
    }
  }
  return null
}

/**
 * A gateway request's failure in a log line, a probe's verdict or a migration's error: a TLS
 * failure says so, with Node's reason and code, since its bare code (SELF_SIGNED_CERT_IN_CHAIN)
 * does not tell an operator that the gateway's CA is the thing to look at; anything else is its
 * socket error code, or the message when it has none.
 */
export function describeGatewayError (err: unknown): string {
  const tls = tlsFailureOf(err)
  if (tls !== null) return `TLS handshake failed: ${tls.reason} [${tls.code}]`
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : (err as Error).message
}

/** The error a client of the proxy (and the migration log) gets for a gateway whose TLS handshake failed. */
export function gatewayTlsError (gatewayId: string, err: unknown): FerryError | null {
  const tls = tlsFailureOf(err)
  if (tls === null) return null
  return new FerryError('FERRY_GATEWAY_TLS', `gateway ${gatewayId}: TLS handshake failed: ${tls.reason} [${tls.code}] (check gateways[].tls: ca, servername, client certificate)`, 502, { gateway: gatewayId, tls: tls.code })
}
