/**
 * `ferry train-placement`: trains the data partitioning engine's PlacementModel from an access
 * history and writes it as a model file (format ferry-placement). See planner/README.md.
 *
 * Like `ferry train`, it returns an exit code (0 ok, 1 failed, 2 usage) and writes to the
 * streams it is given, so the CLI and the tests call it in-process.
 */
import fs from 'node:fs'
import { parseArgs } from 'node:util'
import { FerryError, isFerryError } from '../../lib/errors.js'
import { blockKey } from '../../lib/ids.js'
import { growth } from '../../lib/forward-decay.js'
import type { StateStore } from '../../state/types.js'
import { CachingEmbedder, NgramHashEmbedder, type BlockMeta, type Embedder } from './embedder.js'
import { PlacementModel, type TrainingExample } from './model.js'
import { DEFAULT_SITE_RULES, isWriteMethod, loadSiteRules, readAccessLog, readTsvTrace, siteOfHost, urlBlock } from './trace.js'

export interface CommandIO {
  stdout: { write: (s: string) => unknown }
  stderr: { write: (s: string) => unknown }
}

/**
 * Opens the state store a ferry config file describes (for `--config`). bin/ passes it: loading
 * a config file is config/'s, which composes every role's section, so a role never imports it.
 */
export type StoreOfConfig = (configFile: string) => StateStore

export const TRAIN_PLACEMENT_USAGE = `usage: ferry train-placement (--trace FILE | --access-log FILE | --config FILE) --out MODEL.json [options]

Learns, from an access history, which sites read blocks like a given one, so new blocks and
volumes are created near their readers instead of where a hash puts them.

history (at least one; several may be combined):
  --trace FILE          HTTP trace, tab-separated with a header (host, time, url[, method, bytes]):
                        URL → block, its directory → volume, host → site by --sites
  --sites FILE          site rules for --trace: {"tld": {"de": "europe", …}, "otherwise": ["na-east", …]}
                        (default: European ccTLDs → europe; jp kr tw hk sg au nz cn in → asia;
                        the rest split between na-east and na-west)
  --access-log FILE     ferry proxy access log (JSON lines; repeatable)
  --config FILE         ferry config: read the merged affinity of every block from its state store
  --meta FILE           block metadata, JSON lines {"volume","block","name","path","tags","origin"}:
                        joined by volume and block (traces derive path and name from the URL, and
                        origin, the creating site, from each block's earliest access)

model:
  --out FILE            model file to write
  --embedder NAME       ngram (default) or transformers
  --model DIR           local model directory for --embedder transformers (never downloaded)
  --dim N               ngram embedder dimensions (default 256)
  --k N                 neighbours consulted per prediction (default 8)
  --max-examples N      blocks kept for neighbour search, most accessed first (default 20000)
  --half-life S         decay of access scores from traces and logs, seconds (default 600)
`

class UsageError extends Error {}

const defaultIO: CommandIO = { stdout: process.stdout, stderr: process.stderr }

/** Builds the embedder a command line asks for (shared with the planner's config). */
export async function makeEmbedder (kind: string, opts: { model?: string, dim?: number }): Promise<Embedder> {
  if (kind === 'ngram') return new NgramHashEmbedder(opts.dim !== undefined ? { dim: opts.dim } : {})
  if (kind === 'transformers') {
    if (opts.model === undefined) throw new UsageError('--embedder transformers needs --model DIR (a local model directory)')
    const { TransformersEmbedder } = await import('./transformers.js')
    return new CachingEmbedder(await TransformersEmbedder.load({ model: opts.model }))
  }
  throw new UsageError(`unknown embedder "${kind}" (ngram or transformers)`)
}

/**
 * Accumulates decayed per-site scores per block, relative to a landmark so that records may
 * come in any order (forward decay, as everywhere in the planner).
 */
class HistoryBuilder {
  private readonly blocks = new Map<string, { meta: BlockMeta, scores: Record<string, number>, first: number }>()
  private t0 = NaN
  constructor (private readonly halfLifeMs: number) {}

  /** One access; the site of a block's earliest access becomes its `origin`. */
  add (meta: BlockMeta, site: string, at: number): void {
    if (Number.isNaN(this.t0)) this.t0 = at
    const key = blockKey(meta.volume, meta.block)
    let b = this.blocks.get(key)
    if (b === undefined) this.blocks.set(key, b = { meta: { ...meta, origin: site }, scores: {}, first: at })
    else if (at < b.first) { b.first = at; b.meta.origin = site }
    b.scores[site] = (b.scores[site] ?? 0) + growth(at - this.t0, this.halfLifeMs)
  }

  set (meta: BlockMeta, scores: Record<string, number>): void {
    this.blocks.set(blockKey(meta.volume, meta.block), { meta, scores: { ...scores }, first: -Infinity })
  }

  join (metas: Map<string, BlockMeta>): number {
    let joined = 0
    for (const [key, b] of this.blocks) {
      const m = metas.get(key)
      if (m !== undefined) { b.meta = { ...b.meta, ...m }; joined++ }
    }
    return joined
  }

  get size (): number { return this.blocks.size }
  examples (): TrainingExample[] { return [...this.blocks.values()] }
}

function readMeta (file: string): Map<string, BlockMeta> {
  const out = new Map<string, BlockMeta>()
  let text: string
  try { text = fs.readFileSync(file, 'utf8') } catch (err) { throw new FerryError('FERRY_PLACEMENT_TRACE_UNREADABLE', `cannot read metadata ${file}: ${(err as Error).message}`, 400) }
  let n = 0
  for (const line of text.split('\n')) {
    n++
    if (line.trim() === '') continue
    let o: Partial<BlockMeta>
    try { o = JSON.parse(line) as Partial<BlockMeta> } catch { throw new FerryError('FERRY_PLACEMENT_BAD_META', `${file}:${n}: not JSON`, 400) }
    if (typeof o.volume !== 'string' || typeof o.block !== 'string') throw new FerryError('FERRY_PLACEMENT_BAD_META', `${file}:${n}: volume and block must be strings`, 400)
    const meta: BlockMeta = { volume: o.volume, block: o.block }
    if (typeof o.name === 'string') meta.name = o.name
    if (typeof o.path === 'string') meta.path = o.path
    if (Array.isArray(o.tags)) meta.tags = o.tags.filter((t): t is string => typeof t === 'string')
    if (typeof o.origin === 'string') meta.origin = o.origin
    out.set(blockKey(meta.volume, meta.block), meta)
  }
  return out
}

function positiveInt (name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${name} must be a positive integer (got ${JSON.stringify(v)})`)
  return n
}

export async function trainPlacementCommand (argv: string[], io: CommandIO = defaultIO, storeOf?: StoreOfConfig): Promise<number> {
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        trace: { type: 'string', multiple: true },
        sites: { type: 'string' },
        'access-log': { type: 'string', multiple: true },
        config: { type: 'string' },
        meta: { type: 'string' },
        out: { type: 'string' },
        embedder: { type: 'string', default: 'ngram' },
        model: { type: 'string' },
        dim: { type: 'string' },
        k: { type: 'string' },
        'max-examples': { type: 'string' },
        'half-life': { type: 'string' },
        help: { type: 'boolean', default: false }
      }
    })
    if (values.help) { io.stdout.write(TRAIN_PLACEMENT_USAGE); return 0 }
    if (values.out === undefined) throw new UsageError('--out FILE is required')
    const traces = values.trace ?? []
    const logs = values['access-log'] ?? []
    if (traces.length === 0 && logs.length === 0 && values.config === undefined) throw new UsageError('give a history: --trace, --access-log or --config')
    const halfLifeS = values['half-life'] === undefined ? 600 : Number(values['half-life'])
    if (!(halfLifeS > 0)) throw new UsageError('--half-life must be a positive number of seconds')
    const dim = positiveInt('--dim', values.dim)
    const k = positiveInt('--k', values.k)
    const maxExamples = positiveInt('--max-examples', values['max-examples'])

    const history = new HistoryBuilder(halfLifeS * 1000)
    const notes: string[] = []
    const rules = values.sites !== undefined ? loadSiteRules(values.sites) : DEFAULT_SITE_RULES
    for (const file of traces) {
      const { requests, skipped } = readTsvTrace(file)
      let writes = 0
      for (const r of requests) {
        if (isWriteMethod(r.method)) writes++
        history.add(urlBlock(r.url), siteOfHost(r.client, rules), r.at)
      }
      notes.push(`${file}: ${requests.length} requests (${writes} writes), ${skipped} rows skipped`)
    }
    for (const file of logs) {
      const { accesses, skipped } = readAccessLog(file)
      for (const a of accesses) history.add({ volume: a.volume, block: a.block }, a.site, a.at)
      notes.push(`${file}: ${accesses.length} accesses, ${skipped} lines skipped`)
    }
    if (values.config !== undefined) {
      if (storeOf === undefined) throw new UsageError('--config needs the ferry command (it opens the store)')
      notes.push(`${values.config}: ${await readStore(storeOf(values.config), values.config, history)} blocks from the state store`)
    }
    if (values.meta !== undefined) notes.push(`${values.meta}: metadata joined to ${history.join(readMeta(values.meta))} blocks`)

    const embedder = await makeEmbedder(values.embedder, { ...(values.model !== undefined ? { model: values.model } : {}), ...(dim !== undefined ? { dim } : {}) })
    const started = Date.now()
    const model = await PlacementModel.train(history.examples(), embedder, { ...(k !== undefined ? { k } : {}), ...(maxExamples !== undefined ? { maxExamples } : {}) })
    fs.writeFileSync(values.out, JSON.stringify(model.toJSON()) + '\n')
    for (const n of notes) io.stdout.write(n + '\n')
    const v = model.validation
    io.stdout.write(`trained on ${history.size} blocks over ${model.sites.length} sites (${model.sites.join(', ')}), ${model.examples} neighbour examples, embedder ${embedder.name}, ${Date.now() - started} ms\n`)
    io.stdout.write(`blend α=${model.params.alpha} β=${model.params.beta} γ=${model.params.gamma} δ=${model.params.delta}` +
      (v === null ? ' (too little history to validate)\n' : `; leave-one-out on ${v.samples} blocks: cross-entropy ${v.crossEntropy.chosen.toFixed(3)} (prior ${v.crossEntropy.prior.toFixed(3)}, volume only ${v.crossEntropy.volumeOnly.toFixed(3)}, neighbours only ${v.crossEntropy.knnOnly.toFixed(3)}, origin only ${v.crossEntropy.originOnly.toFixed(3)}), top site right ${(v.topSiteAccuracy.chosen * 100).toFixed(1)}% (prior ${(v.topSiteAccuracy.prior * 100).toFixed(1)}%)\n`))
    io.stdout.write(`wrote ${values.out}\n`)
    return 0
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.stderr.write(`ferry train-placement: ${(err as Error).message}\n\n${TRAIN_PLACEMENT_USAGE}`)
      return 2
    }
    if (isFerryError(err)) {
      io.stderr.write(`ferry train-placement: ${err.message} (${err.code})\n`)
      return 1
    }
    io.stderr.write(`ferry train-placement: ${(err as Error).stack ?? String(err)}\n`)
    return 1
  }
}

/** Loads every block's merged affinity from the configured store, then closes it; returns how many. */
async function readStore (store: StateStore, configFile: string, history: HistoryBuilder): Promise<number> {
  try {
    const { waitForReady } = await import('../../state/factory.js')
    if (!await waitForReady(store, 10_000)) throw new FerryError('FERRY_PLACEMENT_STORE_UNAVAILABLE', `the state store of ${configFile} is not reachable: ${store.status().reason ?? 'not ready'}`, 503)
    let n = 0
    for await (const e of store.scanAffinity()) {
      history.set({ volume: e.volume, block: e.block }, e.scores)
      n++
    }
    return n
  } finally {
    await store.close()
  }
}
