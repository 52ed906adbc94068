import t from 'tap'
import { rendezvousNode, rendezvousPick } from '../../lib/rendezvous.js'
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
