import { FerryError } from '../lib/errors.js'

/** Stable codes (lib/error-codes.ts) for what was wrong with a message; they also label the FORMERR log line. */
export type WireErrorCode =
  | 'FERRY_DNS_TRUNCATED'
  | 'FERRY_DNS_BAD_LABEL'
  | 'FERRY_DNS_NAME_TOO_LONG'
  | 'FERRY_DNS_BAD_POINTER'
  | 'FERRY_DNS_QDCOUNT'
  | 'FERRY_DNS_BAD_OPT'
  | 'FERRY_DNS_MULTIPLE_OPT'
  | 'FERRY_DNS_BAD_ECS'
  | 'FERRY_DNS_TRAILING_DATA'

/** A message that cannot be decoded: answered with FORMERR (RFC 1035 §4.1.1). */
export class DnsWireError extends FerryError {
  declare readonly code: WireErrorCode
  constructor (code: WireErrorCode, message: string) {
    super(code, message, 400)
    this.name = 'DnsWireError'
  }

  /**
   * Creates one without a stack trace. These are thrown for every malformed packet, a flood
   * of which is an attack to withstand, and capturing a stack costs more than answering; the
   * code and message say all there is to say about bad input.
   */
  static of (code: WireErrorCode, message: string): DnsWireError {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try {
      return new DnsWireError(code, message)
    } finally {
      Error.stackTraceLimit = limit
    }
  }
}

/** The server could not start: a listener failed to bind (`FERRY_DNS_LISTEN`), or it was already started (`FERRY_DNS_STATE`). */
export class DnsServerError extends FerryError {
  constructor (code: 'FERRY_DNS_LISTEN' | 'FERRY_DNS_STATE', message: string, details?: Record<string, unknown>) {
    super(code, message, 500, details)
    this.name = 'DnsServerError'
  }
}
