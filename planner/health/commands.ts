/**
 * `ferry train` and `ferry evaluate` (wired into bin/ by the CLI; see planner/health/README.md).
 *
 *   ferry train --telemetry FILE.csv --out model.json [--horizon S] [--window S] [--level P]
 *   ferry evaluate --model model.json --telemetry FILE.csv [--json] [--threshold T]
 *                  [--min-confidence C] [--consecutive K] [--stride N]
 *
 * Both return an exit code (0 ok, 1 failed, 2 usage) instead of exiting, and write to the
 * streams they are given, so the CLI and tests can call them in-process.
 */
import { parseArgs } from 'node:util'
import { isFerryError } from '../../lib/errors.js'
import { readTelemetryCsv } from './csv.js'
import { evaluateModel, type EvaluationReport } from './evaluate.js'
import { HealthModel } from './model.js'

export interface CommandIO {
  stdout: { write: (s: string) => unknown }
  stderr: { write: (s: string) => unknown }
}

const defaultIO: CommandIO = { stdout: process.stdout, stderr: process.stderr }

export const TRAIN_USAGE = `usage: ferry train --telemetry FILE.csv --out MODEL.json [options]

Learns per-signal normal behaviour, forecast error calibration and novelty history from
telemetry exported as CSV (header: timestamp,gateway,cpu,mem_pressure,disk_util,
disk_await_ms,net_latency_ms,probe_latency_ms,probe_error_rate; empty cell = missing).

  --telemetry FILE   training telemetry (CSV export)
  --out FILE         model file to write (JSON, format ferry-health)
  --horizon S        how far ahead the health score looks, seconds (default 300)
  --window S         history the trend forecast uses, seconds (default 600)
  --level P          probability of the reported interval (default 0.9)
`

export const EVALUATE_USAGE = `usage: ferry evaluate --model MODEL.json --telemetry FILE.csv [options]

Replays held-out telemetry through the model and prints interval coverage, failures warned of
(with lead times) and false triggers per gateway-day.

  --model FILE          model written by ferry train
  --telemetry FILE      telemetry to evaluate on (CSV export), not the training data
  --json                print the report as JSON
  --threshold T         trigger when the score is below T (default 0.5)
  --min-confidence C    ... and confidence is at least C (default 0.5)
  --consecutive K       ... for K ticks in a row (default 3)
  --stride N            assess every N-th sample (default 1)
`

function positive (name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name} must be a positive number (got ${JSON.stringify(v)})`)
  return n
}

class UsageError extends Error {}

function fail (io: CommandIO, cmd: string, usage: string, err: unknown): number {
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
    io.stderr.write(`ferry ${cmd}: ${(err as Error).message}\n\n${usage}`)
    return 2
  }
  if (isFerryError(err)) {
    io.stderr.write(`ferry ${cmd}: ${err.message} (${err.code})\n`)
    return 1
  }
  io.stderr.write(`ferry ${cmd}: ${(err as Error).stack ?? String(err)}\n`)
  return 1
}

export async function trainCommand (argv: string[], io: CommandIO = defaultIO): Promise<number> {
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        telemetry: { type: 'string' },
        out: { type: 'string' },
        horizon: { type: 'string' },
        window: { type: 'string' },
        level: { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      }
    })
    if (values.help === true) { io.stdout.write(TRAIN_USAGE); return 0 }
    if (values.telemetry === undefined) throw new UsageError('--telemetry is required')
    if (values.out === undefined) throw new UsageError('--out is required')
    const level = values.level === undefined ? undefined : Number(values.level)
    if (level !== undefined && !(level > 0 && level < 1)) throw new UsageError('--level must be in (0, 1)')
    const horizonS = positive('--horizon', values.horizon)
    const windowS = positive('--window', values.window)
    const records = readTelemetryCsv(values.telemetry)
    const started = Date.now()
    const model = HealthModel.train(records, {
      ...(horizonS !== undefined ? { horizonS } : {}),
      ...(windowS !== undefined ? { windowS } : {}),
      ...(level !== undefined ? { level } : {})
    })
    model.save(values.out)
    const file = model.toJSON()
    io.stdout.write(`trained on ${records.length} samples from ${file.training.gateways} gateways in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
    io.stdout.write(`horizon ${file.params.horizonS} s, window ${file.params.windowS} s, interval ${Math.round(file.params.level * 100)}%, sample interval ${file.params.sampleIntervalS} s\n`)
    io.stdout.write('signal             median        healthy up to   failure level\n')
    for (const spec of file.params.signals) {
      const s = file.signals[spec.name]
      if (s === undefined) { io.stdout.write(`${spec.name.padEnd(18)} (no data)\n`); continue }
      io.stdout.write(`${spec.name.padEnd(18)} ${fmt(s.profile.median).padEnd(13)} ${fmt(s.profile.hi).padEnd(15)} ${spec.limit === undefined ? '-' : fmt(spec.limit)}\n`)
    }
    io.stdout.write(`model written to ${values.out}\n`)
    return 0
  } catch (err) {
    return fail(io, 'train', TRAIN_USAGE, err)
  }
}

export async function evaluateCommand (argv: string[], io: CommandIO = defaultIO): Promise<number> {
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        model: { type: 'string' },
        telemetry: { type: 'string' },
        json: { type: 'boolean' },
        threshold: { type: 'string' },
        'min-confidence': { type: 'string' },
        consecutive: { type: 'string' },
        stride: { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      }
    })
    if (values.help === true) { io.stdout.write(EVALUATE_USAGE); return 0 }
    if (values.model === undefined) throw new UsageError('--model is required')
    if (values.telemetry === undefined) throw new UsageError('--telemetry is required')
    const threshold = positive('--threshold', values.threshold)
    const minConfidence = values['min-confidence'] === undefined ? undefined : Number(values['min-confidence'])
    if (minConfidence !== undefined && !(minConfidence >= 0 && minConfidence <= 1)) throw new UsageError('--min-confidence must be in [0, 1]')
    const consecutive = positive('--consecutive', values.consecutive)
    const stride = positive('--stride', values.stride)
    const model = HealthModel.load(values.model)
    const records = readTelemetryCsv(values.telemetry)
    const report = evaluateModel(model, records, {
      trigger: {
        ...(threshold !== undefined ? { threshold } : {}),
        ...(minConfidence !== undefined ? { minConfidence } : {}),
        ...(consecutive !== undefined ? { consecutive: Math.round(consecutive) } : {})
      },
      ...(stride !== undefined ? { stride: Math.round(stride) } : {})
    })
    io.stdout.write(values.json === true ? JSON.stringify(report, null, 2) + '\n' : formatReport(report))
    return 0
  } catch (err) {
    return fail(io, 'evaluate', EVALUATE_USAGE, err)
  }
}

function fmt (v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3)
}

const pct = (v: number): string => Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : 'n/a'

export function formatReport (r: EvaluationReport): string {
  const lines: string[] = []
  lines.push(`${r.gateways} gateways, ${r.samples} samples, ${r.assessments} assessments, ${r.falseTriggers.gatewayDays.toFixed(2)} gateway-days`)
  lines.push(`horizon ${r.horizonS} s; interval coverage (nominal ${pct(r.level)}):`)
  lines.push(`  health             ${pct(r.coverage.health)}`)
  for (const [name, s] of Object.entries(r.coverage.signals)) lines.push(`  ${name.padEnd(18)} ${pct(s.coverage).padEnd(8)} mean abs error ${fmt(s.meanAbsError)}  (n=${s.n})`)
  lines.push(`score: mean ${r.score.mean.toFixed(3)}, 5th percentile ${r.score.p5.toFixed(3)}, min ${r.score.min.toFixed(3)}; mean confidence ${r.confidence.mean.toFixed(3)}`)
  const t = r.trigger
  lines.push(`trigger: score < ${t.threshold} with confidence >= ${t.minConfidence} for ${t.consecutive} ticks`)
  const leads = r.failures.leadTimesS.slice().sort((a, b) => a - b)
  const median = leads.length > 0 ? `${leads[Math.floor((leads.length - 1) / 2)]?.toFixed(0)} s` : 'n/a'
  lines.push(`failures: ${r.failures.count}; warned ${r.failures.warned} (${r.failures.warnedAtLeast60s} at least 60 s ahead); median lead ${median}`)
  lines.push(`false triggers: ${r.falseTriggers.count} (${Number.isFinite(r.falseTriggers.perGatewayDay) ? r.falseTriggers.perGatewayDay.toFixed(2) : 'n/a'} per gateway-day)`)
  return lines.join('\n') + '\n'
}
