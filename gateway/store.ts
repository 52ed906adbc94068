import { createHash, randomUUID } from 'node:crypto'
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises'
import type { BigIntStats } from 'node:fs'
import path from 'node:path'
import { FerryError } from '../lib/errors.js'
import { blockKey, isValidId } from '../lib/ids.js'

/**
 * The on-disk block store behind the reference gateway.
 *
 *   <dir>/<volume>/<block>   one regular file per block, its bytes exactly as PUT
 *   <dir>/.tmp/<uuid>        uploads in progress; emptied on every start
 *   <dir>/.tombstones/<volume>/<block>   an empty file whose mtime is when a client deleted the
 *                            block (README "Tombstones"); removed by the block's next PUT, pruned
 *                            after TOMBSTONE_TTL_MS
 *
 * Invariants:
 * - A block file is only ever created by rename(2) of a fully written, fsynced temp file, and never
 *   modified in place. So a reader holding an open fd sees one complete version, and a crash at
 *   any point leaves either the old block or the new one, never a mix.
 * - Ids cannot start with '.', so `.tmp` (and any dot-file) can never be addressed as a volume.
 * - Callers validate ids with isValidId before they get here; this module joins them into paths.
 */

export interface StoreOptions {
  maxBlockBytes: number
  /** How many ETags to remember (FIFO). A forgotten one costs one re-hash on the next read. */
  etagCacheSize?: number
}

export interface OpenedBlock {
  /** Open on the version the ETag describes; the caller must close it. */
  fh: FileHandle
  size: number
  etag: string
  /** When this version was written (the file's mtime, ms): README "Written-at". */
  writtenAt: number
}

/** One block in a listing. */
export interface ListedBlock {
  volume: string
  block: string
  size: number
  /** The content-hash ETag when known without reading the block (see `list`), else null. */
  etag: string | null
  /** The block file's mtime, ms since the epoch: when this version was written (README "Written-at"). */
  modifiedAt: number
  /** A tombstone (listed only with `tombstones`): the block was deleted at `modifiedAt`. */
  deleted?: true
}

export interface ListOptions {
  /** Start after this block (exclusive); null: from the start. */
  after: { volume: string, block: string } | null
  limit: number
  /** Hash blocks whose ETag is not cached (reads their bytes); default false: null for them. */
  hashUncached?: boolean
  /** List the tombstones instead of the blocks (README "Tombstones"). */
  tombstones?: boolean
}

export interface PutOptions {
  precondition?: Precondition
  onBytes?: (n: number) => void
  /**
   * When the bytes were first written, ms since the epoch: a copy keeps its original's time, so
   * a store-loss rebuild that picks the copy written last never prefers a copy over a later
   * write to its source. Default: now.
   */
  writtenAt?: number
  /**
   * Digests the body must have (raw bytes): checked after the last byte, before the commit, so
   * a mismatch stores nothing (DIGEST_MISMATCH). A client that signed its body's SHA-256, or
   * sent Content-MD5, through a proxy that leaves the hashing to the gateway that stores it.
   */
  expect?: { sha256?: Buffer, md5?: Buffer }
  /** Also compute the MD5 of the body (the ETag S3 clients check): returned as `md5`. */
  md5?: boolean
}

export interface DeleteOptions {
  precondition?: Precondition
  /** Leave a tombstone (a client's delete; not a migration's clean-up of a moved block's source). */
  tombstone?: boolean
}

/**
 * How long a tombstone is kept. It only has to outlive every stale copy of the block elsewhere in
 * the fleet (a moved block's source waiting for its clean-up, a replica whose delete failed),
 * which the planner removes within minutes; a day covers a planner that was down meanwhile.
 */
export const TOMBSTONE_TTL_MS = 24 * 3600_000

export interface PutResult {
  etag: string
  size: number
  created: boolean
  /** The body's SHA-256 (the ETag's) and, when asked for or checked, its MD5. */
  sha256: Buffer
  md5?: Buffer
}

/** Throws (typically a 412 FerryError) when the block's current ETag (null: absent) forbids the write. */
export type Precondition = (current: string | null) => void

const HASH_READ_BYTES = 1 << 20

export class BlockStore {
  readonly dir: string
  readonly tmpDir: string
  readonly tombstoneDir: string
  readonly maxBlockBytes: number
  readonly #etags: EtagCache
  readonly #hashing = new Map<string, Promise<string>>()
  readonly #locks = new KeyedLock()
  /** Sorted names of recently listed volumes, so paging through a big volume is not O(n²). */
  readonly #listings = new ListingCache(8)
  #closed = false

  constructor (dir: string, opts: StoreOptions) {
    this.dir = path.resolve(dir)
    this.tmpDir = path.join(this.dir, '.tmp')
    this.tombstoneDir = path.join(this.dir, '.tombstones')
    this.maxBlockBytes = opts.maxBlockBytes
    this.#etags = new EtagCache(opts.etagCacheSize ?? 100_000)
  }

  /** Creates the directories and removes uploads a previous process left half-written. */
  async init (): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true })
    for (const name of await readdir(this.tmpDir)) {
      await unlink(path.join(this.tmpDir, name)).catch(ignoreNotFound)
    }
  }

  /**
   * Refuses every later commit. Used when the gateway is killed: an upload that was mid-fsync
   * when the "process crashed" must not become visible afterwards.
   */
  close (): void {
    this.#closed = true
  }

  blockPath (volume: string, block: string): string {
    return path.join(this.dir, volume, block)
  }

  /** Opens the current version of a block with its ETag, or null if there is none. */
  async open (volume: string, block: string): Promise<OpenedBlock | null> {
    let fh: FileHandle
    try {
      fh = await open(this.blockPath(volume, block), 'r')
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
    try {
      const st = await fh.stat({ bigint: true })
      if (!st.isFile()) {
        await fh.close()
        return null
      }
      const etag = await this.#etagOf(blockKey(volume, block), fh, st)
      return { fh, size: Number(st.size), etag, writtenAt: msOf(st) }
    } catch (err) {
      await fh.close().catch(noop)
      throw err
    }
  }

  /** The current ETag, or null when the block does not exist. */
  async currentEtag (volume: string, block: string): Promise<string | null> {
    const b = await this.open(volume, block)
    if (b === null) return null
    await b.fh.close()
    return b.etag
  }

  /**
   * Streams `body` into a temp file (hashing as it goes, awaiting each write so the socket is
   * paused while the disk catches up), fsyncs it, then — under the block's lock — checks the
   * precondition against the current version and renames the file into place.
   * On any failure (too large, client gone, precondition) the temp file is removed.
   */
  async put (volume: string, block: string, body: AsyncIterable<Buffer>, opts: PutOptions = {}): Promise<PutResult> {
    const { precondition, onBytes, writtenAt, expect } = opts
    const tmp = path.join(this.tmpDir, randomUUID())
    const fh = await open(tmp, 'wx', 0o644)
    let committed = false
    try {
      const hash = createHash('sha256')
      const md5 = opts.md5 === true || expect?.md5 !== undefined ? createHash('md5') : undefined
      let size = 0
      for await (const chunk of body) {
        size += chunk.length
        onBytes?.(chunk.length)
        if (size > this.maxBlockBytes) throw tooLarge(this.maxBlockBytes)
        hash.update(chunk)
        md5?.update(chunk)
        await writeAll(fh, chunk)
      }
      const sha256 = hash.digest()
      const md5Digest = md5?.digest()
      if (expect?.sha256 !== undefined && !expect.sha256.equals(sha256)) throw digestMismatch('sha-256')
      if (expect?.md5 !== undefined && !expect.md5.equals(md5Digest as Buffer)) throw digestMismatch('md5')
      if (writtenAt !== undefined) await fh.utimes(new Date(), new Date(writtenAt))
      await fh.sync()
      const etag = quote(sha256.toString('hex'))
      const key = blockKey(volume, block)
      return await this.#locks.run(key, async () => {
        if (this.#closed) throw new FerryError('GATEWAY_STOPPED', 'the gateway stopped before the write was committed', 503)
        const final = this.blockPath(volume, block)
        let created: boolean
        if (precondition !== undefined) {
          const current = await this.currentEtag(volume, block)
          precondition(current)
          created = current === null
        } else {
          created = !(await exists(final))
        }
        const volumeDir = path.dirname(final)
        // mkdir returns the first directory it created: a new volume's entry in <dir> must be
        // made durable too, or a crash could lose the whole volume directory.
        if (await mkdir(volumeDir, { recursive: true }) !== undefined) await fsyncDir(this.dir)
        await rename(tmp, final)
        committed = true
        await fsyncDir(volumeDir)
        // The block exists again: its tombstone would only be noise (the new version is later).
        await unlink(this.tombstonePath(volume, block)).catch(ignoreNotFound)
        // Stat through our own fd after the rename (rename changes ctime): the cache entry then
        // describes exactly this inode, even if a later write replaces the path.
        this.#etags.set(key, await fh.stat({ bigint: true }), etag)
        return { etag, size, created, sha256, ...(md5Digest !== undefined ? { md5: md5Digest } : {}) }
      })
    } finally {
      await fh.close().catch(noop)
      // Best effort: a failure here must not mask the error that got us here; init() sweeps leftovers.
      if (!committed) await unlink(tmp).catch(noop)
    }
  }

  tombstonePath (volume: string, block: string): string {
    return path.join(this.tombstoneDir, volume, block)
  }

  /**
   * Deletes a block; false when there was none. With `tombstone`, records the delete even then:
   * another member of the block's replica set may still hold a copy that a store-loss rebuild
   * must not bring back.
   */
  async delete (volume: string, block: string, opts: DeleteOptions = {}): Promise<boolean> {
    const { precondition } = opts
    const key = blockKey(volume, block)
    return await this.#locks.run(key, async () => {
      if (this.#closed) throw new FerryError('GATEWAY_STOPPED', 'the gateway stopped before the delete was committed', 503)
      const final = this.blockPath(volume, block)
      if (precondition !== undefined) {
        const current = await this.currentEtag(volume, block)
        precondition(current)
        if (current === null) return false
      }
      let existed = true
      try {
        await unlink(final)
      } catch (err) {
        if (!isNotFound(err)) throw err
        existed = false
      }
      if (opts.tombstone === true) await this.#writeTombstone(volume, block)
      if (!existed) return false
      this.#etags.delete(key)
      await fsyncDir(path.dirname(final))
      return true
    })
  }

  /** An empty file, its mtime the time of the delete; made durable like a block. */
  async #writeTombstone (volume: string, block: string): Promise<void> {
    const file = this.tombstonePath(volume, block)
    const dir = path.dirname(file)
    if (await mkdir(dir, { recursive: true }) !== undefined) await fsyncDir(path.dirname(dir))
    const now = new Date()
    const fh = await open(file, 'w', 0o644)
    try {
      // An existing tombstone (deleted twice) moves to the later delete.
      await fh.utimes(now, now)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await fsyncDir(dir)
  }

  /**
   * Blocks in (volume, block) order, starting after `opts.after`, at most `opts.limit` of them.
   * Stateless cursor paging: a block present for the whole of a listing is listed exactly once;
   * one created or deleted meanwhile may or may not be. ETags come from the cache (a block read
   * or written since the gateway started); others are null unless `hashUncached`, because
   * hashing a whole disk to answer a listing would make it as slow as reading every block.
   */
  async list (opts: ListOptions): Promise<ListedBlock[]> {
    const out: ListedBlock[] = []
    const after = opts.after
    const tombstones = opts.tombstones === true
    const root = tombstones ? this.tombstoneDir : this.dir
    const volumes = (await readdirOrEmpty(root)).filter(isValidId).sort()
    for (let v = lowerBound(volumes, after?.volume ?? '', false); v < volumes.length && out.length < opts.limit; v++) {
      const volume = volumes[v] as string
      const names = tombstones ? (await readdirOrEmpty(path.join(root, volume))).filter(isValidId).sort() : await this.#blockNames(volume)
      const from = after !== null && volume === after.volume ? lowerBound(names, after.block, true) : 0
      for (let i = from; i < names.length && out.length < opts.limit; i++) {
        const block = names[i] as string
        const listed = tombstones ? await this.#listedTombstone(volume, block) : await this.#listed(volume, block, opts.hashUncached === true)
        if (listed !== null) out.push(listed)
      }
    }
    return out
  }

  /** A tombstone as a listing entry; one past TOMBSTONE_TTL_MS is removed instead (pruned as it is met). */
  async #listedTombstone (volume: string, block: string): Promise<ListedBlock | null> {
    const file = this.tombstonePath(volume, block)
    let st: BigIntStats
    try {
      st = await stat(file, { bigint: true })
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
    const modifiedAt = msOf(st)
    if (Date.now() - modifiedAt > TOMBSTONE_TTL_MS) {
      // Re-checked under the block's lock: a delete meanwhile renewed it.
      await this.#locks.run(blockKey(volume, block), async () => {
        const now = await stat(file).catch(() => null)
        if (now !== null && Date.now() - now.mtimeMs > TOMBSTONE_TTL_MS) await unlink(file).catch(ignoreNotFound)
      })
      return null
    }
    return { volume, block, size: 0, etag: null, modifiedAt, deleted: true }
  }

  /** A volume's block names, sorted; cached while the directory provably has not changed. */
  async #blockNames (volume: string): Promise<string[]> {
    const dir = path.join(this.dir, volume)
    let st: BigIntStats
    try {
      st = await stat(dir, { bigint: true })
    } catch (err) {
      if (isNotFound(err)) return []
      throw err
    }
    const cached = this.#listings.get(volume, st)
    if (cached !== undefined) return cached
    const readAt = BigInt(Date.now()) * 1_000_000n
    const names = (await readdirOrEmpty(dir)).filter(isValidId).sort()
    this.#listings.set(volume, st, names, readAt)
    return names
  }

  async #listed (volume: string, block: string, hash: boolean): Promise<ListedBlock | null> {
    const key = blockKey(volume, block)
    if (hash) {
      const b = await this.open(volume, block)
      if (b === null) return null
      try {
        return { volume, block, size: b.size, etag: b.etag, modifiedAt: b.writtenAt }
      } finally {
        await b.fh.close().catch(noop)
      }
    }
    let st: BigIntStats
    try {
      st = await stat(this.blockPath(volume, block), { bigint: true })
    } catch (err) {
      if (isNotFound(err)) return null // deleted since the directory was read
      throw err
    }
    if (!st.isFile()) return null
    return { volume, block, size: Number(st.size), etag: this.#etags.get(key, st) ?? null, modifiedAt: msOf(st) }
  }

  /**
   * The ETag of the version open on `fh`. Cached by file identity (device, inode, size, mtime,
   * ctime): since blocks are only ever replaced by rename, a matching identity means the same
   * bytes, and a restart simply starts with an empty cache (one re-hash per block on first read).
   * Concurrent misses on the same version share one hash.
   */
  async #etagOf (key: string, fh: FileHandle, st: BigIntStats): Promise<string> {
    const cached = this.#etags.get(key, st)
    if (cached !== undefined) return cached
    const id = `${key}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
    let pending = this.#hashing.get(id)
    if (pending === undefined) {
      pending = hashFile(fh, Number(st.size)).finally(() => this.#hashing.delete(id))
      this.#hashing.set(id, pending)
    }
    const etag = await pending
    this.#etags.set(key, st, etag)
    return etag
  }
}

interface CachedEtag {
  dev: bigint
  ino: bigint
  size: bigint
  mtimeNs: bigint
  ctimeNs: bigint
  etag: string
}

class EtagCache {
  readonly #map = new Map<string, CachedEtag>()
  readonly #limit: number

  constructor (limit: number) {
    this.#limit = limit
  }

  get (key: string, st: BigIntStats): string | undefined {
    const e = this.#map.get(key)
    if (e === undefined) return undefined
    if (e.ino !== st.ino || e.dev !== st.dev || e.size !== st.size || e.mtimeNs !== st.mtimeNs || e.ctimeNs !== st.ctimeNs) return undefined
    return e.etag
  }

  set (key: string, st: BigIntStats, etag: string): void {
    this.#map.delete(key)
    this.#map.set(key, { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, etag })
    if (this.#map.size > this.#limit) {
      const oldest = this.#map.keys().next()
      if (oldest.done !== true) this.#map.delete(oldest.value)
    }
  }

  delete (key: string): void {
    this.#map.delete(key)
  }
}

/**
 * Sorted block names per volume, reused while the directory's mtime is unchanged. File system
 * timestamps are coarse (a clock tick, a few ms), so a name added in the same tick as the
 * change before a read would leave the mtime as it was: a listing is only kept when the
 * directory had been quiet for a while before it was read, so a later change is sure to move it.
 */
class ListingCache {
  static readonly QUIET_NS = 1_000_000_000n
  readonly #map = new Map<string, { mtimeNs: bigint, ino: bigint, names: string[] }>()

  constructor (readonly limit: number) {}

  get (volume: string, st: BigIntStats): string[] | undefined {
    const e = this.#map.get(volume)
    return e !== undefined && e.mtimeNs === st.mtimeNs && e.ino === st.ino ? e.names : undefined
  }

  set (volume: string, st: BigIntStats, names: string[], readAtNs: bigint): void {
    this.#map.delete(volume)
    if (readAtNs - st.mtimeNs < ListingCache.QUIET_NS) return
    this.#map.set(volume, { mtimeNs: st.mtimeNs, ino: st.ino, names })
    if (this.#map.size > this.limit) {
      const oldest = this.#map.keys().next()
      if (oldest.done !== true) this.#map.delete(oldest.value)
    }
  }
}

/** The first index whose name is > `key` (`strict`) or >= `key` in a sorted array. */
function lowerBound (sorted: readonly string[], key: string, strict: boolean): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const m = sorted[mid] as string
    if (m < key || (strict && m === key)) lo = mid + 1
    else hi = mid
  }
  return lo
}

async function readdirOrEmpty (dir: string): Promise<string[]> {
  try {
    return await readdir(dir)
  } catch (err) {
    if (isNotFound(err)) return []
    throw err
  }
}

function digestMismatch (algorithm: 'sha-256' | 'md5'): FerryError {
  return new FerryError('DIGEST_MISMATCH', `the body's ${algorithm} does not match the digest the request declared; nothing was stored`, 400, { algorithm })
}

/** Serialises the commit step per key (check-then-rename must not interleave for one block). */
class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>()

  async run<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key)
    let release!: () => void
    const mine = new Promise<void>(resolve => { release = resolve })
    const tail = prev === undefined ? mine : prev.then(() => mine)
    this.#tails.set(key, tail)
    if (prev !== undefined) await prev
    try {
      return await fn()
    } finally {
      release()
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    }
  }
}

export function tooLarge (max: number): FerryError {
  return new FerryError('PAYLOAD_TOO_LARGE', `block larger than the limit of ${max} bytes`, 413, { maxBlockBytes: max })
}

function quote (hex: string): string {
  return '"' + hex + '"'
}

async function hashFile (fh: FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256')
  const buf = Buffer.allocUnsafe(Math.max(1, Math.min(size, HASH_READ_BYTES)))
  let pos = 0
  while (pos < size) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos)
    if (bytesRead === 0) break
    hash.update(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead))
    pos += bytesRead
  }
  return quote(hash.digest('hex'))
}

async function writeAll (fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off)
    off += bytesWritten
  }
}

/** Makes a directory's entries (a rename, a new file) durable. */
async function fsyncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

async function exists (file: string): Promise<boolean> {
  try {
    await stat(file)
    return true
  } catch (err) {
    if (isNotFound(err)) return false
    throw err
  }
}

function isNotFound (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

function ignoreNotFound (err: unknown): void {
  if (!isNotFound(err)) throw err
}

function noop (): void {}

/**
 * A file's mtime in ms, rounded: a written-at set through utimes travels as seconds in a double
 * (1796428533.876 is stored as …875999999 ns), so flooring would give it back 1 ms early.
 */
function msOf (st: BigIntStats): number {
  return Number((st.mtimeNs + 500_000n) / 1_000_000n)
}
