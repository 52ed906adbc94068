/**
 * The telemetry agent that runs beside a gateway: samples the host every interval (sampler.ts),
 * hands each sample to the pusher (pusher.ts) and serves its own /metrics. See README.md.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Registry } from 'prom-client'
import { FerryError } from '../lib/errors.js'
import { silentLogger, type Logger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import type { AgentSample } from '../telemetry/fields.js'
import { AgentMetrics } from './metrics.js'
import type { Peer, ProbeTls } from './probes.js'
import { Pusher } from './pusher.js'
import { Sampler, type Source } from './sampler.js'

export interface TelemetryAgentOptions {
  /** The gateway id this agent reports for (as configured on the planner). */
  gateway: string
  /** The planner's admin base URL. */
  planner: URL | string
  /** The admin bearer token. */
  token: string
  /** Default 1000 ms. */
  intervalMs?: number
  /** The gateway's health URL, probed every interval. */
  probe?: URL | string
  /** An https probe's CA (instead of the system's) and client certificate, PEM bytes. */
  probeTls?: ProbeTls
  peers?: readonly Peer[]
  /** Block device to report; default the busiest. */
  disk?: string
  /** Probe and connect timeout. Default min(1000, intervalMs). */
  timeoutMs?: number
  /** Samples kept while the planner is away. Default 3600. */
  bufferMax?: number
  /** Samples per push. Default 500. */
  batchMax?: number
  pushTimeoutMs?: number
  minBackoffMs?: number
  maxBackoffMs?: number
  /** On stop, try this long to deliver what is buffered. Default 2000 ms. */
  flushOnStopMs?: number
  /** Where /proc is. Default /proc. */
  procRoot?: string
  /** Serve /metrics and /healthz on this port (0: any free port). Absent: no listener. */
  metricsPort?: number
  /** Default 127.0.0.1. */
  metricsHost?: string
  registry?: Registry
  logger?: Logger
}

export interface AgentStatus {
  running: boolean
  buffered: number
  consecutivePushFailures: number
  lastPushError: string | null
}

/** Rate fields need two readings; the first sample waits this long after the baseline. */
const PRIME_MS = 100

export class TelemetryAgent {
  readonly registry: Registry
  readonly metrics: AgentMetrics
  private readonly sampler: Sampler
  private readonly pusher: Pusher
  private readonly logger: Logger
  private readonly intervalMs: number
  private readonly reportedMissing = new Set<Source>()
  private server: http.Server | undefined
  private timer: NodeJS.Timeout | undefined
  private nextAt = 0
  private running = false
  private stopped = false
  private ticking: Promise<void> | undefined

  constructor (private readonly opts: TelemetryAgentOptions) {
    this.intervalMs = opts.intervalMs ?? 1000
    if (!Number.isInteger(this.intervalMs) || this.intervalMs < 10) {
      throw new FerryError('FERRY_AGENT_INVALID', `intervalMs must be an integer >= 10 (got ${String(opts.intervalMs)})`, 400)
    }
    this.registry = opts.registry ?? createRegistry(false)
    this.logger = opts.logger ?? silentLogger
    this.metrics = new AgentMetrics(this.registry)
    this.sampler = new Sampler({
      timeoutMs: opts.timeoutMs ?? Math.min(1000, this.intervalMs),
      ...(opts.procRoot !== undefined ? { procRoot: opts.procRoot } : {}),
      ...(opts.disk !== undefined ? { disk: opts.disk } : {}),
      ...(opts.peers !== undefined ? { peers: opts.peers } : {}),
      ...(opts.probe !== undefined ? { probe: new URL(opts.probe) } : {}),
      ...(opts.probeTls !== undefined ? { probeTls: opts.probeTls } : {})
    })
    this.pusher = new Pusher({
      planner: new URL(opts.planner),
      token: opts.token,
      gateway: opts.gateway,
      metrics: this.metrics,
      logger: this.logger,
      ...(opts.bufferMax !== undefined ? { bufferMax: opts.bufferMax } : {}),
      ...(opts.batchMax !== undefined ? { batchMax: opts.batchMax } : {}),
      ...(opts.pushTimeoutMs !== undefined ? { timeoutMs: opts.pushTimeoutMs } : {}),
      ...(opts.minBackoffMs !== undefined ? { minBackoffMs: opts.minBackoffMs } : {}),
      ...(opts.maxBackoffMs !== undefined ? { maxBackoffMs: opts.maxBackoffMs } : {})
    })
  }

  /** The metrics listener's address, once started with a metrics port. */
  get metricsAddress (): AddressInfo | undefined {
    const a = this.server?.address()
    return a === null || typeof a !== 'object' ? undefined : a
  }

  status (): AgentStatus {
    return {
      running: this.running,
      buffered: this.pusher.buffered,
      consecutivePushFailures: this.pusher.consecutiveFailures,
      lastPushError: this.pusher.lastError ?? null
    }
  }

  async start (): Promise<void> {
    if (this.running) return
    // The pusher is closed for good by stop(); a restarted agent is a new TelemetryAgent.
    if (this.stopped) throw new FerryError('FERRY_AGENT_STOPPED', 'this agent was stopped; create a new one', 409)
    if (this.opts.metricsPort !== undefined) await this.listen(this.opts.metricsPort, this.opts.metricsHost ?? '127.0.0.1')
    await this.sampler.prime()
    this.running = true
    this.nextAt = Date.now()
    this.schedule()
    this.logger.info({ gateway: this.opts.gateway, planner: String(this.opts.planner), intervalMs: this.intervalMs, metrics: this.metricsAddress ?? null }, 'telemetry agent started')
  }

  /** Stops sampling, tries briefly to deliver what is buffered, closes the metrics listener. */
  async stop (): Promise<void> {
    this.running = false
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
    await this.ticking
    const left = await this.pusher.stop(this.opts.flushOnStopMs ?? 2000)
    if (left > 0) this.logger.warn({ samples: left }, 'stopped with undelivered telemetry')
    const server = this.server
    this.server = undefined
    if (server !== undefined) {
      await new Promise<void>(resolve => { server.close(() => { resolve() }); server.closeAllConnections() })
    }
  }

  /** Takes one sample now (priming the rate baseline first if needed) and records its metrics. */
  async sampleOnce (): Promise<AgentSample> {
    if (!this.sampler.primed) {
      await this.sampler.prime()
      await sleep(PRIME_MS)
    }
    const r = await this.sampler.sample()
    this.metrics.observeSample(r.sample)
    for (const source of r.unavailable) {
      this.metrics.sourceUnavailable.inc({ source })
      if (!this.reportedMissing.has(source)) {
        // Once per source: a host without PSI stays without PSI; repeating it every second is noise.
        this.reportedMissing.add(source)
        this.logger.info({ source, probe: r.probe?.error }, 'telemetry source unavailable; its fields are left out (logged once)')
      }
    }
    return r.sample
  }

  private schedule (): void {
    if (!this.running) return
    const now = Date.now()
    this.nextAt += this.intervalMs
    // A tick that overran (a probe timing out) skips the slots it missed instead of bunching up.
    if (this.nextAt < now) this.nextAt += Math.ceil((now - this.nextAt) / this.intervalMs) * this.intervalMs
    this.timer = setTimeout(() => { this.tick() }, this.nextAt - now)
  }

  private tick (): void {
    this.ticking = (async () => {
      try {
        const sample = await this.sampleOnce()
        if (this.running) this.pusher.enqueue(sample)
      } catch (err) {
        this.metrics.sampleErrors.inc()
        this.logger.error({ err }, 'sampling failed')
      }
    })().finally(() => {
      this.ticking = undefined
      this.schedule()
    })
  }

  private async listen (port: number, host: string): Promise<void> {
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end()
      } else if (path === '/metrics') {
        this.registry.metrics().then(text => {
          res.writeHead(200, { 'content-type': this.registry.contentType }).end(text)
        }, (err: unknown) => {
          this.logger.error({ err }, 'metrics failed')
          res.writeHead(500).end()
        })
      } else if (path === '/healthz') {
        const body = JSON.stringify({ status: 'ok', gateway: this.opts.gateway, ...this.status() })
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(body)
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics and /healthz only\n')
      }
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => { server.off('error', reject); resolve() })
    })
    this.server = server
  }
}
