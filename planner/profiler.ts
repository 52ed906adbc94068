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
 * (k counters, B buckets). Past the block bound, a new block needs a second access within a
 * doorkeeper period to get an entry, and then the coldest fifth is evicted in one pass; past
 * the volume bound the coldest tenth of the volumes goes. Both are counted.
 *
 * Layout: each entry is one row of a row-major Float64Array (counters, both sketches' counts
 * and errors, the bucket ring) plus its sketch keys in a parallel array, so recording an access
 * touches a few contiguous cache lines rather than a dozen small objects.
 */
import { z } from 'zod'
import { FerryError } from '../lib/errors.js'
import { hashString } from '../lib/rendezvous.js'
import { decayFactor, growth } from '../lib/forward-decay.js'

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

// ───────────────────────────── entries ─────────────────────────────

// Row layout (Float64 slots): counters, then the site sketch (counts, errors), the client
// sketch (counts, errors) and the bucket ring. Sketch keys live in EntryTable.keys, 2k per row.
const SCORE = 0
const READS = 1
const WRITES = 2
const BYTES = 3
const SERVED = 4
const LOCAL = 5
const FIRST = 6
const LAST = 7
/** Bucket id (floor(at / bucketMs)) of the newest ring slot; -Infinity before the first access. */
const HEAD = 8
const SITE_N = 9
const CLIENT_N = 10
const HDR = 11

const SITES = 0
const CLIENTS = 1

/** Ring index of bucket id j (non-negative even for ids before 1970). */
function slot (j: number, B: number): number {
  const r = j % B
  return r < 0 ? r + B : r
}

/**
 * Entries of one kind (volumes, or blocks) with B buckets and k sketch counters each. Rows are
 * reused after release, so churn at the memory bound allocates nothing.
 */
class EntryTable {
  readonly stride: number
  private data: Float64Array
  private keys: string[]
  private live: Uint8Array
  private readonly free: number[] = []
  private rows = 0
  private cap: number

  constructor (readonly B: number, readonly k: number, initialRows: number) {
    this.stride = HDR + 4 * k + B
    this.cap = Math.max(16, initialRows)
    this.data = new Float64Array(this.cap * this.stride)
    this.keys = new Array<string>(this.cap * 2 * k).fill('')
    this.live = new Uint8Array(this.cap)
  }

  alloc (): number {
    let row = this.free.pop()
    if (row === undefined) {
      if (this.rows === this.cap) this.grow()
      row = this.rows++
    }
    const o = row * this.stride
    this.data.fill(0, o, o + HDR)
    this.data[o + FIRST] = Infinity
    this.data[o + LAST] = -Infinity
    this.data[o + HEAD] = -Infinity // addBucket clears the ring on the first record
    this.live[row] = 1
    return row
  }

  release (row: number): void {
    this.live[row] = 0
    this.free.push(row)
  }

  score (row: number): number { return this.data[row * this.stride + SCORE] as number }

  record (row: number, a: AccessRecord, w: number, bucket: number): void {
    const d = this.data
    const o = row * this.stride
    d[o + SCORE] = (d[o + SCORE] as number) + w
    if (a.write) d[o + WRITES] = (d[o + WRITES] as number) + 1
    else d[o + READS] = (d[o + READS] as number) + 1
    if (a.bytes !== undefined && a.bytes > 0) d[o + BYTES] = (d[o + BYTES] as number) + a.bytes
    if (a.servedBySite !== undefined) {
      d[o + SERVED] = (d[o + SERVED] as number) + 1
      if (a.servedBySite === a.site) d[o + LOCAL] = (d[o + LOCAL] as number) + 1
    }
    if (a.at < (d[o + FIRST] as number)) d[o + FIRST] = a.at
    if (a.at > (d[o + LAST] as number)) d[o + LAST] = a.at
    this.addBucket(row, bucket, 1)
    this.ssAdd(row, SITES, a.site, w)
    this.ssAdd(row, CLIENTS, a.client, w)
  }

  /**
   * Adds `count` to bucket `id`. The ring always holds exactly the counts of buckets
   * (head - B, head], whatever the arrival order, which is what makes merging exact.
   */
  addBucket (row: number, id: number, count: number): void {
    const d = this.data
    const o = row * this.stride
    const ring = o + HDR + 4 * this.k
    const B = this.B
    const head = d[o + HEAD] as number
    if (id > head) {
      if (head === -Infinity || id - head >= B) d.fill(0, ring, ring + B)
      else for (let j = head + 1; j <= id; j++) d[ring + slot(j, B)] = 0
      d[o + HEAD] = id
    } else if (id <= head - B) {
      return
    }
    d[ring + slot(id, B)] = (d[ring + slot(id, B)] as number) + count
  }

  // ── Space-Saving (Metwally et al.) over weighted updates, k counters per sketch. Linear
  // scans: k is small and a scan over contiguous slots beats hashing at that size.

  private ssAdd (row: number, which: number, key: string, w: number): void {
    const d = this.data
    const k = this.k
    const o = row * this.stride
    const counts = o + HDR + which * 2 * k
    const errors = counts + k
    const keys = (row * 2 + which) * k
    const nSlot = o + (which === SITES ? SITE_N : CLIENT_N)
    const n = d[nSlot] as number
    for (let i = 0; i < n; i++) {
      if (this.keys[keys + i] === key) { d[counts + i] = (d[counts + i] as number) + w; return }
    }
    if (n < k) {
      this.keys[keys + n] = key
      d[counts + n] = w
      d[errors + n] = 0
      d[nSlot] = n + 1
      return
    }
    let m = 0
    for (let i = 1; i < k; i++) if ((d[counts + i] as number) < (d[counts + m] as number)) m = i
    const min = d[counts + m] as number
    this.keys[keys + m] = key
    d[counts + m] = min + w
    d[errors + m] = min
  }

  /** The sketch's items as [key, count, error] scaled by f. */
  private ssItems (row: number, which: number, f: number): Array<[string, number, number]> {
    const d = this.data
    const k = this.k
    const o = row * this.stride
    const counts = o + HDR + which * 2 * k
    const keys = (row * 2 + which) * k
    const n = d[o + (which === SITES ? SITE_N : CLIENT_N)] as number
    const out: Array<[string, number, number]> = []
    for (let i = 0; i < n; i++) out.push([this.keys[keys + i] as string, (d[counts + i] as number) * f, (d[counts + k + i] as number) * f])
    return out
  }

  /**
   * Merge of another summary into this sketch (Agarwal et al. 2012): counts add; a key missing
   * from a full summary is charged that summary's minimum (count and error); the k largest
   * survive. `scale` converts the other summary's weights to this landmark.
   */
  private ssMerge (row: number, which: number, other: SketchSnapshot, scale: number): void {
    const d = this.data
    const k = this.k
    const o = row * this.stride
    const counts = o + HDR + which * 2 * k
    const keys = (row * 2 + which) * k
    const nSlot = o + (which === SITES ? SITE_N : CLIENT_N)
    const own = this.ssItems(row, which, 1)
    const ownFloor = own.length < k ? 0 : Math.min(...own.map(i => i[1]))
    const otherFloor = other.items.length < other.k ? 0 : Math.min(...other.items.map(i => i[1])) * scale
    const combined = new Map<string, [number, number]>()
    for (const [key, c, e] of own) combined.set(key, [c + otherFloor, e + otherFloor])
    for (const [key, c, e] of other.items) {
      const cur = combined.get(key)
      if (cur !== undefined) { cur[0] += c * scale - otherFloor; cur[1] += e * scale - otherFloor } else combined.set(key, [c * scale + ownFloor, e * scale + ownFloor])
    }
    const top = [...combined].sort((a, b) => b[1][0] - a[1][0]).slice(0, k)
    top.forEach(([key, [c, e]], i) => { this.keys[keys + i] = key; d[counts + i] = c; d[counts + k + i] = e })
    d[nSlot] = top.length
  }

  merge (row: number, e: EntrySnapshot, scale: number): void {
    const d = this.data
    const o = row * this.stride
    d[o + SCORE] = (d[o + SCORE] as number) + e.score * scale
    d[o + READS] = (d[o + READS] as number) + e.reads
    d[o + WRITES] = (d[o + WRITES] as number) + e.writes
    d[o + BYTES] = (d[o + BYTES] as number) + e.bytes
    d[o + SERVED] = (d[o + SERVED] as number) + e.served
    d[o + LOCAL] = (d[o + LOCAL] as number) + e.local
    if (e.reads + e.writes > 0) {
      if (e.first < (d[o + FIRST] as number)) d[o + FIRST] = e.first
      if (e.last > (d[o + LAST] as number)) d[o + LAST] = e.last
    }
    // The snapshot's ring is oldest first and ends at e.head (same bucket width: checked).
    const n = e.ring.length
    for (let i = 0; i < n; i++) {
      const c = e.ring[i] as number
      if (c > 0) this.addBucket(row, e.head - (n - 1 - i), c)
    }
    this.ssMerge(row, SITES, e.sites, scale)
    this.ssMerge(row, CLIENTS, e.clients, scale)
  }

  /** Multiplies every live row's decayed values by f (forward-decay rescaling). */
  rescale (f: number): void {
    const d = this.data
    const k = this.k
    for (let row = 0; row < this.rows; row++) {
      if (this.live[row] === 0) continue
      const o = row * this.stride
      d[o + SCORE] = (d[o + SCORE] as number) * f
      for (let i = o + HDR; i < o + HDR + 4 * k; i++) d[i] = (d[i] as number) * f
    }
  }

  toJSON (row: number, f: number, volume: string, block?: string): EntrySnapshot {
    const d = this.data
    const o = row * this.stride
    const B = this.B
    const head = d[o + HEAD] as number
    const first = d[o + FIRST] as number
    const last = d[o + LAST] as number
    const ringAt = o + HDR + 4 * this.k
    const ring: number[] = []
    for (let j = head - B + 1; j <= head; j++) ring.push(head === -Infinity ? 0 : d[ringAt + slot(j, B)] as number)
    if (head === -Infinity) ring.length = B
    return {
      volume,
      ...(block !== undefined ? { block } : {}),
      score: (d[o + SCORE] as number) * f,
      reads: d[o + READS] as number,
      writes: d[o + WRITES] as number,
      bytes: d[o + BYTES] as number,
      served: d[o + SERVED] as number,
      local: d[o + LOCAL] as number,
      // JSON has no Infinity: an entry that never recorded (merged-in volume shell) says 0.
      first: Number.isFinite(first) ? first : 0,
      last: Number.isFinite(last) ? last : 0,
      head: head === -Infinity ? 0 : head,
      ring: head === -Infinity ? new Array<number>(B).fill(0) : ring,
      sites: { k: this.k, items: this.ssItems(row, SITES, f) },
      clients: { k: this.k, items: this.ssItems(row, CLIENTS, f) }
    }
  }

  profile (row: number, volume: string, f: number, now: number, bucketMs: number, halfLifeMs: number): VolumeProfile {
    const d = this.data
    const o = row * this.stride
    const score = (d[o + SCORE] as number) * f
    const reads = d[o + READS] as number
    const writes = d[o + WRITES] as number
    const served = d[o + SERVED] as number
    const accesses = reads + writes
    const top = (which: number): HeavyHitter[] => this.ssItems(row, which, f)
      .map(([key, count, error]) => ({ key, count, error, share: score > 0 ? Math.min(1, count / score) : 0 }))
      .sort((a, b) => b.count - a.count)
    return {
      volume,
      reads,
      writes,
      accesses,
      writeShare: accesses > 0 ? writes / accesses : 0,
      bytes: d[o + BYTES] as number,
      score,
      ratePerS: score * Math.LN2 / (halfLifeMs / 1000),
      burstiness: this.burstiness(row, Math.floor(now / bucketMs), bucketMs),
      locality: served > 0 ? (d[o + LOCAL] as number) / served : null,
      localityKnown: served,
      topSites: top(SITES),
      topClients: top(CLIENTS),
      firstAt: d[o + FIRST] as number,
      lastAt: d[o + LAST] as number
    }
  }

  private burstiness (row: number, nowBucket: number, bucketMs: number): Burstiness {
    const d = this.data
    const o = row * this.stride
    const B = this.B
    const head = d[o + HEAD] as number
    if (head === -Infinity) return { peakToMean: null, dispersion: null, buckets: 0, bucketMs }
    const ring = o + HDR + 4 * this.k
    const end = Math.max(nowBucket, head)
    const start = Math.max(Math.floor((d[o + FIRST] as number) / bucketMs), end - B + 1)
    const n = end - start + 1
    if (n < 2) return { peakToMean: null, dispersion: null, buckets: Math.max(0, n), bucketMs }
    let sum = 0
    let sq = 0
    let peak = 0
    for (let j = start; j <= end; j++) {
      const c = j > head || j <= head - B ? 0 : d[ring + slot(j, B)] as number
      sum += c; sq += c * c
      if (c > peak) peak = c
    }
    if (sum === 0) return { peakToMean: null, dispersion: null, buckets: n, bucketMs }
    const mean = sum / n
    const variance = sq / n - mean * mean
    return { peakToMean: peak / mean, dispersion: Math.max(0, variance) / mean, buckets: n, bucketMs }
  }

  private grow (): void {
    const cap = this.cap * 2
    const data = new Float64Array(cap * this.stride)
    data.set(this.data)
    this.data = data
    const live = new Uint8Array(cap)
    live.set(this.live)
    this.live = live
    for (let i = this.keys.length; i < cap * 2 * this.k; i++) this.keys.push('')
    this.cap = cap
  }
}

interface VolumeEntry {
  row: number
  /** block id → row in the block table. */
  blocks: Map<string, number>
}

// ───────────────────────────── the profiler ─────────────────────────────

/** Doorkeeper bits (2^20: 128 KiB). */
const DOOR_MASK = (1 << 20) - 1

/** Rescale when forward-decay weights pass 2^RESCALE_EXP (doubles are fine far beyond). */
const RESCALE_EXP = 400

export class AccessProfiler {
  readonly halfLifeMs: number
  readonly bucketMs: number
  private readonly maxBlocks: number
  private readonly maxVolumes: number
  private readonly volumeTable: EntryTable
  private readonly blockTable: EntryTable
  private readonly volumes = new Map<string, VolumeEntry>()
  private blockCount = 0
  private t0: number
  private wAt = Number.NaN
  private w = 1
  /** Records seen (including merged snapshots' accesses). */
  records = 0
  evictedBlocks = 0
  evictedVolumes = 0
  /** Records counted in their volume but not in a block entry (doorkeeper, at the bound). */
  unprofiled = 0
  private readonly door = new Uint32Array((DOOR_MASK + 1) / 32)
  private doorSeen = 0

  constructor (opts: ProfilerOptions = {}) {
    this.halfLifeMs = positive('halfLifeMs', opts.halfLifeMs ?? 600_000)
    this.bucketMs = positive('bucketMs', opts.bucketMs ?? 60_000)
    const blockBuckets = count('blockBuckets', opts.blockBuckets ?? 16)
    const volumeBuckets = count('volumeBuckets', opts.volumeBuckets ?? 60)
    const blockTopK = count('blockTopK', opts.blockTopK ?? 4)
    const volumeTopK = count('volumeTopK', opts.volumeTopK ?? 16)
    this.maxBlocks = count('maxBlocks', opts.maxBlocks ?? 50_000)
    this.maxVolumes = count('maxVolumes', opts.maxVolumes ?? 5_000)
    this.volumeTable = new EntryTable(volumeBuckets, volumeTopK, 64)
    this.blockTable = new EntryTable(blockBuckets, blockTopK, 1024)
    this.t0 = opts.now ?? Date.now()
  }

  get trackedBlocks (): number { return this.blockCount }
  get trackedVolumes (): number { return this.volumes.size }

  record (a: AccessRecord): void {
    this.records++
    if (a.at !== this.wAt) this.weight(a.at)
    const v = this.volumeEntry(a.volume)
    const bucket = Math.floor(a.at / this.bucketMs)
    this.volumeTable.record(v.row, a, this.w, bucket)
    let b = v.blocks.get(a.block)
    if (b === undefined) {
      if (this.blockCount >= this.maxBlocks) {
        // At the bound, a block gets an entry on its second access within a doorkeeper
        // period (TinyLFU's doorkeeper, Einziger et al. 2017): a long tail of one-off blocks
        // would otherwise evict the entries that matter.
        if (!this.admit(a.volume, a.block)) { this.unprofiled++; return }
        this.evictBlocks()
      }
      b = this.blockTable.alloc()
      v.blocks.set(a.block, b)
      this.blockCount++
    }
    this.blockTable.record(b, a, this.w, bucket)
  }

  /** Doorkeeper: false (and remembered) on a block's first try in the period, true after. */
  private admit (volume: string, block: string): boolean {
    const h = hashString(block, hashString(volume))
    const bit = h & DOOR_MASK
    const word = bit >>> 5
    const mask = 1 << (bit & 31)
    if (((this.door[word] as number) & mask) !== 0) return true
    this.door[word] = (this.door[word] as number) | mask
    // A new period every maxBlocks first tries, so the filter never fills up.
    if (++this.doorSeen >= this.maxBlocks) { this.door.fill(0); this.doorSeen = 0 }
    return false
  }

  /**
   * Adds another profiler's snapshot (taken with the same bucketMs and halfLifeMs) so this one
   * summarises both record streams. Throws FERRY_PROFILE_BAD_SNAPSHOT on anything else.
   */
  merge (other: ProfileSnapshot): void {
    const parsed = snapshotSchema.safeParse(other)
    if (!parsed.success) throw new FerryError('FERRY_PROFILE_BAD_SNAPSHOT', `not a ferry profile snapshot: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`.trim(), 400)
    const s = parsed.data
    if (s.bucketMs !== this.bucketMs || s.halfLifeMs !== this.halfLifeMs) {
      throw new FerryError('FERRY_PROFILE_BAD_SNAPSHOT', `snapshot taken with bucketMs ${s.bucketMs} and halfLifeMs ${s.halfLifeMs}; this profiler uses ${this.bucketMs} and ${this.halfLifeMs}`, 400)
    }
    // The snapshot's decayed values are as of asOf: in this landmark that is × 2^((asOf - T0)/H).
    const scale = growth(s.asOf - this.t0, this.halfLifeMs)
    for (const e of s.volumes) {
      this.volumeTable.merge(this.volumeEntry(e.volume).row, e, scale)
      this.records += e.reads + e.writes
    }
    for (const e of s.blocks) {
      const v = this.volumeEntry(e.volume)
      const block = e.block as string
      let b = v.blocks.get(block)
      if (b === undefined) {
        if (this.blockCount >= this.maxBlocks) this.evictBlocks()
        b = this.blockTable.alloc()
        v.blocks.set(block, b)
        this.blockCount++
      }
      this.blockTable.merge(b, e, scale)
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
    let blocks: Array<{ volume: string, block: string, row: number }> = []
    for (const [volume, v] of this.volumes) {
      volumes.push(this.volumeTable.toJSON(v.row, f, volume))
      for (const [block, row] of v.blocks) blocks.push({ volume, block, row })
    }
    if (opts.limit !== undefined && blocks.length > opts.limit) {
      blocks.sort((a, b) => this.blockTable.score(b.row) - this.blockTable.score(a.row))
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
      blocks: blocks.map(b => this.blockTable.toJSON(b.row, f, b.volume, b.block))
    }
  }

  volume (volume: string, now = Date.now()): VolumeProfile | undefined {
    const v = this.volumes.get(volume)
    return v === undefined ? undefined : this.volumeTable.profile(v.row, volume, this.decay(now), now, this.bucketMs, this.halfLifeMs)
  }

  block (volume: string, block: string, now = Date.now()): BlockProfile | undefined {
    const row = this.volumes.get(volume)?.blocks.get(block)
    return row === undefined ? undefined : { ...this.blockTable.profile(row, volume, this.decay(now), now, this.bucketMs, this.halfLifeMs), block }
  }

  /** The hottest volumes by decayed rate (all by default). */
  topVolumes (limit = Infinity, now = Date.now()): VolumeProfile[] {
    const f = this.decay(now)
    return [...this.volumes]
      .sort((a, b) => this.volumeTable.score(b[1].row) - this.volumeTable.score(a[1].row))
      .slice(0, limit)
      .map(([name, v]) => this.volumeTable.profile(v.row, name, f, now, this.bucketMs, this.halfLifeMs))
  }

  /** The hottest blocks by decayed rate, optionally of one volume. */
  topBlocks (limit: number, opts: { volume?: string, now?: number } = {}): BlockProfile[] {
    const now = opts.now ?? Date.now()
    const f = this.decay(now)
    const all: Array<[string, string, number]> = []
    for (const [volume, v] of this.volumes) {
      if (opts.volume !== undefined && volume !== opts.volume) continue
      for (const [block, row] of v.blocks) all.push([volume, block, row])
    }
    all.sort((a, b) => this.blockTable.score(b[2]) - this.blockTable.score(a[2]))
    return all.slice(0, limit).map(([volume, block, row]) => ({ ...this.blockTable.profile(row, volume, f, now, this.bucketMs, this.halfLifeMs), block }))
  }

  private volumeEntry (volume: string): VolumeEntry {
    let v = this.volumes.get(volume)
    if (v === undefined) {
      if (this.volumes.size >= this.maxVolumes) this.evictVolumes()
      v = { row: this.volumeTable.alloc(), blocks: new Map() }
      this.volumes.set(volume, v)
    }
    return v
  }

  private weight (at: number): void {
    this.wAt = at
    this.w = growth(at - this.t0, this.halfLifeMs)
    if (this.w > 2 ** RESCALE_EXP) this.rescale(at)
  }

  private rescale (at: number): void {
    const f = decayFactor(at - this.t0, this.halfLifeMs)
    this.volumeTable.rescale(f)
    this.blockTable.rescale(f)
    this.t0 = at
    this.wAt = Number.NaN
    if (!Number.isNaN(at)) this.weight(at)
  }

  private decay (now: number): number {
    return decayFactor(now - this.t0, this.halfLifeMs)
  }

  /**
   * Drops about the coldest fifth of the blocks (sampled 20th-percentile threshold): one pass
   * over the blocks per maxBlocks/5 new ones. Their rows are reused.
   */
  private evictBlocks (): void {
    const target = Math.max(1, Math.floor(this.maxBlocks / 5))
    const step = Math.max(1, Math.floor(this.blockCount / 1000))
    const sample: number[] = []
    let i = 0
    for (const v of this.volumes.values()) for (const row of v.blocks.values()) if (i++ % step === 0) sample.push(this.blockTable.score(row))
    sample.sort((a, b) => a - b)
    const threshold = sample[Math.min(sample.length - 1, Math.floor(sample.length / 5))] ?? Infinity
    let removed = 0
    for (const v of this.volumes.values()) {
      for (const [block, row] of v.blocks) {
        if (removed >= target) break
        if (this.blockTable.score(row) <= threshold) {
          v.blocks.delete(block)
          this.blockTable.release(row)
          removed++
        }
      }
      if (removed >= target) break
    }
    this.blockCount -= removed
    this.evictedBlocks += removed
  }

  /** Drops about the coldest tenth of the volumes, with their blocks. */
  private evictVolumes (): void {
    const target = Math.max(1, Math.floor(this.maxVolumes / 10))
    const sorted = [...this.volumes].sort((a, b) => this.volumeTable.score(a[1].row) - this.volumeTable.score(b[1].row)).slice(0, target)
    for (const [name, v] of sorted) {
      this.volumes.delete(name)
      this.volumeTable.release(v.row)
      for (const row of v.blocks.values()) this.blockTable.release(row)
      this.blockCount -= v.blocks.size
      this.evictedBlocks += v.blocks.size
    }
    this.evictedVolumes += sorted.length
  }
}

function positive (name: string, v: number): number {
  if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new FerryError('FERRY_PROFILE_BAD_OPTIONS', `${name} must be a positive number, got ${String(v)}`, 400)
  return v
}

function count (name: string, v: number): number {
  if (!(Number.isInteger(v) && v > 0)) throw new FerryError('FERRY_PROFILE_BAD_OPTIONS', `${name} must be a positive integer, got ${String(v)}`, 400)
  return v
}
