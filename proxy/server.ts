import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { pipeline, Transform, type TransformCallback } from 'node:stream'
import { Gauge, type Registry } from 'prom-client'
import { SiteMap } from '../fleet/site-map.js'
import { latencyMatrix } from '../fleet/latency.js'
import type { FerryErrorCode } from '../lib/error-codes.js'
import { FerryError } from '../lib/errors.js'
import { blockKey } from '../lib/ids.js'
import { responseInFlight, sendError } from '../lib/http.js'
import type { Logger } from '../lib/log.js'
import { silentLogger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import { HttpListener } from '../lib/tls.js'
import { LoopStalls } from '../lib/loop-stalls.js'
import { noteBodyBytes } from '../lib/body-gc.js'
import { AccessRecorder, type AccessRecorderOptions } from './access-recorder.js'
import { ClientAddressResolver } from './client-address.js'
import type { ProxyConfigPieces } from './config.js'
import { ClientResponse, Forwarder, type AccessObserver } from './forward.js'
import { GatewaySet, type Gateway } from './gateway-set.js'
import { ProxyMetrics } from './metrics.js'
import { PathPattern } from './path-pattern.js'
import { ProxyAnswer, type BlockOperation, type ProxyRequest, type Stage } from './request.js'
import { readOrder, Replication } from './replicas.js'
import { RetryStage } from './retry.js'
import { RouteTable } from './route-table.js'
import { SessionManager, SessionSteering } from './sessions.js'
import { StateSync } from './state-sync.js'
import { S3Adapter } from './s3/adapter.js'
import { createObjectIndex } from '../state/objects.js'
import { WriteGuard } from './write-guard.js'
import { PlacementClient } from '../placement/client.js'
import { DrainedGateways } from './drained.js'
import { requestMetadata, type RequestMetadata } from '../placement/metadata.js'
import { PROCESS_REPORTER, gatewayHealthChannel } from '../state/channels.js'
import type { LocationsStanding, StateStore } from '../state/types.js'

export type { AccessObserver } from './forward.js'

export interface ProxyServerOptions {
  config: ProxyConfigPieces
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
   * What the process knows of its caches against the store's generation (recovery/). While
   * locations lost with the store are rebuilt, a block without a location may exist on a gateway
   * nobody points to: a read of it is answered 503 FERRY_LOCATIONS_REBUILDING (retry), never a
   * 404 that would hide acknowledged data. Once the store has been out of reach for
   * `state.cutOffServeMs`, block requests are answered 503 FERRY_LOCATIONS_UNCONFIRMED.
   * Without it (no store shared with other processes) both never happen.
   */
  locations?: LocationsStanding
}

/** For a process whose store nobody else can lose or rebuild. */
const ALWAYS_STANDING: LocationsStanding = { recoveringFromLoss: false, cacheTrusted: () => true, generationUnconfirmed: false, check: async () => {} }

const ALLOW = 'GET, HEAD, PUT, DELETE'

/**
 * The client sockets' write buffer before backpressure. A gateway's answer arrives in chunks of up
 * to 64 KiB; with Node's default of 16 KiB every chunk of a large block made `res.write` return
 * false, so the gateway's socket was paused and resumed once per chunk. 256 KiB takes a few
 * chunks before pausing (at most that much per connection stays buffered for a slow client).
 */
export const SOCKET_HIGH_WATER_MARK = 256 * 1024

/**
 * The HTTP data plane: parse → record access → route → forward. Everything the request path
 * reads is precomputed at (re)configuration time and swapped in whole, so a reload never leaves
 * a request looking at half an old and half a new config.
 *
 * The server checks a request, records the access, looks up the block's location and hands one
 * ProxyRequest to a chain of stages, each handing it on: sessions (SessionSteering) → write
 * guard → retry → forwarder, which dispatches it to the gateway's pool. The response comes back
 * through the handlers the stages wrapped around the ClientResponse, in reverse order. Without
 * a store there are no sessions and no guard: retry → forwarder.
 */
export class ProxyServer {
  readonly gateways: GatewaySet
  readonly routes: RouteTable
  readonly recorder: AccessRecorder
  readonly registry: Registry
  readonly metrics: ProxyMetrics
  readonly server: http.Server
  /** Plain HTTP, or HTTPS with proxy.tls (certificate reloaded live). */
  private readonly listener: HttpListener
  readonly sync: StateSync | undefined
  readonly sessions: SessionManager | undefined
  /** First-touch placement (placement/): only with a store, where a first write's location is recorded. */
  readonly placement: PlacementClient | undefined
  /** Which gateways the planner drains: reads go to other members meanwhile. */
  private readonly drained: DrainedGateways | undefined
  /** The S3 front end (proxy/s3/): S3 requests are parsed and authenticated there, then handed back as block operations. */
  readonly s3: S3Adapter
  private readonly forwarder: Forwarder
  private readonly retry: RetryStage
  private readonly guard: WriteGuard | undefined
  /** Replica sets: the set a first write claims, writes sent to every member (with a store only). */
  readonly replication: Replication | undefined
  private readonly stalls: LoopStalls
  /** Where every request enters the chain. */
  private readonly first: Stage
  private config: ProxyConfigPieces
  private pattern: PathPattern
  private sites: SiteMap
  private clients: ClientAddressResolver
  private recording: boolean
  private readonly logger: Logger
  private readonly locations: LocationsStanding
  private listening = false

  constructor (opts: ProxyServerOptions) {
    this.config = opts.config
    this.logger = opts.logger ?? silentLogger
    this.locations = opts.locations ?? ALWAYS_STANDING
    this.registry = opts.registry ?? createRegistry(false)
    this.metrics = new ProxyMetrics(this.registry)
    const cfg = opts.config
    this.gateways = new GatewaySet(cfg.gateways, cfg.health, cfg.proxy, this.logger)
    this.gateways.latency = latencyMatrix(cfg.planner.latency.between, cfg.planner.latency)
    this.recorder = new AccessRecorder(recorderOptions(cfg))
    if (opts.store !== undefined) {
      this.sync = new StateSync(opts.store, this.recorder, cfg.recorder, this.registry, this.logger)
      this.sessions = new SessionManager(opts.store, cfg.sessions, this.logger)
      this.placement = new PlacementClient({
        store: opts.store, gateways: cfg.gateways, eligible: (id, now) => this.gateways.isHealthy(id, now),
        reportIntervalMs: cfg.placement.reportIntervalMs, registry: this.registry, logger: this.logger
      })
      this.drained = new DrainedGateways(opts.store, this.gateways, this.logger)
    }
    this.routes = new RouteTable(this.gateways, this.sync?.cache)
    this.stalls = new LoopStalls(cfg.planner.migration.settleMs / 2)
    if (this.sync !== undefined) this.stalls.start()
    this.pattern = new PathPattern(cfg.proxy.pathPattern)
    this.sites = new SiteMap(cfg.sites)
    this.clients = new ClientAddressResolver(cfg.proxy.trustedProxies)
    this.recording = cfg.recorder.enabled
    this.forwarder = new Forwarder(this.gateways, this.metrics, this.recorder, opts.observer, `1.1 ${cfg.proxy.via}`, cfg.recorder.enabled)
    this.retry = new RetryStage(this.routes, this.metrics, this.forwarder, cfg.proxy.retries)
    if (this.sync !== undefined && this.sessions !== undefined) {
      this.replication = new Replication(this.sync, this.gateways, cfg.replication, cfg.planner.migration.settleMs, this.stalls, this.registry, this.logger)
      this.guard = new WriteGuard({
        sync: this.sync, gateways: this.gateways, registry: this.registry,
        logger: this.logger, forwarder: this.forwarder, next: this.retry, replication: this.replication,
        locations: this.locations
      })
      this.first = new SessionSteering(this.sessions, this.gateways, this.guard, this.logger)
    } else {
      this.first = this.retry
    }
    this.s3 = new S3Adapter(cfg.s3, cfg.dns.zone, this, createObjectIndex(cfg.state), this.logger, this.registry)
    for (const g of this.gateways.all()) this.metrics.healthy.set({ gateway: g.id }, 1)
    this.gateways.on('change', (id, healthy) => {
      this.metrics.healthy.set({ gateway: id }, healthy ? 1 : 0)
      // DNS and the planner, possibly in other processes, learn of health through the store.
      if (opts.store !== undefined) gatewayHealthChannel.publish(opts.store, { gateway: id, healthy, at: Date.now(), from: PROCESS_REPORTER }).catch(() => {})
    })
    this.registerRecorderMetrics()

    this.listener = new HttpListener(cfg.proxy.tls, {
      keepAliveTimeout: cfg.proxy.idleTimeoutMs,
      headersTimeout: cfg.proxy.headersTimeoutMs,
      requestTimeout: cfg.proxy.requestTimeoutMs,
      // Long enough for any URL this proxy routes, short enough that junk is refused early.
      maxHeaderSize: 16 * 1024,
      highWaterMark: SOCKET_HIGH_WATER_MARK
    }, (req, res) => { this.handle(req, res) }, 'proxy', this.logger)
    this.server = this.listener.server
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
    this.s3.start()
    // Locations first: a request taken before they are loaded is routed by hash, and a block the
    // planner moved would read 404 there (or an old copy still on its source). Without the store
    // the load gives up after a moment and the proxy listens: writes go through, and reads of
    // blocks it has no location for answer 503 FERRY_LOCATIONS_NOT_LOADED until the first load.
    await this.sync?.start()
    await this.placement?.start()
    await this.drained?.start()
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => { this.server.off('error', reject); resolve() })
    })
    this.listening = true
    this.logger.info({ address: this.address, tls: this.listener.secure }, 'proxy listening')
    return this.address
  }

  /** Applies a reloaded config. Listen addresses are fixed for the process's life. */
  reconfigure (cfg: ProxyConfigPieces): void {
    if (cfg.proxy.listen.host !== this.config.proxy.listen.host || cfg.proxy.listen.port !== this.config.proxy.listen.port) {
      this.logger.warn('proxy.listen changed: takes effect on restart')
    }
    this.listener.update(cfg.proxy.tls)
    this.gateways.reconfigure(cfg.gateways, cfg.health, cfg.proxy)
    this.gateways.latency = latencyMatrix(cfg.planner.latency.between, cfg.planner.latency)
    this.recorder.reconfigure(recorderOptions(cfg))
    this.sync?.reconfigure(cfg.recorder)
    this.sessions?.reconfigure(cfg.sessions)
    this.placement?.reconfigure(cfg.gateways, cfg.placement.reportIntervalMs)
    this.pattern = new PathPattern(cfg.proxy.pathPattern)
    this.sites = new SiteMap(cfg.sites)
    this.clients = new ClientAddressResolver(cfg.proxy.trustedProxies)
    this.recording = cfg.recorder.enabled
    this.forwarder.reconfigure(`1.1 ${cfg.proxy.via}`, cfg.recorder.enabled)
    this.retry.reconfigure(cfg.proxy.retries)
    this.replication?.reconfigure(cfg.replication, cfg.planner.migration.settleMs)
    this.stalls.threshold = cfg.planner.migration.settleMs / 2
    this.s3.reconfigure(cfg.s3, cfg.dns.zone)
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
    this.listener.close()
    if (this.forwarder.closing) return
    this.forwarder.closing = true
    const closed = new Promise<void>(resolve => this.server.close(() => { resolve() }))
    this.server.closeIdleConnections()
    await this.forwarder.drained(this.config.proxy.shutdownGraceMs)
    this.server.closeAllConnections()
    await closed
    this.listening = false
    await this.gateways.destroy()
    await this.placement?.stop()
    this.drained?.stop()
    await this.sync?.stop()
    this.stalls.stop()
    await this.recorder.close()
    await this.s3.close()
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    if (this.s3.takes(req)) { this.s3.handle(req, res); return }
    const method = req.method as string
    if (method !== 'GET' && method !== 'PUT' && method !== 'HEAD' && method !== 'DELETE') {
      return this.forwarder.refuse(req, res, 405, 'FERRY_METHOD_NOT_ALLOWED', `method ${method} is not supported; use ${ALLOW}`, { allow: ALLOW })
    }
    const addr = this.pattern.match(req.url as string)
    if (addr === undefined) {
      return this.forwarder.refuse(req, res, 400, 'FERRY_BAD_PATH', `path must match ${this.pattern.pattern} with ids of letters, digits, ".", "_", "-" (not starting with ".")`)
    }
    if (!this.s3.anonymousMay(addr.volume)) {
      return this.forwarder.refuse(req, res, 403, 'FERRY_ACCESS_DENIED', `volume ${addr.volume} is not open to anonymous clients (s3.anonymous); sign the request with an access key`)
    }
    let body: NodeJS.ReadableStream | null = null
    if (method === 'PUT') {
      const cl = req.headers['content-length']
      if (cl !== undefined) {
        if (Number(cl) > this.config.proxy.maxBodyBytes) {
          return this.forwarder.refuse(req, res, 413, 'FERRY_BODY_TOO_LARGE', `request body of ${cl} bytes exceeds ${this.config.proxy.maxBodyBytes}`, { connection: 'close' })
        }
        body = req
      } else {
        body = pipeline(req, new BodyLimit(this.config.proxy.maxBodyBytes), () => {})
      }
    } else if (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') {
      return this.forwarder.refuse(req, res, 400, 'FERRY_UNEXPECTED_BODY', `${method} must not carry a body`)
    } else if (req.headers['transfer-encoding'] !== undefined) {
      return this.forwarder.refuse(req, res, 400, 'FERRY_UNEXPECTED_BODY', `${method} must not carry a body`)
    }

    this.dispatchBlock({ req, res, method, volume: addr.volume, block: addr.block, body })
  }

  /**
   * The core's entry: one block operation, whichever protocol it came in by (the plain block
   * API above, or the S3 adapter after it parsed and authenticated its request). Records the
   * access, looks up the block's location and hands the request down the chain of stages.
   */
  dispatchBlock (op: BlockOperation): void {
    if (!this.locations.cacheTrusted()) {
      // Cut off from the store for longer than state.cutOffServeMs: it may have come back empty
      // to the others and had its locations rebuilt, so what this cache says may be older than
      // what they serve (GenerationWatch.cacheTrusted).
      return this.forwarder.refuse(op.req, op.res, 503, 'FERRY_LOCATIONS_UNCONFIRMED', `this proxy has been out of touch with the shared store for longer than state.cutOffServeMs and no longer serves from its location cache; retry ${blockKey(op.volume, op.block)} shortly`, { 'retry-after': 1 })
    }
    if (this.sync !== undefined && this.cacheMayMislead(op)) {
      this.dispatchFromStore(op, this.sync)
      return
    }
    this.dispatchRouted(op)
  }

  /**
   * Whether the location cache may not have heard of a change to the block's set that matters
   * to this request (README "Replica sets", keeping proxies off a member that just left):
   *
   * - it may have missed a notification: the store's connection or its subscription dropped and
   *   the reload that follows is not done (the planner may have moved the block meanwhile, and
   *   other proxies' writes then skip the member this one would read — the stale reads of the
   *   moves history around a Redis kill);
   * - for a read, this process's event loop stalled past the bound within which proxies are
   *   trusted to hear (Replication.lagBoundMs; notifications waited meanwhile): a member another
   *   proxy just took out of the in-sync set lacks the write that did it, and that write was
   *   acknowledged only that long after. Writes are checked when they are settled instead.
   */
  private cacheMayMislead (op: BlockOperation): boolean {
    const sync = this.sync as StateSync
    if (!sync.cache.fresh) return true
    if (this.replication === undefined || (op.method !== 'GET' && op.method !== 'HEAD')) return false
    const now = performance.now()
    return this.stalls.stalledSince(now - this.replication.lagBoundMs, now)
  }

  /** dispatchRouted after the block's location was read from the store into the cache. */
  private dispatchFromStore (op: BlockOperation, sync: StateSync): void {
    this.metrics.storeLookups.inc()
    sync.store.getLocation(op.volume, op.block).then(location => {
      if (location !== null) {
        sync.cache.apply(op.volume, op.block, location.epoch, location, 'resync')
        return false
      }
      // None: moves never delete a location, so this is a store that came back empty (its
      // rebuild, recovery/, may not have begun), a deleted block or a first write's claim given
      // up. A PUT then claims the block as every proxy does for a block without a location (sent
      // where this proxy's cache last had it, it would be acknowledged on a gateway the store
      // will not name: 404s for an acknowledged write in the soak's store loss). A read keeps
      // what the cache knew; the reload and the store-loss guards take it from there.
      return op.method === 'PUT'
    }, () => {
      // The store does not answer: nobody can change a location without it (and after an outage
      // the planner waits for proxies to reconnect), so the cache holds the last word.
      return false
    }).then(unplaced => { this.dispatchRouted(op, unplaced) }).catch(err => {
      this.logger.error({ err }, 'dispatch after a store lookup failed')
      if (!op.res.headersSent) sendError(op.res, 500, 'FERRY_INTERNAL', 'internal error')
    })
  }

  /** `unplaced`: the store says the block has no location, whatever the cache says. */
  private dispatchRouted (op: BlockOperation, unplaced = false): void {
    const { req, res, method, volume, block } = op
    const write = method === 'PUT' || method === 'DELETE'
    const key = blockKey(volume, block)
    const now = Date.now()
    const peer = req.socket.remoteAddress ?? ''
    const client = this.clients.resolve(peer, req.headers['x-forwarded-for'])
    const site = this.sites.siteOf(client)
    if (this.recording) this.recorder.recordAt(key, volume, block, site, write, now)
    const route = unplaced ? this.routes.unplaced(key, now) : this.routes.route(volume, block, key, now, site)
    if (!route.placed) {
      // A PUT too: placed anew now, the block would be acknowledged on gateways that a proxy
      // which has not reconnected to the store yet does not look at — it still routes by the
      // cache it had before the loss, to where the block was (a tombstone's 404 or the older
      // bytes there: the lost and stale reads of the 30-minute soak). The rebuild locates the
      // block where it is, then the write goes there, where every proxy's cache agrees.
      if (this.locations.recoveringFromLoss) {
        return this.forwarder.refuse(req, res, 503, 'FERRY_LOCATIONS_REBUILDING', `the shared store lost its block locations and they are being rebuilt from the gateways (or this proxy, just reconnected, is checking whether it did); retry ${key} shortly`, { 'retry-after': 1 })
      }
      // A proxy that started while the store did not answer has never loaded the locations: a
      // block the planner moved would be read by hash from a gateway without it, a 404 for an
      // acknowledged write (seen in the 30-minute soak: a proxy restarted at load 30 while Redis
      // timed out). Until the first load, only what it knows is served.
      if (method !== 'PUT' && this.sync !== undefined && !this.sync.cache.loaded) {
        return this.forwarder.refuse(req, res, 503, 'FERRY_LOCATIONS_NOT_LOADED', `this proxy has not loaded block locations from the shared store yet; retry ${key} shortly`, { 'retry-after': 1 })
      }
    }
    let gateway = route.gateway
    let placedSet: string[] | undefined
    const placing = this.placement !== undefined && this.config.placement.enabled
    if (method === 'PUT' && placing) {
      let meta: RequestMetadata
      try {
        meta = requestMetadata(req.url as string, req.headers, this.config.placement.metadataHeaders, this.config.placement.maxMetadataBytes)
      } catch (err) {
        if (!(err instanceof FerryError)) throw err
        return this.forwarder.refuse(req, res, err.statusCode, err.code as FerryErrorCode, err.message)
      }
      if (!route.placed) {
        const set = this.placeFirstWrite(volume, block, site, now, meta)
        const head = set[0] === undefined ? undefined : this.gateways.get(set[0])
        if (head !== undefined) { gateway = head; placedSet = set }
      }
    }
    const request: ProxyRequest = {
      req, res, method, volume, block, key, write, body: op.body, client, site, peer, now,
      location: route.location, gateway, hashed: route.placed ? undefined : route.gateway,
      placedSet, fanout: undefined, claimedEpoch: undefined, attempts: 0, status: 0, startedAt: 0
    }
    if (op.upstreamHeaders !== undefined) request.upstreamHeaders = op.upstreamHeaders
    if (op.bodyAt !== undefined) request.bodyAt = op.bodyAt
    if (op.user !== undefined) request.user = op.user
    // Synchronous down to the gateway's pool unless a stage has to wait (a session read from the
    // store, a write held in cut-over, a first write's location recorded).
    const client_ = new ClientResponse(this.forwarder, request)
    this.first.dispatch(request, op.wrap !== undefined ? op.wrap(client_, request) : client_)
  }

  /**
   * Where a block without a location is created: its whole replica set (replication.factor
   * members, head first) by the partitioning engine's table (placement/). The write guard then
   * claims it, and falls back to the hashed gateway if the claim cannot be recorded.
   */
  private placeFirstWrite (volume: string, block: string, site: string | undefined, now: number, meta: RequestMetadata): string[] {
    const placement = this.placement as PlacementClient
    const set = placement.placer.chooseReplicaSet(volume, block, site, this.replication?.factor ?? 1)
    placement.noteFirstWrite(volume, block, site, now, meta)
    return set
  }

  clientOf (req: IncomingMessage): string {
    return this.clients.resolve(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for'])
  }

  /**
   * The gateways a block may be read from right now, best first, for the reads an adapter makes
   * on its own behalf (the source of a copy, the parts of an upload): a replicated block's in-sync
   * members (never an out-of-sync copy, which may be stale), else its hashed gateway. More than
   * one, so such a read fails over when a member dies, as a client's GET does (retry.ts).
   */
  readersOf (volume: string, block: string): Gateway[] {
    const now = Date.now()
    const route = this.routes.route(volume, block, blockKey(volume, block), now)
    if (route.location === undefined) return route.gateway === undefined ? [] : [route.gateway]
    return readOrder(this.gateways, route.location, undefined, now)
  }

  /**
   * Every gateway that holds a copy of a block: the members of its replica set (in sync or not:
   * a delete must reach a stale copy too, or a later repair could serve it), else its hashed
   * gateway. Undefined for a member this proxy's config does not know.
   */
  holdersOf (volume: string, block: string): Array<Gateway | undefined> {
    const route = this.routes.route(volume, block, blockKey(volume, block), Date.now())
    if (route.location === undefined) return [route.gateway]
    return route.location.members.map(id => this.gateways.get(id))
  }

  /**
   * The gateways a dispatched write's body goes to: every member of a fanned-out write's set
   * (joining ones included), else the one gateway.
   */
  receiversOf (request: ProxyRequest): Array<Gateway | undefined> {
    if (request.fanout !== undefined && request.location !== undefined) return request.location.members.map(id => this.gateways.get(id))
    return [request.gateway]
  }

  get maxBodyBytes (): number { return this.config.proxy.maxBodyBytes }

  get via (): string { return this.forwarder.via }

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
  private answerRaw (socket: Socket, status: number, code: FerryErrorCode, message: string): void {
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

function recorderOptions (cfg: ProxyConfigPieces): AccessRecorderOptions {
  return { ...cfg.recorder, sites: cfg.sites.map(s => s.name) }
}

/**
 * Counts a chunked upload's bytes and fails it past the limit; uploads with a Content-Length
 * are checked before forwarding and do not pay for this stream.
 */
class BodyLimit extends Transform {
  private seen = 0

  constructor (private readonly limit: number) {
    super()
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length
    noteBodyBytes(chunk.length)
    if (this.seen > this.limit) {
      // The upload is cut where it stands and nothing is stored; the rest of it is not read.
      cb(new ProxyAnswer('FERRY_BODY_TOO_LARGE', `request body exceeds ${this.limit} bytes`, 413, { connection: 'close' }))
      return
    }
    cb(null, chunk)
  }
}
