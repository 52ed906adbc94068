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
