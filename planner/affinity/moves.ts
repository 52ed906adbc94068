/**
 * Move planning over the affinity table: which tracked blocks would be better off elsewhere
 * (moveCandidates, the rebalancer's raw material) and one budgeted rebalancing round with
 * capacity handled properly (planMoves: displacement, headroom).
 */
import type { GatewayInfo } from './gateways.js'
import { NO_GATEWAY, type PreferenceKernel } from './kernel.js'

/** TableRows.currentIn() of a block with no current gateway. */
export const NOT_PLACED = -1

/**
 * The tracked blocks as the planners here read them, at one instant and against one kernel
 * (AffinityTable.rowsAt). Row numbers are valid until the table changes.
 */
export interface TableRows {
  /** Rows 0 … n − 1. */
  readonly n: number
  /** Stored (forward-decayed) scores × f = scores decayed to the instant. */
  readonly f: number
  /** One block's ranking vector, as rankVector() last wrote it (one slot per site). */
  readonly vec: Float64Array
  /** Writes the row's ranking vector (its scores, plus its volume's and its prior's terms) into vec; returns its sum. */
  rankVector (row: number): number
  /** The row's own total score, in stored units (× f: decayed). */
  score (row: number): number
  sizeBytes (row: number): number
  /** The row's current gateway as an index of kernel.gateways; NO_GATEWAY when the kernel lacks it; NOT_PLACED when the block has none. */
  currentIn (row: number): number
  /** The id of the row's current gateway ('' when none). */
  currentId (row: number): string
  volume (row: number): string
  block (row: number): string
}

/** What the planners are given: a table that can show its rows (AffinityTable). */
export interface RowSource {
  rowsAt (kernel: PreferenceKernel, now: number): TableRows
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
  /** A replica set's candidate: `from` is the member whose place the target takes (the move names it). */
  replacesMember?: true
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
  /**
   * Blocks whose decayed score is below this move only to make room, never for their own gain
   * (default 0): too cold to be worth a copy — unless `pulled` says their volume is being read.
   */
  minScore?: number
  /** Volumes whose cold blocks may move anyway (the rebalancer's co-access signal). */
  pulled?: (volume: string) => boolean
  /**
   * The caller's reason to leave a block where it is this round (the rebalancer's dwell, busy,
   * source down), or null. Asked of gain candidates and of blocks that would be pushed to make room.
   */
  hold?: (volume: string, block: string, from: string) => string | null
  /**
   * Whether the headroom pass may push blocks off this gateway this round (default: yes). The
   * rebalancer says no while copies are arriving at or leaving it: its usage then counts
   * copies about to go, and a gateway a make-room move has just filled past its capacity
   * would have more cold blocks pushed off it than the room it needs.
   */
  settled?: (gateway: string) => boolean
  /** Filled in: candidates passed over, per reason ('cold', 'capacity', 'budget' and `hold`'s). */
  skipped?: Record<string, number>
  /** Told every gain candidate with its verdict ('move' or the reason it was passed over), and every make-room move ('move'): a dry run's listing. */
  decided?: (move: PlannedMove, verdict: string) => void
  now?: number
}

export interface PlannedMove extends MoveCandidate {
  /** 'gain': the block itself is better off; 'make-room': displaced so that the next move fits. */
  reason: 'gain' | 'make-room'
}

/** A block displaces another only when it is at least this many times hotter (planMoves). */
const DISPLACE_RATIO = 4

/**
 * Blocks whose best eligible gateway beats their current one by more than
 * max(marginMs, marginRatio × current cost): the rebalancer's raw material. Ranked by benefit,
 * the latency saved per access times the block's decayed access score (ms saved per unit of
 * recent traffic), so a budget goes to the moves that help most. Blocks with no current
 * location are skipped; blocks whose current gateway is unhealthy or unknown to the kernel
 * count its cost as Infinity (any eligible target wins). Capacity is the kernel's snapshot:
 * the caller re-checks room as it commits moves.
 */
export function moveCandidates (table: RowSource, kernel: PreferenceKernel, opts: { marginMs?: number, marginRatio?: number, limit?: number, now?: number } = {}): MoveCandidate[] {
  const marginMs = opts.marginMs ?? 0
  const marginRatio = opts.marginRatio ?? 0
  const limit = opts.limit ?? Infinity
  const now = opts.now ?? Date.now()
  const rows = table.rowsAt(kernel, now)
  const f = rows.f
  const v = rows.vec
  const G = kernel.gateways.length
  const scratch = new Uint8Array(G)
  const out: MoveCandidate[] = []
  for (let row = 0; row < rows.n; row++) {
    const cur = rows.currentIn(row)
    if (cur === NOT_PLACED) continue
    if (!(rows.rankVector(row) > 0)) continue
    const total = rows.score(row)
    if (kernel.rank(v, 0, scratch, 0, rows.sizeBytes(row), cur) === 0) continue
    const best = scratch[0] as number
    if (best === cur) continue
    const bestCost = kernel.costOf(v, 0, best)
    const curCost = cur === NO_GATEWAY || (kernel.gateways[cur] as GatewayInfo).healthy === false ? Infinity : kernel.costOf(v, 0, cur)
    const gain = curCost - bestCost
    if (curCost !== Infinity && !(gain > Math.max(marginMs, marginRatio * curCost))) continue
    out.push({
      volume: rows.volume(row),
      block: rows.block(row),
      from: rows.currentId(row),
      to: (kernel.gateways[best] as GatewayInfo).id,
      gainMs: gain,
      score: total * f,
      benefit: gain === Infinity ? Infinity : gain * total * f,
      sizeBytes: rows.sizeBytes(row)
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
export function planMoves (table: RowSource, kernel: PreferenceKernel, opts: PlanOptions = {}): PlannedMove[] {
  const marginMs = opts.marginMs ?? 0
  const marginRatio = opts.marginRatio ?? 0
  const maxMoves = opts.maxMoves ?? Infinity
  const maxBytes = opts.maxBytes ?? Infinity
  const displace = opts.displace ?? true
  const scan = opts.displaceScan ?? 16
  const displaceMin = opts.displaceMinScore ?? 1
  const headroom = opts.headroom ?? 0
  const minScore = opts.minScore ?? 0
  const hold = opts.hold
  const skipped = opts.skipped
  const decided = opts.decided
  const now = opts.now ?? Date.now()
  const rows = table.rowsAt(kernel, now)
  const f = rows.f
  const v = rows.vec
  const G = kernel.gateways.length
  const held = (row: number, from: number): string | null =>
    hold === undefined ? null : hold(rows.volume(row), rows.block(row), from === NO_GATEWAY ? '' : (kernel.gateways[from] as GatewayInfo).id)
  const room = Float64Array.from({ length: G }, (_, g) => kernel.roomOf(g))
  const fits = (g: number, size: number): boolean => {
    const cap = (kernel.gateways[g] as GatewayInfo).capacityBytes
    return kernel.isHealthy(g) && (cap === 0 || cap >= size)
  }
  const scoreOf = (row: number): number => rows.score(row)
  // Per gateway, its blocks coldest first (displacement candidates).
  const onGateway: number[][] = Array.from({ length: G }, () => [])
  const cands: Array<{ row: number, from: number, to: number, gain: number, score: number, benefit: number }> = []
  for (let row = 0; row < rows.n; row++) {
    const cur = rows.currentIn(row)
    if (cur === NOT_PLACED) continue
    if (cur !== NO_GATEWAY) onGateway[cur]!.push(row)
    if (!(rows.rankVector(row) > 0)) continue
    const total = scoreOf(row)
    const size = rows.sizeBytes(row)
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
  const isCand = new Uint8Array(rows.n)
  for (const c of cands) isCand[c.row] = 1
  const cold = onGateway.map(list => list.map(r => [scoreOf(r), r] as [number, number]).sort((a, b) => a[0] - b[0]).map(x => x[1]))
  const coldNext = new Int32Array(G)
  const moved = new Set<number>()
  const out: PlannedMove[] = []
  let bytes = 0
  const asMove = (row: number, from: number, to: number, gain: number, score: number, reason: PlannedMove['reason']): PlannedMove => ({
    volume: rows.volume(row),
    block: rows.block(row),
    from: from === NO_GATEWAY ? '' : (kernel.gateways[from] as GatewayInfo).id,
    to: (kernel.gateways[to] as GatewayInfo).id,
    gainMs: gain,
    score,
    benefit: gain === Infinity ? Infinity : gain * score,
    sizeBytes: rows.sizeBytes(row),
    reason
  })
  const emit = (row: number, from: number, to: number, gain: number, score: number, reason: PlannedMove['reason']): void => {
    const m = asMove(row, from, to, gain, score, reason)
    out.push(m)
    decided?.(m, 'move')
    moved.add(row)
    bytes += m.sizeBytes
    if (from !== NO_GATEWAY) room[from] = (room[from] as number) + m.sizeBytes
    room[to] = (room[to] as number) - m.sizeBytes
  }
  const skip = (c: typeof cands[number], reason: string): void => {
    if (skipped !== undefined) skipped[reason] = (skipped[reason] ?? 0) + 1
    decided?.(asMove(c.row, c.from, c.to, c.gain, c.score, 'gain'), reason)
  }
  for (const c of cands) {
    if (moved.has(c.row)) continue
    if (out.length >= maxMoves) { skip(c, 'budget'); continue }
    if (c.score < minScore && opts.pulled?.(rows.volume(c.row)) !== true) { skip(c, 'cold'); continue }
    const why = held(c.row, c.from)
    if (why !== null) { skip(c, why); continue }
    const size = rows.sizeBytes(c.row)
    if (bytes + size > maxBytes) { skip(c, 'budget'); continue }
    // A cold block (drifting by its prior) does not eat into a gateway's headroom: that room
    // is for blocks with traffic, and the headroom pass would only push it out again.
    const reserve = c.score < displaceMin ? headroom * (kernel.gateways[c.to] as GatewayInfo).capacityBytes : 0
    if ((room[c.to] as number) - size >= reserve) { emit(c.row, c.from, c.to, c.gain, c.score, 'gain'); continue }
    if (!displace || out.length + 2 > maxMoves || c.score < displaceMin) { skip(c, 'capacity'); continue }
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
      if (isCand[u] === 1 || held(u, c.to) !== null) continue
      looked++
      const vsize = rows.sizeBytes(u)
      if ((room[c.to] as number) + vsize < size || bytes + size + vsize > maxBytes) continue
      rows.rankVector(u)
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
    if (victim < 0 || !(c.benefit > victimLoss)) { skip(c, 'capacity'); continue }
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
      if (opts.settled?.((kernel.gateways[g] as GatewayInfo).id) === false) continue
      const list = cold[g] as number[]
      for (let i = coldNext[g] as number; i < list.length && (room[g] as number) < headroom * cap && out.length < maxMoves; i++) {
        const u = list[i] as number
        if (moved.has(u) || isCand[u] === 1 || held(u, g) !== null) continue
        const usize = rows.sizeBytes(u)
        if (bytes + usize > maxBytes) break
        rows.rankVector(u)
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
