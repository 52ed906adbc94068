import { z } from 'zod'
import { gatewaySchema, siteSchema } from '../fleet/schema.js'
import { replicationSectionSchema } from '../fleet/replication.js'
import { adminSectionSchema } from '../admin/config.js'
import { healthSectionSchema, proxySectionSchema, recorderSectionSchema, sessionsSectionSchema } from '../proxy/config.js'
import { s3SectionSchema } from '../proxy/s3/config.js'
import { stateConfigSchema } from '../state/config.js'
import { dnsSectionSchema } from '../dns/config.js'
import { plannerSectionSchema } from '../planner/config.js'
import { placementSectionSchema } from '../placement/config.js'

/**
 * The whole file. Each section's schema lives beside the code it configures; this module only
 * assembles them and checks what spans sections (a gateway's site must exist, ids are unique).
 */
export const configSchema = z.object({
  log: z.object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    format: z.enum(['json', 'pretty', 'auto']).default('json').describe('json lines, human-readable, or auto: pretty on a terminal (takes effect on restart)')
  }).strict().default({}),
  sites: z.array(siteSchema).default([]).describe('sites: client subnets and the edges that serve them'),
  gateways: z.array(gatewaySchema).min(1, 'at least one gateway is needed').describe('the storage gateways behind ferry'),
  proxy: proxySectionSchema,
  health: healthSectionSchema,
  recorder: recorderSectionSchema,
  sessions: sessionsSectionSchema,
  s3: s3SectionSchema,
  admin: adminSectionSchema,
  state: stateConfigSchema.default({}),
  dns: dnsSectionSchema.default({}),
  planner: plannerSectionSchema.default({}),
  replication: replicationSectionSchema,
  placement: placementSectionSchema.default({})
}).strict().superRefine((cfg, ctx) => {
  if (cfg.planner.migration.afterStoreOutageMs < cfg.state.reconnect.maxDelayMs) {
    // A proxy may still be waiting to reconnect when the planner changes a set it cannot hear of.
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['planner', 'migration', 'afterStoreOutageMs'], message: `afterStoreOutageMs (${cfg.planner.migration.afterStoreOutageMs}) must be at least state.reconnect.maxDelayMs (${cfg.state.reconnect.maxDelayMs}): proxies reconnect that late` })
  }
  if (cfg.replication.minInSync > cfg.replication.factor) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['replication', 'minInSync'], message: `minInSync (${cfg.replication.minInSync}) cannot exceed factor (${cfg.replication.factor})` })
  }
  if (cfg.replication.factor > cfg.gateways.length && cfg.gateways.length > 0) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['replication', 'factor'], message: `factor ${cfg.replication.factor} needs at least that many gateways (${cfg.gateways.length} configured)` })
  }
  const siteNames = new Set<string>()
  cfg.sites.forEach((s, i) => {
    if (siteNames.has(s.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['sites', i, 'name'], message: `duplicate site "${s.name}"` })
    siteNames.add(s.name)
  })
  const ids = new Set<string>()
  cfg.gateways.forEach((g, i) => {
    if (ids.has(g.id)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['gateways', i, 'id'], message: `duplicate gateway id "${g.id}"` })
    ids.add(g.id)
    if (cfg.sites.length > 0 && !siteNames.has(g.site)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['gateways', i, 'site'], message: `unknown site "${g.site}" (sites: ${[...siteNames].join(', ')})` })
    }
  })
  // A memory store lives in one process: N workers would each keep their own locations and
  // sessions, and a block moved through one would be read through another from the old place.
  if (cfg.state.backend === 'memory') {
    for (const role of ['proxy', 'dns'] as const) {
      const n = cfg[role].workers
      if (n !== 'auto' && n > 1) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [role, 'workers'], message: `${n} workers cannot share state.backend "memory" (it lives in one process): use state.backend "redis", or workers: 1` })
    }
  }
  for (const id of Object.keys(cfg.planner.nodeExporter.targets)) {
    if (!ids.has(id)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['planner', 'nodeExporter', 'targets', id], message: `unknown gateway "${id}" (gateways: ${[...ids].join(', ')})` })
  }
})

export type FerryConfig = z.infer<typeof configSchema>
export type FerryConfigInput = z.input<typeof configSchema>
