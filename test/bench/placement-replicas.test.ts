import t from 'tap'
import { addCopies, ferry, hashing, nearestMember, options, summarise, type Access, type Setup } from '../../bench/placement.js'
import { latencyMatrix } from '../../planner/affinity/index.js'
import { CachingEmbedder, NgramHashEmbedder } from '../../planner/partition/embedder.js'

/**
 * Issue 20, `npm run bench -- placement --replicas 2`: every block held by R distinct gateways,
 * every copy counted against the per-gateway capacity, each read served by the set's nearest
 * member. A small synthetic fleet (four sites, one gateway each) whose capacity binds.
 */
function synthetic (blocks: number, capacity: number): Setup {
  const sites = ['na-east', 'na-west', 'europe', 'asia']
  const between = { 'na-east': { 'na-west': 60, europe: 90, asia: 170 }, 'na-west': { europe: 90, asia: 110 }, europe: { asia: 200 } }
  const latency = latencyMatrix(between, { sameSiteMs: 2, defaultMs: 200 })
  const G = sites.length
  const lat = new Float64Array(G * G)
  for (let a = 0; a < G; a++) for (let g = 0; g < G; g++) lat[a * G + g] = latency.get(sites[a] as string, sites[g] as string)
  const bs = Array.from({ length: blocks }, (_, b) => {
    const volume = `v${b % 10}`
    return { volume, id: `b${b}`, url: `/d${b % 10}/f${b}`, meta: { volume, block: `b${b}`, path: `/d${b % 10}/f${b}`, name: `f${b}` }, bytes: 1000 + b }
  })
  // Two hours of reads; most of a volume's reads from one site (its "home"), the rest anywhere.
  let x = 7
  const rnd = (): number => { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; return x / 2 ** 32 }
  const accesses: Access[] = []
  for (let i = 0; i < 4000; i++) {
    const block = Math.floor(rnd() * blocks)
    const site = rnd() < 0.7 ? (block % 10) % G : Math.floor(rnd() * G)
    accesses.push({ at: 1_000_000 + i * 1800, site, block, write: false, client: i % 50 })
  }
  return { sites, gateways: sites.map(s => `gw-${s}`), gatewaySite: sites.map((_, i) => i), lat, latency, accesses, blocks: bs, capacity, hosts: 50, volumes: 10, skipped: 0 }
}

t.test('hashing at R = 2: the top two rendezvous gateways, reads at the nearer one', async t => {
  const s = synthetic(120, 1000)
  const one = hashing(s, 1)
  const two = hashing(s, 2)
  const copies = two.extra?.finalCopiesPerGateway as Record<string, number>
  t.equal(Object.values(copies).reduce((a, b) => a + b, 0), 2 * 120, 'two copies of every block')
  // The set's head is where R = 1 puts the block, so a second copy never makes a read slower.
  let faster = 0
  s.accesses.forEach((a, i) => {
    const l1 = s.lat[a.site * 4 + (one.served[i] as number)] as number
    const l2 = s.lat[a.site * 4 + (two.served[i] as number)] as number
    if (l2 > l1) t.fail(`access ${i} slower at R = 2`)
    if (l2 < l1) faster++
  })
  t.ok(faster > 0, 'some reads are served by the second member')
  t.ok((summarise(s, two).meanMs as number) < (summarise(s, one).meanMs as number))
})

t.test('ferry at R = 2: sets of two distinct gateways within capacity', async t => {
  // 120 blocks × 2 copies in 4 × 66 = 264 slots: the preferred gateways fill up.
  const s = synthetic(120, 66)
  const r = await ferry(s, options(['--replicas', '2']), { partition: true, rebalance: true }, new CachingEmbedder(new NgramHashEmbedder()))
  const sets = r.replicaSets as ReadonlyArray<readonly number[] | undefined>
  const count = [0, 0, 0, 0]
  for (const set of sets) {
    if (set === undefined) continue
    t.equal(new Set(set).size, 2, 'two distinct members')
    for (const g of set) count[g]!++
  }
  t.equal(sets.filter(x => x !== undefined).length, 120, 'every block placed')
  t.ok(count.every(c => c <= 66), `every copy counts against capacity: ${count.join(',')}`)
  t.same(Object.values(r.extra?.finalBlocksPerGateway as Record<string, number>), count, 'the run\'s own count agrees')
  t.ok(count.some(c => c === 66), 'capacity binds somewhere (the test exercises it)')
  t.ok(r.moves > 0, 'the live set rounds moved members')
  t.ok((summarise(s, r).meanMs as number) < (summarise(s, hashing(s, 2)).meanMs as number), 'ferry beats hashing at R = 2 on a skewed workload')
})

t.test('nearest member: lowest latency from the client site, ties to the earlier member', async t => {
  const s = synthetic(1, 10)
  t.equal(nearestMember(s, [0, 2], 2), 2, 'a europe client reads the europe member')
  t.equal(nearestMember(s, [2, 3], 0), 2, 'na-east: europe (90) before asia (170)')
  // na-west → na-east 60, → europe 90: east; europe → na-east and na-west both 90: the head.
  t.equal(nearestMember(s, [1, 0], 2), 1, 'a tie goes to the head')
  t.equal(nearestMember(s, [0, 1], 2), 0, 'a tie goes to the head')
})

t.test('a copy over capacity or a short set fails the run', async t => {
  const s = synthetic(1, 1)
  const count = new Int32Array(4)
  addCopies(s, count, [0, 1], 2)
  t.throws(() => addCopies(s, count, [0, 2], 2), /full/)
  t.throws(() => addCopies(s, count, [3], 2), /not 2 distinct/)
  t.throws(() => addCopies(s, count, [3, 3], 2), /not 2 distinct/)
})
