/**
 * The placement model of the data partitioning engine: predicts, for a block never seen before,
 * the share of its accesses that will come from each site, so the block can be created where
 * it will be used instead of where a hash puts it.
 *
 * Evidence, blended as pseudo-counts (a Dirichlet-style mixture, so each source weighs in
 * proportion to how much it knows):
 *
 *   prior    the mean per-block site distribution over all training blocks   (weight α)
 *   volume   the mean distribution of the blocks of the block's volume, when
 *            the volume has history                                           (weight min(n, γ))
 *   kNN      the similarity-weighted mean distribution of the k training
 *            blocks whose metadata embeddings are nearest (cosine ≥ minSim)   (weight β·Σ sim)
 *   origin   when the block's creating request came from a known site, the
 *            mean distribution of training blocks created at that site        (weight δ)
 *            ("user behaviour": how far data created somewhere travels)
 *
 *   p(site) ∝ α·prior + min(n, γ)·volume + β·Σsim·kNN + δ·origin
 *
 * α, β, γ and δ are chosen by measurement at training time: leave-one-out over a sample of the
 * training blocks, half of them treated as "new block in a known volume" (the volume term
 * without the block itself), half as "block of a new volume" (no volume term, no neighbours
 * from the same volume), minimising cross-entropy against the blocks' observed distributions.
 * The validation figures are kept in the model file (`validation`), so a user can see what
 * metadata bought over the volume history alone and over the prior.
 *
 * Nearest neighbours rather than a linear model over the embeddings: they need no training
 * beyond storing examples, work the same for any embedder, and carry over whatever locality
 * the metadata has (a new directory next to directories read in Europe — see the tests). How
 * much they are worth depends on the data, which is why the blend is measured at training
 * time: on the NASA trace (bench/placement.ts) neighbours alone do worse than the prior for a
 * block of an unknown directory, the creating site carries most of the signal, and the
 * validation keeps β at 1 with δ at 16.
 * Vectors are kept as int8 (×127 of the unit vector): 4× smaller files, and dot products on
 * small integers; cosine error ≤ 1% for these dimensions.
 *
 * Neighbour search is exact up to EXACT_LIMIT examples. Beyond, a first pass ranks every
 * example by the Hamming distance between 64-bit random-hyperplane signatures (SimHash,
 * Charikar 2002: the chance two vectors' bits differ is their angle / π), and only the
 * `candidates` nearest by signature get an exact dot product. That makes a first-touch
 * decision cost O(N) popcounts plus O(candidates × dim), instead of O(N × dim). The
 * signatures are computed from the stored int8 vectors with fixed hyperplanes, so they are not
 * stored and a reloaded model searches exactly as the trained one.
 */
import { z } from 'zod'
import { FerryError } from '../../lib/errors.js'
import { metaText, type BlockMeta, type Embedder } from './embedder.js'

export interface TrainingExample {
  meta: BlockMeta
  /** Decayed (or raw) access score per site. Only the proportions matter. */
  scores: Readonly<Record<string, number>>
}

export interface PlacementTrainOptions {
  /** Fix the weight of the origin term (see module comment) instead of choosing it. */
  delta?: number
  /** Neighbours consulted (default 8). */
  k?: number
  /** Training blocks kept for neighbour search, the most accessed first (default 20,000). */
  maxExamples?: number
  /** Neighbours below this cosine similarity are ignored (default 0.3). */
  minSimilarity?: number
  /** Fix the blend instead of choosing it by validation. */
  alpha?: number
  beta?: number
  gamma?: number
  /** Site order of the model (default: every site seen, sorted; '' excluded unless listed). */
  sites?: readonly string[]
  /** Examples given an exact dot product after signature pre-filtering (default 16 × k). */
  candidates?: number
  /** Blocks used for the leave-one-out validation (default 300). */
  validationSample?: number
  /** Seed of the validation sample (default 1). */
  seed?: number
  /** Texts embedded per call (default 256). */
  batchSize?: number
}

export interface PlacementValidation {
  samples: number
  /** Mean cross-entropy (nats) of the chosen blend, of the prior alone, and of the prior with only one other term. */
  crossEntropy: { chosen: number, prior: number, volumeOnly: number, knnOnly: number, originOnly: number }
  /** Share of samples whose most likely predicted site is their observed top site. */
  topSiteAccuracy: { chosen: number, prior: number }
}

export interface PlacementParams {
  k: number
  minSimilarity: number
  candidates: number
  alpha: number
  beta: number
  /** Volume pseudo-count cap (Infinity is written as null). */
  gamma: number
  /** Weight of the origin-site term. */
  delta: number
}

export const PLACEMENT_FORMAT = 'ferry-placement'
export const PLACEMENT_VERSION = 1

const GRID_ALPHA = [0.25, 1, 4]
const GRID_BETA = [0, 0.5, 1, 2, 4, 8]
const GRID_GAMMA = [2, 8, 32, Infinity]
const GRID_DELTA = [0, 1, 4, 16]
const EPS = 1e-4
/** Exact neighbour search up to this many examples; signature pre-filtering beyond. */
const EXACT_LIMIT = 1024
const SIG_WORDS = 2

function badModel (message: string, details?: Record<string, unknown>): FerryError {
  return new FerryError('FERRY_PLACEMENT_BAD_MODEL', message, 400, details)
}

const fileSchema = z.object({
  format: z.literal(PLACEMENT_FORMAT),
  version: z.number().int(),
  embedder: z.object({ name: z.string(), dim: z.number().int().positive() }),
  trainedAt: z.string(),
  sites: z.array(z.string()),
  params: z.object({
    k: z.number().int().positive(),
    minSimilarity: z.number(),
    candidates: z.number().int().positive(),
    alpha: z.number().positive(),
    beta: z.number().nonnegative(),
    gamma: z.number().positive().nullable(),
    delta: z.number().nonnegative()
  }),
  validation: z.object({
    samples: z.number().int().nonnegative(),
    crossEntropy: z.object({ chosen: z.number(), prior: z.number(), volumeOnly: z.number(), knnOnly: z.number(), originOnly: z.number() }),
    topSiteAccuracy: z.object({ chosen: z.number(), prior: z.number() })
  }).nullable(),
  prior: z.array(z.number().nonnegative()),
  volumes: z.array(z.tuple([z.string(), z.number().int().positive(), z.array(z.number().nonnegative())])),
  origins: z.array(z.tuple([z.string(), z.number().int().positive(), z.array(z.number().nonnegative())])),
  examples: z.object({
    count: z.number().int().nonnegative(),
    vectors: z.string(),
    shares: z.string(),
    volumes: z.string(),
    origins: z.string()
  })
}).strict()

interface VolumeStats { n: number, shares: Float64Array }

export class PlacementModel {
  readonly sites: readonly string[]
  // Set once, by train()'s validation step, before the model is handed out.
  private _params: PlacementParams
  private _validation: PlacementValidation | null
  readonly trainedAt: string
  private readonly embedder: Embedder
  private readonly prior: Float64Array
  private readonly volumes: Map<string, VolumeStats>
  private readonly volumeNames: string[]
  /** Mean distribution of the training blocks created at each site. */
  private readonly origins: Map<string, VolumeStats>
  private readonly originNames: string[]
  /** count: index into originNames, -1 when unknown. */
  private readonly exampleOrigin: Int32Array
  /** count × dim int8 unit vectors ×127. */
  private readonly vectors: Int8Array
  /** count × S site shares. */
  private readonly shares: Float32Array
  /** count: index into volumeNames. */
  private readonly exampleVolume: Uint32Array
  private readonly count: number
  // Scratch for the neighbour search (one search at a time: predict is synchronous after embed).
  private readonly topIdx: Int32Array
  private readonly topSim: Float64Array
  private readonly query: Int8Array
  /** count × SIG_WORDS signature words (when count > EXACT_LIMIT). */
  private readonly sigs: Uint32Array
  private readonly planes: Float32Array
  private readonly hamming: Uint8Array
  private readonly querySig = new Uint32Array(SIG_WORDS)

  private constructor (init: {
    embedder: Embedder, sites: readonly string[], params: PlacementParams, validation: PlacementValidation | null, trainedAt: string,
    prior: Float64Array, volumes: Map<string, VolumeStats>, volumeNames: string[], vectors: Int8Array, shares: Float32Array, exampleVolume: Uint32Array,
    origins: Map<string, VolumeStats>, originNames: string[], exampleOrigin: Int32Array
  }) {
    this.embedder = init.embedder
    this.sites = init.sites
    this._params = init.params
    this._validation = init.validation
    this.trainedAt = init.trainedAt
    this.prior = init.prior
    this.volumes = init.volumes
    this.volumeNames = init.volumeNames
    this.vectors = init.vectors
    this.shares = init.shares
    this.exampleVolume = init.exampleVolume
    this.origins = init.origins
    this.originNames = init.originNames
    this.exampleOrigin = init.exampleOrigin
    this.count = init.exampleVolume.length
    this.topIdx = new Int32Array(init.params.k)
    this.topSim = new Float64Array(init.params.k)
    this.query = new Int8Array(init.embedder.dim)
    const dim = init.embedder.dim
    this.planes = this.count > EXACT_LIMIT ? hyperplanes(dim) : new Float32Array(0)
    this.sigs = new Uint32Array(this.count > EXACT_LIMIT ? this.count * SIG_WORDS : 0)
    this.hamming = new Uint8Array(this.count > EXACT_LIMIT ? this.count : 0)
    if (this.count > EXACT_LIMIT) {
      const sig = new Uint32Array(SIG_WORDS)
      for (let row = 0; row < this.count; row++) {
        signature(this.vectors, row * dim, dim, this.planes, sig)
        this.sigs.set(sig, row * SIG_WORDS)
      }
    }
  }

  get params (): PlacementParams { return this._params }
  get validation (): PlacementValidation | null { return this._validation }

  /** Number of training blocks kept for neighbour search. */
  get examples (): number { return this.count }
  get embedderName (): string { return this.embedder.name }

  /** Volumes the model has history for. */
  knowsVolume (volume: string): boolean { return this.volumes.has(volume) }

  static async train (history: Iterable<TrainingExample> | AsyncIterable<TrainingExample>, embedder: Embedder, opts: PlacementTrainOptions = {}): Promise<PlacementModel> {
    const k = intOpt('k', opts.k ?? 8, 1, 1000)
    const candidates = intOpt('candidates', opts.candidates ?? 16 * k, k, 1_000_000)
    const maxExamples = intOpt('maxExamples', opts.maxExamples ?? 20_000, 0, 10_000_000)
    const minSimilarity = opts.minSimilarity ?? 0.3
    const sample = intOpt('validationSample', opts.validationSample ?? 300, 0, 1_000_000)
    const batchSize = intOpt('batchSize', opts.batchSize ?? 256, 1, 1_000_000)

    // 1. Per-block distributions.
    const raw: Array<{ meta: BlockMeta, scores: Readonly<Record<string, number>>, total: number }> = []
    const seen = new Set<string>()
    for await (const ex of history) {
      let total = 0
      for (const site in ex.scores) {
        const s = ex.scores[site] as number
        if (!(s > 0) || !Number.isFinite(s)) continue
        if (opts.sites === undefined && site === '') continue
        total += s
        seen.add(site)
      }
      if (total > 0) raw.push({ meta: ex.meta, scores: ex.scores, total })
    }
    const sites = opts.sites !== undefined ? [...opts.sites] : [...seen].sort()
    const S = sites.length
    const siteIdx = new Map(sites.map((s, i) => [s, i]))
    const dists: Float64Array[] = []
    const kept: typeof raw = []
    for (const r of raw) {
      const d = new Float64Array(S)
      let t = 0
      for (const site in r.scores) {
        const i = siteIdx.get(site)
        const s = r.scores[site] as number
        if (i === undefined || !(s > 0)) continue
        d[i] = (d[i] as number) + s; t += s
      }
      if (t <= 0) continue
      for (let i = 0; i < S; i++) (d[i] as number) /= t
      dists.push(d)
      kept.push(r)
    }

    // 2. Prior and volume means.
    const prior = new Float64Array(S)
    const volumes = new Map<string, VolumeStats>()
    for (let j = 0; j < kept.length; j++) {
      const d = dists[j] as Float64Array
      const name = (kept[j] as typeof raw[number]).meta.volume
      let v = volumes.get(name)
      if (v === undefined) volumes.set(name, v = { n: 0, shares: new Float64Array(S) })
      v.n++
      for (let i = 0; i < S; i++) { (prior[i] as number) += d[i] as number; (v.shares[i] as number) += d[i] as number }
    }
    if (kept.length > 0) for (let i = 0; i < S; i++) (prior[i] as number) /= kept.length
    else if (S > 0) prior.fill(1 / S)
    for (const v of volumes.values()) for (let i = 0; i < S; i++) (v.shares[i] as number) /= v.n
    const origins = new Map<string, VolumeStats>()
    for (let j = 0; j < kept.length; j++) {
      const o = (kept[j] as typeof raw[number]).meta.origin
      if (o === undefined) continue
      let st = origins.get(o)
      if (st === undefined) origins.set(o, st = { n: 0, shares: new Float64Array(S) })
      st.n++
      const d = dists[j] as Float64Array
      for (let i = 0; i < S; i++) (st.shares[i] as number) += d[i] as number
    }
    for (const st of origins.values()) for (let i = 0; i < S; i++) (st.shares[i] as number) /= st.n
    const originNames = [...origins.keys()]
    const originIndex = new Map(originNames.map((n, i) => [n, i]))

    // 3. Neighbour examples: the most accessed blocks (their distributions are the best measured).
    let order = kept.map((_, j) => j)
    if (order.length > maxExamples) order = order.sort((a, b) => (kept[b] as typeof raw[number]).total - (kept[a] as typeof raw[number]).total).slice(0, maxExamples)
    const volumeNames = [...volumes.keys()]
    const volumeIndex = new Map(volumeNames.map((n, i) => [n, i]))
    const dim = embedder.dim
    const vectors = new Int8Array(order.length * dim)
    const shares = new Float32Array(order.length * S)
    const exampleVolume = new Uint32Array(order.length)
    const exampleOrigin = new Int32Array(order.length).fill(-1)
    for (let b = 0; b < order.length; b += batchSize) {
      const batch = order.slice(b, b + batchSize)
      const vecs = await embedder.embed(batch.map(j => metaText((kept[j] as typeof raw[number]).meta)))
      for (let q = 0; q < batch.length; q++) {
        const row = b + q
        const j = batch[q] as number
        const vec = vecs[q]
        if (vec === undefined || vec.length !== dim) throw new FerryError('FERRY_PLACEMENT_EMBEDDER_FAILED', `embedder ${embedder.name} returned a vector of length ${vec?.length ?? 0}, expected ${dim}`, 500)
        quantise(vec, vectors, row * dim)
        shares.set(dists[j] as Float64Array, row * S)
        const meta = (kept[j] as typeof raw[number]).meta
        exampleVolume[row] = volumeIndex.get(meta.volume) as number
        if (meta.origin !== undefined) exampleOrigin[row] = originIndex.get(meta.origin) as number
      }
    }

    const fixed = opts.alpha !== undefined || opts.beta !== undefined || opts.gamma !== undefined || opts.delta !== undefined
    const params: PlacementParams = { k, minSimilarity, candidates, alpha: opts.alpha ?? 1, beta: opts.beta ?? 1, gamma: opts.gamma ?? 8, delta: opts.delta ?? (origins.size > 0 ? 1 : 0) }
    const model = new PlacementModel({
      embedder, sites, params, validation: null, trainedAt: new Date().toISOString(),
      prior, volumes, volumeNames, vectors, shares, exampleVolume, origins, originNames, exampleOrigin
    })
    if (sample > 0 && order.length >= 10) {
      const v = model.validate(Math.min(sample, order.length), opts.seed ?? 1, fixed)
      model._params = v.params
      model._validation = v.validation
    }
    return model
  }

  /** Predicted share of accesses per site (sums to 1), or {} when the model knows no site. */
  async predict (meta: BlockMeta): Promise<Record<string, number>> {
    const [vec] = await this.embedder.embed([metaText(meta)])
    return this.predictWith(meta, vec as Float32Array)
  }

  /** The prior alone: the mean site distribution of all training blocks ({} without sites). */
  priorShares (): Record<string, number> {
    const out: Record<string, number> = {}
    this.sites.forEach((s, i) => { out[s] = this.prior[i] as number })
    return out
  }

  /**
   * The prior blended with a volume's history (no metadata, no origin): what the model expects
   * of any block of the volume, e.g. for a volume-level preference. undefined for a volume the
   * model has no history of.
   */
  volumeShares (volume: string): Record<string, number> | undefined {
    const v = this.volumes.get(volume)
    if (v === undefined) return undefined
    const { alpha, gamma } = this._params
    const w = Math.min(v.n, gamma)
    const out: Record<string, number> = {}
    this.sites.forEach((s, i) => { out[s] = (alpha * (this.prior[i] as number) + w * (v.shares[i] as number)) / (alpha + w) })
    return out
  }

  /**
   * The model's terms without metadata, unnormalised, as the proxies' placement table carries
   * them (placement/table.ts): `prior` = α·prior, each volume α·prior + min(n, γ)·volume (the
   * `maxVolumes` with the most history), each origin δ·origin. Their sum is predictWith()'s
   * blend minus the neighbour term, which needs an embedding the proxy cannot afford inline.
   */
  tableWeights (maxVolumes: number): { prior: number[], volumes: Array<[string, number[]]>, origins: Array<[string, number[]]> } {
    const { alpha, gamma, delta } = this._params
    const S = this.sites.length
    const prior = Array.from(this.prior, p => alpha * p)
    const names = this.volumeNames.length <= maxVolumes
      ? this.volumeNames
      : [...this.volumeNames].sort((a, b) => (this.volumes.get(b) as VolumeStats).n - (this.volumes.get(a) as VolumeStats).n).slice(0, maxVolumes)
    const volumes = names.map((n): [string, number[]] => {
      const v = this.volumes.get(n) as VolumeStats
      const w = Math.min(v.n, gamma)
      const out = new Array<number>(S)
      for (let i = 0; i < S; i++) out[i] = (prior[i] as number) + w * (v.shares[i] as number)
      return [n, out]
    })
    const origins = delta === 0 ? [] : this.originNames.map((n): [string, number[]] => [n, Array.from((this.origins.get(n) as VolumeStats).shares, x => delta * x)])
    return { prior, volumes, origins }
  }

  /** predict() for many blocks with one embedder call (what a transformer wants). */
  async predictMany (metas: readonly BlockMeta[]): Promise<Array<Record<string, number>>> {
    const vecs = await this.embedder.embed(metas.map(metaText))
    return metas.map((m, i) => this.predictWith(m, vecs[i] as Float32Array))
  }

  /** The prediction for a block whose embedding is already known (synchronous). */
  predictWith (meta: BlockMeta, vec: Float32Array): Record<string, number> {
    const S = this.sites.length
    const out: Record<string, number> = {}
    if (S === 0) return out
    const p = new Float64Array(S)
    const { alpha, beta, gamma, delta } = this.params
    for (let i = 0; i < S; i++) p[i] = alpha * (this.prior[i] as number)
    const v = this.volumes.get(meta.volume)
    if (v !== undefined) {
      const w = Math.min(v.n, gamma)
      for (let i = 0; i < S; i++) (p[i] as number) += w * (v.shares[i] as number)
    }
    const o = meta.origin === undefined || delta === 0 ? undefined : this.origins.get(meta.origin)
    if (o !== undefined) for (let i = 0; i < S; i++) (p[i] as number) += delta * (o.shares[i] as number)
    if (beta > 0 && this.count > 0) {
      quantise(vec, this.query, 0)
      const found = this.neighbours(this.query, -1, -1)
      for (let j = 0; j < found; j++) {
        const sim = this.topSim[j] as number
        const row = this.topIdx[j] as number
        for (let i = 0; i < S; i++) (p[i] as number) += beta * sim * (this.shares[row * S + i] as number)
      }
    }
    // Normalise by the sum rather than by the total weight: stored shares are float32, and callers rely
    // on the shares summing to 1.
    let sum = 0
    for (let i = 0; i < S; i++) sum += p[i] as number
    for (let i = 0; i < S; i++) out[this.sites[i] as string] = sum > 0 ? (p[i] as number) / sum : 1 / S
    return out
  }

  toJSON (): object {
    return {
      format: PLACEMENT_FORMAT,
      version: PLACEMENT_VERSION,
      embedder: { name: this.embedder.name, dim: this.embedder.dim },
      trainedAt: this.trainedAt,
      sites: this.sites,
      params: { ...this.params, gamma: Number.isFinite(this.params.gamma) ? this.params.gamma : null },
      validation: this.validation,
      prior: [...this.prior],
      volumes: this.volumeNames.map(n => { const v = this.volumes.get(n) as VolumeStats; return [n, v.n, [...v.shares]] }),
      origins: this.originNames.map(n => { const v = this.origins.get(n) as VolumeStats; return [n, v.n, [...v.shares]] }),
      examples: {
        count: this.count,
        vectors: Buffer.from(this.vectors.buffer, this.vectors.byteOffset, this.vectors.byteLength).toString('base64'),
        shares: Buffer.from(this.shares.buffer, this.shares.byteOffset, this.shares.byteLength).toString('base64'),
        volumes: Buffer.from(this.exampleVolume.buffer, this.exampleVolume.byteOffset, this.exampleVolume.byteLength).toString('base64'),
        origins: Buffer.from(this.exampleOrigin.buffer, this.exampleOrigin.byteOffset, this.exampleOrigin.byteLength).toString('base64')
      }
    }
  }

  /**
   * Reads a model file's JSON. Throws FerryError FERRY_PLACEMENT_BAD_MODEL for anything that is not a
   * complete, consistent ferry-placement file of a known version, and
   * FERRY_PLACEMENT_EMBEDDER_MISMATCH when `embedder` is not the one the model was trained with.
   */
  static fromJSON (json: unknown, embedder: Embedder): PlacementModel {
    if (typeof json === 'object' && json !== null && (json as { format?: unknown }).format === PLACEMENT_FORMAT &&
        (json as { version?: unknown }).version !== PLACEMENT_VERSION) {
      throw badModel(`placement model version ${String((json as { version?: unknown }).version)} is not supported (this ferry reads version ${PLACEMENT_VERSION})`)
    }
    const parsed = fileSchema.safeParse(json)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      throw badModel(`not a ferry placement model: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`, { path: issue?.path })
    }
    const f = parsed.data
    if (f.embedder.name !== embedder.name || f.embedder.dim !== embedder.dim) {
      throw new FerryError('FERRY_PLACEMENT_EMBEDDER_MISMATCH', `the model was trained with embedder ${f.embedder.name} (dim ${f.embedder.dim}), not ${embedder.name} (dim ${embedder.dim})`, 400)
    }
    const S = f.sites.length
    if (f.prior.length !== S) throw badModel(`prior has ${f.prior.length} entries for ${S} sites`)
    const volumes = new Map<string, VolumeStats>()
    const volumeNames: string[] = []
    for (const [name, n, shares] of f.volumes) {
      if (shares.length !== S) throw badModel(`volume ${name} has ${shares.length} shares for ${S} sites`)
      if (volumes.has(name)) throw badModel(`volume ${name} appears twice`)
      volumes.set(name, { n, shares: Float64Array.from(shares) })
      volumeNames.push(name)
    }
    const origins = new Map<string, VolumeStats>()
    const originNames: string[] = []
    for (const [name, n, shares] of f.origins) {
      if (shares.length !== S) throw badModel(`origin ${name} has ${shares.length} shares for ${S} sites`)
      if (origins.has(name)) throw badModel(`origin ${name} appears twice`)
      origins.set(name, { n, shares: Float64Array.from(shares) })
      originNames.push(name)
    }
    const count = f.examples.count
    const vectors = decode(f.examples.vectors, count * f.embedder.dim, 'vectors')
    const shareBytes = decode(f.examples.shares, count * S * 4, 'shares')
    const volBytes = decode(f.examples.volumes, count * 4, 'volumes')
    const exampleVolume = new Uint32Array(volBytes.buffer, volBytes.byteOffset, count)
    const originBytes = decode(f.examples.origins, count * 4, 'origins')
    const exampleOrigin = new Int32Array(originBytes.buffer, originBytes.byteOffset, count)
    for (let i = 0; i < count; i++) if ((exampleOrigin[i] as number) < -1 || (exampleOrigin[i] as number) >= originNames.length) throw badModel(`example ${i} refers to origin ${exampleOrigin[i] as number} of ${originNames.length}`)
    for (let i = 0; i < count; i++) if ((exampleVolume[i] as number) >= volumeNames.length) throw badModel(`example ${i} refers to volume ${exampleVolume[i] as number} of ${volumeNames.length}`)
    const shares = new Float32Array(shareBytes.buffer, shareBytes.byteOffset, count * S)
    for (let i = 0; i < shares.length; i++) if (!(shares[i] as number >= 0 && shares[i] as number <= 1 + 1e-6)) throw badModel(`example shares must be in [0, 1] (index ${i})`)
    return new PlacementModel({
      embedder,
      sites: f.sites,
      params: { ...f.params, gamma: f.params.gamma ?? Infinity },
      validation: f.validation,
      trainedAt: f.trainedAt,
      prior: Float64Array.from(f.prior),
      volumes,
      volumeNames,
      vectors: new Int8Array(vectors.buffer, vectors.byteOffset, count * f.embedder.dim),
      shares,
      exampleVolume,
      origins,
      originNames,
      exampleOrigin
    })
  }

  // ── internals

  /**
   * Top-k examples by dot product with `q` (int8), skipping example `skip` and examples of
   * volume `skipVolume` (validation). Fills topIdx/topSim best first; returns how many.
   */
  private neighbours (q: Int8Array, skip: number, skipVolume: number): number {
    const dim = q.length
    const k = this.params.k
    const minDot = this.params.minSimilarity * 127 * 127
    const idx = this.topIdx
    const sim = this.topSim
    let found = 0
    const vecs = this.vectors
    // Signature pre-filter: only rows within Hamming distance `maxHam` get a dot product,
    // `maxHam` being the smallest distance that admits `candidates` rows.
    let maxHam = 64
    const filter = this.count > EXACT_LIMIT
    if (filter) {
      signature(q, 0, dim, this.planes, this.querySig)
      const q0 = this.querySig[0] as number
      const q1 = this.querySig[1] as number
      const hist = new Uint32Array(65)
      for (let row = 0; row < this.count; row++) {
        const h = popcount((this.sigs[row * 2] as number) ^ q0) + popcount((this.sigs[row * 2 + 1] as number) ^ q1)
        this.hamming[row] = h
        ;(hist[h] as number)++
      }
      let acc = 0
      for (maxHam = 0; maxHam < 64; maxHam++) { acc += hist[maxHam] as number; if (acc >= this.params.candidates) break }
    }
    for (let row = 0; row < this.count; row++) {
      if (filter && (this.hamming[row] as number) > maxHam) continue
      if (row === skip || (skipVolume >= 0 && this.exampleVolume[row] === skipVolume)) continue
      let dot = 0
      const base = row * dim
      for (let i = 0; i < dim; i++) dot += (q[i] as number) * (vecs[base + i] as number)
      if (dot < minDot) continue
      if (found === k && dot <= (sim[k - 1] as number)) continue
      let i = found < k ? found++ : k - 1
      while (i > 0 && (sim[i - 1] as number) < dot) { sim[i] = sim[i - 1] as number; idx[i] = idx[i - 1] as number; i-- }
      sim[i] = dot; idx[i] = row
    }
    for (let j = 0; j < found; j++) (sim[j] as number) /= 127 * 127
    return found
  }

  /** Leave-one-out choice of (α, β, γ); see the module comment. */
  private validate (n: number, seed: number, fixed: boolean): { params: PlacementParams, validation: PlacementValidation } {
    const S = this.sites.length
    const dim = this.embedder.dim
    const rnd = mulberry32(seed)
    const picks = new Set<number>()
    while (picks.size < n) picks.add(Math.floor(rnd() * this.count))
    // Per sample: observed distribution, volume mean without the block (n-1), neighbour evidence.
    interface Case { truth: Float64Array, vn: number, vshares: Float64Array | null, knnW: number, knn: Float64Array, oshares: Float64Array | null }
    const cases: Case[] = []
    let s = 0
    for (const row of picks) {
      const truth = Float64Array.from(this.shares.subarray(row * S, row * S + S))
      const newVolume = (s++ & 1) === 1
      const volIdx = this.exampleVolume[row] as number
      const vol = this.volumes.get(this.volumeNames[volIdx] as string) as VolumeStats
      let vn = 0
      let vshares: Float64Array | null = null
      if (!newVolume && vol.n > 1) {
        vn = vol.n - 1
        vshares = new Float64Array(S)
        for (let i = 0; i < S; i++) vshares[i] = ((vol.shares[i] as number) * vol.n - (truth[i] as number)) / vn
      }
      const found = this.neighbours(this.vectors.subarray(row * dim, row * dim + dim), row, newVolume ? volIdx : -1)
      const knn = new Float64Array(S)
      let knnW = 0
      for (let j = 0; j < found; j++) {
        const w = this.topSim[j] as number
        const r = this.topIdx[j] as number
        knnW += w
        for (let i = 0; i < S; i++) (knn[i] as number) += w * (this.shares[r * S + i] as number)
      }
      // The origin term without the block itself.
      let oshares: Float64Array | null = null
      const oi = this.exampleOrigin[row] as number
      const ost = oi < 0 ? undefined : this.origins.get(this.originNames[oi] as string)
      if (ost !== undefined && ost.n > 1) {
        oshares = new Float64Array(S)
        for (let i = 0; i < S; i++) oshares[i] = ((ost.shares[i] as number) * ost.n - (truth[i] as number)) / (ost.n - 1)
      }
      cases.push({ truth, vn, vshares, knnW, knn, oshares })
    }
    const evaluate = (alpha: number, beta: number, gamma: number, delta: number): { ce: number, acc: number } => {
      let ce = 0
      let acc = 0
      const p = new Float64Array(S)
      for (const c of cases) {
        let w = alpha
        for (let i = 0; i < S; i++) p[i] = alpha * (this.prior[i] as number)
        if (c.vshares !== null) {
          const vw = Math.min(c.vn, gamma)
          w += vw
          for (let i = 0; i < S; i++) (p[i] as number) += vw * (c.vshares[i] as number)
        }
        w += beta * c.knnW
        for (let i = 0; i < S; i++) (p[i] as number) += beta * (c.knn[i] as number)
        if (c.oshares !== null && delta > 0) {
          w += delta
          for (let i = 0; i < S; i++) (p[i] as number) += delta * (c.oshares[i] as number)
        }
        let best = 0
        let top = 0
        for (let i = 0; i < S; i++) {
          const pi = (p[i] as number) / w
          ce -= (c.truth[i] as number) * Math.log(pi + EPS)
          if (pi > (p[best] as number) / w) best = i
          if ((c.truth[i] as number) > (c.truth[top] as number)) top = i
        }
        if (best === top) acc++
      }
      return { ce: ce / cases.length, acc: acc / cases.length }
    }
    let params = this.params
    if (!fixed) {
      let bestCe = Infinity
      for (const alpha of GRID_ALPHA) {
        for (const beta of GRID_BETA) {
          for (const gamma of GRID_GAMMA) {
            for (const delta of this.origins.size > 0 ? GRID_DELTA : [0]) {
              const { ce } = evaluate(alpha, beta, gamma, delta)
              if (ce < bestCe - 1e-12) { bestCe = ce; params = { ...this.params, alpha, beta, gamma, delta } }
            }
          }
        }
      }
    }
    const chosen = evaluate(params.alpha, params.beta, params.gamma, params.delta)
    const prior = evaluate(1, 0, 1e-9, 0)
    return {
      params,
      validation: {
        samples: cases.length,
        crossEntropy: {
          chosen: chosen.ce,
          prior: prior.ce,
          volumeOnly: evaluate(params.alpha, 0, params.gamma, 0).ce,
          knnOnly: evaluate(params.alpha, params.beta > 0 ? params.beta : 1, 1e-9, 0).ce,
          originOnly: evaluate(params.alpha, 0, 1e-9, params.delta > 0 ? params.delta : 1).ce
        },
        topSiteAccuracy: { chosen: chosen.acc, prior: prior.acc }
      }
    }
  }
}

/** Fixed random hyperplanes (a seeded Gaussian matrix, 64 × dim): the same for every model of a dim. */
function hyperplanes (dim: number): Float32Array {
  const rnd = mulberry32(0x51a4a5 ^ dim)
  const out = new Float32Array(64 * dim)
  for (let i = 0; i < out.length; i++) {
    // Box–Muller; the sign pattern is what matters, the scale does not.
    const u = Math.max(rnd(), 1e-12)
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd())
  }
  return out
}

/** 64 sign bits of the projections of v[off .. off + dim) onto the hyperplanes. */
function signature (v: ArrayLike<number>, off: number, dim: number, planes: Float32Array, out: Uint32Array): void {
  out[0] = 0; out[1] = 0
  for (let b = 0; b < 64; b++) {
    let dot = 0
    const base = b * dim
    for (let i = 0; i < dim; i++) dot += (v[off + i] as number) * (planes[base + i] as number)
    if (dot > 0) out[b >> 5] = (out[b >> 5] as number) | (1 << (b & 31))
  }
}

function popcount (x: number): number {
  x -= (x >>> 1) & 0x55555555
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333)
  x = (x + (x >>> 4)) & 0x0f0f0f0f
  return Math.imul(x, 0x01010101) >>> 24
}

/** Unit vector → int8 ×127 (clamped), written at `out[offset ..]`. */
function quantise (v: Float32Array, out: Int8Array, offset: number): void {
  for (let i = 0; i < v.length; i++) {
    const q = Math.round((v[i] as number) * 127)
    out[offset + i] = q > 127 ? 127 : q < -127 ? -127 : q
  }
}

function decode (b64: string, expectBytes: number, what: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw badModel(`examples.${what} is not base64`)
  const buf = Buffer.from(b64, 'base64')
  if (buf.byteLength !== expectBytes) throw badModel(`examples.${what} holds ${buf.byteLength} bytes, expected ${expectBytes}`)
  // Copy into an aligned buffer: typed-array views need offsets aligned to the element size.
  const out = new Uint8Array(new ArrayBuffer(expectBytes))
  out.set(buf)
  return out
}

function intOpt (name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new FerryError('FERRY_PLACEMENT_BAD_OPTIONS', `${name} must be an integer in [${min}, ${max}], got ${String(v)}`, 400)
  return v
}

function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
