import { FerryError } from '../../lib/errors.js'
import { COPY_VERIFY_FAILED } from '../../upstream/errors.js'

/**
 * Stable error codes of the migration engine and the planner's operator API. Clients (and the
 * migration log's `error` field, written as `CODE: message`) match on the code.
 *
 * Refusals of a request (the admin API answers with the status):
 * - `FERRY_PLANNER_BAD_REQUEST` (400): a body or parameter that does not validate.
 * - `FERRY_UNKNOWN_GATEWAY` (404): a gateway id that is not configured.
 * - `FERRY_BLOCK_NOT_FOUND` (404): a block with no location that no gateway holds, or a volume
 *   with no known block.
 * - `FERRY_MIGRATION_NOT_FOUND` (404): no such migration id (or it was trimmed from the log).
 * - `FERRY_NOT_DRAINING` (404): the gateway has no drain to show or end.
 * - `FERRY_BLOCK_BUSY` (409): the block is already being moved.
 * - `FERRY_MIGRATION_NOOP` (409): the block already lives on the requested gateway.
 * - `FERRY_TARGET_UNAVAILABLE` (409): the requested target is down, draining or full.
 * - `FERRY_NO_TARGET` (409): no healthy gateway with room is left to move the block to.
 * - `FERRY_MIGRATION_NOT_CANCELLABLE` (409): the migration already flipped or ended.
 * - `FERRY_PLANNER_NOT_LEADER` (503): this planner is on standby; `details.leader` names the one
 *   acting (send the request to it).
 * - `FERRY_MIGRATION_QUEUE_FULL` (503): `migration.maxQueued` migrations are already waiting.
 *
 * Why a migration ended without moving the block (recorded in the log, never thrown at a client):
 * - `FERRY_COPY_SOURCE_FAILED`, `FERRY_COPY_TARGET_FAILED`: a gateway failed the GET or the PUT.
 * - `FERRY_COPY_VERIFY_FAILED`: the copy is not provably the source's bytes (upstream/verify.ts:
 *   the source's content-hash ETag, or the target's ETag, digest or read-back, did not match).
 * - `FERRY_COPY_TIMEOUT`: the copy did not finish within `migration.copyTimeoutMs`.
 * - `FERRY_SOURCE_MISSING`: the source no longer holds the block (deleted by a client).
 * - `FERRY_CUTOVER_TIMEOUT`: the source kept changing, or checks were too slow, past
 *   `migration.cutoverTimeoutMs` / `maxRecopies`.
 * - `FERRY_LOCATION_CHANGED`: someone else changed the block's location meanwhile.
 * - `FERRY_INTERRUPTED`: the planner stopped or restarted mid-migration.
 */
export const PLANNER_BAD_REQUEST = 'FERRY_PLANNER_BAD_REQUEST'
export const UNKNOWN_GATEWAY = 'FERRY_UNKNOWN_GATEWAY'
export const BLOCK_NOT_FOUND = 'FERRY_BLOCK_NOT_FOUND'
export const MIGRATION_NOT_FOUND = 'FERRY_MIGRATION_NOT_FOUND'
export const NOT_DRAINING = 'FERRY_NOT_DRAINING'
export const BLOCK_BUSY = 'FERRY_BLOCK_BUSY'
export const MIGRATION_NOOP = 'FERRY_MIGRATION_NOOP'
export const TARGET_UNAVAILABLE = 'FERRY_TARGET_UNAVAILABLE'
export const NO_TARGET = 'FERRY_NO_TARGET'
export const NOT_CANCELLABLE = 'FERRY_MIGRATION_NOT_CANCELLABLE'
export const NOT_LEADER = 'FERRY_PLANNER_NOT_LEADER'
export const QUEUE_FULL = 'FERRY_MIGRATION_QUEUE_FULL'

export const COPY_SOURCE_FAILED = 'FERRY_COPY_SOURCE_FAILED'
export const COPY_TARGET_FAILED = 'FERRY_COPY_TARGET_FAILED'
/** Defined by upstream/, which verifies copies for every gateway kind. */
export { COPY_VERIFY_FAILED }
export const COPY_TIMEOUT = 'FERRY_COPY_TIMEOUT'
export const SOURCE_MISSING = 'FERRY_SOURCE_MISSING'
export const CUTOVER_TIMEOUT = 'FERRY_CUTOVER_TIMEOUT'
export const LOCATION_CHANGED = 'FERRY_LOCATION_CHANGED'
export const INTERRUPTED = 'FERRY_INTERRUPTED'

export function plannerError (code: string, message: string, statusCode: number, details?: Record<string, unknown>): FerryError {
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
