import { z } from 'zod'
import { FerryError } from '../lib/errors.js'
import { idParam, idSchema, parseInput, type InputOptions } from '../admin/input.js'
import type { AdminServer } from '../admin/server.js'
import type { HealthMonitor } from './health-monitor.js'
import { plannerError } from './migration/errors.js'
import type { Planner } from './planner.js'

/** The planner's refusals keep the code its API documented before admin/ had one for all. */
const planner400: InputOptions = { code: 'FERRY_PLANNER_BAD_REQUEST' }

const moveBody = z.object({
  volume: idSchema.describe('the volume to move (all its known blocks, unless block is given)'),
  block: idSchema.optional().describe('one block of the volume'),
  to: idSchema.optional().describe('target gateway; omitted: each block\'s best gateway by affinity'),
  reason: z.string().max(100).regex(/^[\x20-\x7e]*$/).optional().describe('kept in the migration log (default "operator")')
}).strict()

const drainBody = z.object({
  to: idSchema.optional().describe('move everything to this gateway; omitted: each block to its best gateway')
}).strict()

const listQuery = z.object({
  active: z.enum(['true', 'false']).optional(),
  limit: z.coerce.number().int().positive().max(100_000).optional()
}).strict()

const planQuery = z.object({
  limit: z.coerce.number().int().positive().max(10_000).optional().describe('candidates listed (default 100); the counts cover all')
}).strict()

const placementModelBody = z.object({
  path: z.string().min(1).max(4096).describe('a `ferry train-placement` model file on the planner\'s host')
}).strict()

const decisionsQuery = z.object({
  gateway: z.string().optional(),
  limit: z.coerce.number().int().positive().optional()
})

/**
 * The planner's part of the admin API: its operator routes, the health monitor's routes and
 * the readiness check; called by bin/ for a process with the planner role. Reads work on every
 * planner (the log and the history are in the store); moves and drains need the leader (a
 * standby answers 503 FERRY_PLANNER_NOT_LEADER naming its own holder id) and, unless
 * `planner.admin.requireToken` is off, the admin bearer token.
 */
export function registerPlannerAdmin (admin: AdminServer, planner: Planner): void {
  const auth = { auth: planner.plannerConfig.admin.requireToken }

  admin.addReadinessCheck('planner', () => {
    const st = planner.locations.loaded ? undefined : 'block locations not loaded yet'
    if (st !== undefined) return { degraded: st }
    return undefined
  })

  admin.route('GET', '/v1/planner', () => planner.status())

  // The partitioning engine (planner/partition/live.ts). Retraining and loading act for the
  // whole fleet (the leader publishes the table), so they need the leader.
  admin.route('GET', '/v1/placement', () => planner.placement.status())
  admin.route('POST', '/v1/placement/retrain', async () => {
    requireLeader(planner)
    return await planner.placement.retrain('operator')
  }, auth)
  admin.route('POST', '/v1/placement/model', async ({ body }) => {
    const req = parseInput(placementModelBody, body ?? {}, 'body', planner400)
    requireLeader(planner)
    return await planner.placement.loadModelFile(req.path)
  }, auth)

  admin.route('GET', '/v1/migrations', async ({ query }) => {
    const q = parseInput(listQuery, Object.fromEntries(query), 'query', planner400)
    return { migrations: await planner.engine.list({ ...(q.active === 'true' ? { active: true } : {}), ...(q.limit === undefined ? {} : { limit: q.limit }) }) }
  })

  // Replica set repairs: the decider's view (under-replicated blocks, gateways down) and the
  // repairs the engine ran, which are migrations whose reason starts with `repair`.
  admin.route('GET', '/v1/repairs', async () => {
    const migrations = await planner.engine.list({ limit: 1000 })
    return { ...planner.repair.view(), repairs: migrations.filter(m => m.reason?.startsWith('repair') === true).slice(0, 100) }
  })

  admin.route('GET', '/v1/migrations/:id', async ({ params }) => planner.engine.get(idParam(params, 'id', planner400)))

  admin.route('POST', '/v1/migrations', async ({ body }) => {
    const req = parseInput(moveBody, body ?? {}, 'body', planner400)
    return await planner.move(req)
  }, auth)

  admin.route('DELETE', '/v1/migrations/:id', async ({ params }) => planner.engine.cancel(idParam(params, 'id', planner400)), auth)

  admin.route('GET', '/v1/blocks/:volume/:block/history', async ({ params }) => {
    const volume = idParam(params, 'volume', planner400)
    const block = idParam(params, 'block', planner400)
    const [location, history] = await Promise.all([planner.store.getLocation(volume, block), planner.store.blockHistory(volume, block)])
    if (location === null && history.length === 0) throw plannerError('FERRY_BLOCK_NOT_FOUND', `block ${volume}/${block} has no location and no history`, 404)
    return { volume, block, location, history }
  })

  admin.route('GET', '/v1/drains', () => ({ drains: planner.listDrains() }))

  admin.route('GET', '/v1/gateways/:id/drain', ({ params }) => {
    const gw = idParam(params, 'id', planner400)
    const d = planner.drainStatus(gw)
    if (d === undefined) throw plannerError('FERRY_NOT_DRAINING', `gateway ${gw} is not being drained`, 404)
    return d
  })

  admin.route('POST', '/v1/gateways/:id/drain', async ({ params, body }) => {
    const gw = idParam(params, 'id', planner400)
    const req = parseInput(drainBody, body ?? {}, 'body', planner400)
    return await planner.drain(gw, req.to)
  }, auth)

  admin.route('DELETE', '/v1/gateways/:id/drain', async ({ params }) => {
    const gw = idParam(params, 'id', planner400)
    return { gateway: gw, wasDraining: await planner.undrain(gw) }
  }, auth)

  // The kill switch (PD's halt-scheduling): nothing new moves, what runs finishes.
  const movement = (): Record<string, unknown> => ({ paused: planner.engine.isPaused, queued: planner.engine.queued, running: planner.engine.inFlight })
  // Kept in the store: the leader (this planner or another) and any later leader honour it.
  admin.route('POST', '/v1/planner/pause', async () => { await planner.movement.set(true); return movement() }, auth)
  admin.route('POST', '/v1/planner/resume', async () => { await planner.movement.set(false); return movement() }, auth)

  admin.route('GET', '/v1/rebalancer', () => ({ enabled: planner.plannerConfig.rebalancer.enabled, rounds: planner.rebalancer.rounds }))

  // The dry run (ceph balancer eval, PD's operator check): what the planner would do next, read-only.
  admin.route('GET', '/v1/plan', async ({ query }) => {
    const q = parseInput(planQuery, Object.fromEntries(query), 'query', planner400)
    const [plan, active] = await Promise.all([planner.rebalancer.plan(q.limit ?? 100), planner.engine.list({ active: true, limit: 1000 })])
    const leader = planner.engine.isActive
    const paused = planner.engine.isPaused
    const { gateways: _, ...repair } = planner.repair.view()
    return {
      at: plan.at,
      leader,
      holder: planner.leader.holder,
      paused,
      queue: { queued: planner.engine.queued, running: planner.engine.inFlight },
      // A round runs only on the leader, with data movement on and the rebalancer enabled.
      rebalancer: { ...plan, wouldRun: leader && !paused && plan.enabled },
      drains: planner.listDrains(),
      repairs: { ...repair, pending: active.filter(m => m.reason?.startsWith('repair') === true) },
      migrations: active.filter(m => m.reason?.startsWith('repair') !== true)
    }
  })

  registerHealthRoutes(admin, planner.health)
}

/** `GET /v1/health`, `/v1/health/decisions`, `/v1/health/:gateway`, and the fields on `/v1/gateways`. */
function registerHealthRoutes (admin: AdminServer, health: HealthMonitor): void {
  admin.route('GET', '/v1/health', () => health.status())
  admin.route('GET', '/v1/health/decisions', ({ query }) => {
    const { gateway, limit } = parseInput(decisionsQuery, Object.fromEntries(query), 'query', { code: 'FERRY_HEALTH_BAD_QUERY' })
    return { decisions: health.decisions({ ...(gateway === undefined ? {} : { gateway }), ...(limit === undefined ? {} : { limit }) }) }
  })
  admin.route('GET', '/v1/health/:gateway', ({ params }) => {
    const gw = params.gateway ?? ''
    if (!health.knows(gw)) throw new FerryError('FERRY_HEALTH_UNKNOWN_GATEWAY', `no gateway ${JSON.stringify(gw)} is configured`, 404)
    return { ...health.gateway(gw), threshold: health.threshold, history: health.history(gw) }
  })
  admin.addGatewayInfo(id => health.gatewayFields(id))
}

function requireLeader (planner: Planner): void {
  if (!planner.engine.isActive) throw plannerError('FERRY_PLANNER_NOT_LEADER', 'this planner is not the leader', 503, { holder: planner.leader.holder })
}
