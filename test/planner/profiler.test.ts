import t from 'tap'
import { AccessProfiler, type AccessRecord, type ProfileSnapshot } from '../../planner/profiler.js'

const H = 600_000
const BUCKET = 60_000
const T0 = 1_700_000_000_000 - (1_700_000_000_000 % BUCKET) // bucket-aligned

function rec (over: Partial<AccessRecord> = {}): AccessRecord {
  return { volume: 'v', block: 'b', client: 'c1', site: 'europe', write: false, at: T0, ...over }
}

function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => { a = (Math.imul(a, 1664525) + 1013904223) >>> 0; return a / 2 ** 32 }
}

const close = (a: number, b: number, rel = 1e-9): boolean => Math.abs(a - b) <= rel * Math.max(1, Math.abs(a), Math.abs(b))

t.test('frequency: a decayed count and rate that halve every half-life', async t => {
  const p = new AccessProfiler({ halfLifeMs: H, bucketMs: BUCKET, now: T0 })
  for (let i = 0; i < 40; i++) p.record(rec({ at: T0 }))
  const now = p.block('v', 'b', T0)!
  t.ok(close(now.score, 40), `score ${now.score}`)
  t.ok(close(now.ratePerS, 40 * Math.LN2 / 600), 'rate = score·ln2/half-life')
  const later = p.block('v', 'b', T0 + H)!
  t.ok(close(later.score, 20), 'half after one half-life')
  t.ok(close(p.volume('v', T0 + 2 * H)!.score, 10), 'volumes decay the same way')
  t.equal(later.accesses, 40, 'the access count does not decay')
})

t.test('read/write mix, bytes and locality', async t => {
  const p = new AccessProfiler({ now: T0 })
  for (let i = 0; i < 10; i++) p.record(rec({ write: i < 3, bytes: 100, at: T0 + i, servedBySite: i < 6 ? 'europe' : i < 8 ? 'asia' : undefined }))
  const b = p.block('v', 'b', T0 + 10)!
  t.equal(b.reads, 7)
  t.equal(b.writes, 3)
  t.equal(b.writeShare, 0.3)
  t.equal(b.bytes, 1000)
  t.equal(b.localityKnown, 8, 'only records with a serving site count')
  t.equal(b.locality, 6 / 8)
  t.equal(p.block('v', 'b')!.block, 'b')
  const none = new AccessProfiler({ now: T0 })
  none.record(rec())
  t.equal(none.block('v', 'b', T0)!.locality, null, 'unknown when no record says where it was served')
  t.equal(none.block('v', 'missing'), undefined)
  t.equal(none.volume('missing'), undefined)
})

t.test('burstiness: steady, bursty and Poisson traffic', async t => {
  const steady = new AccessProfiler({ bucketMs: BUCKET, blockBuckets: 16, now: T0 })
  for (let i = 0; i < 10; i++) for (let j = 0; j < 5; j++) steady.record(rec({ at: T0 + i * BUCKET + j * 1000 }))
  const s = steady.block('v', 'b', T0 + 9 * BUCKET + 30_000)!.burstiness
  t.equal(s.buckets, 10)
  t.equal(s.peakToMean, 1, 'the same count every bucket')
  t.equal(s.dispersion, 0)

  const bursty = new AccessProfiler({ bucketMs: BUCKET, blockBuckets: 16, now: T0 })
  bursty.record(rec({ at: T0 }))
  for (let j = 0; j < 49; j++) bursty.record(rec({ at: T0 + 9 * BUCKET + j * 100 }))
  const b = bursty.block('v', 'b', T0 + 9 * BUCKET + 10_000)!.burstiness
  t.equal(b.buckets, 10)
  t.equal(b.peakToMean, 49 / 5, 'peak 49 over a mean of 50/10')
  t.ok(b.dispersion! > 40, `dispersion ${b.dispersion}`)

  // Silence after the last access makes the same traffic burstier, as of now.
  const quiet = steady.block('v', 'b', T0 + 15 * BUCKET)!.burstiness
  t.equal(quiet.buckets, 16)
  t.ok(quiet.peakToMean! > 1.5)

  const poisson = new AccessProfiler({ bucketMs: BUCKET, volumeBuckets: 60, now: T0 })
  const r = rng(3)
  let at = T0
  while (at < T0 + 60 * BUCKET) { at += -Math.log(1 - r()) * 3000; poisson.record(rec({ at: Math.min(at, T0 + 60 * BUCKET - 1) })) }
  const pv = poisson.volume('v', T0 + 60 * BUCKET - 1)!.burstiness
  t.ok(pv.dispersion! > 0.6 && pv.dispersion! < 1.6, `Poisson arrivals: dispersion ≈ 1 (${pv.dispersion})`)

  const one = new AccessProfiler({ now: T0 })
  one.record(rec())
  t.same(one.block('v', 'b', T0)!.burstiness.peakToMean, null, 'one bucket of history says nothing')
})

t.test('top sites and clients: Space-Saving finds the heavy hitters with bounded error', async t => {
  const p = new AccessProfiler({ blockTopK: 4, volumeTopK: 8, now: T0 })
  const r = rng(11)
  const truth = new Map<string, number>()
  for (let i = 0; i < 5000; i++) {
    // Three heavy clients (30%, 20%, 10%) and a long tail of 500 light ones.
    const x = r()
    const client = x < 0.3 ? 'heavy-a' : x < 0.5 ? 'heavy-b' : x < 0.6 ? 'heavy-c' : `tail-${Math.floor(r() * 500)}`
    truth.set(client, (truth.get(client) ?? 0) + 1)
    p.record(rec({ client, site: x < 0.5 ? 'europe' : x < 0.8 ? 'asia' : 'na-east', at: T0 }))
  }
  const v = p.volume('v', T0)!
  t.same(v.topClients.slice(0, 3).map(h => h.key), ['heavy-a', 'heavy-b', 'heavy-c'])
  t.ok(v.topClients.length <= 8, 'at most k counters')
  for (const h of v.topClients) {
    const real = truth.get(h.key) ?? 0
    t.ok(h.count - h.error <= real + 1e-9 && real <= h.count + 1e-9, `${h.key}: ${h.count - h.error} ≤ ${real} ≤ ${h.count}`)
  }
  const b = p.block('v', 'b', T0)!
  t.same(b.topSites.map(h => h.key), ['europe', 'asia', 'na-east'], 'few sites: exact, ordered')
  t.ok(Math.abs(b.topSites.reduce((a, h) => a + h.share, 0) - 1) < 1e-9, 'site shares sum to 1 when every site fits')
  t.equal(b.topSites[0]!.error, 0)
})

t.test('bounded memory: blocks and volumes are evicted coldest first and counted', async t => {
  const p = new AccessProfiler({ maxBlocks: 200, maxVolumes: 20, now: T0 })
  for (let i = 0; i < 10_000; i++) {
    p.record(rec({ volume: 'hot', block: `h${i % 10}`, at: T0 + i }))
    p.record(rec({ volume: `v${i % 100}`, block: `b${i}`, at: T0 + i }))
  }
  t.ok(p.trackedBlocks <= 200, `blocks ${p.trackedBlocks}`)
  t.ok(p.trackedVolumes <= 20, `volumes ${p.trackedVolumes}`)
  t.equal(p.trackedBlocks + p.evictedBlocks, 10_010, 'every block is tracked or counted as evicted')
  t.ok(p.evictedVolumes >= 81, `evicted volumes ${p.evictedVolumes}`)
  for (let i = 0; i < 10; i++) t.ok(p.block('hot', `h${i}`, T0 + 10_000), `hot block h${i} survives`)
  t.equal(p.records, 20_000)
  t.throws(() => new AccessProfiler({ maxBlocks: 0 }), { code: 'FERRY_PROFILE_BAD_OPTIONS' })
  t.throws(() => new AccessProfiler({ halfLifeMs: -1 }), { code: 'FERRY_PROFILE_BAD_OPTIONS' })
})

/** Canonical form of a snapshot for comparison: sorted entries, rounded numbers. */
function canon (s: ProfileSnapshot): unknown {
  const round = (x: number): number => Number(x.toPrecision(9))
  const entry = (e: ProfileSnapshot['blocks'][number]): unknown => ({
    ...e,
    score: round(e.score),
    sites: [...e.sites.items].map(([k, c, err]) => [k, round(c), round(err)]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    clients: [...e.clients.items].map(([k, c, err]) => [k, round(c), round(err)]).sort((a, b) => String(a[0]).localeCompare(String(b[0])))
  })
  const key = (e: { volume: string, block?: string }): string => e.volume + '/' + (e.block ?? '')
  return {
    ...s,
    volumes: [...s.volumes].sort((a, b) => key(a).localeCompare(key(b))).map(entry),
    blocks: [...s.blocks].sort((a, b) => key(a).localeCompare(key(b))).map(entry)
  }
}

t.test('at the bound, one-off blocks count in their volume but get no entry (doorkeeper)', async t => {
  const p = new AccessProfiler({ maxBlocks: 100, now: T0 })
  for (let i = 0; i < 5000; i++) {
    p.record(rec({ block: `hot-${i % 20}`, at: T0 + i }))
    p.record(rec({ block: `once-${i}`, at: T0 + i }))
  }
  t.ok(p.trackedBlocks <= 100, `blocks ${p.trackedBlocks}`)
  t.ok(p.unprofiled > 4000, `most one-off blocks never got an entry (${p.unprofiled})`)
  t.equal(p.volume('v', T0 + 5000)!.accesses, 10_000, 'the volume still counts every access')
  for (let i = 0; i < 20; i++) t.ok(p.block('v', `hot-${i}`, T0 + 5000), `hot-${i} tracked`)
  // A block seen twice within the doorkeeper period gets in.
  p.record(rec({ block: 'twice', at: T0 + 6000 }))
  t.notOk(p.block('v', 'twice', T0 + 6000))
  p.record(rec({ block: 'twice', at: T0 + 6001 }))
  t.ok(p.block('v', 'twice', T0 + 6001), 'admitted on its second access')
})

t.test('merge equals combined: two profilers merged summarise both streams', async t => {
  const r = rng(5)
  const records: AccessRecord[] = []
  for (let i = 0; i < 3000; i++) {
    records.push({
      volume: `v${Math.floor(r() * 4)}`,
      block: `b${Math.floor(r() * 30)}`,
      client: `c${Math.floor(r() * 6)}`,
      site: ['europe', 'asia', 'na-east'][Math.floor(r() * 3)] as string,
      ...(r() < 0.7 ? { servedBySite: 'europe' } : {}),
      write: r() < 0.25,
      at: T0 + Math.floor(r() * 40 * BUCKET),
      bytes: Math.floor(r() * 1000)
    })
  }
  // Enough counters that no sketch evicts: then merging is exact, not just within bounds.
  const opts = { now: T0, blockTopK: 8, volumeTopK: 8, blockBuckets: 16, volumeBuckets: 60 }
  const all = new AccessProfiler(opts)
  const a = new AccessProfiler(opts)
  const b = new AccessProfiler({ ...opts, now: T0 + 5 * BUCKET }) // another landmark: merge converts
  for (const x of records) all.record(x)
  // Each proxy sees its share in its own (time) order.
  const sorted = [...records].sort((x, y) => x.at - y.at)
  sorted.forEach((x, i) => (i % 3 === 0 ? b : a).record(x))
  const now = T0 + 41 * BUCKET
  a.merge(JSON.parse(JSON.stringify(b.snapshot({ now }))) as ProfileSnapshot)
  t.same(canon(a.snapshot({ now })), canon(all.snapshot({ now })))
  t.equal(a.records, all.records)
  const va = a.volume('v1', now)!
  const vall = all.volume('v1', now)!
  t.same({ ...va, score: 0, ratePerS: 0, topSites: [], topClients: [] }, { ...vall, score: 0, ratePerS: 0, topSites: [], topClients: [] })
  t.ok(close(va.score, vall.score, 1e-9))

  // With sketches that do evict, merged counts keep the Space-Saving guarantee.
  const small = { now: T0, blockTopK: 2, volumeTopK: 2 }
  const x = new AccessProfiler(small)
  const y = new AccessProfiler(small)
  const truth = new Map<string, number>()
  sorted.forEach((rc, i) => {
    if (rc.volume !== 'v0') return
    truth.set(rc.client, (truth.get(rc.client) ?? 0) + Math.pow(2, -(now - rc.at) / H))
    ;(i % 2 === 0 ? x : y).record(rc)
  })
  x.merge(y.snapshot({ now }))
  for (const h of x.volume('v0', now)!.topClients) {
    const real = truth.get(h.key) ?? 0
    t.ok(h.count + 1e-9 >= real && h.count - h.error <= real + 1e-9, `${h.key}: ${h.count - h.error} ≤ ${real} ≤ ${h.count}`)
  }
})

t.test('the burst ring is independent of arrival order', async t => {
  const r = rng(9)
  const times = Array.from({ length: 500 }, () => T0 + Math.floor(r() * 30 * BUCKET))
  const inOrder = new AccessProfiler({ now: T0, blockBuckets: 8 })
  const shuffled = new AccessProfiler({ now: T0, blockBuckets: 8 })
  for (const at of [...times].sort((a, b) => a - b)) inOrder.record(rec({ at }))
  for (const at of times) shuffled.record(rec({ at }))
  const now = T0 + 30 * BUCKET
  t.same(shuffled.snapshot({ now }).blocks[0]!.ring, inOrder.snapshot({ now }).blocks[0]!.ring)
  t.same(shuffled.block('v', 'b', now)!.burstiness, inOrder.block('v', 'b', now)!.burstiness)
})

t.test('snapshots: JSON round trip, limits and refusal of bad input', async t => {
  const p = new AccessProfiler({ now: T0 })
  for (let i = 0; i < 100; i++) p.record(rec({ block: `b${i % 10}`, at: T0 + i * 1000, write: i % 4 === 0 }))
  const snap = p.snapshot({ now: T0 + 100_000 })
  t.equal(snap.format, 'ferry-profile')
  const copy = new AccessProfiler({ now: T0 + 50_000 })
  copy.merge(JSON.parse(JSON.stringify(snap)) as ProfileSnapshot)
  t.same(canon(copy.snapshot({ now: T0 + 100_000 })), canon(snap), 'an empty profiler merged with a snapshot reproduces it')
  t.equal(p.snapshot({ now: T0, limit: 3 }).blocks.length, 3)
  t.same(p.topBlocks(2, { now: T0 + 100_000 }).map(b => b.block), ['b9', 'b8'], 'hottest = most recent at equal counts')
  t.same(p.topVolumes(5, T0).map(v => v.volume), ['v'])

  t.throws(() => p.merge({ ...snap, format: 'other' } as unknown as ProfileSnapshot), { code: 'FERRY_PROFILE_BAD_SNAPSHOT' })
  t.throws(() => p.merge({ ...snap, blocks: [{ volume: 'v' }] } as unknown as ProfileSnapshot), { code: 'FERRY_PROFILE_BAD_SNAPSHOT' })
  t.throws(() => p.merge(null as unknown as ProfileSnapshot), { code: 'FERRY_PROFILE_BAD_SNAPSHOT' })
  t.throws(() => p.merge({ ...snap, bucketMs: 1000 }), { code: 'FERRY_PROFILE_BAD_SNAPSHOT', message: /bucketMs/ })
})
