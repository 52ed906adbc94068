import { Gauge, type Registry } from 'prom-client'
import { z } from 'zod'
import { idSchema, parseInput } from '../admin/input.js'
import type { AdminServer } from '../admin/server.js'
import { FerryError } from '../lib/errors.js'
import type { AccessProfiler } from '../planner/profiler.js'

const profileQuery = z.object({
  volume: idSchema.optional(),
  block: idSchema.optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(20)
}).refine(q => q.block === undefined || q.volume !== undefined, { message: 'block needs a volume', path: ['block'] })

/** `GET /v1/profile` (the access pattern profiler) and its metrics. */
export function registerProfileRoutes (admin: AdminServer, profiler: AccessProfiler, registry: Registry): void {
  admin.route('GET', '/v1/profile', ({ query }) => {
    const { volume, block, limit } = parseInput(profileQuery, Object.fromEntries(query), 'query')
    if (volume !== undefined && block !== undefined) {
      const p = profiler.block(volume, block)
      if (p === undefined) throw new FerryError('FERRY_NOT_FOUND', `no accesses recorded for ${volume}/${block}`, 404)
      return p
    }
    if (volume !== undefined) {
      const v = profiler.volume(volume)
      if (v === undefined) throw new FerryError('FERRY_NOT_FOUND', `no accesses recorded for volume ${volume}`, 404)
      return { volume: v, blocks: profiler.topBlocks(limit, { volume }) }
    }
    return {
      records: profiler.records,
      trackedVolumes: profiler.trackedVolumes,
      trackedBlocks: profiler.trackedBlocks,
      volumes: profiler.topVolumes(limit),
      blocks: profiler.topBlocks(limit)
    }
  })
  const registers = [registry]
  new Gauge({ name: 'ferry_profile_records', help: 'Accesses summarised by the profiler', registers, collect () { this.set(profiler.records) } })
  new Gauge({ name: 'ferry_profile_tracked_blocks', help: 'Blocks tracked by the profiler', registers, collect () { this.set(profiler.trackedBlocks) } })
  new Gauge({ name: 'ferry_profile_tracked_volumes', help: 'Volumes tracked by the profiler', registers, collect () { this.set(profiler.trackedVolumes) } })
  new Gauge({
    name: 'ferry_profile_locality',
    help: 'Share of accesses served at the client\'s own site, per hottest volume',
    labelNames: ['volume'],
    registers,
    collect () {
      this.reset()
      for (const v of profiler.topVolumes(20)) if (v.locality !== null) this.set({ volume: v.volume }, v.locality)
    }
  })
}
