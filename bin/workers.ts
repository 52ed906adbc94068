/**
 * Data-plane workers: `proxy.workers` / `dns.workers` processes that share the proxy's and DNS's
 * listening sockets, each a full data plane (its own FerryNode with the proxy and/or DNS role).
 *
 * Node 20 has no SO_REUSEPORT option, so the sockets are shared through the cluster module: the
 * primary binds each listener once and hands the handle to every worker, and with SCHED_NONE the
 * workers accept from it directly, so the primary carries no request traffic at all (with the
 * default round-robin it would accept every connection itself and become the bottleneck of a
 * small machine). The primary supervises: it runs the roles that must not be multiplied (the
 * planner), the admin listener (its /metrics merges every worker's registry, its /readyz
 * covers every worker, and routes only a data plane has are forwarded to a worker's private
 * admin listener), restarts a worker that dies and counts it, forwards SIGHUP, and drains them
 * all on SIGTERM.
 *
 * Everything workers share lives in the store, exactly as between proxies on different hosts:
 * locations follow its notifications, the access recorder merges its deltas there, sessions
 * are read and written there. So a memory store (one process's) cannot be shared, and the
 * config refuses workers > 1 with it.
 */
import cluster, { type Worker } from 'node:cluster'
import os from 'node:os'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { AggregatorRegistry, Counter, Gauge, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client'
import { request } from 'undici'
import type { FerryConfig } from '../config/schema.js'
import type { Logger } from '../lib/log.js'
import type { ReadinessResult } from '../admin/server.js'
import type { Role } from './node.js'

/** Which data-plane roles each worker runs: worker i runs the proxy when i < proxy, DNS when i < dns. */
export interface WorkerPlan {
  count: number
  proxy: number
  dns: number
}

/** One metric as a registry exports it to be merged (getMetricsAsJSON). */
type MetricJson = MetricObjectWithValues<MetricValue<string>>

/** The role a worker is told to run, in its environment. */
const FERRY_WORKER_ROLES = 'FERRY_WORKER_ROLES'
const FERRY_WORKER_INDEX = 'FERRY_WORKER_INDEX'

/**
 * How many workers `roles` need under `config`: "auto" is one per core, except with a memory
 * store (one process owns it), where it is 1. A plan of one worker means "no workers": the
 * process serves everything itself, as before workers existed.
 */
export function planWorkers (config: FerryConfig, roles: ReadonlySet<Role>, cores = os.availableParallelism()): WorkerPlan {
  const resolve = (n: 'auto' | number): number => n !== 'auto' ? n : config.state.backend === 'memory' ? 1 : cores
  const proxy = roles.has('proxy') ? resolve(config.proxy.workers) : 0
  const dns = roles.has('dns') && config.dns.enabled ? resolve(config.dns.workers) : 0
  return { count: Math.max(proxy, dns), proxy, dns }
}

/** In a worker: the roles the primary gave it, or undefined in any other process. */
export function workerRoles (): Set<Role> | undefined {
  if (!cluster.isWorker) return undefined
  return new Set((process.env[FERRY_WORKER_ROLES] ?? '').split(',').filter(Boolean) as Role[])
}

// ── messages between the primary and its workers (process IPC, JSON)

interface ReadyMessage { type: 'ferry:ready', admin: string }
interface ReadinessMessage { type: 'ferry:readiness', reasons: string[], degraded: string[] }
interface MetricsRequest { type: 'ferry:metrics', id: number }
interface MetricsReply { type: 'ferry:metrics-reply', id: number, metrics: MetricJson[] | null }
type WorkerMessage = ReadyMessage | ReadinessMessage | MetricsReply

function isWorkerMessage (m: unknown): m is WorkerMessage {
  const type = (m as { type?: unknown } | null)?.type
  return type === 'ferry:ready' || type === 'ferry:readiness' || type === 'ferry:metrics-reply'
}

interface WorkerSlot {
  index: number
  roles: Role[]
  worker: Worker | undefined
  /** Its private admin listener, once it said it is ready. */
  admin: string | undefined
  /** Its last readiness report; undefined before the first. */
  readiness: { reasons: string[], degraded: string[] } | undefined
  restarts: number
  restartTimer: NodeJS.Timeout | undefined
}

export interface WorkerPoolOptions {
  plan: WorkerPlan
  logger: Logger
  registry: Registry
  /** How long a worker may take to start before start() fails. */
  startTimeoutMs?: number
  /** How long stop() waits for a worker to drain before it is killed. */
  stopGraceMs: number
}

/** The primary's side: forks, watches, restarts and stops the workers. */
export class WorkerPool {
  private readonly slots: WorkerSlot[]
  private stopping = false
  private readonly restartsTotal: Counter<'roles'>
  private readonly pending = new Map<number, { replies: MetricJson[][], waiting: number, done: () => void }>()
  private nextRequest = 0
  private readonly logger: Logger

  constructor (private readonly opts: WorkerPoolOptions) {
    this.logger = opts.logger.child({ role: 'workers' })
    const { plan } = opts
    this.slots = Array.from({ length: plan.count }, (_, index) => ({
      index,
      roles: [...(index < plan.proxy ? ['proxy' as const] : []), ...(index < plan.dns ? ['dns' as const] : [])],
      worker: undefined,
      admin: undefined,
      readiness: undefined,
      restarts: 0,
      restartTimer: undefined
    }))
    this.restartsTotal = new Counter({ name: 'ferry_worker_restarts_total', help: 'data-plane workers restarted after they exited unasked, by the roles they ran', labelNames: ['roles'], registers: [opts.registry] })
    const slots = this.slots
    new Gauge({ name: 'ferry_workers', help: 'data-plane workers running and ready, by the roles they run', labelNames: ['roles'], registers: [opts.registry], collect () {
      this.reset()
      for (const s of slots) this.inc({ roles: s.roles.join('+') }, s.admin !== undefined && s.worker?.isConnected() === true ? 1 : 0)
    } })
  }

  get size (): number { return this.slots.length }

  /** Forks every worker and resolves once each said it is ready (its listeners are bound). */
  async start (): Promise<void> {
    // Before the first fork: each worker accepts from the shared socket itself.
    cluster.schedulingPolicy = cluster.SCHED_NONE
    const timeoutMs = this.opts.startTimeoutMs ?? 60_000
    await Promise.all(this.slots.map(async slot => {
      this.fork(slot)
      const deadline = Date.now() + timeoutMs
      while (slot.admin === undefined) {
        if (this.stopping) return
        if (Date.now() > deadline) throw new Error(`worker ${slot.index} (${slot.roles.join('+')}) did not start within ${timeoutMs} ms`)
        await new Promise(resolve => setTimeout(resolve, 20))
      }
    }))
    this.logger.info({ workers: this.slots.map(s => ({ index: s.index, roles: s.roles, pid: s.worker?.process.pid })) }, 'workers ready')
  }

  private fork (slot: WorkerSlot): void {
    const worker = cluster.fork({ [FERRY_WORKER_ROLES]: slot.roles.join(','), [FERRY_WORKER_INDEX]: String(slot.index) })
    slot.worker = worker
    slot.admin = undefined
    slot.readiness = undefined
    worker.on('message', (m: unknown) => { if (isWorkerMessage(m)) this.onMessage(slot, m) })
    // 'error' on a worker is an IPC failure (sending to one that just died): the exit handler
    // below deals with the death; without a listener it would end the primary.
    worker.on('error', err => { this.logger.warn({ worker: slot.index, err: err.message }, 'worker channel error') })
    worker.once('exit', (code, signal) => { this.onExit(slot, worker, code, signal) })
  }

  private onMessage (slot: WorkerSlot, m: WorkerMessage): void {
    if (m.type === 'ferry:ready') slot.admin = m.admin
    else if (m.type === 'ferry:readiness') slot.readiness = { reasons: m.reasons, degraded: m.degraded }
    else {
      const p = this.pending.get(m.id)
      if (p === undefined) return
      if (m.metrics !== null) p.replies.push(m.metrics)
      if (--p.waiting === 0) p.done()
    }
  }

  private onExit (slot: WorkerSlot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return
    slot.worker = undefined
    slot.admin = undefined
    if (this.stopping) return
    // Exponential back-off: a worker that dies at start (a port taken, a bad file) must not
    // spin the machine; one that ran a while restarts at once.
    const delay = Math.min(5000, 100 * 2 ** Math.min(slot.restarts, 6))
    slot.restarts++
    this.restartsTotal.inc({ roles: slot.roles.join('+') })
    this.logger.error({ worker: slot.index, pid: worker.process.pid, code, signal, restartInMs: delay }, 'worker exited unasked; restarting it')
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined
      if (!this.stopping) this.fork(slot)
    }, delay)
  }

  /** Not ready while any worker is down, starting, or not ready itself. */
  readiness (): ReadinessResult {
    const down: string[] = []
    const degraded: string[] = []
    for (const s of this.slots) {
      const name = `worker ${s.index} (${s.roles.join('+')})`
      if (s.admin === undefined || s.worker?.isConnected() !== true) down.push(`${name} not running`)
      else if (s.readiness === undefined) down.push(`${name} has not reported`)
      else if (s.readiness.reasons.length > 0) down.push(`${name}: ${s.readiness.reasons.join('; ')}`)
      else if (s.readiness.degraded.length > 0) degraded.push(`${name}: ${s.readiness.degraded.join('; ')}`)
    }
    if (down.length > 0) return down.join('; ')
    return degraded.length > 0 ? { degraded: degraded.join('; ') } : undefined
  }

  /**
   * The primary's registry merged with every worker's (counters and histograms summed, as
   * prom-client's cluster aggregation does). A worker that does not answer within 2 s is left
   * out rather than holding up the scrape.
   */
  async metrics (own: Registry): Promise<string> {
    const id = this.nextRequest++
    const live = this.slots.filter(s => s.worker?.isConnected() === true)
    const replies: MetricJson[][] = [await own.getMetricsAsJSON()]
    if (live.length > 0) {
      await new Promise<void>(resolve => {
        const timer = setTimeout(() => { this.pending.delete(id); resolve() }, 2000)
        this.pending.set(id, { replies, waiting: live.length, done: () => { clearTimeout(timer); this.pending.delete(id); resolve() } })
        for (const s of live) s.worker?.send({ type: 'ferry:metrics', id } satisfies MetricsRequest, err => { if (err !== null) this.onMessage(s, { type: 'ferry:metrics-reply', id, metrics: null }) })
      })
    }
    return await AggregatorRegistry.aggregate(replies).metrics()
  }

  /**
   * Forwards an admin request no primary route matched to a ready worker's private admin
   * listener (the data plane's routes: gateways, routes, sessions). False when none is ready.
   */
  async forward (req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const target = this.slots.find(s => s.admin !== undefined && s.worker?.isConnected() === true && s.roles.includes('proxy')) ??
      this.slots.find(s => s.admin !== undefined && s.worker?.isConnected() === true)
    if (target?.admin === undefined) return false
    const method = req.method ?? 'GET'
    const headers: Record<string, string> = {}
    for (const name of ['authorization', 'content-type', 'accept']) {
      const v = req.headers[name]
      if (typeof v === 'string') headers[name] = v
    }
    const upstream = await request(target.admin + (req.url ?? '/'), {
      method: method as 'GET',
      headers,
      ...(method === 'GET' || method === 'HEAD' ? {} : { body: req }),
      headersTimeout: 10_000,
      bodyTimeout: 30_000
    })
    const out: Record<string, string> = {}
    for (const [k, v] of Object.entries(upstream.headers)) {
      if (typeof v === 'string' && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') out[k] = v
    }
    res.writeHead(upstream.statusCode, out)
    for await (const chunk of upstream.body) res.write(chunk)
    res.end()
    return true
  }

  /** SIGHUP to every worker: each reloads its config file, as the primary does. */
  reload (): void {
    for (const s of this.slots) s.worker?.process.kill('SIGHUP')
  }

  /** Graceful: SIGTERM to every worker (each drains like a single process), SIGKILL after the grace. */
  async stop (): Promise<void> {
    this.stopping = true
    const exits: Array<Promise<void>> = []
    for (const s of this.slots) {
      clearTimeout(s.restartTimer)
      const w = s.worker
      if (w === undefined || w.isDead()) continue
      exits.push(new Promise<void>(resolve => {
        const kill = setTimeout(() => { w.process.kill('SIGKILL') }, this.opts.stopGraceMs + 5000)
        w.once('exit', () => { clearTimeout(kill); resolve() })
        w.process.kill('SIGTERM')
      }))
    }
    await Promise.all(exits)
  }
}

/**
 * The worker's side: reports ready (with its private admin address) once its listeners are
 * bound, then its readiness every second; answers the primary's metrics requests; and stops
 * when the primary is gone, since nobody would restart or drain it any more and it would hold
 * the shared ports so a restarted primary could not bind them.
 */
export function serveAsWorker (opts: {
  adminUrl: string
  registry: Registry
  readiness: () => Promise<{ reasons: string[], degraded: string[] }>
  onOrphaned: () => void
}): () => void {
  // With a callback, a failed send is handed to it instead of being emitted as 'error' on the
  // process, where nothing listens: a primary SIGKILLed between the `connected` check and the
  // write made it an uncaught EPIPE in the 30-minute soak. Nothing to do with the error: the
  // 'disconnect' that follows stops this worker (onOrphaned).
  const send = (m: WorkerMessage): void => { if (process.connected) process.send?.(m, undefined, undefined, () => {}) }
  process.on('message', (m: unknown) => {
    if ((m as MetricsRequest | null)?.type !== 'ferry:metrics') return
    const id = (m as MetricsRequest).id
    opts.registry.getMetricsAsJSON().then(
      metrics => { send({ type: 'ferry:metrics-reply', id, metrics }) },
      () => { send({ type: 'ferry:metrics-reply', id, metrics: null }) }
    )
  })
  process.once('disconnect', opts.onOrphaned)
  const report = (): void => {
    opts.readiness().then(r => { send({ type: 'ferry:readiness', reasons: r.reasons, degraded: r.degraded }) }, () => {})
  }
  send({ type: 'ferry:ready', admin: opts.adminUrl })
  report()
  const timer = setInterval(report, 1000)
  timer.unref()
  return () => { clearInterval(timer) }
}
