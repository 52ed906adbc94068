import t, { type Test } from 'tap'
import { request } from 'undici'
import type { Planner } from '../../planner/planner.js'
import { sleep, waitFor } from '../helpers/net.js'
import { rig, waitLeader, type Rig } from './migration/harness.js'

/**
 * The rebalancer against real traffic: clients of one site, then of another, read blocks
 * through a proxy (the site comes from X-Forwarded-For, trusted from 127.0.0.1; see testConfig:
 * site-a 127.0.0.0/24 → gw1, site-b 127.0.1.0/24 → gw2, site-c 127.0.2.0/24 → gw3). The blocks
 * follow their clients, then stay put.
 */
const SITE_CLIENT = { 'site-a': '127.0.0.7', 'site-b': '127.0.1.7', 'site-c': '127.0.2.7' } as const
/** A client in no configured site: equally far from every gateway, so its accesses prefer none. */
const NOWHERE = '10.9.9.9'
const BLOCKS = Array.from({ length: 10 }, (_, i) => `b${i}`)

async function setup (t: Test, rebalancer: Record<string, unknown> = {}): Promise<{ r: Rig, p: Planner, url: string }> {
  const r = await rig(t, { config: { state: { affinity: { halfLifeMs: 1500 } }, recorder: { flushIntervalMs: 100 } } })
  const proxy = await r.proxy()
  const p = await r.planner({
    latency: { sameSiteMs: 1, defaultMs: 50 },
    rebalancer: { enabled: true, intervalMs: 250, margin: 0.25, minGainMs: 1, minDwellMs: 1000, minScore: 0.5, ...rebalancer }
  })
  await waitLeader(p)
  for (const b of BLOCKS) {
    const res = await request(`${proxy.url}/wl/${b}`, { method: 'PUT', body: `block ${b}`, headers: { 'x-forwarded-for': NOWHERE } })
    t.equal(res.statusCode, 201)
    await res.body.dump()
  }
  return { r, p, url: proxy.url }
}

/** Reads every block from `site`'s client until stopped. */
function traffic (url: string, site: keyof typeof SITE_CLIENT): { stop: () => Promise<void> } {
  let running = true
  const loop = (async () => {
    while (running) {
      await Promise.all(BLOCKS.map(async b => {
        const res = await request(`${url}/wl/${b}`, { headers: { 'x-forwarded-for': SITE_CLIENT[site] } })
        await res.body.dump()
      }))
      await sleep(20)
    }
  })()
  return { stop: async () => { running = false; await loop } }
}

const allOn = (p: Planner, gw: string): boolean => BLOCKS.every(b => { const l = p.locations.get('wl', b); return l?.gateway === gw && l.phase === 'stable' })

t.test('a workload that moves from one site to another takes its blocks along, then they stay', async t => {
  const { p, url } = await setup(t)
  let load = traffic(url, 'site-a')
  await waitFor(() => allOn(p, 'gw1'), 'every block on gw1 (site-a)', 15_000)
  await load.stop()

  load = traffic(url, 'site-b')
  await waitFor(() => allOn(p, 'gw2'), 'every block on gw2 (site-b)', 15_000)
  const converged = Date.now()
  // Keep the site-b workload going for several intervals (past the dwell time), then stop it.
  await sleep(1500)
  await load.stop()
  await sleep(800)
  const later = p.rebalancer.rounds.filter(r => r.at > converged)
  t.ok(later.length >= 6, `${later.length} rebalancer passes after convergence`)
  t.ok(later.every(r => r.scanned >= BLOCKS.length), 'each of them saw every block')
  t.same(later.map(r => r.moves), later.map(() => 0), 'and none of them moved anything')
  t.ok(allOn(p, 'gw2'), 'the blocks stayed on gw2')
  const moved = (await p.store.listMigrations({ limit: 1000 })).filter(m => m.reason === 'rebalance')
  t.ok(moved.every(m => m.result === 'ok'), 'every rebalance migration completed')
  // Each block moved at most twice (to site-a's gateway unless it started there, then to site-b's): no ping-pong.
  const perBlock = new Map<string, number>()
  for (const m of moved) perBlock.set(m.block, (perBlock.get(m.block) ?? 0) + 1)
  t.ok([...perBlock.values()].every(n => n <= 2), `moves per block: ${JSON.stringify(Object.fromEntries(perBlock))}`)
})

t.test('never onto an unhealthy gateway; the move happens once it is back', async t => {
  const { r, p, url } = await setup(t)
  const gw3 = r.gws.gateways[2]!
  // Start from gw1, then kill site-c's gateway and send site-c's traffic.
  let load = traffic(url, 'site-a')
  await waitFor(() => allOn(p, 'gw1'), 'every block on gw1', 15_000)
  await load.stop()
  await gw3.kill()
  await waitFor(() => !p.fleet.isHealthy('gw3'), 'the planner to see gw3 down')
  load = traffic(url, 'site-c')
  await sleep(1500)
  t.ok(BLOCKS.every(b => p.locations.get('wl', b)?.gateway !== 'gw3'), 'nothing moved onto the dead gateway')
  await gw3.start()
  await waitFor(() => allOn(p, 'gw3'), 'every block on gw3 once it is back', 15_000)
  await load.stop()
})

t.test('the move budget bounds every pass', async t => {
  const { p, url } = await setup(t, { maxMovesPerInterval: 2 })
  const load = traffic(url, 'site-b')
  await waitFor(() => allOn(p, 'gw2'), 'every block on gw2', 20_000)
  await load.stop()
  const rounds = p.rebalancer.rounds.filter(r => r.moves > 0)
  const moves = rounds.reduce((n, r) => n + r.moves, 0)
  t.ok(moves >= 3, `${moves} blocks had to move`)
  t.ok(rounds.length >= Math.ceil(moves / 2), `the ${moves} moves were spread over ${rounds.length} passes`)
  t.ok(p.rebalancer.rounds.every(r => r.moves <= 2), 'no pass started more than 2 moves')
  t.ok(p.rebalancer.rounds.some(r => r.skipped.budget > 0), 'candidates were held back by the budget')
})

t.test('co-access: cold blocks of a volume being read at a site move there before their first read from it', async t => {
  const COLD = BLOCKS.slice(5)
  const HOT = BLOCKS.slice(0, 5)
  /** Reads only HOT from site-c. */
  const readHot = (url: string): { stop: () => Promise<void> } => {
    let running = true
    const loop = (async () => {
      while (running) {
        await Promise.all(HOT.map(async b => { const res = await request(`${url}/wl/${b}`, { headers: { 'x-forwarded-for': SITE_CLIENT['site-c'] } }); await res.body.dump() }))
        await sleep(20)
      }
    })()
    return { stop: async () => { running = false; await loop } }
  }
  const coldOn = (p: Planner, gw: string): boolean => COLD.every(b => { const l = p.locations.get('wl', b); return l?.gateway === gw && l.phase === 'stable' })

  t.test('off (the default): they stay where they were written', async t => {
    const { p, url } = await setup(t)
    await sleep(2000) // the writes' scores decay below minScore
    const before = COLD.map(b => p.locations.get('wl', b)?.gateway)
    const load = readHot(url)
    await waitFor(() => HOT.every(b => p.locations.get('wl', b)?.gateway === 'gw3'), 'the read blocks on gw3', 15_000)
    await sleep(1500)
    await load.stop()
    t.same(COLD.map(b => p.locations.get('wl', b)?.gateway), before, `none of the ${COLD.length} unread blocks moved`)
    t.ok(p.rebalancer.rounds.every(r => r.predicted === 0 && r.activeVolumes === 0), 'no pass predicted anything')
  })

  t.test('on: they follow the volume\'s readers without being read', async t => {
    const { p, url } = await setup(t, { coAccess: { enabled: true, activityHalfLifeMs: 2000, priorWeight: 1 } })
    await sleep(2000)
    const load = readHot(url)
    await waitFor(() => coldOn(p, 'gw3'), 'every unread block of the volume on gw3 (site-c)', 15_000)
    await load.stop()
    t.ok(p.rebalancer.rounds.some(r => r.activeVolumes >= 1), 'the volume counted as active')
    const predicted = p.rebalancer.rounds.reduce((n, r) => n + r.predicted, 0)
    t.ok(predicted >= 1, `${predicted} moves made on the prediction`)
    const coldMoves = async (): Promise<Array<string | null>> => (await p.store.listMigrations({ limit: 1000 })).filter(m => m.reason === 'rebalance' && COLD.includes(m.block)).map(m => m.result)
    await waitFor(async () => (await coldMoves()).every(r => r !== null), 'the predicted moves to finish', 10_000)
    t.ok((await coldMoves()).every(r => r === 'ok'), 'every predicted move completed')
  })
})

/**
 * At R = 2 the rebalancer decides per member: which member of the set to replace by which
 * gateway, so that the set covers the sites that read the block (reads go to the nearest
 * member). Ranked by its head, as before, a set whose head is on one of two reading sites was
 * never changed (no single gateway beats the head for both), whatever its other member.
 */
t.test('R = 2: the member to replace is chosen per set, toward the sites that read the block', async t => {
  const r = await rig(t, { config: { state: { affinity: { halfLifeMs: 1500 } }, recorder: { flushIntervalMs: 100 }, replication: { factor: 2, minInSync: 1 } } })
  const proxy = await r.proxy()
  const p = await r.planner({
    latency: { sameSiteMs: 1, defaultMs: 50 },
    rebalancer: { enabled: true, intervalMs: 250, margin: 0.25, minGainMs: 1, minDwellMs: 1000, minScore: 0.5 }
  })
  await waitLeader(p)
  // Every set starts as {gw1, gw2}: site-a's gateway first, then the one on site-b.
  for (const b of BLOCKS) {
    t.ok((await r.store.casLocation('wl', b, 0, { gateway: 'gw1', members: ['gw1', 'gw2'], inSync: ['gw1', 'gw2'] })).ok)
    const res = await request(`${proxy.url}/wl/${b}`, { method: 'PUT', body: `block ${b}`, headers: { 'x-forwarded-for': NOWHERE } })
    t.ok(res.statusCode >= 200 && res.statusCode < 300, `${b} written to both members (${res.statusCode})`)
    await res.body.dump()
  }
  const sets = (): string[] => BLOCKS.map(b => { const l = p.locations.get('wl', b); return l === null || l === undefined || l.phase !== 'stable' ? '?' : [...l.inSync].sort().join('+') + (l.members.length === l.inSync.length ? '' : '(leaving)') })
  // Read from site-a and site-c alike: the set that serves both is {gw1, gw3}, so gw2 — not
  // the head — gives its place to gw3, and gw1 stays.
  const a = traffic(proxy.url, 'site-a')
  const c = traffic(proxy.url, 'site-c')
  await waitFor(() => sets().every(s => s === 'gw1+gw3'), 'every set to be {gw1, gw3}', 20_000).catch(() => {})
  await a.stop()
  await c.stop()
  t.same(sets(), BLOCKS.map(() => 'gw1+gw3'), 'every set holds a member on each reading site')
  const moved = (await p.store.listMigrations({ limit: 1000 })).filter(m => m.reason === 'rebalance')
  t.ok(moved.length >= BLOCKS.length && moved.every(m => m.from === 'gw2' && m.to === 'gw3'), `each block moved its site-b member to site-c (${JSON.stringify(moved.map(m => `${m.block}:${m.from}→${m.to}:${String(m.result)}`))})`)
  for (const b of BLOCKS) {
    const res = await request(`${proxy.url}/wl/${b}`, { headers: { 'x-forwarded-for': SITE_CLIENT['site-a'] } })
    t.equal(await res.body.text(), `block ${b}`, `${b} reads back`)
  }
})
