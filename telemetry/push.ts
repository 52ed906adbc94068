/**
 * The push protocol between an agent and the planner: where samples go, the body's shape, what
 * a sample may hold and what the planner answers. The agent builds bodies of this shape and the
 * planner validates them with these schemas, so the two cannot drift apart. See README.md.
 */
import { z } from 'zod'
import { AGENT_FIELDS, fieldRange, type AgentSample, type FieldName } from './fields.js'

/** The planner's admin route the agents post to (bearer token). */
export const PUSH_PATH = '/v1/telemetry'

/** What an agent posts: one gateway's samples, oldest first. */
export interface PushBody {
  gateway: string
  samples: AgentSample[]
}

/*
 * The planner's refusals of a push (codes in lib/error-codes.ts), and what the agent does:
 * FERRY_TELEMETRY_INVALID (400, the message names the field): drops the batch;
 * FERRY_TELEMETRY_TOO_LARGE (413): halves its batches;
 * FERRY_TELEMETRY_UNKNOWN_GATEWAY (404): keeps the samples and retries.
 */

/** Earliest acceptable `at`: a sender using seconds instead of milliseconds lands in 1970. */
const MIN_AT = Date.UTC(2000, 0, 1)

const fieldSchemas = Object.fromEntries(AGENT_FIELDS.map(f => {
  const [lo, hi] = fieldRange(f)
  return [f, z.number().finite().min(lo).max(hi).optional()]
})) as Record<FieldName, z.ZodOptional<z.ZodNumber>>

/**
 * A pushed sample: `at` in Unix ms and known fields only. Unknown keys are refused rather than
 * dropped: a misspelt field silently ignored would leave the model without a signal while
 * everything looks fine. (The passive_* fields are the planner's own and cannot be pushed.)
 */
export const sampleSchema = z.object({
  at: z.number().int().min(MIN_AT, { message: 'must be Unix milliseconds (this is before 2000: seconds?)' }),
  ...fieldSchemas
}).strict()

/**
 * The body around the samples. The samples themselves are checked one by one with
 * `sampleSchema`, so a refusal can name the sample (`samples[3].cpu`) and a batch that is too
 * large is refused on its count before any sample is looked at.
 */
export const pushBodySchema = z.object({
  gateway: z.string().min(1).max(128),
  samples: z.array(z.unknown()).min(1, { message: 'a batch needs at least one sample' })
}).strict()
