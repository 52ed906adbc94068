import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { pipeline } from 'node:stream'
import { Gauge, type Registry } from 'prom-client'
import type { FerryConfig } from '../config/schema.js'
import { SiteMap } from '../config/site-map.js'
import { blockKey } from '../lib/ids.js'
import { responseInFlight, sendError } from '../lib/http.js'
import type { Logger } from '../lib/log.js'
import { silentLogger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import { contentHashOf } from '../upstream/kinds.js'
import { holdsBytes } from '../upstream/verify.js'
import { AccessRecorder, type AccessRecorderOptions } from './access-recorder.js'
import { ClientAddressResolver } from './client-address.js'
import { BodyLimit, ForwardCall, type ForwardHost } from './forward.js'
import { GatewaySet, type Gateway } from './gateway-set.js'
import { upstreamHeaders } from './headers.js'
import { ProxyMetrics } from './metrics.js'
import { PathPattern } from './path-pattern.js'
import { RouteTable } from './route-table.js'
import { SessionManager } from './sessions.js'
import { StateSync } from './state-sync.js'
import type { BlockLocation, StateStore } from '../state/types.js'

export interface ProxyServerOptions {
  config: FerryConfig
  logger?: Logger
  registry?: Registry
  /**
   * The shared store: block locations (cached in memory, kept current by notifications),
   * merged access records and sessions. Without it every block is hash-placed and sessions
   * are off.
   */
  store?: StateStore
  /** Called once per forwarded request (the access profiler); must be cheap. */
  observer?: AccessObserver
  /**
   * True while block locations lost with the store are being rebuilt from the gateways: a block
   * without a location may then exist on a gateway nobody points to, so a read of it is answered
   * 503 FERRY_LOCATIONS_REBUILDING (retry), never a 404 that would hide acknowledged data.
   */
  locationsRecovering?: () => boolean
}

/** Sees every forwarded access with the site of the gateway that serves it. */
export type AccessObserver = (volume: string, block: string, client: string, site: string | undefined, write: boolean, at: number, servedBySite: string) => void

interface RequestContext {
  req: IncomingMessage
  res: ServerResponse
  volume: string
  block: string
  key: string
  write: boolean
  body: NodeJS.ReadableStream | null
  client: string
  site: string | undefined
  peer: string
  now: number
}

const ALLOW = 'GET, HEAD, PUT, DELETE'

/**
 * The HTTP data plane: parse → record access → route → forward. Everything the request path
 * reads is precomputed at (re)configuration time and swapped in whole, so a reload never leaves
 * a request looking at half an old and half a new config.
 */
export class ProxyServer implements ForwardHost {
  readonly gateways: GatewaySet
  readonly routes: RouteTable
  readonly recorder: AccessRecorder
  readonly registry: Registry
  readonly metrics: ProxyMetrics
  readonly server: http.Server
  readonly sync: StateSync | undefined
  readonly sessions: SessionManager | undefined
  via: string
  retries: number
  private config: FerryConfig
  private pattern: PathPattern
  private sites: SiteMap
  private clients: ClientAddressResolver
  private recording: boolean
  private readonly logger: Logger
  private readonly observer: AccessObserver | undefined
  private readonly locationsRecovering: () => boolean
  private closing = false
  private inflight = 0
  private readonly idle = new Set<() => void>()
  private listening = false

  constructor (opts: ProxyServerOptions) {
    this.config = opts.config
    this.logger = opts.logger ?? silentLogger
    this.observer = opts.observer
    this.locationsRecovering = opts.locationsRecovering ?? (() => false)
    this.registry = opts.registry ?? createRegistry(false)
    this.metrics = new ProxyMetrics(this.registry)
    const cfg = opts.config
    this.gateways = new GatewaySet(cfg.gateways, cfg.health, cfg.proxy, this.logger)
    this.recorder = new AccessRecorder(recorderOptions(cfg))
    if (opts.store !== undefined) {
      this.sync = new StateSync(opts.store, this.recorder, cfg.recorder, this.registry, this.logger)
      this.sessions = new SessionManager(opts.store, cfg.sessions, this.logger)
    }
    this.routes = new RouteTable(this.gateways, this.sync?.cache)
    this.pattern = new PathPattern(cfg.proxy.pathPattern)
    this.sites = new SiteMap(cfg.sites)
    this.clients = new ClientAddressResolver(cfg.proxy.trustedProxies)
    this.recording = cfg.recorder.enabled
    this.via = `1.1 ${cfg.proxy.via}`
    this.retries = cfg.proxy.retries
    for (const g of this.gateways.all()) this.metrics.healthy.set({ gateway: g.id }, 1)
    this.gateways.on('change', (id, healthy) => {
      this.metrics.healthy.set({ gateway: id }, healthy ? 1 : 0)
      // DNS and the planner, possibly in other processes, learn of health through the store.
      opts.store?.publish('gateway-health', { gateway: id, healthy, at: Date.now(), from: `${process.pid}` }).catch(() => {})
    })
    this.registerRecorderMetrics()

    this.server = http.createServer({
      keepAliveTimeout: cfg.proxy.idleTimeoutMs,
      headersTimeout: cfg.proxy.headersTimeoutMs,
      requestTimeout: cfg.proxy.requestTimeoutMs,
      // Long enough for any URL this proxy routes, short enough that junk is refused early.
      maxHeaderSize: 16 * 1024
    }, this.handle)
    this.server.timeout = cfg.proxy.bodyIdleTimeoutMs
    this.server.on('timeout', (socket: Socket) => { this.onSocketTimeout(socket) })
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => { this.onClientError(err, socket) })
    // Without these listeners Node drops such sockets silently; a client deserves an answer.
    this.server.on('connect', (_req: IncomingMessage, socket: Socket) => { this.answerRaw(socket, 405, 'FERRY_METHOD_NOT_ALLOWED', `CONNECT is not supported; use ${ALLOW}`) })
    this.server.on('upgrade', (_req: IncomingMessage, socket: Socket) => { this.answerRaw(socket, 400, 'FERRY_UPGRADE_NOT_SUPPORTED', 'protocol upgrades are not supported') })
  }

  get address (): AddressInfo {
    return this.server.address() as AddressInfo
  }

  get isListening (): boolean { return this.listening }

  async listen (): Promise<AddressInfo> {
    const { host, port } = this.config.proxy.listen
    this.gateways.startProbes()
    // Locations first: a request taken before they are loaded is routed by hash, and a block the
    // planner moved would read 404 there (or an old copy still on its source). Without the store
    // the load gives up after a moment and the proxy serves by hash, as it must.
    await this.sync?.start()
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => { this.server.off('error', reject); resolve() })
    })
    this.listening = true
    this.logger.info({ address: this.address }, 'proxy listening')
    return this.address
  }

  /** Applies a reloaded config. Listen addresses are fixed for the process's life. */
  reconfigure (cfg: FerryConfig): void {
    if (cfg.proxy.listen.host !== this.config.proxy.listen.host || cfg.proxy.listen.port !== this.config.proxy.listen.port) {
      this.logger.warn('proxy.listen changed: takes effect on restart')
    }
    this.gateways.reconfigure(cfg.gateways, cfg.health, cfg.proxy)
    this.recorder.reconfigure(recorderOptions(cfg))
    this.sync?.reconfigure(cfg.recorder)
    this.sessions?.reconfigure(cfg.sessions)
    this.pattern = new PathPattern(cfg.proxy.pathPattern)
    this.sites = new SiteMap(cfg.sites)
    this.clients = new ClientAddressResolver(cfg.proxy.trustedProxies)
    this.recording = cfg.recorder.enabled
    this.via = `1.1 ${cfg.proxy.via}`
    this.retries = cfg.proxy.retries
    this.server.keepAliveTimeout = cfg.proxy.idleTimeoutMs
    this.server.headersTimeout = cfg.proxy.headersTimeoutMs
    this.server.requestTimeout = cfg.proxy.requestTimeoutMs
    this.server.timeout = cfg.proxy.bodyIdleTimeoutMs
    this.config = cfg
  }

  /**
   * Graceful shutdown: stop accepting, let requests in flight finish (up to shutdownGraceMs),
   * close idle keep-alive connections, then cut whatever is left.
   */
  async close (): Promise<void> {
    if (this.closing) return
    this.closing = true
    const closed = new Promise<void>(resolve => this.server.close(() => { resolve() }))
    this.server.closeIdleConnections()
    if (this.inflight > 0) {
      await new Promise<void>(resolve => {
        const timer = setTimeout(done, this.config.proxy.shutdownGraceMs)
        const idle = (): void => { done() }
        this.idle.add(idle)
        function done (): void { clearTimeout(timer); resolve() }
      })
    }
    this.server.closeAllConnections()
    await closed
    this.listening = false
    await this.gateways.destroy()
    await this.sync?.stop()
    await this.recorder.close()
  }

  private readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const method = req.method as string
    if (method !== 'GET' && method !== 'PUT' && method !== 'HEAD' && method !== 'DELETE') {
      return this.refuse(req, res, 405, 'FERRY_METHOD_NOT_ALLOWED', `method ${method} is not supported; use ${ALLOW}`, { allow: ALLOW })
    }
    const addr = this.pattern.match(req.url as string)
    if (addr === undefined) {
      return this.refuse(req, res, 400, 'FERRY_BAD_PATH', `path must match ${this.pattern.pattern} with ids of letters, digits, ".", "_", "-" (not starting with ".")`)
    }
    const write = method === 'PUT' || method === 'DELETE'
    let body: NodeJS.ReadableStream | null = null
    if (method === 'PUT') {
      const cl = req.headers['content-length']
      if (cl !== undefined) {
        if (Number(cl) > this.config.proxy.maxBodyBytes) {
          return this.refuse(req, res, 413, 'FERRY_BODY_TOO_LARGE', `request body of ${cl} bytes exceeds ${this.config.proxy.maxBodyBytes}`)
        }
        body = req
      } else {
        const limit = new BodyLimit(this.config.proxy.maxBodyBytes)
        body = pipeline(req, limit, () => {})
      }
    } else if (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') {
      return this.refuse(req, res, 400, 'FERRY_UNEXPECTED_BODY', `${method} must not carry a body`)
    } else if (req.headers['transfer-encoding'] !== undefined) {
      return this.refuse(req, res, 400, 'FERRY_UNEXPECTED_BODY', `${method} must not carry a body`)
    }

    const key = blockKey(addr.volume, addr.block)
    const now = Date.now()
    const peer = req.socket.remoteAddress ?? ''
    const client = this.clients.resolve(peer, req.headers['x-forwarded-for'])
    const site = this.sites.siteOf(client)
    if (this.recording) this.recorder.recordAt(key, addr.volume, addr.block, site, write, now)
    const ctx: RequestContext = { req, res, volume: addr.volume, block: addr.block, key, write, body, client, site, peer, now }

    const route = this.routes.route(addr.volume, addr.block, key, now)
    // A PUT still goes through: it replaces the whole block, and the rebuild never overwrites a
    // location recorded after the loss, so the new write stays the version every proxy serves.
    if (!route.placed && method !== 'PUT' && this.locationsRecovering()) {
      return this.refuse(req, res, 503, 'FERRY_LOCATIONS_REBUILDING', `the shared store lost its block locations and they are being rebuilt from the gateways; retry ${key} shortly`, { 'retry-after': 1 })
    }
    // The common case stays synchronous: no session, and either a read or a block that
    // already has a location. Sessions and first writes need the store, so they go async.
    const held = write && route.location?.phase === 'cutover'
    if (this.sessions?.enabled !== true && !held && (route.placed || method !== 'PUT' || this.sync === undefined)) {
      this.forward(ctx, route.gateway, route.location)
      return
    }
    this.routeSlow(ctx, route.gateway, route.location).catch(err => {
      this.logger.error({ err }, 'routing failed')
      this.refuse(req, res, 500, 'FERRY_INTERNAL', 'internal error')
    })
  }

  /** Routing that may wait for the store: session bindings and a new block's first location. */
  private async routeSlow (ctx: RequestContext, hashed: Gateway | undefined, location: BlockLocation | undefined): Promise<void> {
    if (ctx.write && location?.phase === 'cutover' && this.sync !== undefined) {
      // Cut-over: the planner is checking that the copy is complete. A write now could land
      // on the source after that check, so it waits for the flip (or the rollback).
      const after = await this.sync.settled(ctx.volume, ctx.block, ctx.key, this.config.proxy.writeHoldMs)
      if (after?.phase === 'cutover') {
        this.metrics.errors.inc({ code: 'FERRY_WRITE_HELD' })
        return this.refuse(ctx.req, ctx.res, 503, 'FERRY_WRITE_HELD', `block ${ctx.key} is being moved; retry shortly`, { 'retry-after': 1 })
      }
      location = after ?? undefined
      if (location === undefined) hashed = this.routes.hashed(ctx.key)
    }
    let gateway = location !== undefined ? this.gateways.get(location.gateway) : hashed
    const sessions = this.sessions
    if (sessions?.enabled === true) {
      let id = sessions.idFrom(ctx.req)
      if (id === undefined) {
        const created = sessions.create()
        id = created.id
        if (created.setCookie !== undefined) ctx.res.setHeader('set-cookie', created.setCookie)
      }
      let session = sessions.cached(id, ctx.now) ?? await sessions.load(id, ctx.now)
      let bound = session.bindings[ctx.volume]
      if (bound !== undefined && session.local !== true && !this.gateways.isHealthy(bound, ctx.now) && session.fetchedAt < ctx.now) {
        // Before replacing a binding, make sure it is not just our cached copy that is stale:
        // another proxy may already have rebound the session, and it should stay where it went.
        session = await sessions.load(id, ctx.now)
        bound = session.bindings[ctx.volume]
      }
      const boundHealthy = bound !== undefined && this.gateways.isHealthy(bound, ctx.now)
      if (location === undefined && boundHealthy && ctx.write) {
        // New data of this volume follows the session's gateway while that gateway is healthy.
        // (A read of a block with no location goes where such blocks are: its hashed gateway.)
        gateway = this.gateways.get(bound as string) ?? gateway
      }
      // Rebind when the session has no healthy binding for the volume, or when it writes to a
      // block that lives elsewhere (the session follows the data it writes). Reads of blocks on
      // other gateways leave the binding alone: rebinding on every read would thrash it.
      const rebind = gateway !== undefined && bound !== gateway.id && (!boundHealthy || (ctx.write && location !== undefined))
      if (rebind) sessions.bind(id, session, ctx.volume, (gateway as Gateway).id, ctx.now)
      else sessions.touch(id, session, ctx.now)
    }
    let claimedEpoch: number | undefined
    if (location === undefined && ctx.req.method === 'PUT' && this.sync !== undefined && gateway !== undefined) {
      const claimed = await this.sync.claim(ctx.volume, ctx.block, gateway.id)
      if (claimed !== null) {
        if (claimed.ours) claimedEpoch = claimed.location.epoch
        location = claimed.location
        gateway = this.gateways.get(claimed.location.gateway)
      } else {
        // The location could not be recorded (store away): put the block where every proxy
        // will look for a block without a location — its hashed gateway — not where this
        // session happens to be bound, or other clients would get 404 once the store is back.
        gateway = hashed ?? gateway
      }
    }
    if (ctx.res.destroyed) { // the client left while we waited
      if (claimedEpoch !== undefined) this.sync?.release(ctx.volume, ctx.block, claimedEpoch)
      return
    }
    this.forward(ctx, gateway, location, claimedEpoch)
  }

  private forward (ctx: RequestContext, gateway: Gateway | undefined, location: BlockLocation | undefined, claimedEpoch?: number): void {
    const { req, res } = ctx
    if (gateway === undefined) {
      return this.refuse(req, res, 503, 'FERRY_NO_GATEWAY', location !== undefined
        ? `block ${ctx.key} is placed on gateway ${location.gateway}, which is not configured`
        : 'no gateway is configured', { 'retry-after': 1 })
    }
    this.inflight++
    if (this.observer !== undefined && this.recording) this.observer(ctx.volume, ctx.block, ctx.client, ctx.site, ctx.write, ctx.now, gateway.site)
    const call = new ForwardCall(this, req, res, ctx.key, ctx.volume, ctx.block, PathPattern.gatewayPath(ctx.volume, ctx.block), location, gateway,
      upstreamHeaders(req.rawHeaders, ctx.peer, this.via, req.headers.host), ctx.body)
    if (this.recorder.logging) {
      res.once('close', () => {
        this.recorder.logAccess({ volume: ctx.volume, block: ctx.block, client: ctx.client, site: ctx.site, write: ctx.write, at: ctx.now }, call.status, call.gateway.id, performance.now() - call.startedAt)
      })
    }
    call.claimedEpoch = claimedEpoch
    call.start()
  }

  mustConfirm (call: ForwardCall): boolean {
    if (this.sync === undefined) return false
    const now = this.sync.cache.get(call.volume, call.block)
    // Any change of epoch while the write was in flight — including a block that had no
    // location and got one (the planner places hashed blocks before moving them).
    return (now?.epoch ?? 0) !== (call.location?.epoch ?? 0)
  }

  async confirmWrite (call: ForwardCall): Promise<boolean> {
    const sync = this.sync
    if (sync === undefined) return true
    const { volume, block } = call
    const loc = await sync.settled(volume, block, call.key, this.config.proxy.writeHoldMs * 2)
    if (loc === null || loc === undefined || loc.phase === 'cutover') return false
    if (loc.gateway === call.gateway.id) return true
    // The block moved: the write counts only if the new location holds exactly what we wrote.
    const target = this.gateways.get(loc.gateway)
    if (target === undefined) return false
    const path = PathPattern.gatewayPath(volume, block)
    const res = await target.pool.request({ method: 'HEAD', path, headersTimeout: 2000 })
    await res.body.dump()
    this.metrics.confirmations.inc({ result: String(res.statusCode) })
    if (call.req.method === 'DELETE') return res.statusCode === 404
    // Only bytes prove it, never ETags compared across gateways: nginx's mtime-size ETags of two
    // different contents can be equal. The write's own gateway must have proved what it stored
    // (a content-hash ETag; nginx answers a PUT with none, so such a write stays unconfirmed),
    // and the new location must hold those bytes, by its ETag or by reading them.
    const written = contentHashOf(call.gateway.kind, call.etag)
    if (res.statusCode !== 200 || written === null) return false
    return await holdsBytes({ kind: target.kind, dispatcher: target.pool }, path, res.headers.etag as string | undefined, written,
      AbortSignal.timeout(this.config.proxy.writeHoldMs * 2))
  }

  nextGateway (call: ForwardCall): Gateway | undefined {
    return this.routes.next(call.key, call.tried ?? new Set([call.gateway.id]))
  }

  onGatewaySuccess (g: Gateway): void { this.gateways.reportSuccess(g) }
  onGatewayFailure (g: Gateway, reason: string): void { this.gateways.reportFailure(g, reason) }
  onRetry (): void { this.metrics.retries.inc() }

  onDone (call: ForwardCall, status: number): void {
    const ms = performance.now() - call.startedAt
    this.metrics.observe(call.gateway.id, call.req.method as string, status, ms / 1000)
    const g = call.gateway
    g.requests++
    g.latencyMsTotal += ms
    if (status >= 500 || status === 0) g.errors++
    // The version of an acknowledged write goes to the store with the next flush, so the
    // planner can tell whether a block changed while it was being copied.
    const ok = status >= 200 && status < 300
    if (call.location !== undefined && this.sync !== undefined && call.req.method === 'PUT') {
      const { volume, block } = call
      if (ok && call.etag !== undefined) this.sync.noteVersion(call.key, volume, block, call.location.epoch, call.etag)
      else if (!ok && call.claimedEpoch !== undefined) this.sync.release(volume, block, call.claimedEpoch)
    }
    if (this.closing) call.res.shouldKeepAlive = false
    if (--this.inflight === 0 && this.idle.size > 0) for (const f of this.idle) f()
  }

  /**
   * Answers an error without forwarding. When the request may still have body bytes coming,
   * the connection is closed after the answer: reading (say) a 1 GiB upload just to discard it
   * would waste the bandwidth the 413 was meant to save.
   */
  private refuse (req: IncomingMessage, res: ServerResponse, status: number, code: string, message: string, headers?: Record<string, string | number>): void {
    this.metrics.errors.inc({ code })
    const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined
    sendError(res, status, code, message, hasBody || this.closing ? { ...headers, connection: 'close' } : headers)
  }

  /** No bytes in either direction for bodyIdleTimeoutMs: a stalled client (or gateway). */
  private onSocketTimeout (socket: Socket): void {
    const res = responseInFlight(socket)
    if (res !== null && !res.headersSent) {
      this.metrics.errors.inc({ code: 'FERRY_REQUEST_TIMEOUT' })
      sendError(res, 408, 'FERRY_REQUEST_TIMEOUT', 'no data received in time', { connection: 'close' })
      // The upload will never finish; the forward is aborted when the socket closes.
      socket.destroySoon()
      return
    }
    socket.destroy()
  }

  /** Unparseable requests: a plain 400 (or 431 for huge headers) and close, never a crash. */
  private onClientError (err: NodeJS.ErrnoException, socket: Socket): void {
    if (!socket.writable || responseInFlight(socket) !== null) { socket.destroy(); return }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW'
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : tooLarge ? 431 : 400
    const code = status === 408 ? 'FERRY_REQUEST_TIMEOUT' : tooLarge ? 'FERRY_HEADERS_TOO_LARGE' : 'FERRY_BAD_REQUEST'
    this.answerRaw(socket, status, code, status === 400 ? 'malformed HTTP request' : tooLarge ? 'request headers too large' : 'request not received in time')
  }

  /** A JSON error written straight to a socket that has no ServerResponse, then closed. */
  private answerRaw (socket: Socket, status: number, code: string, message: string): void {
    this.metrics.errors.inc({ code })
    const body = JSON.stringify({ error: { code, message } })
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  }

  private registerRecorderMetrics (): void {
    const recorder = this.recorder
    const registers = [this.registry]
    new Gauge({ name: 'ferry_recorder_blocks', help: 'Blocks tracked by the access recorder', registers, collect () { this.set(recorder.size) } })
    new Gauge({ name: 'ferry_recorder_evicted_blocks', help: 'Cold blocks evicted by the access recorder since start', registers, collect () { this.set(recorder.evicted) } })
    new Gauge({ name: 'ferry_recorder_bursts', help: 'Times a block entered a burst since start', registers, collect () { this.set(recorder.bursts) } })
    new Gauge({ name: 'ferry_recorder_log_dropped', help: 'Access-log lines dropped because the log could not keep up', registers, collect () { this.set(recorder.logDropped) } })
  }
}

function recorderOptions (cfg: FerryConfig): AccessRecorderOptions {
  return { ...cfg.recorder, sites: cfg.sites.map(s => s.name) }
}
