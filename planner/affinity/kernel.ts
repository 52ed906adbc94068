import { rendezvousNode, rendezvousScore, type RendezvousNode } from '../../lib/rendezvous.js'
import { badInput, type GatewayInfo } from './gateways.js'
import type { LatencyMatrix } from './latency.js'

/** What the kernel compiles from a scorer: the latency model and the health penalty. */
export interface KernelCosts {
  readonly latency: LatencyMatrix
  penalty (g: GatewayInfo): number
}

/** No gateway: an empty slot in a preferred list. */
export const NO_GATEWAY = 255

/**
 * AffinityScorer's ranking for a fixed list of sites (score slots) and gateways, as dense
 * arrays: latency[site × G + gateway], penalties and room per gateway. `rank()` reads a block's
 * scores straight from a column of an AffinityTable and writes gateway indices, so recomputing
 * a million preferred lists allocates nothing. Build a new kernel when gateways, their health or
 * their usage change (it is a snapshot of them).
 */
export class PreferenceKernel {
  readonly sites: readonly string[]
  readonly gateways: readonly GatewayInfo[]
  private readonly nodes: RendezvousNode[]
  private readonly lat: Float64Array
  private readonly penalty: Float64Array
  private readonly room: Float64Array
  private readonly healthy: Uint8Array
  private readonly cost: Float64Array
  private readonly order: Uint8Array

  constructor (scorer: KernelCosts, sites: readonly string[], gateways: readonly GatewayInfo[]) {
    if (gateways.length >= NO_GATEWAY) throw badInput(`at most ${NO_GATEWAY - 1} gateways per kernel, got ${gateways.length}`)
    this.sites = [...sites]
    this.gateways = gateways.map(g => ({ ...g }))
    const G = gateways.length
    this.nodes = gateways.map(g => rendezvousNode(g.id))
    this.lat = new Float64Array(sites.length * G)
    for (let s = 0; s < sites.length; s++) {
      for (let g = 0; g < G; g++) this.lat[s * G + g] = scorer.latency.get(sites[s] as string, (gateways[g] as GatewayInfo).site)
    }
    this.penalty = Float64Array.from(gateways, g => scorer.penalty(g))
    this.room = Float64Array.from(gateways, g => g.capacityBytes === 0 ? Infinity : g.capacityBytes - g.usedBytes)
    this.healthy = Uint8Array.from(gateways, g => g.healthy ? 1 : 0)
    this.cost = new Float64Array(G)
    this.order = new Uint8Array(G)
  }

  /** Index of a gateway id, or -1. */
  indexOf (id: string): number {
    for (let i = 0; i < this.gateways.length; i++) if ((this.gateways[i] as GatewayInfo).id === id) return i
    return -1
  }

  /** Free room of gateway `g` in the snapshot (Infinity when unlimited). */
  roomOf (g: number): number { return this.room[g] as number }

  isHealthy (g: number): boolean { return this.healthy[g] === 1 }

  /**
   * Ranks the eligible gateways for a block whose per-site scores are
   * `scores[offset .. offset + sites.length)` (any common scale). Writes gateway indices best
   * first into `out[outOffset ..]`, fills the rest of the G slots with NO_GATEWAY and returns how
   * many are eligible. `current` is a gateway index or NO_GATEWAY; `keyHash` is
   * hashString(blockKey) for rendezvous tie-breaking (only computed on ties, i.e. cold blocks).
   */
  rank (scores: ArrayLike<number>, offset: number, out: Uint8Array, outOffset: number, sizeBytes = 0, current = NO_GATEWAY, keyHash = 0): number {
    const G = this.gateways.length
    const S = this.sites.length
    const cost = this.cost
    const order = this.order
    let total = 0
    for (let s = 0; s < S; s++) { const v = scores[offset + s] as number; if (v > 0) total += v }
    let n = 0
    for (let g = 0; g < G; g++) {
      if (this.healthy[g] === 0) continue
      if (g !== current && (this.room[g] as number) < sizeBytes) continue
      let c = 0
      if (total > 0) {
        for (let s = 0; s < S; s++) {
          const v = scores[offset + s] as number
          if (v > 0) c += v * (this.lat[s * G + g] as number)
        }
        c /= total
      }
      c += this.penalty[g] as number
      // Insertion sort: G is a handful of gateways, and this keeps the loop allocation-free.
      let i = n++
      while (i > 0 && this.before(c, g, cost[order[i - 1] as number] as number, order[i - 1] as number, keyHash)) {
        order[i] = order[i - 1] as number
        i--
      }
      order[i] = g
      cost[g] = c
    }
    for (let i = 0; i < G; i++) out[outOffset + i] = i < n ? order[i] as number : NO_GATEWAY
    return n
  }

  /** Expected latency (ms) of serving the block from gateway index `g` (no eligibility check). */
  costOf (scores: ArrayLike<number>, offset: number, g: number): number {
    const G = this.gateways.length
    const S = this.sites.length
    let total = 0
    let c = 0
    for (let s = 0; s < S; s++) {
      const v = scores[offset + s] as number
      if (v > 0) { total += v; c += v * (this.lat[s * G + g] as number) }
    }
    return (total > 0 ? c / total : 0) + (this.penalty[g] as number)
  }

  private before (c: number, g: number, c2: number, g2: number, keyHash: number): boolean {
    if (c !== c2) return c < c2
    return rendezvousScore(keyHash, this.nodes[g] as RendezvousNode) > rendezvousScore(keyHash, this.nodes[g2] as RendezvousNode)
  }
}
