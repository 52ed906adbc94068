import fs from 'node:fs'
import t from 'tap'
import { FAULT_NAMES } from '../../bench/fleet-faults/faults.js'
import { formatReport } from '../../bench/fleet-faults/report.js'
import { problemsOf, runFleetFaults } from '../../bench/fleet-faults/schedule.js'
import { nginxAvailable } from '../helpers/nginx.js'
import { REDIS_SERVER } from '../helpers/redis.js'

/**
 * The whole fleet as separate processes started from the built CLI — two proxies (one with DNS),
 * a planner, Redis with AOF, two reference gateways and nginx WebDAV — under writers and readers,
 * through every fault of the schedule once with short phases. Nothing acknowledged may be lost or
 * read stale through either proxy, every fault must recover, no process may die on its own or log
 * a fatal error. The long version is `npm run soak -- --minutes N`.
 */

const nginx = await nginxAvailable()
const skip = !nginx.ok ? nginx.reason : !fs.existsSync(REDIS_SERVER) ? `${REDIS_SERVER} is not installed` : false

/**
 * Every fault, `redis-restart-empty` too: a store that comes back empty is rebuilt from the
 * gateways, and a proxy recovering from the loss writes only where the rebuild has located a
 * block, so a proxy that has not reconnected yet still reads where the write went (recovery/README.md).
 */
const CI_FAULTS = FAULT_NAMES

// Typically 1.5 min; up to 4 on a machine busy with the rest of the suite (tap's limit is 5).
t.test('every fault of the schedule, under load, through both proxies', { skip, timeout: 270_000 }, async t => {
  const report = await runFleetFaults({
    faults: CI_FAULTS,
    // Deadlines, not durations: each recovery is waited for (up to 45 s on a loaded machine).
    timing: { holdMs: 2000, settleMs: 500, recoveryDeadlineMs: 45_000 },
    // Fewer clients than the soak: on two cores, every request they add slows the recoveries timed here.
    workload: { writers: 4, readers: 1 },
    log: line => { t.comment(line) }
  })
  t.comment(formatReport(report))
  const problems = problemsOf(report)
  t.same(problems, [], problems.length === 0 ? 'nothing lost, nothing stale, every fault recovered' : `logs, configs and report.json kept in ${report.dir}`)
  t.ok(report.writesAcked > 100 && report.reads > 100, `traffic flowed (${report.writesAcked} writes, ${report.reads} reads)`)
  t.same(report.faults.map(f => f.name), CI_FAULTS, 'every fault ran')
})
