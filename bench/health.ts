/**
 * `npm run bench -- health [--quick] [--weeks N] [--seeds N] [--only nab|scenarios]`: the health model's evaluation.
 *
 * (a) NAB. ferry's detector (1 - predicted health, model defaults, one parameter set, no labels,
 *     causal) on all 58 series, scored with our NAB scorer (planner/health/nab.ts, which
 *     reproduces the published scoreboard) for the three profiles, next to the published
 *     scoreboard. The comparison family (the same model with the classical Gaussian novelty)
 *     is scored alongside. ferry's per-series outputs are written in NAB's results layout,
 *     bench/results/nab/<category>/ferry_<file>.csv, so any NAB scorer can check the figure.
 * (b) Gateway scenarios (planner/health/scenarios.ts). A model trained on a healthy fleet
 *     history watches gateways it has never seen: memory leaks, disk latency growth and CPU
 *     saturation (precursors), crashes (no precursor) and weeks of healthy but noisy telemetry.
 *     Per family: the share of failures with precursors triggered at least 60 s ahead, lead
 *     times, and false triggers per gateway-week; against a reactive threshold baseline. The
 *     trigger is the planner's TriggerPolicy with its defaults for every contender.
 *
 * `--sensitivity` adds a small grid over the novelty parameters on NAB, with a two-fold check
 * (choose on half the series, score on the other half) of how much choosing by NAB score
 * flatters the figure.
 *
 * Writes bench/results/health.json.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { writeResult, ratio, percentile, resultsDir } from './lib.js'
import { loadNabCorpus, scoreDetector, scoreProfile, defaultNabRoot, type ProfileResult } from '../planner/health/nab.js'
import { DEFAULT_NOVELTY, DEFAULT_TAIL_NOVELTY } from '../planner/health/novelty.js'
import { ferryNabScores, nabTime } from '../planner/health/nab-detector.js'
import { HealthModel, type TrainOptions } from '../planner/health/model.js'
import { streamScenario, PRECURSOR_KINDS, type ScenarioKind, type ScenarioInfo } from '../planner/health/scenarios.js'
import { TriggerPolicy } from '../planner/health/trigger.js'
import { evaluateModel } from '../planner/health/evaluate.js'
import { DEFAULT_SIGNAL_SPECS, type TelemetrySample, type TelemetryRecord } from '../planner/health/types.js'

const PROFILES = ['standard', 'reward_low_FP_rate', 'reward_low_FN_rate'] as const
const WEEK_S = 7 * 86400

interface Family { name: string, description: string, options: TrainOptions, nabOnly?: boolean }

const FAMILIES: Family[] = [
  { name: 'ferry', description: 'calibrated local-trend forecast to failure levels + novelty ensemble: max(adaptive resonance, 0.7 x empirical tail) (the model\'s defaults)', options: {} },
  { name: 'tail only', description: 'the same model with the empirical-tail novelty alone (round 1\'s default)', options: { novelty: DEFAULT_TAIL_NOVELTY }, nabOnly: true },
  { name: 'ART only', description: 'the same model with the adaptive-resonance novelty alone (tail weight 0)', options: { novelty: { ...DEFAULT_NOVELTY, tailWeight: 0 } }, nabOnly: true },
  { name: 'persistence+gaussian', description: 'flat (window mean) forecast + online Gaussian z-score novelty', options: { forecaster: 'level', novelty: { kind: 'gaussian', window: 288 } } }
]

function args (argv: string[]): { quick: boolean, weeks: number, seeds: number, sensitivity: boolean, only: 'nab' | 'scenarios' | null } {
  const quick = argv.includes('--quick')
  const o = argv.indexOf('--only')
  const only = o < 0 ? null : argv[o + 1] === 'nab' || argv[o + 1] === 'scenarios' ? argv[o + 1] as 'nab' | 'scenarios' : null
  if (o >= 0 && only === null) throw new Error('--only takes nab or scenarios')
  const sensitivity = argv.includes('--sensitivity')
  const num = (flag: string, dflt: number): number => {
    const i = argv.indexOf(flag)
    if (i < 0) return dflt
    const v = Number(argv[i + 1])
    if (!(v > 0)) throw new Error(`${flag} needs a positive number`)
    return v
  }
  return { quick, sensitivity, only, weeks: num('--weeks', quick ? 0.25 : 3), seeds: Math.round(num('--seeds', quick ? 4 : 20)) }
}

// ---------------------------------------------------------------- NAB

function fmt2 (v: number): string { return v.toFixed(2) }

function writeNabOutputs (corpus: ReturnType<typeof loadNabCorpus>, scores: Map<string, Float64Array>): string {
  const root = path.join(resultsDir, 'nab')
  for (const f of corpus.files) {
    const dir = path.join(root, f.category)
    fs.mkdirSync(dir, { recursive: true })
    const s = scores.get(f.key) as Float64Array
    const lines = ['timestamp,value,anomaly_score']
    for (let i = 0; i < f.values.length; i++) lines.push(`${f.timestamps[i] as string},${f.values[i] as number},${(s[i] as number).toPrecision(8)}`)
    fs.writeFileSync(path.join(dir, `ferry_${f.name}`), lines.join('\n') + '\n')
  }
  return root
}

function nab (): Record<string, unknown> {
  const root = defaultNabRoot()
  const corpus = loadNabCorpus(root)
  const published = JSON.parse(fs.readFileSync(path.join(root, 'results', 'final_results.json'), 'utf8')) as Record<string, Record<string, number>>
  const out: Record<string, Record<string, ProfileResult>> = {}
  const timing: Record<string, number> = {}
  let ferryScores: Map<string, Float64Array> | undefined
  for (const fam of FAMILIES) {
    const started = process.hrtime.bigint()
    const scores = new Map<string, Float64Array>()
    for (const f of corpus.files) scores.set(f.key, ferryNabScores(f.timestamps, f.values, fam.options))
    timing[fam.name] = Number(process.hrtime.bigint() - started) / 1e6
    out[fam.name] = scoreDetector(corpus, scores)
    if (fam.name === 'ferry') ferryScores = scores
  }
  const outputs = writeNabOutputs(corpus, ferryScores as Map<string, Float64Array>)

  // The scoreboard: published detectors and ours, by standard score.
  const rows: Array<{ detector: string, ours: boolean, scores: Record<string, number> }> = Object.entries(published).map(([detector, s]) => ({ detector, ours: false, scores: s }))
  for (const [name, r] of Object.entries(out)) rows.push({ detector: `${name} (this run)`, ours: true, scores: Object.fromEntries(PROFILES.map(p => [p, (r[p] as ProfileResult).normalized])) })
  rows.sort((a, b) => (b.scores.standard ?? 0) - (a.scores.standard ?? 0))
  console.log('\nNAB (58 series, normalised: null detector 0, perfect 100)')
  console.log(`${'detector'.padEnd(34)} ${'standard'.padStart(9)} ${'low FP'.padStart(9)} ${'low FN'.padStart(9)}`)
  for (const r of rows) console.log(`${(r.ours ? '> ' : '  ') + r.detector.padEnd(32)} ${PROFILES.map(p => fmt2(r.scores[p] ?? NaN).padStart(9)).join(' ')}`)
  const ferry = out.ferry as Record<string, ProfileResult>
  const std = ferry.standard as ProfileResult
  console.log(`ferry standard: threshold ${std.threshold.toPrecision(6)}, raw ${std.raw.toFixed(3)}, TP rows ${std.counts.tp}, FP rows ${std.counts.fp}; per-series outputs in ${path.relative(process.cwd(), outputs)}`)

  const perCategory: Record<string, number> = {}
  for (const f of std.files) {
    const c = f.file.split('/')[0] as string
    perCategory[c] = (perCategory[c] ?? 0) + f.score
  }
  return {
    corpus: { files: corpus.files.length, windows: corpus.windowCount, rows: corpus.files.reduce((a, f) => a + f.values.length, 0) },
    published: { numenta: published.numenta, windowedGaussian: published.windowedGaussian, ARTime: published.ARTime, contextOSE: published.contextOSE },
    families: Object.fromEntries(Object.entries(out).map(([name, r]) => [name, Object.fromEntries(PROFILES.map(p => {
      const x = r[p] as ProfileResult
      return [p, { normalized: x.normalized, raw: x.raw, threshold: x.threshold, counts: x.counts }]
    }))])),
    ferryStandardRawByCategory: perCategory,
    ferryVsNumentaStandard: ratio(std.normalized, published.numenta?.standard ?? NaN),
    detectorMs: timing,
    target: { standard: 75, met: std.normalized >= 75 },
    outputs: path.relative(process.cwd(), outputs)
  }
}

/**
 * How much does picking the novelty parameters by NAB score flatter the figure? A grid around
 * the defaults, scored on the whole corpus and on its two halves (alternate series): the
 * parameters that win on one half are scored on the other.
 */
function sensitivity (): Record<string, unknown> {
  const corpus = loadNabCorpus(defaultNabRoot())
  const half = (parity: number): ReturnType<typeof loadNabCorpus> => {
    const files = corpus.files.filter((_, i) => i % 2 === parity)
    return { ...corpus, files, windowCount: files.reduce((a, f) => a + f.windows.length, 0) }
  }
  const halves = [half(0), half(1)]
  const rows: Array<{ window: number, baselineAlpha: number, refractory: number, all: number, halves: number[] }> = []
  for (const window of [12, 24, 48]) {
    for (const baselineAlpha of [0.003, 0.01, 0.03]) {
      for (const refractory of [20, 50]) {
        const novelty = { ...DEFAULT_NOVELTY, tail: { ...DEFAULT_NOVELTY.tail, window, baselineAlpha, refractory } }
        const scores = new Map<string, Float64Array>()
        for (const f of corpus.files) scores.set(f.key, ferryNabScores(f.timestamps, f.values, { novelty }))
        rows.push({ window, baselineAlpha, refractory, all: scoreProfile(corpus, scores, 'standard').normalized, halves: halves.map(h => scoreProfile(h, scores, 'standard').normalized) })
      }
    }
  }
  const crossed = [0, 1].map(k => {
    const chosen = rows.reduce((a, b) => (b.halves[k] as number) > (a.halves[k] as number) ? b : a)
    const other = 1 - k
    const best = rows.reduce((a, b) => (b.halves[other] as number) > (a.halves[other] as number) ? b : a)
    return { chosenOnHalf: k, chosen: { window: chosen.window, baselineAlpha: chosen.baselineAlpha, refractory: chosen.refractory }, scoreOnOtherHalf: chosen.halves[other], bestOnOtherHalf: best.halves[other] }
  })
  console.log('\nNAB sensitivity (standard): window x baselineAlpha x refractory')
  for (const r of rows) console.log(`  window ${String(r.window).padStart(2)}  alpha ${r.baselineAlpha.toFixed(3)}  refractory ${r.refractory}:  ${fmt2(r.all)}  (halves ${r.halves.map(fmt2).join(' / ')})`)
  for (const c of crossed) console.log(`  chosen on half ${c.chosenOnHalf}: ${fmt2(c.scoreOnOtherHalf as number)} on the other half (its best: ${fmt2(c.bestOnOtherHalf as number)})`)
  return { grid: rows, crossValidation: crossed }
}

// ---------------------------------------------------------------- interval coverage

/** NAB's real machine telemetry (the realKnownCause failures and the AWS CloudWatch CPU series). */
export const NAB_MACHINE_SERIES = [
  'realKnownCause/machine_temperature_system_failure.csv',
  'realKnownCause/ec2_request_latency_system_failure.csv',
  'realKnownCause/cpu_utilization_asg_misconfiguration.csv',
  'realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv',
  'realAWSCloudwatch/ec2_cpu_utilization_53ea38.csv',
  'realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv',
  'realAWSCloudwatch/ec2_cpu_utilization_77c1ca.csv',
  'realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv',
  'realAWSCloudwatch/ec2_cpu_utilization_ac20cd.csv',
  'realAWSCloudwatch/ec2_cpu_utilization_c6585a.csv',
  'realAWSCloudwatch/ec2_cpu_utilization_fe7f93.csv'
]

type Coverage = Array<{ level: number, coverage: number | null, n: number }>

function pool (list: Coverage[]): Coverage {
  const levels = list[0]?.map(c => c.level) ?? []
  return levels.map((level, k) => {
    let hits = 0
    let n = 0
    for (const c of list) { const x = c[k]; if (x !== undefined && x.coverage !== null) { hits += x.coverage * x.n; n += x.n } }
    return { level, coverage: n > 0 ? hits / n : null, n }
  })
}

/**
 * Coverage of the forecast intervals on held-out telemetry, as the live model measures it (the
 * figure GET /v1/health reports): with the training-time errors only (calibrationWindow 0) and
 * with rolling conformal calibration (the default). Scenario telemetry: the model trained on
 * the healthy fleet watches held-out healthy and degrading gateways. NAB machine series: each
 * series is a gateway seen for the first time (untrained model, horizon 1 h, 5-minute samples);
 * the coverage is the signal's (it has no failure level, so its health would be 1 throughout).
 */
function coverageRun (trained: HealthModel, heldOut: TelemetryRecord[]): Record<string, unknown> {
  const byGateway = new Map<string, TelemetryRecord[]>()
  for (const r of heldOut) { let l = byGateway.get(r.gateway); if (l === undefined) byGateway.set(r.gateway, l = []); l.push(r) }
  const scenario = (window: number): Coverage => {
    const m = HealthModel.fromJSON({ ...trained.toJSON(), params: { ...trained.params, calibrationWindow: window } })
    for (const [gw, rows] of byGateway) for (const r of rows) m.ingest(gw, r)
    return pool([...byGateway.keys()].map(g => m.coverage(g, 'all')))
  }
  const corpus = loadNabCorpus(defaultNabRoot())
  const nabRun = (window: number): { pooled: Coverage, series: Record<string, Coverage> } => {
    const series: Record<string, Coverage> = {}
    for (const key of NAB_MACHINE_SERIES) {
      const f = corpus.files.find(x => x.key === key)
      if (f === undefined) continue
      const m = HealthModel.untrained({ horizonS: 3600, windowS: 7200, medianS: 900, sampleIntervalS: 300, calibrationWindow: window, signals: [{ name: 'value', direction: 'both' }] })
      let last = -Infinity
      f.values.forEach((v, i) => { last = Math.max(nabTime(f.timestamps[i] as string), last + 1); m.ingest(key, { timestamp: last, value: v }) })
      series[key] = m.coverage(key, 'all')
    }
    return { pooled: pool(Object.values(series)), series }
  }
  const out = {
    scenarios: { trainedErrors: scenario(0), rolling: scenario(500) },
    nabMachine: { trainedErrors: nabRun(0), rolling: nabRun(500) }
  }
  const show = (c: Coverage): string => c.map(x => `${(100 * x.level).toFixed(0)}%: ${x.coverage === null ? '-' : (100 * x.coverage).toFixed(1)}`).join('  ')
  console.log(`\nInterval coverage (forecast at the horizon vs the realised level; nominal 90 / 80 / 95 %)`)
  console.log(`  scenario telemetry, trained errors:   ${show(out.scenarios.trainedErrors)}   (${out.scenarios.trainedErrors[0]?.n ?? 0} forecasts)`)
  console.log(`  scenario telemetry, rolling conformal: ${show(out.scenarios.rolling)}`)
  console.log(`  NAB machine series, Gaussian errors:  ${show(out.nabMachine.trainedErrors.pooled)}   (${out.nabMachine.trainedErrors.pooled[0]?.n ?? 0} forecasts, ${Object.keys(out.nabMachine.rolling.series).length} series)`)
  console.log(`  NAB machine series, rolling conformal: ${show(out.nabMachine.rolling.pooled)}`)
  const within = (c: Coverage): boolean => c.every(x => x.coverage !== null && Math.abs(x.coverage - x.level) <= 0.05)
  return { ...out, target: { withinFivePoints: { scenarios: within(out.scenarios.rolling), nabMachine: within(out.nabMachine.rolling.pooled) } } }
}

// ---------------------------------------------------------------- cost

/**
 * Cost of the live model: `gateways` healthy gateways at 1 Hz through one model (trained), as
 * the planner feeds it: every sample ingested, one assessment per 5-second tick. Past the ART
 * learning period (750 samples) so every part is running. Memory: heap growth per gateway
 * (after a GC when node runs with --expose-gc), beside the bound worked out from the structures.
 */
function costRun (trained: HealthModel, gateways: number, durationS: number): Record<string, unknown> {
  const m = HealthModel.fromJSON(trained.toJSON())
  const feeds = Array.from({ length: gateways }, (_, i) => [...streamScenario('healthy', { seed: 400_000 + i, durationS, gateway: `cost-${i}` }).steps()].map(s => s.sample))
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  let ingestNs = 0
  let assessNs = 0
  let samples = 0
  let assessments = 0
  // CPU time as well as wall time: on a shared machine the wall clock mostly measures waiting
  // for a core (the process's CPU time counts its GC threads too, which is part of the cost).
  const cpuBefore = process.cpuUsage()
  for (let k = 0; k < durationS; k++) {
    for (let g = 0; g < gateways; g++) {
      const s = (feeds[g] as TelemetrySample[])[k]
      if (s === undefined) continue
      const a = process.hrtime.bigint()
      m.ingest(`cost-${g}`, s)
      const b = process.hrtime.bigint()
      ingestNs += Number(b - a)
      samples++
      if (k % 5 === 4) { m.assess(`cost-${g}`); assessNs += Number(process.hrtime.bigint() - b); assessments++ }
    }
  }
  const cpu = process.cpuUsage(cpuBefore)
  feeds.length = 0
  gc?.()
  const heapPerGateway = (process.memoryUsage().heapUsed - heapBefore) / gateways
  // What the gateways' online state holds: the heap with it, minus the heap once it is dropped
  // (less noisy than the growth from the start, which the feeds' garbage blurs).
  const heapWith = process.memoryUsage().heapUsed
  for (let g = 0; g < gateways; g++) m.forget(`cost-${g}`)
  gc?.()
  const heldPerGateway = (heapWith - process.memoryUsage().heapUsed) / gateways
  const usPerSample = ingestNs / 1e3 / samples + assessNs / 1e3 / samples
  const signals = DEFAULT_SIGNAL_SPECS.length
  // Per signal: ≤ 256 ART boxes of 2 x 16 float32s (+ array overhead), 500 errors (f64) and 3 x 500 hit flags, a window of ≤ 600 (t, x) pairs, 4 tails of ≤ 256 numbers.
  const boundBytes = signals * (256 * (32 * 4 + 80) + 500 * 8 + 3 * 500 + 600 * 2 * 8 + 4 * 256 * 8)
  const out = {
    gateways, durationS, samples, assessments,
    usPerSampleIngest: ingestNs / 1e3 / samples,
    usPerAssessment: assessNs / 1e3 / Math.max(1, assessments),
    usPerSample,
    gatewaysPerCoreAt1Hz: Math.floor(1e6 / usPerSample),
    cpuUsPerSample: (cpu.user + cpu.system) / samples,
    gatewaysPerCoreAt1HzByCpu: Math.floor(1e6 * samples / (cpu.user + cpu.system)),
    heapPerGatewayKB: heapPerGateway / 1024,
    heldPerGatewayKB: heldPerGateway / 1024,
    heapMeasuredAfterGc: gc !== undefined,
    boundPerGatewayKB: boundBytes / 1024
  }
  console.log(`\nCost: ${out.usPerSample.toFixed(1)} µs per sample wall (ingest ${out.usPerSampleIngest.toFixed(1)} µs, one assessment per 5 samples ${out.usPerAssessment.toFixed(1)} µs) -> ${out.gatewaysPerCoreAt1Hz} gateways at 1 Hz per core; CPU time ${out.cpuUsPerSample.toFixed(1)} µs per sample -> ${out.gatewaysPerCoreAt1HzByCpu} per core; heap ${out.heapPerGatewayKB.toFixed(0)} KB per gateway (freed by forgetting them: ${out.heldPerGatewayKB.toFixed(0)} KB)${gc === undefined ? ' (no --expose-gc: indicative)' : ''}, bound ${out.boundPerGatewayKB.toFixed(0)} KB`)
  return out
}

// ---------------------------------------------------------------- scenarios

/** A contender watching one gateway: a health model family, or the reactive baseline. */
interface Watcher {
  name: string
  /** Feeds one sample; returns true when the trigger policy is in the triggered state. */
  tick: (gateway: string, sample: TelemetrySample) => { event: 'trigger' | 'clear' | null, triggered: boolean }
  reset: () => void
}

function modelWatcher (name: string, trained: HealthModel): Watcher {
  let model = HealthModel.fromJSON(trained.toJSON())
  let policy = new TriggerPolicy()
  return {
    name,
    tick (gateway, sample) {
      const d = policy.update(model.score(gateway, [sample]))
      return { event: d.event, triggered: d.triggered }
    },
    reset () { model = HealthModel.fromJSON(trained.toJSON()); policy = new TriggerPolicy() }
  }
}

/**
 * The reactive baseline: a static alert on the current value of any signal at 80% of its
 * failure level (what a dashboard alert rule does), through the same TriggerPolicy; either
 * with the policy's 3 ticks, or held for a minute like a Prometheus rule with `for: 1m`.
 */
function reactiveWatcher (name: string, consecutive: number): Watcher {
  const make = (): TriggerPolicy => new TriggerPolicy({ consecutive })
  let policy = make()
  const alarms = DEFAULT_SIGNAL_SPECS.filter(s => s.limit !== undefined).map(s => [s.name, 0.8 * (s.limit as number)] as const)
  return {
    name,
    tick (_gateway, sample) {
      const s = sample as Record<string, number | undefined>
      const alarm = alarms.some(([name, level]) => (s[name] ?? -Infinity) >= level)
      const d = policy.update({ score: alarm ? 0 : 1, confidence: 1 })
      return { event: d.event, triggered: d.triggered }
    },
    reset () { policy = make() }
  }
}

interface FailureResult { scenario: string, kind: ScenarioKind, rampS: number | null, leadS: number | null }
interface Tally { failures: FailureResult[], falseTriggers: number, healthyS: number, ticks: number, ms: number }

/** Streams one scenario through every watcher. */
function runScenario (info: ScenarioInfo, steps: () => Generator<{ sample: TelemetrySample }>, watchers: Watcher[], tallies: Map<string, Tally>): void {
  const failAt = info.failureS === null ? Infinity : info.start + info.failureS * 1000
  const onsetAt = info.onsetS === null ? (info.failureS === null ? Infinity : failAt) : info.start + info.onsetS * 1000
  const first = new Map<string, number>()
  let lastHealthy = info.start
  for (const w of watchers) w.reset()
  for (const { sample } of steps()) {
    if (sample.timestamp >= failAt) break
    const healthy = sample.timestamp < onsetAt
    if (healthy) lastHealthy = sample.timestamp
    for (const w of watchers) {
      const started = process.hrtime.bigint()
      const d = w.tick(info.gateway, sample)
      const t = tallies.get(w.name) as Tally
      t.ms += Number(process.hrtime.bigint() - started) / 1e6
      t.ticks++
      if (d.event === 'trigger' && healthy) t.falseTriggers++
      if (!healthy && d.triggered && !first.has(w.name)) first.set(w.name, sample.timestamp)
    }
  }
  for (const w of watchers) {
    const t = tallies.get(w.name) as Tally
    t.healthyS += (Math.min(lastHealthy, failAt) - info.start) / 1000
    if (info.failureS !== null) {
      const f = first.get(w.name)
      t.failures.push({ scenario: info.name, kind: info.kind, rampS: info.onsetS === null ? null : info.failureS - info.onsetS, leadS: f === undefined ? null : (failAt - f) / 1000 })
    }
  }
}

function summarise (t: Tally): Record<string, unknown> {
  const withPrecursor = t.failures.filter(f => f.kind !== 'crash')
  const leads = withPrecursor.map(f => f.leadS ?? -Infinity).sort((a, b) => a - b)
  const ahead60 = withPrecursor.filter(f => (f.leadS ?? -Infinity) >= 60).length
  const byKind: Record<string, unknown> = {}
  for (const kind of [...PRECURSOR_KINDS, 'crash']) {
    const fs = t.failures.filter(f => f.kind === kind)
    const l = fs.map(f => f.leadS ?? -Infinity).sort((a, b) => a - b)
    byKind[kind] = { failures: fs.length, triggeredAhead60s: fs.filter(f => (f.leadS ?? -Infinity) >= 60).length, triggeredBeforeFailure: fs.filter(f => f.leadS !== null).length, medianLeadS: finite(percentile(l, 50)), minLeadS: finite(l[0] ?? NaN) }
  }
  const weeks = t.healthyS / WEEK_S
  return {
    precursorFailures: withPrecursor.length,
    triggeredAhead60s: ahead60,
    shareAhead60s: withPrecursor.length > 0 ? ahead60 / withPrecursor.length : NaN,
    leadS: { p10: finite(percentile(leads, 10)), median: finite(percentile(leads, 50)), p90: finite(percentile(leads, 90)) },
    byKind,
    falseTriggers: t.falseTriggers,
    healthyGatewayWeeks: weeks,
    falseTriggersPerGatewayWeek: weeks > 0 ? t.falseTriggers / weeks : NaN,
    falseTriggersPerGatewayWeekUpper95: weeks > 0 ? poissonUpper95(t.falseTriggers) / weeks : NaN,
    usPerTick: t.ticks > 0 ? 1000 * t.ms / t.ticks : NaN,
    missed: t.failures.filter(f => f.kind !== 'crash' && (f.leadS ?? -Infinity) < 60).map(f => `${f.scenario} (ramp ${((f.rampS ?? 0) / 60).toFixed(1)} min, lead ${f.leadS === null ? 'none' : f.leadS.toFixed(0) + ' s'})`)
  }
}

function finite (v: number): number | null { return Number.isFinite(v) ? v : null }

/**
 * One-sided 95% upper bound of a Poisson rate from k events (exact: the lambda at which
 * P(X <= k) = 0.05). Zero false triggers in three gateway-weeks still allows about one a week.
 */
export function poissonUpper95 (k: number): number {
  // P(X <= k; lambda) summed in log space: exp(-lambda) underflows for large lambda.
  const cdf = (lambda: number): number => {
    const logs: number[] = []
    let logTerm = -lambda
    logs.push(logTerm)
    for (let i = 1; i <= k; i++) { logTerm += Math.log(lambda / i); logs.push(logTerm) }
    const max = Math.max(...logs)
    return Math.exp(max) * logs.reduce((a, l) => a + Math.exp(l - max), 0)
  }
  let lo = k
  let hi = k + 10 + 5 * Math.sqrt(k + 1)
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2
    if (cdf(mid) > 0.05) lo = mid
    else hi = mid
  }
  return (lo + hi) / 2
}

function scenarios (opts: { weeks: number, seeds: number, quick: boolean }): Record<string, unknown> {
  // Fleet history for training: healthy gateways that are not among the ones evaluated.
  const history: TelemetryRecord[] = []
  const trainGateways = opts.quick ? 3 : 6
  const trainHours = opts.quick ? 3 : 8
  for (let i = 0; i < trainGateways; i++) {
    const { steps } = streamScenario('healthy', { seed: 100_000 + i, durationS: trainHours * 3600, gateway: `train-${i}` })
    for (const { sample } of steps()) history.push({ ...sample, gateway: `train-${i}` })
  }
  const trained = new Map<string, HealthModel>()
  const trainMs: Record<string, number> = {}
  const families = FAMILIES.filter(f => f.nabOnly !== true)
  for (const fam of families) {
    const started = Date.now()
    trained.set(fam.name, HealthModel.train(history, fam.options))
    trainMs[fam.name] = Date.now() - started
  }
  const watchers: Watcher[] = [
    ...families.map(f => modelWatcher(f.name, trained.get(f.name) as HealthModel)),
    reactiveWatcher('threshold, 3 ticks', 3),
    reactiveWatcher('threshold, for 1m', 60)
  ]
  const tallies = new Map(watchers.map(w => [w.name, { failures: [], falseTriggers: 0, healthyS: 0, ticks: 0, ms: 0 } as Tally]))

  for (const kind of [...PRECURSOR_KINDS, 'crash'] as ScenarioKind[]) {
    for (let seed = 1; seed <= opts.seeds; seed++) {
      const { info, steps } = streamScenario(kind, { seed })
      runScenario(info, steps, watchers, tallies)
    }
  }
  // Healthy noise, one gateway-week at a time (a gateway per week: new personality each).
  const fullWeeks = Math.floor(opts.weeks)
  const parts = [...Array(fullWeeks).fill(WEEK_S) as number[], ...(opts.weeks > fullWeeks ? [(opts.weeks - fullWeeks) * WEEK_S] : [])]
  parts.forEach((durationS, i) => {
    const { info, steps } = streamScenario('healthy', { seed: 200_000 + i, durationS, gateway: `healthy-${i}` })
    runScenario(info, steps, watchers, tallies)
  })

  // Calibration on held-out telemetry (healthy and degrading), for the chosen family.
  const heldOut: TelemetryRecord[] = []
  for (const kind of ['healthy', ...PRECURSOR_KINDS] as ScenarioKind[]) {
    for (let seed = 301; seed <= (opts.quick ? 301 : 303); seed++) {
      const { info, steps } = streamScenario(kind, { seed, durationS: 2 * 3600 })
      for (const { sample } of steps()) heldOut.push({ ...sample, gateway: info.gateway })
    }
  }
  const calibration = evaluateModel(trained.get('ferry') as HealthModel, heldOut, { stride: 5 })
  const coverage = coverageRun(trained.get('ferry') as HealthModel, heldOut)
  const cost = costRun(trained.get('ferry') as HealthModel, opts.quick ? 20 : 100, 1800)

  const results = Object.fromEntries([...tallies].map(([name, t]) => [name, summarise(t)]))
  console.log(`\nGateway scenarios: ${opts.seeds} seeds per kind, ${opts.weeks} healthy gateway-weeks (+ the healthy stretches before each failure); trained on ${trainGateways} healthy gateways x ${trainHours} h`)
  console.log(`${'contender'.padEnd(24)} ${'>=60 s ahead'.padStart(14)} ${'median lead'.padStart(12)} ${'p10 lead'.padStart(9)} ${'false/gw-week'.padStart(14)} ${'(95% up to)'.padStart(12)} ${'us/tick'.padStart(8)}`)
  for (const [name, r] of Object.entries(results) as Array<[string, ReturnType<typeof summarise> & Record<string, unknown>]>) {
    const lead = r.leadS as { median: number | null, p10: number | null }
    console.log(`${name.padEnd(24)} ${`${r.triggeredAhead60s as number}/${r.precursorFailures as number}`.padStart(14)} ${(lead.median === null ? '-' : lead.median.toFixed(0) + ' s').padStart(12)} ${(lead.p10 === null ? '-' : lead.p10.toFixed(0) + ' s').padStart(9)} ${(r.falseTriggersPerGatewayWeek as number).toFixed(2).padStart(14)} ${(r.falseTriggersPerGatewayWeekUpper95 as number).toFixed(2).padStart(12)} ${(r.usPerTick as number).toFixed(1).padStart(8)}`)
  }
  for (const [name, r] of Object.entries(results)) {
    const missed = (r as { missed: string[] }).missed
    if (missed.length > 0) console.log(`  ${name} missed (< 60 s): ${missed.slice(0, 8).join(', ')}${missed.length > 8 ? ', ...' : ''}`)
  }
  const crash = (results.ferry as { byKind: Record<string, { failures: number }> }).byKind.crash
  console.log(`crashes without precursor: ${crash?.failures ?? 0} (nothing to predict; their healthy stretch counts towards false triggers)`)
  console.log(`interval coverage on held-out telemetry (nominal ${calibration.level}): health ${calibration.coverage.health.toFixed(3)}, signals ${Object.entries(calibration.coverage.signals).map(([k, v]) => `${k} ${v.coverage.toFixed(2)}`).join(', ')}`)

  const ferry = results.ferry as { shareAhead60s: number, falseTriggersPerGatewayWeek: number, falseTriggersPerGatewayWeekUpper95: number }
  const reactive = results['threshold, for 1m'] as { shareAhead60s: number, falseTriggersPerGatewayWeek: number }
  return {
    setup: { seedsPerKind: opts.seeds, healthyWeeks: opts.weeks, trainGateways, trainHours, trigger: new TriggerPolicy().options, families: families.map(f => ({ name: f.name, description: f.description })), reactive: 'any signal >= 80% of its failure level, same TriggerPolicy, for 3 ticks or for 60 ticks (for: 1m)' },
    trainMs,
    results,
    calibration: { level: calibration.level, health: calibration.coverage.health, signals: calibration.coverage.signals, falseTriggers: calibration.falseTriggers, failures: calibration.failures },
    coverage,
    cost,
    ratios: {
      ferryVsThresholdFor1mShareAhead60s: ratio(ferry.shareAhead60s, reactive.shareAhead60s),
      ferryVsThresholdFor1mFalseTriggers: ratio(ferry.falseTriggersPerGatewayWeek, reactive.falseTriggersPerGatewayWeek)
    },
    targets: {
      shareAhead60s: { target: 0.9, measured: ferry.shareAhead60s, met: ferry.shareAhead60s >= 0.9 },
      falseTriggersPerGatewayWeek: { target: 1, measured: ferry.falseTriggersPerGatewayWeek, upper95: ferry.falseTriggersPerGatewayWeekUpper95, met: ferry.falseTriggersPerGatewayWeek <= 1 }
    }
  }
}

export default async function run (argv: string[]): Promise<void> {
  const opts = args(argv)
  const started = Date.now()
  const nabResult = opts.only !== 'scenarios' ? nab() : undefined
  const sensitivityResult = opts.sensitivity ? sensitivity() : undefined
  const scenarioResult = opts.only !== 'nab' ? scenarios(opts) : undefined
  const file = writeResult(opts.only === null ? 'health' : `health-${opts.only}`, { options: opts, ...(nabResult !== undefined ? { nab: nabResult } : {}), ...(sensitivityResult !== undefined ? { nabSensitivity: sensitivityResult } : {}), ...(scenarioResult !== undefined ? { scenarios: scenarioResult } : {}), loadAverage: os.loadavg(), runtimeS: (Date.now() - started) / 1000 })
  console.log(`\nwrote ${path.relative(process.cwd(), file)} in ${((Date.now() - started) / 1000).toFixed(0)} s`)
}
