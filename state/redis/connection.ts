import { readFileSync } from 'node:fs'
import type { ConnectionOptions } from 'node:tls'
import type { Cluster, Redis, ClusterOptions, RedisOptions } from 'ioredis'
import { ioredis } from './ioredis.js'
import { FerryError, isFerryError } from '../../lib/errors.js'
import type { StateConfig } from '../config.js'
import { unavailable, unsent } from '../errors.js'

/**
 * Building ioredis clients from the `state:` config, with the fault behaviour ferry needs:
 *
 * - `enableOfflineQueue: false`: while disconnected a call fails at once instead of waiting in a
 *   queue that would flush stale writes (and hold proxy requests) when Redis returns.
 * - `maxRetriesPerRequest: 0` and `autoResendUnfulfilledCommands: false`: a command in flight
 *   when the connection drops fails; it is never silently re-sent, because re-sending a merge
 *   would double-count accesses and the caller, not the driver, must decide on a retry.
 * - `commandTimeout`: a server that accepts the connection but does not answer still fails fast.
 * - `retryStrategy`: reconnection never stops; exponential with jitter, capped.
 */

export interface Endpoint { host: string, port: number }

export interface ResolvedConnection {
  mode: 'redis' | 'redis-cluster'
  /** Options shared by every connection: auth, TLS, timeouts. */
  common: RedisOptions
  /** Standalone: the server. Cluster: the configured seed nodes. */
  endpoints: Endpoint[]
}

export function backoff (minMs: number, maxMs: number): (attempt: number) => number {
  return (attempt: number) => {
    const exp = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 20))
    // Full jitter on the upper half, so a fleet of proxies does not reconnect in lock step.
    return Math.round(exp / 2 + Math.random() * exp / 2)
  }
}

export function parseHostPort (s: string): Endpoint {
  const i = s.lastIndexOf(':')
  let host = s.slice(0, i)
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  return { host, port: Number(s.slice(i + 1)) }
}

function tlsOptions (config: StateConfig, forced: boolean): ConnectionOptions | undefined {
  const t = config.tls
  if (!forced && (t === undefined || !t.enabled)) return undefined
  const out: ConnectionOptions = { rejectUnauthorized: t?.rejectUnauthorized ?? true }
  if (t?.ca !== undefined) out.ca = readFileSync(t.ca)
  if (t?.cert !== undefined) out.cert = readFileSync(t.cert)
  if (t?.key !== undefined) out.key = readFileSync(t.key)
  if (t?.servername !== undefined) out.servername = t.servername
  return out
}

export function resolveConnection (config: StateConfig): ResolvedConnection {
  const envPassword = config.passwordEnv !== undefined ? process.env[config.passwordEnv] : undefined
  const common: RedisOptions = {
    connectTimeout: config.connectTimeoutMs,
    commandTimeout: config.commandTimeoutMs,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    keepAlive: 10_000,
    retryStrategy: backoff(config.reconnect.minDelayMs, config.reconnect.maxDelayMs),
    connectionName: 'ferry'
  }
  if (config.url !== undefined) {
    const u = new URL(config.url)
    const username = config.username ?? (u.username !== '' ? decodeURIComponent(u.username) : undefined)
    const password = config.password ?? envPassword ?? (u.password !== '' ? decodeURIComponent(u.password) : undefined)
    if (username !== undefined) common.username = username
    if (password !== undefined) common.password = password
    const dbText = u.pathname.replace(/^\//, '')
    const db = config.db ?? (dbText === '' ? 0 : Number(dbText))
    if (!Number.isInteger(db) || db < 0) throw new FerryError('FERRY_STATE_ERROR', `invalid database in state.url: ${dbText}`, 500)
    common.db = db
    const tls = tlsOptions(config, u.protocol === 'rediss:')
    if (tls !== undefined) common.tls = tls
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
    return { mode: 'redis', common, endpoints: [{ host, port: u.port === '' ? 6379 : Number(u.port) }] }
  }
  if (config.cluster === undefined) throw new FerryError('FERRY_STATE_ERROR', 'state: backend redis needs url or cluster.nodes', 500)
  if (config.username !== undefined) common.username = config.username
  const password = config.password ?? envPassword
  if (password !== undefined) common.password = password
  const tls = tlsOptions(config, false)
  if (tls !== undefined) common.tls = tls
  return { mode: 'redis-cluster', common, endpoints: config.cluster.nodes.map(parseHostPort) }
}

export function createCommandClient (conn: ResolvedConnection, config: StateConfig): Redis | Cluster {
  if (conn.mode === 'redis') {
    const ep = conn.endpoints[0]!
    // Auto-pipelining: commands issued in the same tick share one write and one round trip,
    // which is what makes a batch (reads issued together, mergeAccess) cost one round trip.
    return new (ioredis().Redis)({ ...conn.common, host: ep.host, port: ep.port, lazyConnect: true, enableAutoPipelining: true })
  }
  const { retryStrategy: _r, enableOfflineQueue: _q, db: _db, ...nodeOptions } = conn.common
  const options: ClusterOptions = {
    enableOfflineQueue: false,
    enableReadyCheck: true,
    // Grouped per node: a batch costs one round trip per node, in parallel.
    enableAutoPipelining: true,
    // Auto-pipelining groups a command by the slot of its first argument; for these two that is
    // the key count (their key count varies), so same-tick calls on other nodes' blocks failed.
    autoPipeliningIgnoredCommands: ['ferryCas', 'ferryDelete'],
    scaleReads: 'master',
    lazyConnect: true,
    clusterRetryStrategy: backoff(config.reconnect.minDelayMs, config.reconnect.maxDelayMs),
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: 8,
    slotsRefreshTimeout: config.connectTimeoutMs,
    redisOptions: nodeOptions
  }
  return new (ioredis().Cluster)(conn.endpoints.map(e => ({ host: e.host, port: e.port })), options)
}

/** Reply errors that mean "try again later", not "your command is wrong". */
const TRANSIENT_REPLY = /^(CLUSTERDOWN|LOADING|TRYAGAIN|MASTERDOWN|READONLY|NOREPLICAS|BUSY|MOVED|ASK|NOAUTH|WRONGPASS|NOSCRIPT)\b/

/**
 * Every failure as a FerryError. Connection-level failures (refused, reset, timed out, not
 * ready, cluster down) are FERRY_STATE_UNAVAILABLE: the caller may serve from cache and retry
 * later. A reply error that is not transient is a bug or foreign data: FERRY_STATE_ERROR.
 */
export function mapRedisError (err: unknown): FerryError {
  if (isFerryError(err)) return err
  const e = err as Error & { name?: string }
  const message = e?.message ?? String(err)
  if (e?.name === 'ReplyError' && !TRANSIENT_REPLY.test(message)) {
    const out = new FerryError('FERRY_STATE_ERROR', `redis: ${message}`, 500)
    ;(out as Error & { cause?: unknown }).cause = err
    return out
  }
  // ioredis refuses a command it has no writable connection for (the offline queue is off):
  // it never reached Redis.
  if (NOT_SENT.test(message)) return unsent(`redis: ${message}`, err)
  return unavailable(`redis: ${message}`, err)
}

const NOT_SENT = /enableOfflineQueue options is false/

export function isUnavailable (err: FerryError): boolean {
  return err.code === 'FERRY_STATE_UNAVAILABLE'
}
