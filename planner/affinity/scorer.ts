/**
 * The ranking criterion, one block at a time: for a block with decayed per-site scores s(site),
 * a gateway g costs Σ s(site)·lat(site, g.site) / Σ s(site), the mean milliseconds an access
 * would take if g held the block (plus a penalty for poor predicted health). Normalising by Σ s
 * makes costMs a latency (not "access·ms") and is free for ranking, which is why forward-decayed
 * scores (all scaled by one common factor) can be ranked without decaying them first.
 */
import { blockKey } from '../../lib/ids.js'
import { hashString, rendezvousNode, rendezvousScore } from '../../lib/rendezvous.js'
import { badInput, type GatewayInfo } from './gateways.js'
import { PreferenceKernel } from './kernel.js'
import type { LatencyMatrix } from './latency.js'
import { checkSubset, SubsetAccumulator, subsetOf, type Subset } from './subsets.js'

export interface AffinityScorerOptions {
  latency: LatencyMatrix
  /**
   * Milliseconds added to a gateway's cost at healthScore 0, linearly less up to 1 (default 100).
   * A degrading gateway slides down the lists before the health model's trigger fires, so new
   * placements already avoid it; with the default, a same-site gateway (2 ms) loses to a healthy
   * one 60 ms away once its health drops below about 0.4.
   */
  healthPenaltyMs?: number
}

export interface PreferredOptions {
  /** The gateway holding the block now: kept in the list even when it is full. */
  current?: string
  /** The block's size: gateways without this much room are left out (except `current`). */
  sizeBytes?: number
  /** The block key (blockKey(volume, block)): breaks cost ties in rendezvous order, as the proxy would place it. */
  key?: string
}

export interface Preference { gateway: string, costMs: number }

export class AffinityScorer {
  readonly latency: LatencyMatrix
  readonly healthPenaltyMs: number

  constructor (opts: AffinityScorerOptions) {
    this.latency = opts.latency
    this.healthPenaltyMs = opts.healthPenaltyMs ?? 100
    if (!(this.healthPenaltyMs >= 0) || !Number.isFinite(this.healthPenaltyMs)) throw badInput('healthPenaltyMs must be a finite number ≥ 0')
  }

  /**
   * Gateways best first by expected access latency Σ score(site)·lat(site, gw.site) / Σ score
   * (plus the health penalty). Unhealthy gateways are left out; so is a gateway without room for
   * `sizeBytes` unless it is `current` (the block is already there: staying costs no room).
   * Scores that are all zero give every gateway the same latency part; ties go to rendezvous
   * order of `key` (or gateway id order without a key) so cold blocks spread like hashing.
   */
  preferred (scores: Readonly<Record<string, number>>, gateways: readonly GatewayInfo[], opts: PreferredOptions = {}): Preference[] {
    let total = 0
    for (const site in scores) {
      const s = scores[site] as number
      if (s > 0) total += s
    }
    const out: Array<Preference & { tie: number }> = []
    const keyHash = opts.key === undefined ? 0 : hashString(opts.key)
    for (let i = 0; i < gateways.length; i++) {
      const g = gateways[i] as GatewayInfo
      if (!eligible(g, opts.sizeBytes ?? 0, g.id === opts.current)) continue
      let cost = 0
      if (total > 0) {
        for (const site in scores) {
          const s = scores[site] as number
          if (s > 0) cost += s * this.latency.get(site, g.site)
        }
        cost /= total
      }
      cost += this.penalty(g)
      out.push({ gateway: g.id, costMs: cost, tie: opts.key === undefined ? -i : rendezvousScore(keyHash, rendezvousNode(g.id)) })
    }
    out.sort((a, b) => a.costMs - b.costMs || b.tie - a.tie)
    return out.map(p => ({ gateway: p.gateway, costMs: p.costMs }))
  }

  /**
   * Host affinity scores: for each data subset (a volume, or the first `length` characters of
   * the block id), the share of the subset's accesses each gateway should serve. Each block's
   * total score goes to its first preferred gateway; shares are normalised per subset so they
   * sum to 1. A subset whose blocks have all decayed to zero counts each block once instead,
   * so it still has an answer (the one hashing-like tie-breaking gives). Capacity is not
   * consumed block by block: this is where accesses want to go, not a placement.
   * Subsets with no eligible gateway at all are left out.
   */
  hostAffinity (entries: Iterable<{ volume: string, block: string, scores: Readonly<Record<string, number>> }>, gateways: readonly GatewayInfo[], subset: Subset): Map<string, Map<string, number>> {
    checkSubset(subset)
    const acc = new SubsetAccumulator()
    for (const e of entries) {
      const best = this.preferred(e.scores, gateways, { key: blockKey(e.volume, e.block) })[0]
      if (best === undefined) continue
      let total = 0
      for (const site in e.scores) { const s = e.scores[site] as number; if (s > 0) total += s }
      acc.add(subsetOf(e.volume, e.block, subset), best.gateway, total)
    }
    return acc.shares()
  }

  /** The ranking compiled for one set of sites and gateways (see PreferenceKernel). */
  compile (sites: readonly string[], gateways: readonly GatewayInfo[]): PreferenceKernel {
    return new PreferenceKernel(this, sites, gateways)
  }

  penalty (g: GatewayInfo): number {
    const h = g.healthScore
    if (h === undefined) return 0
    return this.healthPenaltyMs * (1 - Math.min(1, Math.max(0, h)))
  }
}

function eligible (g: GatewayInfo, sizeBytes: number, isCurrent: boolean): boolean {
  if (!g.healthy) return false
  if (isCurrent || g.capacityBytes === 0) return true
  return g.capacityBytes - g.usedBytes >= sizeBytes
}
