import type { ErrorCode } from '../../lib/error-codes.js'

/**
 * The S3 error codes ferry answers with, and their statuses (as AWS documents them). Clients
 * match on `<Code>`; the status decides whether they retry.
 */
export const S3_ERRORS = {
  AccessDenied: 403,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  BadDigest: 400,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  EntityTooLarge: 400,
  EntityTooSmall: 400,
  IncompleteBody: 400,
  InternalError: 500,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidBucketName: 400,
  InvalidDigest: 400,
  InvalidPart: 400,
  InvalidPartNumber: 416,
  InvalidPartOrder: 400,
  InvalidRange: 416,
  InvalidRequest: 400,
  InvalidURI: 400,
  KeyTooLongError: 400,
  MalformedXML: 400,
  MetadataTooLarge: 400,
  MethodNotAllowed: 405,
  MissingContentLength: 411,
  NoSuchBucket: 404,
  NoSuchKey: 404,
  NoSuchUpload: 404,
  NotImplemented: 501,
  PreconditionFailed: 412,
  RequestHeaderSectionTooLarge: 400,
  RequestTimeout: 400,
  RequestTimeTooSkewed: 403,
  ServiceUnavailable: 503,
  SignatureDoesNotMatch: 403,
  SlowDown: 503,
  XAmzContentSHA256Mismatch: 400,
  // Not S3's own: what a proxy in front of S3 answers when the gateway behind it failed.
  BadGateway: 502,
  GatewayTimeout: 504
} as const

export type S3ErrorCode = keyof typeof S3_ERRORS

/** An S3 error answer, thrown anywhere in the adapter and written as S3's XML error body. */
export class S3Error extends Error {
  readonly status: number
  constructor (readonly code: S3ErrorCode, message: string, readonly headers?: Record<string, string | number>) {
    super(message)
    this.name = 'S3Error'
    this.status = S3_ERRORS[code]
  }
}

/**
 * ferry's own answers (lib/error-codes.ts) as S3 codes, for a request that came in as S3: the
 * same event, in the words an S3 client understands. Typed 503s become SlowDown (clients back
 * off and retry; Retry-After is kept). The README's S3 error table is this map.
 */
export const FERRY_TO_S3: Partial<Record<ErrorCode, S3ErrorCode>> = {
  FERRY_BAD_PATH: 'InvalidURI',
  FERRY_UNEXPECTED_BODY: 'InvalidRequest',
  FERRY_BAD_REQUEST: 'InvalidRequest',
  FERRY_UPGRADE_NOT_SUPPORTED: 'InvalidRequest',
  FERRY_METHOD_NOT_ALLOWED: 'MethodNotAllowed',
  FERRY_REQUEST_TIMEOUT: 'RequestTimeout',
  FERRY_BODY_TOO_LARGE: 'EntityTooLarge',
  FERRY_HEADERS_TOO_LARGE: 'RequestHeaderSectionTooLarge',
  FERRY_INTERNAL: 'InternalError',
  FERRY_GATEWAY_ERROR: 'BadGateway',
  FERRY_GATEWAY_TLS: 'BadGateway',
  FERRY_NO_GATEWAY: 'ServiceUnavailable',
  FERRY_WRITE_NOT_CONFIRMED: 'SlowDown',
  FERRY_LOCATIONS_REBUILDING: 'SlowDown',
  FERRY_GATEWAY_TIMEOUT: 'GatewayTimeout'
}

export function s3CodeOf (code: ErrorCode, status: number): S3ErrorCode {
  return FERRY_TO_S3[code] ?? (status === 503 ? 'ServiceUnavailable' : status >= 500 ? 'InternalError' : 'InvalidRequest')
}

/** A gateway's own error status, as the S3 code of the object operation that got it. */
export function s3CodeOfGatewayStatus (status: number): S3ErrorCode {
  switch (status) {
    case 404: return 'NoSuchKey'
    case 412: return 'PreconditionFailed'
    case 413: return 'EntityTooLarge'
    case 416: return 'InvalidRange'
    case 503: return 'SlowDown'
    case 504: return 'GatewayTimeout'
    default: return status >= 500 ? 'BadGateway' : 'InvalidRequest'
  }
}
