import t, { type Test } from 'tap'
import { request } from 'undici'
import { FerryNode } from '../../bin/node.js'
import { silentLogger } from '../../lib/log.js'
import { createRegistry } from '../../lib/metrics.js'
import { startGateways, type Gateways } from '../helpers/gateway.js'
import { TEST_ADMIN_TOKEN, testConfig } from '../helpers/ferry.js'
import { sleep, waitFor } from '../helpers/net.js'

/** Three reference gateways and one process with the proxy and planner roles at R = 2, leading. */
async function replicatedNode (t: Test, migration: { gracePeriodMs: number, settleMs: number }): Promise<{ node: FerryNode, gws: Gateways, proxy: string, admin: string }> {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, {
    replication: { factor: 2, minInSync: 1 },
    planner: { rebalancer: { enabled: false }, prediction: { enabled: false }, migration }
  })
  const node = new FerryNode({ config, roles: new Set(['proxy', 'planner']), logger: silentLogger, registry: createRegistry(false) })
  await node.start()
  t.teardown(() => node.stop())
  await waitFor(() => node.planner?.isLeader, 'planner leads')
  return { node, gws, proxy: `http://127.0.0.1:${node.proxy?.address.port ?? 0}`, admin: `http://127.0.0.1:${node.admin.address.port}` }
}

/**
 * A move of a block with a replica set is a membership change: the target joins, is copied to,
 * becomes in sync, the source leaves and its copy is deleted after the grace period. A writer
 * keeps writing through the proxy the whole time: no write is held or refused, and the last
 * acknowledged write is what every member holds at the end. Real gateways and sockets, one
 * process with the proxy and planner roles on the memory store.
 */
t.test('R = 2: an operator move is add target, copy, verify, in sync, remove source — no write refused', async t => {
  const { node, gws, proxy, admin } = await replicatedNode(t, { gracePeriodMs: 300, settleMs: 1000 })

  const body = Buffer.alloc(256 * 1024, 'x')
  const first = await request(`${proxy}/v/moved`, { method: 'PUT', body })
  await first.body.dump()
  t.equal(first.statusCode, 201)
  const before = await node.store.getLocation('v', 'moved')
  t.equal(before?.members.length, 2)
  const source = before!.members[0]!
  const target = ['gw1', 'gw2', 'gw3'].find(g => !before!.members.includes(g))!

  let running = true
  const statuses: number[] = []
  let last = ''
  const writer = (async () => {
    let n = 0
    while (running) {
      const v = `v${++n}`
      const r = await request(`${proxy}/v/moved`, { method: 'PUT', body: v })
      await r.body.dump()
      statuses.push(r.statusCode)
      if (r.statusCode < 300) last = v
      await sleep(5)
    }
  })()

  const post = await request(`${admin}/v1/migrations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ volume: 'v', block: 'moved', to: target })
  })
  const posted = await post.body.json() as { migrations: Array<{ id: string, from: string, to: string }> }
  t.equal(post.statusCode, 202)
  t.match(posted.migrations[0], { from: source, to: target })
  const id = posted.migrations[0]!.id
  const done = await waitFor(async () => {
    const m = await (await request(`${admin}/v1/migrations/${id}`)).body.json() as { result: string | null, error: string | null }
    return m.result !== null ? m : undefined
  }, 'the move ends', 20_000)
  t.equal(done?.result, 'ok', `the move succeeded (${done?.error ?? ''})`)
  running = false
  await writer

  // settleMs keeps the target joining for a second: the writer is never idle that long.
  t.ok(statuses.length >= 3, `${statuses.length} writes during the move`)
  t.same(statuses.filter(s => s >= 300), [], 'no write held, refused or failed')
  const after = await node.store.getLocation('v', 'moved')
  t.ok(after?.members.includes(target), 'the target is a member')
  t.notOk(after?.members.includes(source), 'the source left')
  t.same(after?.inSync, after?.members, 'every member in sync')
  const history = await node.store.blockHistory('v', 'moved')
  t.ok(history.some(h => h.reason.endsWith(':join')) && history.some(h => h.reason.endsWith(':in-sync')) && history.some(h => h.reason.endsWith(':leave')), 'join, in-sync and leave in the history')
  t.notOk(history.some(h => h.phase === 'cutover'), 'never in cut-over')
  for (const id of after!.members) {
    const g = gws.gateways[Number(id.slice(2)) - 1]!
    t.equal(await (await request(`${g.url}/v/moved`)).body.text(), last, `${id} holds the last acknowledged write`)
  }
  t.equal(await (await request(`${proxy}/v/moved`)).body.text(), last, 'the proxy serves it')
  const src = gws.gateways[Number(source.slice(2)) - 1]!
  await waitFor(async () => (await request(`${src.url}/v/moved`)).statusCode === 404, 'the source copy is deleted after the grace period', 10_000)
})

/**
 * A drain at R = 2 moves every copy off the gateway, wherever the gateway stands in a set: the
 * sets it heads and the ones it is a second member of (a drain that moved only the heads left
 * half its copies there). Every copy counts toward the gateways' usage.
 */
t.test('R = 2: a drain moves every copy off the gateway, not only the sets it heads', async t => {
  const { node, gws, proxy, admin } = await replicatedNode(t, { gracePeriodMs: 100, settleMs: 50 })
  const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }

  const blocks = Array.from({ length: 12 }, (_, i) => `d${i}`)
  for (const b of blocks) {
    const res = await request(`${proxy}/v/${b}`, { method: 'PUT', body: `${b}:1` })
    await res.body.dump()
    t.equal(res.statusCode, 201, `${b} written`)
  }
  const before = await Promise.all(blocks.map(async b => await node.store.getLocation('v', b)))
  const drained = 'gw1'
  const headed = before.filter(l => l?.members[0] === drained).length
  const second = before.filter(l => l?.members.indexOf(drained) === 1).length
  t.ok(second > 0, `${drained} heads ${headed} sets and is the second member of ${second}`)
  const gateways = async (): Promise<Array<{ id: string, placedBlocks: number }>> =>
    (await (await request(`${admin}/v1/planner`)).body.json() as { gateways: Array<{ id: string, placedBlocks: number }> }).gateways
  t.equal((await gateways()).find(g => g.id === drained)?.placedBlocks, headed + second, 'every copy on the gateway counts, not only the heads')

  const post = await request(`${admin}/v1/gateways/${drained}/drain`, { method: 'POST', headers: auth, body: '{}' })
  await post.body.dump()
  t.equal(post.statusCode, 202)
  await waitFor(async () => (await (await request(`${admin}/v1/gateways/${drained}/drain`)).body.json() as { state: string }).state === 'drained', 'the drain to finish', 30_000)

  const gw1 = gws.gateways[0]!
  for (const b of blocks) {
    const loc = await node.store.getLocation('v', b)
    t.notOk(loc?.members.includes(drained), `${b} left ${drained} (members ${loc?.members.join(',') ?? 'none'})`)
    t.equal(loc?.inSync.length, 2, `${b} still has two copies in sync`)
    t.equal(await (await request(`${proxy}/v/${b}`)).body.text(), `${b}:1`, `${b} reads back`)
  }
  await waitFor(async () => {
    for (const b of blocks) if ((await request(`${gw1.url}/v/${b}`, { method: 'HEAD' })).statusCode !== 404) return false
    return true
  }, `every copy on ${drained} to be deleted`, 10_000)
  t.equal((await gateways()).find(g => g.id === drained)?.placedBlocks, 0, 'nothing placed on the drained gateway')
})

/**
 * While a gateway is drained (an operator's drain, or an evacuation before a predicted failure:
 * the same record), every proxy reads a block from its other in-sync members, before the drain
 * has moved anything: data movement is paused here, so the drained gateway stays a member.
 */
t.test('R = 2: reads go to the other member while a gateway is drained, and come back when the drain ends', async t => {
  const { node, proxy: base, admin } = await replicatedNode(t, { gracePeriodMs: 100, settleMs: 50 })
  const proxy = node.proxy!
  const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }
  const call = async (method: 'POST' | 'DELETE', path: string): Promise<number> => {
    const res = await request(`${admin}${path}`, { method, headers: auth, body: method === 'POST' ? '{}' : undefined })
    await res.body.dump()
    return res.statusCode
  }

  const put = await request(`${base}/v/r`, { method: 'PUT', body: 'r:1' })
  await put.body.dump()
  t.equal(put.statusCode, 201)
  const loc = await node.store.getLocation('v', 'r')
  t.equal(loc?.inSync.length, 2, 'two members in sync')
  // Which member serves this proxy's reads: the proxy counts requests per gateway.
  const servedBy = async (): Promise<string> => {
    const before = new Map(proxy.gateways.all().map(g => [g.id, g.requests]))
    const res = await request(`${base}/v/r`)
    t.equal(await res.body.text(), 'r:1')
    return proxy.gateways.all().find(g => g.requests > (before.get(g.id) ?? 0))?.id ?? 'none'
  }
  const usual = await servedBy()
  t.ok(loc?.members.includes(usual), `reads go to ${usual}`)
  const other = loc!.members.find(m => m !== usual)!

  t.ok(await call('POST', '/v1/planner/pause') < 300, 'data movement paused: the drain moves nothing')
  t.equal(await call('POST', `/v1/gateways/${usual}/drain`), 202, `${usual} drained`)
  await waitFor(() => proxy.gateways.get(usual)?.drained, 'the proxy to hear of the drain', 5000)
  t.same((await node.store.getLocation('v', 'r'))?.members.slice().sort(), loc!.members.slice().sort(), 'the set is unchanged')
  for (let i = 0; i < 5; i++) t.equal(await servedBy(), other, `read ${i + 1} goes to ${other}`)

  t.equal(await call('DELETE', `/v1/gateways/${usual}/drain`), 200, 'drain ended')
  await waitFor(() => proxy.gateways.get(usual)?.drained === false, 'the proxy to hear the drain ended', 5000)
  t.equal(await servedBy(), usual, `reads go to ${usual} again`)
})

/**
 * A repair onto a stale member (out of sync, still a member, so proxies send it every write)
 * copies over what it holds only once that is known to be older than the source's: first
 * written more than a second before (written-at) — the member that missed writes, copied at
 * once — or not, and then it may be a write teed to it that is still on its way to the source,
 * which a proxy has counted as stored there: left alone until the source has it too.
 */
t.test('R = 2: a repair copies over a stale member\'s older bytes at once, never over a newer write on its way to the source', async t => {
  // The planner's repair pass (every replication.repairIntervalMs) finds the stale member and repairs onto it.
  const { node, gws, proxy } = await replicatedNode(t, { gracePeriodMs: 300, settleMs: 200 })
  const url = (id: string): string => gws.urls[Number(id.slice(2)) - 1] as string
  const put = async (base: string, key: string, body: string): Promise<number> => {
    const r = await request(`${base}/v/${key}`, { method: 'PUT', body })
    await r.body.dump()
    return r.statusCode
  }
  const at = async (id: string, key: string): Promise<string> => await (await request(`${url(id)}/v/${key}`)).body.text()
  const inSync = async (key: string): Promise<string[]> => [...(await node.store.getLocation('v', key))?.inSync ?? []].sort()
  /** The block written through the proxy, then its second member made stale, as a failed write makes it. */
  const staleSet = async (key: string, meanwhile: (head: string, stale: string) => Promise<void>): Promise<{ head: string, stale: string }> => {
    t.equal(await put(proxy, key, 'v1'), 201)
    await sleep(1200) // the next version is first written over a second later
    const loc = await node.store.getLocation('v', key)
    const [head, stale] = loc!.members as [string, string]
    await meanwhile(head, stale)
    t.ok((await node.store.casLocation('v', key, loc!.epoch, { gateway: head, members: [head, stale], inSync: [head] })).ok, `${stale} leaves the in-sync set`)
    return { head, stale }
  }

  const started = performance.now()
  const older = await staleSet('missed', async head => { t.ok(await put(url(head), 'missed', 'v2, which the stale member missed') < 300) })
  await waitFor(async () => (await inSync('missed')).length === 2, 'the stale member to be repaired', 20_000)
  t.ok(performance.now() - started < 15_000, 'without waiting out lateWriteMs (35 s)')
  t.equal(await at(older.stale, 'missed'), 'v2, which the stale member missed', 'the stale member holds the source\'s bytes')

  // A write teed to the stale member that has not reached the source yet.
  const newer = await staleSet('late', async (_head, stale) => { t.ok(await put(url(stale), 'late', 'v2, on its way to the source') < 300) })
  await sleep(2500)
  t.equal(await at(newer.stale, 'late'), 'v2, on its way to the source', 'the newer write is not replaced by the source\'s older bytes')
  t.same(await inSync('late'), [newer.head], 'nor is the member in sync without it')
  t.ok(await put(url(newer.head), 'late', 'v2, on its way to the source') < 300, 'the write lands on the source')
  await waitFor(async () => (await inSync('late')).length === 2, 'the stale member to be in sync', 20_000)
  t.equal(await at(newer.stale, 'late'), 'v2, on its way to the source')
})
