import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { stringify } from 'yaml'
import { ctl } from '../helpers/ctl.js'
import { startGateways } from '../helpers/gateway.js'
import { freePort, sleep, waitFor } from '../helpers/net.js'
import { spawnFerry } from '../helpers/process.js'
import { startRedis } from '../helpers/redis.js'

// The data-movement kill switch across a change of leader, in the running product: two planner
// processes (`ferry start --roles planner`) and a proxy process on a private Redis. Paused through
// the leader with `ferry ctl pause`, the leader SIGKILLed: the standby takes over paused, a move
// asked of it waits in the queue and the block stays where it is, until `ferry ctl resume`.

const TOKEN = 'pause-takeover-token-0123456789'
interface Migration { id: string, block: string, phase: string, result: string | null }
interface PlannerView { leader: boolean, paused: boolean }

t.test('a pause outlives its leader: the new one moves nothing until resumed', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-pause-takeover-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const [proxyPort, proxyAdmin, adminA, adminB] = await Promise.all([freePort(), freePort(), freePort(), freePort()]) as [number, number, number, number]
  const config = (adminPort: number): string => {
    const file = path.join(dir, `ferry-${adminPort}.yaml`)
    fs.writeFileSync(file, stringify({
      log: { level: 'info' },
      sites: [{ name: 'site-a', subnets: ['127.0.0.0/24'] }, { name: 'site-b', subnets: ['127.0.1.0/24'] }],
      gateways: [{ id: 'gw1', url: gws.urls[0], site: 'site-a' }, { id: 'gw2', url: gws.urls[1], site: 'site-b' }],
      proxy: { listen: { host: '127.0.0.1', port: proxyPort }, workers: 1 },
      admin: { listen: { host: '127.0.0.1', port: adminPort }, token: TOKEN },
      state: { backend: 'redis', url: redis.url },
      placement: { enabled: false },
      // A move ends after its grace period (30 s by default): short here, so the wait for its end is not a race with it.
      planner: { lease: { ttlMs: 2000, renewIntervalMs: 500 }, migration: { gracePeriodMs: 1000 } }
    }))
    return file
  }
  const envOf = (port: number): Record<string, string> => ({ FERRY_ADMIN_URL: `http://127.0.0.1:${port}`, FERRY_ADMIN_TOKEN: TOKEN })
  const planner = async (port: number): Promise<PlannerView | null> => {
    try { return (await (await request(`http://127.0.0.1:${port}/v1/planner`)).body.json()) as PlannerView } catch { return null }
  }

  const a = spawnFerry(['start', '--config', config(adminA), '--roles', 'planner'])
  t.teardown(() => a.stop('SIGKILL'))
  await waitFor(async () => (await planner(adminA))?.leader === true, 'planner A leads', 30_000, 100)
  const b = spawnFerry(['start', '--config', config(adminB), '--roles', 'planner'])
  t.teardown(() => b.stop('SIGKILL'))
  await waitFor(async () => typeof (await planner(adminB))?.leader === 'boolean', 'planner B up', 30_000, 100)
  t.equal((await planner(adminB))?.leader, false, 'B stands by')
  const proxy = spawnFerry(['start', '--config', config(proxyAdmin), '--roles', 'proxy'])
  t.teardown(() => proxy.stop('SIGKILL'))
  await waitFor(() => proxy.output().includes('proxy listening'), 'the proxy', 30_000, 100)

  const put = await request(`http://127.0.0.1:${proxyPort}/vol1/blk1`, { method: 'PUT', body: 'stays until resumed' })
  t.equal(put.statusCode, 201)
  await put.body.dump()
  const where = async (): Promise<string> => ((await (await request(`http://127.0.0.1:${proxyAdmin}/v1/blocks/vol1/blk1`)).body.json()) as { location: { gateway: string } }).location.gateway
  const from = await where()
  const to = from === 'gw1' ? 'gw2' : 'gw1'

  const paused = await ctl(['pause'], envOf(adminA))
  t.equal(paused.code, 0, paused.stderr)
  t.match(paused.stdout, /data movement paused/)
  await waitFor(async () => (await planner(adminB))?.paused === true, 'the standby to read the switch from the store (each tick)', 10_000, 100)

  t.equal(await a.stop('SIGKILL'), null, 'the leader is SIGKILLed')
  await waitFor(async () => (await planner(adminB))?.leader === true, 'planner B takes over', 30_000, 100)
  const status = await ctl(['status'], envOf(adminB))
  t.match(status.stdout, /movement\s+PAUSED/, 'ferry ctl status on the new leader: paused')

  const move = await ctl(['move', 'vol1/blk1', to], envOf(adminB))
  t.equal(move.code, 0, `the move is accepted (queued): ${move.stdout}${move.stderr}`)
  const migration = async (): Promise<Migration | undefined> => ((await (await request(`http://127.0.0.1:${adminB}/v1/migrations`)).body.json()) as { migrations: Migration[] }).migrations.find(m => m.block === 'blk1')
  await sleep(2000)
  t.equal((await migration())?.phase, 'queued', 'two seconds on, the move still waits in the queue')
  t.equal(await where(), from, 'and the block has not moved')

  const resumed = await ctl(['resume'], envOf(adminB))
  t.equal(resumed.code, 0, resumed.stderr)
  const done = await waitFor(async () => { const m = await migration(); return m?.result !== null && m?.result !== undefined && m }, 'the move to end', 30_000, 100) as Migration
  t.equal(done.result, 'ok', 'resumed: the queued move runs')
  t.equal(await waitFor(async () => (await where()) === to && to, 'the proxy to see the new location', 10_000, 100), to)
  t.notMatch(b.output() + proxy.output(), /"level":60|uncaught|unhandled/i, 'nothing fatal or uncaught was logged')
})
