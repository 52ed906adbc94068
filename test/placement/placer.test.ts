import t from 'tap'
import { hashBlock, rendezvousNode, rendezvousPick, rendezvousScore } from '../../lib/rendezvous.js'
import { FirstTouchPlacer } from '../../placement/placer.js'
import { emptyPlacementTable, placementTableSchema, type PlacementTable } from '../../placement/table.js'

const GWS = [
  { id: 'a1', site: 'a' }, { id: 'a2', site: 'a' },
  { id: 'b1', site: 'b' }, { id: 'b2', site: 'b' },
  { id: 'c1', site: 'c' }
]
const siteOf = (id: string): string => GWS.find(g => g.id === id)?.site as string

function table (over: Partial<PlacementTable> = {}): PlacementTable {
  const cost = (site: string): number[] => ['a', 'b', 'c'].map(s => s === site ? 2 : 100)
  return {
    ...emptyPlacementTable(),
    model: { version: 3, trainedAt: '2026-01-01T00:00:00.000Z', embedder: 'ngram', examples: 10 },
    sites: ['a', 'b', 'c'],
    gateways: GWS.map(g => ({ id: g.id, cost: cost(g.site) })),
    prior: [1, 1, 1],
    volumes: { vc: [0.1, 0.1, 5] },
    origins: { a: [2, 0, 0] },
    ...over
  }
}

t.test('no model: the origin site first, then distinct sites, ties by rendezvous; no site: hashing', async t => {
  const p = new FirstTouchPlacer(GWS)
  const heads = new Set<string>()
  for (let i = 0; i < 50; i++) {
    const set = p.chooseReplicaSet('v', `b${i}`, 'b', 3)
    t.equal(set.length, 3)
    t.equal(siteOf(set[0] as string), 'b')
    t.same(new Set(set.map(siteOf)).size, 3, 'three distinct sites')
    heads.add(set[0] as string)
  }
  t.same([...heads].sort(), ['b1', 'b2'], 'both of the site\'s gateways take new blocks')
  const nodes = GWS.map(g => rendezvousNode(g.id))
  for (let i = 0; i < 20; i++) t.equal(p.chooseReplicaSet('v', `h${i}`, undefined, 1)[0], rendezvousPick(`v/h${i}`, nodes), 'hash = the proxy\'s default')
  t.same(p.counts, { model: 0, origin: 50, hash: 20 })
})

t.test('eligibility: unhealthy and excluded gateways are skipped; none eligible ranks all', async t => {
  const down = new Set(['b1', 'b2'])
  const p = new FirstTouchPlacer(GWS, id => !down.has(id))
  const set = p.chooseReplicaSet('v', 'x', 'b', 2)
  t.notOk(set.some(id => down.has(id)), 'no down gateway')
  t.equal(p.counts.hash, 1, 'the site has no eligible gateway: hashing')
  p.setTable({ ...emptyPlacementTable(['a1', 'a2', 'c1']) })
  down.clear()
  t.same(p.chooseReplicaSet('v', 'y', 'a', 2).map(siteOf), ['b', 'b'], 'excluded by the planner: not chosen; fill from the same site once sites run out')
  down.add('b1'); down.add('b2')
  t.equal(p.chooseReplicaSet('v', 'z', 'a', 1).length, 1, 'nothing eligible: still an answer (panic mode)')
})

t.test('a model table ranks by predicted cost: volume history, origin, prior', async t => {
  const p = new FirstTouchPlacer(GWS)
  p.setTable(placementTableSchema.parse(table()))
  t.equal(siteOf(p.chooseReplicaSet('vc', 'n1', 'b', 1)[0] as string), 'c', 'volume vc is read at site c')
  t.equal(siteOf(p.chooseReplicaSet('unknown', 'n1', 'a', 1)[0] as string), 'a', 'unknown volume: prior + origin a')
  t.same(p.chooseReplicaSet('vc', 'n2', 'b', 3).map(siteOf)[0], 'c')
  t.equal(new Set(p.chooseReplicaSet('vc', 'n2', 'b', 3).map(siteOf)).size, 3)
  t.equal(p.counts.model, 4)
  t.equal(p.current?.model?.version, 3)
})

t.test('the table schema refuses vectors of the wrong length', async t => {
  t.notOk(placementTableSchema.safeParse(table({ volumes: { v: [1, 2] } })).success)
  t.notOk(placementTableSchema.safeParse({ format: 'x' }).success)
  t.ok(placementTableSchema.safeParse(table()).success)
})

/**
 * The definition the placer's selection must keep (it folds the table at swap and selects R
 * instead of sorting): expected cost (volume or prior + origin)·cost / Σ shares, ties by
 * rendezvous order; then R at distinct sites among the eligible, then any eligible; nothing
 * eligible: the ranking as it is.
 */
function reference (gws: Array<{ id: string, site: string }>, t: PlacementTable, volume: string, block: string, origin: string, R: number, ok: (id: string) => boolean): string[] {
  const kh = hashBlock(volume, block)
  const base = t.volumes[volume] ?? t.prior
  const o = t.origins[origin]
  const mix = base.map((v, s) => v + (o?.[s] ?? 0))
  const sum = mix.reduce((a, b) => a + b, 0)
  const ranked = gws.map(g => {
    const cv = t.gateways.find(x => x.id === g.id)?.cost
    const cost = cv === undefined || sum <= 0 ? Infinity : mix.reduce((a, m, s) => a + m * (cv[s] as number), 0) / sum
    return { ...g, cost, score: rendezvousScore(kh, rendezvousNode(g.id)) }
  }).sort((a, b) => a.cost !== b.cost ? a.cost - b.cost : b.score - a.score)
  const eligible = ranked.filter(g => ok(g.id) && !t.exclude.includes(g.id))
  if (eligible.length === 0) return ranked.slice(0, R).map(g => g.id)
  const out: typeof ranked = []
  for (const g of eligible) if (out.length < R && !out.some(x => x.site === g.site)) out.push(g)
  for (const g of eligible) if (out.length < R && !out.includes(g)) out.push(g)
  return out.map(g => g.id)
}

t.test('the selection is the ranking: random tables, health and R against the definition', async t => {
  let seed = 11
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32 }
  const sites = ['a', 'b', 'c', 'd']
  let mismatches = 0
  let checked = 0
  for (let round = 0; round < 40; round++) {
    const gws = Array.from({ length: 2 + Math.floor(rnd() * 10) }, (_, i) => ({ id: `g${i}`, site: sites[Math.floor(rnd() * sites.length)] as string }))
    // Some gateways of a site share a cost vector (ties), one gateway may be unknown to the table.
    const siteCost = Object.fromEntries(sites.map(s => [s, sites.map(x => x === s ? 2 : Math.round(20 + rnd() * 100))]))
    const known = gws.filter(() => rnd() > 0.1)
    const tbl = placementTableSchema.parse(table({
      sites,
      gateways: known.map(g => ({ id: g.id, cost: rnd() < 0.5 ? siteCost[g.site] as number[] : sites.map(() => Math.round(rnd() * 200)) })),
      exclude: gws.filter(() => rnd() < 0.15).map(g => g.id),
      prior: sites.map(() => rnd() < 0.2 ? 0 : rnd()),
      volumes: { v1: sites.map(() => rnd() * 3), v0: sites.map(() => 0) },
      origins: { a: sites.map(() => rnd()), b: sites.map(() => 0) }
    })) as PlacementTable
    const down = new Set(gws.filter(() => rnd() < 0.2).map(g => g.id))
    const ok = (id: string): boolean => !down.has(id)
    const p = new FirstTouchPlacer(gws, ok)
    p.setTable(tbl)
    for (let k = 0; k < 25; k++) {
      const volume = ['v1', 'v0', 'vx'][k % 3] as string
      const origin = ['a', 'b', 'c'][k % 3] as string
      const R = 1 + (k % 3)
      const got = p.chooseReplicaSet(volume, `blk${k}`, origin, R)
      const want = reference(gws, tbl, volume, `blk${k}`, origin, Math.min(R, gws.length), ok)
      checked++
      if (got.join() !== want.join()) { mismatches++; if (mismatches < 5) t.same(got, want, `round ${round} ${volume} ${origin} R=${R}`) }
    }
  }
  t.equal(mismatches, 0, `${checked} decisions as the definition ranks them`)
})
