/**
 * Evaluates a trained model on telemetry it was not trained on, replaying every gateway's
 * samples in time order exactly as the planner would see them (one assessment per sample).
 *
 * What "truth" is: the model forecasts each signal's level (its one-minute running median, see
 * forecast.ts) at the horizon, so the truth for an assessment made at t is the running median
 * at t + horizon; the realised health is the health map (model.ts signalHealth) applied to
 * those levels. A failure is the first moment the realised health reaches 0 (a signal at its
 * failure level: memory exhausted, probes all failing...).
 *
 * Reported:
 * - coverage: how often the truth fell inside the reported interval (nominal: the model's
 *   level, e.g. 0.9), per signal and for health;
 * - failures warned of, and how long before (lead time), using the TriggerPolicy;
 * - false triggers: triggers with no failure while they stand or within two horizons after,
 *   per gateway-day.
 */
import { HealthModel, signalHealth, type SignalProfile } from './model.js'
import { RunningMedian } from './forecast.js'
import { TriggerPolicy, type TriggerOptions } from './trigger.js'
import type { SampleLike } from './types.js'

export interface EvaluationReport {
  gateways: number
  samples: number
  assessments: number
  horizonS: number
  level: number
  coverage: {
    /** Fraction of assessments whose health interval contained the realised health. */
    health: number
    signals: Record<string, { coverage: number, n: number, meanAbsError: number }>
  }
  score: { mean: number, p5: number, min: number }
  confidence: { mean: number }
  failures: { count: number, warned: number, warnedAtLeast60s: number, leadTimesS: number[] }
  falseTriggers: { count: number, perGatewayDay: number, gatewayDays: number }
  trigger: TriggerOptions
}

export interface EvaluateOptions {
  trigger?: Partial<TriggerOptions>
  /** Assess every n-th sample (default 1: every sample). */
  stride?: number
}

interface Point { t: number, score: number, lower: number, upper: number, confidence: number, fLow: Record<string, number>, fHigh: Record<string, number>, fMid: Record<string, number> }

export function evaluateModel (model: HealthModel, records: readonly (SampleLike & { gateway: string })[], opts: EvaluateOptions = {}): EvaluationReport {
  // A private copy: evaluation must not disturb the caller's online state.
  const m = HealthModel.fromJSON(model.toJSON())
  const p = m.params
  const stride = Math.max(1, Math.floor(opts.stride ?? 1))
  const byGateway = new Map<string, (SampleLike & { gateway: string })[]>()
  for (const r of records) {
    let l = byGateway.get(r.gateway)
    if (l === undefined) byGateway.set(r.gateway, l = [])
    l.push(r)
  }
  const hMs = p.horizonS * 1000
  const tolMs = Math.max(2 * p.sampleIntervalS * 1000, 0.05 * hMs)
  let inHealth = 0
  let nHealth = 0
  const sig: Record<string, { inside: number, n: number, absErr: number }> = {}
  const scores: number[] = []
  let confSum = 0
  let failures = 0
  let warned = 0
  let warned60 = 0
  const leads: number[] = []
  let falseTriggers = 0
  let gatewayDays = 0
  let policyOptions: TriggerOptions | undefined

  for (const [gw, list] of byGateway) {
    list.sort((a, b) => a.timestamp - b.timestamp)
    const n = list.length
    if (n === 0) continue
    gatewayDays += ((list[n - 1] as SampleLike).timestamp - (list[0] as SampleLike).timestamp) / 86_400_000
    // Realised levels and health at every sample (the truth side).
    const medians = new Map(p.signals.map(s => [s.name, new RunningMedian(p.medianS)]))
    const levels: Array<Record<string, number>> = []
    const realised: number[] = []
    for (const r of list) {
      const lv: Record<string, number> = {}
      let h = 1
      for (const spec of p.signals) {
        const v = r[spec.name]
        if (typeof v !== 'number' || !Number.isFinite(v)) continue
        const level = (medians.get(spec.name) as RunningMedian).push(r.timestamp, v)
        lv[spec.name] = level
        const profile: SignalProfile = m.profile(gw, spec.name) ?? { median: level, lo: level, hi: level, count: 0 }
        h = Math.min(h, signalHealth(spec, profile, level))
      }
      // A gateway whose probes all fail is down, whatever the levels say.
      if (r.probe_error_rate === 1) h = 0
      levels.push(lv)
      realised.push(h)
    }
    // Failure episodes: the first sample of each run of realised health 0.
    const failureTimes: number[] = []
    for (let i = 0; i < n; i++) if (realised[i] === 0 && (i === 0 || realised[i - 1] !== 0)) failureTimes.push((list[i] as SampleLike).timestamp)

    const policy = new TriggerPolicy(opts.trigger)
    policyOptions = policy.options
    const points: Point[] = []
    /** Trigger episodes: [trigger time, clear time]; a failure inside one was warned of. */
    const episodes: Array<[number, number]> = []
    let failed = false
    for (let i = 0; i < n; i++) {
      const r = list[i] as SampleLike
      m.ingest(gw, r)
      if (realised[i] === 0) failed = true
      else if (failed && realised[i] === 1) {
        failed = false
        if (policy.isTriggered) (episodes[episodes.length - 1] as [number, number])[1] = r.timestamp
        policy.reset()
      }
      if (i % stride !== 0 || failed) continue
      const a = m.assess(gw)
      const d = policy.update(a)
      if (d.event === 'trigger') episodes.push([r.timestamp, Infinity])
      if (d.event === 'clear') (episodes[episodes.length - 1] as [number, number])[1] = r.timestamp
      scores.push(a.score)
      confSum += a.confidence
      const fLow: Record<string, number> = {}
      const fHigh: Record<string, number> = {}
      const fMid: Record<string, number> = {}
      for (const [name, s] of Object.entries(a.signals)) { fLow[name] = s.forecastLow; fHigh[name] = s.forecastHigh; fMid[name] = s.forecast }
      points.push({ t: r.timestamp, score: a.score, lower: a.lower, upper: a.upper, confidence: a.confidence, fLow, fHigh, fMid })
    }
    // Coverage: match each assessment with the sample at t + horizon.
    let j = 0
    for (const pt of points) {
      while (j < n && (list[j] as SampleLike).timestamp < pt.t + hMs) j++
      if (j >= n) break
      if ((list[j] as SampleLike).timestamp - (pt.t + hMs) > tolMs) continue
      const truthH = realised[j] as number
      nHealth++
      if (truthH >= pt.lower - 1e-9 && truthH <= pt.upper + 1e-9) inHealth++
      const lv = levels[j] as Record<string, number>
      for (const [name, low] of Object.entries(pt.fLow)) {
        const truth = lv[name]
        if (truth === undefined) continue
        const s = sig[name] ?? (sig[name] = { inside: 0, n: 0, absErr: 0 })
        s.n++
        if (truth >= low && truth <= (pt.fHigh[name] as number)) s.inside++
        s.absErr += Math.abs(truth - (pt.fMid[name] as number))
      }
    }
    // Lead times and false triggers.
    for (const f of failureTimes) {
      failures++
      const episode = episodes.find(([from, to]) => from <= f && f <= to)
      if (episode === undefined) continue
      const lead = (f - episode[0]) / 1000
      warned++
      if (lead >= 60) warned60++
      leads.push(lead)
    }
    // A trigger is false when no failure happens while it stands or within two horizons after.
    for (const [from, to] of episodes) if (!failureTimes.some(f => f >= from && f <= to + 2 * hMs)) falseTriggers++
  }
  scores.sort((a, b) => a - b)
  const signals: EvaluationReport['coverage']['signals'] = {}
  for (const [name, s] of Object.entries(sig)) signals[name] = { coverage: s.inside / s.n, n: s.n, meanAbsError: s.absErr / s.n }
  return {
    gateways: byGateway.size,
    samples: records.length,
    assessments: scores.length,
    horizonS: p.horizonS,
    level: p.level,
    coverage: { health: nHealth > 0 ? inHealth / nHealth : NaN, signals },
    score: { mean: scores.reduce((a, b) => a + b, 0) / Math.max(1, scores.length), p5: scores[Math.floor(0.05 * (scores.length - 1))] ?? NaN, min: scores[0] ?? NaN },
    confidence: { mean: confSum / Math.max(1, scores.length) },
    failures: { count: failures, warned, warnedAtLeast60s: warned60, leadTimesS: leads },
    falseTriggers: { count: falseTriggers, perGatewayDay: gatewayDays > 0 ? falseTriggers / gatewayDays : NaN, gatewayDays },
    trigger: policyOptions ?? new TriggerPolicy(opts.trigger).options
  }
}
