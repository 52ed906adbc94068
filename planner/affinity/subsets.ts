/**
 * Data subsets for host affinity scores (the seeds' "host affinity score"): a volume, or the
 * first n characters of the block id within a volume, and the per-subset shares of accesses each
 * gateway should serve.
 */
import { badInput } from './gateways.js'

export type Subset = { by: 'volume' } | { by: 'prefix', length: number }

export function checkSubset (subset: Subset): void {
  if (subset.by === 'prefix' && !(Number.isInteger(subset.length) && subset.length > 0)) throw badInput('subset prefix length must be a positive integer')
  if (subset.by !== 'prefix' && subset.by !== 'volume') throw badInput(`unknown subset kind ${JSON.stringify((subset as { by: unknown }).by)}`)
}

/** The subset a block belongs to: its volume, or `volume/` + the block id's first n characters. */
export function subsetOf (volume: string, block: string, subset: Subset): string {
  return subset.by === 'volume' ? volume : volume + '/' + block.slice(0, subset.length)
}

export class SubsetAccumulator {
  // subset → gateway → [score, blocks]
  private readonly m = new Map<string, Map<string, [number, number]>>()

  add (subset: string, gateway: string, score: number): void {
    let row = this.m.get(subset)
    if (row === undefined) this.m.set(subset, row = new Map())
    const cell = row.get(gateway)
    if (cell === undefined) row.set(gateway, [score, 1])
    else { cell[0] += score; cell[1]++ }
  }

  shares (): Map<string, Map<string, number>> {
    const out = new Map<string, Map<string, number>>()
    for (const [subset, row] of this.m) {
      let score = 0
      let blocks = 0
      for (const [s, n] of row.values()) { score += s; blocks += n }
      const useScore = score > 0
      const shares = new Map<string, number>()
      for (const [gw, [s, n]] of row) shares.set(gw, useScore ? s / score : n / blocks)
      out.set(subset, shares)
    }
    return out
  }
}
