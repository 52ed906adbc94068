import { z } from 'zod'
import { idSchema, parseInput } from '../admin/input.js'
import type { AdminServer } from '../admin/server.js'
import { FerryError } from '../lib/errors.js'
import { blockKey } from '../lib/ids.js'
import type { Planner } from '../planner/planner.js'
import { decayScores } from '../state/affinity.js'
import type { StateStore } from '../state/types.js'

/** Most affinity entries read for one host-affinity answer: keeps the call bounded on a big fleet. */
const MAX_SCAN = 100_000

const affinityQuery = z.object({
  volume: idSchema.optional(),
  block: idSchema.optional(),
  prefix: z.coerce.number().int().min(1).max(128).optional()
}).refine(q => q.block === undefined || q.volume !== undefined, { message: 'block needs a volume', path: ['block'] })

/**
 * `GET /v1/affinity?volume=V&block=B`: one block's decayed access scores per site and its
 * gateways ranked by expected access latency (the seed's Data Block ID → preferred gateways).
 * `GET /v1/affinity?volume=V` (or no volume, or `prefix=N`): the host affinity scores — per
 * data subset, the share of its accesses each gateway should serve.
 */
export function registerAffinityRoutes (admin: AdminServer, store: StateStore, planner: Planner, halfLifeMs: number): void {
  admin.route('GET', '/v1/affinity', async ({ query }) => {
    const { volume, block, prefix } = parseInput(affinityQuery, Object.fromEntries(query), 'query')
    const now = Date.now()
    const gateways = planner.fleet.infos(now)
    if (volume !== undefined && block !== undefined) {
      const entry = await store.getAffinity(volume, block)
      if (entry === null) throw new FerryError('FERRY_NOT_FOUND', `no accesses recorded for ${volume}/${block}`, 404)
      const scores = decayScores(entry, now, halfLifeMs)
      const location = await store.getLocation(volume, block)
      return {
        volume,
        block,
        scores,
        reads: entry.reads,
        writes: entry.writes,
        lastAccess: entry.lastAccess,
        location: location?.gateway ?? null,
        preferred: planner.scorer.preferred(scores, gateways, { ...(location ? { current: location.gateway } : {}), key: blockKey(volume, block) }),
        storedPreferred: entry.preferred
      }
    }
    const entries: Array<{ volume: string, block: string, scores: Record<string, number> }> = []
    let scanned = 0
    for await (const e of store.scanAffinity()) {
      if (++scanned > MAX_SCAN) break
      if (volume !== undefined && e.volume !== volume) continue
      entries.push({ volume: e.volume, block: e.block, scores: decayScores(e, now, halfLifeMs) })
    }
    const subset = prefix !== undefined ? { by: 'prefix' as const, length: prefix } : { by: 'volume' as const }
    const shares = planner.scorer.hostAffinity(entries, gateways, subset)
    const out: Record<string, Record<string, number>> = {}
    for (const [key, perGateway] of shares) out[key] = Object.fromEntries(perGateway)
    return { subset: prefix !== undefined ? `prefix:${prefix}` : 'volume', blocks: entries.length, truncated: scanned > MAX_SCAN, hostAffinity: out }
  })
}
