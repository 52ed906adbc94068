import t from 'tap'
import { FerryError } from '../../../lib/errors.js'
import { rendezvousNode, rendezvousPick } from '../../../lib/rendezvous.js'
import { AffinityScorer, latencyMatrix, type GatewayInfo } from '../../../planner/affinity/index.js'
import { NgramHashEmbedder } from '../../../planner/partition/embedder.js'
import { PlacementModel, type TrainingExample } from '../../../planner/partition/model.js'
import { Partitioner, hashPlacement } from '../../../planner/partition/partitioner.js'

const SITES = ['asia', 'europe', 'na-east', 'na-west']

function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => { a = (Math.imul(a, 1664525) + 1013904223) >>> 0; return a / 2 ** 32 }
}

/** 80% of a block's traffic from its tree's site, the rest spread at random. */
function scoresFor (site: string, r: () => number): Record<string, number> {
  const s: Record<string, number> = {}
  for (const x of SITES) s[x] = r() * 2
  s[site] = (s[site] ?? 0) + 16 + r() * 8
  return s
}

/**
 * Three directory trees, each read mostly from one site: /archive/europe-<year> from europe,
 * /catalog/asia-<year> from asia, /media/west-<year> from na-west. Each volume is one year.
 */
function history (seed = 1): TrainingExample[] {
  const r = rng(seed)
  const out: TrainingExample[] = []
  const trees: Array<[string, string, string]> = [['archive', 'europe', 'report'], ['catalog', 'asia', 'item'], ['media', 'na-west', 'clip']]
  for (const [root, site, stem] of trees) {
    for (let year = 2015; year <= 2022; year++) {
      const volume = `${root}-${site}-${year}`
      for (let i = 0; i < 15; i++) {
        const path = `/${root}/${site}-${year}/${stem}-${i}.dat`
        out.push({ meta: { volume, block: `${stem}-${i}`, path, name: `${stem}-${i}.dat` }, scores: scoresFor(site, r) })
      }
    }
  }
  return out
}

const argmax = (p: Record<string, number>): string => Object.entries(p).sort((a, b) => b[1] - a[1])[0]![0]

t.test('a new block in a volume dominated by one site is predicted to that site', async t => {
  const model = await PlacementModel.train(history(), new NgramHashEmbedder())
  t.same(model.sites, SITES)
  for (const [volume, site] of [['archive-europe-2018', 'europe'], ['catalog-asia-2020', 'asia'], ['media-na-west-2016', 'na-west']]) {
    // A name unlike anything in training: only the volume can tell.
    const p = await model.predict({ volume: volume as string, block: 'zz-new', name: 'qwerty.bin' })
    t.equal(argmax(p), site, `${volume} → ${site}`)
    t.ok(p[site as string]! > 0.5, `share ${p[site as string]}`)
    t.ok(Math.abs(Object.values(p).reduce((a, b) => a + b, 0) - 1) < 1e-9, 'shares sum to 1')
  }
})

t.test('metadata similarity transfers to a volume never seen before', async t => {
  const model = await PlacementModel.train(history(), new NgramHashEmbedder())
  t.notOk(model.knowsVolume('archive-europe-2023'))
  const eu = await model.predict({ volume: 'archive-europe-2023', block: 'report-3', path: '/archive/europe-2023/report-3.dat' })
  const asia = await model.predict({ volume: 'catalog-asia-2023', block: 'item-7', path: '/catalog/asia-2023/item-7.dat' })
  const west = await model.predict({ volume: 'media-na-west-2023', block: 'clip-1', path: '/media/west-2023/clip-1.dat' })
  t.equal(argmax(eu), 'europe')
  t.equal(argmax(asia), 'asia')
  t.equal(argmax(west), 'na-west')
  // Against the prior (each tree a third of the blocks): the metadata moved the mass.
  t.ok(eu.europe! > 0.55, `europe share ${eu.europe}`)
  t.ok(model.params.beta > 0, `validation kept the neighbours (β = ${model.params.beta})`)
  const v = model.validation!
  t.ok(v.samples >= 100)
  t.ok(v.crossEntropy.chosen < v.crossEntropy.prior - 0.2, `cross-entropy ${v.crossEntropy.chosen} vs prior ${v.crossEntropy.prior}`)
  t.ok(v.topSiteAccuracy.chosen > 0.9, `top-site accuracy ${v.topSiteAccuracy.chosen}`)

  // Switched off, the same block falls back to the prior.
  const blind = await PlacementModel.train(history(), new NgramHashEmbedder(), { beta: 0, alpha: 1, gamma: 8 })
  const p = await blind.predict({ volume: 'archive-europe-2023', block: 'report-3', path: '/archive/europe-2023/report-3.dat' })
  t.ok(p.europe! < 0.45, `without neighbours: ${p.europe}`)
})

t.test('model file: round trip gives identical predictions', async t => {
  const e = new NgramHashEmbedder()
  const model = await PlacementModel.train(history(), e, { k: 5, maxExamples: 200 })
  t.equal(model.examples, 200, 'maxExamples caps the neighbour set')
  const text = JSON.stringify(model.toJSON())
  const back = PlacementModel.fromJSON(JSON.parse(text), new NgramHashEmbedder())
  t.same(back.params, model.params)
  t.same(back.validation, model.validation)
  t.same(back.sites, model.sites)
  for (const meta of [
    { volume: 'archive-europe-2023', block: 'x', path: '/archive/europe-2023/x.dat' },
    { volume: 'catalog-asia-2019', block: 'y' },
    { volume: 'nothing-alike', block: 'z', tags: ['misc'] }
  ]) t.same(await back.predict(meta), await model.predict(meta), meta.volume)
  t.same(JSON.parse(JSON.stringify(back.toJSON())), JSON.parse(text), 'and writes the same file')
})

t.test('a corrupt or foreign model file is a typed error', async t => {
  const e = new NgramHashEmbedder()
  const good = (await PlacementModel.train(history(), e, { maxExamples: 50 })).toJSON() as Record<string, unknown>
  const ex = good.examples as Record<string, unknown>
  const cases: Array<[string, unknown]> = [
    ['not an object', 'hello'],
    ['null', null],
    ['another format', { ...good, format: 'ferry-health' }],
    ['a future version', { ...good, version: 2 }],
    ['missing field', { ...good, prior: undefined }],
    ['unknown field', { ...good, extra: 1 }],
    ['prior of the wrong length', { ...good, prior: [1] }],
    ['truncated vectors', { ...good, examples: { ...ex, vectors: (ex.vectors as string).slice(0, 40) } }],
    ['vectors not base64', { ...good, examples: { ...ex, vectors: '!!!' } }],
    ['shares out of range', { ...good, examples: { ...ex, shares: Buffer.from(new Float32Array(50 * 4).fill(7).buffer).toString('base64') } }],
    ['volume index out of range', { ...good, examples: { ...ex, volumes: Buffer.from(new Uint32Array(50).fill(999).buffer).toString('base64') } }],
    ['negative k', { ...good, params: { ...(good.params as object), k: -1 } }]
  ]
  for (const [what, json] of cases) {
    t.throws(() => PlacementModel.fromJSON(json, e), { code: 'FERRY_PLACEMENT_BAD_MODEL' }, what)
  }
  try {
    PlacementModel.fromJSON({ ...good, version: 2 }, e)
  } catch (err) {
    t.ok(err instanceof FerryError)
    t.match((err as FerryError).message, /version 2 is not supported/)
  }
  t.throws(() => PlacementModel.fromJSON(good, new NgramHashEmbedder({ dim: 128 })), { code: 'FERRY_PLACEMENT_EMBEDDER_MISMATCH' })
})

t.test('no history: the model knows no site and the partitioner hashes', async t => {
  const e = new NgramHashEmbedder()
  const empty = await PlacementModel.train([{ meta: { volume: 'v', block: 'b' }, scores: { europe: 0 } }], e)
  t.same(empty.sites, [])
  t.same(await empty.predict({ volume: 'v', block: 'b' }), {})
  const fleet: GatewayInfo[] = ['g1', 'g2', 'g3'].map(id => ({ id, site: 'europe', capacityBytes: 0, usedBytes: 0, healthy: true }))
  const scorer = new AffinityScorer({ latency: latencyMatrix({}, { sameSiteMs: 1, defaultMs: 50 }) })
  const d = await new Partitioner({ scorer, model: empty }).place({ volume: 'v', block: 'b' }, fleet)
  t.equal(d.by, 'hash')
  t.equal(d.gateway, rendezvousPick('v/b', fleet.map(g => rendezvousNode(g.id))))
  const none = await new Partitioner({ scorer }).place({ volume: 'v', block: 'b' }, fleet)
  t.equal(none.gateway, d.gateway, 'no model at all: the same')
  t.equal(hashPlacement({ volume: 'v', block: 'b' }, fleet.map(g => ({ ...g, healthy: false }))).gateway, undefined)
  await t.rejects(PlacementModel.train([], e, { k: 0 }), { code: 'FERRY_PLACEMENT_BAD_OPTIONS' })
})

t.test('the partitioner ranks predictions like known blocks, under capacity', async t => {
  const model = await PlacementModel.train(history(), new NgramHashEmbedder())
  const latency = latencyMatrix({
    'na-east': { 'na-west': 60, europe: 90, asia: 170 },
    'na-west': { europe: 90, asia: 110 },
    europe: { asia: 200 }
  }, { sameSiteMs: 2, defaultMs: 150 })
  const scorer = new AffinityScorer({ latency })
  const fleet: GatewayInfo[] = [
    { id: 'g-east', site: 'na-east', capacityBytes: 0, usedBytes: 0, healthy: true },
    { id: 'g-west', site: 'na-west', capacityBytes: 0, usedBytes: 0, healthy: true },
    { id: 'g-eu', site: 'europe', capacityBytes: 1000, usedBytes: 0, healthy: true },
    { id: 'g-asia', site: 'asia', capacityBytes: 0, usedBytes: 0, healthy: true }
  ]
  const p = new Partitioner({ scorer, model })
  const meta = { volume: 'archive-europe-2023', block: 'report-1', path: '/archive/europe-2023/report-1.dat' }
  const d = await p.place(meta, fleet, { sizeBytes: 10 })
  t.equal(d.by, 'model')
  t.equal(d.gateway, 'g-eu')
  t.equal(d.costMs, scorer.preferred(d.shares, fleet)[0]!.costMs)
  const full = await p.place(meta, fleet, { sizeBytes: 2000 })
  t.not(full.gateway, 'g-eu', 'no room on the best gateway: the next one')
  t.equal(full.gateway, scorer.preferred(full.shares, fleet, { sizeBytes: 2000 })[0]!.gateway)
  p.setModel(null)
  t.equal((await p.place(meta, fleet)).by, 'hash')
})

t.test('the creating site is evidence: data tends to be read where it was created', async t => {
  const r = rng(4)
  const hist: TrainingExample[] = []
  // One shared volume; each block is read mostly at the site that created it.
  for (let i = 0; i < 120; i++) {
    const origin = SITES[i % 4] as string
    hist.push({ meta: { volume: 'shared', block: `b${i}`, name: `file-${i}`, origin }, scores: scoresFor(origin, r) })
  }
  const model = await PlacementModel.train(hist, new NgramHashEmbedder())
  t.ok(model.params.delta > 0, `validation chose an origin weight (δ = ${model.params.delta})`)
  t.ok(model.validation!.crossEntropy.chosen < model.validation!.crossEntropy.volumeOnly - 0.2, 'it beats the volume history alone')
  for (const origin of SITES) {
    const p = await model.predict({ volume: 'shared', block: 'new', name: 'file-new', origin })
    t.equal(argmax(p), origin, `created at ${origin}`)
  }
  const none = await model.predict({ volume: 'shared', block: 'new', name: 'file-new' })
  t.ok(Math.max(...Object.values(none)) < 0.4, 'without an origin: the volume\'s even spread')
  const back = PlacementModel.fromJSON(JSON.parse(JSON.stringify(model.toJSON())), new NgramHashEmbedder())
  t.same(await back.predict({ volume: 'shared', block: 'x', origin: 'asia' }), await model.predict({ volume: 'shared', block: 'x', origin: 'asia' }), 'origins survive the round trip')
  t.throws(() => PlacementModel.fromJSON({ ...(model.toJSON() as object), origins: [['asia', 1, [1]]] }, new NgramHashEmbedder()), { code: 'FERRY_PLACEMENT_BAD_MODEL' })
})

t.test('large models pre-filter neighbours by signature and agree with exact search', async t => {
  const r = rng(8)
  const hist: TrainingExample[] = []
  const roots = ['archive', 'catalog', 'media', 'logs', 'backup', 'images']
  for (let i = 0; i < 3000; i++) {
    const root = roots[i % roots.length] as string
    const site = SITES[(i % roots.length) % 4] as string
    const sub = Math.floor(r() * 40)
    hist.push({ meta: { volume: `${root}-${sub}`, block: `f${i}`, path: `/${root}/part-${sub}/file-${i}.dat` }, scores: scoresFor(site, r) })
  }
  const e = new NgramHashEmbedder()
  const lsh = await PlacementModel.train(hist, e, { beta: 2, alpha: 1, gamma: 8, delta: 0 })
  const exact = await PlacementModel.train(hist, e, { beta: 2, alpha: 1, gamma: 8, delta: 0, candidates: 1_000_000 })
  t.equal(lsh.params.candidates, 128, '16 × k by default')
  let same = 0
  let close = 0
  for (let i = 0; i < 200; i++) {
    const root = roots[i % roots.length] as string
    const meta = { volume: `new-${i}`, block: 'x', path: `/${root}/part-${i % 50}/file-new-${i}.dat` }
    const a = await lsh.predict(meta)
    const b = await exact.predict(meta)
    if (argmax(a) === argmax(b)) same++
    if (SITES.every(s => Math.abs(a[s]! - b[s]!) < 0.1)) close++
  }
  t.ok(same >= 190, `top site agrees in ${same}/200`)
  t.ok(close >= 180, `shares within 0.1 in ${close}/200`)
  const back = PlacementModel.fromJSON(JSON.parse(JSON.stringify(lsh.toJSON())), e)
  const meta = { volume: 'new', block: 'x', path: '/media/part-3/file-x.dat' }
  t.same(await back.predict(meta), await lsh.predict(meta), 'signatures are rebuilt identically on load')
})
