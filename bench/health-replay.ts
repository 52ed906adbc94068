/**
 * `npm run bench -- health-replay [--series N]`: NAB's real machine telemetry replayed into a live
 * planner as gateways' telemetry, through the agent push API (POST /v1/telemetry, as `ferry agent`
 * pushes), and the planner's own trigger decisions read back (issue 25, part 3).
 *
 * Each series is one gateway. Its values become the gateway signal closest in meaning: CPU
 * utilisation in percent → `cpu` (a fraction), EC2 request latency → `probe_latency_ms`. Series
 * with no gateway signal (machine temperature, disk bytes, network bytes) are not replayed: the
 * push API only stores the signals the health model knows.
 *
 * The planner runs in this process (FerryNode, proxy off) with a model trained by `ferry train`'s
 * code path on the first 15 % of every series (NAB's probationary period: the only part of a file
 * a detector may learn from before it is scored), with the horizon and window a planner watching
 * 5-minute telemetry would be given (1 h, 3 h). Series are replayed in lockstep, one sample per
 * gateway per round, each round followed by one health tick, so every sample is scored as it
 * would be by a planner ticking at the sample rate; the timestamps are the series' own, shifted so
 * that each series ends now.
 *
 * Measured, after each series' probation, from the planner's own decision log: for each labelled
 * window, whether the trigger fired before the window's start (within one window width ahead of
 * it) or inside the window, and the lead time before the labelled moment (NAB's windows are
 * centred on it: a tenth of the file divided by the number of anomalies); false triggers (trigger
 * edges nowhere near a window) per series-week; the same for "attention" (the predicted health
 * below 1 - the NAB detector's threshold, by onset, read from GET /v1/health/:gateway's figures);
 * and the interval coverage the planner reports on GET /v1/health.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { FerryNode } from '../bin/node.js'
import { configSchema } from '../config/schema.js'
import { silentLogger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import { HealthModel, type TelemetryRecord } from '../planner/health/index.js'
import { loadNabCorpus, defaultNabRoot, probationLength, type NabFile } from '../planner/health/nab.js'
import { nabTime } from '../planner/health/nab-detector.js'
import { writeResult } from './lib.js'

const TOKEN = 'bench-admin-token-0123456789'
const WEEK_MS = 7 * 24 * 3600_000
/**
 * The NAB run's optimal standard-profile threshold on 1 - predicted health (BENCHMARKS.md): a
 * score this far below 1 is what NAB counts as a detection. The trigger itself needs far more.
 */
const ATTENTION = 0.156

/** NAB series that are gateway telemetry, and the signal each becomes. */
export const REPLAY_SERIES: Array<{ file: string, signal: 'cpu' | 'probe_latency_ms', scale: number }> = [
  { file: 'realKnownCause/cpu_utilization_asg_misconfiguration.csv', signal: 'cpu', scale: 0.01 },
  { file: 'realKnownCause/ec2_request_latency_system_failure.csv', signal: 'probe_latency_ms', scale: 1 },
  ...['24ae8d', '53ea38', '5f5533', '77c1ca', '825cc2', 'ac20cd', 'c6585a', 'fe7f93'].map(id => ({ file: `realAWSCloudwatch/ec2_cpu_utilization_${id}.csv`, signal: 'cpu' as const, scale: 0.01 })),
  { file: 'realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv', signal: 'cpu', scale: 0.01 },
  { file: 'realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv', signal: 'cpu', scale: 0.01 }
]

interface Replay { gateway: string, file: NabFile, signal: string, scale: number, at: number[], probation: number }

interface SeriesResult {
  attention: string[]
  falseAttention: number
  minScoreNearWindows: number[]
  file: string
  signal: string
  rows: number
  scoredWeeks: number
  windows: Array<{ labelAt: string, triggeredBeforeStart: boolean, triggeredInWindow: boolean, leadBeforeLabelH: number | null }>
  triggers: number
  falseTriggers: number
}

export default async function run (argv: string[]): Promise<void> {
  const started = Date.now()
  const n = argv.includes('--series') ? Number(argv[argv.indexOf('--series') + 1]) : REPLAY_SERIES.length
  const corpus = loadNabCorpus(defaultNabRoot())
  const now0 = Date.now()
  const replays: Replay[] = REPLAY_SERIES.slice(0, n).map((s, i) => {
    const file = corpus.files.find(f => f.key === s.file)
    if (file === undefined) throw new Error(`${s.file} is not in the NAB corpus`)
    const times = file.timestamps.map(nabTime)
    const end = times[times.length - 1] as number
    // Strictly increasing (a repeated NAB timestamp is nudged a millisecond, as the NAB detector does).
    const at: number[] = []
    for (const t of times) at.push(Math.max(now0 - (end - t), (at[at.length - 1] ?? -Infinity) + 1))
    return { gateway: `nab${i + 1}`, file, signal: s.signal, scale: s.scale, at, probation: probationLength(file.values.length) }
  })

  // The model: trained on every series' probationary part, as `ferry train` would on an export.
  const training: TelemetryRecord[] = []
  for (const r of replays) for (let i = 0; i < r.probation; i++) training.push({ timestamp: r.at[i] as number, gateway: r.gateway, [r.signal]: (r.file.values[i] as number) * r.scale })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-replay-'))
  const modelFile = path.join(dir, 'model.json')
  HealthModel.train(training, { horizonS: 3600, windowS: 3 * 3600, medianS: 901 }).save(modelFile)

  const spanMs = Math.max(...replays.map(r => now0 - (r.at[0] as number))) + 24 * 3600_000
  const config = configSchema.parse({
    log: { level: 'silent' },
    sites: [{ name: 'site-a', subnets: ['127.0.0.0/24'] }],
    // Gateways nobody serves: only their telemetry matters here (no blocks, nothing to move).
    gateways: replays.map((r, i) => ({ id: r.gateway, url: `http://127.0.0.1:${21100 + i}`, site: 'site-a' })),
    admin: { listen: { host: '127.0.0.1', port: 0 }, token: TOKEN },
    dns: { enabled: false },
    state: { telemetry: { maxAgeMs: spanMs, maxSamples: 5000 } },
    planner: {
      rebalancer: { enabled: false },
      // Ticks are driven by this benchmark (one per replayed round), not by the timer.
      prediction: { enabled: true, model: modelFile, tickMs: 3_600_000, decisionLogSize: 100_000 }
    }
  })
  const node = new FerryNode({ config, roles: new Set(['planner']), logger: silentLogger, registry: createRegistry(false) })
  await node.start()
  const admin = `http://127.0.0.1:${node.admin.address.port}`
  const planner = node.planner as NonNullable<typeof node.planner>
  const push = async (r: Replay, i: number): Promise<void> => {
    const res = await request(`${admin}/v1/telemetry`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ gateway: r.gateway, samples: [{ at: r.at[i], [r.signal]: (r.file.values[i] as number) * r.scale }] })
    })
    const text = await res.body.text()
    if (res.statusCode !== 202) throw new Error(`push ${r.gateway} row ${i}: ${res.statusCode} ${text}`)
  }

  const rounds = Math.max(...replays.map(r => r.file.values.length))
  // What GET /v1/health/:gateway shows after each tick: the score the trigger sees.
  const scores = new Map(replays.map(r => [r.gateway, [] as Array<{ at: number, score: number }>]))
  let pushed = 0
  const pushStarted = process.hrtime.bigint()
  for (let i = 0; i < rounds; i++) {
    await Promise.all(replays.filter(r => i < r.file.values.length).map(async r => { await push(r, i); pushed++ }))
    await planner.health.tick()
    for (const r of replays) {
      if (i >= r.file.values.length) continue
      const g = planner.health.gateway(r.gateway) as { score: number | null, sampleAt: number | null }
      if (g.score !== null && g.sampleAt !== null) scores.get(r.gateway)?.push({ at: g.sampleAt, score: g.score })
    }
    if (i % 2000 === 0) console.log(`  round ${i}/${rounds}`)
  }
  const pushMs = Number(process.hrtime.bigint() - pushStarted) / 1e6
  const status = planner.health.status() as { coverage?: unknown, gateways?: unknown }

  const results: SeriesResult[] = replays.map(r => {
    const decisions = planner.health.decisions({ gateway: r.gateway }).reverse()
    const scoredFrom = r.at[r.probation] as number
    const triggers = decisions.filter(d => d.event === 'trigger' && d.inputs.sampleAt >= scoredFrom).map(d => d.inputs.sampleAt)
    const win = r.file.windows.map(w => ({ start: r.at[w.start] as number, end: r.at[w.end] as number, label: r.at[Math.round((w.start + w.end) / 2)] as number }))
    // A warning counts for a window from one window width before its start to its end (NAB's
    // windows already open half a width before the labelled failure); anything else is false.
    const warns = (t: number, w: { start: number, end: number }): boolean => t >= w.start - (w.end - w.start) && t <= w.end
    const windows = win.map(w => {
      const first = triggers.find(t => warns(t, w))
      return {
        labelAt: new Date(w.label).toISOString(),
        triggeredBeforeStart: first !== undefined && first < w.start,
        triggeredInWindow: first !== undefined && first >= w.start,
        leadBeforeLabelH: first === undefined ? null : (w.label - first) / 3600_000
      }
    })
    const falseTriggers = triggers.filter(t => !win.some(w => warns(t, w))).length
    // Attention: the predicted health below 1 - ATTENTION (the NAB detector's own threshold), by onset.
    const onsets: number[] = []
    let below = false
    for (const p of scores.get(r.gateway) ?? []) {
      const low = 1 - p.score >= ATTENTION
      if (low && !below && p.at >= scoredFrom) onsets.push(p.at)
      below = low
    }
    const attention = win.map(w => {
      const first = onsets.find(t => warns(t, w))
      return first === undefined ? 'missed' : first < w.start ? 'before' : 'inside'
    })
    const falseAttention = onsets.filter(t => !win.some(w => warns(t, w))).length
    const minScore = win.map(w => Math.min(...(scores.get(r.gateway) ?? []).filter(p => p.at >= w.start - (w.end - w.start) && p.at <= w.end).map(p => p.score)))
    return {
      attention,
      falseAttention,
      minScoreNearWindows: minScore.map(v => Math.round(v * 1e3) / 1e3), file: r.file.key, signal: r.signal, rows: r.file.values.length, scoredWeeks: ((r.at[r.at.length - 1] as number) - scoredFrom) / WEEK_MS, windows, triggers: triggers.length, falseTriggers }
  })
  await node.stop()
  fs.rmSync(dir, { recursive: true, force: true })

  const windows = results.flatMap(r => r.windows)
  const weeks = results.reduce((a, r) => a + r.scoredWeeks, 0)
  const falseTriggers = results.reduce((a, r) => a + r.falseTriggers, 0)
  const before = windows.filter(w => w.triggeredBeforeStart).length
  const inside = windows.filter(w => w.triggeredInWindow).length
  console.log('\nNAB machine series replayed into a live planner (POST /v1/telemetry, one health tick per sample)')
  for (const r of results) console.log(`  ${r.file.padEnd(56)} ${r.signal.padEnd(16)} windows ${r.windows.map(w => w.triggeredBeforeStart ? 'before' : w.triggeredInWindow ? 'inside' : 'missed').join(',')}  false ${r.falseTriggers} in ${r.scoredWeeks.toFixed(1)} weeks`)
  console.log(`windows warned before their start: ${before}/${windows.length}; warned inside the window: ${inside}; false triggers ${falseTriggers} in ${weeks.toFixed(1)} series-weeks (${(falseTriggers / weeks).toFixed(2)} per series-week)`)
  const att = results.flatMap(r => r.attention)
  const falseAtt = results.reduce((a, r) => a + r.falseAttention, 0)
  console.log(`attention (1 - health >= ${ATTENTION}, the NAB detector's threshold): before the window ${att.filter(a => a === 'before').length}, inside ${att.filter(a => a === 'inside').length}, of ${att.length}; false ${falseAtt} (${(falseAtt / weeks).toFixed(2)} per series-week)`)
  for (const r of results) console.log(`  ${r.file.padEnd(56)} attention ${r.attention.join(',')} false ${r.falseAttention}; lowest health near each window ${r.minScoreNearWindows.join(', ')}`)
  console.log(`planner-reported interval coverage: ${JSON.stringify(status.coverage)}`)
  console.log(`${pushed} samples pushed and scored in ${(pushMs / 1000).toFixed(1)} s (${(1000 * pushMs / pushed).toFixed(0)} µs per sample, push + tick, loaded machine)`)
  const file = writeResult('health-replay', {
    setup: { series: results.length, model: { trainedOn: 'the first 15 % of every series', horizonS: 3600, windowS: 10800, medianS: 901 }, trigger: config.planner.prediction },
    results,
    attentionSummary: { threshold: ATTENTION, before: att.filter(a => a === 'before').length, inside: att.filter(a => a === 'inside').length, windows: att.length, falseOnsets: falseAtt, perSeriesWeek: falseAtt / weeks },
    summary: { windows: windows.length, warnedBeforeStart: before, warnedInsideWindow: inside, shareBeforeStart: before / windows.length, leadBeforeLabelH: windows.filter(w => w.leadBeforeLabelH !== null).map(w => w.leadBeforeLabelH), falseTriggers, seriesWeeks: weeks, falseTriggersPerSeriesWeek: falseTriggers / weeks },
    plannerCoverage: status.coverage,
    pushed,
    usPerSampleEndToEnd: 1000 * pushMs / pushed,
    loadAverage: os.loadavg(),
    runtimeS: (Date.now() - started) / 1000
  })
  console.log(`results: ${path.relative(process.cwd(), file)}`)
}
