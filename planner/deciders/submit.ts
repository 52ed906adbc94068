import { blockKey } from '../../lib/ids.js'
import type { LocationCache } from '../../state/cache.js'
import type { MigrationRecord, StateStore } from '../../state/types.js'
import type { MigrationEngine } from '../migration/engine.js'
import { plannerError } from '../migration/errors.js'
import type { Fleet } from '../migration/fleet.js'
import type { Targets } from './targets.js'

/** One block to move, as the per-block deciders (operator moves, drains, evacuations) ask for it. */
export interface BlockMove {
  volume: string
  block: string
  /** Omitted: the block's best gateway by affinity, capacity and predicted health. */
  to?: string | undefined
  /** The member whose copy moves (default the set's head): a drain moves the drained gateway's. */
  from?: string | undefined
  /** Kept in the migration log. */
  reason: string
}

export interface MoveSubmitterOptions {
  store: StateStore
  fleet: Fleet
  engine: MigrationEngine
  locations: LocationCache
  targets: Targets
}

/**
 * The checks every per-block move passes before it is handed to the migration engine, the one
 * executor: not already moving, not mid-cut-over, a target (chosen here when none is given) that
 * is not where the block already is. Refusals are typed (409/404), so a decider that moves many
 * blocks can skip one and go on.
 */
export class MoveSubmitter {
  constructor (private readonly opts: MoveSubmitterOptions) {}

  /**
   * Submits one move, with the block's access score as its priority. `planned` collects the bytes
   * a caller's earlier moves promised to each target (see Targets.best) and is updated.
   */
  async submit (move: BlockMove, planned?: Map<string, number>): Promise<MigrationRecord> {
    const { store, fleet, engine, locations, targets } = this.opts
    const { volume, block } = move
    const key = blockKey(volume, block)
    if (engine.busy(volume, block)) throw plannerError('FERRY_BLOCK_BUSY', `block ${key} is already being moved`, 409)
    const loc = locations.get(volume, block) ?? await store.getLocation(volume, block)
    if (loc !== null && loc.phase !== 'stable') throw plannerError('FERRY_BLOCK_BUSY', `block ${key} is in ${loc.phase} (a migration is being finished)`, 409)
    const current = move.from ?? loc?.gateway ?? fleet.hashed(key) ?? null
    const size = fleet.sizeOf(volume, block) ?? fleet.meanBlockBytes()
    const target = move.to ?? await targets.best(volume, block, current, size, planned, loc?.members ?? [])
    if (target === undefined) throw plannerError('FERRY_NO_TARGET', `no healthy gateway with room to move ${key} to`, 409)
    if (loc !== null && loc !== undefined && loc.gateway === target) throw plannerError('FERRY_MIGRATION_NOOP', `block ${key} is already on ${target}`, 409)
    const rec = await engine.submit({ volume, block, to: target, reason: move.reason, priority: await targets.score(volume, block), ...(move.from === undefined ? {} : { from: move.from }) })
    planned?.set(target, (planned.get(target) ?? 0) + size)
    return rec
  }

  /** A gateway an operator named as a target: configured, up and not draining. */
  checkTarget (id: string): void {
    const { fleet } = this.opts
    if (!fleet.has(id)) throw plannerError('FERRY_UNKNOWN_GATEWAY', `no gateway ${id} is configured`, 404)
    if (fleet.isTarget(id)) return
    const g = fleet.get(id)
    // Why it is down, when the planner's own probes know (a TLS handshake refused reads as such).
    const reporters = fleet.reportedDownBy(id)
    const why = g?.draining === true
      ? 'draining'
      : g?.probe.lastError !== null && g?.probe.lastError !== undefined
        ? `down (its last probe: ${g.probe.lastError})`
        : reporters.length > 0 ? `down (reported down by ${reporters.join(', ')})` : 'down'
    throw plannerError('FERRY_TARGET_UNAVAILABLE', `gateway ${id} is ${why}`, 409)
  }
}
