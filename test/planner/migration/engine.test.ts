import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { request } from 'undici'
import { blockKey } from '../../../lib/ids.js'
import { waitFor } from '../../helpers/net.js'
import { get, put, rig, waitEnded, waitLeader } from './harness.js'

const etagOf = (b: Buffer | string): string => `"${createHash('sha256').update(b).digest('hex')}"`

t.test('a placed block (R = 1) moves as a membership change: join, copy, in sync, leave, source removed after the grace period', async t => {
  const r = await rig(t)
  const p = await r.planner({ migration: { gracePeriodMs: 300 } })
  await waitLeader(p)
  const [gw1, gw2] = r.gws.urls as [string, string]
  const body = randomBytes(100_000)
  t.equal((await put(`${gw1}/vol/b1`, body)).status, 201)
  t.ok((await r.store.casLocation('vol', 'b1', 0, { gateway: 'gw1' })).ok)

  const { migrations } = await p.move({ volume: 'vol', block: 'b1', to: 'gw2' })
  const id = migrations[0]!.id
  t.match(migrations[0], { from: 'gw1', to: 'gw2', phase: 'queued', reason: 'operator' })
  await waitFor(async () => (await r.store.getLocation('vol', 'b1'))?.gateway === 'gw2', 'the source to leave')
  const left = await r.store.getLocation('vol', 'b1')
  t.match(left, { phase: 'stable', members: ['gw2', 'gw1'], inSync: ['gw2'] }, 'the target serves; the source stays a member out of sync for the grace period')
  t.equal((await get(`${gw1}/vol/b1`)).status, 200, 'the source copy is kept during the grace period')

  const rec = await waitEnded(p, id)
  t.match(rec, { result: 'ok', phase: 'done', bytes: body.length, totalBytes: body.length, error: null })
  const loc = await r.store.getLocation('vol', 'b1')
  t.match(loc, { gateway: 'gw2', phase: 'stable', members: ['gw2'], inSync: ['gw2'] })
  t.equal(loc?.fence, p.leader.fence()?.token, 'every location write carried the leader\'s fencing token')
  const g2 = await get(`${gw2}/vol/b1`)
  t.equal(g2.status, 200)
  t.equal(g2.etag, etagOf(body), 'the target holds the same bytes')
  t.equal((await get(`${gw1}/vol/b1`)).status, 404, 'the source copy was removed')

  const history = await r.store.blockHistory('vol', 'b1')
  t.same(history.map(h => [h.phase, h.gateway, h.reason]), [
    ['stable', 'gw1', 'cas'],
    ['stable', 'gw1', `migration:${id}:join`],
    ['stable', 'gw1', `migration:${id}:in-sync`],
    ['stable', 'gw2', `migration:${id}:leave`],
    ['stable', 'gw2', `migration:${id}:remove`]
  ], 'the version history shows every step; the block never leaves stable (no cut-over)')
})

// Found by the 30-minute soak: the store lost its data during a move's grace period, the
// rebuild located the block on the source (the copy keeps its original's written-at, so the two
// tie), and the clean-up then deleted the source copy: an acknowledged write read 404.
t.test('the clean-up keeps the source copy when the location rests on it again, or is gone', async t => {
  const r = await rig(t)
  const p = await r.planner({ migration: { gracePeriodMs: 600 } })
  await waitLeader(p)
  const gw1 = r.gws.urls[0] as string
  for (const [block, after] of [['rebuilt-on-source', 'relocated'], ['not-rebuilt-yet', 'deleted']] as const) {
    t.equal((await put(`${gw1}/vol/${block}`, 'the only version')).status, 201)
    t.ok((await r.store.casLocation('vol', block, 0, { gateway: 'gw1' })).ok)
    const { migrations } = await p.move({ volume: 'vol', block, to: 'gw2' })
    await waitFor(async () => (await r.store.getLocation('vol', block))?.gateway === 'gw2', `${block}: the target in sync`)
    const moved = await r.store.getLocation('vol', block)
    // As a store loss leaves it during the grace period: rebuilt onto the source, or not yet rebuilt.
    if (after === 'relocated') t.ok((await r.store.casLocation('vol', block, moved?.epoch as number, { gateway: 'gw1', phase: 'stable' })).ok)
    else t.ok((await r.store.deleteLocation('vol', block, moved?.epoch as number)).ok)
    const rec = await waitEnded(p, migrations[0]!.id)
    t.equal(rec.result, after === 'relocated' ? 'rolled-back' : 'ok', `${block}: the move ends (${rec.error ?? 'no error'})`)
    t.equal((await get(`${gw1}/vol/${block}`)).status, 200, `${block}: the source copy is kept`)
  }
  t.match(await r.store.getLocation('vol', 'rebuilt-on-source'), { gateway: 'gw1', phase: 'stable' }, 'the location the rebuild made is left in force')
})

t.test('a block routed by hash is first placed where it is, then moved', async t => {
  const r = await rig(t)
  const p = await r.planner()
  await waitLeader(p)
  const home = p.fleet.hashed(blockKey('vol', 'h1')) as string
  const other = p.fleet.ids.find(id => id !== home) as string
  const url = (id: string): string => r.gws.urls[Number(id.slice(2)) - 1] as string
  await put(`${url(home)}/vol/h1`, 'hashed content')
  t.equal(await r.store.getLocation('vol', 'h1'), null, 'no location yet')

  const { migrations } = await p.move({ volume: 'vol', block: 'h1', to: other })
  t.equal(migrations[0]!.from, home, 'the source is the gateway that serves it by hash')
  const rec = await waitEnded(p, migrations[0]!.id)
  t.equal(rec.result, 'ok')
  const history = await r.store.blockHistory('vol', 'h1')
  t.match(history[0], { gateway: home, phase: 'stable', reason: 'migration:place' }, 'placed first, on its hashed gateway')
  t.equal((await get(`${url(other)}/vol/h1`)).body, 'hashed content')
})

t.test('a block written during the copy (around the proxy) is copied again; progress is visible', async t => {
  const r = await rig(t)
  // 1.2 MB at 600 KB/s: two seconds of copy, and over a second left to write into.
  const p = await r.planner({ migration: { bandwidthBytesPerSec: 600_000, burstBytes: 64 * 1024, cutoverTimeoutMs: 5000 } })
  await waitLeader(p)
  const [gw1, gw2] = r.gws.urls as [string, string]
  await put(`${gw1}/vol/w`, randomBytes(1_200_000))
  await r.store.casLocation('vol', 'w', 0, { gateway: 'gw1' })
  const { migrations } = await p.move({ volume: 'vol', block: 'w', to: 'gw2' })
  const id = migrations[0]!.id

  const mid = await waitFor(async () => {
    const v = await p.engine.get(id)
    return v.progress !== null && v.progress.bytes > 300_000 ? v : undefined
  }, 'copy progress') as Awaited<ReturnType<typeof p.engine.get>>
  t.equal(mid.phase, 'copying')
  t.ok(mid.progress!.percent! > 0 && mid.progress!.percent! < 100, `percent ${mid.progress!.percent}`)
  t.ok(mid.progress!.etaMs! > 0, `eta ${mid.progress!.etaMs} ms`)
  t.ok(mid.progress!.bytesPerSec! > 0 && mid.progress!.bytesPerSec! < 1_200_000, `rate limited: ${mid.progress!.bytesPerSec} B/s`)
  // A write the proxy forwarded to the source before the cut-over (we play the proxy).
  const newer = randomBytes(1000)
  t.equal((await put(`${gw1}/vol/w`, newer)).status, 204)

  const rec = await waitEnded(p, id)
  t.equal(rec.result, 'ok', String(rec.error))
  t.equal(p.engine.recopies, 1, 'copied again once')
  t.equal((await get(`${gw2}/vol/w`)).etag, etagOf(newer), 'the target holds the newer content')
})

t.test('a block deleted from the source mid-migration is rolled back, not moved', async t => {
  const r = await rig(t)
  const p = await r.planner({ migration: { bandwidthBytesPerSec: 300_000, burstBytes: 64 * 1024 } })
  await waitLeader(p)
  const [gw1, gw2] = r.gws.urls as [string, string]
  await put(`${gw1}/vol/d`, randomBytes(300_000))
  await r.store.casLocation('vol', 'd', 0, { gateway: 'gw1' })
  const { migrations } = await p.move({ volume: 'vol', block: 'd', to: 'gw2' })
  await waitFor(async () => ((await p.engine.get(migrations[0]!.id)).progress?.bytes ?? 0) > 10_000, 'copy under way')
  await (await request(`${gw1}/vol/d`, { method: 'DELETE' })).body.dump()
  const rec = await waitEnded(p, migrations[0]!.id)
  t.equal(rec.result, 'rolled-back')
  t.match(rec.error, /FERRY_SOURCE_MISSING/)
  t.match(await r.store.getLocation('vol', 'd'), { gateway: 'gw1', phase: 'stable' }, 'the old location is in force')
  t.equal((await get(`${gw2}/vol/d`)).status, 404, 'the target\'s copy was removed')
})

t.test('refusals: busy block, no-op, unknown gateway, unknown block', async t => {
  const r = await rig(t)
  // 200 kB at 100 kB/s after a 64 KiB burst: the copy runs for over a second, long enough to
  // cancel it mid-copy.
  const p = await r.planner({ migration: { bandwidthBytesPerSec: 100_000, burstBytes: 64 * 1024 } })
  await waitLeader(p)
  const [gw1] = r.gws.urls as [string]
  await put(`${gw1}/vol/x`, randomBytes(200_000))
  await r.store.casLocation('vol', 'x', 0, { gateway: 'gw1' })
  await t.rejects(p.move({ volume: 'vol', block: 'x', to: 'gw1' }), { code: 'FERRY_MIGRATION_NOOP', statusCode: 409 })
  await t.rejects(p.move({ volume: 'vol', block: 'x', to: 'gw9' }), { code: 'FERRY_UNKNOWN_GATEWAY', statusCode: 404 })
  await t.rejects(p.move({ volume: 'vol', block: 'nothing-here', to: 'gw2' }), { code: 'FERRY_BLOCK_NOT_FOUND', statusCode: 404 })
  const { migrations } = await p.move({ volume: 'vol', block: 'x', to: 'gw2' })
  const id = migrations[0]!.id
  await t.rejects(p.move({ volume: 'vol', block: 'x', to: 'gw3' }), { code: 'FERRY_BLOCK_BUSY', statusCode: 409 })
  // Cancelled once the copy is under way, not while queued: the started copy has to be undone.
  await waitFor(async () => ((await p.engine.get(id)).progress?.bytes ?? 0) > 0, 'copy under way')
  const cancelled = await p.engine.cancel(id)
  t.match(cancelled, { id, phase: 'copying', result: null }, 'cancel answers with the migration, still copying')
  const rec = await waitEnded(p, id)
  t.match(rec, { result: 'rolled-back', error: /FERRY_INTERRUPTED: cancelled by the operator/ }, 'a cancelled copy is rolled back')
  t.match(await r.store.getLocation('vol', 'x'), { gateway: 'gw1', phase: 'stable' })
})
