/**
 * The rebalancer's predictive signal: where a block's next access will come from before its own
 * history can say so (issue 21, "predict, not only follow").
 *
 * Reading is co-access by volume: a client opens a directory, a VM boots from a disk image, a job
 * reads a data set. When a site starts reading a volume, the volume's blocks it has not touched
 * yet are its next reads, and their own scores still point at whoever read them last. This signal
 * watches each volume's *recent* readers per site and hands the rebalancer a per-volume prior (the
 * AffinityTable's `setVolumePrior`, pseudo-count `priorWeight` κ): a block with its own traffic
 * keeps following it, a cold block of a volume being read follows the volume's readers — before
 * its first access from them.
 *
 * It needs nothing beyond what the rebalancer already scans: each block's decayed per-site scores
 * (the store's affinity map, which the proxies' access deltas feed). A volume's scores are linear
 * in its accesses, so the accesses of the last interval per site are
 * `Σ_blocks score_now − 2^(−Δ/H) · Σ_blocks score_before` (clamped at 0: an evicted or deleted
 * block looks like negative traffic); per volume and site, that is kept as a forward-decayed
 * activity with its own short half-life. Memory: two small vectors per volume, none per block.
 *
 * Where a volume has no recent activity the prior is the base prior (the placement model's
 * expected site mix, `setBase`), else none.
 */
import { FerryError } from '../lib/errors.js'
import { decayFactor } from '../lib/forward-decay.js'
import type { AffinityTable } from './affinity/index.js'

export interface PredictionOptions {
  /** Configured site names. */
  sites: readonly string[]
  /** Half-life of the scores that are observed (the affinity map's, state.affinity.halfLifeMs). */
  halfLifeMs: number
  /** Half-life of a volume's recent activity: how long a site's reading of a volume keeps pulling its blocks. */
  activityHalfLifeMs: number
  /**
   * Recent accesses at which a volume's readers weigh as much as the base prior (the blend's
   * weight is a / (a + activityScale)). Without a base prior any activity is the prior.
   */
  activityScale: number
  /** Volumes with less recent activity than this (accesses, default MIN_ACTIVITY) have no activity prior. */
  minActivity?: number
}

/** Half an access: one read a minute or two ago still counts, a few decayed crumbs do not. */
export const MIN_ACTIVITY = 0.5

interface VolumeState {
  /** Σ of the volume's block scores per site, decayed to the last round, before this round. */
  prev: Float64Array
  /** Σ being accumulated this round. */
  cur: Float64Array
  /** Forward-decayed accesses per site since the volume became known, as of `lastRound`. */
  activity: Float64Array
  /** Round in which `cur` was last touched (volumes not observed this round had no blocks). */
  seen: number
}

export class VolumeCoAccess {
  private readonly sites: readonly string[]
  private readonly slot = new Map<string, number>()
  private readonly opts: PredictionOptions
  private readonly minActivity: number
  private readonly volumes = new Map<string, VolumeState>()
  private base: Float64Array | null = null
  private lastRound = Number.NaN
  private round = 0
  /** Volumes given a prior by the last apply() (cleared by the next one when they go quiet). */
  private applied = new Set<string>()

  constructor (opts: PredictionOptions) {
    if (!(opts.halfLifeMs > 0) || !(opts.activityHalfLifeMs > 0)) throw new FerryError('FERRY_AFFINITY_BAD_INPUT', 'co-access: half-lives must be positive', 400)
    this.minActivity = opts.minActivity ?? MIN_ACTIVITY
    if (!(opts.activityScale >= 0) || !(this.minActivity >= 0)) throw new FerryError('FERRY_AFFINITY_BAD_INPUT', 'co-access: activityScale and minActivity must be ≥ 0', 400)
    this.opts = opts
    this.sites = opts.sites.filter(s => s !== '')
    this.sites.forEach((s, i) => this.slot.set(s, i))
  }

  /** The prior where a volume is quiet: the placement model's expected site mix (null: none). */
  setBase (shares: Readonly<Record<string, number>> | null): void {
    this.base = shares === null ? null : this.normalised(shares)
  }

  /** One block's per-site scores, decayed to the time the next endRound() is given. */
  observe (volume: string, scores: Readonly<Record<string, number>>): void {
    let v = this.volumes.get(volume)
    if (v === undefined) {
      const S = this.sites.length
      v = { prev: new Float64Array(S), cur: new Float64Array(S), activity: new Float64Array(S), seen: -1 }
      this.volumes.set(volume, v)
    }
    if (v.seen !== this.round) { v.cur.fill(0); v.seen = this.round }
    for (const site in scores) {
      const i = this.slot.get(site)
      const x = scores[site] as number
      if (i !== undefined && x > 0) (v.cur[i] as number) += x
    }
  }

  /**
   * Closes the round observed since the last call, at `now`: each volume's new accesses since
   * the previous round join its activity. The first round only learns where volumes stand (a
   * new leader's first scan is history, not activity).
   */
  endRound (now: number): void {
    const first = Number.isNaN(this.lastRound)
    const dt = first ? 0 : Math.max(0, now - this.lastRound)
    const keep = decayFactor(dt, this.opts.halfLifeMs)
    const fade = decayFactor(dt, this.opts.activityHalfLifeMs)
    const S = this.sites.length
    for (const [name, v] of this.volumes) {
      if (v.seen !== this.round) v.cur.fill(0)
      let total = 0
      for (let i = 0; i < S; i++) {
        const fresh = first ? 0 : Math.max(0, (v.cur[i] as number) - keep * (v.prev[i] as number))
        const a = (v.activity[i] as number) * fade + fresh
        v.activity[i] = a
        total += a + (v.cur[i] as number)
      }
      v.prev.set(v.cur)
      // A volume with no blocks and no activity left is forgotten.
      if (total < 1e-6 && v.seen !== this.round) this.volumes.delete(name)
    }
    this.lastRound = now
    this.round++
  }

  /** The volume's recent accesses per site (decayed, as of the last round). */
  activity (volume: string): Record<string, number> {
    const v = this.volumes.get(volume)
    const out: Record<string, number> = {}
    if (v === undefined) return out
    this.sites.forEach((s, i) => { const a = v.activity[i] as number; if (a > 0) out[s] = a })
    return out
  }

  /** The prior of a block of `volume` (shares summing to 1), or null when there is none. */
  prior (volume: string): Record<string, number> | null {
    const vec = this.priorVector(volume)
    if (vec === null) return null
    const out: Record<string, number> = {}
    this.sites.forEach((s, i) => { out[s] = vec[i] as number })
    return out
  }

  /** Gives `table` the base prior and every active volume's prior; clears the ones no longer active. Returns the number of active volumes. */
  apply (table: AffinityTable): number {
    table.setPrior(this.base === null ? null : this.shares(this.base))
    const now = new Set<string>()
    for (const name of this.volumes.keys()) {
      const vec = this.activePrior(name)
      if (vec === null) continue
      table.setVolumePrior(name, this.shares(vec))
      now.add(name)
    }
    for (const name of this.applied) if (!now.has(name)) table.setVolumePrior(name, null)
    this.applied = now
    return now.size
  }

  /** Whether the volume is being read now (its blocks may move ahead of their own traffic). */
  isActive (volume: string): boolean {
    return this.activePrior(volume) !== null
  }

  get trackedVolumes (): number { return this.volumes.size }

  private priorVector (volume: string): Float64Array | null {
    return this.activePrior(volume) ?? this.base
  }

  private activePrior (volume: string): Float64Array | null {
    const v = this.volumes.get(volume)
    if (v === undefined) return null
    let a = 0
    for (const x of v.activity) a += x
    if (!(a >= this.minActivity) || a <= 0) return null
    const S = this.sites.length
    const out = new Float64Array(S)
    const base = this.base
    const w = base === null ? 1 : a / (a + this.opts.activityScale)
    for (let i = 0; i < S; i++) out[i] = w * (v.activity[i] as number) / a + (base === null ? 0 : (1 - w) * (base[i] as number))
    return out
  }

  private normalised (shares: Readonly<Record<string, number>>): Float64Array | null {
    const out = new Float64Array(this.sites.length)
    let sum = 0
    for (const site in shares) {
      const i = this.slot.get(site)
      const x = shares[site] as number
      if (i === undefined || !(x > 0) || !Number.isFinite(x)) continue
      out[i] = x; sum += x
    }
    if (!(sum > 0)) return null
    for (let i = 0; i < out.length; i++) (out[i] as number) /= sum
    return out
  }

  private shares (vec: Float64Array): Record<string, number> {
    const out: Record<string, number> = {}
    this.sites.forEach((s, i) => { if ((vec[i] as number) > 0) out[s] = vec[i] as number })
    return out
  }
}
