import { hashBlock, rendezvousNode, rendezvousScore, type RendezvousNode } from '../lib/rendezvous.js'
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
  excluded: Uint8Array
  /**
   * The table's terms folded into the placer's gateways at table swap, so a decision adds two
   * vectors instead of a gateways × sites product: per gateway (same index), Σ_s w[s]·cost[g][s]
   * of the term's weights w, and at index n their sum Σ_s w[s]. A gateway the table does not
   * know costs Infinity. Since the expected cost of a decision is (volume + origin)·cost / Σ,
   * both halves add.
   */
  prior: Float64Array | null
  volumes: Map<string, Float64Array>
  origins: Map<string, Float64Array>
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
  /** Per gateway, the index of its site among the placer's sites. */
  private siteIx = new Int32Array(0)
  private siteNames: string[] = []
  private compiled: Compiled = emptyCompiled()
  private tableInfo: { publishedAt: number, model: PlacementTableModel | null, volumes: number, exclude: readonly string[] } | null = null
  // Scratch, sized to the gateways (one decision at a time: the proxy is single-threaded).
  private cost = new Float64Array(0)
  private score = new Float64Array(0)
  /** scoreAt[i] === stamp: score[i] is this decision's; rendezvous scores are computed only for ties. */
  private scoreAt = new Uint32Array(0)
  private stamp = 0
  private keyHash = 0
  private eligibleNow = new Uint8Array(0)
  private taken = new Uint8Array(0)
  private siteTaken = new Uint8Array(0)
  /** Decisions since start, by how they were made. */
  readonly counts: Record<PlacementBy, number> = { model: 0, origin: 0, hash: 0 }
  private table: PlacementTable | null = null

  /**
   * `eligible(id, now)`: may take new blocks (healthy at this proxy); asked once per gateway per
   * decision with one clock reading.
   */
  constructor (gateways: readonly PlacementGateway[], private readonly eligible: (id: string, now: number) => boolean = () => true) {
    this.setGateways(gateways)
  }

  setGateways (gateways: readonly PlacementGateway[]): void {
    this.gws = gateways.map(g => ({ id: g.id, site: g.site }))
    this.nodes = this.gws.map(g => rendezvousNode(g.id))
    this.siteNames = [...new Set(this.gws.map(g => g.site))]
    this.siteIx = Int32Array.from(this.gws, g => this.siteNames.indexOf(g.site))
    const n = this.gws.length
    this.cost = new Float64Array(n)
    this.score = new Float64Array(n)
    this.scoreAt = new Uint32Array(n)
    this.eligibleNow = new Uint8Array(n)
    this.taken = new Uint8Array(n)
    this.siteTaken = new Uint8Array(this.siteNames.length)
    this.setTable(this.table)
  }

  /** Swaps in a (checked) table; decisions in flight finish with the one they started with. */
  setTable (table: PlacementTable | null): void {
    this.table = table
    this.compiled = table === null ? emptyCompiled() : compile(table, this.gws)
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
    const { cost, eligibleNow } = this
    this.keyHash = hashBlock(volume, block)
    this.stamp = (this.stamp + 1) >>> 0
    if (this.stamp === 0) { this.scoreAt.fill(0); this.stamp = 1 }
    const originIx = originSite === undefined ? -1 : this.siteNames.indexOf(originSite)
    const now = Date.now()
    let anyEligible = false
    let originEligible = false
    for (let i = 0; i < n; i++) {
      const ok = c.excluded[i] !== 1 && this.eligible((this.gws[i] as PlacementGateway).id, now)
      eligibleNow[i] = ok ? 1 : 0
      if (ok) {
        anyEligible = true
        if (this.siteIx[i] === originIx) originEligible = true
      }
    }
    let by: PlacementBy
    const base = c.model === null ? undefined : (c.volumes.get(volume) ?? c.prior ?? undefined)
    if (base !== undefined) {
      by = 'model'
      const o = originSite === undefined ? undefined : c.origins.get(originSite)
      // Every gateway's expected cost shares the denominator Σ shares, so the ranking is by the
      // numerator alone; a non-positive Σ leaves nothing to rank by but the hash.
      const sum = (base[n] as number) + (o === undefined ? 0 : o[n] as number)
      if (sum <= 0) cost.fill(Infinity)
      else if (o === undefined) for (let i = 0; i < n; i++) cost[i] = base[i] as number
      else for (let i = 0; i < n; i++) cost[i] = (base[i] as number) + (o[i] as number)
    } else if (originEligible) {
      by = 'origin'
      for (let i = 0; i < n; i++) cost[i] = this.siteIx[i] === originIx ? 0 : 1
    } else {
      by = 'hash'
      cost.fill(0)
    }
    this.counts[by]++
    return { gateways: this.pick(R, anyEligible), by }
  }

  /**
   * R gateways in ranked order (cheaper first, ties by rendezvous order): eligible ones at sites
   * not yet in the set first, then eligible ones anywhere; when none is eligible, the ranking as
   * it is (like RouteTable's panic mode, a health blip must not refuse every new block). A
   * selection of R, not a sort: R is 1–3 and every pass is a scan of the gateways.
   */
  private pick (R: number, anyEligible: boolean): string[] {
    const n = this.gws.length
    const want = Math.min(Math.max(1, R), n)
    const out: string[] = []
    const { eligibleNow, taken, siteTaken, siteIx } = this
    taken.fill(0)
    siteTaken.fill(0)
    // Pass 0: eligible at a new site; pass 1: eligible anywhere; pass 2 (nothing eligible): any.
    let pass = anyEligible ? 0 : 2
    while (out.length < want) {
      let best = -1
      for (let i = 0; i < n; i++) {
        if (taken[i] === 1) continue
        if (pass < 2 && eligibleNow[i] !== 1) continue
        if (pass === 0 && siteTaken[siteIx[i] as number] === 1) continue
        if (best === -1 || this.before(i, best)) best = i
      }
      if (best === -1) {
        if (pass === 1) break
        pass = 1
        continue
      }
      taken[best] = 1
      siteTaken[siteIx[best] as number] = 1
      out.push((this.gws[best] as PlacementGateway).id)
    }
    return out
  }

  /** Gateway a ranks before gateway b: cheaper, or as cheap and first in rendezvous order. */
  private before (a: number, b: number): boolean {
    const ca = this.cost[a] as number
    const cb = this.cost[b] as number
    if (ca !== cb) return ca < cb
    return this.scoreOf(a) > this.scoreOf(b)
  }

  private scoreOf (i: number): number {
    if (this.scoreAt[i] !== this.stamp) {
      this.score[i] = rendezvousScore(this.keyHash, this.nodes[i] as RendezvousNode)
      this.scoreAt[i] = this.stamp
    }
    return this.score[i] as number
  }
}

function emptyCompiled (): Compiled {
  return { model: null, excluded: new Uint8Array(0), prior: null, volumes: new Map(), origins: new Map() }
}

function compile (t: PlacementTable, gws: readonly PlacementGateway[]): Compiled {
  const byId = new Map(t.gateways.map(g => [g.id, g.cost]))
  const costs = gws.map(g => byId.get(g.id))
  const exclude = new Set(t.exclude)
  const excluded = new Uint8Array(gws.length)
  gws.forEach((g, i) => { if (exclude.has(g.id)) excluded[i] = 1 })
  const n = gws.length
  const fold = (w: readonly number[]): Float64Array => {
    const out = new Float64Array(n + 1)
    let sum = 0
    for (const v of w) sum += v
    for (let i = 0; i < n; i++) {
      const cv = costs[i]
      if (cv === undefined) { out[i] = Infinity; continue }
      let x = 0
      for (let s = 0; s < w.length; s++) x += (w[s] as number) * (cv[s] as number)
      out[i] = x
    }
    out[n] = sum
    return out
  }
  const folded = (rec: Record<string, number[]>): Map<string, Float64Array> => new Map(Object.entries(rec).map(([k, v]) => [k, fold(v)]))
  return {
    model: t.model,
    excluded,
    prior: t.model === null ? null : fold(t.prior),
    volumes: t.model === null ? new Map() : folded(t.volumes),
    origins: t.model === null ? new Map() : folded(t.origins)
  }
}
