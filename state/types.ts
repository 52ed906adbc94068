/**
 * The state store contract. The checked store (checked.ts) implements `StateStore` in front of
 * both backends (memory, Redis standalone/Cluster), which have the same semantics;
 * `test/state/contract.ts` is the executable version of this file. Times are milliseconds since the epoch (Date.now()) unless a name says otherwise.
 */

// ───────────────────────────── block locations ─────────────────────────────

/**
 * `stable`: served by the set's in-sync members — the only phase this ferry writes (moves are
 * membership changes). `copying`, `cutover`, `done`: round 1's single-copy cut-over, still read
 * so that a location an older planner left in them is served by `gateway` and settled by the
 * planner's recovery.
 */
export type LocationPhase = 'stable' | 'copying' | 'cutover' | 'done'
export const LOCATION_PHASES: readonly LocationPhase[] = ['stable', 'copying', 'cutover', 'done']

export interface BlockLocation {
  /**
   * The set's preferred in-sync member (always one of `inSync`): where a single-copy ferry
   * routes the block, and what the planner's single-copy moves act on.
   */
  gateway: string
  /**
   * The replica set, preferred reader first (README "Replica sets"). Writes go to every member;
   * a member not in `inSync` is joining (being copied to) and is never read. A record stored
   * before replica sets reads as `[gateway]`.
   */
  members: string[]
  /** The members that hold the block's current version: reads go only to them. Never empty. */
  inSync: string[]
  /** Bumped by every compare-and-set and by a delete; never goes backwards for a block. */
  epoch: number
  /** ETag of the last acknowledged write recorded with `setVersion` (null: none yet). */
  version: string | null
  phase: LocationPhase
  /** The gateway being migrated to (required in `copying` and `cutover`). */
  target?: string
  /** When this epoch began (a `setVersion` does not change it). */
  updatedAt: number
  /** Highest fencing token that has written this block (0: never written under a lease). */
  fence: number
}

/** What a caller proposes; the store assigns `epoch`, `updatedAt` and `fence`. */
export interface LocationInput {
  gateway: string
  /** Default `[gateway]`. Must contain `gateway`; no duplicates; at most 16. */
  members?: string[]
  /** Default `members`. A subset of `members` that contains `gateway`. */
  inSync?: string[]
  /** Default `stable`. */
  phase?: LocationPhase
  target?: string
  /** Omitted: keep the current version (a migration keeps the block's content). null: clear it. */
  version?: string | null
}

/** A lease name and the token `acquireLease` returned: proves the writer is the current leader. */
export interface Fence {
  lease: string
  token: number
}

export interface WriteOptions {
  /**
   * Refuse the write unless `token` is the lease's current token (and no higher token has ever
   * written this block). See README "Fencing".
   */
  fence?: Fence
  /** Free text recorded in the block's history (e.g. `migration:m-42`). At most 200 characters. */
  reason?: string
}

export type CasResult =
  | { ok: true, location: BlockLocation }
  | { ok: false, reason: 'epoch' | 'fenced', current: BlockLocation | null }

export type VersionResult =
  | { ok: true, location: BlockLocation }
  | { ok: false, current: BlockLocation | null }

export type DeleteResult =
  | { ok: true, deleted: boolean }
  | { ok: false, reason: 'epoch' | 'fenced', current: BlockLocation | null }

export interface BlockRef {
  volume: string
  block: string
}

export interface LocatedBlock extends BlockRef {
  location: BlockLocation
}

/** One entry of a block's version history, oldest first. */
export interface HistoryEntry {
  epoch: number
  gateway: string
  version: string | null
  phase: LocationPhase
  at: number
  /** `cas`, `write`, `delete`, or the caller's `reason`. */
  reason: string
}

// ───────────────────────────── affinity ─────────────────────────────

/**
 * Accesses to one block from one site, accumulated by a proxy since its last flush (the shape
 * proxy/access-recorder.ts drains, so a drained batch can be merged as is).
 */
export interface AccessDelta {
  volume: string
  block: string
  /** A site id, or '' for clients in no configured site. */
  site: string
  reads: number
  writes: number
  /** When the last of these accesses happened: decay is computed relative to it. */
  lastAccessMs: number
  /** Score increment; default `reads + writes`. */
  weight?: number
}

export interface AffinityEntry extends BlockRef {
  /** Decayed access score per site, as of `scoredAt`. Use `decayScores()` to bring to "now". */
  scores: Record<string, number>
  scoredAt: number
  /** Total reads and writes ever merged (not decayed). */
  reads: number
  writes: number
  lastAccess: number
  /**
   * Preferred gateways stored with the entry (`pref`), best first. Nothing in ferry writes them
   * any more (the planner ranks gateways live, see /v1/affinity): [] unless an older ferry did.
   */
  preferred: string[]
}

// ───────────────────────────── sessions ─────────────────────────────

export interface Session {
  /** volume → gateway the session is bound to. */
  bindings: Record<string, string>
  /** Small JSON-serialisable state (bounded by `sessions.maxBytes`). */
  state: Record<string, unknown>
  updatedAt: number
}

export interface SessionInput {
  bindings: Record<string, string>
  state?: Record<string, unknown>
}

// ───────────────────────────── telemetry ─────────────────────────────

/** One sample from a gateway's agent: a timestamp and named finite numbers (cpu, memPressure, …). */
export interface TelemetrySample {
  at: number
  [metric: string]: number
}

export interface TelemetryQuery {
  /** Only samples with `at >= since`. */
  since?: number
  /** At most this many, the most recent ones (returned oldest first). */
  limit?: number
}

// ───────────────────────────── migrations ─────────────────────────────

export type MigrationPhase = 'queued' | 'copying' | 'cutover' | 'cleanup' | 'done'
export const MIGRATION_PHASES: readonly MigrationPhase[] = ['queued', 'copying', 'cutover', 'cleanup', 'done']
export type MigrationResult = 'ok' | 'failed' | 'rolled-back' | 'cancelled'
export const MIGRATION_RESULTS: readonly MigrationResult[] = ['ok', 'failed', 'rolled-back', 'cancelled']

export interface MigrationRecord {
  id: string
  volume: string
  block: string
  from: string
  to: string
  phase: MigrationPhase
  /** Bytes copied so far. */
  bytes: number
  /** Size of the block when known (for % and ETA). */
  totalBytes: number | null
  startedAt: number
  endedAt: number | null
  /** null while the migration is active; set once, when it ends. */
  result: MigrationResult | null
  error: string | null
  /** Why it was started (`rebalance`, `drain:gw-2`, `operator`, …). */
  reason: string | null
  updatedAt: number
}

export type MigrationInput =
  Pick<MigrationRecord, 'id' | 'volume' | 'block' | 'from' | 'to'> &
  Partial<Pick<MigrationRecord, 'phase' | 'bytes' | 'totalBytes' | 'startedAt' | 'endedAt' | 'result' | 'error' | 'reason'>>

export type MigrationPatch = Partial<Pick<MigrationRecord, 'phase' | 'bytes' | 'totalBytes' | 'endedAt' | 'result' | 'error' | 'to'>>

export interface MigrationQuery {
  /** Default 100. */
  limit?: number
  /** Only migrations whose result is still null. */
  active?: boolean
}

// ───────────────────────────── lease ─────────────────────────────

export interface LeaseGrant {
  /** Strictly greater than every token granted before for this lease name. */
  token: number
}

export interface LeaseInfo {
  holder: string
  token: number
  /** Remaining time to live as the backend sees it. */
  ttlMs: number
}

// ───────────────────────────── drains ─────────────────────────────

/**
 * A gateway being emptied, kept in the store so that a planner taking over the lease carries on
 * with every drain in force (reading them back from migration reasons lost a drain that had no
 * move running at the moment of the take-over, and its gateway took new blocks again).
 */
export interface DrainRecord {
  gateway: string
  /** `operator`: POST /v1/gateways/:id/drain; `health`: the predictive trigger, lifted on recovery. */
  cause: 'operator' | 'health'
  /** The gateway the operator named as the target; null: each block's best gateway. */
  to: string | null
  startedAt: number
}

// ───────────────────────────── generation ─────────────────────────────

/**
 * Which life of the store this is. A Redis without persistence that restarts comes back empty:
 * every block location is gone while the blocks are still on the gateways. The marker lets every
 * ferry process notice (the id changes, or it is new), and says whether the locations have been
 * rebuilt from the gateways' inventories yet. The first caller that finds no marker creates one
 * with `rebuilding: true`: a brand-new store is rebuilt too (from gateways that may already hold
 * blocks), which costs one listing of each gateway.
 */
export interface StoreGeneration {
  id: string
  createdAt: number
  /** True until the locations have been rebuilt from the gateways' inventories. */
  rebuilding: boolean
  rebuiltAt: number | null
}

/**
 * What a process may make of its location caches, given what it knows of the store's generation
 * (recovery/GenerationWatch). The proxy asks it before routing a block and before acknowledging a
 * write.
 */
export interface LocationsStanding {
  /** The store lost its data and its locations are not rebuilt yet: "no location" is not "not found". */
  readonly recoveringFromLoss: boolean
  /**
   * The generation was confirmed within `state.cutOffServeMs`: the cache may be served and a
   * write acknowledged from it. False once the store has been out of reach longer: it may have
   * come back empty and had its locations rebuilt elsewhere meanwhile.
   */
  cacheTrusted (): boolean
  /**
   * The store's connection dropped since the generation was last confirmed. A first write's
   * claim then waits for check(): recorded in a store that came back empty before this process
   * knows it did, the claim would be kept by the rebuild while others write the block elsewhere.
   */
  readonly generationUnconfirmed: boolean
  /** Reads the store's generation now (never throws): confirms it, or finds it lost. */
  check (): Promise<void>
}

// ───────────────────────────── events and health ─────────────────────────────

export interface StoreStatus {
  ok: boolean
  /** Why it is not ok (for /readyz), e.g. `redis: connect ECONNREFUSED 127.0.0.1:6379`. */
  reason?: string
}

export type StoreEvent =
  /** A location changed (compare-and-set or delete). `location` is null after a delete. */
  | { type: 'location', volume: string, block: string, epoch: number, location: BlockLocation | null }
  /** A message from `publish(channel, message)`: gateway-health, config, … */
  | { type: 'message', channel: string, message: unknown }
  /** Events may have been missed (first connection, reconnection): reload everything cached. */
  | { type: 'resync', reason: string }
  /** `status()` changed. Local to this store instance; never crosses the backend. */
  | { type: 'status', status: StoreStatus }

export type StoreEventHandler = (event: StoreEvent) => void

// ───────────────────────────── the store ─────────────────────────────

export interface StateStore {
  /** `memory`, `redis` or `redis-cluster`. */
  readonly backend: string

  getLocation (volume: string, block: string): Promise<BlockLocation | null>
  /**
   * Atomically: if the block's epoch is `expectedEpoch` (0: no location) and the fence holds,
   * write `next` with epoch + 1, append to the block's history and publish a location event.
   */
  casLocation (volume: string, block: string, expectedEpoch: number, next: LocationInput, options?: WriteOptions): Promise<CasResult>
  /** Record the ETag of an acknowledged write; refused when the block's epoch is no longer `epoch`. */
  setVersion (volume: string, block: string, epoch: number, version: string): Promise<VersionResult>
  /** Removes the location (the epoch is kept in a tombstone so it never goes backwards). */
  deleteLocation (volume: string, block: string, expectedEpoch?: number, options?: WriteOptions): Promise<DeleteResult>
  /** Every live location, in no particular order, in batches (for full resync). */
  scanLocations (): AsyncIterable<LocatedBlock>
  /** Oldest first, at most `history.limit` entries. */
  blockHistory (volume: string, block: string): Promise<HistoryEntry[]>

  /** Merge a batch of deltas (pipelined: one round trip per node). Refreshes the entries' TTL. */
  mergeAccess (deltas: readonly AccessDelta[]): Promise<void>
  getAffinity (volume: string, block: string): Promise<AffinityEntry | null>
  scanAffinity (): AsyncIterable<AffinityEntry>

  getSession (id: string): Promise<Session | null>
  putSession (id: string, session: SessionInput, ttlMs: number): Promise<Session>
  /** Bind one volume atomically (other bindings and the state are kept); creates the session if absent. */
  bindSession (id: string, volume: string, gateway: string, ttlMs: number): Promise<void>
  touchSession (id: string, ttlMs: number): Promise<boolean>

  appendTelemetry (gateway: string, samples: readonly TelemetrySample[]): Promise<void>
  readTelemetry (gateway: string, query?: TelemetryQuery): Promise<TelemetrySample[]>

  /** Throws FERRY_STATE_CONFLICT if the id exists. */
  appendMigration (record: MigrationInput): Promise<MigrationRecord>
  /** null when the id is unknown (or was trimmed away). */
  updateMigration (id: string, patch: MigrationPatch): Promise<MigrationRecord | null>
  getMigration (id: string): Promise<MigrationRecord | null>
  /** Newest first (by startedAt). */
  listMigrations (query?: MigrationQuery): Promise<MigrationRecord[]>

  /** null while someone else holds it. The same holder re-acquiring gets its token back, extended. */
  acquireLease (name: string, holder: string, ttlMs: number): Promise<LeaseGrant | null>
  renewLease (name: string, holder: string, token: number, ttlMs: number): Promise<boolean>
  releaseLease (name: string, holder: string, token: number): Promise<boolean>
  getLease (name: string): Promise<LeaseInfo | null>

  /** Records (or replaces) the drain of `drain.gateway`. */
  putDrain (drain: DrainRecord): Promise<void>
  /** Ends a drain; false when there was none. */
  deleteDrain (gateway: string): Promise<boolean>
  /** Every drain in force, in no particular order. */
  listDrains (): Promise<DrainRecord[]>

  /** The generation marker; created atomically (`rebuilding: true`) when absent, so every caller sees the same one. */
  generation (): Promise<StoreGeneration>
  /** Marks generation `id` rebuilt. False when the marker is absent or belongs to another generation. */
  finishRebuild (id: string): Promise<boolean>

  /**
   * A named JSON document that every process may read (the placement table): the last write wins.
   * `getDocument` resolves null when there is none. `name` is a channel-style name.
   */
  getDocument (name: string): Promise<unknown>
  putDocument (name: string, value: unknown): Promise<void>

  /** Handlers run in delivery order; an exception in one is logged and does not affect others. */
  subscribe (handler: StoreEventHandler): () => void
  /** `channel`: lowercase letters, digits, `.`, `_`, `-` (e.g. `gateway-health`). JSON-serialisable message. */
  publish (channel: string, message: unknown): Promise<void>

  status (): StoreStatus
  close (): Promise<void>
}
