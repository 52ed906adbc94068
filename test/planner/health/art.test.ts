import t from 'tap'
import { ArtDetector } from '../../../planner/health/art.js'
import { createNovelty, DEFAULT_NOVELTY, noveltyFraction, surpriseFor, DEFAULT_NOVELTY_SCALE } from '../../../planner/health/novelty.js'

/** A daily-like cycle with a little deterministic noise. */
function cycle (n: number, seed = 1): number[] {
  let s = seed
  const rnd = (): number => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648 }
  return Array.from({ length: n }, (_, i) => 10 + 3 * Math.sin(2 * Math.PI * i / 288) + 0.2 * rnd())
}

t.test('ART novelty: silent while learning, quiet on the learned cycle, loud on a level shift', async t => {
  const values = cycle(4000)
  for (let i = 3000; i < 3300; i++) values[i] = (values[i] as number) + 12
  const d = new ArtDetector({ probation: 600 })
  const out = values.map(v => d.update(v))
  t.equal(Math.max(...out.slice(0, 600)), 0, 'no score during the learning period')
  const before = out.slice(1200, 3000).filter(v => v > 0).length
  const atShift = Math.max(...out.slice(3000, 3100))
  t.ok(atShift > 0, `the shift is reported (${atShift.toFixed(3)})`)
  t.ok(before <= 8, `few reports on the ordinary cycle (${before} in 1800 samples)`)
  t.ok(out.every(v => v >= 0 && v <= 1), 'scores are in [0, 1]')
})

t.test('ART novelty is causal: appending samples does not change earlier scores', async t => {
  const values = cycle(3000, 7)
  for (let i = 2200; i < 2260; i++) values[i] = 0
  const run = (xs: number[]): number[] => { const d = new ArtDetector({ probation: 450 }); return xs.map(v => d.update(v)) }
  t.same(run(values).slice(0, 2100), run(values.slice(0, 2100)))
})

t.test('ART memory is bounded by maxCategories', async t => {
  let s = 3
  const rnd = (): number => { s = (s * 69069 + 1) % 4294967296; return s / 4294967296 }
  const d = new ArtDetector({ probation: 200, maxCategories: 64 })
  let x = 0
  for (let i = 0; i < 20_000; i++) { x += rnd() - 0.5; d.update(x + (rnd() < 0.05 ? 20 * rnd() : 0)) }
  t.ok(d.categories <= 64, `${d.categories} categories`)
  t.ok(d.categories > 10, 'it did learn')
})

t.test('ensemble novelty: the surprise it returns maps back to max(tail x weight, ART)', async t => {
  for (const f of [0, 0.1, 0.5, 0.9, 0.999]) t.ok(Math.abs(noveltyFraction(surpriseFor(f, DEFAULT_NOVELTY_SCALE), DEFAULT_NOVELTY_SCALE) - f) < 1e-9, `fraction ${f} round-trips`)
  const values = cycle(3000, 5)
  for (let i = 2500; i < 2600; i++) values[i] = (values[i] as number) * 3
  const n = createNovelty({ ...DEFAULT_NOVELTY, art: { ...DEFAULT_NOVELTY.art, probation: 450 } })
  const s = values.map(v => n.update(v))
  t.ok(Math.max(...s.slice(2500, 2600)) > Math.max(...s.slice(1000, 2500)), 'the tripled stretch is the most surprising')
  const state = n.state()
  t.equal(state.kind, 'ensemble')
  t.ok(JSON.parse(JSON.stringify(state)).tail.tails.length > 0, 'the tail part is persisted')
})
