import { z } from 'zod'
import { KEY_PREFIX_PATTERN } from './keys.js'

/**
 * The `state:` section of the config file. Every key has a default, so an empty section (or
 * none) gives the in-memory store the sandbox uses.
 */

const hostPort = z.string().refine(s => {
  const i = s.lastIndexOf(':')
  if (i <= 0) return false
  const port = Number(s.slice(i + 1))
  return Number.isInteger(port) && port > 0 && port < 65536
}, 'must be host:port, e.g. 10.0.0.7:6379')

const redisUrl = z.string().refine(s => {
  try {
    const u = new URL(s)
    return u.protocol === 'redis:' || u.protocol === 'rediss:'
  } catch { return false }
}, 'must be a redis:// or rediss:// URL')

const ms = (def: number, what: string): z.ZodDefault<z.ZodNumber> =>
  z.number().int().positive().default(def).describe(what)

export const stateTlsSchema = z.object({
  enabled: z.boolean().default(true).describe('use TLS (implied by a rediss:// url)'),
  ca: z.string().optional().describe('path of a PEM file with the CA certificate(s) to trust instead of the system store'),
  cert: z.string().optional().describe('path of a PEM client certificate (mutual TLS)'),
  key: z.string().optional().describe('path of the PEM private key of `cert`'),
  servername: z.string().optional().describe('SNI server name and the name the certificate must carry, when it differs from the host'),
  rejectUnauthorized: z.boolean().default(true).describe('verify the server certificate; turn off only for a test set-up')
}).strict()

export const stateConfigSchema = z.object({
  backend: z.enum(['memory', 'redis']).default('memory')
    .describe('memory: one process, nothing shared or kept across restarts (the sandbox); redis: shared by every ferry process'),
  url: redisUrl.optional()
    .describe('standalone Redis, e.g. redis://user:pass@10.0.0.7:6379/0 (rediss:// for TLS); exclusive with cluster'),
  cluster: z.object({
    nodes: z.array(hostPort).min(1).describe('some Cluster nodes as host:port; the rest are discovered')
  }).strict().optional().describe('Redis Cluster instead of a standalone server'),
  keyPrefix: z.string().regex(KEY_PREFIX_PATTERN, 'letters, digits, ":", ".", "_", "-" (no braces: they would break hash tags)').default('ferry:')
    .describe('prefix of every key and of the event channel; lets several ferry fleets share one Redis'),
  username: z.string().optional().describe('ACL user (Redis 6+); overrides the one in `url`'),
  password: z.string().optional().describe('password; overrides the one in `url`. Prefer passwordEnv'),
  passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional()
    .describe('name of an environment variable holding the password (keeps it out of the file)'),
  db: z.number().int().min(0).max(255).optional().describe('database number (standalone only); overrides the one in `url`'),
  tls: stateTlsSchema.optional().describe('TLS options; a rediss:// url turns TLS on with defaults'),
  connectTimeoutMs: ms(2000, 'give up a connection attempt after this long (reconnection continues in the background)'),
  commandTimeoutMs: ms(1000, 'fail a call with FERRY_STATE_UNAVAILABLE when the backend has not answered within this'),
  reconnect: z.object({
    minDelayMs: ms(100, 'first reconnection delay'),
    maxDelayMs: ms(2000, 'reconnection delay cap (the delay doubles up to it, with jitter): how late after the store returns a process may still be disconnected — writes that must record a member\'s failure wait for it (up to 10 s, then 503), and the planner\'s planner.migration.afterStoreOutageMs must cover it, a reconnection and a reload of the locations')
  }).strict().default({}).describe('background reconnection after the connection is lost'),
  cutOffServeMs: ms(10_000, 'a process that cannot confirm the store\'s generation (the store is down or out of reach) routes from its location cache for this long, then answers block requests 503 FERRY_LOCATIONS_UNCONFIRMED until it reaches the store again; a store that comes back empty is rebuilt from the gateways only this long (plus 1 s) after it came back, so nothing such a process acknowledged is hidden by the rebuild and nothing it serves is older than a write acknowledged since'),
  affinity: z.object({
    halfLifeMs: ms(600_000, 'half-life of access scores: an access this old weighs half as much as one now'),
    ttlMs: ms(86_400_000, 'a block with no access for this long is forgotten (bounds memory); refreshed by every merge')
  }).strict().default({}).describe('the merged affinity map'),
  telemetry: z.object({
    maxSamples: z.number().int().positive().max(100_000).default(2000).describe('samples kept per gateway (oldest dropped)'),
    maxAgeMs: ms(6 * 3600_000, 'samples older than this are dropped')
  }).strict().default({}).describe('gateway telemetry samples'),
  history: z.object({
    limit: z.number().int().positive().max(10_000).default(32).describe('version-history entries kept per block (oldest dropped)')
  }).strict().default({}).describe('per-block version history'),
  migrations: z.object({
    limit: z.number().int().positive().max(1_000_000).default(10_000).describe('finished migrations kept in the log (active ones are never dropped)')
  }).strict().default({}).describe('the migration log'),
  sessions: z.object({
    maxBytes: z.number().int().positive().max(1 << 20).default(16 * 1024).describe('largest serialised session (bindings + state) accepted')
  }).strict().default({}).describe('sticky sessions'),
  tombstoneTtlMs: ms(7 * 86_400_000, 'how long a deleted location remembers its epoch (so epochs never go backwards for a re-created block)'),
  maxMessageBytes: z.number().int().positive().max(1 << 20).default(64 * 1024).describe('largest message accepted by publish()')
}).strict().superRefine((cfg, ctx) => {
  if (cfg.tls?.key !== undefined && cfg.tls.cert === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['tls', 'cert'], message: '`tls.key` needs `tls.cert`' })
  }
  if (cfg.reconnect.minDelayMs > cfg.reconnect.maxDelayMs) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['reconnect', 'minDelayMs'], message: 'must not exceed maxDelayMs' })
  }
  if (cfg.cutOffServeMs < 2 * cfg.commandTimeoutMs) {
    // The generation is re-read every quarter of it: one slow answer must not stop the cache.
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cutOffServeMs'], message: `must be at least twice commandTimeoutMs (${cfg.commandTimeoutMs})` })
  }
  if (cfg.backend !== 'redis') return
  if (cfg.url === undefined && cfg.cluster === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['url'], message: 'backend "redis" needs `url` or `cluster.nodes`' })
  }
  if (cfg.url !== undefined && cfg.cluster !== undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cluster'], message: 'give either `url` or `cluster`, not both' })
  }
  if (cfg.cluster !== undefined && cfg.db !== undefined && cfg.db !== 0) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['db'], message: 'Redis Cluster has only database 0' })
  }
}).describe('the shared state store: block locations, affinity, sessions, telemetry, migration log, leader lease')

export type StateConfig = z.infer<typeof stateConfigSchema>
export type StateConfigInput = z.input<typeof stateConfigSchema>

/** The section with every default applied: `parseStateConfig({})` is the in-memory store. */
export function parseStateConfig (input: StateConfigInput = {}): StateConfig {
  return stateConfigSchema.parse(input)
}
