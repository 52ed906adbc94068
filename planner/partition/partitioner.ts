/**
 * First-touch placement: where to create a block (or the first block of a volume) that has no
 * history yet. The PlacementModel predicts per-site access shares; the AffinityScorer turns them
 * into a ranked gateway list under capacity and health, exactly as it ranks known blocks, so a
 * new block and an old one with the same traffic land on the same gateway. Without a model (or
 * when the model knows no site) placement falls back to rendezvous hashing, the proxy's default.
 */
import { blockKey } from '../../lib/ids.js'
import { rendezvousNode, rendezvousPick } from '../../lib/rendezvous.js'
import type { AffinityScorer, GatewayInfo } from '../affinity/index.js'
import type { BlockMeta } from './embedder.js'
import type { PlacementModel } from './model.js'

export interface PlacementDecision {
  /** undefined when no gateway is eligible (all unhealthy or full). */
  gateway: string | undefined
  by: 'model' | 'hash'
  /** The predicted per-site shares ({} when hashing). */
  shares: Record<string, number>
  /** Expected access latency at the chosen gateway (null when hashing). */
  costMs: number | null
}

export class Partitioner {
  private model: PlacementModel | null

  constructor (private readonly opts: { scorer: AffinityScorer, model?: PlacementModel | null }) {
    this.model = opts.model ?? null
  }

  /** Swap in a retrained model (placements in flight keep the one they started with). */
  setModel (model: PlacementModel | null): void { this.model = model }
  get current (): PlacementModel | null { return this.model }

  async place (meta: BlockMeta, gateways: readonly GatewayInfo[], opts: { sizeBytes?: number } = {}): Promise<PlacementDecision> {
    const model = this.model
    if (model === null || model.sites.length === 0) return hashPlacement(meta, gateways, opts.sizeBytes ?? 0)
    return this.decide(meta, await model.predict(meta), gateways, opts.sizeBytes ?? 0)
  }

  /** place() for shares already predicted (e.g. by PlacementModel.predictMany). */
  decide (meta: BlockMeta, shares: Record<string, number>, gateways: readonly GatewayInfo[], sizeBytes = 0): PlacementDecision {
    const ranked = this.opts.scorer.preferred(shares, gateways, { sizeBytes, key: blockKey(meta.volume, meta.block) })
    const best = ranked[0]
    return { gateway: best?.gateway, by: 'model', shares, costMs: best?.costMs ?? null }
  }
}

/** Rendezvous hashing over the healthy gateways with room: the baseline placement. */
export function hashPlacement (meta: BlockMeta, gateways: readonly GatewayInfo[], sizeBytes = 0): PlacementDecision {
  const nodes = gateways.map(g => rendezvousNode(g.id))
  const byId = new Map(gateways.map(g => [g.id, g]))
  const gateway = rendezvousPick(blockKey(meta.volume, meta.block), nodes, id => {
    const g = byId.get(id) as GatewayInfo
    return g.healthy && (g.capacityBytes === 0 || g.capacityBytes - g.usedBytes >= sizeBytes)
  })
  return { gateway, by: 'hash', shares: {}, costMs: null }
}
