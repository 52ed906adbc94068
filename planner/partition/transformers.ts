/**
 * A metadata embedder backed by a local sentence-embedding model run with @xenova/transformers
 * (ONNX Runtime under Node): feature extraction, mean pooling over the attention mask, L2
 * normalisation — the usual recipe for sentence-transformers models such as all-MiniLM-L6-v2.
 *
 * Offline by construction: remote models are disabled before anything is loaded, so a missing
 * file is an error, never a download. The model directory is what `optimum` exports (or what
 * the Hugging Face hub holds for Xenova/* models):
 *
 *   <dir>/config.json              model_type (e.g. bert) and hidden_size
 *   <dir>/tokenizer.json           a fast tokenizer (WordPiece, BPE, …)
 *   <dir>/tokenizer_config.json
 *   <dir>/onnx/model.onnx          and/or onnx/model_quantized.onnx
 *
 * transformers.js keeps its settings in one global `env`; loads are serialised so two
 * embedders with different directories cannot interleave their settings.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { FerryError } from '../../lib/errors.js'
import type { Embedder } from './embedder.js'

type TransformersModule = typeof import('@xenova/transformers') // eslint-disable-line @typescript-eslint/consistent-type-imports -- loaded on demand

export interface TransformersEmbedderOptions {
  /** The model directory (absolute or relative to the working directory)… */
  model: string
  /** …or, when set, a directory under which `model` is a sub-directory name. */
  localModelPath?: string
  /** Use onnx/model_quantized.onnx (default: when it exists and onnx/model.onnx does not). */
  quantized?: boolean
  /** 'mean' (sentence-transformers) or 'cls' (default 'mean'). */
  pooling?: 'mean' | 'cls'
  /** Texts per forward pass (default 32). */
  batchSize?: number
}

/** The part of a transformers.js feature-extraction pipeline this file uses. */
type FeaturePipeline = ((texts: string[], opts: { pooling: 'mean' | 'cls', normalize: boolean }) => Promise<{ dims: number[], data: ArrayLike<number> }>) & { dispose?: () => Promise<unknown> }

interface TransformersEnv {
  allowRemoteModels: boolean
  allowLocalModels: boolean
  localModelPath: string
  useFSCache: boolean
  useBrowserCache: boolean
}

let loading: Promise<unknown> = Promise.resolve()

function unavailable (message: string, cause?: unknown): FerryError {
  return new FerryError('FERRY_PLACEMENT_EMBEDDER_UNAVAILABLE', cause === undefined ? message : `${message}: ${(cause as Error).message ?? String(cause)}`, 500)
}

export class TransformersEmbedder implements Embedder {
  readonly dim: number
  readonly name: string
  private readonly pipe: FeaturePipeline
  private readonly pooling: 'mean' | 'cls'
  private readonly batchSize: number

  private constructor (pipe: FeaturePipeline, dim: number, name: string, pooling: 'mean' | 'cls', batchSize: number) {
    this.pipe = pipe
    this.dim = dim
    this.name = name
    this.pooling = pooling
    this.batchSize = batchSize
  }

  /**
   * Loads the model and tokenizer from disk and runs one probe text to learn the output size.
   * Throws FerryError FERRY_PLACEMENT_EMBEDDER_UNAVAILABLE when a file is missing or unusable.
   */
  static async load (opts: TransformersEmbedderOptions): Promise<TransformersEmbedder> {
    const dir = path.resolve(opts.localModelPath ?? '.', opts.model)
    const pooling = opts.pooling ?? 'mean'
    const batchSize = opts.batchSize ?? 32
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new FerryError('FERRY_PLACEMENT_BAD_OPTIONS', 'batchSize must be a positive integer', 400)
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) {
      if (!fs.existsSync(path.join(dir, f))) throw unavailable(`model directory ${dir} has no ${f}`)
    }
    const plain = path.join(dir, 'onnx', 'model.onnx')
    const quant = path.join(dir, 'onnx', 'model_quantized.onnx')
    const quantized = opts.quantized ?? (!fs.existsSync(plain) && fs.existsSync(quant))
    const onnxFile = quantized ? quant : plain
    if (!fs.existsSync(onnxFile)) throw unavailable(`model directory ${dir} has no onnx/${path.basename(onnxFile)}`)

    // The name pins the embedding space to these exact weights: a model trained with one
    // export refuses another even if the directory name is the same.
    const digest = crypto.createHash('sha256').update(fs.readFileSync(onnxFile)).update(fs.readFileSync(path.join(dir, 'tokenizer.json'))).digest('hex').slice(0, 16)
    const name = `transformers:${path.basename(dir)}:${quantized ? 'q8' : 'fp32'}:${pooling}:${digest}`

    const run = async (): Promise<TransformersEmbedder> => {
      let mod: TransformersModule
      try {
        mod = await import('@xenova/transformers')
      } catch (err) {
        throw unavailable('@xenova/transformers is not installed', err)
      }
      const env = mod.env as unknown as TransformersEnv
      // Never download, never write a cache into node_modules: only the directory given.
      env.allowRemoteModels = false
      env.allowLocalModels = true
      env.localModelPath = path.dirname(dir) + path.sep
      env.useFSCache = false
      env.useBrowserCache = false
      let pipe: FeaturePipeline
      try {
        pipe = await mod.pipeline('feature-extraction', path.basename(dir), { quantized, local_files_only: true }) as unknown as FeaturePipeline
      } catch (err) {
        throw unavailable(`cannot load the model in ${dir}`, err)
      }
      let dim: number
      try {
        const probe = await pipe(['ferry'], { pooling, normalize: true })
        dim = probe.dims[probe.dims.length - 1] as number
      } catch (err) {
        throw unavailable(`the model in ${dir} failed on a probe text`, err)
      }
      if (!Number.isInteger(dim) || dim < 1) throw unavailable(`the model in ${dir} produced no usable embedding`)
      return new TransformersEmbedder(pipe, dim, name, pooling, batchSize)
    }
    const next = loading.then(run, run)
    loading = next.catch(() => undefined)
    return await next
  }

  async embed (texts: string[]): Promise<Float32Array[]> {
    const out: Float32Array[] = []
    for (let b = 0; b < texts.length; b += this.batchSize) {
      const batch = texts.slice(b, b + this.batchSize)
      const t = await this.pipe(batch, { pooling: this.pooling, normalize: true })
      const dim = t.dims[t.dims.length - 1] as number
      if (dim !== this.dim || t.data.length !== batch.length * dim) throw unavailable(`the model returned ${t.dims.join('×')} for ${batch.length} texts, expected ${batch.length}×${this.dim}`)
      const data = t.data
      for (let i = 0; i < batch.length; i++) {
        if (data instanceof Float32Array) { out.push(data.slice(i * dim, i * dim + dim)); continue }
        const v = new Float32Array(dim)
        for (let j = 0; j < dim; j++) v[j] = data[i * dim + j] as number
        out.push(v)
      }
    }
    return out
  }

  /** Releases the ONNX session. */
  async close (): Promise<void> {
    await this.pipe.dispose?.()
  }
}
