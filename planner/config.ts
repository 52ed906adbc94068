import { z } from 'zod'

/**
 * The `planner:` section: leader election, the latency model the rebalancer ranks gateways by,
 * the planner's own view of gateway health, the rebalancer's hysteresis and budget, and the
 * migration engine's limits. Every key has a default, so `planner: {}` (or no section) is a
 * working planner; `.describe()` texts are the reference the README repeats.
 */

const ms = (def: number, what: string): z.ZodDefault<z.ZodNumber> =>
  z.number().int().positive().default(def).describe(what)

const siteId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'site name must be 1-63 letters, digits, "_" or "-"')

export const latencySchema = z.object({
  sameSiteMs: z.number().nonnegative().default(2).describe('access latency from a client to a gateway in its own site, in ms'),
  defaultMs: z.number().nonnegative().default(100).describe('access latency between two sites that `between` does not list, in ms'),
  between: z.record(siteId, z.record(siteId, z.number().nonnegative())).default({})
    .describe('measured or configured latency between sites: between.<siteA>.<siteB> = ms; one direction is enough (the other is assumed equal unless given)')
}).strict().default({})

export const plannerHealthSchema = z.object({
  probeIntervalMs: ms(2000, 'how often the planner probes each gateway itself (GET probePath)'),
  probeTimeoutMs: ms(1000, 'a probe that has not answered in this long failed'),
  probePath: z.string().startsWith('/').default('/healthz').describe('path probed on each gateway; any status below 500 is up'),
  unhealthyThreshold: z.number().int().positive().default(2).describe('failed probes in a row before the planner considers a gateway down'),
  healthyThreshold: z.number().int().positive().default(1).describe('good probes in a row before a down gateway is up again'),
  reportTtlMs: ms(30_000, 'how long a proxy\'s "gateway down" report (gateway-health message) counts unless it is repeated or revoked')
}).strict().default({})

export const rebalancerSchema = z.object({
  enabled: z.boolean().default(true).describe('move blocks towards the gateway their accesses prefer'),
  intervalMs: ms(30_000, 'how often the affinity map is scanned for moves'),
  margin: z.number().min(0).max(0.95).default(0.25)
    .describe('hysteresis: a block moves only when the best gateway cuts its expected access latency by at least this fraction of the current one'),
  minGainMs: z.number().nonnegative().default(1).describe('and by at least this many ms (absolute floor, so near-equal sites never trade blocks)'),
  minDwellMs: z.number().int().nonnegative().default(600_000)
    .describe('a block stays at least this long where it was last placed or moved before it may move again (no ping-pong)'),
  // 0.1, not 1 (until 2026-12-05): at 1 a block read once never moved (its score is below 1 by
  // the next round), which cost the placement benchmark 1.2 ms (41.33 against 40.15 ms, NASA
  // trace) and made the live rebalancer skip 86 % of its candidates in the fleet replay; 0
  // gains 0.15 ms more but moves long-dead blocks (below 0.1: no access for 3.3 half-lives)
  // by the placement prior alone (BENCHMARKS.md "Placement", minScore sweep).
  minScore: z.number().nonnegative().default(0.1).describe('blocks whose decayed access score (all sites) is below this are too cold to be worth a move for their own gain (0.1: a block read once moves within about 3 half-lives of the read; an older one stays unless the co-access signal pulls it or it must make room)'),
  headroom: z.number().min(0).max(0.5).default(0.02).describe('fraction of each bounded gateway\'s capacity kept free by moving its coldest blocks away (within the move budget), so that new blocks find room where first-touch placement puts them; a hot block may also push a much colder one off a full gateway'),
  maxMovesPerInterval: z.number().int().nonnegative().default(64).describe('move budget: migrations started per interval'),
  maxBytesPerInterval: z.number().int().nonnegative().default(1024 ** 3).describe('move budget: bytes of the blocks moved per interval (0 = no byte limit)'),
  coAccess: z.object({
    enabled: z.boolean().default(false).describe('move the cold blocks of a volume towards the sites reading the volume now, before their own first access from there (planner/prediction.ts; off by default: on the NASA trace it buys nothing for 1.8× the bytes, BENCHMARKS.md "Placement")'),
    priorWeight: z.number().nonnegative().default(1).describe('pseudo-count (decayed accesses) of the expected site mix in a block\'s ranking — the placement model\'s prior shares, blended with the volume\'s current readers when co-access is on (used whether or not it is): a block with more traffic of its own than this follows its own traffic'),
    activityHalfLifeMs: ms(120_000, 'how long a site\'s reading of a volume keeps pulling the volume\'s other blocks'),
    activityScale: z.number().nonnegative().default(4).describe('recent accesses of a volume at which its readers weigh as much as the placement model\'s expected mix')
  }).strict().default({}).describe('the predictive signal: co-access by volume')
}).strict().default({})

export const migrationSchema = z.object({
  concurrency: z.number().int().positive().max(1024).default(4).describe('migrations copying at once, across all gateways'),
  bandwidthBytesPerSec: z.number().int().nonnegative().default(0)
    .describe('copy bandwidth shared by all migrations (token bucket); 0 = unlimited'),
  burstBytes: z.number().int().positive().default(1024 * 1024).describe('token bucket depth: bytes that may be sent at once after an idle period'),
  settleMs: ms(250, 'after the target joins a block\'s set, wait this long before copying, so every proxy sends it every write from then on (>= the store\'s notification delay); also between removing a source and deleting its copy'),
  cutoverTimeoutMs: ms(1500, 'retired with round 1\'s cut-over (moves are membership changes): accepted so older files load, ignored'),
  maxRecopies: z.number().int().nonnegative().default(3).describe('copies repeated when the target still differs from an unchanging source after the copy, before giving up'),
  lateWriteMs: ms(35_000, 'how long a write may still land on a block\'s source after it landed on the joining target (>= proxy.upstreamHeadersTimeoutMs): a target that holds bytes never seen on the source is copied over again only once the source has stayed the same this long, since they may be a write still on its way to the source'),
  gracePeriodMs: z.number().int().nonnegative().default(30_000)
    .describe('after the source leaves the in-sync set, how long it stays a member and keeps its copy (for reads routed there, and writes sent before the move) before it is removed and its copy deleted'),
  copyTimeoutMs: ms(60_000, 'a whole block copy (GET from the source streamed into a PUT to the target) must finish within this, and so must the check that the target holds the source\'s bytes'),
  requestTimeoutMs: ms(10_000, 'time allowed for a HEAD or DELETE on a gateway'),
  connectionsPerGateway: z.number().int().positive().default(16).describe('keep-alive connections the planner keeps to each gateway'),
  maxQueued: z.number().int().positive().default(100_000).describe('migrations waiting for a slot; submissions beyond this are refused'),
  progressIntervalMs: ms(500, 'how often a running copy writes its progress (bytes) to the migration log'),
  retryDelayMs: z.number().int().nonnegative().default(2_000).describe('after the store or a gateway failed a cleanup step, wait this long before trying it again'),
  recoveryIntervalMs: ms(5_000, 'how often the leader looks for migrations left unfinished (a rollback that could not be written, a predecessor\'s work) and completes or rolls them back'),
  afterStoreOutageMs: ms(8_000, 'after the planner lost the shared store and has it back, wait this long before changing any block\'s set again, so that every proxy has reconnected and reloaded its locations first (>= state.reconnect.maxDelayMs plus a connection): a proxy still reconnecting routes from what it knew before the outage')
}).strict().default({})

export const predictionSchema = z.object({
  enabled: z.boolean().default(true)
    .describe('score every gateway\'s telemetry with the health model and evacuate a gateway predicted to fail (false: reactive only)'),
  model: z.string().min(1).optional()
    .describe('path of a trained model file (ferry train); reloaded when the file changes. Omitted: an untrained model that learns online'),
  tickMs: ms(1000, 'how often new telemetry is read, scored and fed to the trigger'),
  retrainIntervalMs: z.number().int().nonnegative().default(0)
    .describe('retrain the model from the stored telemetry history this often (and save it to `model` when set); 0 = never'),
  threshold: z.number().gt(0).lt(1).default(0.5).describe('predicted health below which a gateway is at risk'),
  confidenceThreshold: z.number().min(0).max(1).default(0.5).describe('confidence at or above which a low predicted health is believed'),
  consecutive: z.number().int().positive().default(3).describe('scored ticks in a row at risk (with confidence) before the gateway is evacuated'),
  clearMargin: z.number().nonnegative().max(0.9).default(0.15).describe('the evacuation is lifted only once health reaches threshold + clearMargin ...'),
  clearConsecutive: z.number().int().positive().default(10).describe('... for this many scored ticks in a row (hysteresis: no flapping)'),
  decisionLogSize: z.number().int().positive().max(100_000).default(256).describe('trigger decisions kept for GET /v1/health/decisions (oldest dropped)')
}).strict().superRefine((p, ctx) => {
  if (p.threshold + p.clearMargin > 1) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['clearMargin'], message: 'threshold + clearMargin must be at most 1' })
}).default({})

export const nodeExporterConfigSchema = z.object({
  intervalMs: z.number().int().min(100).default(5000).describe('how often each node_exporter is scraped'),
  timeoutMs: z.number().int().positive().default(3000).describe('a scrape that has not completed in this long failed'),
  targets: z.record(z.string(), z.union([
    z.string().url(),
    z.object({
      url: z.string().url(),
      disk: z.string().regex(/^[\w.!-]{1,64}$/).optional().describe('device label to report (default: the busiest)')
    }).strict()
  ])).default({}).describe('gateway id → node_exporter URL (e.g. http://gw1:9100/metrics), or {url, disk}')
}).strict()

export type NodeExporterConfig = z.infer<typeof nodeExporterConfigSchema>

export const plannerSectionSchema = z.object({
  holder: z.string().regex(/^[\x21-\x7e]{1,200}$/).optional()
    .describe('name under which this planner takes the leader lease; default <hostname>:<pid>'),
  lease: z.object({
    ttlMs: ms(10_000, 'leader lease time to live: a planner that stops renewing is replaced after this long'),
    renewIntervalMs: ms(3_000, 'how often the leader renews its lease and a standby tries to take it')
  }).strict().default({}).describe('leader election: one planner acts, the others stand by'),
  latency: latencySchema.describe('the latency model gateways are ranked by'),
  health: plannerHealthSchema.describe('gateway health as the planner sees it: its own probes plus the proxies\' reports'),
  rebalancer: rebalancerSchema.describe('periodic moves towards each block\'s best gateway (hysteresis, budget)'),
  migration: migrationSchema.describe('the migration engine: copy, cut-over, flip, cleanup'),
  prediction: predictionSchema.describe('predictive health: the health model scores telemetry; a gateway predicted to fail is evacuated before it does'),
  nodeExporter: nodeExporterConfigSchema.default({}).describe('telemetry scraped from Prometheus node_exporter for gateways that cannot run the agent (the leader scrapes)'),
  admin: z.object({
    requireToken: z.boolean().default(true)
      .describe('POST /v1/migrations and POST/DELETE /v1/gateways/:id/drain need the admin bearer token (admin.token or FERRY_ADMIN_TOKEN); false only on a closed loopback sandbox')
  }).strict().default({}).describe('the planner\'s operator API')
}).strict().superRefine((cfg, ctx) => {
  if (cfg.lease.renewIntervalMs * 2 > cfg.lease.ttlMs) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['lease', 'renewIntervalMs'], message: 'must be at most half of lease.ttlMs, or a single late renewal loses the lease' })
  }
  if (cfg.migration.settleMs >= cfg.migration.copyTimeoutMs) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['migration', 'settleMs'], message: 'must be below migration.copyTimeoutMs' })
  }
}).default({})

export type PlannerConfig = z.infer<typeof plannerSectionSchema>
export type PlannerConfigInput = z.input<typeof plannerSectionSchema>
export type LatencyConfig = z.infer<typeof latencySchema>
export type RebalancerConfig = z.infer<typeof rebalancerSchema>
export type MigrationConfig = z.infer<typeof migrationSchema>
export type MigrationConfigInput = z.input<typeof migrationSchema>
export type PlannerHealthConfig = z.infer<typeof plannerHealthSchema>
export type PredictionConfig = z.infer<typeof predictionSchema>
export type PredictionConfigInput = z.input<typeof predictionSchema>

/** Parses the section; throws the ZodError (the config loader turns it into file:line:key errors). */
export function parsePlannerConfig (input: unknown): PlannerConfig {
  return plannerSectionSchema.parse(input ?? {})
}
