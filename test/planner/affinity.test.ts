import t from 'tap'
import { FerryError } from '../../lib/errors.js'
import { rendezvousNode, rendezvousRank } from '../../lib/rendezvous.js'
import { mergeScores, decayScores } from '../../state/affinity.js'
import { AffinityScorer, AffinityTable, latencyMatrix, NO_GATEWAY, type GatewayInfo } from '../../planner/affinity/index.js'

// The four-site set-up.
const LAT = latencyMatrix({
  'na-east': { 'na-west': 60, europe: 90, asia: 170 },
  'na-west': { europe: 90, asia: 110 },
  europe: { asia: 200 }
}, { sameSiteMs: 2, defaultMs: 150 })
const SITES = ['na-east', 'na-west', 'europe', 'asia']

function gw (id: string, site: string, extra: Partial<GatewayInfo> = {}): GatewayInfo {
  return { id, site, capacityBytes: 0, usedBytes: 0, healthy: true, ...extra }
}
const FLEET = [gw('g-east', 'na-east'), gw('g-west', 'na-west'), gw('g-eu', 'europe'), gw('g-asia', 'asia')]

function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => { a = (Math.imul(a, 1664525) + 1013904223) >>> 0; return a / 2 ** 32 }
}

t.test('latencyMatrix: symmetric lookup, same-site and default values, validation', async t => {
  t.equal(LAT.get('na-east', 'asia'), 170)
  t.equal(LAT.get('asia', 'na-east'), 170, 'the mirror of a written pair')
  t.equal(LAT.get('europe', 'europe'), 2, 'same site')
  t.equal(LAT.get('mars', 'europe'), 150, 'unknown pair')
  t.equal(LAT.get('', ''), 150, 'clients in no site get the default even "to themselves"')
  const asym = latencyMatrix({ a: { b: 10 }, b: { a: 30 } }, { sameSiteMs: 1, defaultMs: 99 })
  t.equal(asym.get('a', 'b'), 10)
  t.equal(asym.get('b', 'a'), 30, 'an explicit entry in each direction wins over the mirror')
  const same = latencyMatrix({ a: { a: 5 } }, { sameSiteMs: 1, defaultMs: 99 })
  t.equal(same.get('a', 'a'), 5, 'an explicit same-site entry wins')
  for (const bad of [-1, NaN, Infinity]) {
    t.throws(() => latencyMatrix({ a: { b: bad } }, { sameSiteMs: 1, defaultMs: 2 }), { code: 'FERRY_AFFINITY_BAD_INPUT' })
  }
  t.throws(() => latencyMatrix({}, { sameSiteMs: -2, defaultMs: 2 }), FerryError)
})

t.test('preferred: order and cost follow site scores and latencies', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const asia = s.preferred({ asia: 5 }, FLEET)
  t.same(asia.map(p => p.gateway), ['g-asia', 'g-west', 'g-east', 'g-eu'])
  t.same(asia.map(p => p.costMs), [2, 110, 170, 200], 'cost = latency from the only site')

  // 3 parts europe, 1 part na-east: mean latency per gateway.
  const mixed = s.preferred({ europe: 3, 'na-east': 1 }, FLEET)
  const expect = {
    'g-eu': (3 * 2 + 1 * 90) / 4,
    'g-east': (3 * 90 + 1 * 2) / 4,
    'g-west': (3 * 90 + 1 * 60) / 4,
    'g-asia': (3 * 200 + 1 * 170) / 4
  }
  t.same(mixed.map(p => p.gateway), ['g-eu', 'g-east', 'g-west', 'g-asia'])
  for (const p of mixed) t.equal(p.costMs, expect[p.gateway as keyof typeof expect], p.gateway)

  // Only the proportions matter: scaling every score leaves the answer unchanged.
  t.same(s.preferred({ europe: 3e-9, 'na-east': 1e-9 }, FLEET).map(p => p.gateway), mixed.map(p => p.gateway))
  // The balance tips where expected latency says: na-east ≥ 55% of traffic beats europe's pull.
  t.equal(s.preferred({ europe: 45, 'na-east': 55 }, FLEET)[0]?.gateway, 'g-east')
  t.equal(s.preferred({ europe: 55, 'na-east': 45 }, FLEET)[0]?.gateway, 'g-eu')
  t.equal(s.preferred({ europe: 1, 'na-east': 0, asia: -4 }, FLEET)[0]?.gateway, 'g-eu', 'zero and negative scores are ignored')
})

t.test('preferred: health and capacity are respected', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const fleet = [gw('g-east', 'na-east', { healthy: false }), gw('g-west', 'na-west'), gw('g-eu', 'europe', { capacityBytes: 1000, usedBytes: 900 }), gw('g-asia', 'asia')]
  t.same(s.preferred({ 'na-east': 1 }, fleet).map(p => p.gateway), ['g-west', 'g-eu', 'g-asia'], 'unhealthy gateway left out')
  t.same(s.preferred({ europe: 1 }, fleet, { sizeBytes: 100 }).map(p => p.gateway), ['g-eu', 'g-west', 'g-asia'], 'exactly enough room still fits')
  t.notOk(s.preferred({ europe: 1 }, fleet, { sizeBytes: 101 }).some(p => p.gateway === 'g-eu'), 'a full gateway is left out')
  t.equal(s.preferred({ europe: 1 }, fleet, { sizeBytes: 101, current: 'g-eu' })[0]?.gateway, 'g-eu', '… unless the block is already there')
  t.same(s.preferred({ europe: 1 }, fleet.map(g => ({ ...g, healthy: false }))), [], 'no healthy gateway: empty list')

  // healthScore: a penalty of healthPenaltyMs × (1 - h).
  const p = new AffinityScorer({ latency: LAT, healthPenaltyMs: 100 })
  const degrading = [gw('g-east', 'na-east', { healthScore: 0.5 }), gw('g-west', 'na-west')]
  t.same(p.preferred({ 'na-east': 1 }, degrading).map(x => [x.gateway, x.costMs]), [['g-east', 52], ['g-west', 60]], 'still first at health 0.5')
  degrading[0]!.healthScore = 0.3
  t.same(p.preferred({ 'na-east': 1 }, degrading).map(x => [x.gateway, x.costMs]), [['g-west', 60], ['g-east', 72]], 'second at health 0.3')
  t.throws(() => new AffinityScorer({ latency: LAT, healthPenaltyMs: -1 }), { code: 'FERRY_AFFINITY_BAD_INPUT' })
})

t.test('preferred: cost ties go to rendezvous order of the block key', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const nodes = FLEET.map(g => rendezvousNode(g.id))
  const firsts = new Set<string>()
  for (let i = 0; i < 50; i++) {
    const key = `vol/blk-${i}`
    const got = s.preferred({}, FLEET, { key }).map(p => p.gateway)
    t.same(got, rendezvousRank(key, nodes), key)
    firsts.add(got[0] as string)
  }
  t.equal(firsts.size, 4, 'cold blocks spread over every gateway, as hashing does')
})

t.test('hostAffinity: shares per subset sum to 1 and credit each block to its best gateway', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const entries: Array<{ volume: string, block: string, scores: Record<string, number> }> = [
    { volume: 'v1', block: 'aa1', scores: { europe: 6 } },
    { volume: 'v1', block: 'aa2', scores: { asia: 2 } },
    { volume: 'v1', block: 'bb1', scores: { europe: 1, 'na-east': 1 } }, // tie between g-eu and g-east
    { volume: 'v2', block: 'x', scores: { 'na-west': 3 } },
    { volume: 'v3', block: 'y', scores: {} },
    { volume: 'v3', block: 'z', scores: {} }
  ]
  const byVol = s.hostAffinity(entries, FLEET, { by: 'volume' })
  t.same([...byVol.keys()].sort(), ['v1', 'v2', 'v3'])
  for (const [subset, shares] of byVol) {
    const sum = [...shares.values()].reduce((a, b) => a + b, 0)
    t.ok(Math.abs(sum - 1) < 1e-12, `${subset} sums to 1`)
  }
  t.ok((byVol.get('v1')?.get('g-eu') ?? 0) >= 6 / 10, 'v1: at least the europe block goes to g-eu')
  t.equal(byVol.get('v1')?.get('g-asia'), 2 / 10)
  t.same([...byVol.get('v2')!], [['g-west', 1]])
  const v3 = byVol.get('v3')!
  t.equal([...v3.values()].reduce((a, b) => a + b, 0), 1, 'a subset with no recent accesses counts blocks')

  const byPrefix = s.hostAffinity(entries, FLEET, { by: 'prefix', length: 2 })
  t.same([...byPrefix.keys()].sort(), ['v1/aa', 'v1/bb', 'v2/x', 'v3/y', 'v3/z'])
  t.same([...byPrefix.get('v1/aa')!].sort(), [['g-asia', 0.25], ['g-eu', 0.75]])
  t.throws(() => s.hostAffinity(entries, FLEET, { by: 'prefix', length: 0 }), { code: 'FERRY_AFFINITY_BAD_INPUT' })
})

t.test('the compiled kernel ranks exactly as preferred() on random blocks', async t => {
  const s = new AffinityScorer({ latency: LAT, healthPenaltyMs: 80 })
  const r = rng(42)
  const sites = ['', ...SITES]
  let checked = 0
  for (let round = 0; round < 20; round++) {
    const fleet = FLEET.map(g => ({
      ...g,
      healthy: r() > 0.15,
      capacityBytes: r() > 0.5 ? 0 : 1000,
      usedBytes: Math.floor(r() * 1000),
      ...(r() > 0.5 ? { healthScore: r() } : {})
    }))
    const kernel = s.compile(sites, fleet)
    const out = new Uint8Array(fleet.length)
    for (let i = 0; i < 200; i++) {
      const scores = new Float64Array(sites.length)
      const rec: Record<string, number> = {}
      for (let j = 0; j < sites.length; j++) if (r() > 0.5) { scores[j] = r() * 10; rec[sites[j] as string] = scores[j] as number }
      const size = Math.floor(r() * 500)
      const cur = Math.floor(r() * (fleet.length + 1))
      const current = cur < fleet.length ? fleet[cur]!.id : undefined
      const n = kernel.rank(scores, 0, out, 0, size, cur < fleet.length ? cur : NO_GATEWAY)
      const want = s.preferred(rec, fleet, { sizeBytes: size, ...(current !== undefined ? { current } : {}) })
      // Without a key both orders break exact ties differently; compare costs position by position.
      t.equal(n, want.length)
      const gotCosts = [...out.subarray(0, n)].map(g => kernel.costOf(scores, 0, g))
      if (gotCosts.some((c, k) => Math.abs(c - want[k]!.costMs) > 1e-9)) t.fail(`round ${round} block ${i}: ${JSON.stringify({ gotCosts, want })}`)
      for (let k = n; k < fleet.length; k++) if (out[k] !== NO_GATEWAY) t.fail('slots past the eligible ones are NO_GATEWAY')
      checked++
    }
  }
  t.equal(checked, 4000)
})

t.test('AffinityTable: forward-decayed scores equal the store\'s decayed merge', async t => {
  const H = 60_000
  const table = new AffinityTable({ sites: SITES, halfLifeMs: H, now: 0 })
  const state = { scores: {} as Record<string, number>, scoredAt: 0 }
  const r = rng(7)
  // Records over 40 half-lives (forces a few rescales of the Float32 columns), out of order.
  const times = Array.from({ length: 2000 }, (_, i) => i * 1200 + Math.floor(r() * 5000))
  for (const at of times) {
    const site = SITES[Math.floor(r() * 4)] as string
    table.record('vol', 'b', site, r() < 0.2, at)
    mergeScores(state, new Map([[site, 1]]), at, H)
  }
  const now = 2000 * 1200 + 10_000
  const got = table.scores('vol', 'b', now)!
  const want = decayScores(state, now, H)
  for (const site of SITES) {
    const w = want[site] ?? 0
    t.ok(Math.abs((got[site] ?? 0) - w) <= 1e-5 * Math.max(1, w), `${site}: ${got[site]} ≈ ${w}`)
  }
  const e = table.get('vol', 'b', now)!
  t.equal(e.reads + e.writes, 2000)
  t.equal(e.lastAccess, Math.max(...times))
  t.equal(table.scores('vol', 'missing', now), undefined)
})

t.test('AffinityTable: deltas, store entries, preferred lists and move candidates', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const table = new AffinityTable({ sites: SITES, halfLifeMs: 600_000, now: 1_000 })
  table.mergeDelta({ volume: 'v', block: 'eu', site: 'europe', reads: 9, writes: 1, lastAccessMs: 2_000 })
  table.mergeDelta({ volume: 'v', block: 'eu', site: 'asia', reads: 1, writes: 0, lastAccessMs: 2_000 })
  table.load({ volume: 'v', block: 'asia', scores: { asia: 4, 'na-west': 1 }, scoredAt: 2_000, reads: 5, writes: 0, lastAccess: 2_000, preferred: [] })
  table.mergeDelta({ volume: 'v', block: 'weird', site: 'no-such-site', reads: 1, writes: 0, lastAccessMs: 2_000, weight: 3 })
  const weirdScores = table.scores('v', 'weird', 2_000)!
  t.same(Object.keys(weirdScores), [''], 'an unknown site counts in slot ""…')
  t.ok(Math.abs(weirdScores['']! - 3) < 1e-6, '… with its weight')
  table.setBlock('v', 'eu', { current: 'g-asia', sizeBytes: 100 })
  table.setBlock('v', 'asia', { current: 'g-asia', sizeBytes: 100 })
  t.equal(table.current('v', 'eu'), 'g-asia')

  const kernel = s.compile(table.sites, FLEET)
  t.equal(table.recomputePreferred(kernel), 3)
  t.same(table.preferred('v', 'eu'), s.preferred(table.scores('v', 'eu', 2_000)!, FLEET).map(p => p.gateway))
  t.same(table.preferred('v', 'asia'), ['g-asia', 'g-west', 'g-east', 'g-eu'])
  const weird = table.preferred('v', 'weird')
  t.same(weird, rendezvousRank('v/weird', FLEET.map(g => rendezvousNode(g.id))), 'only the default latency: rendezvous order')

  const moves = table.moveCandidates(kernel, { now: 2_000 })
  t.same(moves.map(m => [m.block, m.from, m.to]), [['eu', 'g-asia', 'g-eu']], 'only the misplaced block')
  const m = moves[0]!
  t.ok(Math.abs(m.gainMs - ((9 * 200 + 1 * 2 + 1 * 200) / 11 - (10 * 2 + 1 * 200) / 11)) < 1e-3, `gain ${m.gainMs}`)
  t.equal(table.moveCandidates(kernel, { now: 2_000, marginMs: m.gainMs + 1 }).length, 0, 'a margin above the gain holds the block')
  t.equal(table.moveCandidates(kernel, { now: 2_000, marginRatio: 0.99 }).length, 0, 'so does a relative margin')

  // The best gateway is full: the block stays, and no candidate is produced.
  const full = FLEET.map(g => g.id === 'g-eu' ? { ...g, capacityBytes: 150, usedBytes: 100 } : g)
  const k2 = s.compile(table.sites, full)
  // europe 10, asia 1: g-west (10·90 + 110)/11 = 91.8 beats g-east (10·90 + 170)/11 = 97.3.
  t.equal(table.moveCandidates(k2, { now: 2_000 })[0]?.to, 'g-west', 'next best with room')
  // The current gateway fails: every block on it is a candidate with infinite gain.
  const down = FLEET.map(g => g.id === 'g-asia' ? { ...g, healthy: false } : g)
  const k3 = s.compile(table.sites, down)
  const evac = table.moveCandidates(k3, { now: 2_000 })
  t.same(evac.map(c => c.block).sort(), ['asia', 'eu'])
  t.ok(evac.every(c => c.gainMs === Infinity))

  table.recomputePreferred(k3)
  const host = table.hostAffinity({ by: 'volume' }, 2_000).get('v')!
  t.ok(Math.abs([...host.values()].reduce((a, b) => a + b, 0) - 1) < 1e-9)
  t.same([...table.entries(2_000)].map(e => e.block).sort(), ['asia', 'eu', 'weird'])
  t.ok(table.delete('v', 'weird'))
  t.notOk(table.delete('v', 'weird'))
  t.equal(table.size, 2)
  t.same(table.preferred('v', 'eu'), s.preferred(table.scores('v', 'eu', 2_000)!, down).map(p => p.gateway), 'rows moved by delete keep their lists')
  t.throws(() => table.recomputePreferred(s.compile(['', 'europe'], FLEET)), { code: 'FERRY_AFFINITY_BAD_INPUT' })
})

t.test('AffinityTable: bursts are detected from the short score', async t => {
  const table = new AffinityTable({ sites: SITES, halfLifeMs: 600_000, burstHalfLifeMs: 10_000, burstFactor: 4, now: 0 })
  // A steady trickle: one access a minute for an hour.
  for (let i = 0; i < 60; i++) table.record('v', 'b', 'europe', false, i * 60_000)
  t.notOk(table.bursting('v', 'b', 60 * 60_000), 'steady traffic is not a burst')
  // Then 50 accesses in five seconds.
  for (let i = 0; i < 50; i++) table.record('v', 'b', 'europe', false, 3_600_000 + i * 100)
  t.ok(table.bursting('v', 'b', 3_605_000), 'a sudden burst is')
  t.notOk(table.bursting('v', 'b', 3_605_000 + 120_000), 'and it ends when the short score decays')
})

t.test('AffinityTable: memory stays bounded by evicting the coldest blocks', async t => {
  const table = new AffinityTable({ sites: SITES, halfLifeMs: 600_000, maxBlocks: 1000, initialCapacity: 16, now: 0 })
  // A hot set of 50 blocks, touched often, and a stream of one-off blocks.
  for (let i = 0; i < 20_000; i++) {
    table.record('hot', `h${i % 50}`, 'europe', false, i)
    table.record('cold', `c${i}`, 'asia', false, i)
  }
  t.ok(table.size <= 1000, `size ${table.size}`)
  t.equal(table.evicted + table.size, 20_050, 'every block is either tracked or counted as evicted')
  let hot = 0
  for (let i = 0; i < 50; i++) if (table.has('hot', `h${i}`)) hot++
  t.equal(hot, 50, 'the hot blocks survive')
  const s = new AffinityScorer({ latency: LAT })
  table.recomputePreferred(s.compile(table.sites, FLEET))
  t.equal(table.preferred('hot', 'h1')[0], 'g-eu', 'rows stay consistent after evictions')
})

t.test('planMoves: budget, room, and making room by displacing cold blocks', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const table = new AffinityTable({ sites: SITES, halfLifeMs: 600_000, now: 0 })
  // Two full gateways, each holding a block that went cold where it belongs and a hot block
  // that wants to be on the other one.
  table.record('v', 'cold-eu', 'europe', false, 0)
  table.record('v', 'cold-asia', 'asia', false, 0)
  for (let i = 0; i < 20; i++) table.record('v', 'asian', 'asia', false, 3_600_000 + i)
  for (let i = 0; i < 30; i++) table.record('v', 'euro', 'europe', false, 3_600_000 + i)
  table.setBlock('v', 'cold-eu', { current: 'g-eu', sizeBytes: 100 })
  table.setBlock('v', 'asian', { current: 'g-eu', sizeBytes: 100 })
  table.setBlock('v', 'cold-asia', { current: 'g-asia', sizeBytes: 100 })
  table.setBlock('v', 'euro', { current: 'g-asia', sizeBytes: 100 })
  const fleet = [
    gw('g-east', 'na-east', { capacityBytes: 1000, usedBytes: 0 }),
    gw('g-west', 'na-west', { capacityBytes: 1000, usedBytes: 0 }),
    gw('g-eu', 'europe', { capacityBytes: 200, usedBytes: 200 }),
    gw('g-asia', 'asia', { capacityBytes: 200, usedBytes: 200 })
  ]
  const now = 3_600_100
  const kernel = s.compile(table.sites, fleet)
  t.same(table.moveCandidates(kernel, { marginRatio: 0.25, now }).map(c => `${c.block}→${c.to}`), ['euro→g-west', 'asian→g-west'], 'moveCandidates settles for the best target with room')
  const plan = table.planMoves(kernel, { marginRatio: 0.25, marginMs: 1, now })
  const moves = plan.map(m => `${m.block}:${m.from}→${m.to}:${m.reason}`)
  t.same(moves, [
    'cold-eu:g-eu→g-east:make-room', // the coldest block makes room (europe: g-east and g-west tie at 90 ms)
    'euro:g-asia→g-eu:gain', // euro first: more traffic, more benefit
    'asian:g-eu→g-asia:gain' // euro's move freed its place: no displacement needed
  ])
  t.ok(plan[1]!.benefit > plan[2]!.benefit)
  // Replaying the plan in order never overfills a gateway.
  const used = new Map(fleet.map(g => [g.id, g.usedBytes]))
  for (const m of plan) {
    used.set(m.from, used.get(m.from)! - m.sizeBytes)
    used.set(m.to, used.get(m.to)! + m.sizeBytes)
    t.ok(used.get(m.to)! <= fleet.find(g => g.id === m.to)!.capacityBytes, `${m.to} within capacity after ${m.block}`)
  }
  t.same(table.planMoves(kernel, { marginRatio: 0.25, now, displace: false }), [], 'without displacement nothing fits')
  t.equal(table.planMoves(kernel, { marginRatio: 0.25, now, maxMoves: 1 }).length, 0, 'a displacement pair does not fit a budget of one move')
  t.equal(table.planMoves(kernel, { marginRatio: 0.25, now, maxMoves: 2 }).length, 2, 'the budget counts displacements')
  t.equal(table.planMoves(kernel, { marginRatio: 0.25, now, maxBytes: 150 }).length, 0, 'and bytes')
  t.equal(table.planMoves(kernel, { marginRatio: 0.99, now }).length, 0, 'the margin holds every block')
})

t.test('priors: cold blocks drift to where their traffic is expected, hot ones follow their own', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const table = new AffinityTable({ sites: SITES, halfLifeMs: 60_000, now: 0, priorWeight: 1 })
  for (let i = 0; i < 3; i++) table.record('v', 'b', 'asia', false, 0)
  table.setBlock('v', 'b', { current: 'g-asia', sizeBytes: 1 })
  table.setPrior({ 'na-west': 0.6, 'na-east': 0.4 })
  const kernel = s.compile(table.sites, FLEET)
  table.recomputePreferred(kernel, 1_000)
  t.equal(table.preferred('v', 'b')[0], 'g-asia', 'fresh traffic outweighs the prior')
  t.equal(table.moveCandidates(kernel, { now: 1_000 }).length, 0)
  table.recomputePreferred(kernel, 600_000)
  t.equal(table.preferred('v', 'b')[0], 'g-west', 'ten half-lives later (3 accesses → 0.003) the prior decides')
  t.same(table.moveCandidates(kernel, { now: 600_000 }).map(c => c.to), ['g-west'])
  t.same(table.planMoves(kernel, { now: 600_000 }).map(c => c.to), ['g-west'])
  // A volume prior overrides the global one, a block prior overrides both.
  table.setVolumePrior('v', { europe: 1 })
  table.recomputePreferred(kernel, 600_000)
  t.equal(table.preferred('v', 'b')[0], 'g-eu')
  table.setBlockPrior('v', 'b', { 'na-east': 1 })
  table.recomputePreferred(kernel, 600_000)
  t.equal(table.preferred('v', 'b')[0], 'g-east')
  table.setBlockPrior('v', 'b', null)
  table.recomputePreferred(kernel, 600_000)
  t.equal(table.preferred('v', 'b')[0], 'g-eu', 'cleared: back to the volume prior')
  // Without priorWeight, priors are stored but do not count.
  const plain = new AffinityTable({ sites: SITES, halfLifeMs: 60_000, now: 0 })
  plain.record('v', 'b', 'asia', false, 0)
  plain.setPrior({ 'na-west': 1 })
  plain.recomputePreferred(kernel, 600_000)
  t.equal(plain.preferred('v', 'b')[0], 'g-asia')
  t.throws(() => new AffinityTable({ sites: SITES, halfLifeMs: 1, priorWeight: -1 }), { code: 'FERRY_AFFINITY_BAD_INPUT' })
})

t.test('the volume signal: a site reading a volume pulls the volume\'s other blocks', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const make = (volumeWeight: number): AffinityTable => {
    const table = new AffinityTable({ sites: SITES, halfLifeMs: 600_000, now: 0, volumeWeight, volumeHalfLifeMs: 30_000 })
    table.record('v', 'untouched', 'na-east', false, 0) // read long ago from na-east
    table.record('w', 'other', 'na-east', false, 0)
    for (let i = 0; i < 10; i++) table.record('v', `page-${i}`, 'europe', false, 1_800_000 + i * 1000) // europe starts reading v
    return table
  }
  const kernel = s.compile(['', ...SITES], FLEET)
  const on = make(1)
  on.recomputePreferred(kernel, 1_810_000)
  t.equal(on.preferred('v', 'untouched')[0], 'g-eu', 'with λ = 1 the volume\'s untouched block follows europe')
  t.equal(on.preferred('w', 'other')[0], 'g-east', 'another volume is not affected')
  on.recomputePreferred(kernel, 1_810_000 + 600_000)
  t.equal(on.preferred('v', 'untouched')[0], 'g-east', 'the signal fades with its short half-life')
  const off = make(0)
  off.recomputePreferred(kernel, 1_810_000)
  t.equal(off.preferred('v', 'untouched')[0], 'g-east', 'off by default')
})

t.test('planMoves: headroom keeps room for new blocks without ping-pong', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const table = new AffinityTable({ sites: SITES, halfLifeMs: 60_000, now: 0, priorWeight: 1 })
  table.setPrior({ 'na-west': 1 })
  // g-west is full: eight blocks, the older the colder; g-east has room.
  for (let i = 0; i < 8; i++) {
    table.record('v', `b${i}`, 'na-west', false, i * 60_000)
    table.setBlock('v', `b${i}`, { current: 'g-west', sizeBytes: 10 })
  }
  const fleet = [
    gw('g-east', 'na-east', { capacityBytes: 1000, usedBytes: 0 }),
    gw('g-west', 'na-west', { capacityBytes: 80, usedBytes: 80 }),
    gw('g-eu', 'europe', { capacityBytes: 1000, usedBytes: 0 }),
    gw('g-asia', 'asia', { capacityBytes: 1000, usedBytes: 0 })
  ]
  const now = 8 * 60_000
  const kernel = s.compile(table.sites, fleet)
  t.same(table.planMoves(kernel, { now }), [], 'no headroom asked: nothing to do')
  const plan = table.planMoves(kernel, { now, headroom: 0.25 })
  t.same(plan.map(m => `${m.block}→${m.to}:${m.reason}`), ['b0→g-east:make-room', 'b1→g-east:make-room'], 'the two coldest leave, to the next best gateway')
  // Once moved, the prior wants them back on g-west; without headroom they would go straight back.
  for (const m of plan) table.setBlock(m.volume, m.block, { current: m.to })
  const after = fleet.map(g => g.id === 'g-west' ? { ...g, usedBytes: 60 } : g.id === 'g-east' ? { ...g, usedBytes: 20 } : g)
  const k2 = s.compile(table.sites, after)
  t.same(table.planMoves(k2, { now, headroom: 0.25 }), [], 'cold blocks do not eat into the headroom they were moved out for')
  t.same(table.planMoves(k2, { now }).map(m => m.block).sort(), ['b0', 'b1'], '(without headroom they would move back)')
  // A block with real traffic may use the headroom, and the next coldest makes way again.
  for (let i = 0; i < 5; i++) table.record('v', 'b0', 'na-west', false, now)
  t.same(table.planMoves(k2, { now, headroom: 0.25 }).map(m => `${m.block}→${m.to}:${m.reason}`), ['b0→g-west:gain', 'b2→g-east:make-room'])
})

t.test('table: blocks without scores rank in rendezvous order of volume/block, as the proxy places them; entries keep volume and block apart', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const table = new AffinityTable({ sites: ['na-east', 'na-west', 'europe', 'asia'], halfLifeMs: 1000, now: 0 })
  const nodes = FLEET.map(g => rendezvousNode(g.id))
  const blocks = Array.from({ length: 40 }, (_, i) => ({ volume: `vol-${i % 3}`, block: `b.${i}_x-${i * 7}` }))
  for (const b of blocks) table.setBlock(b.volume, b.block, { sizeBytes: 10 })
  table.recomputePreferred(s.compile(table.sites, FLEET), 0)
  for (const b of blocks) t.same(table.preferred(b.volume, b.block), rendezvousRank(`${b.volume}/${b.block}`, nodes), `${b.volume}/${b.block}`)
  t.same([...table.entries(0)].map(e => ({ volume: e.volume, block: e.block })), blocks, 'entries carry each block as {volume, block}')
  t.ok(table.delete('vol-0', 'b.0_x-0'))
  t.notOk(table.has('vol-0', 'b.0_x-0'), 'deleted')
  t.ok(table.has('vol-1', 'b.1_x-7') && table.has('vol-0', 'b.39_x-273'), 'the row moved into the hole is still found')
  t.equal(table.size, 39)
})

t.test('planMoves: minScore holds cold blocks unless their volume is pulled; the caller\'s holds; every verdict reported', async t => {
  const s = new AffinityScorer({ latency: LAT })
  const table = new AffinityTable({ sites: SITES, halfLifeMs: 600_000, now: 0 })
  // One read from asia 10 minutes ago (score 0.5) and three just now (≈ 3), both on g-east.
  table.record('v', 'once', 'asia', false, 0)
  for (let i = 0; i < 3; i++) table.record('w', 'often', 'asia', false, 600_000)
  table.setBlock('v', 'once', { current: 'g-east', sizeBytes: 1 })
  table.setBlock('w', 'often', { current: 'g-east', sizeBytes: 1 })
  const kernel = s.compile(table.sites, FLEET)
  const now = 600_000
  t.same(table.planMoves(kernel, { now }).map(m => m.block).sort(), ['often', 'once'], 'no floor: both move')
  const skipped: Record<string, number> = {}
  const verdicts: string[] = []
  const plan = table.planMoves(kernel, { now, minScore: 1, skipped, decided: (m, v) => verdicts.push(`${m.block}:${v}`) })
  t.same(plan.map(m => m.block), ['often'], 'minScore 1: the block read once half a half-life ago stays')
  t.same(skipped, { cold: 1 })
  t.same(verdicts.sort(), ['often:move', 'once:cold'])
  t.same(table.planMoves(kernel, { now, minScore: 1, pulled: v => v === 'v' }).map(m => m.block).sort(), ['often', 'once'], 'a pulled volume\'s cold block moves')
  const held: Record<string, number> = {}
  t.same(table.planMoves(kernel, { now, hold: (v, b, from) => b === 'often' && from === 'g-east' ? 'dwell' : null, skipped: held }).map(m => m.block), ['once'], 'a held block stays')
  t.same(held, { dwell: 1 })
})
