import type { BlockDelta } from './affinity.js'
import type { StateConfig } from './config.js'
import type { CasResult, DeleteResult, MigrationRecord, Session, StateStore, TelemetrySample } from './types.js'
import type { CheckedLocation, CheckedWriteOptions } from './validate.js'

/** The bounds the checked store needs to check a call before it reaches the backend. */
export type StoreLimits = Pick<StateConfig, 'affinity' | 'telemetry' | 'sessions' | 'maxMessageBytes'>

/** Operations a backend takes exactly as `StateStore` declares them (their arguments need no normalising). */
type AsDeclared =
  | 'getLocation' | 'setVersion' | 'scanLocations' | 'blockHistory'
  | 'getAffinity' | 'scanAffinity'
  | 'getSession' | 'bindSession' | 'touchSession'
  | 'appendTelemetry' | 'getMigration'
  | 'acquireLease' | 'renewLease' | 'releaseLease' | 'getLease'
  | 'putDrain' | 'deleteDrain' | 'listDrains'
  | 'generation' | 'finishRebuild' | 'subscribe' | 'status' | 'close'

/**
 * What a backend (memory, Redis) implements: the storage behaviour of `StateStore` and nothing
 * else. `CheckedStore` (checked.ts) stands in front of every backend and does, once for all of
 * them, what must not differ between them: it validates every argument before any I/O, meters
 * every call, and refuses calls once the store is closed. So every argument here is already
 * checked, and some arrive normalised (`CheckedLocation`, a whole `MigrationRecord`, a session's
 * state as JSON, access deltas grouped per block); a backend neither re-validates nor counts.
 *
 * What stays here is what only the backend can know: its data, its TTLs and atomicity, its
 * notifications, `status()` (connected, subscribed) and what `close()` (called once) releases.
 */
export interface StoreBackend extends Pick<StateStore, AsDeclared> {
  readonly name: 'memory' | 'redis' | 'redis-cluster'
  readonly limits: StoreLimits

  casLocation (volume: string, block: string, expectedEpoch: number, next: CheckedLocation, options: CheckedWriteOptions): Promise<CasResult>
  deleteLocation (volume: string, block: string, expectedEpoch: number | undefined, options: CheckedWriteOptions): Promise<DeleteResult>
  /** One entry per block (`groupDeltas`); may be empty. */
  mergeAccess (blocks: readonly BlockDelta[]): Promise<void>
  /** `stateJson`: the session's state, serialised once by the check (its size is the bound). */
  putSession (id: string, bindings: Record<string, string>, stateJson: string, ttlMs: number): Promise<Session>
  readTelemetry (gateway: string, since: number, limit: number): Promise<TelemetrySample[]>
  appendMigration (record: MigrationRecord): Promise<MigrationRecord>
  updateMigration (id: string, fields: Partial<MigrationRecord>): Promise<MigrationRecord | null>
  listMigrations (limit: number, activeOnly: boolean): Promise<MigrationRecord[]>
  /** The document's JSON text, or null. */
  getDocument (name: string): Promise<string | null>
  /** `json`: the document serialised once by the check (its size is the bound). */
  putDocument (name: string, json: string): Promise<void>
  /** `raw`: an encoded message notification (codec.ts), already within `maxMessageBytes`. */
  publish (raw: string): Promise<void>
}
