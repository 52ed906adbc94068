import net from 'node:net'
import { z } from 'zod'
import { workersSchema } from '../admin/config.js'
import { isCidr } from '../fleet/schema.js'

/**
 * The `dns:` section. Every key has a default so that a config file only says what differs;
 * the `.describe()` texts are the reference that dns/README.md repeats.
 */

// A DNS name as an operator writes it: labels of 1-63 octets, at most 253 characters in text
// form (255 on the wire), optional trailing dot. Kept lower case because every comparison the
// server makes is case-insensitive (RFC 4343) and the cache is keyed on lower-case names.
const dnsName = z.string()
  .transform(s => s.toLowerCase().replace(/\.$/, ''))
  .refine(s => s.length > 0 && s.length <= 253 && s.split('.').every(l => /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l)),
    'must be a DNS name such as ns1.example.net (labels of 1-63 letters, digits, "-" or "_")')

const ipAddress = z.string().refine(s => net.isIP(s) !== 0, 'must be an IPv4 or IPv6 address')

const listenSchema = z.object({
  address: ipAddress.describe('address to bind, IPv4 or IPv6 ("::1", "0.0.0.0", "::")'),
  port: z.number().int().min(0).max(65535).default(53).describe('port for both UDP and TCP; 0 picks a free one (UDP and TCP then get the same number)'),
  udp: z.boolean().default(true).describe('serve UDP on this address'),
  tcp: z.boolean().default(true).describe('serve TCP on this address (needed for truncated answers: keep it on)')
}).strict()

const u32 = z.number().int().min(0).max(0x7fffffff)

export const soaSchema = z.object({
  mname: dnsName.optional().describe('primary name server in the SOA; default: the first of `nameservers`, else ns1.<zone>'),
  rname: dnsName.optional().describe('mailbox of the person responsible, with "@" written as "."; default hostmaster.<zone>'),
  serial: u32.optional().describe('starting serial; default: the current Unix time. The serial moves forward on every change of the data'),
  refresh: u32.default(3600).describe('SOA refresh, seconds (ferry has no secondaries; informational)'),
  retry: u32.default(600).describe('SOA retry, seconds'),
  expire: u32.default(86400).describe('SOA expire, seconds'),
  minimum: u32.default(5).describe('negative-caching TTL, seconds (RFC 2308): how long resolvers remember NXDOMAIN and NODATA. Short, because volumes appear at any time')
}).strict().default({})

export const nameserverSchema = z.object({
  name: dnsName.describe('host name of a name server for the zone (NS record at the apex)'),
  addresses: z.array(ipAddress).default([])
    .describe('its addresses; served as A/AAAA (and glue in the additional section) when the name is inside the zone')
}).strict()

export const rateLimitSchema = z.object({
  responsesPerSecond: z.number().int().min(0).default(1000)
    .describe('UDP responses per second allowed to one client subnet; 0 turns rate limiting off. TCP is never limited (it cannot be spoofed)'),
  windowS: z.number().int().min(1).max(3600).default(15)
    .describe('seconds over which a subnet that went over the limit is remembered: it stays limited until its debt, at most rate x window, is repaid'),
  slip: z.number().int().min(0).max(10).default(2)
    .describe('every Nth limited response is sent as a small truncated (TC) answer so that real clients retry over TCP; 0 = drop all, 1 = truncate all'),
  ipv4PrefixLength: z.number().int().min(8).max(32).default(24).describe('IPv4 client addresses are grouped into subnets of this length'),
  ipv6PrefixLength: z.number().int().min(16).max(128).default(56).describe('IPv6 client addresses are grouped into subnets of this length'),
  exempt: z.array(z.string().refine(isCidr, 'must be a CIDR such as 10.0.0.0/8 or fd00::/8')).default([])
    .describe('client subnets never limited (e.g. the site resolvers)'),
  maxTableSize: z.number().int().positive().default(100_000)
    .describe('most subnets tracked at once; past it idle entries are swept early, then new subnets are limited as one')
}).strict().default({})

export const dnsSectionSchema = z.object({
  enabled: z.boolean().default(true).describe('run the DNS role when the process has it'),
  listen: z.array(listenSchema).min(1).default([{ address: '127.0.0.1', port: 5353 }])
    .describe('addresses to serve; each gets a UDP socket and a TCP listener'),
  workers: workersSchema,
  zone: dnsName.default('sandbox.ferry.test').describe('the zone ferry is authoritative for; everything else is REFUSED'),
  ttl: u32.default(5).describe('TTL, seconds, of answers that follow the data: volumes, gateways, the SRV of the proxies'),
  apexTtl: u32.default(3600).describe('TTL, seconds, of the SOA and NS records and the name servers\' addresses'),
  soa: soaSchema.describe('fields of the SOA record at the apex'),
  nameservers: z.array(nameserverSchema).default([])
    .describe('NS records at the apex; default: one, ns1.<zone>, with the first listen address when that is not a wildcard'),
  maxUdpPayload: z.number().int().min(512).max(4096).default(1232)
    .describe('largest UDP response sent, and the EDNS payload size advertised (1232 avoids IP fragmentation: DNS flag day 2020)'),
  rateLimit: rateLimitSchema.describe('response rate limiting per client subnet (UDP), so that ferry cannot be used to amplify floods'),
  tcp: z.object({
    idleTimeoutMs: z.number().int().positive().default(10_000).describe('idle TCP connections are closed after this (RFC 7766 suggests seconds)'),
    maxConnections: z.number().int().positive().default(1000).describe('TCP connections open at once; more are refused')
  }).strict().default({}).describe('TCP connections'),
  cacheSize: z.number().int().min(16).default(100_000)
    .describe('encoded answers kept for the fast path (per name, type and site); a change drops the answers it concerns (one volume\'s, or all)')
}).strict().default({})

export type DnsConfig = z.infer<typeof dnsSectionSchema>
export type DnsConfigInput = z.input<typeof dnsSectionSchema>

/** Parses a `dns:` section (or nothing, for all defaults); throws zod's error on bad input. */
export function parseDnsConfig (input: unknown = {}): DnsConfig {
  return dnsSectionSchema.parse(input)
}
