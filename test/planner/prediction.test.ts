import t from 'tap'
import { AffinityTable } from '../../planner/affinity/index.js'
import { VolumeCoAccess } from '../../planner/prediction.js'

/** The co-access signal's arithmetic: what a pass's scan says a volume's recent readers are. */
const H = 600_000
const sites = ['site-a', 'site-b']

t.test('a volume\'s new reads are the growth of its summed decayed scores since the last round', async t => {
  const c = new VolumeCoAccess({ sites, halfLifeMs: H, activityHalfLifeMs: 60_000, activityScale: 4 })
  c.observe('v', { 'site-a': 10 })
  c.endRound(0)
  t.same(c.activity('v'), {}, 'the first round is history, not activity')
  t.equal(c.isActive('v'), false)
  // 30 s later: the old score decayed, plus 3 reads from site-b on a new block.
  const f = 2 ** (-30_000 / H)
  c.observe('v', { 'site-a': 10 * f })
  c.observe('v', { 'site-b': 3 })
  c.endRound(30_000)
  const a = c.activity('v')
  t.ok(Math.abs((a['site-b'] ?? 0) - 3) < 1e-9 && a['site-a'] === undefined, `site-b read it 3 times, site-a not at all: ${JSON.stringify(a)}`)
  t.same(c.prior('v'), { 'site-a': 0, 'site-b': 1 }, 'without a base prior the readers are the prior')
  c.setBase({ 'site-a': 1 })
  const p = c.prior('v') as Record<string, number>
  t.ok(Math.abs((p['site-b'] ?? 0) - 3 / 7) < 1e-9, `blended with the base by a / (a + scale) = 3/7: ${JSON.stringify(p)}`)
  // A block deleted (its score gone) is not negative traffic; the activity fades.
  c.observe('v', { 'site-b': 3 * 2 ** (-60_000 / H) })
  c.endRound(90_000)
  const later = c.activity('v')
  t.ok(Math.abs((later['site-b'] ?? 0) - 1.5) < 1e-9 && later['site-a'] === undefined, `halved after one activity half-life, nothing negative: ${JSON.stringify(later)}`)
})

t.test('apply gives the table per-volume priors and takes them back when a volume goes quiet', async t => {
  const c = new VolumeCoAccess({ sites, halfLifeMs: H, activityHalfLifeMs: 1000, activityScale: 4 })
  const table = new AffinityTable({ sites, halfLifeMs: H, now: 0, priorWeight: 1 })
  table.setBlock('v', 'cold', { current: 'gw-a', sizeBytes: 1 })
  c.endRound(0)
  c.observe('v', { 'site-b': 5 })
  c.endRound(1000)
  t.equal(c.apply(table), 1, 'one active volume')
  c.observe('v', { 'site-b': 5 * 2 ** (-60_000 / H) })
  c.endRound(61_000)
  t.equal(c.isActive('v'), false, 'a minute of silence at a 1 s activity half-life: quiet')
  t.equal(c.apply(table), 0, 'and its prior is withdrawn')
})
