/**
 * Delivers samples to the planner: `POST {planner}/v1/telemetry` with the bearer token and
 * `{ gateway, samples }`, oldest first, one request at a time so the planner receives samples
 * in the order they were taken.
 *
 * While the planner is away samples wait in a bounded buffer; when it is full the oldest sample
 * is dropped (and counted): recent telemetry is what predicts the next minutes, so an outage
 * costs the past, never the present. The batch in flight leaves the buffer while it travels and
 * goes back to its front if the push fails, so a sample is counted exactly once: pushed, or
 * dropped (memory stays within bufferMax + one batch). Failed pushes are retried with exponential backoff
 * and jitter, so a fleet of agents does not hammer a planner that is coming back in lock step.
 *
 * A retried batch the planner had in fact stored (the reply was lost) is harmless: the store
 * keeps one copy of identical samples, and a retry sends exactly the same samples.
 */
import { Agent, request } from 'undici'
import type { Logger } from '../lib/log.js'
import type { AgentSample } from '../telemetry/fields.js'
import { PUSH_PATH, type PushBody } from '../telemetry/push.js'
import type { AgentMetrics } from './metrics.js'

export interface PusherOptions {
  /** The planner's admin base URL, e.g. http://planner:9090. */
  planner: URL
  token: string
  gateway: string
  /** Samples kept while the planner is away. Default 3600 (an hour at the default interval). */
  bufferMax?: number
  /** Samples per request. Default 500. */
  batchMax?: number
  /** A push that has not been answered in this long failed. Default 5000 ms. */
  timeoutMs?: number
  /** First retry delay; doubles per failure up to maxBackoffMs. Default 500 ms. */
  minBackoffMs?: number
  /** Default 30 s. */
  maxBackoffMs?: number
  metrics: AgentMetrics
  logger: Logger
  /** Injectable for tests of the jitter; default Math.random. */
  random?: () => number
}

type Outcome =
  | { kind: 'ok' }
  /** The planner refused the samples themselves (400): retrying would be refused again. */
  | { kind: 'rejected', status: number, message: string }
  /** 413: the batch is too big for the planner's bound. */
  | { kind: 'too-large', message: string }
  | { kind: 'failed', status: string, message: string }

export class Pusher {
  /** Waiting samples, oldest first. */
  private buffer: AgentSample[] = []
  /** The batch being pushed (older than everything in `buffer`). */
  private inFlight: AgentSample[] = []
  private failures = 0
  private backoffTimer: NodeJS.Timeout | undefined
  private batchLimit: number
  private stopped = false
  private pumping: Promise<void> | undefined
  private readonly abort = new AbortController()
  private readonly dispatcher: Agent
  private readonly url: URL
  private readonly bufferMax: number
  private readonly timeoutMs: number
  private readonly minBackoffMs: number
  private readonly maxBackoffMs: number
  private readonly random: () => number
  /** The last push error, for logs and for tests ("status 401: …"). */
  lastError: string | undefined

  constructor (private readonly opts: PusherOptions) {
    // Relative to the planner URL's path, so a planner behind a path prefix is reached under it.
    this.url = new URL(PUSH_PATH.slice(1), opts.planner.href.endsWith('/') ? opts.planner : new URL(opts.planner.href + '/'))
    this.bufferMax = Math.max(1, opts.bufferMax ?? 3600)
    this.batchLimit = Math.max(1, Math.min(opts.batchMax ?? 500, this.bufferMax))
    this.timeoutMs = opts.timeoutMs ?? 5000
    this.minBackoffMs = opts.minBackoffMs ?? 500
    this.maxBackoffMs = Math.max(this.minBackoffMs, opts.maxBackoffMs ?? 30_000)
    this.random = opts.random ?? Math.random
    this.dispatcher = new Agent({ connections: 1, keepAliveTimeout: 10_000, connectTimeout: this.timeoutMs })
  }

  /** Samples not yet delivered, the batch in flight included. */
  get buffered (): number { return this.buffer.length + this.inFlight.length }

  /** Consecutive failed pushes (0 after a success). */
  get consecutiveFailures (): number { return this.failures }

  enqueue (sample: AgentSample): void {
    if (this.stopped) return
    this.buffer.push(sample)
    this.trim()
    this.kick()
  }

  /** Drops the oldest waiting samples beyond the bound. */
  private trim (): void {
    const over = this.buffer.length - this.bufferMax
    if (over > 0) {
      this.buffer.splice(0, over)
      this.opts.metrics.samplesDropped.inc({ reason: 'overflow' }, over)
    }
    this.opts.metrics.buffered.set(this.buffered)
  }

  /** Pushes now unless a push is in flight or a retry is scheduled. */
  kick (): void {
    if (this.stopped || this.pumping !== undefined || this.backoffTimer !== undefined || this.buffer.length === 0) return
    this.pumping = this.pump().finally(() => { this.pumping = undefined })
  }

  /**
   * Stops retrying. With `flushMs` > 0, first tries to deliver what is buffered for at most that
   * long (giving up at the first failure: a planner that is away will not be back in time).
   * Returns how many samples were left undelivered.
   */
  async stop (flushMs = 0): Promise<number> {
    if (this.stopped) return this.buffered
    // From here on no new pump starts and no retry is scheduled; a pump in progress ends after
    // its current batch.
    this.stopped = true
    clearTimeout(this.backoffTimer)
    this.backoffTimer = undefined
    if (flushMs > 0) {
      const deadline = Date.now() + flushMs
      const timer = setTimeout(() => { this.abort.abort() }, flushMs)
      try {
        await this.pumping
        while (this.buffer.length > 0 && Date.now() < deadline && !this.abort.signal.aborted) {
          if ((await this.pushBatch()).kind === 'failed') break
        }
      } finally {
        clearTimeout(timer)
      }
    }
    this.abort.abort()
    await this.pumping
    await this.dispatcher.close().catch(() => {})
    return this.buffered
  }

  private async pump (): Promise<void> {
    while (!this.stopped && this.buffer.length > 0) {
      const outcome = await this.pushBatch()
      if (outcome.kind === 'failed') {
        this.scheduleRetry()
        return
      }
    }
  }

  /** Sends the oldest batch and applies the outcome to the buffer and the counters. */
  private async pushBatch (): Promise<Outcome> {
    const m = this.opts.metrics
    const batch = this.buffer.splice(0, this.batchLimit)
    this.inFlight = batch
    let outcome: Outcome
    try {
      outcome = await this.post(batch)
    } finally {
      this.inFlight = []
    }
    const retry = (): void => {
      // Back to the front, older than anything enqueued meanwhile; the bound applies again.
      this.buffer = batch.concat(this.buffer)
      this.trim()
    }
    switch (outcome.kind) {
      case 'ok':
        m.samplesPushed.inc(batch.length)
        m.lastPush.set(Date.now() / 1000)
        this.failures = 0
        this.lastError = undefined
        break
      case 'rejected':
        m.pushErrors.inc({ status: String(outcome.status) })
        m.samplesDropped.inc({ reason: 'rejected' }, batch.length)
        this.lastError = `status ${outcome.status}: ${outcome.message}`
        this.opts.logger.error({ status: outcome.status, message: outcome.message, samples: batch.length }, 'planner rejected telemetry; dropping the batch')
        break
      case 'too-large':
        m.pushErrors.inc({ status: '413' })
        this.lastError = `status 413: ${outcome.message}`
        if (batch.length > 1) {
          // Smaller batches from now on: the planner's bound is what it is.
          this.batchLimit = Math.max(1, Math.floor(batch.length / 2))
          this.opts.logger.warn({ batch: this.batchLimit }, 'planner refused a batch as too large; sending smaller batches')
          retry()
        } else {
          m.samplesDropped.inc({ reason: 'rejected' })
          this.opts.logger.error({ message: outcome.message }, 'planner refused a single sample as too large; dropping it')
        }
        break
      case 'failed':
        this.failures++
        m.pushErrors.inc({ status: outcome.status })
        this.lastError = `${/^\d+$/.test(outcome.status) ? 'status ' : ''}${outcome.status}: ${outcome.message}`
        this.opts.logger[this.failures === 1 ? 'warn' : 'debug']({ status: outcome.status, message: outcome.message, failures: this.failures, buffered: this.buffered }, 'telemetry push failed; will retry')
        retry()
        break
    }
    m.buffered.set(this.buffered)
    return outcome
  }

  private scheduleRetry (): void {
    if (this.stopped) return
    const delay = backoffDelay(this.failures, this.minBackoffMs, this.maxBackoffMs, this.random)
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = undefined
      this.kick()
    }, delay)
    this.backoffTimer.unref()
  }

  private async post (samples: AgentSample[]): Promise<Outcome> {
    const push: PushBody = { gateway: this.opts.gateway, samples }
    const body = JSON.stringify(push)
    try {
      const res = await request(this.url, {
        method: 'POST',
        dispatcher: this.dispatcher,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.opts.token}` },
        body,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        signal: this.abort.signal
      })
      const text = await res.body.text()
      if (res.statusCode >= 200 && res.statusCode < 300) return { kind: 'ok' }
      const message = errorMessage(text, res.statusCode)
      if (res.statusCode === 413) return { kind: 'too-large', message }
      if (res.statusCode === 400) return { kind: 'rejected', status: 400, message }
      // 401/403 (token), 404 (gateway not configured yet), 429, 5xx: may be fixed on the
      // planner's side without touching the agent, so keep the samples and retry.
      return { kind: 'failed', status: String(res.statusCode), message }
    } catch (err) {
      const e = err as Error & { code?: string }
      const timeout = e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT'
      return { kind: 'failed', status: timeout ? 'timeout' : 'network', message: e.code ?? e.message }
    }
  }
}

/**
 * The wait before retry number `failures` (1 = after the first failure): exponential from
 * `minMs`, capped at `maxMs`, with "equal jitter": at least half the exponential delay (so
 * retries do back off) plus a random half (so agents that failed together do not retry together).
 */
export function backoffDelay (failures: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(failures, 1) - 1, 30))
  return exp / 2 + random() * exp / 2
}

function errorMessage (text: string, status: number): string {
  try {
    const m = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message
    if (typeof m === 'string') return m
  } catch { /* not our JSON error shape */ }
  return text.slice(0, 200) || `status ${status}`
}
