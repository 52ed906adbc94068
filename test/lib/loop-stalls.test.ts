import t from 'tap'
import { LoopStalls } from '../../lib/loop-stalls.js'

const block = (ms: number): void => { const end = performance.now() + ms; while (performance.now() < end) { /* a stalled loop */ } }
const tick = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

t.test('a stall over the threshold is seen, while it lasts and afterwards; a quiet loop shows none', async t => {
  // A threshold far above what a loaded CI machine stalls by itself, so the quiet checks hold there too.
  const stalls = new LoopStalls(300)
  stalls.start()
  t.teardown(() => stalls.stop())
  await tick(30)
  const before = performance.now()
  t.notOk(stalls.stalledSince(before - 20), 'no stall on a quiet loop')
  block(500)
  t.ok(stalls.stalledSince(before), 'the stall in progress counts, before the timer has had its turn')
  await tick(30)
  t.ok(stalls.stalledSince(before), 'and once it is over')
  const after = performance.now()
  await tick(30)
  t.notOk(stalls.stalledSince(after), 'not a stall that ended before the time asked about')
})
