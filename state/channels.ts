import { z } from 'zod'
import { isValidId } from '../lib/ids.js'
import { invalid } from './errors.js'
import type { StateStore, StoreEvent } from './types.js'

/**
 * The messages ferry sends through `StateStore.publish`, one `Channel` each: its name, its shape
 * and the one check both ends apply. A publisher goes through `channel.publish()`, which refuses a
 * message its subscribers would drop (so a shape change breaks the sender, not silently the
 * receivers); a subscriber goes through `channel.subscribe()` or `channel.decode()`, so there is
 * one reading of each message in the tree. Location events are not here: the store itself emits
 * them (codec.ts).
 *
 * | channel | from → to | message |
 * | --- | --- | --- |
 * | `gateway-health` | proxy → DNS, planner | a proxy's passive view of one gateway changed |
 * | `passive` | proxy → planner | request/error/latency counts per gateway since the last interval |
 * | `profile` | proxy → planner | one interval's access-profile summary (the profiler's own format) |
 * | `generation` | the rebuilder → every process | the store's locations were rebuilt for a generation |
 * | `drains` | planner → proxies | the drains in the store changed (a drain or evacuation started or ended) |
 * | `placement-table` | planner → proxies | a new placement table is in the store document of that name |
 * | `placement-decisions` | proxy → planner | first-touch decisions since the last report, by how they were made |
 * | `placement-first-writes` | proxy → planner | first writes: block, origin site, content metadata (training history) |
 */
export class Channel<T> {
  constructor (readonly name: string, private readonly schema: z.ZodType<T, z.ZodTypeDef, unknown>) {}

  /** Checks `message` (FERRY_STATE_INVALID if it is not one) and publishes it. */
  async publish (store: Pick<StateStore, 'publish'>, message: T): Promise<void> {
    const r = this.schema.safeParse(message)
    if (!r.success) throw invalid(`not a ${this.name} message: ${describe(r.error)}`)
    await store.publish(this.name, r.data)
  }

  /** The message an event carries on this channel; undefined for any other event; null when it does not decode. */
  decode (event: StoreEvent): T | null | undefined {
    if (event.type !== 'message' || event.channel !== this.name) return undefined
    const r = this.schema.safeParse(event.message)
    return r.success ? r.data : null
  }

  /**
   * `handler` receives every message of this channel that decodes; `onMalformed` (when given) the
   * raw message of every one that does not. Returns the unsubscribe function.
   */
  subscribe (store: Pick<StateStore, 'subscribe'>, handler: (message: T) => void, onMalformed?: (message: unknown) => void): () => void {
    return store.subscribe(event => {
      const m = this.decode(event)
      if (m === undefined) return
      if (m !== null) handler(m)
      else if (event.type === 'message') onMalformed?.(event.message)
    })
  }
}

function describe (err: z.ZodError): string {
  const issue = err.issues[0]
  return issue === undefined ? 'invalid' : `${issue.path.join('.') || '(message)'}: ${issue.message}`
}

const id = z.string().refine(isValidId, 'not an id')
/** Who sent a message: a random per-process id (passive, profile) or a process id (gateway-health). */
const reporter = z.string().min(1).max(128)

// ── gateway-health

export interface GatewayHealthReport {
  gateway: string
  healthy: boolean
  /** When the reporter saw the change (its clock, ms). */
  at: number
  /** The reporting proxy; a later report from the same one replaces this one. */
  from: string
}

export const gatewayHealthChannel = new Channel<GatewayHealthReport>('gateway-health', z.object({
  gateway: id,
  healthy: z.boolean(),
  at: z.number().finite().nonnegative(),
  from: reporter
}))

/** How this process's proxy signs its gateway-health reports (and its own direct reports to its DNS). */
export const PROCESS_REPORTER = `${process.pid}`

// ── passive

/** What a proxy saw of one gateway since its last report: `requests` requests, `errors` of them failed. */
export interface PassiveCounts {
  requests: number
  errors: number
  /** Mean latency of these requests, ms. */
  latencyMs: number
}

export interface PassiveReport {
  from: string
  /** By gateway id. */
  observations: Record<string, PassiveCounts>
}

export const passiveChannel = new Channel<PassiveReport>('passive', z.object({
  from: reporter,
  // Numbers only: whether they make sense (and the gateway is known) is the planner's rule, which counts what it refuses.
  observations: z.record(id, z.object({ requests: z.number(), errors: z.number(), latencyMs: z.number() }))
}))

// ── profile

export interface ProfileReport {
  from: string
  /** The profiler's snapshot format (planner/profiler.ts), which `AccessProfiler.merge` checks itself. */
  snapshot: Record<string, unknown>
}

export const profileChannel = new Channel<ProfileReport>('profile', z.object({
  from: reporter,
  snapshot: z.record(z.unknown())
}))

// ── generation

export interface GenerationNotice {
  /** The store generation (StoreGeneration.id) whose locations were rebuilt. */
  id: string
  rebuilt: boolean
}

export const generationChannel = new Channel<GenerationNotice>('generation', z.object({
  id: z.string().min(1).max(64),
  rebuilt: z.boolean()
}))

// ── drains

export interface DrainsNotice {
  /** The gateway whose drain started or ended; the list itself is read from the store (listDrains). */
  gateway: string
}

export const drainsChannel = new Channel<DrainsNotice>('drains', z.object({ gateway: id }))

// ── placement (placement/README.md)

export interface PlacementTableNotice {
  /** The model version of the table now in the `placement-table` document (0: no model). */
  version: number
  publishedAt: number
}

export const placementTableChannel = new Channel<PlacementTableNotice>('placement-table', z.object({
  version: z.number().int().nonnegative(),
  publishedAt: z.number().finite()
}))

export interface PlacementDecisionReport {
  from: string
  model: number
  origin: number
  hash: number
}

const count = z.number().int().nonnegative()

export const placementDecisionsChannel = new Channel<PlacementDecisionReport>('placement-decisions', z.object({
  from: reporter, model: count, origin: count, hash: count
}))

/** What a proxy knows of a block when its first write arrives (checked at the proxy: placement/metadata.ts). */
export interface FirstWriteRecord {
  volume: string
  block: string
  /** The creating client's site; null for a client in no site. */
  origin: string | null
  at: number
  /** The request path as the client sent it. */
  path?: string
  contentType?: string
  size?: number
  /** Configured metadata headers (lower-case names), UTF-8, within placement.maxMetadataBytes. */
  headers?: Record<string, string>
}

export interface FirstWriteReport {
  from: string
  records: FirstWriteRecord[]
}

export const placementFirstWritesChannel = new Channel<FirstWriteReport>('placement-first-writes', z.object({
  from: reporter,
  records: z.array(z.object({
    volume: id,
    block: id,
    origin: z.string().max(63).nullable(),
    at: z.number().finite(),
    path: z.string().max(2048).optional(),
    contentType: z.string().max(256).optional(),
    size: z.number().int().nonnegative().optional(),
    headers: z.record(z.string().max(256), z.string().max(8192)).optional()
  })).max(1000)
}))
