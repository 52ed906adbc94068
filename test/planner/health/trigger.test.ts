import t from 'tap'
import { TriggerPolicy, DEFAULT_TRIGGER } from '../../../planner/health/trigger.js'
import { rng } from '../../../planner/health/scenarios.js'

const tick = (p: TriggerPolicy, score: number, confidence = 0.9): ReturnType<TriggerPolicy['update']> => p.update({ score, confidence })

t.test('triggers only after K consecutive confident low scores', async t => {
  const p = new TriggerPolicy({ consecutive: 3 })
  t.equal(tick(p, 0.3).event, null)
  t.equal(tick(p, 0.3).event, null)
  t.equal(tick(p, 0.6).event, null, 'a good tick resets the run')
  t.equal(tick(p, 0.3).state, 'at-risk')
  t.equal(tick(p, 0.3).event, null)
  const d = tick(p, 0.3)
  t.equal(d.event, 'trigger')
  t.equal(d.triggered, true)
  t.match(d.reason, /for 3 ticks/)
  t.same(d.input, { score: 0.3, confidence: 0.9 }, 'the decision carries its inputs')
  t.equal(tick(p, 0.2).event, null, 'no second trigger while triggered')
})

t.test('a low score without confidence does not trigger', async t => {
  const p = new TriggerPolicy({ consecutive: 2, minConfidence: 0.6 })
  for (let i = 0; i < 50; i++) t.equal(tick(p, 0.1, 0.59).event, null)
  t.match(tick(p, 0.1, 0.59).reason, /confidence/)
  tick(p, 0.1, 0.6)
  t.equal(tick(p, 0.1, 0.6).event, 'trigger')
})

t.test('clears only after a clear recovery, held for clearConsecutive ticks', async t => {
  const p = new TriggerPolicy({ consecutive: 1, clearMargin: 0.2, clearConsecutive: 3, threshold: 0.5 })
  t.equal(tick(p, 0.2).event, 'trigger')
  for (let i = 0; i < 10; i++) t.equal(tick(p, 0.65).event, null, 'above the threshold but inside the margin: still triggered')
  t.equal(tick(p, 0.75).state, 'recovering')
  t.equal(tick(p, 0.75).event, null)
  t.equal(tick(p, 0.4).state, 'triggered', 'a relapse restarts the recovery count')
  tick(p, 0.8)
  tick(p, 0.8)
  const d = tick(p, 0.8)
  t.equal(d.event, 'clear')
  t.equal(p.isTriggered, false)
})

t.test('no flapping on noise around the threshold', async t => {
  // A score that wanders around the threshold with noise: a naive "score < threshold" rule
  // would change its mind hundreds of times; the policy changes it at most a few times.
  const r = rng(42)
  const p = new TriggerPolicy(DEFAULT_TRIGGER)
  let naiveChanges = 0
  let prevNaive = false
  let edges = 0
  for (let i = 0; i < 10_000; i++) {
    const score = 0.5 + 0.12 * Math.sin(i / 400) + 0.1 * (r() - 0.5)
    const naive = score < 0.5
    if (naive !== prevNaive) naiveChanges++
    prevNaive = naive
    if (tick(p, score).event !== null) edges++
  }
  t.ok(naiveChanges > 300, `the naive rule flaps (${naiveChanges} changes)`)
  t.ok(edges <= 2 * Math.ceil(10_000 / (2 * Math.PI * 400)) + 2, `the policy changes state ${edges} times: about once per slow swing`)
  t.ok(edges > 0, 'and it does react to the real swings')
})

t.test('invalid options are refused', async t => {
  t.throws(() => new TriggerPolicy({ threshold: 1.5 }), { code: 'FERRY_TRIGGER_BAD_OPTIONS' })
  t.throws(() => new TriggerPolicy({ consecutive: 0 }), { code: 'FERRY_TRIGGER_BAD_OPTIONS' })
  t.throws(() => new TriggerPolicy({ threshold: 0.9, clearMargin: 0.2 }), { code: 'FERRY_TRIGGER_BAD_OPTIONS' })
  const p = new TriggerPolicy()
  t.equal(p.update({ score: NaN, confidence: NaN }).event, null, 'NaN inputs are treated as healthy, unconfident')
})
