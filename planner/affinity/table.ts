/**
 * Every tracked block's affinity in typed-array columns: the planner's working set, fed with
 * accesses or store entries, with all preferred lists recomputed by the kernel in one pass.
 */
import { hashBlock } from '../../lib/rendezvous.js'
import { decayFactor, growth } from '../../lib/forward-decay.js'
import type { AccessDelta, AffinityEntry } from '../../state/types.js'
import { badInput } from './gateways.js'
import { NO_GATEWAY, type PreferenceKernel } from './kernel.js'
import { moveCandidates, NOT_PLACED, planMoves, type MoveCandidate, type PlannedMove, type PlanOptions, type TableRows } from './moves.js'
import { checkSubset, SubsetAccumulator, subsetOf, type Subset } from './subsets.js'

export interface AffinityTableOptions {
  /** Configured site names. Slot 0 is always '' (clients in no configured site). */
  sites: readonly string[]
  /** Half-life of the decayed scores (the proxies' `recorder.halfLifeS` × 1000). */
  halfLifeMs: number
  /** Half-life of the short score used for burst detection (default 10 s, as the proxy). */
  burstHalfLifeMs?: number
  /** Short-term rate over long-term rate at which a block counts as bursting (default 4). */
  burstFactor?: number
  /** Evict the coldest tenth when this many blocks are tracked (default 2,000,000). */
  maxBlocks?: number
  /** Initial column capacity (blocks); grows by doubling. Pre-size to avoid copying. */
  initialCapacity?: number
  /** Forward-decay landmark (default Date.now()). */
  now?: number
  /**
   * Pseudo-count of the prior (see setPrior) in decayed accesses (default 0: rank by observed
   * scores only). With κ > 0 a block is ranked by `scores + κ·prior`: a hot block by its own
   * traffic, a block going cold back towards where its volume (or the partitioning engine)
   * predicts its next access will come from.
   */
  priorWeight?: number
  /**
   * Weight λ of the volume's short-term site scores in every block's ranking vector (default
   * 0: off). Reading is bursty per volume (a client opens a directory, a VM boots from a disk
   * image): when a site starts reading a volume, the volume's blocks that site has not touched
   * yet are about to be read there too, and their own history cannot know it.
   */
  volumeWeight?: number
  /** Half-life of the volume's short-term scores (default 30 s). */
  volumeHalfLifeMs?: number
}

/** A tracked block as the store and the admin API see it. */
export interface TrackedBlock extends AffinityEntry {
  sizeBytes: number
  /** Where the block is now (the table's view), or null. */
  current: string | null
  bursting: boolean
}

const RESCALE_EXP = 60
const BURST_MIN_SHORT = 5

/**
 * Every tracked block's affinity in a compact columnar layout: the planner's working set.
 *
 * Per block: one entry in its volume's Map (block id → row), the block id itself, and per row
 * Float32 forward-decayed scores per site (S slots), a Float32 short-term score (bursts), reads
 * and writes (Uint32), last access (Float64), size (Float64), volume index (Uint32), current
 * gateway (Uint8) and the preferred list (Uint8 × gateways). With 4 sites and 4 gateways that is
 * 61 bytes of columns; the Map entry and the id bring it to ≈ 150 bytes (measured by
 * bench/planner-scale.ts). Blocks are found by volume, then block id: a block is never a joined
 * `volume/block` string here, so none is ever taken apart again.
 *
 * Scores use forward decay (Cormode et al., ICDE 2009) exactly as proxy/access-recorder.ts: an
 * access at t adds 2^((t - T0)/H); reading multiplies by 2^(-(now - T0)/H). Float32 is enough
 * because only ratios between sites and blocks matter, and rescaling keeps the exponent small.
 * The result equals state/affinity.ts's decayed merge (Σ wᵢ·2^-((now - tᵢ)/H)) to float precision.
 */
export class AffinityTable {
  readonly sites: readonly string[]
  readonly halfLifeMs: number
  private readonly burstHalfLifeMs: number
  private readonly burstFactor: number
  private readonly maxBlocks: number
  private readonly siteIndex = new Map<string, number>()
  /** Each row's block id; its volume is volCol's. Blocks are found by volume, then block: no joined key is built or taken apart. */
  private blocks: string[] = []
  private cap: number
  private n = 0
  private scoresCol: Float32Array
  private shortCol: Float32Array
  private readsCol: Uint32Array
  private writesCol: Uint32Array
  private lastCol: Float64Array
  private sizeCol: Float64Array
  private currentCol: Uint8Array
  private prefCol: Uint8Array
  private prefWidth = 0
  /** Gateway ids of the preferred lists (the kernel's order at the last recompute). */
  private prefIds: string[] = []
  /** Gateway ids of `currentCol` (registered as blocks are placed). */
  private readonly gatewayIds: string[] = []
  private t0: number
  private wAt = Number.NaN
  private wLong = 1
  private wShort = 1
  private readonly priorWeight: number
  private readonly volumeWeight: number
  private readonly volumeHalfLifeMs: number
  private globalPrior: Float64Array | null = null
  // Volumes: index by name, their names, per-volume rows by block id, per-row volume index, per-volume prior and short-term scores.
  private readonly volumeIndex = new Map<string, number>()
  private readonly volumeNames: string[] = []
  private readonly rowsByVolume: Array<Map<string, number>> = []
  private readonly volumePriors: Array<Float64Array | null> = []
  private volCol: Uint32Array
  private volScores: Float64Array
  private wVol = 1
  /** Per-row prior (S slots, NaN in slot 0 = none), allocated by the first setBlockPrior(). */
  private priorCol: Float32Array | null = null
  /** Scratch: one block's ranking vector. */
  private vec: Float64Array
  /** Blocks dropped to stay within maxBlocks. */
  evicted = 0

  constructor (opts: AffinityTableOptions) {
    if (!(opts.halfLifeMs > 0)) throw badInput('halfLifeMs must be positive')
    this.sites = ['', ...opts.sites.filter(s => s !== '')]
    this.sites.forEach((s, i) => this.siteIndex.set(s, i))
    this.halfLifeMs = opts.halfLifeMs
    this.burstHalfLifeMs = opts.burstHalfLifeMs ?? 10_000
    this.burstFactor = opts.burstFactor ?? 4
    this.maxBlocks = opts.maxBlocks ?? 2_000_000
    this.t0 = opts.now ?? Date.now()
    this.cap = Math.max(16, opts.initialCapacity ?? 1024)
    const S = this.sites.length
    this.scoresCol = new Float32Array(this.cap * S)
    this.shortCol = new Float32Array(this.cap)
    this.readsCol = new Uint32Array(this.cap)
    this.writesCol = new Uint32Array(this.cap)
    this.lastCol = new Float64Array(this.cap)
    this.sizeCol = new Float64Array(this.cap)
    this.currentCol = new Uint8Array(this.cap).fill(NO_GATEWAY)
    this.prefCol = new Uint8Array(0)
    this.priorWeight = opts.priorWeight ?? 0
    if (!(this.priorWeight >= 0) || !Number.isFinite(this.priorWeight)) throw badInput('priorWeight must be a finite number ≥ 0')
    this.volumeWeight = opts.volumeWeight ?? 0
    if (!(this.volumeWeight >= 0) || !Number.isFinite(this.volumeWeight)) throw badInput('volumeWeight must be a finite number ≥ 0')
    this.volumeHalfLifeMs = opts.volumeHalfLifeMs ?? 30_000
    if (!(this.volumeHalfLifeMs > 0)) throw badInput('volumeHalfLifeMs must be positive')
    this.volCol = new Uint32Array(this.cap)
    this.volScores = new Float64Array(this.volumeWeight > 0 ? 64 * S : 0)
    this.vec = new Float64Array(S)
  }

  /**
   * Priors: where a block's accesses are expected to come from before (and after) its own
   * traffic says so, as per-site shares. Looked up per block, then per volume, then global.
   * Without priorWeight they are stored but unused.
   */
  setPrior (shares: Readonly<Record<string, number>> | null): void {
    this.globalPrior = shares === null ? null : this.shareVector(shares)
  }

  setVolumePrior (volume: string, shares: Readonly<Record<string, number>> | null): void {
    this.volumePriors[this.volumeOf(volume)] = shares === null ? null : this.shareVector(shares)
  }

  /** A block's own prior (e.g. the partitioning engine's prediction). Costs S floats per tracked block once used. */
  setBlockPrior (volume: string, block: string, shares: Readonly<Record<string, number>> | null): void {
    const row = this.rowOf(volume, block)
    if (row === undefined) return
    const S = this.sites.length
    if (this.priorCol === null) {
      if (shares === null) return
      this.priorCol = new Float32Array(this.cap * S)
      for (let r = 0; r < this.cap; r++) this.priorCol[r * S] = NaN
    }
    if (shares === null) { this.priorCol.fill(0, row * S, row * S + S); this.priorCol[row * S] = NaN; return }
    this.priorCol.set(this.shareVector(shares), row * S)
  }

  get size (): number { return this.n }

  /** Slot of a site name ('' and unknown sites share slot 0). */
  siteSlot (site: string | undefined): number {
    return site === undefined ? 0 : (this.siteIndex.get(site) ?? 0)
  }

  has (volume: string, block: string): boolean { return this.rowOf(volume, block) !== undefined }

  /** One access. `weight` defaults to 1 (one access). Returns the block's row. */
  record (volume: string, block: string, site: string | undefined, write: boolean, at: number, weight = 1): number {
    return this.recordAt(volume, block, this.siteSlot(site), write ? 0 : 1, write ? 1 : 0, at, weight)
  }

  /**
   * The hot-path form: `slot` from siteSlot(). Adds `reads` and `writes` to the counters and
   * `weight` decayed-access units at time `at`.
   */
  recordAt (volume: string, block: string, slot: number, reads: number, writes: number, at: number, weight = reads + writes): number {
    const row = this.rowOf(volume, block) ?? this.insert(volume, block)
    if (at !== this.wAt) this.weights(at)
    const S = this.sites.length
    if (this.volumeWeight > 0) (this.volScores[(this.volCol[row] as number) * S + slot] as number) += weight * this.wVol;
    (this.scoresCol[row * S + slot] as number) += weight * this.wLong;
    (this.shortCol[row] as number) += weight * this.wShort;
    (this.readsCol[row] as number) += reads;
    (this.writesCol[row] as number) += writes
    if (at > (this.lastCol[row] as number)) this.lastCol[row] = at
    return row
  }

  /** A proxy's AccessDelta (state/types.ts): `weight` or reads + writes at `lastAccessMs`. */
  mergeDelta (d: AccessDelta): number {
    return this.recordAt(d.volume, d.block, this.siteSlot(d.site), d.reads, d.writes, d.lastAccessMs, d.weight ?? d.reads + d.writes)
  }

  /**
   * Replaces a block's scores and counters with a store entry (state's scanAffinity): how a
   * planner that just became leader loads the merged view every proxy has been writing.
   */
  load (entry: AffinityEntry): number {
    const row = this.rowOf(entry.volume, entry.block) ?? this.insert(entry.volume, entry.block)
    if (entry.scoredAt !== this.wAt) this.weights(entry.scoredAt)
    const S = this.sites.length
    this.scoresCol.fill(0, row * S, row * S + S)
    for (const [site, s] of Object.entries(entry.scores)) {
      if (s > 0) (this.scoresCol[row * S + this.siteSlot(site)] as number) += s * this.wLong
    }
    this.readsCol[row] = Math.min(entry.reads, 0xffffffff)
    this.writesCol[row] = Math.min(entry.writes, 0xffffffff)
    this.lastCol[row] = entry.lastAccess
    return row
  }

  /** The block's size in bytes (capacity checks) and where it is now. */
  setBlock (volume: string, block: string, info: { sizeBytes?: number, current?: string | null }): void {
    const row = this.rowOf(volume, block) ?? this.insert(volume, block)
    if (info.sizeBytes !== undefined) this.sizeCol[row] = info.sizeBytes
    if (info.current !== undefined) this.currentCol[row] = info.current === null ? NO_GATEWAY : this.gatewayIndex(info.current)
  }

  /** Forget a block (deleted, or moved out of this planner's responsibility). */
  delete (volume: string, block: string): boolean {
    const row = this.rowOf(volume, block)
    if (row === undefined) return false
    this.removeRow(row)
    return true
  }

  /** Decayed per-site scores at `now` (only sites with a positive score), or undefined. */
  scores (volume: string, block: string, now: number): Record<string, number> | undefined {
    const row = this.rowOf(volume, block)
    if (row === undefined) return undefined
    return this.scoresOf(row, this.decay(now, this.halfLifeMs))
  }

  /** Short-term rate ≥ burstFactor × long-term rate (and at least a few recent accesses). */
  bursting (volume: string, block: string, now: number): boolean {
    const row = this.rowOf(volume, block)
    return row === undefined ? false : this.burstingRow(row, now)
  }

  /**
   * Recomputes every tracked block's preferred list with `kernel` (built with this table's
   * `sites`, e.g. `scorer.compile(table.sites, gateways)`). One pass over the columns; returns
   * the number of blocks ranked.
   */
  recomputePreferred (kernel: PreferenceKernel, now = Date.now()): number {
    if (kernel.sites.length !== this.sites.length || kernel.sites.some((s, i) => s !== this.sites[i])) {
      throw badInput('the kernel was compiled for other sites than this table\'s')
    }
    const G = kernel.gateways.length
    this.prefIds = kernel.gateways.map(g => g.id)
    // currentCol holds this table's gateway indices; the kernel has its own order.
    const curMap = Uint8Array.from(this.gatewayIds, id => { const k = kernel.indexOf(id); return k < 0 ? NO_GATEWAY : k })
    if (this.prefWidth !== G || this.prefCol.length < this.cap * G) {
      this.prefWidth = G
      this.prefCol = new Uint8Array(this.cap * G)
    }
    const priorScale = this.priorScale(now)
    const volScale = this.volScale(now)
    const v = this.vec
    for (let row = 0; row < this.n; row++) {
      const c = this.currentCol[row] as number
      const cur = c === NO_GATEWAY ? NO_GATEWAY : curMap[c] as number
      // Rendezvous tie-breaking only matters for blocks whose vector is all zero.
      const keyHash = this.rankVector(row, priorScale, volScale) > 0 ? 0 : hashBlock(this.volumeNames[this.volCol[row] as number] as string, this.blocks[row] as string)
      kernel.rank(v, 0, this.prefCol, row * G, this.sizeCol[row] as number, cur, keyHash)
    }
    return this.n
  }

  /** The block's preferred gateways from the last recomputePreferred(), best first. */
  preferred (volume: string, block: string): string[] {
    const row = this.rowOf(volume, block)
    return row === undefined ? [] : this.preferredOf(row)
  }

  /** Where the table believes the block is (setBlock's `current`), or null. */
  current (volume: string, block: string): string | null {
    const row = this.rowOf(volume, block)
    const c = row === undefined ? NO_GATEWAY : this.currentCol[row] as number
    return c === NO_GATEWAY ? null : this.gatewayIds[c] ?? null
  }

  /** See moveCandidates (moves.ts). */
  moveCandidates (kernel: PreferenceKernel, opts: { marginMs?: number, marginRatio?: number, limit?: number, now?: number } = {}): MoveCandidate[] {
    return moveCandidates(this, kernel, opts)
  }

  /** See planMoves (moves.ts). */
  planMoves (kernel: PreferenceKernel, opts: PlanOptions = {}): PlannedMove[] {
    return planMoves(this, kernel, opts)
  }

  /** The rows as the move planners read them at `now`, against `kernel` (see TableRows). */
  rowsAt (kernel: PreferenceKernel, now: number): TableRows {
    const S = this.sites.length
    const priorScale = this.priorScale(now)
    const volScale = this.volScale(now)
    // currentCol holds this table's gateway indices; the kernel has its own order.
    const curMap = Uint8Array.from(this.gatewayIds, id => { const k = kernel.indexOf(id); return k < 0 ? NO_GATEWAY : k })
    const scores = this.scoresCol
    const current = this.currentCol
    const sizes = this.sizeCol
    return {
      n: this.n,
      f: this.decay(now, this.halfLifeMs),
      vec: this.vec,
      rankVector: row => this.rankVector(row, priorScale, volScale),
      score: row => {
        let t = 0
        for (let s = 0; s < S; s++) t += scores[row * S + s] as number
        return t
      },
      sizeBytes: row => sizes[row] as number,
      currentIn: row => { const c = current[row] as number; return c === NO_GATEWAY ? NOT_PLACED : curMap[c] as number },
      currentId: row => { const c = current[row] as number; return c === NO_GATEWAY ? '' : this.gatewayIds[c] as string },
      volume: row => this.refOf(row).volume,
      block: row => this.refOf(row).block
    }
  }

  /** Per subset, the share of accesses each gateway should serve (see AffinityScorer.hostAffinity). */
  hostAffinity (subset: Subset, now = Date.now()): Map<string, Map<string, number>> {
    checkSubset(subset)
    const f = this.decay(now, this.halfLifeMs)
    const S = this.sites.length
    const acc = new SubsetAccumulator()
    for (let row = 0; row < this.n; row++) {
      const first = this.prefCol[row * this.prefWidth]
      if (this.prefWidth === 0 || first === undefined || first === NO_GATEWAY) continue
      let total = 0
      for (let s = 0; s < S; s++) total += this.scoresCol[row * S + s] as number
      const { volume, block } = this.refOf(row)
      acc.add(subsetOf(volume, block, subset), this.prefIds[first] as string, total * f)
    }
    return acc.shares()
  }

  /** Every tracked block with its scores decayed to `now` (allocates per block: admin/export path). */
  * entries (now = Date.now()): IterableIterator<TrackedBlock> {
    const f = this.decay(now, this.halfLifeMs)
    for (let row = 0; row < this.n; row++) yield this.toEntry(row, f, now)
  }

  get (volume: string, block: string, now = Date.now()): TrackedBlock | undefined {
    const row = this.rowOf(volume, block)
    return row === undefined ? undefined : this.toEntry(row, this.decay(now, this.halfLifeMs), now)
  }

  /** Bytes held by the columns (excluding the Map and key strings, which V8 owns). */
  columnBytes (): number {
    return this.scoresCol.byteLength + this.shortCol.byteLength + this.readsCol.byteLength + this.writesCol.byteLength +
      this.lastCol.byteLength + this.sizeCol.byteLength + this.currentCol.byteLength + this.prefCol.byteLength + (this.priorCol?.byteLength ?? 0) +
      this.volCol.byteLength + this.volScores.byteLength
  }

  // ── internals

  /** The prior's weight in stored (forward-decayed) units at `now`: κ·2^((now - T0)/H). */
  private priorScale (now: number): number {
    return this.priorWeight === 0 ? 0 : this.priorWeight / this.decay(now, this.halfLifeMs)
  }

  /** λ × (volume scores' decay) / (block scores' decay) at `now`: converts stored volume scores to block-score units. */
  private volScale (now: number): number {
    return this.volumeWeight === 0 ? 0 : this.volumeWeight * this.decay(now, this.volumeHalfLifeMs) / this.decay(now, this.halfLifeMs)
  }

  /**
   * Writes row's ranking vector (stored scores + volScale × its volume's short-term scores +
   * priorScale × its prior) into this.vec and returns its sum. Every ranking goes through here
   * so they all see the same vector.
   */
  private rankVector (row: number, priorScale: number, volScale: number): number {
    const S = this.sites.length
    const v = this.vec
    let sum = 0
    for (let s = 0; s < S; s++) { const x = this.scoresCol[row * S + s] as number; v[s] = x; sum += x }
    const vi = this.volCol[row] as number
    if (volScale > 0) {
      for (let s = 0; s < S; s++) { const x = volScale * (this.volScores[vi * S + s] as number); v[s] = (v[s] as number) + x; sum += x }
    }
    if (priorScale === 0) return sum
    let prior: ArrayLike<number> | null = null
    let off = 0
    if (this.priorCol !== null && !Number.isNaN(this.priorCol[row * S] as number)) { prior = this.priorCol; off = row * S } else {
      prior = this.volumePriors[vi] ?? this.globalPrior
    }
    if (prior === null) return sum
    for (let s = 0; s < S; s++) { const x = priorScale * (prior[off + s] as number); v[s] = (v[s] as number) + x; sum += x }
    return sum
  }

  /** The index of a volume name, registering it (volumes are never forgotten: there are few). */
  private volumeOf (volume: string): number {
    let vi = this.volumeIndex.get(volume)
    if (vi === undefined) {
      vi = this.volumeIndex.size
      this.volumeIndex.set(volume, vi)
      this.volumeNames.push(volume)
      this.rowsByVolume.push(new Map())
      this.volumePriors.push(null)
      const S = this.sites.length
      if (this.volumeWeight > 0 && this.volScores.length < (vi + 1) * S) this.volScores = growF64(this.volScores, Math.max(64, (vi + 1) * 2) * S)
    }
    return vi
  }

  /** Shares by site name → a normalised vector over this table's slots (unknown sites dropped). */
  private shareVector (shares: Readonly<Record<string, number>>): Float64Array {
    const S = this.sites.length
    const out = new Float64Array(S)
    let sum = 0
    for (const [site, x] of Object.entries(shares)) {
      const i = this.siteIndex.get(site)
      if (i === undefined || !(x > 0) || !Number.isFinite(x)) continue
      out[i] = (out[i] as number) + x; sum += x
    }
    if (sum > 0) for (let i = 0; i < S; i++) (out[i] as number) /= sum
    return out
  }

  private toEntry (row: number, f: number, now: number): TrackedBlock {
    const { volume, block } = this.refOf(row)
    const cur = this.currentCol[row] as number
    return {
      volume,
      block,
      scores: this.scoresOf(row, f),
      scoredAt: now,
      reads: this.readsCol[row] as number,
      writes: this.writesCol[row] as number,
      lastAccess: this.lastCol[row] as number,
      preferred: this.preferredOf(row),
      sizeBytes: this.sizeCol[row] as number,
      current: cur === NO_GATEWAY ? null : (this.gatewayIds[cur] ?? null),
      bursting: this.burstingRow(row, now)
    }
  }

  private refOf (row: number): { volume: string, block: string } {
    return { volume: this.volumeNames[this.volCol[row] as number] as string, block: this.blocks[row] as string }
  }

  private rowOf (volume: string, block: string): number | undefined {
    const vi = this.volumeIndex.get(volume)
    return vi === undefined ? undefined : this.rowsByVolume[vi]?.get(block)
  }

  private scoresOf (row: number, f: number): Record<string, number> {
    const S = this.sites.length
    const out: Record<string, number> = {}
    for (let s = 0; s < S; s++) {
      const v = (this.scoresCol[row * S + s] as number) * f
      if (v > 0) out[this.sites[s] as string] = v
    }
    return out
  }

  private preferredOf (row: number): string[] {
    const out: string[] = []
    for (let i = 0; i < this.prefWidth; i++) {
      const g = this.prefCol[row * this.prefWidth + i] as number
      if (g === NO_GATEWAY) break
      out.push(this.prefIds[g] as string)
    }
    return out
  }

  private burstingRow (row: number, now: number): boolean {
    const S = this.sites.length
    let long = 0
    for (let s = 0; s < S; s++) long += this.scoresCol[row * S + s] as number
    const l = long * this.decay(now, this.halfLifeMs)
    const sh = (this.shortCol[row] as number) * this.decay(now, this.burstHalfLifeMs)
    if (sh < BURST_MIN_SHORT || l <= 0) return false
    return (sh / l) * (this.halfLifeMs / this.burstHalfLifeMs) >= this.burstFactor
  }

  private gatewayIndex (id: string): number {
    let i = this.gatewayIds.indexOf(id)
    if (i < 0) {
      if (this.gatewayIds.length >= NO_GATEWAY) throw badInput(`at most ${NO_GATEWAY - 1} gateways`)
      i = this.gatewayIds.length
      this.gatewayIds.push(id)
    }
    return i
  }

  private insert (volume: string, block: string): number {
    if (this.n >= this.maxBlocks) this.evictColdest()
    if (this.n === this.cap) this.grow()
    const row = this.n++
    const vi = this.volumeOf(volume)
    // Reading a character makes V8 flatten an id that is still a concatenation (a tree of its
    // pieces): kept for the block's lifetime, the flat string costs about half (planner-scale bench).
    block.charCodeAt(0)
    this.rowsByVolume[vi]?.set(block, row)
    this.blocks[row] = block
    this.volCol[row] = vi
    return row
  }

  private grow (): void {
    const cap = this.cap * 2
    const S = this.sites.length
    this.scoresCol = growF32(this.scoresCol, cap * S)
    this.shortCol = growF32(this.shortCol, cap)
    this.readsCol = growU32(this.readsCol, cap)
    this.writesCol = growU32(this.writesCol, cap)
    this.lastCol = growF64(this.lastCol, cap)
    this.sizeCol = growF64(this.sizeCol, cap)
    this.volCol = growU32(this.volCol, cap)
    const cur = new Uint8Array(cap).fill(NO_GATEWAY)
    cur.set(this.currentCol)
    this.currentCol = cur
    if (this.prefWidth > 0) {
      const p = new Uint8Array(cap * this.prefWidth).fill(NO_GATEWAY)
      p.set(this.prefCol)
      this.prefCol = p
    }
    if (this.priorCol !== null) {
      const p = growF32(this.priorCol, cap * S)
      for (let r = this.cap; r < cap; r++) p[r * S] = NaN
      this.priorCol = p
    }
    this.cap = cap
  }

  /** Moves the last row into `row` (columns stay dense, so passes are plain loops). */
  private removeRow (row: number): void {
    const last = this.n - 1
    this.rowsByVolume[this.volCol[row] as number]?.delete(this.blocks[row] as string)
    const S = this.sites.length
    if (row !== last) {
      const lastBlock = this.blocks[last] as string
      this.blocks[row] = lastBlock
      this.rowsByVolume[this.volCol[last] as number]?.set(lastBlock, row)
      this.scoresCol.copyWithin(row * S, last * S, last * S + S)
      this.shortCol[row] = this.shortCol[last] as number
      this.readsCol[row] = this.readsCol[last] as number
      this.writesCol[row] = this.writesCol[last] as number
      this.lastCol[row] = this.lastCol[last] as number
      this.sizeCol[row] = this.sizeCol[last] as number
      this.volCol[row] = this.volCol[last] as number
      this.currentCol[row] = this.currentCol[last] as number
      if (this.prefWidth > 0) this.prefCol.copyWithin(row * this.prefWidth, last * this.prefWidth, last * this.prefWidth + this.prefWidth)
      if (this.priorCol !== null) this.priorCol.copyWithin(row * S, last * S, last * S + S)
    }
    if (this.priorCol !== null) { this.priorCol.fill(0, last * S, last * S + S); this.priorCol[last * S] = NaN }
    this.blocks.length = last
    this.scoresCol.fill(0, last * S, last * S + S)
    this.shortCol[last] = 0
    this.readsCol[last] = 0
    this.writesCol[last] = 0
    this.lastCol[last] = 0
    this.sizeCol[last] = 0
    this.currentCol[last] = NO_GATEWAY
    if (this.prefWidth > 0) this.prefCol.fill(NO_GATEWAY, last * this.prefWidth, last * this.prefWidth + this.prefWidth)
    this.n = last
  }

  /**
   * Drops about the coldest tenth in one pass: the threshold is the 10th percentile of a
   * sample of total scores (forward-decayed, so directly comparable), as the proxy's recorder.
   */
  private evictColdest (): void {
    const S = this.sites.length
    const total = (row: number): number => {
      let t = 0
      for (let s = 0; s < S; s++) t += this.scoresCol[row * S + s] as number
      return t
    }
    const target = Math.max(1, Math.floor(this.maxBlocks / 10))
    const step = Math.max(1, Math.floor(this.n / 1000))
    const sample: number[] = []
    for (let row = 0; row < this.n; row += step) sample.push(total(row))
    sample.sort((a, b) => a - b)
    const threshold = sample[Math.min(sample.length - 1, Math.floor(sample.length / 10))] as number
    let removed = 0
    // Walk backwards: removeRow moves the last row into the hole, which was already visited.
    for (let row = this.n - 1; row >= 0 && removed < target; row--) {
      if (total(row) <= threshold) { this.removeRow(row); removed++ }
    }
    this.evicted += removed
  }

  private weights (at: number): void {
    this.wAt = at
    const dt = at - this.t0
    this.wLong = growth(dt, this.halfLifeMs)
    this.wShort = growth(dt, this.burstHalfLifeMs)
    if (this.volumeWeight > 0) this.wVol = growth(dt, this.volumeHalfLifeMs)
    if (this.wLong > 2 ** RESCALE_EXP || this.wShort > 2 ** RESCALE_EXP || this.wVol > 2 ** RESCALE_EXP) this.rescale(at)
  }

  /** Moves T0 to `at`: every stored weight becomes its value decayed to `at`. */
  private rescale (at: number): void {
    const fl = 1 / this.wLong
    const fs = 1 / this.wShort
    const S = this.sites.length
    for (let i = 0; i < this.n * S; i++) (this.scoresCol[i] as number) *= fl
    for (let i = 0; i < this.n; i++) (this.shortCol[i] as number) *= fs
    if (this.volumeWeight > 0) {
      const fv = 1 / this.wVol
      for (let i = 0; i < this.volScores.length; i++) (this.volScores[i] as number) *= fv
    }
    this.t0 = at
    this.wLong = 1
    this.wShort = 1
    this.wVol = 1
  }

  private decay (now: number, halfLifeMs: number): number {
    return decayFactor(now - this.t0, halfLifeMs)
  }
}

function growF32 (a: Float32Array, n: number): Float32Array { const b = new Float32Array(n); b.set(a); return b }
function growF64 (a: Float64Array, n: number): Float64Array { const b = new Float64Array(n); b.set(a); return b }
function growU32 (a: Uint32Array, n: number): Uint32Array { const b = new Uint32Array(n); b.set(a); return b }
