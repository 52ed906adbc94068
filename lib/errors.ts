import type { ErrorCode } from './error-codes.js'

/**
 * Typed errors with stable codes (in the manner of Fastify): callers and clients match on
 * `code`, never on message text, so messages can improve without breaking anyone. The codes,
 * with their statuses, are the catalogue's (error-codes.ts): a code not listed there does not
 * compile.
 */
export class FerryError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly details?: Record<string, unknown>

  constructor (code: ErrorCode, message: string, statusCode = 500, details?: Record<string, unknown>) {
    super(message)
    this.name = 'FerryError'
    this.code = code
    this.statusCode = statusCode
    if (details !== undefined) this.details = details
  }

  toJSON (): Record<string, unknown> {
    return { error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) } }
  }
}

export function isFerryError (err: unknown): err is FerryError {
  return err instanceof FerryError
}
