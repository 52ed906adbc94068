import { blockKey } from '../../lib/ids.js'
import { decayScores } from '../../state/affinity.js'
import type { StateStore } from '../../state/types.js'
import type { AffinityScorer } from '../affinity/index.js'
import type { Fleet } from '../migration/fleet.js'

export interface TargetsOptions {
  store: StateStore
  fleet: Fleet
  /** The planner's scorer (replaced on a config reload). */
  scorer: () => AffinityScorer
  /** The store's affinity half-life (state.affinity.halfLifeMs): scores are decayed with it. */
  halfLifeMs: () => number
}

/**
 * Target choice for one block, by the ranking the rebalancer uses for every block: the deciders
 * that move blocks one at a time (operator moves without a `to`, drains, evacuations) ask here
 * where a block should go, and how hot it is (its migration priority).
 */
export class Targets {
  constructor (private readonly opts: TargetsOptions) {}

  /**
   * The best gateway other than `current` for one block. `planned` adds bytes already promised
   * to gateways by the caller's earlier choices, so a drain does not pour everything onto one
   * gateway past its capacity. `members`: the block's other members, which hold a copy already
   * (never a target) and whose sites the choice avoids where it can (failure domains: distinct
   * sites first, then distinct gateways).
   */
  async best (volume: string, block: string, current: string | null, sizeBytes: number, planned?: ReadonlyMap<string, number>, members: readonly string[] = []): Promise<string | undefined> {
    const now = Date.now()
    const entry = await this.opts.store.getAffinity(volume, block)
    const scores = entry === null ? {} : decayScores(entry, now, this.opts.halfLifeMs())
    const { fleet } = this.opts
    const infos = fleet.infos(now).map(g => ({ ...g, usedBytes: g.usedBytes + (planned?.get(g.id) ?? 0) }))
    const prefs = this.opts.scorer().preferred(scores, infos, { ...(current === null ? {} : { current }), sizeBytes, key: blockKey(volume, block) })
    const eligible = prefs.filter(p => p.gateway !== current && !members.includes(p.gateway))
    const taken = new Set(members.filter(m => m !== current).map(m => fleet.get(m)?.site))
    return (eligible.find(p => !taken.has(fleet.get(p.gateway)?.site)) ?? eligible[0])?.gateway
  }

  /** The block's decayed access score now (0 when it is not in the affinity map): its migration priority. */
  async score (volume: string, block: string): Promise<number> {
    const entry = await this.opts.store.getAffinity(volume, block)
    if (entry === null) return 0
    let total = 0
    for (const s of Object.values(decayScores(entry, Date.now(), this.opts.halfLifeMs()))) total += s
    return total
  }
}
