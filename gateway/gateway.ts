import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import type { Socket, AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { access, constants as fsConstants } from 'node:fs/promises'
import { timingSafeEqual } from 'node:crypto'
import { basename, resolve as resolvePath } from 'node:path'
import { DIGEST_MISMATCH_HEADER, digestField, parseDigestField, parseWrittenAt, TOMBSTONE_HEADER, WRITTEN_AT_HEADER } from '../lib/block-headers.js'
import type { ErrorCode } from '../lib/error-codes.js'
import { FerryError, isFerryError } from '../lib/errors.js'
import { responseInFlight, sendError, sendJson } from '../lib/http.js'
import { blockKey, isValidId } from '../lib/ids.js'
import { silentLogger, type Logger } from '../lib/log.js'
import { createRegistry, type Registry } from '../lib/metrics.js'
import { loadTlsPair } from '../lib/tls.js'
import { evaluatePreconditions, hasPreconditions } from './conditional.js'
import { delaysOrStalls, parseFaults, type Faults, type FaultsInput } from './faults.js'
import { GatewayMetrics } from './metrics.js'
import { BlockStore, tooLarge, type OpenedBlock, type Precondition } from './store.js'

export interface GatewayOptions {
  /** Names the gateway in logs and metric labels. Default `gateway-<port>`. */
  id?: string
  /** Root of the block files (created if missing). One gateway per directory. */
  dir: string
  /** Address of both listeners. Default 127.0.0.1. */
  host?: string
  /** Data port; 0 picks a free one, which is then kept across restarts of this instance. */
  port: number
  /** Admin (fault API) port; 0 or absent picks a free one. */
  adminPort?: number
  /** When set, PUT/DELETE /faults require `Authorization: Bearer <token>`. */
  adminToken?: string
  /** Largest block accepted, in bytes. Default 64 MiB. */
  maxBlockBytes?: number
  /** Time allowed to receive a request's headers. Default 10 s. */
  headersTimeoutMs?: number
  /** Time allowed to receive a whole request, body included. Default 300 s. */
  requestTimeoutMs?: number
  /** How long an idle keep-alive connection is kept. Default 5 s. */
  keepAliveTimeoutMs?: number
  /** A connection with no traffic in either direction for this long is closed. Default 60 s. */
  idleTimeoutMs?: number
  /** How long stop() waits for in-flight requests before cutting connections. Default 10 s. */
  drainTimeoutMs?: number
  /**
   * HTTPS on the data listener (the fault admin stays plain HTTP): certificate and key PEM files,
   * read at every start; with `clientCa`, only clients presenting a certificate signed by it are
   * served (mutual TLS).
   */
  tls?: { cert: string, key: string, clientCa?: string }
  /** Faults in force from every start (a fresh process starts with its flags, not its past). */
  faults?: FaultsInput
  logger?: Logger
  /** Where metrics are registered; may be shared by several gateways. Default: a private one. */
  registry?: Registry
}

export const DEFAULT_MAX_BLOCK_BYTES = 64 * 1024 * 1024

/** Bodies up to this size are read into one buffer and sent with a single end() (no stream). */
const SMALL_BLOCK_BYTES = 64 * 1024
/** Cap on an admin request body (a fault set is a few hundred bytes). */
const ADMIN_BODY_BYTES = 64 * 1024

/** Everything that belongs to one run between start() and stop()/kill(). */
interface Life {
  server: http.Server
  admin: http.Server
  store: BlockStore
  sockets: Set<Socket>
  /** Whether the data server is listening (false while refusing with `unbind`). */
  bound: boolean
  dataClosed: Promise<void> | undefined
  inflight: number
  onIdle: (() => void) | undefined
  /** Aborted when the life ends: cancels injected delays, which a dead process would not keep. */
  ended: AbortController
}

/**
 * The reference gateway: a file-backed block store speaking the gateway protocol of DESIGN.md
 * (GET/HEAD/PUT/DELETE /{volume}/{block} with content-hash ETags), with fault injection for tests
 * and demos on a separate admin listener. See gateway/README.md.
 */
export class ReferenceGateway {
  readonly id: string
  readonly dir: string
  readonly host: string
  readonly maxBlockBytes: number
  readonly registry: Registry
  readonly #opts: GatewayOptions
  readonly #log: Logger
  readonly #metrics: GatewayMetrics
  readonly #initialFaults: Faults
  #port: number
  #adminPort: number
  #life: Life | undefined
  #state: 'stopped' | 'starting' | 'running' | 'stopping' = 'stopped'
  #stopping: Promise<void> | undefined
  #faults: Faults
  /** Requests held by the stall fault, with the function that lets each one go. */
  readonly #stalled = new Map<ServerResponse, () => void>()
  #startedAt = 0

  constructor (opts: GatewayOptions) {
    this.#opts = opts
    this.dir = opts.dir
    this.host = opts.host ?? '127.0.0.1'
    this.#port = opts.port
    this.#adminPort = opts.adminPort ?? 0
    this.maxBlockBytes = opts.maxBlockBytes ?? DEFAULT_MAX_BLOCK_BYTES
    if (!Number.isSafeInteger(this.maxBlockBytes) || this.maxBlockBytes < 0) {
      throw new FerryError('INVALID_OPTION', `maxBlockBytes must be a non-negative integer, got ${String(opts.maxBlockBytes)}`, 500)
    }
    this.id = opts.id ?? (opts.port !== 0 ? `gateway-${opts.port}` : basename(resolvePath(opts.dir)))
    this.#log = (opts.logger ?? silentLogger).child({ gateway: this.id })
    this.registry = opts.registry ?? createRegistry(false)
    this.#metrics = new GatewayMetrics(this.registry, this.id)
    this.#initialFaults = parseFaults(opts.faults ?? {})
    this.#faults = this.#initialFaults
  }

  get port (): number { return this.#port }
  get adminPort (): number { return this.#adminPort }
  get running (): boolean { return this.#state === 'running' }
  get faults (): Faults { return this.#faults }

  /** Base URL of the data listener, e.g. `http://127.0.0.1:9001` (valid once a port is known). */
  get url (): string { return this.#urlFor(this.#port, this.#opts.tls !== undefined) }
  get adminUrl (): string { return this.#urlFor(this.#adminPort, false) }

  async start (): Promise<void> {
    if (this.#state !== 'stopped') throw new FerryError('GATEWAY_RUNNING', `gateway ${this.id} is already ${this.#state}`, 500)
    this.#state = 'starting'
    try {
      const store = new BlockStore(this.dir, { maxBlockBytes: this.maxBlockBytes })
      await store.init()
      const life = this.#createLife(store)
      this.#port = await listen(life.server, this.#port, this.host)
      life.bound = true
      try {
        this.#adminPort = await listen(life.admin, this.#adminPort, this.host)
      } catch (err) {
        life.server.close()
        throw err
      }
      this.#life = life
      this.#faults = this.#initialFaults
      this.#startedAt = Date.now()
      this.#state = 'running'
      await this.#applyRefuse(life)
      this.#log.info({ url: this.url, adminUrl: this.adminUrl, dir: store.dir, maxBlockBytes: this.maxBlockBytes }, 'gateway started')
    } catch (err) {
      this.#state = 'stopped'
      throw err
    }
  }

  /**
   * Graceful: stop accepting, let in-flight requests finish (up to drainTimeoutMs), then close
   * every connection. Requests held by a stall fault are cut at once: they would never finish.
   */
  async stop (): Promise<void> {
    if (this.#state === 'stopping') return await this.#stopping
    const life = this.#life
    if (this.#state !== 'running' || life === undefined) return
    this.#state = 'stopping'
    this.#stopping = (async () => {
      const closed = [this.#unbind(life), closeServer(life.admin)]
      for (const res of this.#stalled.keys()) res.destroy()
      life.server.closeIdleConnections()
      await this.#drain(life, this.#opts.drainTimeoutMs ?? 10_000)
      life.store.close()
      life.server.closeAllConnections()
      life.admin.closeAllConnections()
      await Promise.all(closed)
      this.#finish(life)
      this.#log.info('gateway stopped')
    })()
    await this.#stopping
  }

  /**
   * Simulates a crashed process: every socket (data and admin) is destroyed mid-whatever, the
   * listeners close, and no write still in progress will be committed. start() brings the
   * gateway back on the same ports and directory.
   */
  async kill (): Promise<void> {
    const life = this.#life
    if (life === undefined) return
    life.store.close()
    life.ended.abort()
    const closed = [this.#unbind(life), closeServer(life.admin)]
    for (const socket of life.sockets) socket.destroy()
    life.admin.closeAllConnections()
    await Promise.all(closed)
    this.#finish(life)
    this.#log.warn('gateway killed')
  }

  /** Graceful stop, then start on the same ports and directory. */
  async restart (): Promise<void> {
    await this.stop()
    await this.start()
  }

  /**
   * Replaces the whole fault set (omitted fields: no fault) and returns it. Throws FerryError
   * INVALID_FAULTS (400) on bad input. Lifting a stall releases the held requests.
   */
  async setFaults (input: FaultsInput): Promise<Faults> {
    const next = parseFaults(input)
    const prev = this.#faults
    this.#faults = next
    if (prev.stall && !next.stall) {
      for (const release of this.#stalled.values()) release()
    }
    const life = this.#life
    if (life !== undefined && this.#state === 'running') await this.#applyRefuse(life)
    this.#log.info({ faults: next }, 'faults set')
    return next
  }

  async clearFaults (): Promise<Faults> {
    return await this.setFaults({})
  }

  // ---- lifecycle internals ----

  #createLife (store: BlockStore): Life {
    const o = this.#opts
    const headersTimeout = o.headersTimeoutMs ?? 10_000
    const requestTimeout = Math.max(o.requestTimeoutMs ?? 300_000, headersTimeout)
    const serverOptions: http.ServerOptions = {
      headersTimeout,
      requestTimeout,
      keepAliveTimeout: o.keepAliveTimeoutMs ?? 5_000,
      // Timeouts are enforced by a periodic sweep; keep its period well under the shortest one so
      // a slow client is cut close to its deadline rather than up to 30 s (Node's default) later.
      connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(headersTimeout / 4))),
      noDelay: true
    }
    const life: Life = {
      server: this.#dataServer(serverOptions),
      admin: http.createServer(serverOptions),
      store,
      sockets: new Set(),
      bound: false,
      dataClosed: undefined,
      inflight: 0,
      onIdle: undefined,
      ended: new AbortController()
    }
    const { server, admin } = life
    server.timeout = o.idleTimeoutMs ?? 60_000
    admin.timeout = o.idleTimeoutMs ?? 60_000
    server.on('connection', (socket: Socket) => {
      if (this.#faults.refuse === 'reset') {
        this.#metrics.fault('reset')
        socket.resetAndDestroy()
        return
      }
      life.sockets.add(socket)
      socket.once('close', () => life.sockets.delete(socket))
    })
    admin.on('connection', (socket: Socket) => {
      life.sockets.add(socket)
      socket.once('close', () => life.sockets.delete(socket))
    })
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => this.#onRequest(life, req, res)
    server.on('request', onRequest)
    // With a listener here Node no longer answers `Expect: 100-continue` by itself: the PUT
    // handler sends 100 only once it has decided to read the body (not for a 413 or 412).
    server.on('checkContinue', onRequest)
    server.on('clientError', onClientError)
    admin.on('request', (req: IncomingMessage, res: ServerResponse) => { this.#onAdmin(req, res) })
    admin.on('clientError', onClientError)
    const onServerError = (err: Error): void => { this.#log.error({ err }, 'listener error') }
    server.on('error', onServerError)
    admin.on('error', onServerError)
    return life
  }

  /** The data listener's server: HTTPS with `tls` (its files checked as ferry's own listeners check theirs), else HTTP. */
  #dataServer (serverOptions: http.ServerOptions): http.Server {
    const tls = this.#opts.tls
    if (tls === undefined) return http.createServer(serverOptions)
    const pair = loadTlsPair({ cert: tls.cert, key: tls.key })
    const clientCa = tls.clientCa === undefined ? {} : { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: true }
    const server = https.createServer({ ...serverOptions, cert: pair.cert, key: pair.key, ...clientCa })
    server.on('tlsClientError', (err: Error & { code?: string }) => { this.#log.info({ err: err.code ?? err.message }, 'TLS handshake refused') })
    return server as unknown as http.Server
  }

  /** Brings the data listener in line with the `refuse` fault. */
  async #applyRefuse (life: Life): Promise<void> {
    const refuse = this.#faults.refuse
    if (refuse === 'unbind') {
      void this.#unbind(life)
    } else if (!life.bound) {
      this.#port = await listen(life.server, this.#port, this.host)
      life.bound = true
      life.dataClosed = undefined
    }
    // Refusing only new connections would go unnoticed by a client with a warm keep-alive pool.
    if (refuse !== 'none') life.server.closeIdleConnections()
  }

  /** Stops the data listener; resolves once it and all its connections are closed. */
  #unbind (life: Life): Promise<void> {
    if (life.bound) {
      life.bound = false
      life.dataClosed = closeServer(life.server)
    }
    return life.dataClosed ?? Promise.resolve()
  }

  async #drain (life: Life, timeoutMs: number): Promise<void> {
    if (life.inflight === 0) return
    await new Promise<void>(resolve => {
      const timer = setTimeout(resolve, timeoutMs)
      life.onIdle = () => { clearTimeout(timer); resolve() }
    })
    life.onIdle = undefined
    if (life.inflight > 0) this.#log.warn({ inflight: life.inflight }, 'drain timeout: cutting in-flight requests')
  }

  #finish (life: Life): void {
    life.ended.abort()
    if (this.#life === life) {
      this.#life = undefined
      this.#state = 'stopped'
    }
  }

  #urlFor (port: number, secure: boolean): string {
    if (port === 0) throw new FerryError('GATEWAY_NOT_STARTED', `gateway ${this.id} has no port yet: start it first`, 500)
    const host = this.host.includes(':') ? `[${this.host}]` : this.host
    return `${secure ? 'https' : 'http'}://${host}:${port}`
  }

  // ---- data listener ----

  #onRequest (life: Life, req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now()
    life.inflight++
    // While refusing, a connection that was busy when the refusal began must not live on as a
    // keep-alive connection: a client reusing it would never see the gateway refuse.
    if (this.#faults.refuse !== 'none') res.shouldKeepAlive = false
    res.once('close', () => {
      this.#metrics.request(req.method ?? 'OTHER', res.writableFinished ? String(res.statusCode) : 'aborted', (performance.now() - started) / 1000)
      if (--life.inflight === 0) life.onIdle?.()
    })
    if (this.#state === 'stopping') res.setHeader('connection', 'close')
    if (delaysOrStalls(this.#faults)) {
      this.#delayThenRoute(life, req, res).catch(err => this.#fail(req, res, err))
    } else {
      this.#route(life, req, res)
    }
  }

  async #delayThenRoute (life: Life, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const f = this.#faults
    const delay = f.latencyMs + (f.jitterMs > 0 ? Math.random() * f.jitterMs : 0)
    if (delay > 0) {
      this.#metrics.fault('latency')
      await sleep(delay, undefined, { signal: life.ended.signal })
    }
    if (this.#faults.stall && !res.destroyed) {
      this.#metrics.fault('stall')
      await new Promise<void>(resolve => {
        const release = (): void => {
          this.#stalled.delete(res)
          res.off('close', release)
          resolve()
        }
        this.#stalled.set(res, release)
        res.once('close', release)
      })
    }
    if (res.destroyed) return
    this.#route(life, req, res)
  }

  #route (life: Life, req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? ''
    if (url.charCodeAt(0) !== 47 /* / */) {
      return reject(req, res, 400, 'INVALID_PATH', 'request target must be an absolute path /{volume}/{block}')
    }
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    const slash = path.indexOf('/', 1)
    if (slash === -1) return this.#routeSingle(life, path, req, res)
    const volume = path.slice(1, slash)
    const block = path.slice(slash + 1)
    // Ids are matched literally, never percent-decoded: nothing in their alphabet needs encoding,
    // so any '%' (as in `..%2f`) is simply an invalid id, and there is no decoded form to traverse.
    if (block.includes('/')) return reject(req, res, 400, 'INVALID_PATH', 'expected exactly two path segments: /{volume}/{block}')
    if (!isValidId(volume)) return reject(req, res, 400, 'INVALID_VOLUME_ID', `invalid volume id ${show(volume)}: 1-128 of [A-Za-z0-9._-], not starting with '.'`)
    if (!isValidId(block)) return reject(req, res, 400, 'INVALID_BLOCK_ID', `invalid block id ${show(block)}: 1-128 of [A-Za-z0-9._-], not starting with '.'`)

    const method = req.method
    if (method !== 'GET' && method !== 'HEAD' && method !== 'PUT' && method !== 'DELETE') {
      return reject(req, res, 405, 'METHOD_NOT_ALLOWED', `method ${show(method ?? '')} not allowed on a block`, { allow: 'GET, HEAD, PUT, DELETE' })
    }
    const f = this.#faults
    if (f.errorRate > 0 && Math.random() < f.errorRate) {
      this.#metrics.fault('error')
      return reject(req, res, 503, 'FAULT_INJECTED', 'injected error (fault errorRate)')
    }
    let done: Promise<void>
    if (method === 'PUT') done = this.#put(life.store, req, res, volume, block)
    else if (method === 'DELETE') done = this.#delete(life.store, req, res, volume, block)
    else done = this.#get(life.store, req, res, volume, block, method === 'HEAD')
    done.catch(err => this.#fail(req, res, err))
  }

  #routeSingle (life: Life, path: string, req: IncomingMessage, res: ServerResponse): void {
    if (path === '/healthz') return void this.#health(req, res).catch(err => this.#fail(req, res, err))
    if (path === '/metrics') return void this.#sendMetrics(req, res).catch(err => this.#fail(req, res, err))
    if (path === '/inventory') return void this.#inventory(life.store, req, res).catch(err => this.#fail(req, res, err))
    reject(req, res, 404, 'NOT_FOUND', `no such endpoint ${show(path)}; blocks live at /{volume}/{block}`)
  }

  async #get (store: BlockStore, req: IncomingMessage, res: ServerResponse, volume: string, block: string, head: boolean): Promise<void> {
    const b = await store.open(volume, block)
    if (b === null) {
      if (req.headers['if-match'] !== undefined) return reject(req, res, 412, 'PRECONDITION_FAILED', 'If-Match: the block does not exist')
      return reject(req, res, 404, 'BLOCK_NOT_FOUND', `block ${volume}/${block} not found`)
    }
    let owned = true
    try {
      const verdict = evaluatePreconditions(req.headers, b.etag, true)
      if (verdict === 'not-modified') {
        res.writeHead(304, { etag: b.etag })
        res.end()
        return
      }
      if (verdict === 'failed') return reject(req, res, 412, 'PRECONDITION_FAILED', 'If-Match does not match the current ETag', { etag: b.etag })
      const headers = { 'content-type': 'application/octet-stream', 'content-length': b.size, etag: b.etag, [WRITTEN_AT_HEADER]: b.writtenAt }
      if (head) {
        res.writeHead(200, headers)
        res.end()
        return
      }
      const f = this.#faults
      if (f.dieMidResponse > 0 && Math.random() < f.dieMidResponse) {
        this.#metrics.fault('die')
        res.writeHead(200, headers)
        return await dieMidBody(res, b)
      }
      if (b.size <= SMALL_BLOCK_BYTES) {
        const buf = await readWhole(b)
        res.writeHead(200, headers)
        res.end(buf)
        this.#metrics.sent(b.size)
        return
      }
      res.writeHead(200, headers)
      owned = false // the stream closes the handle, also when the client goes away mid-body
      await pipeline(b.fh.createReadStream({ start: 0, highWaterMark: SMALL_BLOCK_BYTES }), res)
      this.#metrics.sent(b.size)
    } finally {
      if (owned) await b.fh.close().catch(noop)
    }
  }

  async #put (store: BlockStore, req: IncomingMessage, res: ServerResponse, volume: string, block: string): Promise<void> {
    // Refuse before reading a byte: the client learns at once and no disk is touched.
    const declared = req.headers['content-length']
    if (declared !== undefined && Number(declared) > this.maxBlockBytes) throw tooLarge(this.maxBlockBytes)
    const precondition = preconditionOf(req)
    if (precondition !== undefined) {
      // Check early too (e.g. If-None-Match: * on an existing block) so a doomed upload is not
      // read; the check that counts is repeated under the block's lock at commit.
      precondition(await store.currentEtag(volume, block))
    }
    const writtenAtHeader = req.headers[WRITTEN_AT_HEADER]
    const writtenAt = parseWrittenAt(writtenAtHeader)
    if (writtenAtHeader !== undefined && writtenAt === null) {
      throw new FerryError('INVALID_HEADER', `${WRITTEN_AT_HEADER} must be ms since the epoch (an integer), got ${show(String(writtenAtHeader))}`, 400)
    }
    const expect = expectedDigests(req)
    const wantMd5 = parseWantDigest(req.headers['want-repr-digest']).has('md5')
    if (req.headers.expect !== undefined) res.writeContinue()
    // destroyOnReturn: false — when the store stops early (413), the socket must survive long
    // enough to carry the 413 back.
    const body: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => req.iterator({ destroyOnReturn: false }) }
    const r = await store.put(volume, block, body, {
      precondition, onBytes: n => this.#metrics.received(n), md5: wantMd5, ...(expect !== undefined ? { expect } : {}), ...(writtenAt === null ? {} : { writtenAt })
    })
    const headers: Record<string, string | number> = { etag: r.etag }
    if (r.created) headers['content-length'] = 0
    // What was stored, when a digest was asked for or checked (the proxy takes an S3 ETag from it).
    if (wantMd5 || expect !== undefined) headers['repr-digest'] = digestField(r.md5 !== undefined ? [['sha-256', r.sha256], ['md5', r.md5]] : [['sha-256', r.sha256]])
    res.writeHead(r.created ? 201 : 204, headers)
    res.end()
  }

  async #delete (store: BlockStore, req: IncomingMessage, res: ServerResponse, volume: string, block: string): Promise<void> {
    const precondition = preconditionOf(req)
    if (!(await store.delete(volume, block, { precondition, tombstone: req.headers[TOMBSTONE_HEADER] === '1' }))) {
      return reject(req, res, 404, 'BLOCK_NOT_FOUND', `block ${volume}/${block} not found`)
    }
    res.writeHead(204)
    res.end()
  }

  async #health (req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return reject(req, res, 405, 'METHOD_NOT_ALLOWED', 'use GET', { allow: 'GET, HEAD' })
    // One cheap syscall so a gateway whose disk went away (unmounted, read-only) reports itself
    // unhealthy to the proxy's active checks instead of failing every write.
    let problem: string | undefined
    try {
      await access(this.dir, fsConstants.W_OK)
    } catch (err) {
      problem = `data directory not writable: ${(err as NodeJS.ErrnoException).code ?? String(err)}`
    }
    const body = { status: problem === undefined ? 'ok' : 'unavailable', id: this.id, uptimeSeconds: Math.round((Date.now() - this.#startedAt) / 1000), ...(problem === undefined ? {} : { reason: problem }) }
    sendJson(res, problem === undefined ? 200 : 503, body, { 'cache-control': 'no-store' })
  }

  /** `GET /inventory?after=<volume>/<block>&limit=N[&etags=all]`: see README "Inventory". */
  async #inventory (store: BlockStore, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET') return reject(req, res, 405, 'METHOD_NOT_ALLOWED', 'use GET', { allow: 'GET' })
    const query = parseInventoryQuery(req.url ?? '')
    const blocks = await store.list({ after: query.after, limit: query.limit, hashUncached: query.etags === 'all', tombstones: query.tombstones })
    const last = blocks.length === query.limit ? blocks[blocks.length - 1] : undefined
    sendJson(res, 200, { blocks, next: last === undefined ? null : blockKey(last.volume, last.block) }, { 'cache-control': 'no-store' })
  }

  async #sendMetrics (req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET') return reject(req, res, 405, 'METHOD_NOT_ALLOWED', 'use GET', { allow: 'GET' })
    const text = await this.registry.metrics()
    res.writeHead(200, { 'content-type': this.registry.contentType, 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }

  #fail (req: IncomingMessage, res: ServerResponse, err: unknown): void {
    if (res.destroyed || req.socket.destroyed) {
      // The client went away (abort mid-upload, disconnect mid-body): nobody to answer.
      this.#log.debug({ err, url: req.url }, 'request ended by the client')
      return
    }
    if (isFerryError(err)) {
      // A 412 tells the client which version it lost to.
      const etag = err.details?.etag
      const algorithm = err.details?.algorithm
      return reject(req, res, err.statusCode, err.code, err.message,
        typeof etag === 'string' ? { etag } : typeof algorithm === 'string' ? { [DIGEST_MISMATCH_HEADER]: algorithm } : undefined)
    }
    this.#log.error({ err, method: req.method, url: req.url }, 'request failed')
    reject(req, res, 500, 'INTERNAL', 'internal error')
  }

  // ---- admin listener ----

  #onAdmin (req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? ''
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    const done = path === '/faults'
      ? this.#adminFaults(req, res)
      : path === '/healthz'
        ? this.#health(req, res)
        : path === '/metrics'
          ? this.#sendMetrics(req, res)
          : Promise.resolve(reject(req, res, 404, 'NOT_FOUND', `no such admin endpoint ${show(path)}`))
    done.catch((err: unknown) => {
      if (!isFerryError(err)) this.#log.error({ err }, 'admin request failed')
      this.#fail(req, res, err)
    })
  }

  async #adminFaults (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method
    if (method === 'GET') return sendJson(res, 200, this.#faults)
    if (method !== 'PUT' && method !== 'DELETE') return reject(req, res, 405, 'METHOD_NOT_ALLOWED', 'use GET, PUT or DELETE', { allow: 'GET, PUT, DELETE' })
    const token = this.#opts.adminToken
    if (token !== undefined && !bearerMatches(req.headers.authorization, token)) {
      return reject(req, res, 401, 'UNAUTHORIZED', 'a bearer token is required to change faults', { 'www-authenticate': 'Bearer' })
    }
    if (method === 'DELETE') return sendJson(res, 200, await this.clearFaults())
    let input: unknown
    try {
      input = JSON.parse(await readSmallBody(req, ADMIN_BODY_BYTES))
    } catch (err) {
      if (isFerryError(err)) throw err
      throw new FerryError('INVALID_JSON', `body is not valid JSON: ${(err as Error).message}`, 400)
    }
    sendJson(res, 200, await this.setFaults(input as FaultsInput))
  }
}

// ---- helpers ----

export const INVENTORY_DEFAULT_LIMIT = 1000
export const INVENTORY_MAX_LIMIT = 10_000

interface InventoryQuery {
  after: { volume: string, block: string } | null
  limit: number
  etags: 'cached' | 'all'
  /** List the tombstones instead of the blocks (README "Tombstones"). */
  tombstones: boolean
}

/** The inventory's query string; unknown parameters are refused so a misspelt one is not silently ignored. */
function parseInventoryQuery (url: string): InventoryQuery {
  const q = url.indexOf('?')
  const params = new URLSearchParams(q === -1 ? '' : url.slice(q + 1))
  const bad = (message: string): FerryError => new FerryError('INVALID_QUERY', message, 400)
  const query: InventoryQuery = { after: null, limit: INVENTORY_DEFAULT_LIMIT, etags: 'cached', tombstones: false }
  for (const [name, value] of params) {
    if (name === 'after') {
      const slash = value.indexOf('/')
      const volume = value.slice(0, slash)
      const block = value.slice(slash + 1)
      if (slash === -1 || !isValidId(volume) || !isValidId(block)) throw bad(`after must be <volume>/<block> (valid ids), got ${show(value)}`)
      query.after = { volume, block }
    } else if (name === 'limit') {
      const n = Number(value)
      if (!/^\d+$/.test(value) || n < 1 || n > INVENTORY_MAX_LIMIT) throw bad(`limit must be an integer from 1 to ${INVENTORY_MAX_LIMIT}, got ${show(value)}`)
      query.limit = n
    } else if (name === 'etags') {
      if (value !== 'cached' && value !== 'all') throw bad(`etags must be cached or all, got ${show(value)}`)
      query.etags = value
    } else if (name === 'tombstones') {
      if (value !== '0' && value !== '1') throw bad(`tombstones must be 0 or 1, got ${show(value)}`)
      query.tombstones = value === '1'
    } else {
      throw bad(`unknown parameter ${show(name)} (after, limit, etags, tombstones)`)
    }
  }
  return query
}

/** The If-Match/If-None-Match check of a write, as the store runs it against the current ETag. */
function preconditionOf (req: IncomingMessage): Precondition | undefined {
  if (!hasPreconditions(req.headers)) return undefined
  return (current) => {
    if (evaluatePreconditions(req.headers, current, false) !== 'ok') {
      throw new FerryError('PRECONDITION_FAILED', current === null ? 'precondition failed: the block does not exist' : 'precondition failed against the current ETag', 412, current === null ? undefined : { etag: current })
    }
  }
}

/**
 * Sends a JSON error. If the request body has not been read, the connection is closed after the
 * response: otherwise Node would read (and discard) the rest of the body to reuse the connection,
 * which for a refused 1 GiB upload is exactly the work the early refusal was meant to avoid.
 */
/** The digests a PUT declares its body has (block-headers.ts "Digests"); undefined when none. */
function expectedDigests (req: IncomingMessage): { sha256?: Buffer, md5?: Buffer } | undefined {
  let out: { sha256?: Buffer, md5?: Buffer } | undefined
  const declared = req.headers['content-digest']
  if (declared !== undefined) {
    const sha256 = parseDigestField(declared).get('sha-256')
    if (sha256?.length !== 32) throw new FerryError('INVALID_HEADER', 'Content-Digest must carry sha-256=:<base64 of 32 bytes>:', 400)
    out = { sha256 }
  }
  const md5 = req.headers['content-md5']
  if (md5 !== undefined) {
    const raw = Buffer.from(String(md5), 'base64')
    if (raw.length !== 16 || !/^[A-Za-z0-9+/]{22}==$/.test(String(md5))) throw new FerryError('INVALID_HEADER', 'Content-MD5 must be the base64 of 16 bytes', 400)
    out = { ...out, md5: raw }
  }
  return out
}

/** The algorithms of a Want-Repr-Digest field (`md5=1, sha-256=5`) with a non-zero preference. */
function parseWantDigest (value: string | string[] | undefined): Set<string> {
  const out = new Set<string>()
  if (typeof value !== 'string') return out
  for (const member of value.split(',')) {
    const [alg, pref] = member.split('=').map(s => s.trim().toLowerCase())
    if (alg !== undefined && alg !== '' && pref !== '0') out.add(alg)
  }
  return out
}

function reject (req: IncomingMessage, res: ServerResponse, status: number, code: ErrorCode, message: string, headers?: Record<string, string>): void {
  const close = bodyPending(req)
  sendError(res, status, code, message, close ? { ...headers, connection: 'close' } : headers)
}

function bodyPending (req: IncomingMessage): boolean {
  if (req.complete) return false
  const h = req.headers
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0')
}

/** Node's parser rejected the bytes: answer with the same JSON error shape, then close. */
function onClientError (err: NodeJS.ErrnoException, socket: Duplex): void {
  const inFlight = responseInFlight(socket)
  if (err.code === 'ECONNRESET' || !socket.writable || (inFlight !== null && inFlight.headersSent)) {
    socket.destroy()
    return
  }
  const [status, code, message] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'HEADERS_TOO_LARGE', 'request headers too large'] as const
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'REQUEST_TIMEOUT', 'request not received in time'] as const
      : [400, 'BAD_REQUEST', 'malformed HTTP request'] as const
  const body = JSON.stringify({ error: { code, message } })
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`, () => socket.destroy())
}

async function readWhole (b: OpenedBlock): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(b.size)
  let pos = 0
  while (pos < b.size) {
    const { bytesRead } = await b.fh.read(buf, pos, b.size - pos, pos)
    // Block files are never modified in place, so a short file here means the disk lied.
    if (bytesRead === 0) throw new FerryError('BLOCK_TRUNCATED', 'block file shorter than its size', 500)
    pos += bytesRead
  }
  return buf
}

/** The die fault: headers and half the body, then the connection is cut as by a dying process. */
async function dieMidBody (res: ServerResponse, b: OpenedBlock): Promise<void> {
  const half = Math.floor(b.size / 2)
  const part = Buffer.allocUnsafe(half)
  if (half > 0) await b.fh.read(part, 0, half, 0)
  await new Promise<void>(resolve => res.write(part, () => resolve()))
  res.socket?.destroy()
  res.destroy()
}

async function readSmallBody (req: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of { [Symbol.asyncIterator]: () => req.iterator({ destroyOnReturn: false }) } as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) throw new FerryError('PAYLOAD_TOO_LARGE', `admin body larger than ${limit} bytes`, 413)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function bearerMatches (header: string | undefined, token: string): boolean {
  if (header === undefined || !header.startsWith('Bearer ')) return false
  const given = Buffer.from(header.slice(7))
  const want = Buffer.from(token)
  return given.length === want.length && timingSafeEqual(given, want)
}

async function listen (server: http.Server, port: number, host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen({ port, host }, () => {
      server.off('error', onError)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

/** Resolves when the listener and all of its connections are closed. */
function closeServer (server: http.Server): Promise<void> {
  return new Promise(resolve => server.close(() => resolve()))
}

/** An id for an error message: quoted, and cut short so a 100 KiB path does not echo back. */
function show (s: string): string {
  return JSON.stringify(s.length > 64 ? s.slice(0, 64) + '…' : s)
}

function noop (): void {}
