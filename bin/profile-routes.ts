import { Gauge, type Registry } from 'prom-client'
import { FerryError } from '../lib/errors.js'
import { isValidId } from '../lib/ids.js'
import type { AdminServer } from '../proxy/admin.js'
import type { AccessProfiler } from '../planner/profiler.js'

/** `GET /v1/profile` (the access pattern profiler) and its metrics. */
export function registerProfileRoutes (admin: AdminServer, profiler: AccessProfiler, registry: Registry): void {
  admin.route('GET', '/v1/profile', ({ query }) => {
    const volume = query.get('volume')
    const block = query.get('block')
    const limitText = query.get('limit') ?? '20'
    const limit = Number(limitText)
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new FerryError('FERRY_BAD_QUERY', 'limit must be an integer from 1 to 10000', 400)
    if (volume !== null && !isValidId(volume)) throw new FerryError('FERRY_BAD_ID', 'volume must be a valid id', 400)
    if (block !== null) {
      if (volume === null || !isValidId(block)) throw new FerryError('FERRY_BAD_QUERY', 'block needs a valid volume and block id', 400)
      const p = profiler.block(volume, block)
      if (p === undefined) throw new FerryError('FERRY_NOT_FOUND', `no accesses recorded for ${volume}/${block}`, 404)
      return p
    }
    if (volume !== null) {
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
