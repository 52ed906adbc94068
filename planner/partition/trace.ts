/**
 * Access histories from outside the store: HTTP server traces (the NASA KSC log format of the
 * Internet Traffic Archive) and ferry's own proxy access log (JSON lines). Used by
 * `ferry train-placement` and by bench/placement.ts.
 *
 * A web trace has no sites and no volumes, so they are derived:
 *   client host → site by its top-level domain (SiteRules), other hosts split between sites by
 *                 a stable hash of the host;
 *   URL         → block; its directory (up to the last '/') → volume; the URL → metadata path.
 */
import fs from 'node:fs'
import { z } from 'zod'
import { FerryError } from '../../lib/errors.js'
import { hashString } from '../../lib/rendezvous.js'
import type { BlockMeta } from './embedder.js'

export interface TraceRequest {
  client: string
  /** Epoch milliseconds. */
  at: number
  method: string
  url: string
  status: number
  bytes: number
}

/**
 * Reads a tab-separated trace with a header row naming at least `host`, `time` (Unix seconds)
 * and `url`; `method`, `response` and `bytes` are used when present ('-' or empty bytes = 0).
 * Rows with a missing host, time or URL are skipped and counted.
 */
export function readTsvTrace (file: string): { requests: TraceRequest[], skipped: number } {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new FerryError('FERRY_PLACEMENT_TRACE_UNREADABLE', `cannot read trace ${file}: ${(err as Error).message}`, 400)
  }
  const lines = text.split('\n')
  const header = (lines[0] ?? '').replace(/\r$/, '').split('\t')
  const col = (name: string): number => header.indexOf(name)
  const iHost = col('host')
  const iTime = col('time')
  const iUrl = col('url')
  if (iHost < 0 || iTime < 0 || iUrl < 0) throw new FerryError('FERRY_PLACEMENT_TRACE_UNREADABLE', `${file}: the header must name host, time and url columns (got ${header.join(', ')})`, 400)
  const iMethod = col('method')
  const iStatus = col('response')
  const iBytes = col('bytes')
  const requests: TraceRequest[] = []
  let skipped = 0
  for (let n = 1; n < lines.length; n++) {
    const line = lines[n] as string
    if (line === '' || line === '\r') continue
    const f = line.replace(/\r$/, '').split('\t')
    const host = f[iHost] ?? ''
    const time = Number(f[iTime])
    const url = f[iUrl] ?? ''
    if (host === '' || url === '' || !Number.isFinite(time)) { skipped++; continue }
    const bytes = iBytes >= 0 ? Number(f[iBytes]) : 0
    requests.push({
      client: host,
      at: time * 1000,
      method: iMethod >= 0 ? (f[iMethod] ?? 'GET') : 'GET',
      url,
      status: iStatus >= 0 ? Number(f[iStatus]) || 0 : 0,
      bytes: Number.isFinite(bytes) && bytes > 0 ? bytes : 0
    })
  }
  return { requests, skipped }
}

/** Methods that change the object: counted as writes. */
export function isWriteMethod (method: string): boolean {
  return method === 'PUT' || method === 'POST' || method === 'DELETE' || method === 'PATCH'
}

// ───────────────────────────── sites from host names ─────────────────────────────

export interface SiteRules {
  /** Top-level domain (lower case, no dot) → site. */
  tld: Record<string, string>
  /** Every other host (other TLDs, numeric addresses) goes to one of these by a stable hash of the host. */
  otherwise: string[]
}

const EUROPE = ['ad', 'al', 'at', 'ba', 'be', 'bg', 'by', 'ch', 'cy', 'cz', 'de', 'dk', 'ee', 'es', 'eu', 'fi', 'fo', 'fr', 'gb', 'gi', 'gr', 'hr', 'hu', 'ie', 'im', 'is', 'it', 'li', 'lt', 'lu', 'lv', 'mc', 'md', 'me', 'mk', 'mt', 'nl', 'no', 'pl', 'pt', 'ro', 'rs', 'ru', 'se', 'si', 'sk', 'sm', 'su', 'ua', 'uk', 'va', 'yu']
const ASIA = ['jp', 'kr', 'tw', 'hk', 'sg', 'au', 'nz', 'cn', 'in']

/**
 * The issue's multi-site set-up: European country-code TLDs → europe; jp, kr, tw, hk, sg, au,
 * nz, cn, in → asia; everything else split between na-east and na-west.
 */
export const DEFAULT_SITE_RULES: SiteRules = {
  tld: Object.fromEntries([...EUROPE.map(t => [t, 'europe']), ...ASIA.map(t => [t, 'asia'])]),
  otherwise: ['na-east', 'na-west']
}

const siteRulesSchema = z.object({
  tld: z.record(z.string().regex(/^[a-z0-9-]+$/), z.string().min(1)),
  otherwise: z.array(z.string().min(1)).min(1)
}).strict()

export function parseSiteRules (json: unknown, source = '<site rules>'): SiteRules {
  const r = siteRulesSchema.safeParse(json)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new FerryError('FERRY_PLACEMENT_BAD_SITES', `${source}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'} (expected {"tld": {"de": "europe", …}, "otherwise": ["na-east", "na-west"]})`, 400)
  }
  return r.data
}

export function loadSiteRules (file: string): SiteRules {
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (err) {
    throw new FerryError('FERRY_PLACEMENT_BAD_SITES', `cannot read site rules ${file}: ${(err as Error).message}`, 400)
  }
  return parseSiteRules(json, file)
}

/** Every site the rules can produce, sorted. */
export function siteNames (rules: SiteRules): string[] {
  return [...new Set([...Object.values(rules.tld), ...rules.otherwise])].sort()
}

export function siteOfHost (host: string, rules: SiteRules): string {
  const dot = host.lastIndexOf('.')
  const tld = (dot < 0 ? host : host.slice(dot + 1)).toLowerCase()
  const site = rules.tld[tld]
  if (site !== undefined) return site
  return rules.otherwise[hashString(host.toLowerCase()) % rules.otherwise.length] as string
}

// ───────────────────────────── blocks from URLs ─────────────────────────────

/**
 * URL → block (the whole URL but a #fragment: `/cgi-bin/imagemap/countdown?99,176` and
 * `…?104,149` are different objects to a cache, as to the trace), its directory → volume,
 * metadata (path, name) from the path without the query.
 */
export function urlBlock (url: string): BlockMeta {
  const hash = url.indexOf('#')
  const block = hash < 0 ? url : url.slice(0, hash)
  const q = block.indexOf('?')
  const p = q < 0 ? block : block.slice(0, q)
  const slash = p.lastIndexOf('/')
  const volume = slash <= 0 ? '/' : p.slice(0, slash + 1)
  const name = p.slice(slash + 1)
  return { volume, block, path: p, name: name === '' ? 'index' : name }
}

// ───────────────────────────── proxy access log ─────────────────────────────

export interface LoggedAccess {
  at: number
  client: string
  site: string
  volume: string
  block: string
  write: boolean
}

/**
 * Reads ferry's proxy access log (recorder.accessLog: one JSON object per line with t, client,
 * site, volume, block, op). Unparseable lines are skipped and counted: a log cut mid-line by a
 * crash is normal.
 */
export function readAccessLog (file: string): { accesses: LoggedAccess[], skipped: number } {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new FerryError('FERRY_PLACEMENT_TRACE_UNREADABLE', `cannot read access log ${file}: ${(err as Error).message}`, 400)
  }
  const accesses: LoggedAccess[] = []
  let skipped = 0
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    try {
      const o = JSON.parse(line) as { t?: unknown, client?: unknown, site?: unknown, volume?: unknown, block?: unknown, op?: unknown }
      const at = typeof o.t === 'string' ? Date.parse(o.t) : typeof o.t === 'number' ? o.t : NaN
      if (!Number.isFinite(at) || typeof o.volume !== 'string' || typeof o.block !== 'string') { skipped++; continue }
      accesses.push({ at, client: typeof o.client === 'string' ? o.client : '', site: typeof o.site === 'string' ? o.site : '', volume: o.volume, block: o.block, write: o.op === 'write' })
    } catch {
      skipped++
    }
  }
  return { accesses, skipped }
}
