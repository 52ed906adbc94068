import t from 'tap'
import { TailEstimator } from '../../../planner/health/tail.js'
import { createNovelty, DEFAULT_TAIL_NOVELTY, normalTail, normalQuantile } from '../../../planner/health/novelty.js'
import { rng } from '../../../planner/health/scenarios.js'

t.test('the tail estimate is a calibrated probability', async t => {
  // On i.i.d. data, P(surprise >= s) should be about 10^-s whatever the distribution.
  for (const [name, draw] of [['uniform', (r: () => number) => r()], ['heavy-tailed', (r: () => number) => 1 / Math.max(1e-12, r()) ** 0.7]] as const) {
    const r = rng(7)
    const tail = new TailEstimator({ frac: 0.02, kMin: 20, kMax: 256 })
    let over2 = 0
    let over3 = 0
    let n = 0
    for (let i = 0; i < 200_000; i++) {
      const x = draw(r)
      const s = tail.surprise(x)
      if (i >= 10_000) { n++; if (s >= 2) over2++; if (s >= 3) over3++ }
      tail.add(x)
    }
    t.ok(over2 / n > 0.005 && over2 / n < 0.02, `${name}: P(S >= 2) = ${(over2 / n).toFixed(4)} (ideal 0.01)`)
    t.ok(over3 / n > 0.0003 && over3 / n < 0.003, `${name}: P(S >= 3) = ${(over3 / n).toFixed(5)} (ideal 0.001)`)
  }
})

t.test('beyond the largest value seen, surprise keeps growing', async t => {
  const tail = new TailEstimator()
  for (let i = 0; i < 1000; i++) tail.add(i % 100)
  t.ok(tail.surprise(150) > tail.surprise(120))
  t.ok(tail.surprise(120) > tail.surprise(99))
  t.ok(tail.surprise(99) >= tail.surprise(50))
  t.equal(new TailEstimator().surprise(5), 0, 'nothing known: nothing surprising')
  const state = tail.state()
  const copy = new TailEstimator(undefined, state)
  t.equal(copy.surprise(130), tail.surprise(130), 'state round-trips')
  t.ok(state.top.length <= 256, 'memory is bounded')
})

t.test('novelty: a level shift is news once, not forever', async t => {
  const d = createNovelty(DEFAULT_TAIL_NOVELTY)
  const r = rng(3)
  const s: number[] = []
  for (let i = 0; i < 3000; i++) s.push(d.update((i >= 2000 ? 8 : 0) + r() - 0.5))
  const before = Math.max(...s.slice(500, 2000))
  const onset = Math.max(...s.slice(2000, 2030))
  const after = Math.max(...s.slice(2500, 3000))
  t.ok(onset > before + 2, `onset ${onset.toFixed(1)} vs ordinary ${before.toFixed(1)}`)
  t.ok(after < onset, `after adapting ${after.toFixed(1)}`)
  const g = createNovelty({ kind: 'gaussian', window: 100 })
  for (let i = 0; i < 200; i++) g.update(r())
  t.ok(g.update(10) > 10, 'the gaussian family flags a 30-sigma value')
})

t.test('normal tail and quantile agree', async t => {
  for (const p of [0.001, 0.05, 0.3, 0.5, 0.9, 0.999]) t.ok(Math.abs(normalTail(-normalQuantile(p)) - p) < 1e-6, `p=${p}`)
})
