import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Logger } from '../lib/log.js'
import type { StateStore } from '../state/types.js'
import type { SessionsSection } from './config.js'
import type { GatewaySet } from './gateway-set.js'
import { stageFailed, type ProxyRequest, type ResponseHandler, type Stage } from './request.js'
import type { WriteGuard } from './write-guard.js'

/** A session as this proxy knows it: bindings volume → gateway, and when it was last read. */
export interface CachedSession {
  bindings: Record<string, string>
  fetchedAt: number
  touchedAt: number
  /**
   * Created here for a request that carried no session, and not yet presented back by the
   * client: kept in this proxy only. Many clients (SDKs, curl, load balancers' probes) never
   * return a cookie; writing a session to the store for each of their requests would cost a
   * store write per request and leave a key behind for the whole TTL.
   */
  local?: boolean
}

const ID_PATTERN = /^[A-Za-z0-9_-]{16,128}$/
const MAX_CACHED = 100_000

/**
 * Sticky sessions. The binding of a session to a gateway per volume lives in the shared store
 * with a TTL, so another proxy — or this one after a restart — continues the session. Each proxy
 * keeps a short-lived copy (`cacheMs`) so a session costs one store read per proxy and not one
 * per request; bindings are written behind (the next proxy to read the session sees them).
 * Correctness never rests on this cache: where a block lives is decided by its location in the
 * store, and a binding only chooses the gateway for data that has no location yet.
 *
 * A session this proxy hands out is stored only once the client presents its id back (see
 * `CachedSession.local`): until then it lives in this proxy alone, so a client that keeps no
 * cookie costs no store round trip and leaves nothing in the store.
 */
export class SessionManager {
  private readonly cache = new Map<string, CachedSession>()
  private cfg: SessionsSection
  private cookiePrefix: string
  /** Node lower-cases incoming header names; the configured name may not be. */
  private header: string
  storeErrors = 0

  constructor (private readonly store: StateStore, cfg: SessionsSection, private readonly logger: Logger) {
    this.cfg = cfg
    this.cookiePrefix = cfg.cookie + '='
    this.header = cfg.header.toLowerCase()
  }

  get enabled (): boolean { return this.cfg.enabled }

  reconfigure (cfg: SessionsSection): void {
    this.cfg = cfg
    this.cookiePrefix = cfg.cookie + '='
    this.header = cfg.header.toLowerCase()
  }

  /**
   * The session id a request carries (header first, then cookie), if it is well-formed. A
   * session this proxy handed out is stored from here on: the client has shown it keeps it.
   */
  idFrom (req: IncomingMessage): string | undefined {
    const id = this.parseId(req)
    if (id !== undefined) this.confirm(id)
    return id
  }

  private parseId (req: IncomingMessage): string | undefined {
    const h = req.headers[this.header]
    if (typeof h === 'string') return ID_PATTERN.test(h) ? h : undefined
    const cookie = req.headers.cookie
    if (cookie === undefined) return undefined
    for (const part of cookie.split(';')) {
      const p = part.trim()
      if (p.startsWith(this.cookiePrefix)) {
        const v = p.slice(this.cookiePrefix.length)
        return ID_PATTERN.test(v) ? v : undefined
      }
    }
    return undefined
  }

  /**
   * A new session id (192 random bits), known to this proxy only until the client presents it,
   * and the Set-Cookie value that hands it out, when configured. The cookie has no Max-Age: the
   * store's TTL, renewed while the session is used, decides when it ends (a cookie that expired
   * `ttlS` after it was issued would end sessions still in use). An id presented after its
   * session expired simply starts an empty one.
   */
  create (now = Date.now()): { id: string, setCookie: string | undefined } {
    const id = randomBytes(16).toString('base64url') + randomBytes(8).toString('base64url')
    this.remember(id, { bindings: {}, fetchedAt: now, touchedAt: now, local: true })
    return {
      id,
      setCookie: this.cfg.setCookie ? `${this.cfg.cookie}=${id}; Path=/; HttpOnly; SameSite=Lax` : undefined
    }
  }

  /** The cached session if still fresh; otherwise undefined and the caller awaits load(). */
  cached (id: string, now: number): CachedSession | undefined {
    const s = this.cache.get(id)
    // A local session is in no store: only this copy exists, however old.
    return s !== undefined && (s.local === true || now - s.fetchedAt <= this.cfg.cacheMs) ? s : undefined
  }

  /** Reads the session from the store; a store failure yields the cached or an empty session. */
  async load (id: string, now: number): Promise<CachedSession> {
    let bindings: Record<string, string> = this.cache.get(id)?.bindings ?? {}
    try {
      const s = await this.store.getSession(id)
      if (s !== null) bindings = { ...s.bindings }
    } catch (err) {
      this.storeErrors++
      this.logger.debug({ err: (err as Error).message }, 'session read failed; continuing from the local copy')
    }
    const entry: CachedSession = { bindings, fetchedAt: now, touchedAt: this.cache.get(id)?.touchedAt ?? 0 }
    this.remember(id, entry)
    return entry
  }

  /**
   * Binds `volume` to `gateway` for the session: at once locally, written behind to the store
   * (which also refreshes the TTL). A failed write is counted; the next request retries it.
   */
  bind (id: string, session: CachedSession, volume: string, gateway: string, now: number): void {
    session.bindings[volume] = gateway
    session.touchedAt = now
    if (session.local !== true) this.write(id, session, volume, gateway)
  }

  private write (id: string, session: CachedSession, volume: string, gateway: string): void {
    this.store.bindSession(id, volume, gateway, this.cfg.ttlS * 1000).catch(err => {
      this.storeErrors++
      // So the next request tries to write it again — unless a later bind has replaced it.
      if (session.bindings[volume] === gateway) delete session.bindings[volume]
      this.logger.debug({ err: (err as Error).message }, 'session bind failed')
    })
  }

  /** The client presented a session this proxy handed out: store what it has gathered so far. */
  private confirm (id: string): void {
    const s = this.cache.get(id)
    if (s === undefined || s.local !== true) return
    s.local = false
    for (const [volume, gateway] of Object.entries(s.bindings)) this.write(id, s, volume, gateway)
  }

  /** Keeps an active session alive in the store, at most once per quarter TTL. */
  touch (id: string, session: CachedSession, now: number): void {
    if (session.local === true) return
    if (now - session.touchedAt < (this.cfg.ttlS * 1000) / 4) return
    session.touchedAt = now
    this.store.touchSession(id, this.cfg.ttlS * 1000).catch(() => { this.storeErrors++ })
  }

  private remember (id: string, entry: CachedSession): void {
    this.cache.delete(id)
    this.cache.set(id, entry)
    // Map iteration is insertion order: the first key is the least recently loaded.
    if (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value as string)
  }
}

/**
 * The first stage of the request path when proxies share a store: sticky sessions. A request of
 * a session goes where its block lives; only new data of a volume (a write of a block without a
 * location) follows the session's gateway for that volume while it is healthy. The binding
 * follows the data the session writes and is replaced when its gateway is down; reads of blocks
 * elsewhere leave it alone (rebinding on every read would thrash it).
 */
export class SessionSteering implements Stage {
  constructor (
    private readonly sessions: SessionManager,
    private readonly gateways: GatewaySet,
    private readonly next: WriteGuard,
    private readonly logger: Logger
  ) {}

  dispatch (request: ProxyRequest, handler: ResponseHandler): void {
    if (!this.sessions.enabled) { this.next.dispatch(request, handler); return }
    this.steer(request, handler).catch(err => { stageFailed(this.logger, err, handler) })
  }

  private async steer (request: ProxyRequest, handler: ResponseHandler): Promise<void> {
    const { sessions, gateways } = this
    const { volume, write, location, now } = request
    let id = sessions.idFrom(request.req)
    if (id === undefined) {
      const created = sessions.create()
      id = created.id
      if (created.setCookie !== undefined) request.res.setHeader('set-cookie', created.setCookie)
    }
    let session = sessions.cached(id, now) ?? await sessions.load(id, now)
    let bound = session.bindings[volume]
    if (bound !== undefined && session.local !== true && !gateways.isHealthy(bound, now) && session.fetchedAt < now) {
      // Before replacing a binding, make sure it is not just our cached copy that is stale:
      // another proxy may already have rebound the session, and it should stay where it went.
      session = await sessions.load(id, now)
      bound = session.bindings[volume]
    }
    const boundHealthy = bound !== undefined && gateways.isHealthy(bound, now)
    let gateway = request.gateway
    if (location === undefined && boundHealthy && write) {
      // (A read of a block with no location goes where such blocks are: its hashed gateway.)
      gateway = gateways.get(bound as string) ?? gateway
    } else if (location !== undefined && !write && boundHealthy && location.inSync.length > 1 && location.inSync.includes(bound as string)) {
      // A replicated block: the session stays on its gateway while that is an in-sync member.
      gateway = gateways.get(bound as string) ?? gateway
    }
    if (gateway !== undefined && bound !== gateway.id && (!boundHealthy || (write && location !== undefined))) sessions.bind(id, session, volume, gateway.id, now)
    else sessions.touch(id, session, now)
    request.gateway = gateway
    this.next.dispatch(request, handler)
  }
}
