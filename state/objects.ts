import type { Cluster, Redis } from 'ioredis'
import type { StateConfig } from './config.js'
import { createCommandClient, mapRedisError, resolveConnection } from './redis/connection.js'

/**
 * The object index: what S3 listings and object metadata are served from, in the shared store,
 * never by asking gateways. Per bucket (= volume) an ordered set of keys (a Redis sorted set
 * with every score 0, so ZRANGEBYLEX walks keys in UTF-8 byte order — S3's listing order) and a
 * hash key → metadata; the buckets; open multipart uploads with their parts.
 *
 * It sits beside `StateStore` rather than in it: it is the S3 front end's data (its own keys,
 * `<prefix>s3:…`, hash-tagged per bucket so a bucket's keys share a Cluster slot), and the block
 * locations, which moves and repairs change, stay where they are. A block's location and its
 * object's index entry are independent: a move changes the first and never the second.
 */

/** What S3 returns about an object besides its bytes. */
export interface ObjectMeta {
  /** MD5 of the body (hex), or MD5 of the parts' MD5s + `-N` for a multipart object. */
  etag: string
  size: number
  /** ms since the epoch. */
  lastModified: number
  contentType?: string
  /** x-amz-meta-* (names lower case, without the prefix). */
  meta?: Record<string, string>
  /** content-disposition, cache-control, content-encoding, content-language, expires. */
  headers?: Record<string, string>
  /** Multipart objects: each part's size, for GET ?partNumber=N. */
  parts?: number[]
  /** Multipart objects: the upload that made it, so a retried Complete of it is answered again. */
  uploadId?: string
}

export interface ListedObject { key: string, meta: ObjectMeta }

export interface UploadRecord {
  uploadId: string
  volume: string
  key: string
  initiated: number
  contentType?: string
  meta?: Record<string, string>
  headers?: Record<string, string>
}

export interface PartRecord { part: number, etag: string, size: number, lastModified: number }

/** Where a listing starts: after `key`, or after every key that begins with `key` (a common prefix already returned). */
export interface ListFrom { key: string, skipPrefix: boolean }

export interface ObjectIndex {
  /** false when it already existed. */
  createBucket (volume: string, at: number): Promise<boolean>
  bucketCreated (volume: string): Promise<number | null>
  listBuckets (): Promise<Array<{ name: string, created: number }>>
  /** 'not-empty' while it holds an object or an open upload. */
  deleteBucket (volume: string): Promise<'deleted' | 'not-empty' | 'missing'>
  /** Also records the bucket if it was not (a block written before the bucket was created). */
  putObject (volume: string, key: string, meta: ObjectMeta): Promise<void>
  getObject (volume: string, key: string): Promise<ObjectMeta | null>
  deleteObject (volume: string, key: string): Promise<boolean>
  /** Up to `limit` keys beginning with `prefix`, in UTF-8 byte order, after `from`. */
  list (volume: string, prefix: string, from: ListFrom | undefined, limit: number): Promise<ListedObject[]>
  countObjects (volume: string): Promise<number>
  createUpload (rec: UploadRecord): Promise<void>
  getUpload (volume: string, uploadId: string): Promise<UploadRecord | null>
  putPart (volume: string, uploadId: string, part: PartRecord): Promise<void>
  listParts (volume: string, uploadId: string): Promise<PartRecord[]>
  deleteUpload (volume: string, uploadId: string): Promise<void>
  /** Open uploads of a bucket, by key then initiation. */
  listUploads (volume: string): Promise<UploadRecord[]>
  /** Open uploads (any bucket) initiated before `before`. */
  staleUploads (before: number, limit: number): Promise<UploadRecord[]>
  close (): Promise<void>
}

function byteCompare (a: Buffer, b: Buffer): number { return Buffer.compare(a, b) }

/** The first byte string greater than every string beginning with `p` (0xFF never occurs in UTF-8). */
function pastPrefix (p: string): Buffer { return Buffer.concat([Buffer.from(p, 'utf8'), Buffer.from([0xff])]) }

interface MemBucket { created: number, keys: Array<{ key: string, buf: Buffer }>, meta: Map<string, ObjectMeta> }

/** One process's index (the memory store's companion): a sorted array per bucket, binary-searched. */
export class MemoryObjectIndex implements ObjectIndex {
  private readonly buckets = new Map<string, MemBucket>()
  private readonly uploads = new Map<string, { rec: UploadRecord, parts: Map<number, PartRecord> }>()

  async createBucket (volume: string, at: number): Promise<boolean> {
    if (this.buckets.has(volume)) return false
    this.buckets.set(volume, { created: at, keys: [], meta: new Map() })
    return true
  }

  async bucketCreated (volume: string): Promise<number | null> { return this.buckets.get(volume)?.created ?? null }

  async listBuckets (): Promise<Array<{ name: string, created: number }>> {
    return [...this.buckets].map(([name, b]) => ({ name, created: b.created })).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  }

  async deleteBucket (volume: string): Promise<'deleted' | 'not-empty' | 'missing'> {
    const b = this.buckets.get(volume)
    if (b === undefined) return 'missing'
    if (b.keys.length > 0 || [...this.uploads.values()].some(u => u.rec.volume === volume)) return 'not-empty'
    this.buckets.delete(volume)
    return 'deleted'
  }

  async putObject (volume: string, key: string, meta: ObjectMeta): Promise<void> {
    let b = this.buckets.get(volume)
    if (b === undefined) this.buckets.set(volume, b = { created: meta.lastModified, keys: [], meta: new Map() })
    if (!b.meta.has(key)) {
      const buf = Buffer.from(key, 'utf8')
      b.keys.splice(this.lowerBound(b, buf, false), 0, { key, buf })
    }
    b.meta.set(key, meta)
  }

  async getObject (volume: string, key: string): Promise<ObjectMeta | null> { return this.buckets.get(volume)?.meta.get(key) ?? null }

  async deleteObject (volume: string, key: string): Promise<boolean> {
    const b = this.buckets.get(volume)
    if (b?.meta.delete(key) !== true) return false
    const i = this.lowerBound(b, Buffer.from(key, 'utf8'), false)
    b.keys.splice(i, 1)
    return true
  }

  async list (volume: string, prefix: string, from: ListFrom | undefined, limit: number): Promise<ListedObject[]> {
    const b = this.buckets.get(volume)
    if (b === undefined) return []
    const p = Buffer.from(prefix, 'utf8')
    let i = this.lowerBound(b, p, false)
    if (from !== undefined) {
      const j = from.skipPrefix ? this.lowerBound(b, pastPrefix(from.key), false) : this.lowerBound(b, Buffer.from(from.key, 'utf8'), true)
      i = Math.max(i, j)
    }
    const out: ListedObject[] = []
    for (; i < b.keys.length && out.length < limit; i++) {
      const e = b.keys[i] as { key: string, buf: Buffer }
      if (!e.key.startsWith(prefix)) break
      out.push({ key: e.key, meta: b.meta.get(e.key) as ObjectMeta })
    }
    return out
  }

  async countObjects (volume: string): Promise<number> { return this.buckets.get(volume)?.keys.length ?? 0 }

  async createUpload (rec: UploadRecord): Promise<void> { this.uploads.set(rec.volume + '/' + rec.uploadId, { rec, parts: new Map() }) }
  async getUpload (volume: string, uploadId: string): Promise<UploadRecord | null> { return this.uploads.get(volume + '/' + uploadId)?.rec ?? null }
  async putPart (volume: string, uploadId: string, part: PartRecord): Promise<void> { this.uploads.get(volume + '/' + uploadId)?.parts.set(part.part, part) }
  async listParts (volume: string, uploadId: string): Promise<PartRecord[]> {
    return [...(this.uploads.get(volume + '/' + uploadId)?.parts.values() ?? [])].sort((a, b) => a.part - b.part)
  }

  async deleteUpload (volume: string, uploadId: string): Promise<void> { this.uploads.delete(volume + '/' + uploadId) }
  async listUploads (volume: string): Promise<UploadRecord[]> {
    return [...this.uploads.values()].map(u => u.rec).filter(r => r.volume === volume).sort(compareUploads)
  }

  async staleUploads (before: number, limit: number): Promise<UploadRecord[]> {
    return [...this.uploads.values()].map(u => u.rec).filter(r => r.initiated < before).slice(0, limit)
  }

  async close (): Promise<void> {}

  /** First index whose key is ≥ `buf` (> with `after`). */
  private lowerBound (b: MemBucket, buf: Buffer, after: boolean): number {
    let lo = 0
    let hi = b.keys.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const c = byteCompare((b.keys[mid] as { buf: Buffer }).buf, buf)
      if (c < 0 || (after && c === 0)) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

function compareUploads (a: UploadRecord, b: UploadRecord): number {
  const c = Buffer.compare(Buffer.from(a.key), Buffer.from(b.key))
  return c !== 0 ? c : a.initiated - b.initiated
}

const PUT_OBJECT = 'ferryS3PutObject'
/** Metadata before the key, atomically: a listing never names a key whose metadata is missing. */
const PUT_OBJECT_LUA = `redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1`

/**
 * The index on Redis (standalone or Cluster). Keys: `<p>s3:buckets` (hash volume → created),
 * `<p>s3:{vol}:keys` (sorted set, scores 0), `<p>s3:{vol}:meta` (hash key → JSON),
 * `<p>s3:{vol}:up:<id>` (hash: `_` → the upload, `<n>` → part n), `<p>s3:{vol}:uploads` (sorted
 * set of upload ids by initiation) and `<p>s3:uploads` (sorted set `vol/id` by initiation, for
 * the sweep of abandoned uploads).
 */
export class RedisObjectIndex implements ObjectIndex {
  private readonly client: Redis | Cluster
  private readonly p: string

  constructor (config: StateConfig) {
    this.client = createCommandClient(resolveConnection(config), config)
    this.client.defineCommand(PUT_OBJECT, { numberOfKeys: 2, lua: PUT_OBJECT_LUA })
    this.p = config.keyPrefix + 's3:'
    this.client.on('error', () => {}) // reconnection is the client's job; calls fail fast meanwhile
    this.client.connect().catch(() => {})
  }

  private k (volume: string, what: string): string { return `${this.p}{${volume}}:${what}` }

  private async run<T> (f: () => Promise<T>): Promise<T> {
    try { return await f() } catch (err) { throw mapRedisError(err) }
  }

  async createBucket (volume: string, at: number): Promise<boolean> {
    return await this.run(async () => await this.client.hsetnx(this.p + 'buckets', volume, String(at)) === 1)
  }

  async bucketCreated (volume: string): Promise<number | null> {
    const v = await this.run(async () => await this.client.hget(this.p + 'buckets', volume))
    return v === null ? null : Number(v)
  }

  async listBuckets (): Promise<Array<{ name: string, created: number }>> {
    const all = await this.run(async () => await this.client.hgetall(this.p + 'buckets'))
    return Object.entries(all).map(([name, v]) => ({ name, created: Number(v) })).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  }

  async deleteBucket (volume: string): Promise<'deleted' | 'not-empty' | 'missing'> {
    return await this.run(async () => {
      const [keys, uploads] = await Promise.all([this.client.zcard(this.k(volume, 'keys')), this.client.zcard(this.k(volume, 'uploads'))])
      if (keys > 0 || uploads > 0) return 'not-empty'
      return await this.client.hdel(this.p + 'buckets', volume) === 1 ? 'deleted' : 'missing'
    })
  }

  async putObject (volume: string, key: string, meta: ObjectMeta): Promise<void> {
    await this.run(async () => {
      // One script (the two keys share the volume's slot) and the bucket's record, sent together:
      // one round trip for an upload's commit, where a MULTI of two writes and then the record were
      // two, and most of the client's CPU per commit.
      const putObject = (this.client as unknown as Record<typeof PUT_OBJECT, (meta: string, keys: string, key: string, json: string) => Promise<number>>)[PUT_OBJECT]
      await Promise.all([
        putObject.call(this.client, this.k(volume, 'meta'), this.k(volume, 'keys'), key, JSON.stringify(meta)),
        this.client.hsetnx(this.p + 'buckets', volume, String(meta.lastModified))
      ])
    })
  }

  async getObject (volume: string, key: string): Promise<ObjectMeta | null> {
    const v = await this.run(async () => await this.client.hget(this.k(volume, 'meta'), key))
    return v === null ? null : JSON.parse(v) as ObjectMeta
  }

  async deleteObject (volume: string, key: string): Promise<boolean> {
    const r = await this.run(async () => await this.client.multi().zrem(this.k(volume, 'keys'), key).hdel(this.k(volume, 'meta'), key).exec())
    return r?.[0]?.[1] === 1
  }

  async list (volume: string, prefix: string, from: ListFrom | undefined, limit: number): Promise<ListedObject[]> {
    let min: Buffer = Buffer.from('[' + prefix, 'utf8')
    if (from !== undefined) {
      const after = from.skipPrefix ? Buffer.concat([Buffer.from('['), pastPrefix(from.key)]) : Buffer.from('(' + from.key, 'utf8')
      if (Buffer.compare(after.subarray(1), min.subarray(1)) >= 0) min = after
    }
    const max = prefix === '' ? '+' : Buffer.concat([Buffer.from('('), pastPrefix(prefix)])
    return await this.run(async () => {
      const keys = await this.client.zrangebylex(this.k(volume, 'keys'), min, max, 'LIMIT', 0, limit)
      if (keys.length === 0) return []
      const metas = await this.client.hmget(this.k(volume, 'meta'), ...keys)
      const out: ListedObject[] = []
      keys.forEach((key, i) => {
        const m = metas[i]
        if (m !== null && m !== undefined) out.push({ key, meta: JSON.parse(m) as ObjectMeta })
      })
      return out
    })
  }

  async countObjects (volume: string): Promise<number> {
    return await this.run(async () => await this.client.zcard(this.k(volume, 'keys')))
  }

  async createUpload (rec: UploadRecord): Promise<void> {
    await this.run(async () => {
      await this.client.multi().hset(this.k(rec.volume, 'up:' + rec.uploadId), '_', JSON.stringify(rec))
        .zadd(this.k(rec.volume, 'uploads'), rec.initiated, rec.uploadId).exec()
      await this.client.zadd(this.p + 'uploads', rec.initiated, rec.volume + '/' + rec.uploadId)
    })
  }

  async getUpload (volume: string, uploadId: string): Promise<UploadRecord | null> {
    const v = await this.run(async () => await this.client.hget(this.k(volume, 'up:' + uploadId), '_'))
    return v === null ? null : JSON.parse(v) as UploadRecord
  }

  async putPart (volume: string, uploadId: string, part: PartRecord): Promise<void> {
    await this.run(async () => await this.client.hset(this.k(volume, 'up:' + uploadId), String(part.part), JSON.stringify(part)))
  }

  async listParts (volume: string, uploadId: string): Promise<PartRecord[]> {
    const all = await this.run(async () => await this.client.hgetall(this.k(volume, 'up:' + uploadId)))
    return Object.entries(all).filter(([f]) => f !== '_').map(([, v]) => JSON.parse(v) as PartRecord).sort((a, b) => a.part - b.part)
  }

  async deleteUpload (volume: string, uploadId: string): Promise<void> {
    await this.run(async () => {
      await this.client.multi().del(this.k(volume, 'up:' + uploadId)).zrem(this.k(volume, 'uploads'), uploadId).exec()
      await this.client.zrem(this.p + 'uploads', volume + '/' + uploadId)
    })
  }

  async listUploads (volume: string): Promise<UploadRecord[]> {
    const ids = await this.run(async () => await this.client.zrange(this.k(volume, 'uploads'), 0, 9999))
    const recs = await Promise.all(ids.map(async id => await this.getUpload(volume, id)))
    return recs.filter((r): r is UploadRecord => r !== null).sort(compareUploads)
  }

  async staleUploads (before: number, limit: number): Promise<UploadRecord[]> {
    const members = await this.run(async () => await this.client.zrangebyscore(this.p + 'uploads', '-inf', `(${before}`, 'LIMIT', 0, limit))
    const recs = await Promise.all(members.map(async m => {
      const i = m.indexOf('/')
      const rec = await this.getUpload(m.slice(0, i), m.slice(i + 1))
      // The upload's record is gone but its entry stayed (a crash between the two deletes).
      if (rec === null) await this.run(async () => await this.client.zrem(this.p + 'uploads', m))
      return rec
    }))
    return recs.filter((r): r is UploadRecord => r !== null)
  }

  async close (): Promise<void> {
    this.client.disconnect()
  }
}

/** The index beside the store the `state:` section configures. */
export function createObjectIndex (config: StateConfig): ObjectIndex {
  return config.backend === 'memory' ? new MemoryObjectIndex() : new RedisObjectIndex(config)
}
