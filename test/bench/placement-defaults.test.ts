import t from 'tap'
import { options, rebalancerConfig } from '../../bench/placement.js'
import { rebalancerSchema } from '../../planner/config.js'

/**
 * Issue 21, "one code path": the placement benchmark's rebalancer rounds run with exactly the
 * live planner's rebalancer config unless an option sets a live key (RoundRules, the same
 * object the live Rebalancer decides single copies with).
 */
t.test('the placement benchmark runs the live rebalancer defaults', async t => {
  t.same(rebalancerConfig(options([])), rebalancerSchema.parse({}), 'no option: the live defaults, every key')
  const c = rebalancerConfig(options(['--min-score', '0.25', '--dwell', '120', '--headroom', '0']))
  t.same([c.minScore, c.minDwellMs, c.headroom], [0.25, 120_000, 0], 'options set the live keys of the same meaning')
})
