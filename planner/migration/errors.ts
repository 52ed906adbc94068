import type { FerryErrorCode } from '../../lib/error-codes.js'
import { FerryError } from '../../lib/errors.js'

/**
 * The planner's codes, with their statuses and meanings, are in lib/error-codes.ts: the operator
 * API's refusals (FERRY_BLOCK_BUSY, FERRY_PLANNER_NOT_LEADER, …) and why a migration ended
 * without moving the block, recorded in the migration log as `CODE: message`
 * (FERRY_COPY_SOURCE_FAILED, FERRY_SOURCE_MISSING, FERRY_INTERRUPTED, …).
 */
export function plannerError (code: FerryErrorCode, message: string, statusCode: number, details?: Record<string, unknown>): FerryError {
  return new FerryError(code, message, statusCode, details)
}

/**
 * Thrown inside a migration when this planner must stop touching anything: the store refused a
 * write as fenced, or the lease's local deadline passed. Nothing is rolled back by a deposed
 * planner — that is the new leader's job, and two planners undoing each other's work is exactly
 * what the lease exists to prevent.
 */
export class DeposedError extends Error {
  constructor (reason: string) {
    super(`planner is no longer the leader: ${reason}`)
    this.name = 'DeposedError'
  }
}

/** The engine is stopping (graceful) or was killed (abrupt); the migration is interrupted. */
export class StoppingError extends Error {
  constructor (readonly abrupt: boolean) {
    super(abrupt ? 'planner killed' : 'planner stopping')
    this.name = 'StoppingError'
  }
}

/** `CODE: message` for the migration log, from any error. */
export function describeError (err: unknown): string {
  if (err instanceof FerryError) return `${err.code}: ${err.message}`
  return (err as Error)?.message ?? String(err)
}
