import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { blockKey } from '../../../lib/ids.js'
import type { Planner } from '../../../planner/planner.js'
import type { StateStore } from '../../../state/types.js'
import { sleep, waitFor } from '../../helpers/net.js'
import { get, put, rig, waitEnded, waitLeader, type Rig } from './harness.js'

/**
 * Failures in the middle of a migration (a membership change, R = 1 here): the planner dies, the
 * target dies, the source fails while the target joins. Each time a writer keeps writing to the
 * block through a proxy; afterwards the block's location is consistent (the old set in force, or
 * the migration completed), nothing is left half-done, and the block reads its last acknowledged
 * write. Where the source stays up, no write was refused.
 */

interface Writer {
  /** Stops the loop, then writes until one write is acknowledged; resolves with its content. */
  stop: () => Promise<string>
  counts: Record<string, number>
}

function writer (url: string, tag: string): Writer {
  let seq = 0
  let running = true
  const counts: Record<string, number> = {}
  const one = async (): Promise<string | null> => {
    const body = `${tag}:${++seq}`
    const r = await put(url, body)
    const key = r.status < 300 ? 'acknowledged' : `${r.status} ${r.code ?? ''}`.trim()
    counts[key] = (counts[key] ?? 0) + 1
    return r.status < 300 ? body : null
  }
  const loop = (async () => { while (running) { await one(); await sleep(3) } })()
  return {
    counts,
    stop: async () => {
      running = false
      await loop
      for (let i = 0; i < 100; i++) {
        const body = await one()
        if (body !== null) return body
        await sleep(50)
      }
      throw new Error('no write was acknowledged after the failure')
    }
  }
}

const gatewayUrl = (r: Rig, id: string): string => r.gws.urls[Number(id.slice(2)) - 1] as string
const gatewayOf = (r: Rig, id: string): (typeof r.gws.gateways)[number] => r.gws.gateways[Number(id.slice(2)) - 1] as (typeof r.gws.gateways)[number]

/** Nothing half-done: no active migration in the log, no location outside `stable`. */
async function settled (t: Test, store: StateStore): Promise<void> {
  await waitFor(async () => (await store.listMigrations({ active: true })).length === 0, 'no unfinished migration in the log', 10_000)
  const unsettled: string[] = []
  for await (const { volume, block, location } of store.scanLocations()) if (location.phase !== 'stable') unsettled.push(`${blockKey(volume, block)} ${location.phase}`)
  t.same(unsettled, [], 'every location is stable')
}

async function placedBlock (r: Rig, url: string, block: string, body: Buffer | string): Promise<{ from: string, to: string }> {
  const first = await put(`${url}/v/${block}`, body)
  if (first.status !== 201) throw new Error(`first write of ${block}: ${first.status}`)
  const loc = await waitFor(() => r.store.getLocation('v', block), 'the first write\'s location')
  const from = (loc as NonNullable<typeof loc>).gateway
  return { from, to: ['gw1', 'gw2', 'gw3'].find(g => g !== from) as string }
}

async function copying (p: Planner, id: string, bytes: number): Promise<void> {
  await waitFor(async () => ((await p.engine.get(id)).progress?.bytes ?? 0) > bytes, 'the copy to be under way', 10_000, 5)
}

t.test('planner killed mid-copy: the next leader resumes the migration; nothing is lost', async t => {
  const r = await rig(t)
  const proxy = await r.proxy()
  const slow = { bandwidthBytesPerSec: 1_000_000, burstBytes: 64 * 1024 }
  const a = await r.planner({ holder: 'planner-a', migration: slow })
  await waitLeader(a)
  const { from, to } = await placedBlock(r, proxy.url, 'big', randomBytes(2_000_000))
  const { migrations } = await a.move({ volume: 'v', block: 'big', to })
  const id = migrations[0]!.id
  await copying(a, id, 300_000)
  await a.kill()
  t.match(await r.store.getLocation('v', 'big'), { phase: 'stable', members: [from, to], inSync: [from] }, 'killed while copying: the target is a member out of sync')
  const w = writer(`${proxy.url}/v/big`, 'k')

  const b = await r.planner({ holder: 'planner-b', migration: slow })
  await waitLeader(b)
  t.equal(b.leader.fence()!.token > 0, true)
  const rec = await waitEnded(b, id, 15_000)
  const last = await w.stop()
  t.comment(`writes: ${JSON.stringify(w.counts)}`)
  t.equal(rec.result, 'ok', `resumed and completed (${rec.error})`)
  const history = await r.store.blockHistory('v', 'big')
  t.ok(history.some(h => h.reason === `migration:${id}:recover` && h.gateway === from), 'the new leader first took the joiner out of the set')
  t.match(await r.store.getLocation('v', 'big'), { gateway: to, phase: 'stable', members: [to], inSync: [to] })
  t.same(Object.keys(w.counts), ['acknowledged'], 'no write was refused')
  t.equal((await get(`${proxy.url}/v/big`)).body, last, 'the block reads its last acknowledged write')
  t.equal((await get(`${gatewayUrl(r, from)}/v/big`)).status, 404, 'the source copy was removed after the move')
  await settled(t, r.store)
})

t.test('target gateway killed mid-copy: rolled back, the old location in force', async t => {
  const r = await rig(t)
  const proxy = await r.proxy()
  const p = await r.planner({ migration: { bandwidthBytesPerSec: 1_000_000, burstBytes: 64 * 1024 } })
  await waitLeader(p)
  const { from, to } = await placedBlock(r, proxy.url, 'big', randomBytes(2_000_000))
  const { migrations } = await p.move({ volume: 'v', block: 'big', to })
  await copying(p, migrations[0]!.id, 200_000)
  // Writes from now on go to the source and the joining target.
  const w = writer(`${proxy.url}/v/big`, 't')
  await gatewayOf(r, to).kill()
  const rec = await waitEnded(p, migrations[0]!.id)
  const last = await w.stop()
  t.comment(`writes: ${JSON.stringify(w.counts)}`)
  t.equal(rec.result, 'rolled-back')
  t.match(rec.error, /^FERRY_COPY_(TARGET_FAILED|SOURCE_FAILED)/, rec.error ?? '')
  t.match(await r.store.getLocation('v', 'big'), { gateway: from, phase: 'stable', members: [from], inSync: [from] }, 'the old set is in force')
  t.same(Object.keys(w.counts), ['acknowledged'], 'no write was refused')
  t.equal((await get(`${proxy.url}/v/big`)).body, last, 'the block reads its last acknowledged write')
  await gatewayOf(r, to).start()
  // The target held the writes teed to it while it joined: a copy no member's, deleted by the
  // recovery pass once the target answers again.
  await waitFor(async () => (await get(`${gatewayUrl(r, to)}/v/big`)).status === 404, 'the stray copy on the target to be removed', 10_000)
  t.pass('no copy left on the target after its restart')
  await settled(t, r.store)
})

for (const fault of [{ errorRate: 0.7 }, { refuse: 'unbind' as const }]) {
  t.test(`source failing while the target joins (${JSON.stringify(fault)}): consistent, nothing acknowledged lost`, async t => {
    const r = await rig(t)
    const proxy = await r.proxy()
    // A long settle leaves time to break the source once the target has joined.
    const p = await r.planner({ migration: { settleMs: 300, copyTimeoutMs: 1500 } })
    await waitLeader(p)
    const { from, to } = await placedBlock(r, proxy.url, 'c', randomBytes(50_000))
    const w = writer(`${proxy.url}/v/c`, 'c')
    const { migrations } = await p.move({ volume: 'v', block: 'c', to })
    await waitFor(async () => (await r.store.getLocation('v', 'c'))?.members.includes(to), 'the target to join', 10_000, 2)
    await gatewayOf(r, from).setFaults(fault)
    const rec = await waitEnded(p, migrations[0]!.id)
    await sleep(200)
    await gatewayOf(r, from).clearFaults()
    const last = await w.stop()
    t.comment(`result ${rec.result} ${rec.error ?? ''}; writes: ${JSON.stringify(w.counts)}`)
    const loc = await waitFor(async () => { const l = await r.store.getLocation('v', 'c'); return l?.phase === 'stable' ? l : undefined }, 'a stable location', 10_000)
    if (rec.result === 'ok') t.same(loc?.inSync, [to], 'moved: the target is in force')
    else t.same(loc?.inSync, [from], 'rolled back: the source is in force')
    if ('refuse' in fault) t.equal(rec.result, 'rolled-back', 'a source that answers nothing cannot be verified: rolled back')
    t.equal((await get(`${proxy.url}/v/c`)).body, last, 'the block reads its last acknowledged write')
    await settled(t, r.store)
  })
}

for (const when of ['joining', 'leaving'] as const) {
  t.test(`planner killed while the target is ${when}: the next leader ${when === 'joining' ? 'takes the joiner out and resumes' : 'removes the source after the grace period'}`, async t => {
    const r = await rig(t)
    const proxy = await r.proxy()
    // A long settle (or grace) keeps the block in that step long enough to kill the planner there.
    const slowStep = when === 'joining' ? { settleMs: 800 } : { gracePeriodMs: 1500 }
    const a = await r.planner({ holder: 'planner-a', migration: slowStep })
    await waitLeader(a)
    const { from, to } = await placedBlock(r, proxy.url, 'p', randomBytes(20_000))
    const w = writer(`${proxy.url}/v/p`, when)
    const { migrations } = await a.move({ volume: 'v', block: 'p', to })
    const id = migrations[0]!.id
    await waitFor(async () => {
      const l = await r.store.getLocation('v', 'p')
      return when === 'joining' ? l?.members.includes(to) === true && !l.inSync.includes(to) : l?.inSync.join() === to && l.members.includes(from)
    }, `the target ${when}`, 10_000, 2)
    await a.kill()
    const b = await r.planner({ holder: 'planner-b', migration: slowStep })
    await waitLeader(b)
    const rec = await waitEnded(b, id, 15_000)
    const last = await w.stop()
    t.comment(`result ${rec.result}; writes: ${JSON.stringify(w.counts)}`)
    t.equal(rec.result, 'ok', `completed under the new leader (${rec.error})`)
    const history = await r.store.blockHistory('v', 'p')
    if (when === 'joining') t.ok(history.some(h => h.reason === `migration:${id}:recover`), 'the joiner was taken out before resuming')
    else t.notOk(history.some(h => h.reason === `migration:${id}:recover` || h.reason === `migration:${id}:rollback`), 'nothing was undone after the source left')
    t.match(await r.store.getLocation('v', 'p'), { gateway: to, phase: 'stable', members: [to], inSync: [to] })
    t.same(Object.keys(w.counts), ['acknowledged'], 'no write was refused')
    t.equal((await get(`${proxy.url}/v/p`)).body, last, 'the block reads its last acknowledged write')
    t.equal((await get(`${gatewayUrl(r, from)}/v/p`)).status, 404, 'the source copy is gone')
    await settled(t, r.store)
  })
}

t.test('a location left in round 1\'s cut-over with no record is settled where it is served', async t => {
  const r = await rig(t)
  const [gw1, gw2] = r.gws.urls as [string, string]
  await put(`${gw1}/v/o`, 'orphan')
  await put(`${gw2}/v/o`, 'partial copy')
  await r.store.casLocation('v', 'o', 0, { gateway: 'gw1' })
  await r.store.casLocation('v', 'o', 1, { gateway: 'gw1', phase: 'cutover', target: 'gw2' })
  const p = await r.planner()
  await waitLeader(p)
  await waitFor(async () => (await r.store.getLocation('v', 'o'))?.phase === 'stable', 'the location to be settled')
  t.match(await r.store.getLocation('v', 'o'), { gateway: 'gw1', phase: 'stable' })
  // The stray copy is deleted after the location is settled (recoverOrphan), so it goes a moment later.
  await waitFor(async () => (await get(`${gw2}/v/o`)).status === 404, 'the stray copy to be removed', 5000)
  t.pass('the stray copy on the target was removed')
  t.equal((await get(`${gw1}/v/o`)).body, 'orphan', 'the block is untouched where it is served')
})

t.test('a write teed to the source after its clean-up DELETE (a proxy that had not heard) is deleted by the re-check', async t => {
  const r = await rig(t)
  const proxy = await r.proxy()
  // The re-check comes a grace period after the DELETE: long enough for this test's late write to land first.
  const p = await r.planner({ migration: { gracePeriodMs: 1500, recoveryIntervalMs: 100 } })
  await waitLeader(p)
  const { from, to } = await placedBlock(r, proxy.url, 'late', 'late:1')
  const { migrations } = await p.move({ volume: 'v', block: 'late', to })
  t.equal((await waitEnded(p, migrations[0]!.id)).result, 'ok', 'the move completed')
  t.equal((await get(`${gatewayUrl(r, from)}/v/late`)).status, 404, 'the source copy was deleted')
  // What a write sent by a proxy still on the old set does when it lands after the DELETE.
  t.equal((await put(`${gatewayUrl(r, from)}/v/late`, 'late:2')).status, 201, 'a late write recreates the source copy')
  await waitFor(async () => (await get(`${gatewayUrl(r, from)}/v/late`)).status === 404, 'the re-check to delete it', 5000, 50)
  t.same((await r.store.getLocation('v', 'late'))?.members, [to], 'the block stays on its target only')
  t.equal((await get(`${gatewayUrl(r, to)}/v/late`)).body, 'late:1', 'the target keeps the acknowledged write')
  // The gateway answers the DELETE before the planner reads that answer: the count follows.
  await waitFor(() => p.engine.lateCopies === 1, 'the late copy to be counted', 2000, 10)
  t.equal(p.engine.lateCopies, 1, 'counted as a late copy (ferry_planner_late_copies_total)')
})

t.test('the re-check outlives later changes to the set: a move on elsewhere keeps it, a move back onto the gateway ends it', async t => {
  const r = await rig(t)
  const proxy = await r.proxy()
  const p = await r.planner({ migration: { gracePeriodMs: 1500, recoveryIntervalMs: 100 } })
  await waitLeader(p)
  const moveTo = async (block: string, to: string): Promise<void> => {
    const { migrations } = await p.move({ volume: 'v', block, to })
    t.equal((await waitEnded(p, migrations[0]!.id)).result, 'ok', `${block} moved to ${to}`)
  }

  // The block moves on before the re-check: its set changed (a new epoch), yet the late copy on
  // the first source is still no member's and must go (a re-check that stood down on any epoch
  // change left it for good: the load test's "still on gw2").
  const a = await placedBlock(r, proxy.url, 'onward', 'onward:1')
  await moveTo('onward', a.to)
  t.equal((await put(`${gatewayUrl(r, a.from)}/v/onward`, 'onward:late')).status, 201, 'a late write recreates the source copy')
  const third = ['gw1', 'gw2', 'gw3'].find(g => g !== a.from && g !== a.to) as string
  await moveTo('onward', third)
  await waitFor(async () => (await get(`${gatewayUrl(r, a.from)}/v/onward`)).status === 404, 'the re-check to delete the late copy', 8000, 50)
  t.same((await r.store.getLocation('v', 'onward'))?.members, [third], 'the block is on its last target only')
  t.equal((await get(`${gatewayUrl(r, third)}/v/onward`)).body, 'onward:1', 'with the acknowledged write')

  // The block moves back onto the source before the re-check: the copy there is a member's now.
  const b = await placedBlock(r, proxy.url, 'back', 'back:1')
  await moveTo('back', b.to)
  await moveTo('back', b.from)
  await new Promise(resolve => setTimeout(resolve, 2500))
  t.same((await r.store.getLocation('v', 'back'))?.members, [b.from], 'the block is back on its first gateway')
  t.equal((await get(`${gatewayUrl(r, b.from)}/v/back`)).body, 'back:1', 'and its copy there survived the re-check')
  t.equal((await get(`${proxy.url}/v/back`)).body, 'back:1', 'read through the proxy')
})
