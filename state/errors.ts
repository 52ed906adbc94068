import { FerryError } from '../lib/errors.js'

/**
 * The state store's errors (codes, statuses and meanings in lib/error-codes.ts). Callers match on
 * `code`, never on message text. The one callers must think about is FERRY_STATE_UNAVAILABLE:
 * the call was not queued, and for a write the outcome is *unknown* (it may have been applied
 * just before the connection dropped), so writers re-read before retrying. Epochs make that
 * safe: a retried compare-and-set simply fails if the first attempt went through.
 */

export function unavailable (reason: string, cause?: unknown): FerryError {
  const err = new FerryError('FERRY_STATE_UNAVAILABLE', `state store unavailable: ${reason}`, 503)
  if (cause !== undefined) (err as Error & { cause?: unknown }).cause = cause
  return err
}

/**
 * FERRY_STATE_UNAVAILABLE for a call that never left this process (no connection was ready to
 * take it): unlike a timeout or a connection lost in flight, nothing it asked can have been
 * applied, so a caller may act on "it did not happen" without reading back.
 */
export function unsent (reason: string, cause?: unknown): FerryError {
  const err = new FerryError('FERRY_STATE_UNAVAILABLE', `state store unavailable: ${reason}`, 503, { sent: false })
  if (cause !== undefined) (err as Error & { cause?: unknown }).cause = cause
  return err
}

/** True when the call failed before reaching the store (see unsent): it certainly was not applied. */
export function wasNotSent (err: unknown): boolean {
  return err instanceof FerryError && err.code === 'FERRY_STATE_UNAVAILABLE' && err.details?.sent === false
}

export function invalid (message: string, details?: Record<string, unknown>): FerryError {
  return new FerryError('FERRY_STATE_INVALID', message, 400, details)
}

export function tooLarge (message: string): FerryError {
  return new FerryError('FERRY_STATE_TOO_LARGE', message, 413)
}

export function conflict (message: string): FerryError {
  return new FerryError('FERRY_STATE_CONFLICT', message, 409)
}

export function corrupt (message: string): FerryError {
  return new FerryError('FERRY_STATE_CORRUPT', message, 500)
}

export function closed (): FerryError {
  return new FerryError('FERRY_STATE_CLOSED', 'state store is closed', 503)
}
