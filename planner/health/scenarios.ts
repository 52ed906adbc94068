/**
 * Generated gateway degradation scenarios: telemetry with a known failure time, reproducible
 * from a seed. They drive the health benchmark (lead time before failure, false triggers on
 * healthy telemetry) and, exported as data, the reference gateway's fault injection in demos.
 *
 * Every gateway has a "personality" (its own load level, daily cycle, disk and network speeds)
 * and healthy telemetry is deliberately not clean, because a predictor that only works on
 * clean data is useless: CPU bursts (some near saturation), cache fill-and-drop memory cycles,
 * disk fsync storms, network blips and short bursts of failed probes all happen, at rates of
 * one every half hour to one every few hours. A static threshold alert trips on some of them.
 *
 * Degradations (after a healthy prefix of 20-60 minutes):
 * - memory_leak: memory grows, accelerating, for 10-60 minutes until the OOM killer ends the
 *   gateway at 95-100%; swapping slows everything in the last stretch.
 * - disk_latency: disk await grows exponentially for 8-40 minutes to 0.8-1.5 s, utilisation
 *   climbs to saturation; the gateway fails when its probes time out.
 * - cpu_saturation: a runaway load drives CPU to 100% over 4-25 minutes; latency explodes
 *   (queueing) and the liveness probe gives up 30-120 s into saturation.
 * - crash: healthy until the process dies: no precursor, nothing to predict.
 * - healthy: no failure.
 * After a failure the host keeps reporting for a minute; the gateway's probes all fail.
 */
import { FerryError } from '../../lib/errors.js'
import { SIGNALS, type TelemetrySample, type TelemetryRecord } from './types.js'

export const SCENARIO_KINDS = ['memory_leak', 'disk_latency', 'cpu_saturation', 'crash', 'healthy'] as const
export type ScenarioKind = typeof SCENARIO_KINDS[number]
export const PRECURSOR_KINDS: readonly ScenarioKind[] = ['memory_leak', 'disk_latency', 'cpu_saturation']

/** The reference gateway's fault set (gateway/faults.ts), as data. */
export interface GatewayFaults {
  latencyMs: number
  jitterMs: number
  errorRate: number
  stall: boolean
  refuse: 'none' | 'reset' | 'unbind'
}

export interface FaultStep {
  /** Seconds from the scenario start. */
  atS: number
  faults: GatewayFaults
}

export interface Scenario {
  format: 'ferry-scenario'
  version: 1
  name: string
  kind: ScenarioKind
  seed: number
  gateway: string
  /** Unix ms of the first sample. */
  start: number
  intervalS: number
  /** Seconds from start when the degradation begins (null: none). */
  onsetS: number | null
  /** Seconds from start when the gateway fails (null: it does not). */
  failureS: number | null
  hasPrecursor: boolean
  samples: TelemetrySample[]
  /** The same story as fault injection for the reference gateway, one step every 5 s. */
  faults: FaultStep[]
}

export interface ScenarioOptions {
  seed: number
  gateway?: string
  /** Unix ms of the first sample (default 2024-01-01T00:00:00Z). */
  start?: number
  intervalS?: number
  /** Length of a healthy scenario, seconds (default one hour). */
  durationS?: number
}

/** mulberry32: a small, fast, well-mixed 32-bit generator; enough for simulation. */
export function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

class Random {
  private spare: number | null = null
  constructor (readonly next: () => number) {}
  uniform (a: number, b: number): number { return a + (b - a) * this.next() }
  normal (): number {
    if (this.spare !== null) { const s = this.spare; this.spare = null; return s }
    let u = 0
    while (u === 0) u = this.next()
    const v = this.next()
    const r = Math.sqrt(-2 * Math.log(u))
    this.spare = r * Math.sin(2 * Math.PI * v)
    return r * Math.cos(2 * Math.PI * v)
  }
  /** True with probability rate * dt: a Poisson event in this step. */
  event (ratePerS: number, dtS: number): boolean { return this.next() < ratePerS * dtS }
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x))

interface Episode { until: number, size: number }

/** Healthy telemetry of one gateway, one step at a time. */
class HealthyGateway {
  readonly probeBase: number
  private readonly cpuBase: number
  private readonly cpuAmp: number
  private readonly phase: number
  private readonly memBase: number
  private readonly diskBase: number
  private readonly awaitBase: number
  private readonly netBase: number
  private cpuN = 0
  private memN = 0
  private diskN = 0
  private cpuBurst: Episode = { until: -1, size: 0 }
  private awaitStorm: Episode = { until: -1, size: 1 }
  private netBlip: Episode = { until: -1, size: 0 }
  private probeBlip: Episode = { until: -1, size: 0 }
  private saw = { start: 0, length: 1800, height: 0.05 }

  constructor (private readonly r: Random) {
    this.cpuBase = r.uniform(0.12, 0.4)
    this.cpuAmp = r.uniform(0.03, 0.12)
    this.phase = r.uniform(0, 2 * Math.PI)
    this.memBase = r.uniform(0.15, 0.45)
    this.diskBase = r.uniform(0.05, 0.3)
    this.awaitBase = r.uniform(1.5, 8)
    this.netBase = r.uniform(0.3, 4)
    this.probeBase = r.uniform(3, 12)
    this.saw = { start: -r.uniform(0, 1800), length: r.uniform(900, 2700), height: r.uniform(0.03, 0.12) }
  }

  /** The healthy values at time tS (seconds from start), before any degradation. */
  step (tS: number, dt: number): Required<Omit<TelemetrySample, 'timestamp'>> {
    const r = this.r
    // Slow AR(1) noise: telemetry wanders, it is not white.
    this.cpuN = 0.98 * this.cpuN + 0.006 * r.normal() * Math.sqrt(dt)
    this.memN = 0.999 * this.memN + 0.0008 * r.normal() * Math.sqrt(dt)
    this.diskN = 0.95 * this.diskN + 0.01 * r.normal() * Math.sqrt(dt)
    if (tS >= this.cpuBurst.until && r.event(1 / 3600, dt)) this.cpuBurst = { until: tS + r.uniform(5, 120), size: r.uniform(0.2, 0.55) }
    if (tS >= this.awaitStorm.until && r.event(1 / 1800, dt)) this.awaitStorm = { until: tS + r.uniform(2, 30), size: r.uniform(5, 40) }
    if (tS >= this.netBlip.until && r.event(1 / 1800, dt)) this.netBlip = { until: tS + r.uniform(1, 20), size: r.uniform(20, 300) }
    if (tS >= this.probeBlip.until && r.event(1 / 2400, dt)) this.probeBlip = { until: tS + r.uniform(1, 8), size: r.uniform(0.05, 0.5) }
    if (tS >= this.saw.start + this.saw.length) this.saw = { start: tS, length: r.uniform(900, 2700), height: r.uniform(0.03, 0.12) }

    const burst = tS < this.cpuBurst.until ? this.cpuBurst.size : 0
    const cpu = clamp01(this.cpuBase + this.cpuAmp * Math.sin(2 * Math.PI * tS / 86400 + this.phase) + this.cpuN + burst)
    const mem = clamp01(this.memBase + this.saw.height * (tS - this.saw.start) / this.saw.length + this.memN)
    const storm = tS < this.awaitStorm.until
    const disk = clamp01(this.diskBase + 0.3 * (cpu - this.cpuBase) + this.diskN + (storm ? 0.3 : 0))
    const wait = this.awaitBase * Math.exp(0.25 * r.normal()) * (storm ? this.awaitStorm.size : 1) * (1 + 2 * Math.max(0, disk - 0.7))
    const net = this.netBase * Math.exp(0.2 * r.normal()) + (tS < this.netBlip.until ? this.netBlip.size : 0)
    const queue = 1 / (1 - Math.min(cpu, 0.98)) - 1
    const probe = this.probeBase * Math.exp(0.15 * r.normal()) * (1 + 0.2 * queue) + 0.5 * wait + net
    // Ten probes a second: the error rate is a count, mostly zero.
    const pErr = 0.0005 + (tS < this.probeBlip.until ? this.probeBlip.size : 0)
    let errors = 0
    for (let k = 0; k < 10; k++) if (r.next() < pErr) errors++
    return { cpu, mem_pressure: mem, disk_util: disk, disk_await_ms: wait, net_latency_ms: net, probe_latency_ms: probe, probe_error_rate: errors / 10 }
  }
}

const DEFAULT_START = Date.UTC(2024, 0, 1)

function round (v: number, digits = 5): number {
  return Number(v.toPrecision(digits))
}

export type ScenarioInfo = Omit<Scenario, 'samples' | 'faults'>

/**
 * A scenario as a stream: its description (failure time etc.) and an iterator over its samples
 * and fault steps, generated on the fly. A gateway-week at one sample a second is 600 000
 * samples: the benchmark streams it rather than holding it.
 */
export function streamScenario (kind: ScenarioKind, opts: ScenarioOptions): { info: ScenarioInfo, steps: () => Generator<{ sample: TelemetrySample, fault?: FaultStep }> } {
  if (!(SCENARIO_KINDS as readonly string[]).includes(kind)) throw new FerryError('FERRY_SCENARIO_BAD_KIND', `unknown scenario kind ${kind} (known: ${SCENARIO_KINDS.join(', ')})`, 400)
  const seed = opts.seed >>> 0
  const dt = opts.intervalS ?? 1
  if (!(dt > 0)) throw new FerryError('FERRY_SCENARIO_BAD_OPTIONS', 'intervalS must be positive', 400)
  const start = opts.start ?? DEFAULT_START
  const gateway = opts.gateway ?? `gw-${kind}-${seed}`
  const draw = (): { r: Random, g: HealthyGateway, prefix: number, failLevel: { mem: number, await: number }, rampS: number, gamma: number, holdS: number } => {
    const r = new Random(rng(seed ^ (SCENARIO_KINDS.indexOf(kind) + 1) * 0x9E3779B1))
    const g = new HealthyGateway(r)
    // Degradation parameters, drawn up front so that the story is fixed by the seed.
    const prefix = r.uniform(1200, 3600)
    const failLevel = { mem: r.uniform(0.95, 1.0), await: r.uniform(800, 1500) }
    let rampS = 0
    let gamma = 1
    let holdS = 0
    switch (kind) {
      case 'memory_leak': rampS = r.uniform(600, 3600); gamma = r.uniform(1, 1.5); break
      case 'disk_latency': rampS = r.uniform(480, 2400); break
      case 'cpu_saturation': rampS = r.uniform(240, 1500); holdS = r.uniform(30, 120); break
      default: break
    }
    return { r, g, prefix, failLevel, rampS, gamma, holdS }
  }
  const d0 = draw()
  let onsetS: number | null = null
  let failureS: number | null = null
  let durationS: number
  if (kind === 'healthy') durationS = opts.durationS ?? 3600
  else if (kind === 'crash') { failureS = d0.prefix; durationS = failureS + 60 } else {
    onsetS = d0.prefix
    failureS = onsetS + d0.rampS + d0.holdS
    durationS = failureS + 60
  }
  const info: ScenarioInfo = {
    format: 'ferry-scenario',
    version: 1,
    name: `${kind}-${seed}`,
    kind,
    seed,
    gateway,
    start,
    intervalS: dt,
    onsetS: onsetS === null ? null : round(onsetS, 9),
    failureS: failureS === null ? null : round(failureS, 9),
    hasPrecursor: PRECURSOR_KINDS.includes(kind)
  }
  function * steps (): Generator<{ sample: TelemetrySample, fault?: FaultStep }> {
    // Fresh draws: every iteration replays the same story.
    const { r, g, failLevel, rampS, gamma } = draw()
    let memStart: number | null = null
    let awaitStart: number | null = null
    const faultEvery = Math.max(1, Math.round(5 / dt))
    for (let i = 0; i * dt <= durationS; i++) {
      const t = i * dt
      const v = g.step(t, dt)
      const failed = failureS !== null && t >= failureS
      const into = onsetS !== null ? t - onsetS : -1
      if (into >= 0 && !failed) {
        const f = Math.min(1, into / rampS)
        if (kind === 'memory_leak') {
          memStart ??= v.mem_pressure
          v.mem_pressure = clamp01(memStart + (failLevel.mem - memStart) * f ** gamma + (v.mem_pressure - memStart) * 0.3)
          // Swapping in the last stretch: everything slows down.
          const swap = Math.max(0, (v.mem_pressure - 0.8) / 0.2)
          v.cpu = clamp01(v.cpu + 0.25 * swap)
          v.disk_await_ms *= 1 + 4 * swap
          v.probe_latency_ms *= 1 + 5 * swap
        } else if (kind === 'disk_latency') {
          awaitStart ??= Math.max(1, v.disk_await_ms)
          const growth = Math.log(failLevel.await / awaitStart)
          v.disk_await_ms = Math.max(v.disk_await_ms, awaitStart * Math.exp(growth * f)) * Math.exp(0.1 * r.normal())
          v.disk_util = clamp01(v.disk_util + (1 - v.disk_util) * f * f)
          v.probe_latency_ms += 1.2 * v.disk_await_ms
          if (v.disk_await_ms > 500) v.probe_error_rate = clamp01(v.probe_error_rate + (v.disk_await_ms - 500) / 2000)
        } else if (kind === 'cpu_saturation') {
          v.cpu = clamp01(v.cpu + (1 - v.cpu) * f)
          const queue = 1 / (1 - Math.min(v.cpu, 0.995)) - 1
          v.probe_latency_ms = g.probeBase * (1 + 0.2 * queue) * Math.exp(0.15 * r.normal()) + v.net_latency_ms
        }
      }
      const sample: TelemetrySample = { timestamp: start + Math.round(t * 1000) }
      for (const k of SIGNALS) sample[k] = round(v[k])
      if (failed) {
        // The host still reports; the gateway process does not answer.
        sample.probe_error_rate = 1
        delete sample.probe_latency_ms
      }
      let fault: FaultStep | undefined
      if (i % faultEvery === 0) {
        const extra = Math.max(0, (sample.probe_latency_ms ?? 0) - g.probeBase)
        fault = {
          atS: round(t, 9),
          faults: failed
            ? { latencyMs: 0, jitterMs: 0, errorRate: 1, stall: kind === 'disk_latency', refuse: kind === 'disk_latency' ? 'none' : 'unbind' }
            : { latencyMs: Math.round(extra), jitterMs: Math.round(0.2 * extra), errorRate: round(sample.probe_error_rate ?? 0, 3), stall: false, refuse: 'none' }
        }
      }
      yield fault === undefined ? { sample } : { sample, fault }
    }
  }
  return { info, steps }
}

export function generateScenario (kind: ScenarioKind, opts: ScenarioOptions): Scenario {
  const { info, steps } = streamScenario(kind, opts)
  const samples: TelemetrySample[] = []
  const faults: FaultStep[] = []
  for (const step of steps()) {
    samples.push(step.sample)
    if (step.fault !== undefined) faults.push(step.fault)
  }
  return { ...info, samples, faults }
}

/** The scenario's samples as CSV-export records (for `ferry train` and `ferry evaluate`). */
export function scenarioRecords (s: Scenario): TelemetryRecord[] {
  return s.samples.map(x => ({ ...x, gateway: s.gateway }))
}

/** Parses a scenario file written by JSON.stringify(generateScenario(...)). */
export function parseScenario (data: unknown, source = 'scenario'): Scenario {
  const s = data as Partial<Scenario> | null
  if (typeof s !== 'object' || s === null || s.format !== 'ferry-scenario') throw new FerryError('FERRY_SCENARIO_INVALID', `${source}: not a ferry scenario`, 400)
  if (s.version !== 1) throw new FerryError('FERRY_SCENARIO_BAD_VERSION', `${source}: scenario version ${String(s.version)}, expected 1`, 400)
  if (!Array.isArray(s.samples) || !Array.isArray(s.faults) || typeof s.kind !== 'string' || typeof s.start !== 'number') throw new FerryError('FERRY_SCENARIO_INVALID', `${source}: missing samples, faults, kind or start`, 400)
  return s as Scenario
}
