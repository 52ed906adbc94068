import t from 'tap'
import { request } from 'undici'
import { blockKey } from '../../lib/ids.js'
import { rendezvousNode, rendezvousRank } from '../../lib/rendezvous.js'
import { sleep, waitFor } from '../helpers/net.js'
import { rig, waitLeader } from './migration/harness.js'

/**
 * The live rebalancer handles a full gateway as the placement benchmark's rounds do (one code
 * path, planner/deciders/rebalancer.ts RoundRules over planMoves): a hot block whose readers are
 * at a full gateway's site pushes a cold block off it, then moves in. Before, the live
 * rebalancer only ranked gateways with room, so such a block stayed away for good.
 *
 * Real processes: reference gateways gw1 (site-a), gw2 (site-b), gw3 (site-c), a proxy and a
 * planner on one store; gw1 holds two blocks and has room for no third.
 */
const SIZE = 1000
const SITE_A = '127.0.0.7'
const NOWHERE = '10.9.9.9'
const IDS = ['gw1', 'gw2', 'gw3']
const NODES = IDS.map(rendezvousNode)
/** Block names whose rendezvous head (the proxy's first write, placement off) is `gw`. */
function namesOn (gw: string, n: number, prefix: string): string[] {
  const out: string[] = []
  for (let i = 0; out.length < n; i++) if (rendezvousRank(blockKey('vr', `${prefix}${i}`), NODES)[0] === gw) out.push(`${prefix}${i}`)
  return out
}

t.test('a hot block makes room on a full gateway at its readers\' site, and one cold block leaves for it', async t => {
  const r = await rig(t, { config: { state: { affinity: { halfLifeMs: 1500 } }, recorder: { flushIntervalMs: 100 } } })
  // gw1 holds two blocks of SIZE and has no room for a third; two leave more than the
  // rebalancer's 2 % headroom free, so only a hot block's displacement moves one out.
  // (The parsed config is shared by the rig's proxy and planner factories.)
  const gw1 = r.config.gateways.find(g => g.id === 'gw1')
  if (gw1 === undefined) throw new Error('no gw1')
  gw1.capacityBytes = 2.5 * SIZE
  const proxy = await r.proxy()
  const p = await r.planner({
    latency: { sameSiteMs: 1, defaultMs: 50 },
    // A short dwell: the two blocks moved onto gw1 below may be pushed off it a second later.
    rebalancer: { enabled: true, intervalMs: 250, minDwellMs: 1000, minScore: 0.5 },
    migration: { gracePeriodMs: 300 }
  })
  await waitLeader(p)
  const cold = namesOn('gw3', 2, 'c')
  const [hot] = namesOn('gw2', 1, 'h') as [string]
  for (const b of [...cold, hot]) {
    const res = await request(`${proxy.url}/vr/${b}`, { method: 'PUT', body: Buffer.alloc(SIZE, 1), headers: { 'x-forwarded-for': NOWHERE } })
    t.equal(res.statusCode, 201, `PUT ${b}`)
    await res.body.dump()
  }
  // Onto gw1 by an operator's migrations: a copy is how the planner learns a block's size,
  // so it then counts gw1 full.
  for (const b of cold) await p.engine.submit({ volume: 'vr', block: b, to: 'gw1', reason: 'operator' })
  await waitFor(() => cold.every(b => { const l = p.locations.get('vr', b); return l?.gateway === 'gw1' && l.members.length === 1 }) && p.locations.get('vr', hot)?.gateway === 'gw2', 'the cold blocks on gw1 alone, the hot one on gw2')
  await waitFor(() => p.fleet.usedBytes('gw1') >= 2 * SIZE, 'the planner to count gw1 full')
  await sleep(1500) // past the dwell; the writes' scores decay: the two blocks on gw1 are cold

  let running = true
  const reads = (async () => {
    while (running) {
      const res = await request(`${proxy.url}/vr/${hot}`, { headers: { 'x-forwarded-for': SITE_A } })
      await res.body.dump()
      await sleep(20)
    }
  })()
  try {
    await waitFor(() => { const l = p.locations.get('vr', hot); return l?.gateway === 'gw1' && l.phase === 'stable' }, `${hot}, read from site-a, on gw1`, 15_000)
  } finally {
    running = false
    await reads
  }
  await sleep(1000)
  const moved = (await p.store.listMigrations({ limit: 100 })).filter(m => m.reason === 'rebalance')
  t.equal(p.locations.get('vr', hot)?.members.length, 1, 'the hot block\'s copy on gw2 is gone')
  const gone = cold.filter(b => p.locations.get('vr', b)?.gateway !== 'gw1')
  t.equal(gone.length, 1, `one cold block made room (${gone.join(', ')}), not both`)
  t.ok(moved.some(m => m.block === gone[0] && m.result === 'ok'), 'by a rebalance migration that completed')
})
