/**
 * Affinity: which gateways should hold a block, and which share of a data subset each gateway
 * should serve (the seeds' "affinity map" and "host affinity score").
 *
 * Three layers, from convenient to fast:
 *
 *   AffinityScorer.preferred()   one block, scores as a plain object: the admin API, tests,
 *                                the migration engine's one-off decisions.
 *   PreferenceKernel             the same ranking compiled for one (sites, gateways) set:
 *                                a dense latency table, no allocation per block.
 *   AffinityTable                every tracked block in columns (typed arrays), fed with
 *                                accesses or store entries, with all preferred lists recomputed
 *                                by the kernel in one pass. The rebalancer works on this.
 *
 * The ranking criterion is expected access latency: for a block with decayed per-site scores
 * s(site), a gateway g costs Σ s(site)·lat(site, g.site) / Σ s(site), the mean milliseconds
 * an access would take if g held the block. Normalising by Σ s makes costMs a latency (not
 * "access·ms") and is free for ranking, which is why forward-decayed scores (all scaled by one
 * common factor) can be ranked without decaying them first.
 */
import { FerryError } from '../lib/errors.js'
import { blockKey } from '../lib/ids.js'
import { hashString, rendezvousNode, rendezvousScore, type RendezvousNode } from '../lib/rendezvous.js'
import type { AccessDelta, AffinityEntry } from '../state/types.js'
import { decayFactor, growth } from '../lib/forward-decay.js'

// ───────────────────────────── inputs ─────────────────────────────

export interface GatewayInfo {
  id: string
  site: string
  /** 0 = unlimited. */
  capacityBytes: number
  usedBytes: number
  healthy: boolean
  /** [0, 1], 1 = healthy; from the health model. Missing = 1. */
  healthScore?: number
}

export interface LatencyMatrix {
  /** Milliseconds from a client at `fromSite` to a gateway at `toSite`. */
  get (fromSite: string, toSite: string): number
}

function badInput (message: string, details?: Record<string, unknown>): FerryError {
  return new FerryError('FERRY_AFFINITY_BAD_INPUT', message, 400, details)
}

/**
 * A symmetric latency lookup: `entries[a][b]` or `entries[b][a]`, else `sameSiteMs` for a == b
 * and `defaultMs` otherwise (which is also what clients in no configured site, site '', see).
 * Asymmetric matrices are rare between data centres, and accepting either order means an
 * operator writes each pair once.
 */
export function latencyMatrix (entries: Record<string, Record<string, number>>, opts: { sameSiteMs: number, defaultMs: number }): LatencyMatrix {
  const check = (what: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw badInput(`latency ${what} must be a finite number ≥ 0 ms, got ${String(v)}`)
    return v
  }
  const same = check('sameSiteMs', opts.sameSiteMs)
  const dflt = check('defaultMs', opts.defaultMs)
  const table = new Map<string, number>()
  for (const [a, row] of Object.entries(entries)) {
    for (const [b, ms] of Object.entries(row)) {
      const v = check(`${a}→${b}`, ms)
      const k1 = a + '\0' + b
      const k2 = b + '\0' + a
      // An explicit entry in the written direction wins over the mirror of the other one.
      table.set(k1, v)
      if (!Object.hasOwn(entries[b] ?? {}, a)) table.set(k2, v)
    }
  }
  return {
    get (from: string, to: string): number {
      const v = table.get(from + '\0' + to)
      if (v !== undefined) return v
      return from === to && from !== '' ? same : dflt
    }
  }
}

// ───────────────────────────── scorer ─────────────────────────────

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

export type Subset = { by: 'volume' } | { by: 'prefix', length: number }

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

function checkSubset (subset: Subset): void {
  if (subset.by === 'prefix' && !(Number.isInteger(subset.length) && subset.length > 0)) throw badInput('subset prefix length must be a positive integer')
  if (subset.by !== 'prefix' && subset.by !== 'volume') throw badInput(`unknown subset kind ${JSON.stringify((subset as { by: unknown }).by)}`)
}

/** The subset a block belongs to: its volume, or `volume/` + the block id's first n characters. */
export function subsetOf (volume: string, block: string, subset: Subset): string {
  return subset.by === 'volume' ? volume : volume + '/' + block.slice(0, subset.length)
}

class SubsetAccumulator {
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

// ───────────────────────────── compiled kernel ─────────────────────────────

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

  constructor (scorer: AffinityScorer, sites: readonly string[], gateways: readonly GatewayInfo[]) {
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

// ───────────────────────────── tracked blocks ─────────────────────────────

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

export interface MoveCandidate {
  volume: string
  block: string
  from: string
  to: string
  /** Expected latency saved per access (ms); Infinity when the current gateway is unusable. */
  gainMs: number
  /** The block's decayed access score now. */
  score: number
  /** gainMs × score: what the move is worth; candidates come sorted by it. */
  benefit: number
  sizeBytes: number
}

export interface PlanOptions {
  /** Absolute hysteresis: the best gateway must save more than this many ms per access. */
  marginMs?: number
  /** Relative hysteresis: … and more than this fraction of the current cost. */
  marginRatio?: number
  /** Move budget of the round (displacements count). */
  maxMoves?: number
  maxBytes?: number
  /** Push cold blocks off a full target to make room (default true). */
  displace?: boolean
  /** Coldest blocks examined per displacement (default 16). */
  displaceScan?: number
  /**
   * Only blocks with at least this decayed score (accesses, default 1) may displace another:
   * a block that is itself cold gains too little to be worth two moves.
   */
  displaceMinScore?: number
  /**
   * Fraction of each bounded gateway's capacity to keep free (default 0): its coldest blocks
   * move out, after the round's other moves and within the same budget, until it has that much
   * room. New blocks are placed where there is room; without headroom, full gateways send
   * them elsewhere until the rebalancer catches up.
   */
  headroom?: number
  now?: number
}

export interface PlannedMove extends MoveCandidate {
  /** 'gain': the block itself is better off; 'make-room': displaced so that the next move fits. */
  reason: 'gain' | 'make-room'
}

/** Weights pass 2^RESCALE_EXP (Float32 tops out at 2^127): rescale long before. */
const RESCALE_EXP = 60
const BURST_MIN_SHORT = 5
/** A block displaces another only when it is at least this many times hotter (planMoves). */
const DISPLACE_RATIO = 4

/**
 * Every tracked block's affinity in a compact columnar layout: the planner's working set.
 *
 * Per block: one Map entry (key string → row), the key itself, and per row Float32 forward-
 * decayed scores per site (S slots), a Float32 short-term score (bursts), reads and writes
 * (Uint32), last access (Float64), size (Float64), current gateway (Uint8) and the preferred
 * list (Uint8 × gateways). With 4 sites and 4 gateways that is 61 bytes of columns; the Map
 * entry and key string bring it to ≈ 150 bytes (measured by bench/planner-scale.ts).
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
  private readonly index = new Map<string, number>()
  private keys: string[] = []
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
  // Volumes: index by name, per-row volume index, per-volume prior and short-term scores.
  private readonly volumeIndex = new Map<string, number>()
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
    const key = blockKey(volume, block)
    const row = this.index.get(key)
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

  has (volume: string, block: string): boolean { return this.index.has(blockKey(volume, block)) }

  /** One access. `weight` defaults to 1 (one access). Returns the block's row. */
  record (volume: string, block: string, site: string | undefined, write: boolean, at: number, weight = 1): number {
    return this.recordAt(blockKey(volume, block), this.siteSlot(site), write ? 0 : 1, write ? 1 : 0, at, weight)
  }

  /**
   * The hot-path form: `key` is blockKey(volume, block), `slot` from siteSlot(). Adds `reads`
   * and `writes` to the counters and `weight` decayed-access units at time `at`.
   */
  recordAt (key: string, slot: number, reads: number, writes: number, at: number, weight = reads + writes): number {
    let row = this.index.get(key)
    if (row === undefined) row = this.insert(key)
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
    return this.recordAt(blockKey(d.volume, d.block), this.siteSlot(d.site), d.reads, d.writes, d.lastAccessMs, d.weight ?? d.reads + d.writes)
  }

  /**
   * Replaces a block's scores and counters with a store entry (state's scanAffinity): how a
   * planner that just became leader loads the merged view every proxy has been writing.
   */
  load (entry: AffinityEntry): number {
    const key = blockKey(entry.volume, entry.block)
    let row = this.index.get(key)
    if (row === undefined) row = this.insert(key)
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
    const key = blockKey(volume, block)
    let row = this.index.get(key)
    if (row === undefined) row = this.insert(key)
    if (info.sizeBytes !== undefined) this.sizeCol[row] = info.sizeBytes
    if (info.current !== undefined) this.currentCol[row] = info.current === null ? NO_GATEWAY : this.gatewayIndex(info.current)
  }

  /** Forget a block (deleted, or moved out of this planner's responsibility). */
  delete (volume: string, block: string): boolean {
    const row = this.index.get(blockKey(volume, block))
    if (row === undefined) return false
    this.removeRow(row)
    return true
  }

  /** Decayed per-site scores at `now` (only sites with a positive score), or undefined. */
  scores (volume: string, block: string, now: number): Record<string, number> | undefined {
    const row = this.index.get(blockKey(volume, block))
    if (row === undefined) return undefined
    return this.scoresOf(row, this.decay(now, this.halfLifeMs))
  }

  /** Short-term rate ≥ burstFactor × long-term rate (and at least a few recent accesses). */
  bursting (volume: string, block: string, now: number): boolean {
    const row = this.index.get(blockKey(volume, block))
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
      const keyHash = this.rankVector(row, priorScale, volScale) > 0 ? 0 : hashString(this.keys[row] as string)
      kernel.rank(v, 0, this.prefCol, row * G, this.sizeCol[row] as number, cur, keyHash)
    }
    return this.n
  }

  /** The block's preferred gateways from the last recomputePreferred(), best first. */
  preferred (volume: string, block: string): string[] {
    const row = this.index.get(blockKey(volume, block))
    return row === undefined ? [] : this.preferredOf(row)
  }

  /** Where the table believes the block is (setBlock's `current`), or null. */
  current (volume: string, block: string): string | null {
    const row = this.index.get(blockKey(volume, block))
    const c = row === undefined ? NO_GATEWAY : this.currentCol[row] as number
    return c === NO_GATEWAY ? null : this.gatewayIds[c] ?? null
  }

  /**
   * Blocks whose best eligible gateway beats their current one by more than
   * max(marginMs, marginRatio × current cost): the rebalancer's raw material. Ranked by benefit,
   * the latency saved per access times the block's decayed access score (ms saved per unit of
   * recent traffic), so a budget goes to the moves that help most. Blocks with no current
   * location are skipped; blocks whose current gateway is unhealthy or unknown to the kernel
   * count its cost as Infinity (any eligible target wins). Capacity is the kernel's snapshot:
   * the caller re-checks room as it commits moves.
   */
  moveCandidates (kernel: PreferenceKernel, opts: { marginMs?: number, marginRatio?: number, limit?: number, now?: number } = {}): MoveCandidate[] {
    const marginMs = opts.marginMs ?? 0
    const marginRatio = opts.marginRatio ?? 0
    const limit = opts.limit ?? Infinity
    const now = opts.now ?? Date.now()
    const f = this.decay(now, this.halfLifeMs)
    const priorScale = this.priorScale(now)
    const volScale = this.volScale(now)
    const v = this.vec
    const S = this.sites.length
    const G = kernel.gateways.length
    const scratch = new Uint8Array(G)
    const curMap = Uint8Array.from(this.gatewayIds, id => { const k = kernel.indexOf(id); return k < 0 ? NO_GATEWAY : k })
    const out: MoveCandidate[] = []
    for (let row = 0; row < this.n; row++) {
      const c = this.currentCol[row] as number
      if (c === NO_GATEWAY) continue
      const cur = curMap[c] as number
      if (!(this.rankVector(row, priorScale, volScale) > 0)) continue
      let total = 0
      for (let s = 0; s < S; s++) total += this.scoresCol[row * S + s] as number
      if (kernel.rank(v, 0, scratch, 0, this.sizeCol[row] as number, cur) === 0) continue
      const best = scratch[0] as number
      if (best === cur) continue
      const bestCost = kernel.costOf(v, 0, best)
      const curCost = cur === NO_GATEWAY || (kernel.gateways[cur] as GatewayInfo).healthy === false ? Infinity : kernel.costOf(v, 0, cur)
      const gain = curCost - bestCost
      if (curCost !== Infinity && !(gain > Math.max(marginMs, marginRatio * curCost))) continue
      const key = this.keys[row] as string
      const slash = key.indexOf('/')
      out.push({
        volume: key.slice(0, slash),
        block: key.slice(slash + 1),
        from: this.gatewayIds[c] as string,
        to: (kernel.gateways[best] as GatewayInfo).id,
        gainMs: gain,
        score: total * f,
        benefit: gain === Infinity ? Infinity : gain * total * f,
        sizeBytes: this.sizeCol[row] as number
      })
    }
    out.sort((a, b) => b.benefit - a.benefit || b.score - a.score)
    if (out.length > limit) out.length = limit
    return out
  }

  /**
   * One rebalancing round's moves, in the order to run them, within a budget and the gateways'
   * room: the seed's `migrate_shards` with capacity handled properly. Candidates are blocks
   * whose best healthy gateway — by cost, whether or not it has room — beats the current one by
   * more than max(marginMs, marginRatio × current cost), taken by benefit (ms saved per access ×
   * decayed score). A candidate whose target has room moves. One whose target is full may
   * *displace* a block there: among the `displaceScan` coldest blocks on the target that are not
   * candidates themselves and at most a quarter as hot as the candidate (hysteresis), the one
   * whose move to a gateway with room loses least (loss = its score × its cost increase),
   * provided the candidate's benefit exceeds that loss; the
   * displacement (reason 'make-room') comes first in the list. (No swaps: each move must fit
   * on its own, since a copy needs room before the source is freed.) Without displacement, blocks that went cold keep full gateways
   * full and the hot blocks that belong there can never get in.
   *
   * `maxMoves` and `maxBytes` bound the round (displacements count). Sizes are the table's
   * `sizeBytes`, room is the kernel's snapshot minus the moves planned so far. Cost: one pass
   * to rank candidates plus a sort of each gateway's blocks by score.
   */
  planMoves (kernel: PreferenceKernel, opts: PlanOptions = {}): PlannedMove[] {
    const marginMs = opts.marginMs ?? 0
    const marginRatio = opts.marginRatio ?? 0
    const maxMoves = opts.maxMoves ?? Infinity
    const maxBytes = opts.maxBytes ?? Infinity
    const displace = opts.displace ?? true
    const scan = opts.displaceScan ?? 16
    const displaceMin = opts.displaceMinScore ?? 1
    const headroom = opts.headroom ?? 0
    const now = opts.now ?? Date.now()
    const f = this.decay(now, this.halfLifeMs)
    const priorScale = this.priorScale(now)
    const volScale = this.volScale(now)
    const v = this.vec
    const S = this.sites.length
    const G = kernel.gateways.length
    const curMap = Uint8Array.from(this.gatewayIds, id => { const k = kernel.indexOf(id); return k < 0 ? NO_GATEWAY : k })
    const room = Float64Array.from({ length: G }, (_, g) => kernel.roomOf(g))
    const fits = (g: number, size: number): boolean => {
      const cap = (kernel.gateways[g] as GatewayInfo).capacityBytes
      return kernel.isHealthy(g) && (cap === 0 || cap >= size)
    }
    const scoreOf = (row: number): number => {
      let t = 0
      for (let s = 0; s < S; s++) t += this.scoresCol[row * S + s] as number
      return t
    }
    // Per gateway, its blocks coldest first (displacement candidates).
    const onGateway: number[][] = Array.from({ length: G }, () => [])
    const cands: Array<{ row: number, from: number, to: number, gain: number, score: number, benefit: number }> = []
    for (let row = 0; row < this.n; row++) {
      const c = this.currentCol[row] as number
      if (c === NO_GATEWAY) continue
      const cur = curMap[c] as number
      if (cur !== NO_GATEWAY) onGateway[cur]!.push(row)
      if (!(this.rankVector(row, priorScale, volScale) > 0)) continue
      const total = scoreOf(row)
      const size = this.sizeCol[row] as number
      let best = -1
      let bestCost = Infinity
      for (let g = 0; g < G; g++) {
        if (!fits(g, size)) continue
        const cost = kernel.costOf(v, 0, g)
        if (cost < bestCost) { bestCost = cost; best = g }
      }
      if (best < 0 || best === cur) continue
      const curCost = cur === NO_GATEWAY || !kernel.isHealthy(cur) ? Infinity : kernel.costOf(v, 0, cur)
      const gain = curCost - bestCost
      if (curCost !== Infinity && !(gain > Math.max(marginMs, marginRatio * curCost))) continue
      cands.push({ row, from: cur, to: best, gain, score: total * f, benefit: gain === Infinity ? Infinity : gain * total * f })
    }
    cands.sort((a, b) => b.benefit - a.benefit || b.score - a.score)
    // A block that wants to move itself is never pushed around to make room for another one:
    // it gets its own turn (and its best target).
    const isCand = new Uint8Array(this.n)
    for (const c of cands) isCand[c.row] = 1
    const cold = onGateway.map(rows => rows.map(r => [scoreOf(r), r] as [number, number]).sort((a, b) => a[0] - b[0]).map(x => x[1]))
    const coldNext = new Int32Array(G)
    const moved = new Set<number>()
    const out: PlannedMove[] = []
    let bytes = 0
    const emit = (row: number, from: number, to: number, gain: number, score: number, reason: PlannedMove['reason']): void => {
      const key = this.keys[row] as string
      const slash = key.indexOf('/')
      const size = this.sizeCol[row] as number
      out.push({
        volume: key.slice(0, slash),
        block: key.slice(slash + 1),
        from: from === NO_GATEWAY ? '' : (kernel.gateways[from] as GatewayInfo).id,
        to: (kernel.gateways[to] as GatewayInfo).id,
        gainMs: gain,
        score,
        benefit: gain === Infinity ? Infinity : gain * score,
        sizeBytes: size,
        reason
      })
      moved.add(row)
      bytes += size
      if (from !== NO_GATEWAY) room[from] = (room[from] as number) + size
      room[to] = (room[to] as number) - size
    }
    for (const c of cands) {
      if (out.length >= maxMoves) break
      if (moved.has(c.row)) continue
      const size = this.sizeCol[c.row] as number
      if (bytes + size > maxBytes) continue
      // A cold block (drifting by its prior) does not eat into a gateway's headroom: that room
      // is for blocks with traffic, and the headroom pass would only push it out again.
      const reserve = c.score < displaceMin ? headroom * (kernel.gateways[c.to] as GatewayInfo).capacityBytes : 0
      if ((room[c.to] as number) - size >= reserve) { emit(c.row, c.from, c.to, c.gain, c.score, 'gain'); continue }
      if (!displace || out.length + 2 > maxMoves || c.score < displaceMin) continue
      // The cheapest block to push off the full target, among its coldest few.
      let victim = -1
      let victimTo = -1
      let victimLoss = Infinity
      let victimGain = 0
      let looked = 0
      const list = cold[c.to] as number[]
      for (let i = coldNext[c.to] as number; i < list.length && looked < scan; i++) {
        const u = list[i] as number
        if (moved.has(u)) { if (i === coldNext[c.to]) coldNext[c.to] = i + 1; continue }
        if (isCand[u] === 1) continue
        looked++
        const vsize = this.sizeCol[u] as number
        if ((room[c.to] as number) + vsize < size || bytes + size + vsize > maxBytes) continue
        this.rankVector(u, priorScale, volScale)
        const here = kernel.costOf(v, 0, c.to)
        const uScore = scoreOf(u) * f
        // Hysteresis for displacement: the victim must be much colder than the block taking its
        // place, or two equally cold blocks would trade places round after round.
        if (!(c.score > DISPLACE_RATIO * uScore)) continue
        for (let g = 0; g < G; g++) {
          if (g === c.to || !fits(g, vsize) || (room[g] as number) < vsize) continue
          const there = kernel.costOf(v, 0, g)
          const loss = uScore * (there - here)
          if (loss < victimLoss) { victimLoss = loss; victim = u; victimTo = g; victimGain = here - there }
        }
      }
      if (victim < 0 || !(c.benefit > victimLoss)) continue
      emit(victim, c.to, victimTo, victimGain, scoreOf(victim) * f, 'make-room')
      emit(c.row, c.from, c.to, c.gain, c.score, 'gain')
    }
    // Headroom: keep `headroom` of each bounded gateway free by moving its coldest blocks to
    // where they lose least, so that new blocks (first-touch placement cannot wait for a
    // migration) find room on the gateway they belong to. A block only goes to a gateway that
    // stays above its own headroom, so two full gateways never trade blocks.
    if (headroom > 0) {
      for (let g = 0; g < G; g++) {
        const cap = (kernel.gateways[g] as GatewayInfo).capacityBytes
        if (cap === 0 || !kernel.isHealthy(g)) continue
        const list = cold[g] as number[]
        for (let i = coldNext[g] as number; i < list.length && (room[g] as number) < headroom * cap && out.length < maxMoves; i++) {
          const u = list[i] as number
          if (moved.has(u) || isCand[u] === 1) continue
          const usize = this.sizeCol[u] as number
          if (bytes + usize > maxBytes) break
          this.rankVector(u, priorScale, volScale)
          const here = kernel.costOf(v, 0, g)
          let to = -1
          let toCost = Infinity
          for (let h = 0; h < G; h++) {
            if (h === g || !fits(h, usize)) continue
            const hcap = (kernel.gateways[h] as GatewayInfo).capacityBytes
            const left = (room[h] as number) - usize
            if (left < 0 || (hcap > 0 && left < headroom * hcap)) continue
            const cost = kernel.costOf(v, 0, h)
            if (cost < toCost) { toCost = cost; to = h }
          }
          if (to < 0) break
          emit(u, g, to, here - toCost, scoreOf(u) * f, 'make-room')
        }
      }
    }
    return out
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
      const key = this.keys[row] as string
      const slash = key.indexOf('/')
      acc.add(subsetOf(key.slice(0, slash), key.slice(slash + 1), subset), this.prefIds[first] as string, total * f)
    }
    return acc.shares()
  }

  /** Every tracked block with its scores decayed to `now` (allocates per block: admin/export path). */
  * entries (now = Date.now()): IterableIterator<TrackedBlock> {
    const f = this.decay(now, this.halfLifeMs)
    for (let row = 0; row < this.n; row++) yield this.toEntry(row, f, now)
  }

  get (volume: string, block: string, now = Date.now()): TrackedBlock | undefined {
    const row = this.index.get(blockKey(volume, block))
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
    const key = this.keys[row] as string
    const slash = key.indexOf('/')
    const cur = this.currentCol[row] as number
    return {
      volume: key.slice(0, slash),
      block: key.slice(slash + 1),
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

  private insert (key: string): number {
    if (this.n >= this.maxBlocks) this.evictColdest()
    if (this.n === this.cap) this.grow()
    const row = this.n++
    this.index.set(key, row)
    this.keys[row] = key
    this.volCol[row] = this.volumeOf(key.slice(0, key.indexOf('/')))
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
    const key = this.keys[row] as string
    this.index.delete(key)
    const S = this.sites.length
    if (row !== last) {
      const lastKey = this.keys[last] as string
      this.keys[row] = lastKey
      this.index.set(lastKey, row)
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
    this.keys.length = last
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
