/**
 * Telemetry on the planner side: the ingestion API the agents push to, the history and CSV
 * export the health model trains on, the proxies' passive observations, and the optional
 * node_exporter scrape. Everything lands in the store's bounded per-gateway history
 * (`appendTelemetry`), in the sample fields of agent/fields.ts. See agent/README.md.
 *
 *   POST /v1/telemetry                     (token)  {gateway, samples:[{at, cpu, …}]} → 202 {accepted}
 *   GET  /v1/telemetry                              known gateways with sample counts and time range
 *   GET  /v1/telemetry/:gateway?since=&limit=       {gateway, samples} (oldest first)
 *   GET  /v1/telemetry/:gateway/csv?since=&limit=   CSV for `ferry train` (one gateway)
 *   GET  /v1/telemetry.csv?gateway=a,b&since=&limit= CSV for `ferry train` (all or some gateways)
 */
import type { ServerResponse } from 'node:http'
import { Agent, request } from 'undici'
import { z } from 'zod'
import { Counter, type Registry } from 'prom-client'
import { AGENT_FIELDS, FIELD_NAMES, HEALTH_SIGNALS, fieldRange, type AgentSample, type FieldName } from '../agent/fields.js'
import { nodeExporterFields, nodeSnapshot, type NodeSnapshot } from '../agent/node-exporter.js'
import { FerryError } from '../lib/errors.js'
import { silentLogger, type Logger } from '../lib/log.js'
import type { AdminServer } from '../proxy/admin.js'
import type { StateStore, TelemetrySample } from '../state/types.js'
import { CSV_HEADER, formatTelemetryCsv } from './health/csv.js'
import type { TelemetryRecord } from './health/types.js'

// ───────────────────────────── errors ─────────────────────────────

/** A batch or query the planner refuses (400); the message names the field. */
export const TELEMETRY_INVALID = 'FERRY_TELEMETRY_INVALID'
/** More samples in one batch than the planner takes (413); the agent halves its batches. */
export const TELEMETRY_TOO_LARGE = 'FERRY_TELEMETRY_TOO_LARGE'
/** A gateway id the planner's config does not know (404). */
export const TELEMETRY_UNKNOWN_GATEWAY = 'FERRY_TELEMETRY_UNKNOWN_GATEWAY'

function invalid (message: string): FerryError {
  return new FerryError(TELEMETRY_INVALID, message, 400)
}

// ───────────────────────────── validation ─────────────────────────────

/** Earliest acceptable `at`: a sender using seconds instead of milliseconds lands in 1970. */
const MIN_AT = Date.UTC(2000, 0, 1)

const fieldSchemas = Object.fromEntries(AGENT_FIELDS.map(f => {
  const [lo, hi] = fieldRange(f)
  return [f, z.number().finite().min(lo).max(hi).optional()]
})) as Record<FieldName, z.ZodOptional<z.ZodNumber>>

/**
 * A pushed sample: `at` in Unix ms and known fields only. Unknown keys are refused rather than
 * dropped: a misspelt field silently ignored would leave the model without a signal while
 * everything looks fine. (The passive_* fields are the planner's own and cannot be pushed.)
 */
const sampleSchema = z.object({
  at: z.number().int().min(MIN_AT, { message: 'must be Unix milliseconds (this is before 2000: seconds?)' }),
  ...fieldSchemas
}).strict()

const batchSchema = z.object({
  gateway: z.string().min(1).max(128),
  samples: z.array(z.unknown()).min(1, { message: 'a batch needs at least one sample' })
}).strict()

function describeIssue (issue: z.ZodIssue): string {
  let path = ''
  for (const p of issue.path) path += typeof p === 'number' ? `[${p}]` : path === '' ? p : `.${p}`
  return `${path === '' ? 'body' : path}: ${issue.message}`
}

/** Up to three issues, each with the path of the field, e.g. `samples[3].cpu: Expected number…`. */
function zodMessage (err: z.ZodError, prefix: ReadonlyArray<string | number> = []): string {
  const issues = err.issues.slice(0, 3).map(i => describeIssue({ ...i, path: [...prefix, ...i.path] }))
  const more = err.issues.length > 3 ? ` (and ${err.issues.length - 3} more)` : ''
  return `invalid telemetry: ${issues.join('; ')}${more}`
}

/** A sample in the store's shape with its fields in one fixed order (retries serialise alike). */
function toStored (s: z.infer<typeof sampleSchema>): TelemetrySample {
  const out: TelemetrySample = { at: s.at }
  for (const f of FIELD_NAMES) {
    const v = (s as Partial<Record<FieldName, number>>)[f]
    if (v !== undefined) out[f] = v
  }
  return out
}

/**
 * The health model's view of a stored sample (planner/health TelemetryRecord): `at` becomes
 * `timestamp`, the seven signals are kept, everything else is left out.
 */
export function toHealthRecord (gateway: string, s: TelemetrySample | AgentSample): TelemetryRecord | undefined {
  const rec: TelemetryRecord = { timestamp: s.at, gateway }
  let any = false
  for (const f of HEALTH_SIGNALS) {
    const v = (s as Record<string, number | undefined>)[f]
    if (v !== undefined && Number.isFinite(v)) { rec[f] = v; any = true }
  }
  return any ? rec : undefined
}

// ───────────────────────────── metrics ─────────────────────────────

function counter<L extends string> (registry: Registry, name: string, help: string, labelNames: readonly L[]): Counter<L> {
  return (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] })
}

class TelemetryMetrics {
  readonly ingested: Counter<'gateway' | 'source'>
  readonly refused: Counter<'reason'>
  readonly scrapes: Counter<'gateway' | 'result'>
  readonly passiveInvalid: Counter

  constructor (registry: Registry) {
    this.ingested = counter(registry, 'ferry_telemetry_samples_ingested_total', 'telemetry samples stored, by gateway and source (agent, passive, node_exporter)', ['gateway', 'source'])
    this.refused = counter(registry, 'ferry_telemetry_batches_refused_total', 'pushed batches refused, by reason (invalid, too_large, unknown_gateway, future, store)', ['reason'])
    this.scrapes = counter(registry, 'ferry_telemetry_scrapes_total', 'node_exporter scrapes, by gateway and result (ok, error)', ['gateway', 'result'])
    this.passiveInvalid = counter(registry, 'ferry_telemetry_passive_invalid_total', 'passive observations ignored (unknown gateway or nonsense numbers)', [])
  }
}

// ───────────────────────────── ingestion ─────────────────────────────

/** What a proxy saw of one gateway: `requests` requests, `errors` of them failed, mean latency. */
export interface PassiveObservation {
  /** Mean latency of these requests, ms. */
  latencyMs: number
  errors: number
  requests: number
}

export interface TelemetryRoutesOptions {
  logger?: Logger
  registry: Registry
  /** The gateway ids the planner knows (read on every request, so config reloads apply). */
  gateways: () => readonly string[]
  /** Most samples in one push. Default 1000 (an agent's default batch is 500). */
  maxBatchSamples?: number
  /** How far ahead of the planner's clock a sample may be. Default 60 s. */
  maxFutureMs?: number
  /** Passive observations are summed over this window, then stored as one sample. Default 5 s. */
  passiveFlushMs?: number
  now?: () => number
}

export interface TelemetryIngest {
  /** Validates and stores a push body (what POST /v1/telemetry does). Throws FerryError. */
  ingest: (body: unknown) => Promise<{ gateway: string, accepted: number }>
  /**
   * Adds a proxy's observation of real traffic to a gateway. Summed per gateway and stored every
   * `passiveFlushMs` as a sample with passive_latency_ms, passive_error_rate, passive_requests.
   * Never throws (it is called on the proxy's path): nonsense is counted and ignored.
   */
  recordPassive: (gateway: string, obs: PassiveObservation) => void
  /** Stores the passive sums now; returns how many samples were written. */
  flushPassive: () => Promise<number>
  /** Stops the passive timer after a last flush. Routes stay registered (the admin server owns them). */
  close: () => Promise<void>
}

interface PassiveSum { latencyMsTotal: number, errors: number, requests: number }

/** Registers the telemetry API on the admin server and returns the ingestion handle. */
export function registerTelemetryRoutes (admin: AdminServer, store: StateStore, opts: TelemetryRoutesOptions): TelemetryIngest {
  const logger = opts.logger ?? silentLogger
  const metrics = new TelemetryMetrics(opts.registry)
  const now = opts.now ?? Date.now
  const maxBatch = opts.maxBatchSamples ?? 1000
  const maxFutureMs = opts.maxFutureMs ?? 60_000
  const known = (id: string): boolean => opts.gateways().includes(id)

  const refuse = (reason: string, err: FerryError): never => {
    metrics.refused.inc({ reason })
    throw err
  }

  const ingest = async (body: unknown): Promise<{ gateway: string, accepted: number }> => {
    if (body === undefined) refuse('invalid', invalid('request body must be JSON {"gateway": ID, "samples": [...]}'))
    // Count first: a 100k-sample batch is refused before any per-sample work.
    const count = (body as { samples?: unknown } | null)?.samples
    if (Array.isArray(count) && count.length > maxBatch) {
      refuse('too_large', new FerryError(TELEMETRY_TOO_LARGE, `a batch holds at most ${maxBatch} samples (got ${count.length}); send smaller batches`, 413))
    }
    const batch = batchSchema.safeParse(body)
    if (!batch.success) return refuse('invalid', invalid(zodMessage(batch.error)))
    const { gateway } = batch.data
    if (!known(gateway)) refuse('unknown_gateway', new FerryError(TELEMETRY_UNKNOWN_GATEWAY, `unknown gateway ${JSON.stringify(gateway)}: not in the planner's config`, 404))
    const t = now()
    const samples: TelemetrySample[] = []
    for (let i = 0; i < batch.data.samples.length; i++) {
      const r = sampleSchema.safeParse(batch.data.samples[i])
      if (!r.success) return refuse('invalid', invalid(zodMessage(r.error, ['samples', i])))
      if (r.data.at > t + maxFutureMs) {
        refuse('future', invalid(`invalid telemetry: samples[${i}].at is ${Math.round((r.data.at - t) / 1000)} s ahead of the planner's clock (at most ${maxFutureMs / 1000} s): check the agent host's clock`))
      }
      samples.push(toStored(r.data))
    }
    try {
      await store.appendTelemetry(gateway, samples)
    } catch (err) {
      metrics.refused.inc({ reason: 'store' })
      throw err
    }
    metrics.ingested.inc({ gateway, source: 'agent' }, samples.length)
    return { gateway, accepted: samples.length }
  }

  // ── passive observations ──
  let passive = new Map<string, PassiveSum>()
  const recordPassive = (gateway: string, obs: PassiveObservation): void => {
    const { latencyMs, errors, requests } = obs ?? {}
    const sane = typeof gateway === 'string' && known(gateway) &&
      Number.isFinite(latencyMs) && latencyMs >= 0 && Number.isInteger(requests) && requests > 0 &&
      Number.isInteger(errors) && errors >= 0 && errors <= requests
    if (!sane) { metrics.passiveInvalid.inc(); return }
    let s = passive.get(gateway)
    if (s === undefined) passive.set(gateway, s = { latencyMsTotal: 0, errors: 0, requests: 0 })
    s.latencyMsTotal += latencyMs * requests
    s.errors += errors
    s.requests += requests
  }
  const flushPassive = async (): Promise<number> => {
    if (passive.size === 0) return 0
    const sums = passive
    passive = new Map()
    const at = now()
    let written = 0
    await Promise.all([...sums].map(async ([gateway, s]) => {
      const sample: TelemetrySample = {
        at,
        passive_latency_ms: Math.min(s.latencyMsTotal / s.requests, fieldRange('passive_latency_ms')[1]),
        passive_error_rate: s.errors / s.requests,
        passive_requests: s.requests
      }
      try {
        await store.appendTelemetry(gateway, [sample])
        metrics.ingested.inc({ gateway, source: 'passive' })
        written++
      } catch (err) {
        // Dropped, not retried: the next window carries fresh observations, which matter more.
        logger.warn({ err, gateway }, 'could not store passive telemetry; dropped')
      }
    }))
    return written
  }
  const passiveTimer = setInterval(() => { void flushPassive() }, opts.passiveFlushMs ?? 5000)
  passiveTimer.unref()

  // ── routes ──
  admin.route('POST', '/v1/telemetry', async ({ body }) => await ingest(body), { auth: true })

  admin.route('GET', '/v1/telemetry', async () => {
    const gateways = await Promise.all(opts.gateways().map(async id => {
      const samples = await store.readTelemetry(id)
      return { gateway: id, samples: samples.length, first: samples[0]?.at ?? null, last: samples[samples.length - 1]?.at ?? null }
    }))
    return { gateways }
  })

  admin.route('GET', '/v1/telemetry/:gateway', async ({ params, query }) => {
    const gateway = checkKnown(params.gateway, known)
    return { gateway, samples: await store.readTelemetry(gateway, parseQuery(query)) }
  })

  admin.route('GET', '/v1/telemetry/:gateway/csv', async ({ params, query, res }) => {
    const gateway = checkKnown(params.gateway, known)
    await sendCsv(res, store, [gateway], parseQuery(query), gateway)
  })

  admin.route('GET', '/v1/telemetry.csv', async ({ query, res }) => {
    const wanted = query.get('gateway')
    const gateways = wanted === null || wanted === '' ? [...opts.gateways()] : wanted.split(',').map(g => checkKnown(g.trim(), known))
    await sendCsv(res, store, gateways, parseQuery(query), 'all')
  })

  return {
    ingest,
    recordPassive,
    flushPassive,
    close: async () => {
      clearInterval(passiveTimer)
      await flushPassive()
    }
  }
}

function checkKnown (gateway: string | undefined, known: (id: string) => boolean): string {
  if (gateway === undefined || !known(gateway)) {
    throw new FerryError(TELEMETRY_UNKNOWN_GATEWAY, `unknown gateway ${JSON.stringify(gateway ?? '')}: not in the planner's config`, 404)
  }
  return gateway
}

/** `since`: Unix ms or an ISO 8601 time; `limit`: the most recent N (per gateway). */
function parseQuery (query: URLSearchParams): { since?: number, limit?: number } {
  const out: { since?: number, limit?: number } = {}
  const since = query.get('since')
  if (since !== null && since !== '') {
    const t = /^\d+$/.test(since) ? Number(since) : Date.parse(since)
    if (!Number.isFinite(t) || t < 0) throw invalid(`since must be Unix milliseconds or an ISO 8601 time (got ${JSON.stringify(since)})`)
    out.since = t
  }
  const limit = query.get('limit')
  if (limit !== null && limit !== '') {
    const n = /^\d{1,9}$/.test(limit) ? Number(limit) : NaN
    if (!(n >= 1)) throw invalid(`limit must be a positive integer (got ${JSON.stringify(limit)})`)
    out.limit = n
  }
  return out
}

/**
 * Streams the CSV export, one gateway at a time (the whole fleet's history is never held at
 * once). Samples carrying none of the health signals (passive-only ones) have no row: a row
 * of empty cells trains nothing.
 */
async function sendCsv (res: ServerResponse, store: StateStore, gateways: readonly string[], query: { since?: number, limit?: number }, name: string): Promise<void> {
  // Read the first gateway before sending headers, so a store failure is still a clean 503.
  let next: TelemetrySample[] | undefined = gateways.length > 0 ? await store.readTelemetry(gateways[0] as string, query) : []
  res.writeHead(200, {
    'content-type': 'text/csv; charset=utf-8',
    'content-disposition': `attachment; filename="telemetry-${name}.csv"`,
    'cache-control': 'no-store'
  })
  res.write(CSV_HEADER + '\n')
  for (let i = 0; i < gateways.length; i++) {
    const gateway = gateways[i] as string
    const samples = next ?? await store.readTelemetry(gateway, query)
    next = undefined
    const records: TelemetryRecord[] = []
    for (const s of samples) {
      const r = toHealthRecord(gateway, s)
      if (r !== undefined) records.push(r)
    }
    const body = formatTelemetryCsv(records).slice(CSV_HEADER.length + 1)
    if (body !== '' && !res.write(body)) await new Promise(resolve => res.once('drain', resolve))
  }
  res.end()
}

// ───────────────────────────── node_exporter ─────────────────────────────

export const nodeExporterConfigSchema = z.object({
  intervalMs: z.number().int().min(100).default(5000).describe('how often each node_exporter is scraped'),
  timeoutMs: z.number().int().positive().default(3000).describe('a scrape that has not completed in this long failed'),
  targets: z.record(z.string(), z.union([
    z.string().url(),
    z.object({
      url: z.string().url(),
      disk: z.string().regex(/^[\w.!-]{1,64}$/).optional().describe('device label to report (default: the busiest)')
    }).strict()
  ])).default({}).describe('gateway id → node_exporter URL (e.g. http://gw1:9100/metrics), or {url, disk}')
}).strict()

export type NodeExporterConfig = z.infer<typeof nodeExporterConfigSchema>

export interface NodeExporterScraperOptions {
  store: StateStore
  /** gateway id → URL of its node_exporter's /metrics (or {url, disk}). */
  targets: NodeExporterConfig['targets']
  intervalMs?: number
  timeoutMs?: number
  /** A larger response is cut off and counted as a failed scrape. Default 8 MiB. */
  maxBytes?: number
  registry: Registry
  logger?: Logger
}

/**
 * Polls each gateway's node_exporter and stores the same fields the agent would (cpu,
 * mem_pressure, mem_used, disk_util, disk_await_ms). For hosts that already run node_exporter
 * and cannot run the agent; the probe and peer fields only the agent can measure.
 */
export class NodeExporterScraper {
  private readonly targets: Array<{ gateway: string, url: string, disk?: string }>
  private readonly prev = new Map<string, NodeSnapshot>()
  private readonly metrics: TelemetryMetrics
  private readonly logger: Logger
  private readonly dispatcher: Agent
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly maxBytes: number
  private timer: NodeJS.Timeout | undefined
  private round: Promise<void> | undefined
  private running = false

  constructor (private readonly opts: NodeExporterScraperOptions) {
    this.targets = Object.entries(opts.targets).map(([gateway, t]) =>
      typeof t === 'string' ? { gateway, url: t } : { gateway, url: t.url, ...(t.disk !== undefined ? { disk: t.disk } : {}) })
    this.metrics = new TelemetryMetrics(opts.registry)
    this.logger = opts.logger ?? silentLogger
    this.intervalMs = opts.intervalMs ?? 5000
    this.timeoutMs = opts.timeoutMs ?? 3000
    this.maxBytes = opts.maxBytes ?? 8 * 1024 * 1024
    this.dispatcher = new Agent({ keepAliveTimeout: Math.max(this.intervalMs * 2, 10_000), connectTimeout: this.timeoutMs })
  }

  start (): void {
    if (this.running) return
    this.running = true
    const loop = (): void => {
      this.round = this.scrapeAll().finally(() => {
        this.round = undefined
        if (this.running) this.timer = setTimeout(loop, this.intervalMs)
      })
    }
    loop()
  }

  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.timer)
    await this.round
    await this.dispatcher.close().catch(() => {})
  }

  /** Scrapes every target once (concurrently). */
  async scrapeAll (): Promise<void> {
    await Promise.all(this.targets.map(t => this.scrapeOnce(t.gateway)))
  }

  /**
   * Scrapes one gateway, stores the sample if it has any field, and returns it (undefined when
   * the scrape failed or the gateway is not a target).
   */
  async scrapeOnce (gateway: string): Promise<AgentSample | undefined> {
    const target = this.targets.find(t => t.gateway === gateway)
    if (target === undefined) return undefined
    let text: string
    try {
      text = await this.fetch(target.url)
    } catch (err) {
      this.metrics.scrapes.inc({ gateway, result: 'error' })
      this.logger.warn({ gateway, url: target.url, err: (err as Error).message }, 'node_exporter scrape failed')
      return undefined
    }
    const at = Date.now()
    const snap = nodeSnapshot(text, at)
    if (snap.skipped > 0) this.logger.debug({ gateway, skipped: snap.skipped }, 'node_exporter: malformed lines skipped')
    const fields = nodeExporterFields(this.prev.get(gateway), snap, target.disk)
    this.prev.set(gateway, snap)
    this.metrics.scrapes.inc({ gateway, result: 'ok' })
    const sample: AgentSample = { at, ...fields }
    if (Object.keys(fields).length === 0) return sample
    try {
      await this.opts.store.appendTelemetry(gateway, [sample as TelemetrySample])
      this.metrics.ingested.inc({ gateway, source: 'node_exporter' })
    } catch (err) {
      this.logger.warn({ gateway, err }, 'could not store node_exporter telemetry')
    }
    return sample
  }

  private async fetch (url: string): Promise<string> {
    const res = await request(url, {
      dispatcher: this.dispatcher,
      headers: { accept: 'text/plain;version=0.0.4' },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      signal: AbortSignal.timeout(this.timeoutMs)
    })
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new Error(`status ${res.statusCode}`)
    }
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > this.maxBytes) {
        res.body.destroy()
        throw new Error(`response over ${this.maxBytes} bytes`)
      }
      chunks.push(chunk as Buffer)
    }
    return Buffer.concat(chunks).toString('utf8')
  }
}
