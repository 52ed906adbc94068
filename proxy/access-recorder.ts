import fs from 'node:fs'
import { blockKey } from '../lib/ids.js'
import { decayFactor, growth } from '../lib/forward-decay.js'
import type { AccessDelta } from '../state/types.js'

/** One access, as the seed's data inputs describe it: when, who, from where, what, read or write. */
export interface Access {
  volume: string
  block: string
  client: string
  site: string | undefined
  write: boolean
  /** Epoch milliseconds. */
  at: number
  /** Who: the S3 access key that signed the request; undefined for an anonymous one. */
  user?: string
}

/** A block's access figures at the time of the snapshot. Scores are in "accesses" decayed to now. */
export interface BlockAccessSnapshot {
  volume: string
  block: string
  /** Decayed access count over all sites. */
  score: number
  /** Decayed access count per site; `""` collects clients in no configured site. */
  sites: Record<string, number>
  reads: number
  writes: number
  lastAccessMs: number
  /** Short-term rate over long-term rate: well above 1 while the block is in a burst. */
  burst: number
  bursting: boolean
}


export interface AccessRecorderOptions {
  halfLifeS: number
  burstHalfLifeS: number
  burstFactor: number
  maxBlocks: number
  sites: readonly string[]
  /** JSON-lines access log path, or null. */
  accessLog?: string | null
}

interface Entry {
  volume: string
  block: string
  // Forward-decayed scores (see AccessRecorder): comparable across entries without decaying.
  long: number
  short: number
  sites: Float64Array
  reads: number
  writes: number
  last: number
  bursting: boolean
  // Counts since the last drainDeltas(); null when clean. Layout: [reads, writes] per site index.
  pending: Float64Array | null
}

/** Entries need this much short-term weight before a burst counts: one access is not a burst. */
const BURST_MIN_SHORT = 5
/** Rescale when weights pass 2^RESCALE_EXP, long before doubles lose precision or overflow. */
const RESCALE_EXP = 400

/**
 * Records every proxied access inline and keeps, per block and per site, an exponentially
 * decayed score (recent accesses weigh more) and a burst measure, within a bounded memory.
 *
 * Decay is "forward decay" (Cormode et al., ICDE 2009): an access at time t adds
 * 2^((t - T0)/halfLife) instead of decaying every stored score on every access. Reading a score
 * multiplies by 2^(-(now - T0)/halfLife). The hot path therefore does a few additions, and the
 * one exponential per distinct millisecond is cached. Because every entry shares T0, stored
 * values compare directly, which is what makes batch eviction of the coldest entries a single
 * pass. When weights grow large, all entries are rescaled and T0 moves forward.
 */
export class AccessRecorder {
  private readonly entries = new Map<string, Entry>()
  private readonly siteIndex = new Map<string, number>()
  private siteNames: string[] = []
  private halfLifeMs: number
  private burstHalfLifeMs: number
  private burstFactor: number
  private maxBlocks: number
  private t0: number
  private wAt = -1
  private wLong = 1
  private wShort = 1
  private readonly dirty = new Set<Entry>()
  private log: fs.WriteStream | undefined
  private logPath: string | null = null

  /** Blocks evicted since start to keep memory bounded. */
  evicted = 0
  /** Transitions of a block into a burst since start. */
  bursts = 0
  /** Access-log lines dropped because the disk could not keep up. */
  logDropped = 0

  constructor (opts: AccessRecorderOptions, now = Date.now()) {
    this.halfLifeMs = opts.halfLifeS * 1000
    this.burstHalfLifeMs = opts.burstHalfLifeS * 1000
    this.burstFactor = opts.burstFactor
    this.maxBlocks = opts.maxBlocks
    this.t0 = now
    // Index 0 is "no configured site".
    this.addSite('')
    for (const s of opts.sites) this.addSite(s)
    this.setAccessLog(opts.accessLog ?? null)
  }

  get size (): number { return this.entries.size }

  /** Applies a reloaded config. Site indices only ever grow, so entries stay valid. */
  reconfigure (opts: AccessRecorderOptions): void {
    for (const s of opts.sites) if (!this.siteIndex.has(s)) this.addSite(s)
    const now = Date.now()
    if (opts.halfLifeS * 1000 !== this.halfLifeMs || opts.burstHalfLifeS * 1000 !== this.burstHalfLifeMs) {
      // Stored weights are relative to the old half-lives: convert them to counts decayed to
      // now, then restart the forward-decay clock under the new ones.
      const fl = this.decay(now, this.halfLifeMs)
      const fs = this.decay(now, this.burstHalfLifeMs)
      for (const e of this.entries.values()) {
        e.long *= fl; e.short *= fs
        for (let i = 0; i < e.sites.length; i++) (e.sites[i] as number) *= fl
      }
      this.t0 = now
      this.wAt = -1
      this.halfLifeMs = opts.halfLifeS * 1000
      this.burstHalfLifeMs = opts.burstHalfLifeS * 1000
    }
    this.burstFactor = opts.burstFactor
    this.maxBlocks = opts.maxBlocks
    if (this.entries.size > this.maxBlocks) this.evictColdest()
    this.setAccessLog(opts.accessLog ?? null)
  }

  /** Records `a`; see recordAt for the allocation-free form the proxy uses. */
  record (a: Access): void {
    this.recordAt(blockKey(a.volume, a.block), a.volume, a.block, a.site, a.write, a.at)
  }

  /** The hot-path form: `key` is blockKey(volume, block), which the caller already has. */
  recordAt (key: string, volume: string, block: string, siteName: string | undefined, write: boolean, at: number): void {
    let e = this.entries.get(key)
    if (e === undefined) {
      if (this.entries.size >= this.maxBlocks) this.evictColdest()
      e = { volume, block, long: 0, short: 0, sites: new Float64Array(this.siteNames.length), reads: 0, writes: 0, last: 0, bursting: false, pending: null }
      this.entries.set(key, e)
    }
    if (at !== this.wAt) this.weights(at)
    const site = siteName === undefined ? 0 : (this.siteIndex.get(siteName) ?? 0)
    if (site >= e.sites.length) e.sites = grow(e.sites, this.siteNames.length)
    e.long += this.wLong
    e.short += this.wShort;
    (e.sites[site] as number) += this.wLong
    if (write) e.writes++; else e.reads++
    if (at > e.last) e.last = at
    this.updateBurst(e)
    if (e.pending === null) {
      e.pending = new Float64Array(this.siteNames.length * 2)
      this.dirty.add(e)
    } else if (e.pending.length < this.siteNames.length * 2) {
      e.pending = grow(e.pending, this.siteNames.length * 2)
    }
    (e.pending[site * 2 + (write ? 1 : 0)] as number) += 1
  }

  /** Writes one access-log line (called when the response is done, so it carries the outcome). */
  get logging (): boolean { return this.log !== undefined }

  logAccess (a: Access, status: number, gateway: string | undefined, durationMs: number): void {
    if (this.log === undefined) return
    // A slow disk must not grow the heap without bound: drop and count instead.
    if (this.log.writableNeedDrain) { this.logDropped++; return }
    this.log.write(JSON.stringify({
      t: new Date(a.at).toISOString(), client: a.client, user: a.user ?? null, site: a.site ?? null, volume: a.volume, block: a.block,
      op: a.write ? 'write' : 'read', status, gateway: gateway ?? null, ms: Math.round(durationMs * 100) / 100
    }) + '\n')
  }

  get (volume: string, block: string, now = Date.now()): BlockAccessSnapshot | undefined {
    const e = this.entries.get(blockKey(volume, block))
    return e === undefined ? undefined : this.toSnapshot(e, this.decay(now, this.halfLifeMs), this.decay(now, this.burstHalfLifeMs))
  }

  /** Every tracked block (or the `limit` hottest) with scores decayed to `now`. */
  snapshot (opts: { limit?: number, now?: number } = {}): BlockAccessSnapshot[] {
    const now = opts.now ?? Date.now()
    const fl = this.decay(now, this.halfLifeMs)
    const fs = this.decay(now, this.burstHalfLifeMs)
    let list = [...this.entries.values()]
    if (opts.limit !== undefined && opts.limit < list.length) {
      list.sort((a, b) => b.long - a.long)
      list = list.slice(0, opts.limit)
    }
    return list.map(e => this.toSnapshot(e, fl, fs))
  }

  /** Hands over the counts since the previous call and forgets them: the proxy's flush to the store. */
  drainDeltas (): AccessDelta[] {
    const out: AccessDelta[] = []
    for (const e of this.dirty) {
      const p = e.pending as Float64Array
      for (let s = 0; s * 2 < p.length; s++) {
        const reads = p[s * 2] as number
        const writes = p[s * 2 + 1] as number
        if (reads + writes > 0) out.push({ volume: e.volume, block: e.block, site: this.siteNames[s] as string, reads, writes, lastAccessMs: e.last })
      }
      e.pending = null
    }
    this.dirty.clear()
    return out
  }

  close (): Promise<void> {
    return this.setAccessLog(null)
  }

  private toSnapshot (e: Entry, fl: number, fs: number): BlockAccessSnapshot {
    const sites: Record<string, number> = {}
    for (let i = 0; i < e.sites.length; i++) {
      const v = (e.sites[i] as number) * fl
      if (v > 0) sites[this.siteNames[i] as string] = v
    }
    const long = e.long * fl
    const short = e.short * fs
    return {
      volume: e.volume, block: e.block, score: long, sites, reads: e.reads, writes: e.writes, lastAccessMs: e.last,
      burst: long > 0 ? (short / long) * (this.halfLifeMs / this.burstHalfLifeMs) : 0,
      bursting: e.bursting
    }
  }

  private updateBurst (e: Entry): void {
    // Rates are score·ln2/halfLife; their ratio needs no logarithm. Stored values share the
    // same wLong/wShort scale factors, so divide those out to compare at the current time.
    const short = e.short / this.wShort
    const rateRatio = (short / (e.long / this.wLong)) * (this.halfLifeMs / this.burstHalfLifeMs)
    const bursting = short >= BURST_MIN_SHORT && rateRatio >= this.burstFactor
    if (bursting && !e.bursting) this.bursts++
    e.bursting = bursting
  }

  private weights (now: number): void {
    this.wAt = now
    this.wLong = growth(now - this.t0, this.halfLifeMs)
    this.wShort = growth(now - this.t0, this.burstHalfLifeMs)
    if (this.wShort > 2 ** RESCALE_EXP || this.wLong > 2 ** RESCALE_EXP) this.rescale(now)
  }

  /** Moves T0 to `now`: every stored weight becomes its value decayed to now. */
  private rescale (now: number): void {
    const fl = 1 / this.wLong
    const fs = 1 / this.wShort
    for (const e of this.entries.values()) {
      e.long *= fl; e.short *= fs
      for (let i = 0; i < e.sites.length; i++) (e.sites[i] as number) *= fl
    }
    this.t0 = now
    this.wLong = 1
    this.wShort = 1
  }

  private decay (now: number, halfLifeMs: number): number {
    return decayFactor(now - this.t0, halfLifeMs)
  }

  /**
   * Drops roughly the coldest tenth of the entries in one pass. The threshold is the 10th
   * percentile of a sample, so the cost is linear and paid once per maxBlocks/10 new blocks
   * rather than on every request.
   */
  private evictColdest (): void {
    const target = Math.max(1, Math.floor(this.maxBlocks / 10))
    const values = [...this.entries.values()]
    const sample: number[] = []
    const step = Math.max(1, Math.floor(values.length / 1000))
    for (let i = 0; i < values.length; i += step) sample.push((values[i] as Entry).long)
    sample.sort((a, b) => a - b)
    const threshold = sample[Math.min(sample.length - 1, Math.floor(sample.length / 10))] as number
    let removed = 0
    for (const [key, e] of this.entries) {
      if (removed >= target) break
      if (e.long <= threshold) {
        this.entries.delete(key)
        this.dirty.delete(e) // its pending counts go with it: bounded memory wins over one flush
        removed++
      }
    }
    this.evicted += removed
  }

  private addSite (name: string): void {
    this.siteIndex.set(name, this.siteNames.length)
    this.siteNames = [...this.siteNames, name]
  }

  private setAccessLog (file: string | null): Promise<void> {
    if (file === this.logPath) return Promise.resolve()
    const old = this.log
    this.logPath = file
    this.log = file === null ? undefined : fs.createWriteStream(file, { flags: 'a', highWaterMark: 256 * 1024 })
    this.log?.on('error', () => { this.logDropped++ })
    return old === undefined ? Promise.resolve() : new Promise(resolve => { old.end(resolve) })
  }
}

function grow (a: Float64Array, n: number): Float64Array {
  const b = new Float64Array(n)
  b.set(a)
  return b
}
