import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { stringify } from 'yaml'
import { startGateways } from '../helpers/gateway.js'
import { freePort, sleep, waitFor } from '../helpers/net.js'
import { spawnFerry } from '../helpers/process.js'
import { startRedis } from '../helpers/redis.js'

/**
 * A planner process (`ferry start --roles planner`) whose Redis is SIGKILLed and restarted, with
 * and without persistence. A store outage must degrade the planner — it stops deciding, its admin
 * API keeps answering, /readyz says why — and never end it (it once exited on an uncaught
 * FERRY_STATE_UNAVAILABLE from a rebalancer round). When Redis is back, it leads again.
 */

interface Readiness { status: string, reasons: string[], degraded: string[] }

for (const persistent of [true, false]) {
  t.test(`planner survives a Redis SIGKILL and restart (${persistent ? 'with' : 'without'} persistence)`, async t => {
    const redis = await startRedis({ persistent })
    t.teardown(() => redis.stop())
    const gws = await startGateways(2)
    t.teardown(gws.stopAll)
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-planner-outage-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const adminPort = await freePort()
    const file = path.join(dir, 'ferry.yaml')
    await writeFile(file, stringify({
      log: { level: 'info' },
      sites: [{ name: 'site-a', subnets: ['127.0.0.0/24'] }, { name: 'site-b', subnets: ['127.0.1.0/24'] }],
      gateways: [{ id: 'gw1', url: gws.urls[0], site: 'site-a' }, { id: 'gw2', url: gws.urls[1], site: 'site-b' }],
      admin: { listen: { host: '127.0.0.1', port: adminPort }, token: 'outage-test-token-0123456789' },
      // The rebuild after the restart without persistence reads the gateways cutOffServeMs (+1 s) after it.
      state: { backend: 'redis', url: redis.url, cutOffServeMs: 3000 },
      // Every store path a planner has runs during the outage: rounds, lease renewals, recovery.
      planner: { rebalancer: { intervalMs: 200, minDwellMs: 1000 }, lease: { ttlMs: 2000, renewIntervalMs: 500 }, migration: { recoveryIntervalMs: 300 } }
    }))
    const planner = spawnFerry(['start', '--config', file, '--roles', 'planner'])
    t.teardown(() => planner.stop('SIGKILL'))
    const admin = `http://127.0.0.1:${adminPort}`
    const get = async <T>(p: string): Promise<{ status: number, body: T } | null> => {
      try {
        const r = await request(admin + p, { headersTimeout: 2000, bodyTimeout: 2000 })
        return { status: r.statusCode, body: await r.body.json() as T }
      } catch { return null }
    }
    const leads = async (): Promise<boolean> => (await get<{ leader: boolean }>('/v1/planner'))?.body.leader === true
    await waitFor(leads, 'the planner to lead', 20_000, 100)

    await redis.kill()
    // Long enough for rounds, renewals and recovery passes to fail many times over, and for the lease to run out.
    await sleep(3000)
    t.equal(planner.child.exitCode, null, 'the planner process is still running with Redis down')
    const ready = await get<Readiness>('/readyz')
    t.equal(ready?.status, 200, '/readyz still answers 200 (degraded, not unready)')
    t.equal(ready?.body.status, 'degraded')
    t.match(ready?.body.degraded.join(' ') ?? '', /state: shared state unavailable .*planner not deciding/, 'and says why')
    const status = await get<{ leader: boolean }>('/v1/planner')
    t.equal(status?.status, 200, 'the admin API keeps answering')
    t.equal(status?.body.leader, false, 'a planner that cannot renew its lease stops leading')

    await redis.restart()
    await waitFor(leads, 'the planner to lead again once Redis is back', 20_000, 100)
    await waitFor(async () => (await get<Readiness>('/readyz'))?.body.status === 'ready', '/readyz to say ready again', 10_000, 100)
    t.pass('leads again and is ready once Redis is back')
    t.notMatch(planner.output(), /"level":60|uncaught|unhandled/i, 'nothing fatal or uncaught was logged')
    t.equal(await planner.stop('SIGTERM'), 0, 'exits 0 when told to')
  })
}
