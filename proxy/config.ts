import { z } from 'zod'
import { listenSchema, workersSchema } from '../admin/config.js'
import { tlsSchema } from '../lib/tls.js'
import { isCidr, type GatewayConfig, type SiteConfig } from '../fleet/schema.js'
import type { ReplicationConfig } from '../fleet/replication.js'
import type { LatencyTable } from '../fleet/latency.js'
import type { PlacementConfig } from '../placement/config.js'
import type { StateConfig } from '../state/config.js'
import type { S3Config } from './s3/config.js'

/**
 * The `proxy:`, `health:`, `recorder:` and `sessions:` sections. Every key has a
 * default so that a config file only says what differs; `.describe()` texts are the reference
 * that config/example.yaml and the README repeat.
 */

const pathPatternSchema = z.string()
  .refine(p => p.startsWith('/') && p.includes('{volume}') && p.includes('{block}'),
    'must start with "/" and contain {volume} and {block}, e.g. "/{volume}/{block}"')
  .default('/{volume}/{block}')

export const proxySectionSchema = z.object({
  listen: listenSchema(8080).describe('where clients connect'),
  workers: workersSchema,
  tls: tlsSchema.describe('HTTPS for clients: cert and key PEM files, reloaded when they change; null: plain HTTP'),
  pathPattern: pathPatternSchema.describe('how volume and block are read from the request path; other path segments must match literally'),
  trustedProxies: z.array(z.string().refine(isCidr, 'must be a CIDR')).default([])
    .describe('peers whose X-Forwarded-For is believed; for anyone else the socket address is the client'),
  maxBodyBytes: z.number().int().positive().default(1024 ** 3).describe('largest request body accepted (413 above it)'),
  headersTimeoutMs: z.number().int().positive().default(10_000).describe('time a client has to send the request headers'),
  requestTimeoutMs: z.number().int().nonnegative().default(0)
    .describe('time a client has to send the whole request, body included; 0 = no limit (large uploads), bodyIdleTimeoutMs still applies'),
  bodyIdleTimeoutMs: z.number().int().positive().default(30_000).describe('longest silence while a body streams, either way'),
  idleTimeoutMs: z.number().int().positive().default(5_000).describe('keep-alive idle time before a client connection is closed'),
  upstreamHeadersTimeoutMs: z.number().int().positive().default(30_000).describe('time a gateway has to answer with headers'),
  connectTimeoutMs: z.number().int().positive().default(2_000).describe('time to open a connection to a gateway'),
  connectionsPerGateway: z.number().int().positive().default(128).describe('keep-alive connections pooled per gateway'),
  retries: z.number().int().min(0).max(10).default(2)
    .describe('how many other gateways a bodiless idempotent request (GET, HEAD) is retried on when a connection fails'),
  writeHoldMs: z.number().int().positive().max(30_000).default(2_000)
    .describe('retired with round 1\'s cut-over (moves are membership changes and hold no write): accepted so older files load, ignored'),
  via: z.string().regex(/^[\w.-]+$/).default('ferry').describe('pseudonym in the Via header'),
  shutdownGraceMs: z.number().int().nonnegative().default(10_000).describe('how long in-flight requests may run on shutdown before sockets are cut')
}).strict().default({})

export const healthSectionSchema = z.object({
  passive: z.object({
    failures: z.number().int().positive().default(3).describe('consecutive failures (connect errors, timeouts, 5xx) that eject a gateway'),
    baseEjectMs: z.number().int().positive().default(1_000).describe('first ejection time; doubles on each ejection in a row'),
    maxEjectMs: z.number().int().positive().default(30_000).describe('longest ejection time')
  }).strict().default({}),
  active: z.object({
    enabled: z.boolean().default(true),
    path: z.string().startsWith('/').default('/healthz').describe('probed with GET; any status below 500 counts as healthy'),
    intervalMs: z.number().int().positive().default(2_000),
    timeoutMs: z.number().int().positive().default(1_000),
    unhealthyThreshold: z.number().int().positive().default(2).describe('failed probes in a row that mark a gateway down'),
    healthyThreshold: z.number().int().positive().default(1).describe('good probes in a row that mark it up again')
  }).strict().default({})
}).strict().default({})

export const recorderSectionSchema = z.object({
  enabled: z.boolean().default(true).describe('record every proxied access inline'),
  halfLifeS: z.number().positive().default(600).describe('half-life of the decayed access score: an access this old weighs half'),
  burstHalfLifeS: z.number().positive().default(10).describe('half-life of the short score that burst detection compares with the long one'),
  burstFactor: z.number().gt(1).default(4).describe('short-term rate over long-term rate above which a block is bursting'),
  maxBlocks: z.number().int().positive().default(200_000).describe('blocks tracked per proxy; the least recently used are evicted past this'),
  accessLog: z.string().nullable().default(null).describe('path of a JSON-lines access log, or null for none'),
  flushIntervalMs: z.number().int().min(50).max(1000).default(1000)
    .describe('how often access deltas are merged into the shared store (at least once a second)'),
  profileIntervalMs: z.number().int().min(100).default(5_000)
    .describe('how often a proxy publishes its access-profile summary to the planner'),
  maxPendingDeltas: z.number().int().positive().default(100_000)
    .describe('deltas kept while the store is unreachable; beyond this they are dropped and counted')
}).strict().default({})

export const sessionsSectionSchema = z.object({
  enabled: z.boolean().default(false).describe('sticky sessions: bind a client session to a gateway per volume, state in the shared store'),
  cookie: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).default('ferry_session').describe('cookie that carries the session id'),
  header: z.string().regex(/^[A-Za-z0-9-]{1,64}$/).default('x-ferry-session').describe('header that carries the session id (wins over the cookie)'),
  setCookie: z.boolean().default(true).describe('give a session cookie to clients that have neither cookie nor header'),
  ttlS: z.number().int().positive().default(1800).describe('a session unused this long expires (in the store)'),
  cacheMs: z.number().int().nonnegative().default(2000)
    .describe('how long a proxy uses its cached copy of a session before reading it from the store again')
}).strict().default({})

export type ProxySection = z.infer<typeof proxySectionSchema>
export type HealthSection = z.infer<typeof healthSectionSchema>
export type RecorderSection = z.infer<typeof recorderSectionSchema>
export type SessionsSection = z.infer<typeof sessionsSectionSchema>

/**
 * The parts of the ferry config the proxy reads (a FerryConfig fits): its own sections, the fleet,
 * and the few settings of other sections it follows. Named here rather than imported as the whole
 * FerryConfig so that the proxy depends on config/ for nothing: config/ composes this folder's
 * sections, and the arrow runs one way.
 */
export interface ProxyConfigPieces {
  sites: readonly SiteConfig[]
  gateways: readonly GatewayConfig[]
  proxy: ProxySection
  health: HealthSection
  recorder: RecorderSection
  sessions: SessionsSection
  s3: S3Config
  state: StateConfig
  replication: ReplicationConfig
  placement: PlacementConfig
  /** The zone under which S3's virtual-hosted names (`<bucket>.<zone>`) are answered. */
  dns: { zone: string }
  /**
   * A write to a set that changed in flight settles within this (the planner's own bound); and
   * the latency model between sites, by which a read picks the nearest in-sync member.
   */
  planner: { migration: { settleMs: number }, latency: LatencyTable }
}
