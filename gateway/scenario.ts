/**
 * Fault scenarios: a reference gateway's fault injection driven over time from a file, so a
 * demo or a test can replay a degradation (latency growing, errors rising, a stall, a crash).
 *
 * A scenario file is JSON in one of two shapes:
 *
 * - a fault timeline: `{"name"?: …, "steps": [{"atMs": 0, "faults": {…}}, …]}` with the fault
 *   sets of gateway/faults.ts (strict: a misspelt fault is an error, not "no fault");
 * - a health scenario as `planner/health` exports it (`JSON.stringify(generateScenario(…))`):
 *   its `faults` timeline (`atS`) is used, and its telemetry `samples` can be fed to the planner.
 *
 * SIMULATION, for demos and tests only: the telemetry feed (`ScenarioTelemetryFeed`) pushes the
 * scenario's *generated* telemetry to the planner (POST /v1/telemetry, as an agent would),
 * because a real agent samples the host, and the host of a simulated degradation is fine. Never
 * run it beside a real agent for the same gateway: the planner would see two hosts in one.
 */
import fs from 'node:fs'
import { EventEmitter } from 'node:events'
import { request } from 'undici'
import { z } from 'zod'
import { FerryError } from '../lib/errors.js'
import { silentLogger, type Logger } from '../lib/log.js'
import { faultsSchema, type Faults, type FaultsInput } from './faults.js'

export type ScenarioEnd = 'hold' | 'loop' | 'crash'

export interface FaultTimelineStep { atMs: number, faults: FaultsInput }

/** A telemetry sample in the store's shape (`at` in Unix ms of the scenario's own clock). */
export interface ScenarioSample { at: number, [signal: string]: number }

export interface FaultTimeline {
  name: string
  steps: FaultTimelineStep[]
  /** Length of one run, ms (the last step, or the telemetry's end if later). */
  durationMs: number
  /** When the gateway fails, ms from the start (health scenarios), else null. */
  failureAtMs: number | null
  /** Telemetry of the same story, ms from the start (health scenarios only). */
  samples: Array<{ tMs: number, values: Record<string, number> }>
}

const stepsSchema = z.array(z.object({ atMs: z.number().int().nonnegative(), faults: faultsSchema }).strict()).min(1, 'needs at least one step')
const timelineSchema = z.object({ name: z.string().max(200).optional(), steps: stepsSchema }).strict()
const healthScenarioSchema = z.object({
  format: z.literal('ferry-scenario'),
  version: z.literal(1),
  name: z.string(),
  start: z.number(),
  failureS: z.number().nullable(),
  samples: z.array(z.object({ timestamp: z.number() }).catchall(z.number())),
  faults: z.array(z.object({ atS: z.number().nonnegative(), faults: faultsSchema })).min(1, 'needs at least one step')
}).passthrough()

function invalid (source: string, issues: z.ZodIssue[]): FerryError {
  const why = issues.slice(0, 3).map(i => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')
  return new FerryError('FERRY_SCENARIO_INVALID', `${source}: invalid scenario: ${why}`, 400)
}

/** Validates a parsed scenario file (either shape). Throws FerryError FERRY_SCENARIO_INVALID naming the field. */
export function parseFaultTimeline (data: unknown, source = 'scenario'): FaultTimeline {
  const isHealth = typeof data === 'object' && data !== null && (data as { format?: unknown }).format !== undefined
  if (isHealth) {
    const r = healthScenarioSchema.safeParse(data)
    if (!r.success) throw invalid(source, r.error.issues)
    const s = r.data
    const steps = s.faults.map(f => ({ atMs: Math.round(f.atS * 1000), faults: f.faults }))
    checkOrder(steps, source)
    const samples = s.samples.map(x => {
      const { timestamp, ...values } = x
      return { tMs: timestamp - s.start, values: values as Record<string, number> }
    })
    const last = Math.max(steps.at(-1)?.atMs ?? 0, samples.at(-1)?.tMs ?? 0)
    return { name: s.name, steps, durationMs: last, failureAtMs: s.failureS === null ? null : Math.round(s.failureS * 1000), samples }
  }
  const r = timelineSchema.safeParse(data)
  if (!r.success) throw invalid(source, r.error.issues)
  checkOrder(r.data.steps, source)
  return { name: r.data.name ?? source, steps: r.data.steps, durationMs: r.data.steps.at(-1)?.atMs ?? 0, failureAtMs: null, samples: [] }
}

/** Steps out of order are a mistake in the file, not something to sort silently. */
function checkOrder (steps: FaultTimelineStep[], source: string): void {
  for (let i = 1; i < steps.length; i++) {
    if ((steps[i] as FaultTimelineStep).atMs < (steps[i - 1] as FaultTimelineStep).atMs) {
      throw new FerryError('FERRY_SCENARIO_INVALID', `${source}: invalid scenario: steps.${i}.atMs: steps must be in time order (${(steps[i] as FaultTimelineStep).atMs} ms after ${(steps[i - 1] as FaultTimelineStep).atMs} ms)`, 400)
    }
  }
}

export function loadFaultTimeline (file: string): FaultTimeline {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new FerryError('FERRY_SCENARIO_UNREADABLE', `cannot read scenario ${file}: ${(err as Error).message}`, 400)
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    throw new FerryError('FERRY_SCENARIO_INVALID', `${file}: not valid JSON (${(err as Error).message})`, 400)
  }
  return parseFaultTimeline(data, file)
}

/** What the driver needs of a gateway: the in-process ReferenceGateway, or `remoteFaults(url)`. */
export interface FaultTarget {
  setFaults: (faults: FaultsInput) => Promise<unknown>
  /** A crash; without it, `crash` ends with every request refused (`refuse: unbind`). */
  kill?: () => Promise<void>
}

/** A gateway's admin listener over HTTP (PUT /faults). */
export function remoteFaults (adminUrl: string, token?: string): FaultTarget {
  return {
    setFaults: async faults => {
      const res = await request(`${adminUrl}/faults`, { method: 'PUT', body: JSON.stringify(faults), headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) } })
      const text = await res.body.text()
      if (res.statusCode >= 300) throw new FerryError('FERRY_SCENARIO_FAULTS_REFUSED', `gateway refused faults: ${res.statusCode} ${text}`, 502)
    }
  }
}

export interface ScenarioDriverEvents {
  step: [index: number, faults: FaultsInput, atMs: number]
  /** One pass finished (`loop` starts another). */
  end: [loop: number]
  crash: []
  error: [err: Error]
}

export interface ScenarioDriverOptions {
  target: FaultTarget
  timeline: FaultTimeline
  /** Replay speed: 10 runs a 10-minute story in one minute. Default 1. */
  speed?: number
  /** Start this far into the story (ms); earlier steps are skipped, the last of them applied at once. */
  startAtMs?: number
  /** After the last step: keep its faults (`hold`, default), start over (`loop`), or kill the gateway (`crash`). */
  end?: ScenarioEnd
  /** Clear the faults when stopped (default true). */
  clearOnStop?: boolean
  logger?: Logger
}

/**
 * Applies a timeline's fault sets to a gateway at their times (scaled by `speed`), one at a
 * time and in order: a step is applied only after the previous one was, so a slow admin call
 * delays the story rather than reordering it.
 */
export class ScenarioDriver extends EventEmitter<ScenarioDriverEvents> {
  private readonly opts: Required<Omit<ScenarioDriverOptions, 'logger'>>
  private readonly logger: Logger
  private abort: AbortController | null = null
  private running: Promise<void> | null = null
  private startedAt = 0
  private loop = 0
  /** Index of the last step applied, -1 before any. */
  applied = -1

  constructor (opts: ScenarioDriverOptions) {
    super()
    const speed = opts.speed ?? 1
    if (!(speed > 0 && Number.isFinite(speed))) throw new FerryError('FERRY_SCENARIO_BAD_OPTIONS', `speed must be a positive number, got ${String(opts.speed)}`, 400)
    const end = opts.end ?? 'hold'
    if (!['hold', 'loop', 'crash'].includes(end)) throw new FerryError('FERRY_SCENARIO_BAD_OPTIONS', `end must be hold, loop or crash, got ${String(end)}`, 400)
    this.opts = { target: opts.target, timeline: opts.timeline, speed, startAtMs: opts.startAtMs ?? 0, end, clearOnStop: opts.clearOnStop ?? true }
    this.logger = (opts.logger ?? silentLogger).child({ component: 'scenario', scenario: opts.timeline.name })
  }

  get isRunning (): boolean { return this.running !== null }
  get speed (): number { return this.opts.speed }

  /** Story time now, ms (what the telemetry feed follows). */
  storyMs (now = Date.now()): number {
    return this.opts.startAtMs + (now - this.startedAt) * this.opts.speed
  }

  /** Starts the replay; resolves once the first step (or the state at `startAtMs`) is applied. */
  async start (): Promise<void> {
    if (this.running !== null) return
    this.abort = new AbortController()
    let firstApplied!: () => void
    const first = new Promise<void>(resolve => { firstApplied = resolve })
    this.running = this.run(this.abort.signal, firstApplied)
      .catch(err => { if (!this.abort?.signal.aborted) this.emit('error', err as Error) })
      .finally(() => { this.running = null; firstApplied() })
    await first
  }

  /** Waits for the replay to end by itself (`hold` or `crash`; a `loop` ends only by stop()). */
  async done (): Promise<void> { await this.running }

  async stop (): Promise<void> {
    this.abort?.abort()
    await this.running
    if (this.opts.clearOnStop) await this.opts.target.setFaults({}).catch(() => {})
  }

  private async run (signal: AbortSignal, firstApplied: () => void): Promise<void> {
    const { timeline, speed, target } = this.opts
    let startAt = this.opts.startAtMs
    for (;;) {
      this.startedAt = Date.now()
      const steps = timeline.steps
      // The state at startAt: the last step at or before it.
      let i = 0
      while (i + 1 < steps.length && (steps[i + 1] as FaultTimelineStep).atMs <= startAt) i++
      this.opts.startAtMs = startAt
      for (; i < steps.length; i++) {
        const step = steps[i] as FaultTimelineStep
        const wait = (step.atMs - startAt) / speed - (Date.now() - this.startedAt)
        if (wait > 0) await sleep(wait, signal)
        if (signal.aborted) return
        await target.setFaults(step.faults)
        this.applied = i
        this.emit('step', i, step.faults, step.atMs)
        firstApplied()
      }
      const tail = (timeline.durationMs - startAt) / speed - (Date.now() - this.startedAt)
      if (tail > 0) await sleep(tail, signal)
      if (signal.aborted) return
      this.emit('end', this.loop)
      if (this.opts.end === 'hold') return
      if (this.opts.end === 'crash') {
        this.logger.warn('scenario ends with a crash')
        if (target.kill !== undefined) await target.kill()
        else await target.setFaults({ refuse: 'unbind' })
        this.emit('crash')
        return
      }
      this.loop++
      startAt = 0
    }
  }
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    if (signal.aborted) { resolve(); return }
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); resolve() }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Where the simulated telemetry goes: POST /v1/telemetry on the planner's admin listener. */
export type TelemetrySink = (gateway: string, samples: ScenarioSample[]) => Promise<void>

export function httpTelemetrySink (plannerUrl: string, token: string): TelemetrySink {
  return async (gateway, samples) => {
    // The planner takes at most 1000 samples a push.
    for (let i = 0; i < samples.length; i += 500) {
      const res = await request(`${plannerUrl}/v1/telemetry`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ gateway, samples: samples.slice(i, i + 500) })
      })
      const text = await res.body.text()
      if (res.statusCode >= 300) throw new FerryError('FERRY_SCENARIO_TELEMETRY_REFUSED', `planner refused telemetry: ${res.statusCode} ${text}`, 502)
    }
  }
}

export interface TelemetryFeedOptions {
  driver: ScenarioDriver
  timeline: FaultTimeline
  gateway: string
  sink: TelemetrySink
  /** How often samples are pushed, ms of wall time. Default 1000. */
  pushIntervalMs?: number
  /** Push the story's telemetry before startAtMs at once (the model then starts warm). Default true. */
  backfill?: boolean
  logger?: Logger
}

/**
 * SIMULATION (demos and tests): pushes the scenario's generated telemetry for `gateway` as the
 * story advances, as an agent would. It follows the driver's first pass (a `loop` repeats the
 * faults only: a model would otherwise see time run backwards).
 *
 * Timestamps are the story's own clock, anchored so that the sample pushed last is "now" and
 * earlier ones lie in the past: at speed k the model sees exactly the telemetry of the story
 * (its horizon and windows keep their meaning), only delivered k times faster. So the lead
 * time the model reports is in story seconds; divide by the speed for wall time.
 */
export class ScenarioTelemetryFeed {
  private timer: NodeJS.Timeout | null = null
  private next = 0
  private anchor = 0
  private pushing: Promise<void> | null = null
  private readonly logger: Logger
  pushed = 0
  failed = 0

  constructor (private readonly opts: TelemetryFeedOptions) {
    this.logger = (opts.logger ?? silentLogger).child({ component: 'scenario-telemetry', gateway: opts.gateway })
  }

  /** Call after driver.start(). */
  async start (): Promise<void> {
    const { driver, timeline } = this.opts
    const speed = driver.speed
    const start = driver.storyMs()
    const now = Date.now()
    // Story ms t is stamped anchor + t: the end of the story lands on the wall clock's time then.
    const remaining = Math.max(0, timeline.durationMs - start)
    this.anchor = now - start - remaining * (1 - 1 / speed)
    const samples = timeline.samples
    this.next = 0
    if (this.opts.backfill === false) while (this.next < samples.length && (samples[this.next]?.tMs ?? 0) < start) this.next++
    await this.flush()
    this.timer = setInterval(() => { void this.flush() }, this.opts.pushIntervalMs ?? 1000)
    this.timer.unref()
  }

  /** Pushes every sample up to the story's present. */
  flush (): Promise<void> {
    this.pushing ??= this.push().finally(() => { this.pushing = null })
    return this.pushing
  }

  private async push (): Promise<void> {
    const story = this.opts.driver.storyMs()
    const samples = this.opts.timeline.samples
    const batch: ScenarioSample[] = []
    let i = this.next
    while (i < samples.length && (samples[i] as { tMs: number }).tMs <= story) {
      const s = samples[i] as { tMs: number, values: Record<string, number> }
      batch.push({ at: Math.round(this.anchor + s.tMs), ...s.values })
      i++
    }
    if (batch.length === 0) return
    try {
      await this.opts.sink(this.opts.gateway, batch)
      this.next = i
      this.pushed += batch.length
    } catch (err) {
      // Kept for the next push, as an agent buffers while the planner is away.
      this.failed++
      this.logger.warn({ err: (err as Error).message }, 'telemetry push failed; retrying')
    }
  }

  async stop (): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    await this.pushing
  }
}

export type { Faults }
