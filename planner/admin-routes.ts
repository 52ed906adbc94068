import { z } from 'zod'
import { isValidId } from '../lib/ids.js'
import type { AdminServer } from '../proxy/admin.js'
import { BLOCK_NOT_FOUND, NOT_DRAINING, PLANNER_BAD_REQUEST, plannerError } from './migration/errors.js'
import type { Planner } from './planner.js'

const id = z.string().refine(isValidId, 'must be 1-128 letters, digits, ".", "_" or "-", not starting with "."')

const moveBody = z.object({
  volume: id.describe('the volume to move (all its known blocks, unless block is given)'),
  block: id.optional().describe('one block of the volume'),
  to: id.optional().describe('target gateway; omitted: each block\'s best gateway by affinity'),
  reason: z.string().max(100).regex(/^[\x20-\x7e]*$/).optional().describe('kept in the migration log (default "operator")')
}).strict()

const drainBody = z.object({
  to: id.optional().describe('move everything to this gateway; omitted: each block to its best gateway')
}).strict()

const listQuery = z.object({
  active: z.enum(['true', 'false']).optional(),
  limit: z.coerce.number().int().positive().max(100_000).optional()
}).strict()

function parse<T> (schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const issues = r.error.issues.map(i => ({ path: i.path.join('.') || '(root)', message: i.message }))
  throw plannerError(PLANNER_BAD_REQUEST, `invalid ${what}: ${issues.map(i => `${i.path}: ${i.message}`).join('; ')}`, 400, { issues })
}

function param (params: Record<string, string>, name: string): string {
  const v = params[name] ?? ''
  if (!isValidId(v)) throw plannerError(PLANNER_BAD_REQUEST, `${name} must be a valid id`, 400)
  return v
}

/**
 * The planner's part of the admin API. Reads work on every planner (the log and the history are
 * in the store); moves and drains need the leader (a standby answers 503
 * FERRY_PLANNER_NOT_LEADER naming its own holder id) and, unless `planner.admin.requireToken` is
 * off, the admin bearer token.
 */
export function registerPlannerAdmin (admin: AdminServer, planner: Planner, opts: { requireToken: boolean }): void {
  const auth = { auth: opts.requireToken }

  admin.addReadinessCheck('planner', () => {
    const st = planner.locations.loaded ? undefined : 'block locations not loaded yet'
    if (st !== undefined) return { degraded: st }
    return undefined
  })

  admin.route('GET', '/v1/planner', () => planner.status())

  admin.route('GET', '/v1/migrations', async ({ query }) => {
    const q = parse(listQuery, Object.fromEntries(query), 'query')
    return { migrations: await planner.engine.list({ ...(q.active === 'true' ? { active: true } : {}), ...(q.limit === undefined ? {} : { limit: q.limit }) }) }
  })

  admin.route('GET', '/v1/migrations/:id', async ({ params }) => planner.engine.get(param(params, 'id')))

  admin.route('POST', '/v1/migrations', async ({ body }) => {
    const req = parse(moveBody, body ?? {}, 'body')
    return await planner.move(req)
  }, auth)

  admin.route('DELETE', '/v1/migrations/:id', async ({ params }) => planner.engine.cancel(param(params, 'id')), auth)

  admin.route('GET', '/v1/blocks/:volume/:block/history', async ({ params }) => {
    const volume = param(params, 'volume')
    const block = param(params, 'block')
    const [location, history] = await Promise.all([planner.store.getLocation(volume, block), planner.store.blockHistory(volume, block)])
    if (location === null && history.length === 0) throw plannerError(BLOCK_NOT_FOUND, `block ${volume}/${block} has no location and no history`, 404)
    return { volume, block, location, history }
  })

  admin.route('GET', '/v1/drains', () => ({ drains: planner.listDrains() }))

  admin.route('GET', '/v1/gateways/:id/drain', ({ params }) => {
    const gw = param(params, 'id')
    const d = planner.drainStatus(gw)
    if (d === undefined) throw plannerError(NOT_DRAINING, `gateway ${gw} is not being drained`, 404)
    return d
  })

  admin.route('POST', '/v1/gateways/:id/drain', async ({ params, body }) => {
    const gw = param(params, 'id')
    const req = parse(drainBody, body ?? {}, 'body')
    return await planner.drain(gw, req.to)
  }, auth)

  admin.route('DELETE', '/v1/gateways/:id/drain', ({ params }) => {
    const gw = param(params, 'id')
    return { gateway: gw, wasDraining: planner.undrain(gw) }
  }, auth)

  admin.route('GET', '/v1/rebalancer', () => ({ enabled: planner.plannerConfig.rebalancer.enabled, rounds: planner.rebalancer.rounds }))
}
