import { z } from 'zod'
import { tlsSchema } from '../lib/tls.js'

/**
 * The `admin:` section. Every process has an admin listener whatever its roles, so the section
 * belongs to admin/, not to any role.
 */

/** A TCP listen address with a default port; the proxy's listener uses the same shape. */
export const listenSchema = (port: number) => z.object({
  host: z.string().default('127.0.0.1').describe('address to bind; "::" for every IPv6 and IPv4 address'),
  port: z.number().int().min(0).max(65535).default(port).describe('TCP port; 0 picks a free one')
}).strict().default({})

/**
 * How many processes serve a data-plane listener (the proxy's, DNS's). Each is a full data plane
 * on the same sockets; all shared state is in the store, so N of them act as N proxies would.
 */
export const workersSchema = z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default('auto')
  .describe('processes serving this listener, sharing its sockets: "auto" = one per core (1 with state.backend memory, which one process owns), or a number')

export const adminSectionSchema = z.object({
  listen: listenSchema(9090).describe('admin, health and metrics listener'),
  tls: tlsSchema.describe('HTTPS for the admin listener: cert and key PEM files, reloaded when they change; null: plain HTTP'),
  token: z.string().min(16, 'admin token must be at least 16 characters').nullable().default(null)
    .describe('bearer token required by mutating endpoints; null refuses them all. FERRY_ADMIN_TOKEN overrides it')
}).strict().default({})

export type AdminSection = z.infer<typeof adminSectionSchema>
