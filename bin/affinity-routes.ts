import { FerryError } from '../lib/errors.js'
import { isValidId } from '../lib/ids.js'
import type { AdminServer } from '../proxy/admin.js'
import type { Planner } from '../planner/planner.js'
import { decayScores } from '../state/affinity.js'
import type { StateStore } from '../state/types.js'

/** Most affinity entries read for one host-affinity answer: keeps the call bounded on a big fleet. */
const MAX_SCAN = 100_000

/**
 * `GET /v1/affinity?volume=V&block=B`: one block's decayed access scores per site and its
 * gateways ranked by expected access latency (the seed's Data Block ID → preferred gateways).
 * `GET /v1/affinity?volume=V` (or no volume, or `prefix=N`): the host affinity scores — per
 * data subset, the share of its accesses each gateway should serve.
 */
export function registerAffinityRoutes (admin: AdminServer, store: StateStore, planner: Planner, halfLifeMs: number): void {
  admin.route('GET', '/v1/affinity', async ({ query }) => {
    const volume = query.get('volume')
    const block = query.get('block')
    const prefixText = query.get('prefix')
    if (volume !== null && !isValidId(volume)) throw new FerryError('FERRY_BAD_ID', 'volume must be a valid id', 400)
    if (block !== null && (volume === null || !isValidId(block))) throw new FerryError('FERRY_BAD_QUERY', 'block needs a valid volume and block id', 400)
    let prefix: number | undefined
    if (prefixText !== null) {
      prefix = Number(prefixText)
      if (!Number.isInteger(prefix) || prefix < 1 || prefix > 128) throw new FerryError('FERRY_BAD_QUERY', 'prefix must be an integer from 1 to 128', 400)
    }
    const now = Date.now()
    const gateways = planner.fleet.infos(now)
    if (volume !== null && block !== null) {
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
        preferred: planner.scorer.preferred(scores, gateways, { ...(location ? { current: location.gateway } : {}), key: `${volume}/${block}` }),
        storedPreferred: entry.preferred
      }
    }
    const entries: Array<{ volume: string, block: string, scores: Record<string, number> }> = []
    let scanned = 0
    for await (const e of store.scanAffinity()) {
      if (++scanned > MAX_SCAN) break
      if (volume !== null && e.volume !== volume) continue
      entries.push({ volume: e.volume, block: e.block, scores: decayScores(e, now, halfLifeMs) })
    }
    const subset = prefix !== undefined ? { by: 'prefix' as const, length: prefix } : { by: 'volume' as const }
    const shares = planner.scorer.hostAffinity(entries, gateways, subset)
    const out: Record<string, Record<string, number>> = {}
    for (const [key, perGateway] of shares) out[key] = Object.fromEntries(perGateway)
    return { subset: prefix !== undefined ? `prefix:${prefix}` : 'volume', blocks: entries.length, truncated: scanned > MAX_SCAN, hostAffinity: out }
  })
}
