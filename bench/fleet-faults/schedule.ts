/**
 * Runs the fault schedule against a deployed fleet under client load, and reports what the
 * clients saw, how long each recovery took, and every process that misbehaved. The fault test
 * (test/fault/fleet.test.ts) runs it once with short phases; the soak (bench/soak.ts) runs it
 * over and over for as long as it is asked to.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_DEPLOYMENT, FleetDeployment, type DeploymentOptions, type LogProblem, type UnexpectedExit } from './deployment.js'
import { FAULTS, RecoveryProbe, type FaultContext, type FaultName, type FaultStep, type ScheduleTiming } from './faults.js'
import { History, Tally, type Anomaly } from './ledger.js'
import { BlockOps, Workload, type WorkloadOptions } from './workload.js'

export interface RunOptions {
  faults: readonly FaultName[]
  /** Run the faults once each (the test), or round after round until this many ms have passed (the soak). */
  durationMs?: number
  timing: ScheduleTiming
  deployment?: Partial<Omit<DeploymentOptions, 'dir'>>
  workload?: Partial<WorkloadOptions>
  /** Kept after the run (logs, configs, data) when set; otherwise a temp dir, removed unless the run found something. */
  dir?: string
  log?: (line: string) => void
}

export interface FaultRun {
  name: string
  runs: number
  /** Seconds from lifting the fault to serving again, per run that recovered. */
  recoveryS: number[]
  notRecovered: number
  problems: string[]
}

export interface RunReport {
  dir: string
  durationS: number
  rounds: number
  writesAcked: number
  deletesAcked: number
  writesNotAcked: number
  reads: number
  readsFailed: number
  lost: number
  stale: number
  corrupt: number
  anomalies: Anomaly[]
  refusals: Record<string, number>
  outages: Record<string, number>
  findings: Array<{ signature: string, count: number, phases: string[], example: string }>
  keepAliveRaces: number
  gatewayErrors: Record<string, number>
  faults: FaultRun[]
  unexpectedExits: UnexpectedExit[]
  logProblems: LogProblem[]
  finalCheck: { checked: number, unreadable: string[] }
  /** Set when the run itself could not go on (a fault step threw). */
  aborted: string | undefined
}

export const DEFAULT_WORKLOAD: WorkloadOptions = {
  writers: 6,
  blocksPerWriter: 6,
  readers: 2,
  timeoutMs: 20_000,
  idleGapsMs: []
}

/** Everything interesting about a run is a problem worth failing on: the test's and the soak's verdict. */
export function problemsOf (r: RunReport): string[] {
  const out: string[] = []
  if (r.aborted !== undefined) out.push(`aborted: ${r.aborted}`)
  const byPhase = (kind: string): string => {
    const n = new Map<string, number>()
    for (const a of r.anomalies) if (a.kind === kind) n.set(a.phase, (n.get(a.phase) ?? 0) + 1)
    return [...n].map(([phase, k]) => `${phase}: ${k}`).join(', ')
  }
  if (r.lost > 0) out.push(`${r.lost} lost acknowledged writes (${byPhase('lost')})`)
  if (r.stale > 0) out.push(`${r.stale} stale reads (${byPhase('stale')})`)
  if (r.corrupt > 0) out.push(`${r.corrupt} reads of bytes never written (${byPhase('corrupt')})`)
  for (const a of r.anomalies.slice(0, 5)) out.push(`${a.kind}: ${a.key} via ${a.via} in ${a.phase} at ${a.at}: saw ${a.observed}, allowed ${a.allowed.join(' | ')}`)
  for (const f of r.findings) out.push(`finding ×${f.count} in ${f.phases.join(', ')}: ${f.signature} (e.g. ${f.example})`)
  for (const f of r.faults) {
    if (f.notRecovered > 0) out.push(`${f.name}: did not recover ${f.notRecovered} of ${f.runs} times`)
    for (const p of f.problems) out.push(`${f.name}: ${p}`)
  }
  for (const e of r.unexpectedExits) out.push(`${e.member} exited on its own (code ${String(e.code)}, signal ${String(e.signal)}) at ${e.at}; last lines:\n${e.lastLines.join('\n')}`)
  for (const l of r.logProblems) out.push(`${l.member} logged: ${l.line}`)
  for (const u of r.finalCheck.unreadable) out.push(`final read failed: ${u}`)
  return out
}

export async function runFleetFaults (opts: RunOptions): Promise<RunReport> {
  const log = opts.log ?? (() => {})
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-fleet-faults-'))
  const deployOpts: DeploymentOptions = { ...DEFAULT_DEPLOYMENT, ...opts.deployment, dir }
  const timeouts = [deployOpts.idleTimeoutMs, deployOpts.headersTimeoutMs, deployOpts.bodyIdleTimeoutMs]
  const workloadOpts: WorkloadOptions = {
    ...DEFAULT_WORKLOAD,
    // Idle gaps well short of and well past each proxy timeout (close to one would only test the keep-alive race).
    idleGapsMs: [250, Math.min(...timeouts) / 3, ...timeouts.map(t => t + 1500)],
    ...opts.workload
  }
  const deployment = new FleetDeployment(deployOpts)
  const history = new History()
  const tally = new Tally()
  const blockOps = new BlockOps(history, tally, workloadOpts.timeoutMs)
  const started = Date.now()
  const runs = new Map<string, FaultRun>()
  let workload: Workload | undefined
  let probe: RecoveryProbe | undefined
  let aborted: string | undefined
  let rounds = 0
  let finalCheck = { checked: 0, unreadable: [] as string[] }

  // Ctrl-C during a soak: stop every process before exiting.
  const onSignal = (): void => { void deployment.stop().finally(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    log(`deploying in ${dir} (redis persistence: ${deployOpts.redisPersistence})`)
    await deployment.start()
    workload = new Workload(deployment.proxies, blockOps, workloadOpts)
    await workload.populate()
    probe = new RecoveryProbe(deployment, blockOps)
    await probe.setup()
    workload.start()
    await waitUntil(() => (workload as Workload).ops > 50, 'client traffic to flow', 30_000)
    log(`fleet up and loaded in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    tally.phase = 'steady'
    const steps = new Map<FaultName, FaultStep>(opts.faults.map(n => [n, FAULTS[n]()]))
    const volumes = Array.from({ length: workloadOpts.writers }, (_, i) => `w${i}`)
    do {
      for (const [name, step] of steps) {
        if (opts.durationMs !== undefined && rounds > 0 && Date.now() - started > opts.durationMs) break
        const run = runs.get(name) ?? { name, runs: 0, recoveryS: [], notRecovered: 0, problems: [] }
        runs.set(name, run)
        const ctx: FaultContext = { deployment, blockOps, tally, probe, timing: opts.timing, round: run.runs, volumes, blocksPerVolume: workloadOpts.blocksPerWriter, log }
        run.runs++
        await runStep(step, ctx, run)
        await reviveDead(deployment, log)
        tally.phase = 'steady'
        await sleep(opts.timing.settleMs)
      }
      rounds++
    } while (opts.durationMs !== undefined && Date.now() - started < opts.durationMs)
    tally.phase = 'final check'
    await workload.stop()
    finalCheck = await workload.verifyAll()
    log(`final check done at ${((Date.now() - started) / 1000).toFixed(1)} s`)
  } catch (err) {
    aborted = (err as Error).stack ?? String(err)
    log(`aborted: ${aborted}`)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await workload?.close()
    await probe?.close()
    await deployment.stop()
  }

  const report: RunReport = {
    dir,
    durationS: (Date.now() - started) / 1000,
    rounds,
    writesAcked: tally.writesAcked,
    deletesAcked: tally.deletesAcked,
    writesNotAcked: tally.writesNotAcked,
    reads: tally.reads,
    readsFailed: tally.readsFailed,
    lost: tally.lost,
    stale: tally.stale,
    corrupt: tally.corrupt,
    anomalies: history.anomalies.slice(0, 200),
    refusals: Object.fromEntries(tally.refusals),
    outages: Object.fromEntries(tally.outages),
    findings: [...tally.findings].map(([signature, f]) => ({ signature, count: f.count, phases: [...f.phases], example: f.example })),
    keepAliveRaces: tally.keepAliveRaces,
    gatewayErrors: Object.fromEntries(tally.gatewayErrors),
    faults: [...runs.values()],
    unexpectedExits: deployment.unexpectedExits,
    logProblems: deployment.logProblems.slice(0, 50),
    finalCheck,
    aborted
  }
  if (opts.dir === undefined && problemsOf(report).length === 0) fs.rmSync(dir, { recursive: true, force: true })
  else fs.writeFileSync(path.join(dir, 'report.json'), JSON.stringify(report, null, 2) + '\n')
  return report
}

/** Injects, holds, lifts, and times the recovery of one fault. */
async function runStep (step: FaultStep, ctx: FaultContext, run: FaultRun): Promise<void> {
  try {
    await injectAndRecover(step, ctx, run)
  } catch (err) {
    // The step could not do its job (an admin call refused, a restart that did not come up):
    // a problem of this fault; lift it as far as possible and let the schedule go on.
    run.problems.push(`the step failed: ${(err as Error).message}`)
    ctx.log(`${step.name} #${run.runs}: FAILED: ${(err as Error).stack ?? String(err)}`)
    await step.lift(ctx).catch(() => {})
  } finally {
    ctx.tally.tolerated = undefined
  }
}

async function injectAndRecover (step: FaultStep, ctx: FaultContext, run: FaultRun): Promise<void> {
  ctx.tally.phase = step.name
  ctx.tally.tolerated = step.tolerates
  ctx.log(`${step.name} #${run.runs}: inject`)
  await step.inject(ctx)
  if (step.holdsItself !== true) await sleep(ctx.timing.holdMs)
  const liftedAt = performance.now()
  ctx.log(`${step.name} #${run.runs}: lift`)
  await step.lift(ctx)
  const deadline = liftedAt + ctx.timing.recoveryDeadlineMs
  let waitingFor: string | undefined = 'not checked yet'
  while (performance.now() < deadline) {
    waitingFor = await ctx.probe.round().catch((err: Error) => err.message)
    if (waitingFor === undefined && step.pending !== undefined) waitingFor = await step.pending(ctx).catch((err: Error) => err.message)
    if (waitingFor === undefined) break
    await sleep(200)
  }
  if (waitingFor !== undefined) {
    run.notRecovered++
    run.problems.push(`not serving ${ctx.timing.recoveryDeadlineMs / 1000} s after the fault was lifted: ${waitingFor}`)
    ctx.log(`${step.name} #${run.runs}: NOT recovered: ${waitingFor}`)
    return
  }
  const seconds = (performance.now() - liftedAt) / 1000
  run.recoveryS.push(seconds)
  ctx.log(`${step.name} #${run.runs}: recovered in ${seconds.toFixed(2)} s`)
  for (const p of await step.verify?.(ctx) ?? []) run.problems.push(p)
}

/**
 * Between steps every member should be up. One that died on its own has been reported, one a
 * failed step left down is that step's problem: either way it is started again, so the rest of
 * the schedule still exercises a whole fleet (one crash should not hide every later finding).
 */
async function reviveDead (deployment: FleetDeployment, log: (line: string) => void): Promise<void> {
  for (const m of deployment.members.values()) {
    if (m.alive) continue
    log(`${m.name} is down after the step: restarting it`)
    await deployment.restart(m.name).catch(err => { log(`restarting ${m.name} failed: ${(err as Error).message}`) })
  }
}

async function waitUntil (f: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}
