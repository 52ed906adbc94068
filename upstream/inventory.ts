import { StringDecoder } from 'node:string_decoder'
import { request, type Dispatcher } from 'undici'
import type { GatewayConfig } from '../fleet/schema.js'
import { FerryError } from '../lib/errors.js'
import { blockKey, isValidId } from '../lib/ids.js'
import { s3Signer } from './s3.js'
import { describeGatewayError, rawGatewayPool } from './connect.js'

/** One block a gateway holds. */
export interface InventoryEntry {
  volume: string
  block: string
  size: number
  /**
   * The ETag a HEAD of the block would answer with, when the listing tells it without reading the
   * block: the reference gateway's content hash if it has hashed that version since it started
   * (else null); nginx's `"<mtime hex>-<size hex>"`, derived from the listing as nginx derives it.
   */
  etag: string | null
  /** When this version was written (the file's mtime), ms since the epoch; nginx: whole seconds. */
  modifiedAt: number
  /** A tombstone (listed only with `tombstones`): a client deleted the block at `modifiedAt`. */
  deleted?: true
}

export interface ListOptions {
  /** Aborts the listing; the iterator then throws the signal's reason. */
  signal?: AbortSignal
  /**
   * Connections to the gateway (a pool the caller already has, without the s3 mapping: the
   * listing signs its own bucket requests); default: a pool for this listing, with the gateway's
   * `tls` (upstream/connect.ts).
   */
  dispatcher?: Dispatcher
  /**
   * Also list the gateway's tombstones, after its blocks (gateway/README.md "Tombstones"). Only
   * the reference gateway keeps them; nginx cannot, so a delete on it is forgotten.
   */
  tombstones?: boolean
}

/** Blocks asked of the reference gateway per request: a few hundred KiB of JSON. */
export const INVENTORY_PAGE_SIZE = 2000

/**
 * Every block the gateway holds, as a stream: memory stays bounded by one page (the reference
 * gateway) or one listing entry (nginx), whatever the gateway's size. Grouped by volume; the
 * reference gateway lists in (volume, block) order, nginx in its own. A block present for the
 * whole listing is listed exactly once; one written or deleted meanwhile may or may not be.
 *
 * Throws FerryError FERRY_INVENTORY_FAILED (details: gateway, kind, status when there was one) when
 * the gateway cannot be listed — at the start or part-way; on abort, the signal's reason.
 */
export async function * listBlocks (gateway: GatewayConfig, opts: ListOptions = {}): AsyncIterable<InventoryEntry> {
  const lister = gateway.kind === 'webdav' ? listWebdav : gateway.kind === 's3' ? listS3 : listReference
  const own = opts.dispatcher === undefined ? rawGatewayPool(gateway, { connections: 1 }) : undefined
  try {
    yield * lister(new Lister(gateway, own === undefined ? opts : { ...opts, dispatcher: own }))
  } finally {
    if (own !== undefined) await own.destroy().catch(() => {})
  }
}

/** The requests and error reporting both kinds share. */
class Lister {
  readonly origin: string

  constructor (readonly gateway: GatewayConfig, readonly opts: ListOptions) {
    // Block paths are absolute (`/{volume}/{block}`), as the proxy and the planner send them.
    this.origin = new URL(gateway.url).origin
  }

  fail (message: string, status?: number, cause?: unknown): FerryError {
    const why = cause === undefined ? '' : `: ${describeGatewayError(cause)}`
    return new FerryError('FERRY_INVENTORY_FAILED', `cannot list gateway ${this.gateway.id} (${this.gateway.kind}): ${message}${why}`, 502,
      { gateway: this.gateway.id, kind: this.gateway.kind, ...(status === undefined ? {} : { status }) })
  }

  /** GET `path`; a response that is not 200 is the caller's to judge. Network errors become FERRY_INVENTORY_FAILED. */
  async get (path: string, headers: Record<string, string> = { accept: 'application/json' }): Promise<Dispatcher.ResponseData> {
    const { signal, dispatcher } = this.opts
    try {
      return await request(this.origin + path, { method: 'GET', headers, ...(signal === undefined ? {} : { signal }), ...(dispatcher === undefined ? {} : { dispatcher }) })
    } catch (err) {
      throw this.rethrow(`GET ${path} failed`, err)
    }
  }

  rethrow (what: string, err: unknown): unknown {
    if (this.opts.signal?.aborted === true) return this.opts.signal.reason
    if (err instanceof FerryError) return err
    return this.fail(what, undefined, err)
  }
}

interface ReferencePage {
  blocks: InventoryEntry[]
  next: string | null
}

/** The reference gateway: `GET /inventory?after=&limit=` pages (gateway/README.md "Inventory"). */
async function * listReference (l: Lister): AsyncIterable<InventoryEntry> {
  yield * pagesOfReference(l, false)
  if (l.opts.tombstones === true) yield * pagesOfReference(l, true)
}

async function * pagesOfReference (l: Lister, tombstones: boolean): AsyncIterable<InventoryEntry> {
  let after: string | null = null
  for (;;) {
    const path: string = `/inventory?limit=${INVENTORY_PAGE_SIZE}${tombstones ? '&tombstones=1' : ''}${after === null ? '' : `&after=${encodeURIComponent(after)}`}`
    const res = await l.get(path)
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => {})
      throw l.fail(`GET /inventory answered ${res.statusCode}${res.statusCode === 404 ? ' (a reference gateway older than the inventory endpoint?)' : ''}`, res.statusCode)
    }
    let page: unknown
    try {
      page = await res.body.json()
    } catch (err) {
      throw l.rethrow('the inventory page is not JSON', err)
    }
    if (!isReferencePage(page)) throw l.fail('the inventory page is not { blocks, next }')
    for (const b of page.blocks) {
      yield tombstones
        ? { volume: b.volume, block: b.block, size: 0, etag: null, modifiedAt: b.modifiedAt, deleted: true }
        : { volume: b.volume, block: b.block, size: b.size, etag: b.etag, modifiedAt: b.modifiedAt }
    }
    if (page.next === null) return
    // A cursor that does not move on would page for ever.
    if (after !== null && !cursorAfter(page.next, after)) throw l.fail(`the inventory cursor went from ${after} to ${page.next}, not forward`)
    after = page.next
  }
}

/** Whether cursor `a` comes after `b` in (volume, block) order: not the order of the key strings ('-' and '.' sort before '/'). */
function cursorAfter (a: string, b: string): boolean {
  const [av = '', ab = ''] = a.split('/')
  const [bv = '', bb = ''] = b.split('/')
  return av > bv || (av === bv && ab > bb)
}

function isReferencePage (v: unknown): v is ReferencePage {
  const p = v as Partial<ReferencePage> | null
  if (p === null || typeof p !== 'object' || !Array.isArray(p.blocks) || (p.next !== null && typeof p.next !== 'string')) return false
  return p.blocks.every(b => b !== null && typeof b === 'object' && typeof b.volume === 'string' && typeof b.block === 'string' &&
    Number.isSafeInteger(b.size) && (b.etag === null || typeof b.etag === 'string') && Number.isFinite(b.modifiedAt))
}

/** Keys asked of an S3 gateway per ListObjectsV2 page: S3's own maximum. */
const S3_PAGE_KEYS = 1000

/**
 * An `s3` gateway: ListObjectsV2 of the bucket under the gateway's prefix, `encoding-type=url` so
 * keys come percent-encoded (no XML escaping to undo), paged by continuation token. A key that is
 * not `<prefix><volume>/<block>` with valid ids is not a block ferry wrote, and is skipped.
 * `modifiedAt` is the object's LastModified: the time of its PUT, also for a migration's copy (the
 * listing does not carry the `x-amz-meta-ferry-written-at` a copy keeps; a HEAD does).
 */
async function * listS3 (l: Lister): AsyncIterable<InventoryEntry> {
  const signer = s3Signer(l.gateway)
  let token: string | null = null
  for (;;) {
    const query: string = `list-type=2&encoding-type=url&max-keys=${S3_PAGE_KEYS}${signer.prefix === '' ? '' : `&prefix=${encodeURIComponent(signer.prefix)}`}${token === null ? '' : `&continuation-token=${encodeURIComponent(token)}`}`
    const signed = signer.sign({ method: 'GET', path: signer.bucketPath(query) })
    const res = await l.get(signed.path, signed.headers as Record<string, string>)
    const text = await res.body.text().catch((err: unknown) => { throw l.rethrow('reading a ListObjectsV2 page failed', err) })
    if (res.statusCode !== 200) {
      const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1]
      throw l.fail(`ListObjectsV2 answered ${res.statusCode}${code === undefined ? '' : ` ${code}`}`, res.statusCode)
    }
    if (!text.includes('<ListBucketResult')) throw l.fail('the ListObjectsV2 answer is not a ListBucketResult')
    for (const m of text.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
      const c = m[1] as string
      const rawKey = xmlField(c, 'Key')
      const size = Number(xmlField(c, 'Size'))
      const modifiedAt = Date.parse(xmlField(c, 'LastModified') ?? '')
      const etag = xmlField(c, 'ETag')
      if (rawKey === undefined || !Number.isSafeInteger(size) || !Number.isFinite(modifiedAt)) throw l.fail('ListObjectsV2 listed an entry without Key, Size and LastModified')
      let key: string
      try { key = decodeURIComponent(rawKey.replace(/\+/g, ' ')) } catch { continue }
      if (!key.startsWith(signer.prefix)) continue
      const rest = key.slice(signer.prefix.length)
      const slash = rest.indexOf('/')
      const volume = rest.slice(0, slash)
      const block = rest.slice(slash + 1)
      if (slash <= 0 || !isValidId(volume) || !isValidId(block)) continue
      yield { volume, block, size, etag: etag === undefined ? null : xmlText(etag), modifiedAt }
    }
    if (xmlField(text, 'IsTruncated') !== 'true') return
    const next = xmlField(text, 'NextContinuationToken')
    if (next === undefined || next === token) throw l.fail('ListObjectsV2 is truncated without a new NextContinuationToken')
    token = xmlText(next)
  }
}

function xmlField (xml: string, name: string): string | undefined {
  const i = xml.indexOf(`<${name}>`)
  if (i < 0) return undefined
  const j = xml.indexOf(`</${name}>`, i)
  return j < 0 ? undefined : xml.slice(i + name.length + 2, j)
}

function xmlText (s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n))).replace(/&amp;/g, '&')
}

/** An entry of nginx's `autoindex_format json` listing. */
interface AutoindexEntry {
  name: string
  type: string
  mtime: string
  size?: number
}

/**
 * nginx's dav module cannot list, so a `webdav` gateway lists through `autoindex on;
 * autoindex_format json;` on the same location: `GET /` names the volumes (directories),
 * `GET /<volume>/` its blocks with mtime and size. Names that are not valid ids are not
 * blocks ferry could have written, and are skipped.
 */
async function * listWebdav (l: Lister): AsyncIterable<InventoryEntry> {
  // Volume names are few and small; the blocks of each are streamed.
  const volumes: string[] = []
  for await (const e of autoindex(l, '/', true)) {
    if (e.type === 'directory' && isValidId(e.name)) volumes.push(e.name)
  }
  for (const volume of volumes) {
    for await (const e of autoindex(l, `/${volume}/`, false)) {
      if (e.type !== 'file' || !isValidId(e.name) || !Number.isSafeInteger(e.size)) continue
      const size = e.size as number
      const modifiedAt = Date.parse(e.mtime)
      if (!Number.isFinite(modifiedAt)) throw l.fail(`GET /${volume}/ gave ${blockKey(volume, e.name)} the mtime ${JSON.stringify(e.mtime)}`)
      yield { volume, block: e.name, size, etag: nginxEtag(modifiedAt, size), modifiedAt }
    }
  }
}

/** nginx's ETag (`etag on`, its default): `"<mtime in s, hex>-<size, hex>"`. */
function nginxEtag (modifiedAtMs: number, size: number): string {
  return `"${Math.floor(modifiedAtMs / 1000).toString(16)}-${size.toString(16)}"`
}

/** The entries of one autoindex JSON listing, parsed as they arrive. */
async function * autoindex (l: Lister, path: string, root: boolean): AsyncIterable<AutoindexEntry> {
  const res = await l.get(path)
  if (res.statusCode !== 200) {
    await res.body.dump().catch(() => {})
    // A volume removed since `/` was listed has nothing left to list.
    if (!root && res.statusCode === 404) return
    const hint = res.statusCode === 403 || res.statusCode === 405 ? ' (nginx needs `autoindex on; autoindex_format json;` on the location: see upstream/README.md)' : ''
    throw l.fail(`GET ${path} answered ${res.statusCode}${hint}`, res.statusCode)
  }
  const type = String(res.headers['content-type'] ?? '')
  if (!type.startsWith('application/json')) {
    await res.body.dump().catch(() => {})
    throw l.fail(`GET ${path} answered ${type === '' ? 'without a content type' : type}, not a JSON listing (nginx needs \`autoindex_format json;\`)`)
  }
  try {
    for await (const value of jsonArrayItems(res.body)) {
      const e = value as Partial<AutoindexEntry> | null
      if (e === null || typeof e !== 'object' || typeof e.name !== 'string' || typeof e.type !== 'string' || typeof e.mtime !== 'string') {
        throw l.fail(`GET ${path} listed an entry that is not { name, type, mtime }`)
      }
      yield e as AutoindexEntry
    }
  } catch (err) {
    throw l.rethrow(`reading the listing of ${path} failed`, err)
  } finally {
    // An abandoned iteration (the consumer stopped early) must not leave the socket half read.
    if (!res.body.readableEnded) res.body.destroy()
  }
}

/** Longest single entry accepted: an autoindex entry is ~120 bytes; more is not a listing. */
const MAX_ITEM_CHARS = 64 * 1024

/**
 * The items of a top-level JSON array of objects, parsed one at a time as the bytes arrive, so
 * a listing of a million blocks never sits in memory whole. Only object items are supported
 * (what autoindex produces); anything else is a SyntaxError.
 */
async function * jsonArrayItems (body: AsyncIterable<Buffer>): AsyncIterable<unknown> {
  const decoder = new StringDecoder('utf8')
  let state: 'before' | 'between' | 'done' = 'before'
  let item = ''
  let depth = 0
  let inString = false
  let escaped = false
  for await (const chunk of body) {
    const text = decoder.write(chunk)
    let start = depth > 0 ? 0 : -1
    for (let i = 0; i < text.length; i++) {
      const c = text[i] as string
      if (depth > 0) {
        if (inString) {
          if (escaped) escaped = false
          else if (c === '\\') escaped = true
          else if (c === '"') inString = false
        } else if (c === '"') {
          inString = true
        } else if (c === '{' || c === '[') {
          depth++
        } else if (c === '}' || c === ']') {
          if (--depth === 0) {
            item += text.slice(start, i + 1)
            yield JSON.parse(item)
            item = ''
            start = -1
          }
        }
        continue
      }
      if (c === ' ' || c === '\n' || c === '\r' || c === '\t') continue
      if (state === 'before' && c === '[') { state = 'between'; continue }
      if (state === 'between' && c === ',') continue
      if (state === 'between' && c === ']') { state = 'done'; continue }
      if (state === 'between' && c === '{') { depth = 1; start = i; continue }
      throw new SyntaxError(`unexpected ${JSON.stringify(c)} in a JSON listing`)
    }
    if (depth > 0) {
      item += text.slice(start)
      if (item.length > MAX_ITEM_CHARS) throw new SyntaxError(`a listing entry longer than ${MAX_ITEM_CHARS} characters`)
    }
  }
  if (state !== 'done' || depth !== 0) throw new SyntaxError('the JSON listing ended early')
}
