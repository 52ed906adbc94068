/**
 * The access pattern profiler (seed 7707136's "Access Pattern Profiler"): per volume and per
 * block, how often it is accessed, the read/write mix, how bursty the traffic is, how local it
 * is, and who the heaviest sites and clients are.
 *
 * It is a *mergeable summary*: every proxy (or every planner shard) can keep one, and merging
 * their snapshots gives what one profiler would have computed from all the records, so the
 * figures scale out with the proxies. Each part is chosen for that property:
 *
 *   frequency    forward-decayed count Σ 2^((t - T0)/H) (Cormode et al., ICDE 2009): additive
 *                across profilers once converted to a common landmark; rate = count·ln2/H.
 *   mix, bytes,  plain counters: additive.
 *   locality
 *   burstiness   counts per fixed, epoch-aligned time bucket in a ring of the last B buckets:
 *                additive bucket by bucket. Reported as peak/mean bucket count (1 = steady,
 *                B = everything in one bucket) and the index of dispersion var/mean (≈ 1 for
 *                Poisson arrivals, ≫ 1 for bursts), over the buckets since the first access.
 *   top sites,   Space-Saving (Metwally et al., 2005) with k counters over decayed weights;
 *   top clients  merged as in Agarwal et al., "Mergeable Summaries" (2012): counts add, a key
 *                missing from a full summary is charged that summary's minimum as error, then
 *                the k largest survive. Counts are upper bounds with a stated `error`.
 *
 * Memory is bounded: at most maxVolumes volumes and maxBlocks blocks, each of fixed size
 * (k counters, B buckets). Past a bound the coldest tenth is evicted in one pass and counted.
 */
import { z } from 'zod'
import { FerryError } from '../lib/errors.js'

export interface AccessRecord {
  volume: string
  block: string
  client: string
  /** The client's site ('' = in no configured site). */
  site: string
  /** Site of the gateway that served it, when known: locality counts only these. */
  servedBySite?: string
  write: boolean
  /** Epoch milliseconds. */
  at: number
  bytes?: number
}

export interface ProfilerOptions {
  /** Half-life of the decayed frequency and top-k weights (default 600 s, the proxy's default). */
  halfLifeMs?: number
  /** Width of a burstiness bucket (default 60 s). */
  bucketMs?: number
  /** Buckets kept per block (default 16) and per volume (default 60). */
  blockBuckets?: number
  volumeBuckets?: number
  /** Space-Saving counters per block (default 4) and per volume (default 16), for sites and clients each. */
  blockTopK?: number
  volumeTopK?: number
  /** Bounds (defaults 50,000 blocks, 5,000 volumes). */
  maxBlocks?: number
  maxVolumes?: number
  /** Forward-decay landmark (default Date.now()); anything near the records' times. */
  now?: number
}

export interface HeavyHitter {
  /** Site or client. */
  key: string
  /** Decayed weight (an overestimate by at most `error`). */
  count: number
  error: number
  /** count / the entry's decayed total. */
  share: number
}

export interface Burstiness {
  /** Largest bucket over the mean bucket since the first access (null: under 2 buckets of history). */
  peakToMean: number | null
  /** Variance over mean of the bucket counts (≈ 1 Poisson, ≫ 1 bursty; null as above). */
  dispersion: number | null
  /** Buckets the figures cover. */
  buckets: number
  bucketMs: number
}

export interface VolumeProfile {
  volume: string
  reads: number
  writes: number
  accesses: number
  /** writes / accesses (0 when none). */
  writeShare: number
  bytes: number
  /** Decayed access count now. */
  score: number
  /** Decayed access rate, per second. */
  ratePerS: number
  burstiness: Burstiness
  /** Share of the accesses with a known serving site that were served at the client's own site. */
  locality: number | null
  /** How many accesses had a known serving site. */
  localityKnown: number
  topSites: HeavyHitter[]
  topClients: HeavyHitter[]
  firstAt: number
  lastAt: number
}

export interface BlockProfile extends VolumeProfile {
  block: string
}

// ───────────────────────────── snapshot format ─────────────────────────────

const sketchSchema = z.object({
  k: z.number().int().positive().max(4096),
  items: z.array(z.tuple([z.string(), z.number().nonnegative(), z.number().nonnegative()]))
})

const entrySchema = z.object({
  volume: z.string().min(1),
  block: z.string().min(1).optional(),
  score: z.number().nonnegative(),
  reads: z.number().nonnegative(),
  writes: z.number().nonnegative(),
  bytes: z.number().nonnegative(),
  served: z.number().nonnegative(),
  local: z.number().nonnegative(),
  first: z.number(),
  last: z.number(),
  head: z.number().int(),
  ring: z.array(z.number().nonnegative()),
  sites: sketchSchema,
  clients: sketchSchema
})

const snapshotSchema = z.object({
  format: z.literal('ferry-profile'),
  version: z.literal(1),
  asOf: z.number(),
  halfLifeMs: z.number().positive(),
  bucketMs: z.number().positive(),
  evicted: z.object({ blocks: z.number().nonnegative(), volumes: z.number().nonnegative() }),
  volumes: z.array(entrySchema),
  blocks: z.array(entrySchema)
})

/** JSON-serialisable summary: decayed values are as of `asOf`. */
export type ProfileSnapshot = z.infer<typeof snapshotSchema>
type EntrySnapshot = z.infer<typeof entrySchema>
type SketchSnapshot = z.infer<typeof sketchSchema>

// ───────────────────────────── Space-Saving ─────────────────────────────

/**
 * Space-Saving over weighted updates with at most k counters. Linear scans: k is small (4–64)
 * and a scan over a packed array beats hashing at that size.
 */
class SpaceSaving {
  readonly keys: string[] = []
  readonly counts: number[] = []
  readonly errors: number[] = []

  constructor (readonly k: number) {}

  add (key: string, w: number): void {
    const keys = this.keys
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] === key) { (this.counts[i] as number) += w; return }
    }
    if (keys.length < this.k) {
      keys.push(key); this.counts.push(w); this.errors.push(0)
      return
    }
    const m = this.minIndex()
    const min = this.counts[m] as number
    keys[m] = key
    this.counts[m] = min + w
    this.errors[m] = min
  }

  /** Smallest count when full, else 0: the most a missing key can have had. */
  floor (): number {
    return this.keys.length < this.k ? 0 : this.counts[this.minIndex()] as number
  }

  /** Merge (Agarwal et al.): `scale` converts the other summary's weights to this landmark. */
  merge (other: SketchSnapshot, scale: number): void {
    const otherFloor = other.items.length < other.k ? 0 : Math.min(...other.items.map(i => i[1])) * scale
    const ownFloor = this.floor()
    const combined = new Map<string, [number, number]>()
    for (let i = 0; i < this.keys.length; i++) combined.set(this.keys[i] as string, [(this.counts[i] as number) + otherFloor, (this.errors[i] as number) + otherFloor])
    for (const [key, c, e] of other.items) {
      const cur = combined.get(key)
      if (cur !== undefined) { cur[0] += c * scale - otherFloor; cur[1] += e * scale - otherFloor } else combined.set(key, [c * scale + ownFloor, e * scale + ownFloor])
    }
    const top = [...combined].sort((a, b) => b[1][0] - a[1][0]).slice(0, this.k)
    this.keys.length = 0; this.counts.length = 0; this.errors.length = 0
    for (const [key, [c, e]] of top) { this.keys.push(key); this.counts.push(c); this.errors.push(e) }
  }

  scale (f: number): void {
    for (let i = 0; i < this.counts.length; i++) { (this.counts[i] as number) *= f; (this.errors[i] as number) *= f }
  }

  toJSON (f: number): SketchSnapshot {
    return { k: this.k, items: this.keys.map((key, i) => [key, (this.counts[i] as number) * f, (this.errors[i] as number) * f]) }
  }

  top (f: number, total: number): HeavyHitter[] {
    return this.keys
      .map((key, i) => ({ key, count: (this.counts[i] as number) * f, error: (this.errors[i] as number) * f, share: total > 0 ? Math.min(1, (this.counts[i] as number) * f / total) : 0 }))
      .sort((a, b) => b.count - a.count)
  }

  private minIndex (): number {
    let m = 0
    for (let i = 1; i < this.counts.length; i++) if ((this.counts[i] as number) < (this.counts[m] as number)) m = i
    return m
  }
}

// ───────────────────────────── one entry ─────────────────────────────

class Stats {
  score = 0
  reads = 0
  writes = 0
  bytes = 0
  served = 0
  local = 0
  first = Infinity
  last = -Infinity
  /** Bucket id (floor(at / bucketMs)) of the newest ring slot; -Infinity before the first access. */
  head = -Infinity
  readonly ring: Uint32Array
  readonly sites: SpaceSaving
  readonly clients: SpaceSaving

  constructor (buckets: number, k: number) {
    this.ring = new Uint32Array(buckets)
    this.sites = new SpaceSaving(k)
    this.clients = new SpaceSaving(k)
  }

  record (a: AccessRecord, w: number, bucket: number): void {
    this.score += w
    if (a.write) this.writes++; else this.reads++
    if (a.bytes !== undefined && a.bytes > 0) this.bytes += a.bytes
    if (a.servedBySite !== undefined) {
      this.served++
      if (a.servedBySite === a.site) this.local++
    }
    if (a.at < this.first) this.first = a.at
    if (a.at > this.last) this.last = a.at
    this.addBucket(bucket, 1)
    this.sites.add(a.site, w)
    this.clients.add(a.client, w)
  }

  /**
   * Adds `count` to bucket `id`. The ring always holds exactly the counts of buckets
   * (head - B, head], whatever the arrival order, which is what makes merging exact.
   */
  addBucket (id: number, count: number): void {
    const B = this.ring.length
    if (id > this.head) {
      if (this.head === -Infinity || id - this.head >= B) this.ring.fill(0)
      else for (let j = this.head + 1; j <= id; j++) this.ring[slot(j, B)] = 0
      this.head = id
    } else if (id <= this.head - B) {
      return
    }
    (this.ring[slot(id, B)] as number) += count
  }

  merge (o: EntrySnapshot, scale: number): void {
    this.score += o.score * scale
    this.reads += o.reads
    this.writes += o.writes
    this.bytes += o.bytes
    this.served += o.served
    this.local += o.local
    if (o.reads + o.writes > 0) {
      if (o.first < this.first) this.first = o.first
      if (o.last > this.last) this.last = o.last
    }
    // The snapshot's ring is oldest first and ends at o.head (same bucket width: checked).
    const n = o.ring.length
    for (let i = 0; i < n; i++) {
      const c = o.ring[i] as number
      if (c > 0) this.addBucket(o.head - (n - 1 - i), c)
    }
    this.sites.merge(o.sites, scale)
    this.clients.merge(o.clients, scale)
  }

  rescale (f: number): void {
    this.score *= f
    this.sites.scale(f)
    this.clients.scale(f)
  }

  toJSON (f: number, volume: string, block?: string): EntrySnapshot {
    const B = this.ring.length
    const ring: number[] = []
    for (let j = this.head - B + 1; j <= this.head; j++) ring.push(this.head === -Infinity ? 0 : this.ring[slot(j, B)] as number)
    return {
      volume,
      ...(block !== undefined ? { block } : {}),
      score: this.score * f,
      reads: this.reads,
      writes: this.writes,
      bytes: this.bytes,
      served: this.served,
      local: this.local,
      // JSON has no Infinity: an entry that never recorded (merged-in volume shell) says 0.
      first: Number.isFinite(this.first) ? this.first : 0,
      last: Number.isFinite(this.last) ? this.last : 0,
      head: this.head === -Infinity ? 0 : this.head,
      ring,
      sites: this.sites.toJSON(f),
      clients: this.clients.toJSON(f)
    }
  }

  burstiness (nowBucket: number, bucketMs: number): Burstiness {
    const B = this.ring.length
    if (this.head === -Infinity) return { peakToMean: null, dispersion: null, buckets: 0, bucketMs }
    const end = Math.max(nowBucket, this.head)
    const start = Math.max(Math.floor(this.first / bucketMs), end - B + 1)
    const n = end - start + 1
    if (n < 2) return { peakToMean: null, dispersion: null, buckets: Math.max(0, n), bucketMs }
    let sum = 0
    let sq = 0
    let peak = 0
    for (let j = start; j <= end; j++) {
      const c = j > this.head || j <= this.head - B ? 0 : this.ring[slot(j, B)] as number
      sum += c; sq += c * c
      if (c > peak) peak = c
    }
    if (sum === 0) return { peakToMean: null, dispersion: null, buckets: n, bucketMs }
    const mean = sum / n
    const variance = sq / n - mean * mean
    return { peakToMean: peak / mean, dispersion: Math.max(0, variance) / mean, buckets: n, bucketMs }
  }
}

/** Ring index of bucket id j (non-negative even for ids before 1970). */
function slot (j: number, B: number): number {
  const r = j % B
  return r < 0 ? r + B : r
}

interface VolumeEntry {
  stats: Stats
  blocks: Map<string, Stats>
}

// ───────────────────────────── the profiler ─────────────────────────────

/** Rescale when forward-decay weights pass 2^RESCALE_EXP (doubles are fine far beyond). */
const RESCALE_EXP = 400

export class AccessProfiler {
  readonly halfLifeMs: number
  readonly bucketMs: number
  private readonly blockBuckets: number
  private readonly volumeBuckets: number
  private readonly blockTopK: number
  private readonly volumeTopK: number
  private readonly maxBlocks: number
  private readonly maxVolumes: number
  private readonly volumes = new Map<string, VolumeEntry>()
  private blockCount = 0
  private t0: number
  private wAt = Number.NaN
  private w = 1
  /** Records seen (including merged snapshots' accesses). */
  records = 0
  evictedBlocks = 0
  evictedVolumes = 0

  constructor (opts: ProfilerOptions = {}) {
    this.halfLifeMs = positive('halfLifeMs', opts.halfLifeMs ?? 600_000)
    this.bucketMs = positive('bucketMs', opts.bucketMs ?? 60_000)
    this.blockBuckets = count('blockBuckets', opts.blockBuckets ?? 16)
    this.volumeBuckets = count('volumeBuckets', opts.volumeBuckets ?? 60)
    this.blockTopK = count('blockTopK', opts.blockTopK ?? 4)
    this.volumeTopK = count('volumeTopK', opts.volumeTopK ?? 16)
    this.maxBlocks = count('maxBlocks', opts.maxBlocks ?? 50_000)
    this.maxVolumes = count('maxVolumes', opts.maxVolumes ?? 5_000)
    this.t0 = opts.now ?? Date.now()
  }

  get trackedBlocks (): number { return this.blockCount }
  get trackedVolumes (): number { return this.volumes.size }

  record (a: AccessRecord): void {
    this.records++
    if (a.at !== this.wAt) this.weight(a.at)
    const v = this.volumeEntry(a.volume)
    let b = v.blocks.get(a.block)
    if (b === undefined) {
      if (this.blockCount >= this.maxBlocks) this.evictBlocks()
      b = new Stats(this.blockBuckets, this.blockTopK)
      v.blocks.set(a.block, b)
      this.blockCount++
    }
    const bucket = Math.floor(a.at / this.bucketMs)
    v.stats.record(a, this.w, bucket)
    b.record(a, this.w, bucket)
  }

  /**
   * Adds another profiler's snapshot (taken with the same bucketMs and halfLifeMs) so this one
   * summarises both record streams. Throws PROFILE_BAD_SNAPSHOT on anything else.
   */
  merge (other: ProfileSnapshot): void {
    const parsed = snapshotSchema.safeParse(other)
    if (!parsed.success) throw new FerryError('PROFILE_BAD_SNAPSHOT', `not a ferry profile snapshot: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`.trim(), 400)
    const s = parsed.data
    if (s.bucketMs !== this.bucketMs || s.halfLifeMs !== this.halfLifeMs) {
      throw new FerryError('PROFILE_BAD_SNAPSHOT', `snapshot taken with bucketMs ${s.bucketMs} and halfLifeMs ${s.halfLifeMs}; this profiler uses ${this.bucketMs} and ${this.halfLifeMs}`, 400)
    }
    // The snapshot's decayed values are as of asOf: in this landmark that is × 2^((asOf - T0)/H).
    const scale = Math.pow(2, (s.asOf - this.t0) / this.halfLifeMs)
    for (const e of s.volumes) {
      this.volumeEntry(e.volume).stats.merge(e, scale)
      this.records += e.reads + e.writes
    }
    for (const e of s.blocks) {
      const v = this.volumeEntry(e.volume)
      const block = e.block as string
      let b = v.blocks.get(block)
      if (b === undefined) {
        if (this.blockCount >= this.maxBlocks) this.evictBlocks()
        b = new Stats(this.blockBuckets, this.blockTopK)
        v.blocks.set(block, b)
        this.blockCount++
      }
      b.merge(e, scale)
    }
    this.evictedBlocks += s.evicted.blocks
    this.evictedVolumes += s.evicted.volumes
    if (this.volumes.size > this.maxVolumes) this.evictVolumes()
    if (this.blockCount > this.maxBlocks) this.evictBlocks()
    if (scale > 2 ** RESCALE_EXP) this.rescale(s.asOf)
  }

  /**
   * Everything, JSON-serialisable, with decayed values as of `now`. `limit` keeps only the
   * hottest blocks (volumes are always complete): for the admin API, not for merging.
   */
  snapshot (opts: { now?: number, limit?: number } = {}): ProfileSnapshot {
    const now = opts.now ?? Date.now()
    const f = this.decay(now)
    const volumes: EntrySnapshot[] = []
    let blocks: Array<{ volume: string, block: string, stats: Stats }> = []
    for (const [volume, v] of this.volumes) {
      volumes.push(v.stats.toJSON(f, volume))
      for (const [block, stats] of v.blocks) blocks.push({ volume, block, stats })
    }
    if (opts.limit !== undefined && blocks.length > opts.limit) {
      blocks.sort((a, b) => b.stats.score - a.stats.score)
      blocks = blocks.slice(0, opts.limit)
    }
    return {
      format: 'ferry-profile',
      version: 1,
      asOf: now,
      halfLifeMs: this.halfLifeMs,
      bucketMs: this.bucketMs,
      evicted: { blocks: this.evictedBlocks, volumes: this.evictedVolumes },
      volumes,
      blocks: blocks.map(b => b.stats.toJSON(f, b.volume, b.block))
    }
  }

  volume (volume: string, now = Date.now()): VolumeProfile | undefined {
    const v = this.volumes.get(volume)
    return v === undefined ? undefined : this.profile(v.stats, volume, now)
  }

  block (volume: string, block: string, now = Date.now()): BlockProfile | undefined {
    const b = this.volumes.get(volume)?.blocks.get(block)
    return b === undefined ? undefined : { ...this.profile(b, volume, now), block }
  }

  /** The hottest volumes by decayed rate (all by default). */
  topVolumes (limit = Infinity, now = Date.now()): VolumeProfile[] {
    return [...this.volumes].sort((a, b) => b[1].stats.score - a[1].stats.score).slice(0, limit).map(([name, v]) => this.profile(v.stats, name, now))
  }

  /** The hottest blocks by decayed rate, optionally of one volume. */
  topBlocks (limit: number, opts: { volume?: string, now?: number } = {}): BlockProfile[] {
    const now = opts.now ?? Date.now()
    const all: Array<[string, string, Stats]> = []
    for (const [volume, v] of this.volumes) {
      if (opts.volume !== undefined && volume !== opts.volume) continue
      for (const [block, s] of v.blocks) all.push([volume, block, s])
    }
    all.sort((a, b) => b[2].score - a[2].score)
    return all.slice(0, limit).map(([volume, block, s]) => ({ ...this.profile(s, volume, now), block }))
  }

  private profile (s: Stats, volume: string, now: number): VolumeProfile {
    const f = this.decay(now)
    const score = s.score * f
    const accesses = s.reads + s.writes
    return {
      volume,
      reads: s.reads,
      writes: s.writes,
      accesses,
      writeShare: accesses > 0 ? s.writes / accesses : 0,
      bytes: s.bytes,
      score,
      ratePerS: score * Math.LN2 / (this.halfLifeMs / 1000),
      burstiness: s.burstiness(Math.floor(now / this.bucketMs), this.bucketMs),
      locality: s.served > 0 ? s.local / s.served : null,
      localityKnown: s.served,
      topSites: s.sites.top(f, score),
      topClients: s.clients.top(f, score),
      firstAt: s.first,
      lastAt: s.last
    }
  }

  private volumeEntry (volume: string): VolumeEntry {
    let v = this.volumes.get(volume)
    if (v === undefined) {
      if (this.volumes.size >= this.maxVolumes) this.evictVolumes()
      v = { stats: new Stats(this.volumeBuckets, this.volumeTopK), blocks: new Map() }
      this.volumes.set(volume, v)
    }
    return v
  }

  private weight (at: number): void {
    this.wAt = at
    this.w = Math.pow(2, (at - this.t0) / this.halfLifeMs)
    if (this.w > 2 ** RESCALE_EXP) this.rescale(at)
  }

  private rescale (at: number): void {
    const f = Math.pow(2, -(at - this.t0) / this.halfLifeMs)
    for (const v of this.volumes.values()) {
      v.stats.rescale(f)
      for (const b of v.blocks.values()) b.rescale(f)
    }
    this.t0 = at
    this.wAt = Number.NaN
    if (!Number.isNaN(at)) this.weight(at)
  }

  private decay (now: number): number {
    return Math.pow(2, -(now - this.t0) / this.halfLifeMs)
  }

  /** Drops about the coldest tenth of the blocks (sampled 10th-percentile threshold). */
  private evictBlocks (): void {
    const target = Math.max(1, Math.floor(this.maxBlocks / 10))
    const step = Math.max(1, Math.floor(this.blockCount / 1000))
    const sample: number[] = []
    let i = 0
    for (const v of this.volumes.values()) for (const b of v.blocks.values()) if (i++ % step === 0) sample.push(b.score)
    sample.sort((a, b) => a - b)
    const threshold = sample[Math.min(sample.length - 1, Math.floor(sample.length / 10))] ?? Infinity
    let removed = 0
    for (const v of this.volumes.values()) {
      for (const [block, b] of v.blocks) {
        if (removed >= target) break
        if (b.score <= threshold) { v.blocks.delete(block); removed++ }
      }
      if (removed >= target) break
    }
    this.blockCount -= removed
    this.evictedBlocks += removed
  }

  /** Drops about the coldest tenth of the volumes, with their blocks. */
  private evictVolumes (): void {
    const target = Math.max(1, Math.floor(this.maxVolumes / 10))
    const sorted = [...this.volumes].sort((a, b) => a[1].stats.score - b[1].stats.score).slice(0, target)
    for (const [name, v] of sorted) {
      this.volumes.delete(name)
      this.blockCount -= v.blocks.size
      this.evictedBlocks += v.blocks.size
    }
    this.evictedVolumes += sorted.length
  }
}

function positive (name: string, v: number): number {
  if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new FerryError('PROFILE_BAD_OPTIONS', `${name} must be a positive number, got ${String(v)}`, 400)
  return v
}

function count (name: string, v: number): number {
  if (!(Number.isInteger(v) && v > 0)) throw new FerryError('PROFILE_BAD_OPTIONS', `${name} must be a positive integer, got ${String(v)}`, 400)
  return v
}
