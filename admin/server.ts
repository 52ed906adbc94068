import type http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { timingSafeEqual } from 'node:crypto'
import type { Registry } from 'prom-client'
import { sendError, sendJson } from '../lib/http.js'
import { FerryError, isFerryError } from '../lib/errors.js'
import type { Logger } from '../lib/log.js'
import { silentLogger } from '../lib/log.js'
import { HttpListener, type TlsFiles } from '../lib/tls.js'

/**
 * A readiness check: undefined when fine; a string (the reason) when the process should not get
 * traffic; `{ degraded }` when it still serves but something is wrong (reported, still 200).
 */
export type ReadinessResult = string | { degraded: string } | undefined
export type ReadinessCheck = () => ReadinessResult | Promise<ReadinessResult>

export interface AdminRequest {
  req: IncomingMessage
  res: ServerResponse
  /** Path parameters from the route pattern (`/v1/blocks/:volume/:block`). */
  params: Record<string, string>
  query: URLSearchParams
  /** Parsed JSON body (mutating routes only; limited to 1 MiB). */
  body: unknown
}

export type AdminHandler = (r: AdminRequest) => unknown | Promise<unknown>

interface Route {
  method: string
  parts: string[]
  handler: AdminHandler
  auth: boolean
}

export interface AdminServerOptions {
  host: string
  port: number
  registry: Registry
  /** Bearer token for mutating routes; null refuses them. */
  token: string | null
  /** Certificate and key files: HTTPS, reloaded when they change; null or absent: plain HTTP. */
  tls?: TlsFiles | null
  logger?: Logger
}

const MAX_ADMIN_BODY = 1024 * 1024

/**
 * The admin listener: liveness, readiness, Prometheus metrics and the JSON API. Each role
 * exposes a `register…(admin, deps)` that adds its routes and readiness checks, and only bin/
 * calls those: the admin server knows none of the roles and the roles never construct or find
 * it themselves, so the dependency points from the roles down to it and never between them.
 */
export class AdminServer {
  readonly server: http.Server
  private readonly listener: HttpListener
  private readonly routes: Route[] = []
  private readonly checks = new Map<string, ReadinessCheck>()
  private readonly gatewayInfo: Array<(id: string) => Record<string, unknown> | undefined> = []
  private token: Buffer | null
  private readonly registry: Registry
  private fallback: ((req: IncomingMessage, res: ServerResponse) => Promise<boolean>) | undefined
  private metricsSource: (() => Promise<string>) | undefined
  private readonly logger: Logger
  /**
   * True from `beginStart()` until `finishStart()`. The listener binds first (liveness and
   * metrics answer at once), while the roles register their routes afterwards: a call in
   * that window must hear "retry" (503 FERRY_STARTING), never a 404 that says the endpoint
   * does not exist, and /readyz must not call the process ready.
   */
  private starting = false

  constructor (private readonly opts: AdminServerOptions) {
    this.registry = opts.registry
    this.logger = opts.logger ?? silentLogger
    this.token = opts.token === null ? null : Buffer.from(opts.token)
    this.listener = new HttpListener(opts.tls ?? null, { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 }, (req, res) => {
      this.dispatch(req, res).catch(err => {
        this.logger.error({ err }, 'admin handler failed')
        sendError(res, 500, 'FERRY_INTERNAL', 'internal error')
      })
    }, 'admin', this.logger)
    this.server = this.listener.server
    this.server.on('clientError', (_err, socket) => { socket.destroy() })
  }

  get address (): AddressInfo { return this.server.address() as AddressInfo }

  /** New certificate paths from a config reload. */
  setTls (tls: TlsFiles | null): void {
    this.listener.update(tls)
  }

  setToken (token: string | null): void {
    this.token = token === null ? null : Buffer.from(token)
  }

  /**
   * Adds fields to each gateway in `GET /v1/gateways` (e.g. the planner's predicted health),
   * so one endpoint shows a gateway whichever roles know things about it.
   */
  addGatewayInfo (provider: (id: string) => Record<string, unknown> | undefined): void {
    this.gatewayInfo.push(provider)
  }

  /** The extra fields the providers give for gateway `id`. */
  gatewayExtras (id: string): Record<string, unknown> {
    let out: Record<string, unknown> = {}
    for (const p of this.gatewayInfo) out = { ...out, ...p(id) }
    return out
  }

  hasRoute (method: string, pattern: string): boolean {
    const parts = pattern.split('/').slice(1)
    return this.routes.some(r => r.method === method && r.parts.join('/') === parts.join('/'))
  }

  /**
   * Serves what no route matched; resolving false falls through to 404. A worker pool's primary
   * forwards such requests to a worker, which holds the data-plane routes.
   */
  setFallback (handler: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>): void {
    this.fallback = handler
  }

  /** Replaces what /metrics serves (a worker pool's primary merges its workers' registries with its own). */
  setMetricsSource (source: () => Promise<string>): void {
    this.metricsSource = source
  }

  /** Until finishStart(): /readyz answers 503 and a path no route serves yet answers 503 FERRY_STARTING. */
  beginStart (): void { this.starting = true }

  finishStart (): void { this.starting = false }

  addReadinessCheck (name: string, check: ReadinessCheck): void {
    this.checks.set(name, check)
  }

  /** Registers `GET /v1/things/:id`-style routes. `auth` routes need the bearer token. */
  route (method: string, pattern: string, handler: AdminHandler, opts: { auth?: boolean } = {}): void {
    this.routes.push({ method, parts: pattern.split('/').slice(1), handler, auth: opts.auth ?? method !== 'GET' })
  }

  async listen (): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      // Exclusive: in a data-plane worker (bin/workers.ts) the admin listener is that worker's own;
      // shared through the cluster, port 0 would give every worker the same port.
      this.server.listen({ port: this.opts.port, host: this.opts.host, exclusive: true }, () => { this.server.off('error', reject); resolve() })
    })
    this.logger.info({ address: this.address, tls: this.listener.secure }, 'admin listening')
    return this.address
  }

  async close (): Promise<void> {
    this.listener.close()
    await new Promise<void>(resolve => {
      this.server.close(() => { resolve() })
      this.server.closeAllConnections()
    })
  }

  /** Runs every readiness check; a check that throws counts as failing with its message. */
  async readiness (): Promise<{ ready: boolean, reasons: string[], degraded: string[] }> {
    const reasons: string[] = []
    const degraded: string[] = []
    if (this.starting) reasons.push('starting: the roles are still being set up')
    for (const [name, check] of this.checks) {
      try {
        const r = await check()
        if (typeof r === 'string') reasons.push(`${name}: ${r}`)
        else if (r !== undefined) degraded.push(`${name}: ${r.degraded}`)
      } catch (err) {
        reasons.push(`${name}: ${(err as Error).message}`)
      }
    }
    return { ready: reasons.length === 0, reasons, degraded }
  }

  private async dispatch (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin')
    const method = req.method ?? 'GET'
    if (url.pathname === '/healthz' && (method === 'GET' || method === 'HEAD')) {
      return sendJson(res, 200, { status: 'ok' })
    }
    if (url.pathname === '/readyz' && (method === 'GET' || method === 'HEAD')) {
      const r = await this.readiness()
      const status = !r.ready ? 'not ready' : r.degraded.length > 0 ? 'degraded' : 'ready'
      return sendJson(res, r.ready ? 200 : 503, { status, reasons: r.reasons, degraded: r.degraded })
    }
    if (url.pathname === '/metrics' && method === 'GET') {
      const text = await (this.metricsSource ?? (() => this.registry.metrics()))()
      res.writeHead(200, { 'content-type': this.registry.contentType })
      res.end(text)
      return
    }
    const parts = url.pathname.split('/').slice(1)
    let pathMatched = false
    for (const route of this.routes) {
      const params = match(route.parts, parts)
      if (params === undefined) continue
      pathMatched = true
      if (route.method !== method) continue
      if (route.auth && !this.authorized(req)) {
        return sendError(res, 401, 'FERRY_UNAUTHORIZED', this.token === null ? 'mutating admin calls are disabled: set admin.token' : 'missing or wrong bearer token',
          { 'www-authenticate': 'Bearer realm="ferry"' })
      }
      let body: unknown
      if (method !== 'GET' && method !== 'HEAD') {
        try {
          body = await readJson(req)
        } catch (err) {
          return sendError(res, (err as FerryError).statusCode ?? 400, (err as FerryError).code ?? 'FERRY_BAD_JSON', (err as Error).message, { connection: 'close' })
        }
      }
      try {
        const out = await route.handler({ req, res, params, query: url.searchParams, body })
        if (!res.headersSent) sendJson(res, method === 'POST' ? 202 : 200, out ?? {})
      } catch (err) {
        if (isFerryError(err)) return sendError(res, err.statusCode, err.code, err.message)
        throw err
      }
      return
    }
    if (pathMatched) return sendError(res, 405, 'FERRY_METHOD_NOT_ALLOWED', `method ${method} not allowed here`)
    if (this.fallback !== undefined && await this.fallback(req, res)) return
    if (this.starting) return sendError(res, 503, 'FERRY_STARTING', `${url.pathname} is not served yet: the process is starting; retry`, { 'retry-after': '1' })
    sendError(res, 404, 'FERRY_NOT_FOUND', `no admin endpoint ${url.pathname}`)
  }

  private authorized (req: IncomingMessage): boolean {
    if (this.token === null) return false
    const h = req.headers.authorization
    if (h === undefined || !h.startsWith('Bearer ')) return false
    const given = Buffer.from(h.slice(7))
    // Constant-time compare, so the token cannot be guessed byte by byte from response times.
    return given.length === this.token.length && timingSafeEqual(given, this.token)
  }
}

function match (pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string
    const v = parts[i] as string
    if (p.startsWith(':')) {
      try { params[p.slice(1)] = decodeURIComponent(v) } catch { return undefined }
    } else if (p !== v) return undefined
  }
  return params
}

async function readJson (req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_ADMIN_BODY) throw new FerryError('FERRY_BODY_TOO_LARGE', `admin request body exceeds ${MAX_ADMIN_BODY} bytes`, 413)
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return undefined
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch (err) {
    throw new FerryError('FERRY_BAD_JSON', `request body is not JSON: ${(err as Error).message}`, 400)
  }
}
