import { FerryError } from '../lib/errors.js'

/**
 * Stable error codes of the state store. Callers match on `code` (never on message text):
 *
 * - `FERRY_STATE_UNAVAILABLE` (503): the backend cannot be reached or did not answer in time.
 *   The call was not queued; for a write the outcome is *unknown* (it may have been applied
 *   just before the connection dropped), so writers re-read before retrying. Epochs make that
 *   safe: a retried compare-and-set simply fails if the first attempt went through.
 * - `FERRY_STATE_INVALID` (400): an id, channel or value was refused before reaching the
 *   backend (e.g. a volume containing `{` or `/`, which would otherwise escape its key).
 * - `FERRY_STATE_TOO_LARGE` (413): a session state or published message over its bound.
 * - `FERRY_STATE_CONFLICT` (409): an append of a record whose id already exists.
 * - `FERRY_STATE_CORRUPT` (500): a stored value that does not decode (written by something else).
 * - `FERRY_STATE_CLOSED` (503): the store was closed.
 * - `FERRY_STATE_ERROR` (500): anything else the backend reported.
 */
export const STATE_UNAVAILABLE = 'FERRY_STATE_UNAVAILABLE'
export const STATE_INVALID = 'FERRY_STATE_INVALID'
export const STATE_TOO_LARGE = 'FERRY_STATE_TOO_LARGE'
export const STATE_CONFLICT = 'FERRY_STATE_CONFLICT'
export const STATE_CORRUPT = 'FERRY_STATE_CORRUPT'
export const STATE_CLOSED = 'FERRY_STATE_CLOSED'
export const STATE_ERROR = 'FERRY_STATE_ERROR'

export function unavailable (reason: string, cause?: unknown): FerryError {
  const err = new FerryError(STATE_UNAVAILABLE, `state store unavailable: ${reason}`, 503)
  if (cause !== undefined) (err as Error & { cause?: unknown }).cause = cause
  return err
}

export function invalid (message: string, details?: Record<string, unknown>): FerryError {
  return new FerryError(STATE_INVALID, message, 400, details)
}

export function tooLarge (message: string): FerryError {
  return new FerryError(STATE_TOO_LARGE, message, 413)
}

export function conflict (message: string): FerryError {
  return new FerryError(STATE_CONFLICT, message, 409)
}

export function corrupt (message: string): FerryError {
  return new FerryError(STATE_CORRUPT, message, 500)
}

export function closed (): FerryError {
  return new FerryError(STATE_CLOSED, 'state store is closed', 503)
}
