/**
 * The replay's clients: each trace access is issued at its (compressed) trace time by a client
 * at the access's site, as a user of ferry would issue it — resolve `<volume>.<zone>` through
 * the site's ferry DNS (node's dns Resolver, source address in the site's subnet, answers kept
 * for their TTL), then send the request to the edge it was given, over the emulated link from
 * the client's site to that edge. A block's first access is its creation (PUT of the trace's
 * size, capped); later accesses are reads (or PUTs of a new version when the trace writes), and
 * every body read is checked against the SHA-256 of a version that was written.
 */
import crypto from 'node:crypto'
import { promises as dnsp } from 'node:dns'
import { Agent, request } from 'undici'
import type { LocationCache } from '../../state/cache.js'
import type { Access, Setup } from '../placement.js'
import { FLEET_ZONE, type MultiSiteFleet } from './deployment.js'

export interface Sample {
  /** Wall ms since the replay started, and the access's trace second since the slice's start. */
  wallMs: number
  traceS: number
  site: number
  ms: number
  ok: boolean
  write: boolean
  /** Served by a gateway at the client's site (block location when the answer arrived). */
  local: boolean | null
  /** What the links alone cost this access: client→edge and edge→gateway round trips (ms). */
  netMs: number | null
  /** The client was sent to its own site's edge (DNS); null: no answer. */
  edgeLocal: boolean | null
  error?: string
}

interface Version { hash: string, size: number }

export interface ReplayOptions {
  speed: number
  maxBytes: number
  maxInFlight: number
  /** Called with the wall ms since start; the fault schedule hangs off it. */
  onTick?: (wallMs: number) => void
}

function body (volume: string, block: string, version: number, size: number): Buffer {
  const seed = crypto.createHash('sha256').update(`${volume}/${block}/${version}`).digest()
  const out = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i += seed.length) seed.copy(out, i, 0, Math.min(seed.length, size - i))
  return out
}

export class Replay {
  readonly samples: Sample[] = []
  private readonly agent = new Agent({ keepAliveTimeout: 3000, connections: 64 })
  private readonly resolvers: dnsp.Resolver[]
  private readonly dnsCache = new Map<string, { edge: number, until: number }>()
  /**
   * Block → the bodies a read may return: the last acknowledged version and every later one
   * whose PUT is in flight or failed (a failed write's outcome is unknown: it may have landed).
   */
  private readonly versions = new Map<number, { n: number, ok: Version[], acked: boolean, site: number }>()
  private readonly created = new Map<number, Promise<void>>()
  dnsLookups = 0
  dnsFailures = 0
  hashMismatches = 0

  constructor (private readonly fleet: MultiSiteFleet, private readonly s: Setup, private readonly locations: LocationCache | undefined, private readonly o: ReplayOptions) {
    this.resolvers = fleet.sites.map(site => {
      const r = new dnsp.Resolver({ timeout: 1000, tries: 2 })
      r.setLocalAddress(site.clientAddress)
      r.setServers([`${site.edge}:${fleet.dnsPort}`])
      return r
    })
  }

  /** The edge (site index) for a volume, for a client at `site`. NXDOMAIN (a new volume): the client's own edge. */
  private async edgeFor (site: number, volume: string): Promise<number> {
    const key = `${site}/${volume}`
    const c = this.dnsCache.get(key)
    const now = performance.now()
    if (c !== undefined && c.until > now) return c.edge
    this.dnsLookups++
    try {
      const answers = await (this.resolvers[site] as dnsp.Resolver).resolve4(`${volume}.${FLEET_ZONE}`, { ttl: true })
      const a = answers[0]
      if (a === undefined) throw new Error('no address')
      const edge = this.fleet.sites.findIndex(x => x.edge === a.address)
      if (edge < 0) throw new Error(`answer ${a.address} is no edge`)
      this.dnsCache.set(key, { edge, until: now + a.ttl * 1000 })
      return edge
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOTFOUND') this.dnsFailures++
      // Negative answers are cached for the zone's SOA minimum (ferry's default 5 s).
      this.dnsCache.set(key, { edge: site, until: now + (code === 'ENOTFOUND' ? 5000 : 1000) })
      return site
    }
  }

  private async one (a: Access, t0: number, traceStart: number): Promise<void> {
    const blk = this.s.blocks[a.block] as Setup['blocks'][number]
    const size = Math.max(1, Math.min(blk.bytes, this.o.maxBytes))
    let write = a.write
    const pending = this.created.get(a.block)
    if (pending !== undefined) await pending
    // A block whose creation failed is created again (as its client would retry the PUT).
    if (pending === undefined || this.versions.get(a.block)?.acked !== true) write = true
    const started = performance.now()
    let edgeSite: string | undefined
    let ok = false
    let error: string | undefined
    let resolveCreated: (() => void) | undefined
    if (write && this.versions.get(a.block)?.acked !== true) this.created.set(a.block, new Promise(resolve => { resolveCreated = resolve }))
    try {
      const edge = await this.edgeFor(a.site, blk.volume)
      edgeSite = this.fleet.sites[edge]?.name
      const link = this.fleet.clientLinks.get(this.fleet.sites[a.site]?.name as string)?.get(this.fleet.sites[edge]?.name as string)
      if (link === undefined) throw new Error('no link')
      const url = `http://127.0.0.1:${link.port}/${blk.volume}/${blk.id}`
      if (write) {
        const v = this.versions.get(a.block) ?? { n: 0, ok: [], acked: false, site: a.site }
        this.versions.set(a.block, v)
        const n = ++v.n
        const data = body(blk.volume, blk.id, n, size)
        const next = { hash: crypto.createHash('sha256').update(data).digest('hex'), size }
        v.ok.push(next)
        const r = await request(url, { method: 'PUT', body: data, dispatcher: this.agent, headers: { 'content-type': 'application/octet-stream' }, headersTimeout: 30_000, bodyTimeout: 30_000 })
        await r.body.dump()
        ok = r.statusCode >= 200 && r.statusCode < 300
        // Acknowledged: older versions may no longer be read.
        if (ok) { v.ok = v.ok.slice(v.ok.indexOf(next)); v.acked = true; v.site = a.site } else error = `PUT ${r.statusCode}`
      } else {
        const r = await this.read(url, a.block)
        ok = r.ok
        if (!ok) { error = r.error; if (r.mismatch) this.hashMismatches++ }
      }
    } catch (err) {
      error = (err as Error).message
    } finally {
      resolveCreated?.()
    }
    const ms = performance.now() - started
    const loc = this.locations?.get(blk.volume, blk.id)
    const clientSite = this.fleet.sites[a.site]?.name as string
    const siteOf = (id: string): string | undefined => this.fleet.gateways.find(g => g.id === id)?.site
    // The gateway(s) the access reached: a write goes to every member and waits for the slowest;
    // a read goes to one in-sync member, chosen as the proxy does (proxy/replicas.ts readRank,
    // health and drains aside): the client's site first, then the set's order.
    let gwSite: string | undefined
    let gwLinkMs = 0
    if (loc != null && edgeSite !== undefined) {
      const from = edgeSite
      if (write) {
        for (const id of loc.members) {
          const site = siteOf(id)
          if (site === undefined) continue
          if (gwSite === undefined || site === clientSite) gwSite = site
          gwLinkMs = Math.max(gwLinkMs, this.fleet.oneWayMs(from, site))
        }
      } else {
        const inSync = loc.members.filter(id => loc.inSync.includes(id))
        const id = inSync.find(x => siteOf(x) === clientSite) ?? inSync[0] ?? loc.gateway
        gwSite = siteOf(id)
        if (gwSite !== undefined) gwLinkMs = this.fleet.oneWayMs(from, gwSite)
      }
    }
    this.samples.push({
      wallMs: started - t0,
      traceS: (a.at - traceStart) / 1000,
      site: a.site,
      ms,
      ok,
      write,
      local: gwSite === undefined ? null : gwSite === clientSite,
      netMs: gwSite === undefined || edgeSite === undefined ? null : 2 * (this.fleet.oneWayMs(clientSite, edgeSite) + gwLinkMs),
      edgeLocal: edgeSite === undefined ? null : edgeSite === clientSite,
      ...(error !== undefined ? { error } : {})
    })
  }

  /** GET a block and check its body against the versions a read may return. */
  private async read (url: string, block: number): Promise<{ ok: boolean, status: number, mismatch: boolean, error?: string }> {
    const r = await request(url, { method: 'GET', dispatcher: this.agent, headersTimeout: 30_000, bodyTimeout: 30_000 })
    const buf = Buffer.from(await r.body.arrayBuffer())
    if (r.statusCode !== 200) return { ok: false, status: r.statusCode, mismatch: false, error: `GET ${r.statusCode}` }
    const h = crypto.createHash('sha256').update(buf).digest('hex')
    const ok = (this.versions.get(block)?.ok ?? []).some(x => x.hash === h)
    return ok ? { ok, status: 200, mismatch: false } : { ok, status: 200, mismatch: true, error: 'body hash mismatch' }
  }

  /**
   * After the replay (the crashed gateway restarted, the planner's repair given its time): every
   * block whose write was acknowledged is read once more, from the site that wrote it, through
   * DNS as a client would. `lost`: the store no longer has it (404) or returns another body
   * (an older version) — an acknowledged write that did not survive; `unreadable`: any other
   * failure (5xx, timeout), which says nothing about the data.
   */
  async verify (concurrency = 32): Promise<{ blocks: number, lost: number, unreadable: number, samples: string[] }> {
    const todo = [...this.versions].filter(([, v]) => v.acked)
    let lost = 0
    let unreadable = 0
    const samples: string[] = []
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const [block, v] = todo[next++] as [number, { site: number }]
        const blk = this.s.blocks[block] as Setup['blocks'][number]
        let why: string | undefined
        let isLost = false
        try {
          const edge = await this.edgeFor(v.site, blk.volume)
          const link = this.fleet.clientLinks.get(this.fleet.sites[v.site]?.name as string)?.get(this.fleet.sites[edge]?.name as string)
          if (link === undefined) throw new Error('no link')
          const r = await this.read(`http://127.0.0.1:${link.port}/${blk.volume}/${blk.id}`, block)
          if (!r.ok) { why = r.error; isLost = r.status === 404 || r.mismatch }
        } catch (err) {
          why = (err as Error).message
        }
        if (why === undefined) continue
        if (isLost) lost++; else unreadable++
        if (samples.length < 10) samples.push(`${blk.volume}/${blk.id}: ${why}`)
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    return { blocks: todo.length, lost, unreadable, samples }
  }

  /** Issues every access at its trace time / speed; resolves when all have answered. */
  async run (accesses: Access[]): Promise<number> {
    const traceStart = accesses[0]?.at ?? 0
    const t0 = performance.now()
    const inFlight = new Set<Promise<void>>()
    let lastTick = 0
    for (const a of accesses) {
      const due = (a.at - traceStart) / this.o.speed
      for (;;) {
        const now = performance.now() - t0
        if (now - lastTick >= 250) { lastTick = now; this.o.onTick?.(now) }
        if (now >= due) break
        await new Promise(resolve => setTimeout(resolve, Math.min(250, due - now)))
      }
      while (inFlight.size >= this.o.maxInFlight) await Promise.race(inFlight)
      const p = this.one(a, t0, traceStart).finally(() => { inFlight.delete(p) })
      inFlight.add(p)
    }
    await Promise.all(inFlight)
    return performance.now() - t0
  }

  async close (): Promise<void> { await this.agent.close() }
}
