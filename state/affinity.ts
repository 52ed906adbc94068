import { decayFactor } from '../lib/forward-decay.js'
import { blockKey, isValidId } from '../lib/ids.js'
import { invalid } from './errors.js'
import { checkCount, checkId, checkTime } from './keys.js'
import type { AccessDelta, AffinityEntry } from './types.js'

/**
 * Exponential decay of access scores, shared by the memory backend and mirrored line for line by
 * the `ferry_merge_access` Lua script (redis/scripts.ts).
 *
 * An entry holds per-site scores "as of" one time `scoredAt`. Merging a delta of weight w
 * recorded at time t:
 *   - t >= scoredAt: decay every stored score to t (× 2^-((t - scoredAt)/H)), add w, scoredAt = t;
 *   - t <  scoredAt: add w × 2^-((scoredAt - t)/H) (the delta is decayed instead).
 * Either way the result is Σ wᵢ·2^-((scoredAt - tᵢ)/H): independent of the order in which
 * proxies' batches arrive, so two proxies flushing concurrently give the same merged view as one
 * proxy seeing all accesses. Timestamps are the proxies' own clocks; a skew of s ms changes a
 * weight by 2^(s/H), negligible for the minutes-long half-lives this is used with.
 *
 * Scores that decay below SCORE_FLOOR are dropped so a block's hash stays as small as the set of
 * sites still using it.
 */

export const SCORE_FLOOR = 1e-6

export { decayFactor }

/** The entry's scores decayed to `now` (scores are stored as of `scoredAt`). */
export function decayScores (entry: Pick<AffinityEntry, 'scores' | 'scoredAt'>, now: number, halfLifeMs: number): Record<string, number> {
  const f = now > entry.scoredAt ? decayFactor(now - entry.scoredAt, halfLifeMs) : 1
  const out: Record<string, number> = {}
  for (const [site, s] of Object.entries(entry.scores)) out[site] = s * f
  return out
}

export interface MergeState {
  scores: Record<string, number>
  scoredAt: number
}

/** In-place merge of one block's site weights recorded at `at` (see the module comment). */
export function mergeScores (state: MergeState, weights: ReadonlyMap<string, number>, at: number, halfLifeMs: number): void {
  if (at >= state.scoredAt) {
    const f = decayFactor(at - state.scoredAt, halfLifeMs)
    for (const site of Object.keys(state.scores)) {
      const s = state.scores[site]! * f
      if (s < SCORE_FLOOR && !weights.has(site)) delete state.scores[site]
      else state.scores[site] = s
    }
    for (const [site, w] of weights) state.scores[site] = (state.scores[site] ?? 0) + w
    state.scoredAt = at
  } else {
    const f = decayFactor(state.scoredAt - at, halfLifeMs)
    for (const [site, w] of weights) state.scores[site] = (state.scores[site] ?? 0) + w * f
  }
}

/** Deltas of one block, combined: what one script call (or one memory update) applies. */
export interface BlockDelta {
  volume: string
  block: string
  reads: number
  writes: number
  /** Latest `lastAccessMs` of the group; the merge time. */
  at: number
  /** site → weight, each already decayed to `at` when the group spans several timestamps. */
  weights: Map<string, number>
}

/**
 * Validates a batch and groups it per block, so each block costs one script call however many
 * sites touched it. Within a group, deltas are decayed to the group's latest time first, which
 * keeps the merge exact.
 */
export function groupDeltas (deltas: readonly AccessDelta[], halfLifeMs: number): BlockDelta[] {
  const groups = new Map<string, BlockDelta>()
  for (const d of deltas) {
    checkId('volume', d.volume)
    checkId('block', d.block)
    // '' collects clients in no configured site (the proxy's recorder does the same).
    if (typeof d.site !== 'string' || (d.site !== '' && !isValidId(d.site))) throw invalid(`invalid site id: ${JSON.stringify(d.site)}`)
    checkCount('reads', d.reads)
    checkCount('writes', d.writes)
    checkTime('lastAccessMs', d.lastAccessMs)
    const weight = d.weight === undefined ? d.reads + d.writes : checkCount('weight', d.weight)
    const key = blockKey(d.volume, d.block)
    let g = groups.get(key)
    if (!g) groups.set(key, g = { volume: d.volume, block: d.block, reads: 0, writes: 0, at: d.lastAccessMs, weights: new Map() })
    g.reads += d.reads
    g.writes += d.writes
    if (d.lastAccessMs > g.at) {
      const f = decayFactor(d.lastAccessMs - g.at, halfLifeMs)
      for (const [site, w] of g.weights) g.weights.set(site, w * f)
      g.at = d.lastAccessMs
      g.weights.set(d.site, (g.weights.get(d.site) ?? 0) + weight)
    } else {
      g.weights.set(d.site, (g.weights.get(d.site) ?? 0) + weight * decayFactor(g.at - d.lastAccessMs, halfLifeMs))
    }
  }
  return [...groups.values()]
}
