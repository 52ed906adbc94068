/**
 * Metadata embedders: turn a block's content metadata (volume, path, name, tags) into a unit
 * vector, so blocks with similar metadata land near each other and the placement model can
 * transfer what it learned about one to the other.
 *
 * The default, NgramHashEmbedder, needs no model file: character n-grams, whole tokens and
 * path prefixes hashed into a fixed number of dimensions ("the hashing trick", Weinberger et
 * al., ICML 2009). It is deterministic across processes and versions of Node, which matters
 * because a trained model stores vectors made by it. TransformersEmbedder (transformers.ts)
 * runs a local sentence-embedding model instead; both implement Embedder.
 */
import { FerryError } from '../../lib/errors.js'
import { hashString } from '../../lib/rendezvous.js'

export interface Embedder {
  /** Length of every vector. */
  readonly dim: number
  /** Identifies the embedding space (algorithm, parameters, model): a model trained with one refuses another. */
  readonly name: string
  /** One L2-normalised vector per text, in order. */
  embed (texts: string[]): Promise<Float32Array[]>
}

/** Content metadata of a block. Every field but volume and block is optional. */
export interface BlockMeta {
  volume: string
  block: string
  /** A human name (file name, object name). Defaults to the block id. */
  name?: string
  /** A hierarchical path, '/'-separated (URL path, file path). */
  path?: string
  tags?: string[]
  /**
   * Site of the client whose request created the block (its first write, or first access
   * when blocks appear by being read). Known at placement time; not part of the embedded text.
   */
  origin?: string
}

/**
 * The text an embedder sees for a block: its path (or volume and name when there is none) and
 * its tags. The volume is always included, since the volume name often carries meaning too
 * ("sts-70-images" is near "sts-71-images").
 */
export function metaText (meta: BlockMeta): string {
  const parts: string[] = []
  if (meta.path !== undefined && meta.path !== '') parts.push(meta.path)
  else parts.push(meta.volume + '/' + (meta.name ?? meta.block))
  if (meta.path !== undefined && meta.name !== undefined && meta.name !== '') parts.push(meta.name)
  parts.push('vol:' + meta.volume)
  if (meta.tags !== undefined && meta.tags.length > 0) parts.push('tags: ' + meta.tags.join(' '))
  return parts.join(' ')
}

export interface NgramHashOptions {
  /** Vector length (default 256). */
  dim?: number
  /** Character n-gram sizes (default [3, 4]). */
  ngrams?: number[]
}

const SEED_TOKEN = 0x9e3779b9
const SEED_PREFIX = 0x7f4a7c15
const SEED_SIGN = 0x85ebca6b

/**
 * Character n-gram hashing. Features of a text:
 *   - every '/'-path prefix of the first token that contains '/' (/shuttle, /shuttle/missions,
 *     …), weighted by depth, because a shared directory is the strongest hint two objects are
 *     used by the same people;
 *   - every token (split on non-alphanumerics, lower-cased) as a whole;
 *   - every character n-gram of `<token>`, so "sts-70" and "sts-71" share most features.
 * Each feature goes to bucket hash(feature) mod dim with sign ±1 from a second hash (so
 * collisions cancel in expectation), and the vector is L2-normalised.
 */
export class NgramHashEmbedder implements Embedder {
  readonly dim: number
  readonly name: string
  private readonly ngrams: number[]

  constructor (opts: NgramHashOptions = {}) {
    this.dim = opts.dim ?? 256
    this.ngrams = [...(opts.ngrams ?? [3, 4])].sort((a, b) => a - b)
    if (!Number.isInteger(this.dim) || this.dim < 8 || this.dim > 65536) throw new FerryError('FERRY_PLACEMENT_BAD_OPTIONS', `ngram embedder dim must be an integer in [8, 65536], got ${String(opts.dim)}`, 400)
    if (this.ngrams.length === 0 || this.ngrams.some(n => !Number.isInteger(n) || n < 1 || n > 8)) throw new FerryError('FERRY_PLACEMENT_BAD_OPTIONS', 'ngram sizes must be integers in [1, 8]', 400)
    this.name = `ngram-hash-v1:d=${this.dim}:n=${this.ngrams.join(',')}`
  }

  async embed (texts: string[]): Promise<Float32Array[]> {
    return texts.map(t => this.embedOne(t))
  }

  /** Synchronous form (the embedder does no I/O). */
  embedOne (text: string): Float32Array {
    const v = new Float32Array(this.dim)
    const lower = text.toLowerCase()
    // Path prefixes of the first path-like token.
    const pathEnd = lower.indexOf(' ')
    const path = pathEnd < 0 ? lower : lower.slice(0, pathEnd)
    if (path.includes('/')) {
      let depth = 0
      for (let i = 1; i <= path.length; i++) {
        if (i === path.length || path.charCodeAt(i) === 47 /* / */) {
          depth++
          this.add(v, path.slice(0, i), SEED_PREFIX, Math.min(2, 0.5 + 0.25 * depth))
        }
      }
    }
    let start = -1
    for (let i = 0; i <= lower.length; i++) {
      const c = i < lower.length ? lower.charCodeAt(i) : 32
      const alnum = (c >= 48 && c <= 57) || (c >= 97 && c <= 122) || c > 127
      if (alnum) { if (start < 0) start = i; continue }
      if (start >= 0) { this.token(v, lower.slice(start, i)); start = -1 }
    }
    normalise(v)
    return v
  }

  private token (v: Float32Array, tok: string): void {
    this.add(v, tok, SEED_TOKEN, 1)
    const padded = '<' + tok + '>'
    for (const n of this.ngrams) {
      if (padded.length < n) continue
      const count = padded.length - n + 1
      const w = 1 / Math.sqrt(count)
      for (let i = 0; i < count; i++) this.add(v, padded.slice(i, i + n), n, w)
    }
  }

  private add (v: Float32Array, feature: string, seed: number, w: number): void {
    const h = hashString(feature, seed)
    const sign = (hashString(feature, SEED_SIGN ^ seed) & 1) === 0 ? 1 : -1
    const i = h % this.dim;
    (v[i] as number) += sign * w
  }
}

/** In-place L2 normalisation (a zero vector stays zero). */
export function normalise (v: Float32Array): Float32Array {
  let sq = 0
  for (let i = 0; i < v.length; i++) sq += (v[i] as number) * (v[i] as number)
  if (sq > 0) {
    const inv = 1 / Math.sqrt(sq)
    for (let i = 0; i < v.length; i++) (v[i] as number) *= inv
  }
  return v
}

/**
 * Remembers the last `max` embeddings by text. Periodic retraining re-embeds mostly the same
 * blocks, and a transformer forward pass is the expensive part of it.
 */
export class CachingEmbedder implements Embedder {
  readonly dim: number
  readonly name: string
  private readonly cache = new Map<string, Float32Array>()
  hits = 0
  misses = 0

  constructor (private readonly inner: Embedder, private readonly max = 100_000) {
    this.dim = inner.dim
    this.name = inner.name
  }

  async embed (texts: string[]): Promise<Float32Array[]> {
    const out: Array<Float32Array | undefined> = new Array(texts.length)
    const missing: string[] = []
    const missingAt: number[] = []
    for (let i = 0; i < texts.length; i++) {
      const t = texts[i] as string
      const hit = this.cache.get(t)
      if (hit !== undefined) {
        // Map order is insertion order: re-insert to mark as recently used.
        this.cache.delete(t); this.cache.set(t, hit)
        out[i] = hit; this.hits++
      } else { missing.push(t); missingAt.push(i) }
    }
    if (missing.length > 0) {
      this.misses += missing.length
      const vecs = await this.inner.embed(missing)
      for (let j = 0; j < missing.length; j++) {
        const vec = vecs[j] as Float32Array
        out[missingAt[j] as number] = vec
        this.cache.set(missing[j] as string, vec)
      }
      while (this.cache.size > this.max) this.cache.delete(this.cache.keys().next().value as string)
    }
    return out as Float32Array[]
  }
}
