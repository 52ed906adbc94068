/**
 * Telemetry on the planner side: the ingestion API the agents push to, the history and CSV
 * export the health model trains on, the proxies' passive observations, and the optional
 * node_exporter scrape. Everything lands in the store's bounded per-gateway history
 * (`appendTelemetry`), in the sample fields of telemetry/fields.ts; the push body and its
 * validation are telemetry/push.ts. See telemetry/README.md.
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
import { parseInput, type InputOptions } from '../admin/input.js'
import type { AdminServer } from '../admin/server.js'
import { FerryError } from '../lib/errors.js'
import { silentLogger, type Logger } from '../lib/log.js'
import { FIELD_NAMES, HEALTH_SIGNALS, fieldRange, type AgentSample, type FieldName } from '../telemetry/fields.js'
import { nodeExporterFields, nodeSnapshot, type NodeSnapshot } from '../telemetry/node-exporter.js'
import { PUSH_PATH, pushBodySchema, sampleSchema } from '../telemetry/push.js'
import type { StateStore, TelemetrySample } from '../state/types.js'
import { CSV_HEADER, formatTelemetryCsv } from './health/csv.js'
import type { TelemetryRecord } from './health/types.js'
import { nodeExporterConfigSchema, type NodeExporterConfig } from './config.js'

function invalid (message: string): FerryError {
  return new FerryError('FERRY_TELEMETRY_INVALID', message, 400)
}

/** Refusals of pushes and history queries keep the code the push protocol documents. */
const telemetry400: InputOptions = { code: 'FERRY_TELEMETRY_INVALID' }

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
  /** The admin input rule, with `at` naming where `value` sits in the body; a refusal is counted. */
  const check = <T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, value: unknown, at: Array<string | number> = []): T => {
    try {
      return parseInput(schema, value, 'telemetry', { ...telemetry400, at, root: 'body' })
    } catch (err) {
      return refuse('invalid', err as FerryError)
    }
  }

  const ingest = async (body: unknown): Promise<{ gateway: string, accepted: number }> => {
    if (body === undefined) refuse('invalid', invalid('request body must be JSON {"gateway": ID, "samples": [...]}'))
    // Count first: a 100k-sample batch is refused before any per-sample work.
    const count = (body as { samples?: unknown } | null)?.samples
    if (Array.isArray(count) && count.length > maxBatch) {
      refuse('too_large', new FerryError('FERRY_TELEMETRY_TOO_LARGE', `a batch holds at most ${maxBatch} samples (got ${count.length}); send smaller batches`, 413))
    }
    const batch = check(pushBodySchema, body)
    const { gateway } = batch
    if (!known(gateway)) refuse('unknown_gateway', new FerryError('FERRY_TELEMETRY_UNKNOWN_GATEWAY', `unknown gateway ${JSON.stringify(gateway)}: not in the planner's config`, 404))
    const t = now()
    const samples: TelemetrySample[] = []
    for (let i = 0; i < batch.samples.length; i++) {
      const sample = check(sampleSchema, batch.samples[i], ['samples', i])
      if (sample.at > t + maxFutureMs) {
        refuse('future', invalid(`invalid telemetry: samples[${i}].at is ${Math.round((sample.at - t) / 1000)} s ahead of the planner's clock (at most ${maxFutureMs / 1000} s): check the agent host's clock`))
      }
      samples.push(toStored(sample))
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
  admin.route('POST', PUSH_PATH, async ({ body }) => await ingest(body), { auth: true })

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
    throw new FerryError('FERRY_TELEMETRY_UNKNOWN_GATEWAY', `unknown gateway ${JSON.stringify(gateway ?? '')}: not in the planner's config`, 404)
  }
  return gateway
}

/** A query parameter that may be given empty, which means absent. */
function optionalParam<T> (param: z.ZodType<T, z.ZodTypeDef, string>): z.ZodType<T | undefined, z.ZodTypeDef, unknown> {
  return z.preprocess(v => v === '' ? undefined : v, param.optional())
}

/** `since`: Unix ms or an ISO 8601 time; `limit`: the most recent N (per gateway). */
const historyQuery = z.object({
  since: optionalParam(z.string().transform((s, ctx) => {
    const t = /^\d+$/.test(s) ? Number(s) : Date.parse(s)
    if (Number.isFinite(t) && t >= 0) return t
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be Unix milliseconds or an ISO 8601 time (got ${JSON.stringify(s)})` })
    return z.NEVER
  })),
  limit: optionalParam(z.string().regex(/^\d{1,9}$/, 'must be a positive integer').transform(Number).refine(n => n >= 1, 'must be a positive integer'))
})

function parseQuery (query: URLSearchParams): { since?: number, limit?: number } {
  const { since, limit } = parseInput(historyQuery, Object.fromEntries(query), 'query', telemetry400)
  return { ...(since === undefined ? {} : { since }), ...(limit === undefined ? {} : { limit }) }
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

export { nodeExporterConfigSchema, type NodeExporterConfig }

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
  /** Rounds are skipped while this says no (the planner scrapes only while it leads, so a
   * standby does not store every sample twice). Default: always. */
  active?: () => boolean
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
    if (this.opts.active !== undefined && !this.opts.active()) return
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
