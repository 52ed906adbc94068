import t from 'tap'
import { AffinityScorer, AffinityTable, latencyMatrix, type GatewayInfo } from '../../planner/affinity/index.js'
import { rebalancerSchema } from '../../planner/config.js'
import { RoundRules } from '../../planner/deciders/rebalancer.js'

const LAT = latencyMatrix({ 'na-east': { europe: 90 } }, { sameSiteMs: 2, defaultMs: 200 })
const FLEET: GatewayInfo[] = [
  { id: 'g-east', site: 'na-east', capacityBytes: 0, usedBytes: 0, healthy: true },
  { id: 'g-eu', site: 'europe', capacityBytes: 0, usedBytes: 0, healthy: true }
]

/**
 * The rebalancer's defaults (RoundRules over the config schema's defaults, as the live planner
 * and the placement benchmark run them): a block read once from a far site moves toward it at
 * the next round — with the old minScore of 1 its score (< 1 once a moment has passed) kept it
 * where it was for good — while a block whose last read is long gone stays.
 */
t.test('defaults: a block read once from a far site moves; a long-dead one does not', async t => {
  const rules = new RoundRules(rebalancerSchema.parse({}))
  const H = 600_000
  const table = new AffinityTable({ sites: ['na-east', 'europe'], halfLifeMs: H, now: 0 })
  table.record('v', 'fresh', 'europe', false, 10 * H - 30_000) // read 30 s before the round
  table.record('v', 'dead', 'europe', false, 0) // ten half-lives before it (score 0.001)
  table.setBlock('v', 'fresh', { current: 'g-east', sizeBytes: 1 })
  table.setBlock('v', 'dead', { current: 'g-east', sizeBytes: 1 })
  const kernel = new AffinityScorer({ latency: LAT }).compile(table.sites, FLEET)
  const skipped: Record<string, number> = {}
  const plan = rules.plan(table, kernel, 10 * H, {}, skipped)
  t.same(plan.map(m => `${m.block}→${m.to}`), ['fresh→g-eu'], 'the fresh read moves its block')
  t.same(skipped, { cold: 1 }, 'the dead block is too cold')
  rules.moved('v', 'fresh', 10 * H)
  table.setBlock('v', 'fresh', { current: 'g-eu' })
  table.record('v', 'fresh', 'na-east', false, 10 * H + 1000)
  table.record('v', 'fresh', 'na-east', false, 10 * H + 2000)
  const back: Record<string, number> = {}
  t.same(rules.plan(table, kernel, 10 * H + 60_000, {}, back), [], 'and, moved, it dwells')
  t.same(back, { cold: 1, dwell: 1 }, 'the dead block is still too cold')
})
