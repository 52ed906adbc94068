import type { GatewayInfo } from './gateways.js'
import type { AffinityScorer } from './scorer.js'

/**
 * A replica set as reads see it: each read goes to the set's nearest member (proxy/replicas.ts
 * readOrder), so the set costs, per access, the latency from the client's site to the cheapest
 * member (plus that member's health penalty), weighted by the block's decayed scores per site:
 *
 *     setCostMs(S) = Σ_site score(site) · min_{g ∈ S} (latency(site, g.site) + penalty(g)) / Σ score
 *
 * With one member it is the scorer's costMs. Scores that are all zero cost 0 (nothing to gain).
 */
export function setCostMs (scorer: AffinityScorer, scores: Readonly<Record<string, number>>, members: readonly GatewayInfo[]): number {
  let total = 0
  let cost = 0
  for (const site in scores) {
    const s = scores[site] as number
    if (!(s > 0)) continue
    let best = Infinity
    for (const g of members) best = Math.min(best, scorer.latency.get(site, g.site) + scorer.penalty(g))
    total += s
    cost += s * best
  }
  return total > 0 ? cost / total : 0
}

/** The best single change of a set: member `from` gives its place to `to`. */
export interface MemberReplacement {
  from: string
  to: string
  costMs: number
  /** The set's cost after the change. */
  afterMs: number
}

/**
 * Which member of a replica set to replace by which gateway outside it, to cut the set's cost
 * the most (the rebalancer's per-member decision; every copy counts toward capacity, so a target
 * needs room for the block). Only healthy members give their place (an unhealthy one is repair's),
 * only healthy gateways with `sizeBytes` of room take it, and never one on a site another
 * remaining member already covers (failure domains: distinct sites first). Null when no change
 * lowers the cost. Ties go to the later member in the set's order (the head is the preferred
 * reader), then to the earlier gateway in `gateways`.
 */
export function bestReplacement (scorer: AffinityScorer, scores: Readonly<Record<string, number>>, members: readonly GatewayInfo[], gateways: readonly GatewayInfo[], sizeBytes: number): MemberReplacement | null {
  const costMs = setCostMs(scorer, scores, members)
  let best: MemberReplacement | null = null
  for (let i = members.length - 1; i >= 0; i--) {
    const from = members[i] as GatewayInfo
    if (!from.healthy) continue
    const rest = members.filter((_, j) => j !== i)
    for (const to of gateways) {
      if (!to.healthy || members.some(m => m.id === to.id) || rest.some(m => m.site === to.site)) continue
      if (to.capacityBytes > 0 && to.capacityBytes - to.usedBytes < sizeBytes) continue
      const afterMs = setCostMs(scorer, scores, [...rest, to])
      if (afterMs < (best?.afterMs ?? costMs)) best = { from: from.id, to: to.id, costMs, afterMs }
    }
  }
  return best
}
