import { z } from 'zod'
import type { FerryErrorCode } from '../lib/error-codes.js'
import { FerryError } from '../lib/errors.js'
import { isValidId } from '../lib/ids.js'

/** A volume, block, gateway or migration id as it may appear in an admin path or body. */
export const idSchema = z.string().refine(isValidId, 'must be 1-128 letters, digits, ".", "_" or "-", not starting with "."')

export interface InputOptions {
  /**
   * The code of the 400: FERRY_BAD_REQUEST, unless the route documented its own before that
   * existed (FERRY_PLANNER_BAD_REQUEST, FERRY_HEALTH_BAD_QUERY, FERRY_TELEMETRY_INVALID), which
   * it keeps so that clients matching on it keep working.
   */
  code?: FerryErrorCode
  /** Where `value` sits in the whole input, for the message: `['samples', 3]` → `samples[3].cpu`. */
  at?: ReadonlyArray<string | number>
  /** The label of an issue with the whole input (`body: Expected object…`); none by default. */
  root?: string
}

/**
 * Validates one input of an admin call against `schema` and returns the parsed value, or throws
 * a 400 naming up to three offending fields (`invalid body: samples[3].cpu: Number must be…`),
 * with every issue in `details.issues`. Query strings go in as `Object.fromEntries(query)`.
 * One rule for every route, so a client reads every refusal the same way.
 */
export function parseInput<T> (schema: z.ZodType<T, z.ZodTypeDef, unknown>, value: unknown, what: string, opts: InputOptions = {}): T {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const issues = r.error.issues.map(i => ({ path: pathText([...(opts.at ?? []), ...i.path]) || (opts.root ?? ''), message: i.message }))
  const shown = issues.slice(0, 3).map(i => i.path === '' ? i.message : `${i.path}: ${i.message}`)
  const more = issues.length > 3 ? ` (and ${issues.length - 3} more)` : ''
  throw new FerryError(opts.code ?? 'FERRY_BAD_REQUEST', `invalid ${what}: ${shown.join('; ')}${more}`, 400, { issues })
}

/** The path parameter `name` (from a `/v1/things/:name` route), which must be a valid id. */
export function idParam (params: Record<string, string>, name: string, opts: InputOptions = {}): string {
  return parseInput(idSchema, params[name] ?? '', name, opts)
}

function pathText (path: ReadonlyArray<string | number>): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`
  return out
}
