import fs from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { stringify } from 'yaml'
import { configSchema } from '../../config/schema.js'
import { dig, hasDig, NO_DIG, parseDig } from '../dns/client.js'
import { startGateways } from '../helpers/gateway.js'
import { freePort, sleep, waitFor } from '../helpers/net.js'
import { spawnFerry } from '../helpers/process.js'
import { startRedis } from '../helpers/redis.js'

const TOKEN = 'workers-test-token-0123456789'

/** The worker processes the primary forked (its children), from /proc. */
function childrenOf (pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

async function metric (adminPort: number, line: RegExp): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text()
  let sum = 0
  for (const l of text.split('\n')) {
    const m = line.exec(l)
    if (m !== null) sum += Number(m[1])
  }
  return sum
}

// `ferry start` with proxy.workers and dns.workers = 2 on a shared Redis: two data-plane
// processes on the same sockets, supervised by a primary that runs the planner and the admin
// listener. Real processes, real sockets, real dig.
t.test('two workers share the proxy and DNS sockets; the primary supervises, merges metrics, forwards admin routes, drains', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-workers-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const [proxyPort, adminPort, dnsPort] = [await freePort(), await freePort(), await freePort()]
  const file = path.join(dir, 'ferry.yaml')
  await writeFile(file, stringify({
    sites: [{ name: 'site-a', subnets: ['127.0.0.0/8'] }],
    gateways: [{ id: 'gw1', url: gws.urls[0], site: 'site-a' }, { id: 'gw2', url: gws.urls[1], site: 'site-a' }],
    state: { backend: 'redis', url: redis.url },
    proxy: { listen: { host: '127.0.0.1', port: proxyPort }, workers: 2, shutdownGraceMs: 2000 },
    dns: { listen: [{ address: '127.0.0.1', port: dnsPort }], workers: 2 },
    admin: { listen: { host: '127.0.0.1', port: adminPort }, token: TOKEN },
    planner: { rebalancer: { enabled: false }, migration: { gracePeriodMs: 100 } }
  }))
  const ferry = spawnFerry(['start', '--config', file, '--roles', 'proxy,dns,planner'])
  t.teardown(() => ferry.stop('SIGKILL'))
  const ready = async (): Promise<boolean> => {
    const r = await request(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null)
    await r?.body.dump()
    return r?.statusCode === 200
  }
  await waitFor(ready, `ready (ferry said: ${ferry.output().slice(-800)})`, 60_000, 200)
  const primary = ferry.child.pid as number
  const workers = childrenOf(primary)
  t.equal(workers.length, 2, 'the primary forked two workers')
  t.equal(await metric(adminPort, /^ferry_workers\{roles="proxy\+dns"\} (\d+)$/), 2, 'both counted ready in the merged metrics')

  // Writes and reads on fresh connections land on either worker; each must see every block.
  for (let i = 0; i < 20; i++) {
    const put = await request(`http://127.0.0.1:${proxyPort}/vol/b${i}`, { method: 'PUT', body: `body ${i}`, reset: true })
    await put.body.dump()
    t.equal(put.statusCode, 201)
  }
  // A move through the planner (in the primary): both workers' location caches must follow it.
  interface BlockView { location: { gateway: string | null, placed: boolean, phase?: string } }
  const blockView = async (): Promise<BlockView> => await (await request(`http://127.0.0.1:${adminPort}/v1/blocks/vol/b0`)).body.json() as BlockView
  const from = (await blockView()).location.gateway
  const to = from === 'gw1' ? 'gw2' : 'gw1'
  const moved = await request(`http://127.0.0.1:${adminPort}/v1/migrations`, {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ volume: 'vol', block: 'b0', to })
  })
  t.equal(moved.statusCode, 202, `move of b0 ${String(from)} → ${to} accepted: ${await moved.body.text()}`)
  await waitFor(async () => {
    const v = await blockView()
    return v.location.gateway === to && v.location.placed && (v.location.phase === undefined || v.location.phase === 'stable')
  }, 'the move to finish', 20_000, 100)
  const direct = await request(`${gws.urls[to === 'gw1' ? 0 : 1] as string}/vol/b0`)
  t.equal(await direct.body.text(), 'body 0', 'b0 is on its new gateway')
  for (let i = 0; i < 20; i++) {
    const get = await request(`http://127.0.0.1:${proxyPort}/vol/b${i}`, { reset: true })
    t.equal(await get.body.text(), `body ${i}`, `b${i} read back through whichever worker took the connection`)
  }
  t.ok(await metric(adminPort, /^ferry_proxy_requests_total\{gateway="[^"]+",method="PUT",code="201"\} (\d+)$/) >= 20, 'the merged metrics count every worker\'s requests')

  // Admin routes only a data plane has are forwarded from the primary to a worker.
  const gwList = await request(`http://127.0.0.1:${adminPort}/v1/gateways`)
  t.equal(gwList.statusCode, 200)
  t.same(((await gwList.body.json()) as { gateways: Array<{ id: string }> }).gateways.map(g => g.id).sort(), ['gw1', 'gw2'])

  if (await hasDig()) {
    for (const transport of ['+notcp', '+tcp']) {
      const out = parseDig(await dig(['@127.0.0.1', '-p', String(dnsPort), transport, 'sandbox.ferry.test', 'SOA']))
      t.equal(out.status, 'NOERROR', `DNS over ${transport === '+tcp' ? 'TCP' : 'UDP'} answers from the workers`)
      t.equal(out.answer.length, 1)
    }
  } else t.comment(NO_DIG)

  // A worker that dies is restarted and counted; the other one serves meanwhile.
  const victim = workers[0] as number
  process.kill(victim, 'SIGKILL')
  let failures = 0
  for (let i = 0; i < 20; i++) {
    const r = await request(`http://127.0.0.1:${proxyPort}/vol/b${i}`, { reset: true }).catch(() => null)
    if (r === null) { failures++; continue }
    if (await r.body.text() !== `body ${i}`) failures++
  }
  t.equal(failures, 0, 'no request on a new connection failed while one worker was down')
  await waitFor(async () => childrenOf(primary).length === 2 && !childrenOf(primary).includes(victim), 'a replacement worker')
  await waitFor(ready, 'ready again with two workers', 30_000, 200)
  t.equal(await metric(adminPort, /^ferry_worker_restarts_total\{roles="proxy\+dns"\} (\d+)$/), 1, 'the restart is counted')

  // SIGTERM drains every worker, then the primary; nothing is left holding the ports.
  const now = childrenOf(primary)
  const code = await ferry.stop('SIGTERM', 20_000)
  t.equal(code, 0, 'clean exit')
  await sleep(200)
  t.same(now.filter(alive), [], 'every worker exited')
  t.equal(ferry.output().includes('exited unasked'), true, 'the crash was logged')
})

t.test('workers > 1 on a memory store is refused with the reason; "auto" on memory means one process', async t => {
  const base = { sites: [{ name: 'a', subnets: ['127.0.0.0/8'] }], gateways: [{ id: 'gw1', url: 'http://127.0.0.1:1', site: 'a' }] }
  const refused = configSchema.safeParse({ ...base, proxy: { workers: 4 } })
  t.equal(refused.success, false)
  t.same(refused.error?.issues[0]?.path, ['proxy', 'workers'])
  t.match(refused.error?.issues[0]?.message, /cannot share state\.backend "memory".*use state\.backend "redis", or workers: 1/)
  const { planWorkers } = await import('../../bin/workers.js')
  const auto = configSchema.parse(base)
  t.same(planWorkers(auto, new Set(['proxy', 'dns']), 8), { count: 1, proxy: 1, dns: 1 })
  const redis = configSchema.parse({ ...base, state: { backend: 'redis', url: 'redis://127.0.0.1:1' } })
  t.same(planWorkers(redis, new Set(['proxy', 'dns']), 8), { count: 8, proxy: 8, dns: 8 }, 'auto = one per core on a shared store')
  t.same(planWorkers(configSchema.parse({ ...base, state: { backend: 'redis', url: 'redis://127.0.0.1:1' }, dns: { workers: 1 } }), new Set(['proxy', 'dns']), 4), { count: 4, proxy: 4, dns: 1 })
  t.same(planWorkers(redis, new Set(['planner']), 8), { count: 0, proxy: 0, dns: 0 }, 'a planner-only process has no workers')
})
