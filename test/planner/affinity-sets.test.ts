import t from 'tap'
import { AffinityScorer, bestReplacement, latencyMatrix, setCostMs, type GatewayInfo } from '../../planner/affinity/index.js'

/** planner/affinity/sets.ts: a replica set's cost with nearest-member reads, and its best single change. */
const scorer = new AffinityScorer({ latency: latencyMatrix({ a: { b: 60, c: 90 }, b: { c: 60 } }, { sameSiteMs: 2, defaultMs: 100 }), healthPenaltyMs: 100 })
const gw = (id: string, site: string, extra: Partial<GatewayInfo> = {}): GatewayInfo => ({ id, site, capacityBytes: 0, usedBytes: 0, healthy: true, ...extra })
const [A, B, C, A2] = [gw('ga', 'a'), gw('gb', 'b'), gw('gc', 'c'), gw('ga2', 'a')] as [GatewayInfo, GatewayInfo, GatewayInfo, GatewayInfo]

t.test('a set costs each site its nearest member', async t => {
  t.equal(setCostMs(scorer, { a: 3, c: 1 }, [A, B]), (3 * 2 + 1 * 60) / 4)
  t.equal(setCostMs(scorer, { a: 3, c: 1 }, [A, C]), 2)
  t.equal(setCostMs(scorer, {}, [A]), 0, 'no scores: nothing to gain')
})

t.test('the member to replace and its replacement', async t => {
  t.match(bestReplacement(scorer, { a: 3, c: 1 }, [A, B], [A, B, C, A2], 100), { from: 'gb', to: 'gc', costMs: 16.5, afterMs: 2 }, 'the member no reader needs gives its place, the head stays')
  t.equal(bestReplacement(scorer, { a: 3, c: 1 }, [A, C], [A, B, C, A2], 100), null, 'a set that serves every reading site stays')
  t.match(bestReplacement(scorer, { a: 3, c: 1 }, [A, B], [A, B, { ...C, capacityBytes: 1000, usedBytes: 950 }, A2], 100), null, 'a target without room for the block (every copy counts) takes no place; none on a site the set covers')
  t.equal(bestReplacement(scorer, { c: 1 }, [A, { ...B, healthy: false }], [A, B, C], 100)?.from, 'ga', 'an unhealthy member is never the one replaced (repair replaces it)')
  t.equal(bestReplacement(scorer, { c: 1 }, [A, B], [A, B, { ...C, healthy: false }], 100), null, 'never onto an unhealthy gateway')
})
