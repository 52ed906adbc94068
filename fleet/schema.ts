import { z } from 'zod'
import net from 'node:net'

/**
 * The fleet: gateways and the sites they and their clients live in. Proxy, DNS, planner, upstream
 * and recovery all read it, so it lives in its own folder below all of them (config/ only
 * composes it into the file's schema) rather than beside any one of them.
 */

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/

/**
 * How ferry talks to a gateway (upstream/README.md): `ferry`, the reference gateway, whose ETag
 * is the content's SHA-256; `webdav`, nginx's dav module, whose ETag is mtime-size and so proves
 * nothing about the bytes; `s3`, any S3 gateway, reached with SigV4-signed requests, whose
 * single-part ETag is the content's MD5. Copies, cut-over checks and inventory follow the kind.
 */
export const GATEWAY_KINDS = ['ferry', 'webdav', 's3'] as const
export type GatewayKind = typeof GATEWAY_KINDS[number]

/** Kinds DESIGN.md names that are not implemented yet: refused with a message saying so, not as a typo. */
const PLANNED_KINDS: readonly string[] = []

export function isGatewayKind (k: string): k is GatewayKind {
  return (GATEWAY_KINDS as readonly string[]).includes(k)
}

const kindSchema = z.string().default('ferry').refine(isGatewayKind, k => ({
  message: PLANNED_KINDS.includes(k)
    ? `gateway kind "${k}" is not supported yet (supported: ${GATEWAY_KINDS.join(', ')})`
    : `gateway kind must be one of ${GATEWAY_KINDS.join(', ')}, got "${k}"`
}))

/**
 * Where an `s3` gateway keeps ferry's blocks: one bucket for all volumes, block `/{volume}/{block}`
 * at key `<prefix><volume>/<block>`. One bucket rather than one per volume: ferry never has to
 * create buckets as volumes appear (CreateBucket needs rights a data key often lacks), and a
 * volume's blocks are one ListObjectsV2 prefix.
 */
export const s3GatewaySchema = z.object({
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name: 3-63 lower-case letters, digits, "." or "-"').describe('the bucket that holds every volume'),
  prefix: z.string().max(512).regex(/^([^/].*\/)?$/, 'empty, or not starting with "/" and ending with "/"').default('').describe('key prefix before <volume>/<block>'),
  region: z.string().regex(/^[a-z0-9-]{1,32}$/).default('us-east-1').describe('the region requests are signed for'),
  accessKeyId: z.string().min(3).max(128).describe('the access key ferry signs with'),
  secret: z.string().min(8).optional().describe('the secret key, inline (prefer secretFile or secretEnv)'),
  secretFile: z.string().optional().describe('path of a file holding the secret key (surrounding whitespace ignored), read at start and on reload'),
  secretEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional().describe('name of an environment variable holding the secret key')
}).strict().superRefine((c, ctx) => {
  const n = [c.secret, c.secretFile, c.secretEnv].filter(v => v !== undefined).length
  if (n !== 1) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['secret'], message: 'give exactly one of secret, secretFile, secretEnv' })
})

export type S3GatewayConfig = z.infer<typeof s3GatewaySchema>

/**
 * How ferry checks an `https` gateway and proves itself to it, for every client of the gateway
 * (the proxy's pools and probes, the planner's copies, checks and probes, the inventory): PEM
 * files, as the listeners' `tls` (lib/tls.ts) and the store's `state.tls` name theirs. Read when
 * the config is loaded (a file that cannot be used refuses the config) and again on every reload,
 * so a renewed certificate is taken by SIGHUP. Shared by many gateways through a YAML anchor.
 */
export const gatewayTlsSchema = z.object({
  ca: z.string().min(1).optional().describe('PEM file of the CA certificate(s) the gateway\'s certificate must chain to, instead of the system store'),
  cert: z.string().min(1).optional().describe('PEM client certificate ferry presents to the gateway (mutual TLS)'),
  key: z.string().min(1).optional().describe('PEM private key of `cert`'),
  servername: z.string().min(1).max(253).optional().describe('the name the gateway\'s certificate must carry (and the SNI sent), when it is not the url\'s host')
}).strict().superRefine((c, ctx) => {
  if ((c.cert === undefined) !== (c.key === undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [c.cert === undefined ? 'cert' : 'key'], message: 'a client certificate needs both cert and key' })
})

export type GatewayTlsConfig = z.infer<typeof gatewayTlsSchema>

const gatewayObject = z.object({
  /** Stable gateway id: used in routes, metrics, DNS names (`<id>.gw.<zone>`). */
  id: z.string().regex(idPattern, 'gateway id must be 1-63 letters, digits, "_" or "-", starting with a letter or digit'),
  /** Base URL of the gateway's block API, e.g. http://10.0.0.5:9001 */
  url: z.string().url().refine(isHttpUrlOrUnparseable, 'gateway url must be http or https'),
  /** What speaks at `url`: `ferry` (the reference gateway), `webdav` (nginx's dav module) or `s3`. */
  kind: kindSchema,
  /** The site the gateway is in (one of `sites[].name`). */
  site: z.string().min(1),
  /** Capacity in bytes; the planner never fills a gateway past it. 0 = unlimited. */
  capacityBytes: z.number().int().nonnegative().default(0),
  /** Kind `s3` only: bucket mapping and credentials. */
  s3: s3GatewaySchema.optional(),
  /** An `https` url only: the CA to trust and the client certificate to present. */
  tls: gatewayTlsSchema.optional()
}).strict()

export const gatewaySchema = gatewayObject.superRefine((g, ctx) => {
  if (g.kind === 's3' && g.s3 === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['s3'], message: 'a gateway of kind s3 needs an s3 section (bucket, accessKeyId, secret)' })
  if (g.kind !== 's3' && g.s3 !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['s3'], message: `an s3 section is only for gateways of kind s3 (this one is ${g.kind})` })
  if (g.tls !== undefined && !/^https:/i.test(g.url)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['tls'], message: 'a tls section is only for an https:// gateway url' })
})

const cidrSchema = z.string().refine(isCidr, 'must be a CIDR such as 10.1.0.0/16 or 2001:db8::/32')

export const siteSchema = z.object({
  name: z.string().regex(idPattern, 'site name must be 1-63 letters, digits, "_" or "-"'),
  /** Client subnets that belong to this site. */
  subnets: z.array(cidrSchema).default([]),
  /** Addresses of the ferry edges (proxies) at this site: what DNS answers for data held here. */
  edges: z.array(z.string().refine(s => net.isIP(s) !== 0, 'must be an IPv4 or IPv6 address')).default([])
}).strict()

export type GatewayConfig = z.infer<typeof gatewaySchema>
export type SiteConfig = z.infer<typeof siteSchema>

export function isCidr (s: string): boolean {
  const slash = s.indexOf('/')
  if (slash < 0) return false
  const ip = s.slice(0, slash)
  const bitsText = s.slice(slash + 1)
  if (!/^\d{1,3}$/.test(bitsText)) return false
  const family = net.isIP(ip)
  const bits = Number(bitsText)
  return (family === 4 && bits <= 32) || (family === 6 && bits <= 128)
}

/**
 * zod runs a refinement even when an earlier check such as `.url()` has failed, so this must not
 * assume a parseable URL: an unparseable one is `.url()`'s to report, and reporting it twice
 * would only add noise.
 */
function isHttpUrlOrUnparseable (s: string): boolean {
  let u: URL
  try { u = new URL(s) } catch { return true }
  return u.protocol === 'http:' || u.protocol === 'https:'
}
