/**
 * `npm run soak -- --minutes N`: the fleet fault schedule of test/fault/fleet.test.ts, run round
 * after round for N minutes with longer phases and the rebalancer moving blocks on its own, then a
 * table of what the clients saw and how each fault recovered. Exits 1 when anything was lost or
 * stale, a fault did not recover, or a process died or logged a fatal error.
 *
 *   --minutes N                 how long to keep going (default 10); at least one whole round is run
 *   --redis-persistence aof|none   how the private redis-server runs (default aof)
 *   --faults a,b,…              a subset of the schedule (default: all of it)
 *   --hold-ms N                 how long each fault stays in force (default 8000)
 *   --writers N                 client writers, half undici pools and half idle Python-like sockets (default 8)
 *   --keep DIR                  keep configs, logs and data in DIR (default: a temp dir, kept only on problems)
 *   --workers auto|N            proxy.workers and dns.workers of each proxy process (default auto, as in production;
 *                               the CI schedule in test/fault/fleet.test.ts runs 1)
 */
import fs from 'node:fs'
import { parseArgs } from 'node:util'
import { FAULT_NAMES, type FaultName } from './fleet-faults/faults.js'
import { formatReport } from './fleet-faults/report.js'
import { problemsOf, runFleetFaults } from './fleet-faults/schedule.js'
import { writeResult } from './lib.js'
import { positiveInt } from './procs.js'

export default async function run (args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      minutes: { type: 'string', default: '10' },
      'redis-persistence': { type: 'string', default: 'aof' },
      faults: { type: 'string' },
      'hold-ms': { type: 'string', default: '8000' },
      writers: { type: 'string', default: '8' },
      keep: { type: 'string' },
      workers: { type: 'string', default: 'auto' }
    }
  })
  const minutes = Number(values.minutes)
  if (!(minutes > 0)) throw new Error(`--minutes must be a positive number, got ${values.minutes}`)
  const persistence = values['redis-persistence']
  if (persistence !== 'aof' && persistence !== 'none') throw new Error('--redis-persistence must be aof or none')
  const faults = values.faults === undefined ? FAULT_NAMES : values.faults.split(',').map(f => f.trim()) as FaultName[]
  const unknown = faults.filter(f => !FAULT_NAMES.includes(f))
  if (unknown.length > 0) throw new Error(`unknown fault(s) ${unknown.join(', ')}; the schedule: ${FAULT_NAMES.join(', ')}`)
  if (values.keep !== undefined) fs.mkdirSync(values.keep, { recursive: true })
  const workers = values.workers === 'auto' ? 'auto' : positiveInt('--workers', values.workers)

  const started = Date.now()
  const report = await runFleetFaults({
    faults,
    durationMs: minutes * 60_000,
    timing: { holdMs: positiveInt('--hold-ms', values['hold-ms']), settleMs: 5000, recoveryDeadlineMs: 120_000 },
    deployment: { redisPersistence: persistence, rebalance: true, workers },
    workload: { writers: positiveInt('--writers', values.writers) },
    ...(values.keep !== undefined ? { dir: values.keep } : {}),
    log: line => { console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}`) }
  })
  console.log('\n' + formatReport(report))
  const problems = problemsOf(report)
  const file = writeResult('soak', { minutes, persistence, faults, problems, report })
  console.log(`\n${problems.length === 0 ? 'no problems' : `${problems.length} problem(s):\n  ${problems.join('\n  ')}`}`)
  console.log(`results: ${file}${problems.length > 0 ? `; logs and data: ${report.dir}` : ''}`)
  if (problems.length > 0) process.exitCode = 1
}
