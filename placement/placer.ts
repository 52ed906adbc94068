import { hashString, rendezvousNode, rendezvousScore, type RendezvousNode } from '../lib/rendezvous.js'
import type { PlacementTable, PlacementTableModel } from './table.js'

/** A gateway as placement sees it: its id and its site. */
export interface PlacementGateway { id: string, site: string }

/**
 * How a first write's location was decided: `model` (the published table of the partitioning
 * engine), `origin` (no model yet: the creating request's site, write locality), `hash` (no
 * model and no eligible gateway at the client's site, or a client in no site: rendezvous
 * hashing, the default placement of every proxy).
 */
export type PlacementBy = 'model' | 'origin' | 'hash'

export interface PlacementChoice {
  /** Ordered, distinct, at most R; empty only when no gateway is configured. */
  gateways: string[]
  by: PlacementBy
}

interface Compiled {
  model: PlacementTableModel | null
  /** Per gateway of the placer (same index), its cost per table site; null: unknown to the table. */
  cost: Array<Float64Array | null>
  excluded: Uint8Array
  prior: Float64Array | null
  volumes: Map<string, Float64Array>
  origins: Map<string, Float64Array>
  S: number
}

/**
 * First-touch placement at the proxy: `chooseReplicaSet(volume, block, originSite, R)` is the
 * one decision of where a new block lives, an ordered list of R distinct gateways (distinct
 * sites first; the head is the preferred one). It reads only memory — the table the planner
 * published, the gateways and their health — so it costs well under the 5 µs budget (see
 * BENCHMARKS.md, "Placement"), and it allocates nothing but the answer.
 *
 * Ranking: with a model, by the expected access latency of the predicted shares (table.ts);
 * without one, gateways at the origin site first. Ties, and everything without a model or a
 * site, go to rendezvous order of `volume/block`, so equal gateways share new blocks evenly and
 * a proxy without any table agrees with every other one.
 */
export class FirstTouchPlacer {
  private gws: PlacementGateway[] = []
  private nodes: RendezvousNode[] = []
  private sites: string[] = []
  private compiled: Compiled = emptyCompiled()
  private tableInfo: { publishedAt: number, model: PlacementTableModel | null, volumes: number, exclude: readonly string[] } | null = null
  // Scratch, sized to the gateways (one decision at a time: the proxy is single-threaded).
  private cost = new Float64Array(0)
  private score = new Float64Array(0)
  private order = new Int32Array(0)
  private eligibleNow = new Uint8Array(0)
  private taken = new Uint8Array(0)
  private mix = new Float64Array(0)
  /** Decisions since start, by how they were made. */
  readonly counts: Record<PlacementBy, number> = { model: 0, origin: 0, hash: 0 }
  private table: PlacementTable | null = null

  constructor (gateways: readonly PlacementGateway[], private readonly eligible: (id: string) => boolean = () => true) {
    this.setGateways(gateways)
  }

  setGateways (gateways: readonly PlacementGateway[]): void {
    this.gws = gateways.map(g => ({ id: g.id, site: g.site }))
    this.nodes = this.gws.map(g => rendezvousNode(g.id))
    this.sites = this.gws.map(g => g.site)
    const n = this.gws.length
    this.cost = new Float64Array(n)
    this.score = new Float64Array(n)
    this.order = new Int32Array(n)
    this.eligibleNow = new Uint8Array(n)
    this.taken = new Uint8Array(n)
    this.setTable(this.table)
  }

  /** Swaps in a (checked) table; decisions in flight finish with the one they started with. */
  setTable (table: PlacementTable | null): void {
    this.table = table
    this.compiled = table === null ? emptyCompiled() : compile(table, this.gws)
    this.mix = new Float64Array(this.compiled.S)
    this.tableInfo = table === null ? null : { publishedAt: table.publishedAt, model: table.model, volumes: this.compiled.volumes.size, exclude: table.exclude }
  }

  /** The table in use: when it was published, its model, how many volumes it knows, the gateways it excludes. */
  get current (): { publishedAt: number, model: PlacementTableModel | null, volumes: number, exclude: readonly string[] } | null { return this.tableInfo }

  /** The ordered replica set for a new block; counts the decision. */
  chooseReplicaSet (volume: string, block: string, originSite: string | undefined, R: number): string[] {
    return this.decide(volume, block, originSite, R).gateways
  }

  decide (volume: string, block: string, originSite: string | undefined, R: number): PlacementChoice {
    const n = this.gws.length
    const c = this.compiled
    const { cost, score, order, eligibleNow } = this
    // FNV-1a is sequential: this is hashString(volume + '/' + block) without building the string.
    const kh = hashString(block, hashString('/', hashString(volume)))
    let anyEligible = false
    let originEligible = false
    for (let i = 0; i < n; i++) {
      score[i] = rendezvousScore(kh, this.nodes[i] as RendezvousNode)
      const ok = c.excluded[i] !== 1 && this.eligible((this.gws[i] as PlacementGateway).id)
      eligibleNow[i] = ok ? 1 : 0
      if (ok) {
        anyEligible = true
        if (originSite !== undefined && this.sites[i] === originSite) originEligible = true
      }
    }
    let by: PlacementBy
    const base = c.model === null ? undefined : (c.volumes.get(volume) ?? c.prior ?? undefined)
    if (base !== undefined) {
      by = 'model'
      const mix = this.mix
      const o = originSite === undefined ? undefined : c.origins.get(originSite)
      let sum = 0
      for (let s = 0; s < c.S; s++) { const v = (base[s] as number) + (o === undefined ? 0 : o[s] as number); mix[s] = v; sum += v }
      for (let i = 0; i < n; i++) {
        const cv = c.cost[i]
        if (cv === null || cv === undefined || sum <= 0) { cost[i] = Infinity; continue }
        let x = 0
        for (let s = 0; s < c.S; s++) x += (mix[s] as number) * (cv[s] as number)
        cost[i] = x / sum
      }
    } else if (originEligible) {
      by = 'origin'
      for (let i = 0; i < n; i++) cost[i] = this.sites[i] === originSite ? 0 : 1
    } else {
      by = 'hash'
      cost.fill(0)
    }
    // Insertion sort: a handful of gateways per fleet, and no allocation.
    for (let i = 0; i < n; i++) {
      let j = i
      while (j > 0 && before(cost, score, i, order[j - 1] as number)) { order[j] = order[j - 1] as number; j-- }
      order[j] = i
    }
    this.counts[by]++
    return { gateways: this.pick(R, anyEligible), by }
  }

  /**
   * R gateways in ranked order: eligible ones at sites not yet in the set first, then eligible
   * ones anywhere; when none is eligible, the ranking as it is (like RouteTable's panic mode, a
   * health blip must not refuse every new block).
   */
  private pick (R: number, anyEligible: boolean): string[] {
    const n = this.gws.length
    const want = Math.min(Math.max(1, R), n)
    const out: string[] = []
    const { order, eligibleNow } = this
    if (!anyEligible) {
      for (let k = 0; k < want; k++) out.push((this.gws[order[k] as number] as PlacementGateway).id)
      return out
    }
    const taken = this.taken
    taken.fill(0)
    for (let k = 0; k < n && out.length < want; k++) {
      const i = order[k] as number
      if (eligibleNow[i] !== 1) continue
      const site = this.sites[i]
      let seen = false
      for (let m = 0; m < k; m++) { const j = order[m] as number; if (taken[j] === 1 && this.sites[j] === site) { seen = true; break } }
      if (seen) continue
      taken[i] = 1
      out.push((this.gws[i] as PlacementGateway).id)
    }
    for (let k = 0; k < n && out.length < want; k++) {
      const i = order[k] as number
      if (eligibleNow[i] !== 1 || taken[i] === 1) continue
      taken[i] = 1
      out.push((this.gws[i] as PlacementGateway).id)
    }
    return out
  }
}

/** Gateway a ranks before gateway b: cheaper, or as cheap and first in rendezvous order. */
function before (cost: Float64Array, score: Float64Array, a: number, b: number): boolean {
  const ca = cost[a] as number
  const cb = cost[b] as number
  if (ca !== cb) return ca < cb
  return (score[a] as number) > (score[b] as number)
}

function emptyCompiled (): Compiled {
  return { model: null, cost: [], excluded: new Uint8Array(0), prior: null, volumes: new Map(), origins: new Map(), S: 0 }
}

function compile (t: PlacementTable, gws: readonly PlacementGateway[]): Compiled {
  const byId = new Map(t.gateways.map(g => [g.id, Float64Array.from(g.cost)]))
  const exclude = new Set(t.exclude)
  const excluded = new Uint8Array(gws.length)
  gws.forEach((g, i) => { if (exclude.has(g.id)) excluded[i] = 1 })
  const vecs = (rec: Record<string, number[]>): Map<string, Float64Array> => new Map(Object.entries(rec).map(([k, v]) => [k, Float64Array.from(v)]))
  return {
    model: t.model,
    cost: gws.map(g => byId.get(g.id) ?? null),
    excluded,
    prior: t.model === null ? null : Float64Array.from(t.prior),
    volumes: t.model === null ? new Map() : vecs(t.volumes),
    origins: t.model === null ? new Map() : vecs(t.origins),
    S: t.sites.length
  }
}
