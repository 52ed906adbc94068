import { z } from 'zod'
import { gatewaySchema, siteSchema } from '../fleet/schema.js'
import { adminSectionSchema } from '../admin/config.js'
import { healthSectionSchema, proxySectionSchema, recorderSectionSchema, sessionsSectionSchema } from '../proxy/config.js'
import { stateConfigSchema } from '../state/config.js'
import { dnsSectionSchema } from '../dns/config.js'
import { plannerSectionSchema } from '../planner/config.js'

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
  admin: adminSectionSchema,
  state: stateConfigSchema.default({}),
  dns: dnsSectionSchema.default({}),
  planner: plannerSectionSchema.default({})
}).strict().superRefine((cfg, ctx) => {
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
})

export type FerryConfig = z.infer<typeof configSchema>
export type FerryConfigInput = z.input<typeof configSchema>
