import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { ABSENT, History } from '../../bench/fleet-faults/ledger.js'
import { freePort, sleep, waitFor } from '../helpers/net.js'
import type { FerryProcess } from '../helpers/process.js'
import { startProcessFleet } from '../helpers/process-fleet.js'
import { StaleReport } from '../helpers/stale-report.js'
import { REDIS_SERVER, startRedis } from '../helpers/redis.js'
import { TEST_ADMIN_TOKEN } from '../helpers/ferry.js'

/**
 * Moves as membership changes, as a history: three reference gateways, two proxies and two
 * planners (one leads, one stands by), all separate `ferry` processes on a private, persistent
 * Redis. Writers (one per block, through both proxies in turn) and readers run while the leading
 * planner moves blocks between the gateways, FERRY_HISTORY_MOVES times (default 300 here;
 * `FERRY_HISTORY_MOVES=10000 npx tap test/fault/moves-history.test.ts` for the long run), with
 * the leading planner SIGKILLed (and restarted) after a third of them and Redis SIGKILLed (and
 * restarted on its append-only file) after two thirds. Every acknowledged write and every read
 * goes into the per-key register history of bench/fleet-faults/ledger.ts, which checks that
 * every read returned the last version acknowledged before it started or a later one (or one
 * still in flight). Asserted: 0 refused writes, 0 lost, 0 stale. FERRY_HISTORY_R sets the
 * replication factor (default 1: the single-copy model, whose moves round 1 answered with holds
 * and refusals).
 */

const skip = !fs.existsSync(REDIS_SERVER) ? `${REDIS_SERVER} is not installed` : false
const MOVES = Number(process.env.FERRY_HISTORY_MOVES ?? 300)
const R = Number(process.env.FERRY_HISTORY_R ?? 1)
const BLOCKS = 32

interface Counts { writesAcked: number, writesRefused: number, reads: number, readsFailed: number, failures: string[] }

t.test(`${MOVES} moves (R = ${R}) under writers through two proxies, a planner kill and a Redis kill: 0 refused, 0 lost, 0 stale`, { skip, timeout: Math.max(280_000, MOVES * 300) }, async t => {
  const redis = await startRedis({ persistent: true })
  t.teardown(() => redis.stop())
  const fleet = await startProcessFleet(t, 'moves-history')

  // 0, 1: proxies; 2, 3: planners.
  const ports = await Promise.all([0, 1, 2, 3].map(async () => ({ proxy: await freePort(), admin: await freePort() })))
  const accessLogs = [0, 1].map(i => path.join(fleet.dir, `access-${i}.jsonl`))
  const config = (i: number): Record<string, unknown> => ({
    log: { level: 'warn' },
    ...fleet.topology(),
    proxy: { listen: { host: '127.0.0.1', port: ports[i]!.proxy }, workers: 1 },
    admin: { listen: { host: '127.0.0.1', port: ports[i]!.admin }, token: TEST_ADMIN_TOKEN },
    health: { active: { intervalMs: 500, timeoutMs: 1000 }, passive: { failures: 5, baseEjectMs: 500 } },
    sessions: { enabled: false },
    placement: { enabled: false },
    // Which gateway served each request: what a stale read's report needs to say where it read.
    ...(i < 2 ? { recorder: { accessLog: accessLogs[i] } } : {}),
    // A long per-block history: a stale read is reported with its set's changes around it.
    state: { backend: 'redis', url: redis.url, history: { limit: 1000 } },
    // gracePeriodMs 3 s (30 s by default): a write still in flight when its move ends, one that
    // stored only on the source, is acknowledged by putting the source back in sync while the
    // source is a member; under CI load (event-loop stalls, a Redis restart) writes have taken
    // over a second, and past the grace period they are refused (FERRY_WRITE_NOT_CONFIRMED).
    planner: {
      lease: { ttlMs: 4000, renewIntervalMs: 1000 },
      rebalancer: { enabled: false },
      prediction: { enabled: false },
      health: { probeIntervalMs: 500, probeTimeoutMs: 2000, unhealthyThreshold: 4 },
      migration: { concurrency: 12, settleMs: 150, gracePeriodMs: 3000, recoveryIntervalMs: 1000, retryDelayMs: 200, progressIntervalMs: 10_000 }
    },
    replication: { factor: R, minInSync: 1, downAfterMs: 60_000, repairIntervalMs: 1000 }
  })
  const start = (i: number): FerryProcess => fleet.startFerry(`ferry-${i}`, config(i), i < 2 ? 'proxy' : 'planner')
  const nodes = [0, 1, 2, 3].map(start)
  for (const [i, p] of ports.entries()) {
    // A proxy is ready once it listens and has its locations (/healthz answers before that).
    await waitFor(async () => (await request(`http://127.0.0.1:${p.admin}/${i < 2 ? 'readyz' : 'healthz'}`)).statusCode === 200, `ferry ${i} up`, 90_000)
      .catch(err => { throw new Error(`${(err as Error).message}; its output: ${nodes[i]?.output() ?? ''}`) })
  }
  const proxies = [0, 1].map(i => `http://127.0.0.1:${ports[i]!.proxy}`)
  const plannerAdmins = [2, 3].map(i => `http://127.0.0.1:${ports[i]!.admin}`)
  const proxyAdmin = `http://127.0.0.1:${ports[0]!.admin}`

  const history = new History()
  const counts: Counts = { writesAcked: 0, writesRefused: 0, reads: 0, readsFailed: 0, failures: [] }
  const keys = Array.from({ length: BLOCKS }, (_, i) => `b${i}`)
  let running = true
  let n = 0

  const writer = async (key: string, w: number): Promise<void> => {
    let seq = 0
    while (running) {
      const version = `${key}:v${++seq}`
      const via = proxies[(seq + w) % 2] as string
      const rec = history.beginWrite(key, 'put', version, via)
      try {
        const res = await request(`${via}/vol/${key}`, { method: 'PUT', body: version, headersTimeout: 20_000, bodyTimeout: 20_000 })
        const text = await res.body.text()
        const ok = res.statusCode >= 200 && res.statusCode < 300
        history.endWrite(rec, ok)
        if (ok) counts.writesAcked++
        else { counts.writesRefused++; counts.failures.push(`PUT ${key} via ${via}: ${res.statusCode} ${text.slice(0, 200)}`) }
      } catch (err) {
        history.endWrite(rec, false)
        counts.writesRefused++
        counts.failures.push(`PUT ${key}: ${(err as Error).message}`)
      }
      await sleep(30)
    }
  }
  const report = new StaleReport(plannerAdmins, 'vol', accessLogs)
  const reader = async (r: number): Promise<void> => {
    while (running) {
      const key = keys[(n++ * 7 + r) % keys.length] as string
      const via = proxies[n % 2] as string
      const started = performance.now()
      try {
        const res = await request(`${via}/vol/${key}`, { headersTimeout: 20_000, bodyTimeout: 20_000 })
        const text = await res.body.text()
        const ended = performance.now()
        counts.reads++
        if (res.statusCode === 200 || res.statusCode === 404) report.judged(key, history.checkRead(key, started, ended, res.statusCode === 404 ? ABSENT : text, via, 'load'))
        else { counts.readsFailed++; counts.failures.push(`GET ${key} via ${via}: ${res.statusCode} ${text.slice(0, 200)}`) }
      } catch (err) {
        counts.readsFailed++
        counts.failures.push(`GET ${key}: ${(err as Error).message}`)
      }
    }
  }

  for (const key of keys) {
    const rec = history.beginWrite(key, 'put', `${key}:v0`, proxies[0] as string)
    const res = await request(`${proxies[0]}/vol/${key}`, { method: 'PUT', body: `${key}:v0` })
    await res.body.dump()
    history.endWrite(rec, res.statusCode < 300)
    if (res.statusCode >= 300) throw new Error(`first write of ${key}: ${res.statusCode}`)
  }
  const loads = [...keys.map((k, i) => writer(k, i)), reader(0), reader(1), reader(2)]

  // The mover: submits moves of random blocks to a gateway outside their set, to whichever planner leads.
  let submitted = 0
  const refusals: Record<string, number> = {}
  const submitOne = async (): Promise<void> => {
    const key = keys[Math.floor(Math.random() * keys.length)] as string
    const loc = await request(`${proxyAdmin}/v1/blocks/vol/${key}`).then(async r => r.statusCode === 200 ? (await r.body.json() as { location: { members: string[] } }).location : (await r.body.dump(), null)).catch(() => null)
    if (loc === null) { await sleep(50); return }
    const others = ['gw1', 'gw2', 'gw3'].filter(g => !loc.members.includes(g))
    const to = others[Math.floor(Math.random() * others.length)]
    if (to === undefined) { await sleep(10); return }
    for (const admin of plannerAdmins) {
      const res = await request(`${admin}/v1/migrations`, { method: 'POST', headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ volume: 'vol', block: key, to }) }).catch(() => null)
      if (res === null) continue
      const body = await res.body.json().catch(() => ({})) as { error?: { code: string } }
      if (res.statusCode === 202) { submitted++; return }
      const code = body.error?.code ?? String(res.statusCode)
      refusals[code] = (refusals[code] ?? 0) + 1
      if (code !== 'FERRY_PLANNER_NOT_LEADER') { await sleep(20); return }
    }
    await sleep(200) // no leader right now (a planner was killed): wait for the election
  }
  const faults: string[] = []
  const started = Date.now()
  const movers = Array.from({ length: 6 }, async () => { while (submitted < MOVES && counts.failures.length < 50) await submitOne() })
  const faultsDone = (async () => {
    await waitFor(() => submitted >= MOVES / 3 || !running, 'a third of the moves', MOVES * 1000, 100)
    // SIGKILL the leading planner (whichever answers its status as leader), restart it.
    for (const i of [2, 3]) {
      const st = await request(`http://127.0.0.1:${ports[i]!.admin}/v1/planner`).then(async r => await r.body.json() as { leader?: boolean }).catch(() => null)
      if (st?.leader === true) {
        faults.push(`SIGKILL planner ${i} at ${submitted} moves (${new Date().toISOString()})`)
        nodes[i]!.child.kill('SIGKILL')
        await sleep(2000)
        nodes[i] = start(i)
        break
      }
    }
    if (faults.length === 0) {
      faults.push(`SIGKILL planner 2 at ${submitted} moves (leader unknown)`)
      nodes[2]!.child.kill('SIGKILL')
      await sleep(2000)
      nodes[2] = start(2)
    }
    await waitFor(() => submitted >= (2 * MOVES) / 3 || !running, 'two thirds of the moves', MOVES * 1000, 100)
    faults.push(`SIGKILL redis at ${submitted} moves (${new Date().toISOString()})`)
    await redis.kill()
    await sleep(1000)
    await redis.restart()
  })()
  await Promise.all(movers)
  await faultsDone
  const moveMs = Date.now() - started
  // Let the last moves end (the log, on either planner).
  await waitFor(async () => {
    for (const admin of plannerAdmins) {
      const r = await request(`${admin}/v1/migrations?active=true&limit=1000`).then(async x => x.statusCode === 200 ? await x.body.json() as { migrations: unknown[] } : (await x.body.dump(), null)).catch(() => null)
      if (r !== null && r.migrations.length === 0) return true
    }
    return false
  }, 'every migration to end', 120_000, 500).catch(() => { t.comment('some migrations were still active at the end') })
  running = false
  await Promise.all(loads)

  let results: Record<string, number> = {}
  for (const admin of plannerAdmins) {
    const r = await request(`${admin}/v1/migrations?limit=100000`).then(async x => await x.body.json() as { migrations?: Array<{ result: string | null }> }).catch(() => null)
    if (r?.migrations === undefined) continue
    results = {}
    for (const m of r.migrations) results[m.result ?? 'active'] = (results[m.result ?? 'active'] ?? 0) + 1
    break
  }
  const lost = history.anomalies.filter(a => a.kind === 'lost')
  const stale = history.anomalies.filter(a => a.kind === 'stale')
  const corrupt = history.anomalies.filter(a => a.kind === 'corrupt')
  t.comment(`${submitted} moves submitted in ${moveMs} ms, results ${JSON.stringify(results)}; refusals of submissions ${JSON.stringify(refusals)}; faults: ${faults.join('; ')}`)
  t.comment(`writes: ${counts.writesAcked} acknowledged, ${counts.writesRefused} refused; reads: ${counts.reads} (${counts.readsFailed} failed); lost ${lost.length}, stale ${stale.length}, corrupt ${corrupt.length}`)
  t.ok(submitted >= MOVES, `${MOVES} moves submitted (${submitted})`)
  // Moves in flight when the planner or Redis is killed are rolled back (the next leader undoes the join): counted, not hidden.
  t.ok((results.ok ?? 0) >= MOVES * 0.5, `most moves completed (${results.ok ?? 0} ok, ${results['rolled-back'] ?? 0} rolled back)`)
  t.equal(faults.length, 2, 'a planner and Redis were killed in between')
  t.same(counts.failures.slice(0, 10), [], 'no request failed')
  t.equal(counts.writesRefused, 0, `0 refused writes (${counts.writesAcked} acknowledged)`)
  t.same(lost.slice(0, 5), [], '0 lost acknowledged writes')
  // 0 stale reads is strict again (2026-12-05). The last stale read seen here (b22 at R = 2 read
  // v80 from the member that had gone in sync while v81 was in flight, 63 ms after v81 was
  // acknowledged) was a migration's copy replacing a write teed to the joining target that was
  // late on the source: a copy again re-read the target's version (the teed write's) as its
  // If-Match, and a HEAD that timed out left a first copy unconditional. Copies now replace only
  // bytes known to be older than the source's (planner/migration/steps.ts verifyInSync,
  // test/planner/migration/teed-writes.test.ts reproduces both shapes). 0 stale in 10 runs of
  // 1,000 moves at R = 2 since (load 7-22). The one stale read of the 10,000-move run after that
  // was the checker's: its bounded history had trimmed away the version a slow read began under
  // (bench/fleet-faults/ledger.ts, test/bench/ledger.test.ts).
  // What a stale or lost read needs to be understood: the block's writes and its set's history.
  await report.print(t, [...stale, ...lost])
  t.same(stale.slice(0, 5), [], '0 stale reads')
  t.same(corrupt.slice(0, 5), [], '0 corrupt reads')
  for (const key of keys) {
    const want = history.settledVersion(key)
    for (const via of proxies) t.equal(await (await request(`${via}/vol/${key}`)).body.text(), want, `${key} via ${via}`)
  }
})
