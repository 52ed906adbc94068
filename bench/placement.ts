/**
 * `npm run bench -- placement [options]`: placement quality on a real trace.
 *
 * Replays the NASA KSC HTTP trace (../shared/data/traces/nasa_http_19950801.tsv, 30,969
 * requests over 12.9 hours) against a fleet of one gateway per site and measures the latency
 * every access sees under three policies, side by side in one run:
 *
 *   hashing   static rendezvous hashing (lib/rendezvous.ts, the proxy's default placement);
 *   ferry     ferry's own modules simulated in trace time:
 *             - an AffinityTable fed with every access (the proxy recorder's forward decay,
 *               half-life --half-life, default the proxy's 600 s);
 *             - the partitioning engine, as the live planner and proxy run it: the planner's
 *               LivePlacement retrained every --retrain seconds (default 900) from the history
 *               so far — a model only ever sees accesses before its training time — and swapped
 *               in only when it beats the one in use on held-out recent blocks; its placement
 *               table republished every rebalance round (the live publish interval, 30 s); each
 *               never-seen block placed at first touch by the proxy's FirstTouchPlacer (volume
 *               history and the creating request's site, ranked by the AffinityScorer's costs;
 *               write locality before the first model). Trace time is injected as LivePlacement's
 *               clock; a gateway past its capacity refuses new blocks (the placer's eligibility),
 *               as a full gateway fails a write. Its prior
 *               (--prior global|volume|block, weight --prior-weight κ, default global, 1) is
 *               the table's prior, so a block whose own traffic has decayed drifts back to
 *               where traffic is expected;
 *             - a rebalancer round every --interval seconds (default 30): AffinityTable.planMoves
 *               with the planner's hysteresis (relative --margin 0.25, absolute --min-gain-ms 1)
 *               and move budget (--max-moves 64 per round), displacing cold blocks from full
 *               gateways to make room for hot ones, and keeping --headroom (default 2 %) of
 *               each gateway free so that new blocks find room where they belong.
 *             An access is served where its block is at that moment; a move costs the block's
 *             bytes and takes effect at once (copy time is not modelled);
 *   oracle    for each hour, the placement minimising that hour's total latency under the same
 *             capacity, knowing the hour's accesses in advance (exact, below).
 *
 * Also in the same run: ablations (ferry without each part), a sensitivity sweep (one knob
 * varied at a time, including --volume-weight, the volume signal, off by default), and an
 * idealised online reference (onlineIdeal: instant free moves on past information) that
 * bounds what any history-driven placement could reach.
 *
 * Set-up (options): client host → site by top-level domain (--sites FILE.json, format of
 * planner/partition/trace.ts SiteRules; default European ccTLDs → europe, jp kr tw hk sg au nz cn
 * in → asia, other hosts split between na-east and na-west by a stable hash); URL → block;
 * its directory → volume; object size = the largest `bytes` seen for the URL. One gateway per
 * site, each holding at most --capacity (default 0.4) of the trace's distinct blocks, counted
 * by blocks (not bytes). Latency matrix --latency FILE.json ({ "sameSiteMs", "defaultMs",
 * "between": { site: { site: ms } } }, symmetric), default the issue's: 2 ms within a site,
 * na-east↔na-west 60, na↔europe 90, na-west↔asia 110, na-east↔asia 170, europe↔asia 200.
 *
 * The oracle is exact: per hour, a transportation problem (blocks → gateways with capacities)
 * solved by successive shortest paths on the residual graph contracted to the gateways (edge
 * g→h costs min over blocks b on g of c(b,h) − c(b,g)), which is min-cost flow and so optimal;
 * the solver is checked against exhaustive search on random small instances at start-up.
 * Capacity binds the hour's accessed blocks; since total capacity exceeds the number of blocks,
 * the others always fit elsewhere, so this is the optimum of a complete placement held for the
 * hour. (A policy moving blocks within the hour could in principle beat it.)
 *
 * Writes bench/results/placement.json: per policy meanMs, p99Ms, bytesMoved (and moves, local
 * share), the ratios against the targets, and the first-touch placement cost of the
 * partitioning engine against hashing (µs per decision).
 *
 * --replicas R (default 1; issue 20): every block is held by a replica set of R distinct
 * gateways and every copy counts toward --capacity (so R × blocks must fit: R = 2 on four
 * gateways needs --capacity ≥ 0.5, the run refuses less). hashing: the proxy's ReplicaPlacer
 * (fleet/replication.ts, the top R of rendezvous order); ferry: FirstTouchPlacer.decide for R
 * members, and the live rebalancer's set rounds (RoundRules.setCandidate / checkSet: one member
 * replaced per move, no make-room, headroom or prior, as live); the oracle stays the single-copy
 * hourly one at the same capacity. Every access is a read (the trace is GETs), served by the
 * set's nearest member at that moment by the latency matrix, ties to the earlier member (the
 * proxy's readOrder). Also the single-copy hashing and ferry at that capacity; no ablations.
 * Writes bench/results/placement-rR-cCAPACITY.json.
 */
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { AffinityScorer, AffinityTable, latencyMatrix, type GatewayInfo, type LatencyMatrix } from '../planner/affinity/index.js'
import { CachingEmbedder, NgramHashEmbedder, type BlockMeta, type Embedder } from '../planner/partition/embedder.js'
import type { PlacementModel } from '../planner/partition/model.js'
import { hashPlacement } from '../planner/partition/partitioner.js'
import { LivePlacement } from '../planner/partition/live.js'
import { parsePlacementConfig } from '../placement/config.js'
import { FirstTouchPlacer } from '../placement/placer.js'
import type { PlacementTable } from '../placement/table.js'
import { createStore } from '../state/factory.js'
import { DEFAULT_SITE_RULES, isWriteMethod, loadSiteRules, readTsvTrace, siteNames, siteOfHost, urlBlock, type SiteRules } from '../planner/partition/trace.js'
import { rendezvousNode, rendezvousPick } from '../lib/rendezvous.js'
import { rebalancerSchema } from '../planner/config.js'
import { RoundRules, type RoundWorld } from '../planner/deciders/rebalancer.js'
import { VolumeCoAccess, type PredictionOptions } from '../planner/prediction.js'
import { ReplicaPlacer } from '../fleet/replication.js'
import type { MoveCandidate } from '../planner/affinity/index.js'
import { percentile, ratio, writeResult } from './lib.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const projectRoot = path.resolve(here, '..', '..')
const DEFAULT_TRACE = path.resolve(projectRoot, '..', 'shared', 'data', 'traces', 'nasa_http_19950801.tsv')

const DEFAULT_LATENCY = {
  sameSiteMs: 2,
  defaultMs: 200,
  between: {
    'na-east': { 'na-west': 60, europe: 90, asia: 170 },
    'na-west': { europe: 90, asia: 110 },
    europe: { asia: 200 }
  } as Record<string, Record<string, number>>
}

/** The live planner's rebalancer defaults (planner/config.ts), so the bench runs what a user gets. */
const REBALANCER = rebalancerSchema.parse({})
const CO_ACCESS = REBALANCER.coAccess

const TARGET_VS_ORACLE = 1.15
const TARGET_VS_HASHING = 0.6

interface Options {
  trace: string
  rules: SiteRules
  latency: { sameSiteMs: number, defaultMs: number, between: Record<string, Record<string, number>> }
  capacity: number
  halfLifeS: number
  intervalS: number
  margin: number
  minGainMs: number
  maxMoves: number
  retrainS: number
  priorWeight: number
  headroom: number
  /** rebalancer.minScore: blocks colder than this do not move for their own gain. */
  minScore: number
  /** rebalancer.minDwellMs, in trace seconds. */
  dwellS: number
  volumeWeight: number
  volumeHalfLifeS: number
  prior: 'block' | 'volume' | 'global'
  /** The rebalancer's predictive signal (planner/prediction.ts, rebalancer.coAccess): the live default unless --co-access / --no-co-access. */
  predict: boolean
  activityHalfLifeS: number
  activityScale: number
  quick: boolean
  embedder: 'ngram' | 'transformers'
  model: string | undefined
  /** R: gateways holding each block (replication.factor); every copy counts toward capacity. */
  replicas: number
}

function prior (v: string | undefined): Options['prior'] {
  if (v === undefined) return 'global'
  if (v === 'block' || v === 'volume' || v === 'global') return v
  throw new Error('--prior: block, volume or global')
}

export function options (argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      trace: { type: 'string' },
      sites: { type: 'string' },
      latency: { type: 'string' },
      capacity: { type: 'string' },
      'half-life': { type: 'string' },
      interval: { type: 'string' },
      margin: { type: 'string' },
      'min-gain-ms': { type: 'string' },
      'max-moves': { type: 'string' },
      retrain: { type: 'string' },
      'prior-weight': { type: 'string' },
      headroom: { type: 'string' },
      'min-score': { type: 'string' },
      dwell: { type: 'string' },
      'volume-weight': { type: 'string' },
      'volume-half-life': { type: 'string' },
      prior: { type: 'string' },
      'co-access': { type: 'boolean' },
      'no-co-access': { type: 'boolean' },
      'activity-half-life': { type: 'string' },
      'activity-scale': { type: 'string' },
      quick: { type: 'boolean' },
      embedder: { type: 'string' },
      model: { type: 'string' },
      replicas: { type: 'string' }
    }
  })
  const num = (name: string, v: string | undefined, dflt: number, ok: (x: number) => boolean): number => {
    if (v === undefined) return dflt
    const x = Number(v)
    if (!Number.isFinite(x) || !ok(x)) throw new Error(`--${name}: bad value ${v}`)
    return x
  }
  let latency = DEFAULT_LATENCY
  if (values.latency !== undefined) {
    const j = JSON.parse(fs.readFileSync(values.latency, 'utf8')) as Partial<typeof DEFAULT_LATENCY>
    latency = { sameSiteMs: j.sameSiteMs ?? DEFAULT_LATENCY.sameSiteMs, defaultMs: j.defaultMs ?? DEFAULT_LATENCY.defaultMs, between: j.between ?? {} }
  }
  const embedder = values.embedder ?? 'ngram'
  if (embedder !== 'ngram' && embedder !== 'transformers') throw new Error('--embedder: ngram or transformers')
  if (embedder === 'transformers' && values.model === undefined) throw new Error('--embedder transformers needs --model DIR')
  return {
    trace: values.trace ?? DEFAULT_TRACE,
    rules: values.sites !== undefined ? loadSiteRules(values.sites) : DEFAULT_SITE_RULES,
    latency,
    capacity: num('capacity', values.capacity, 0.4, x => x > 0 && x <= 1),
    // The planner's and proxy's defaults: recorder half-life 600 s; the rebalancer's from its
    // config schema (every 30 s, margin 25 %, at least 1 ms, 64 moves per interval, …). Each
    // option below sets the live config key of the same meaning: no knob of the bench's own.
    halfLifeS: num('half-life', values['half-life'], 600, x => x > 0),
    intervalS: num('interval', values.interval, REBALANCER.intervalMs / 1000, x => x > 0),
    margin: num('margin', values.margin, REBALANCER.margin, x => x >= 0 && x < 1),
    minGainMs: num('min-gain-ms', values['min-gain-ms'], REBALANCER.minGainMs, x => x >= 0),
    maxMoves: num('max-moves', values['max-moves'], REBALANCER.maxMovesPerInterval, x => Number.isInteger(x) && x >= 0),
    minScore: num('min-score', values['min-score'], REBALANCER.minScore, x => x >= 0),
    dwellS: num('dwell', values.dwell, REBALANCER.minDwellMs / 1000, x => x >= 0),
    retrainS: num('retrain', values.retrain, 900, x => x > 0),
    priorWeight: num('prior-weight', values['prior-weight'], CO_ACCESS.priorWeight, x => x >= 0),
    headroom: num('headroom', values.headroom, REBALANCER.headroom, x => x >= 0 && x <= 0.5),
    volumeWeight: num('volume-weight', values['volume-weight'], 0, x => x >= 0),
    volumeHalfLifeS: num('volume-half-life', values['volume-half-life'], 30, x => x > 0),
    prior: prior(values.prior),
    predict: values['co-access'] === true ? true : values['no-co-access'] === true ? false : CO_ACCESS.enabled,
    activityHalfLifeS: num('activity-half-life', values['activity-half-life'], CO_ACCESS.activityHalfLifeMs / 1000, x => x > 0),
    activityScale: num('activity-scale', values['activity-scale'], CO_ACCESS.activityScale, x => x >= 0),
    quick: values.quick === true,
    embedder,
    model: values.model,
    replicas: num('replicas', values.replicas, 1, x => Number.isInteger(x) && x >= 1)
  }
}

// ───────────────────────────── the replay set-up ─────────────────────────────

/** `client`: the client host's index (bench/placement-sessions.ts groups accesses by client). */
export interface Access { at: number, site: number, block: number, write: boolean, client: number }
interface Block { volume: string, id: string, url: string, meta: BlockMeta, bytes: number }

export interface Setup {
  sites: string[]
  gateways: string[]
  gatewaySite: number[]
  /** lat[site × G + gateway] */
  lat: Float64Array
  latency: LatencyMatrix
  accesses: Access[]
  blocks: Block[]
  capacity: number
  hosts: number
  volumes: number
  skipped: number
}

export function setup (opts: Options): Setup {
  const { requests, skipped } = readTsvTrace(opts.trace)
  requests.sort((a, b) => a.at - b.at) // stable: the trace is in order but for one line
  const sites = siteNames(opts.rules)
  const siteIdx = new Map(sites.map((s, i) => [s, i]))
  const gateways = sites.map(s => `gw-${s}`)
  const latency = latencyMatrix(opts.latency.between, opts.latency)
  const G = gateways.length
  const lat = new Float64Array(sites.length * G)
  for (let s = 0; s < sites.length; s++) for (let g = 0; g < G; g++) lat[s * G + g] = latency.get(sites[s] as string, sites[g] as string)
  const blockIdx = new Map<string, number>()
  const volumeIdx = new Map<string, number>()
  const blocks: Block[] = []
  const accesses: Access[] = []
  const hosts = new Map<string, number>()
  for (const r of requests) {
    const m = urlBlock(r.url)
    let b = blockIdx.get(m.block)
    if (b === undefined) {
      let v = volumeIdx.get(m.volume)
      if (v === undefined) volumeIdx.set(m.volume, v = volumeIdx.size)
      b = blocks.length
      blockIdx.set(m.block, b)
      // Store ids must be ids (lib/ids.ts): index-based; the URL stays in the metadata.
      blocks.push({ volume: `v${v}`, id: `b${b}`, url: m.block, meta: { volume: `v${v}`, block: `b${b}`, path: m.path as string, name: m.name as string }, bytes: 0 })
    }
    const blk = blocks[b] as Block
    if (r.bytes > blk.bytes) blk.bytes = r.bytes
    let client = hosts.get(r.client)
    if (client === undefined) hosts.set(r.client, client = hosts.size)
    accesses.push({ at: r.at, site: siteIdx.get(siteOfHost(r.client, opts.rules)) as number, block: b, write: isWriteMethod(r.method), client })
  }
  return { sites, gateways, gatewaySite: sites.map((_, i) => i), lat, latency, accesses, blocks, capacity: Math.floor(opts.capacity * blocks.length), hosts: hosts.size, volumes: volumeIdx.size, skipped }
}

interface PolicyResult {
  /** The gateway (index) that served each access. */
  served: Int32Array
  bytesMoved: number
  moves: number
  extra?: Record<string, unknown>
}

export function summarise (s: Setup, r: PolicyResult): Record<string, unknown> {
  const G = s.gateways.length
  const latencies = new Float64Array(s.accesses.length)
  let sum = 0
  let local = 0
  for (let i = 0; i < s.accesses.length; i++) {
    const a = s.accesses[i] as Access
    const g = r.served[i] as number
    const ms = s.lat[a.site * G + g] as number
    latencies[i] = ms
    sum += ms
    if (s.gatewaySite[g] === a.site) local++
  }
  const sorted = latencies.sort()
  return {
    meanMs: round(sum / latencies.length),
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    bytesMoved: r.bytesMoved,
    moves: r.moves,
    localShare: round(local / latencies.length, 4),
    ...(r.extra ?? {})
  }
}

function round (x: number, digits = 3): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

// ───────────────────────────── replica sets ─────────────────────────────

/**
 * The gateway a read from `site` goes to among a block's replica set (gateway indices, set
 * order): the nearest by latency, ties to the earlier member — the proxy's readOrder
 * (proxy/replicas.ts) when every member is healthy, in sync and not drained, as here.
 */
export function nearestMember (s: Setup, members: readonly number[], site: number): number {
  const G = s.gateways.length
  let best = members[0] as number
  for (let j = 1; j < members.length; j++) {
    const g = members[j] as number
    if ((s.lat[site * G + g] as number) < (s.lat[site * G + best] as number)) best = g
  }
  return best
}

/**
 * Counts a new block's copies on its set's gateways. A set of fewer than R distinct gateways, or
 * a copy on a full gateway, makes the run invalid (the placer falls back to full gateways only
 * when no gateway has room: a panic mode the capacity here must never reach), so it throws.
 */
export function addCopies (s: Setup, count: Int32Array, set: readonly number[], R: number): void {
  if (set.length !== R || new Set(set).size !== R) throw new Error(`replica set ${JSON.stringify(set)}: not ${R} distinct gateways`)
  for (const g of set) {
    if ((count[g] as number) >= s.capacity) throw new Error(`${s.gateways[g] as string} is full (${s.capacity} copies): a copy over capacity`)
    count[g] = (count[g] as number) + 1
  }
}

// ───────────────────────────── (a) static rendezvous hashing ─────────────────────────────

export function hashing (s: Setup, R = 1): PolicyResult {
  const G = s.gateways.length
  const gwIndex = new Map(s.gateways.map((id, g) => [id, g]))
  const count = new Int32Array(G)
  // The proxy's hash placement of a first write (fleet/replication.ts ReplicaPlacer: the top R
  // of rendezvous order, distinct sites first), a full gateway taking no new copies as an
  // unhealthy one: at R = 1 the first gateway in rendezvous order with room (the cap rarely
  // binds for a hash).
  const placer = new ReplicaPlacer({
    gateways: () => s.gateways.map((id, g) => ({ id, site: s.sites[s.gatewaySite[g] as number] as string })),
    isHealthy: id => (count[gwIndex.get(id) as number] as number) < s.capacity
  })
  const sets: Array<number[] | undefined> = new Array<number[] | undefined>(s.blocks.length)
  const served = new Int32Array(s.accesses.length)
  s.accesses.forEach((a, i) => {
    let set = sets[a.block]
    if (set === undefined) {
      const blk = s.blocks[a.block] as Block
      set = placer.chooseReplicaSet(blk.volume, blk.id, undefined, R).map(id => gwIndex.get(id) as number)
      addCopies(s, count, set, R)
      sets[a.block] = set
    }
    served[i] = nearestMember(s, set, a.site)
  })
  return { served, bytesMoved: 0, moves: 0, ...(R > 1 ? { extra: { finalCopiesPerGateway: Object.fromEntries(s.gateways.map((id, g) => [id, count[g]])) } } : {}) }
}

// ───────────────────────────── (b) ferry online ─────────────────────────────

function predictionOptions (sites: readonly string[], opts: Options): PredictionOptions {
  return { sites, halfLifeMs: opts.halfLifeS * 1000, activityHalfLifeMs: opts.activityHalfLifeS * 1000, activityScale: opts.activityScale }
}

interface FerryVariant { partition: boolean, rebalance: boolean }

/** The live rebalancer's config with the bench's overrides (each a live key). */
export function rebalancerConfig (opts: Options): ReturnType<typeof rebalancerSchema.parse> {
  return rebalancerSchema.parse({
    intervalMs: Math.round(opts.intervalS * 1000),
    margin: opts.margin,
    minGainMs: opts.minGainMs,
    minScore: opts.minScore,
    minDwellMs: Math.round(opts.dwellS * 1000),
    maxMovesPerInterval: opts.maxMoves,
    headroom: opts.headroom,
    coAccess: { enabled: opts.predict, priorWeight: opts.priorWeight, activityHalfLifeMs: Math.round(opts.activityHalfLifeS * 1000), activityScale: opts.activityScale }
  })
}

export async function ferry (s: Setup, opts: Options, variant: FerryVariant, embedder: Embedder): Promise<PolicyResult & { model: PlacementModel | null, table: PlacementTable | null, replicaSets: ReadonlyArray<readonly number[] | undefined> | null }> {
  const G = s.gateways.length
  const R = opts.replicas
  // Hash first touch is placement/'s rendezvous pick of one gateway (an R = 1 ablation only).
  if (R > 1 && !variant.partition) throw new Error('ferry at R > 1 runs with the partitioning engine (first touch by FirstTouchPlacer)')
  const t0 = s.accesses[0]?.at ?? 0
  const table = new AffinityTable({ sites: s.sites, halfLifeMs: opts.halfLifeS * 1000, now: t0, initialCapacity: s.blocks.length, priorWeight: variant.partition ? opts.priorWeight : 0, volumeWeight: opts.volumeWeight, volumeHalfLifeMs: opts.volumeHalfLifeS * 1000 })
  const scorer = new AffinityScorer({ latency: s.latency })
  const loc = new Int32Array(s.blocks.length).fill(-1)
  /** At R > 1, each block's replica set (gateway indices, set order); loc holds its head. */
  const sets: Array<number[] | undefined> = new Array<number[] | undefined>(R > 1 ? s.blocks.length : 0)
  const origin = new Int32Array(s.blocks.length).fill(-1)
  /** Copies per gateway (every member of a set counts). */
  const count = new Int32Array(G)
  const served = new Int32Array(s.accesses.length)
  const infos = (): GatewayInfo[] => s.gateways.map((id, g) => ({ id, site: s.sites[s.gatewaySite[g] as number] as string, capacityBytes: s.capacity, usedBytes: count[g] as number, healthy: true }))
  const gwIndex = new Map(s.gateways.map((id, g) => [id, g]))
  const metaOf = (b: number): BlockMeta => {
    const m = (s.blocks[b] as Block).meta
    const o = origin[b] as number
    return o < 0 ? m : { ...m, origin: s.sites[o] as string }
  }
  const blockOf = new Map(s.blocks.map((b, i) => [`${b.volume}/${b.id}`, i]))
  const signal = opts.predict ? new VolumeCoAccess(predictionOptions(s.sites, opts)) : null
  let activeVolumes = 0
  // The live rebalancer's single-copy round (planner/deciders/rebalancer.ts), in trace time.
  const rules = new RoundRules(rebalancerConfig(opts))
  const skipped: Record<string, number> = {}

  let bytesMoved = 0
  let moves = 0
  let budgetCut = 0
  let madeRoom = 0
  let firstTouchNs = 0n
  let firstTouches = 0
  let byModel = 0
  let trainMs = 0
  let retrains = 0
  let model: PlacementModel | null = null
  let lastValidation: unknown = null
  let swaps = 0

  // The live classes, in trace time: the planner's LivePlacement (history, retrain, validation,
  // table) and the proxy's FirstTouchPlacer. A gateway past its capacity refuses new blocks, as
  // a full gateway fails a write; the live proxy learns it from the table's `exclude`.
  let simNow = t0
  const live = new LivePlacement({
    store: createStore({ backend: 'memory' }),
    config: parsePlacementConfig({}),
    embedder,
    now: () => simNow,
    host: { isLeader: () => false, gateways: () => infos(), scorer: () => scorer, meanBlockBytes: () => 1, halfLifeMs: () => opts.halfLifeS * 1000 }
  })
  const placer = new FirstTouchPlacer(s.gateways.map((id, g) => ({ id, site: s.sites[s.gatewaySite[g] as number] as string })),
    id => (count[gwIndex.get(id) as number] as number) < s.capacity)
  const publish = (): void => { placer.setTable(live.buildTable()) }

  const retrain = async (now: number): Promise<void> => {
    const started = process.hrtime.bigint()
    simNow = now
    const history = []
    for (const e of table.entries(now)) history.push({ meta: live.metaOf(e.volume, e.block), scores: e.scores })
    const r = await live.retrain('schedule', history)
    if (r.swapped) swaps++
    model = live.current
    if (model === null) { trainMs += Number(process.hrtime.bigint() - started) / 1e6; retrains++; return }
    publish()
    // The model's expectation becomes the blocks' prior: where traffic is expected to come from
    // once a block's own history has decayed. 'block' re-predicts every tracked block (with
    // metadata, origin and neighbours: the costly one); 'volume' uses each volume's history;
    // 'global' the overall mix.
    if (signal !== null) signal.setBase(model.priorShares()); else table.setPrior(model.priorShares())
    if (opts.prior === 'volume') {
      for (const e of history) { const v = model.volumeShares(e.meta.volume); if (v !== undefined) table.setVolumePrior(e.meta.volume, v) }
    } else if (opts.prior === 'block') {
      const preds = await model.predictMany(history.map(h => h.meta))
      history.forEach((h, i) => table.setBlockPrior(h.meta.volume, h.meta.block, preds[i] as Record<string, number>))
    }
    lastValidation = { blocks: history.length, params: model.params, ...model.validation, lastRetrain: r }
    trainMs += Number(process.hrtime.bigint() - started) / 1e6
    retrains++
  }

  const rebalance = (now: number): void => {
    if (signal !== null) {
      // As the live rebalancer does with its scan of the affinity map.
      for (const e of table.entries(now)) signal.observe(e.volume, e.scores)
      signal.endRound(now)
      activeVolumes += signal.apply(table)
    }
    if (R > 1) { rebalanceSets(now); return }
    const kernel = scorer.compile(table.sites, infos())
    rules.expire(now)
    // Moves take effect at once here: nothing is busy and no gateway is down.
    const plan = rules.plan(table, kernel, now, signal === null ? {} : { pulled: v => signal.isActive(v) }, skipped)
    if (plan.length >= opts.maxMoves) budgetCut++
    for (const c of plan) {
      const to = gwIndex.get(c.to) as number
      const from = gwIndex.get(c.from) as number
      if ((count[to] as number) >= s.capacity) throw new Error(`planMoves overfilled ${c.to}`)
      if (c.reason === 'make-room') madeRoom++
      const b = blockOf.get(`${c.volume}/${c.block}`) as number
      count[from] = (count[from] as number) - 1
      count[to] = (count[to] as number) + 1
      loc[b] = to
      table.setBlock(c.volume, c.block, { current: c.to })
      rules.moved(c.volume, c.block, now)
      bytesMoved += (s.blocks[b] as Block).bytes
      moves++
    }
  }

  /**
   * The live rebalancer's round for replica sets (planner/deciders/rebalancer.ts, Rebalancer.pass
   * after its scan, with RoundRules' set rules): every set's best single change of one member
   * (RoundRules.setCandidate: nearest-member cost, margin, distinct sites, room on the target),
   * most valuable first within the move budget, each checked against the round so far
   * (RoundRules.checkSet: minScore unless pulled, dwell, bytes, room). Blocks are counted by
   * blocks, so each copy is 1 "byte" of capacity, as at R = 1. The target takes the leaving
   * member's place in the set's order, as the migration engine's leave step does. Sets have no
   * make-room moves, headroom or prior in the live round, so neither here.
   */
  const rebalanceSets = (now: number): void => {
    const gws = infos()
    rules.expire(now)
    const world: RoundWorld = signal === null ? {} : { pulled: v => signal.isActive(v) }
    const candidates: MoveCandidate[] = []
    for (let b = 0; b < sets.length; b++) {
      const set = sets[b]
      if (set === undefined) continue
      const blk = s.blocks[b] as Block
      const scores = table.scores(blk.volume, blk.id, now)
      if (scores === undefined) continue
      const c = rules.setCandidate(scorer, blk.volume, blk.id, scores, set.map(g => gws[g] as GatewayInfo), gws, 1, 1)
      if (c !== null) candidates.push(c)
    }
    candidates.sort((a, b) => b.benefit - a.benefit)
    const room = new Map(gws.map(g => [g.id, g.capacityBytes - g.usedBytes]))
    const round = { moves: 0, bytes: 0 }
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i] as MoveCandidate
      if (round.moves >= opts.maxMoves) { skipped.budget = (skipped.budget ?? 0) + candidates.length - i; budgetCut++; break }
      const v = rules.checkSet(c, round, room, 1, now, world)
      if (typeof v === 'string') { skipped[v] = (skipped[v] ?? 0) + 1; continue }
      const b = blockOf.get(`${c.volume}/${c.block}`) as number
      const set = sets[b] as number[]
      const from = gwIndex.get(c.from) as number
      const to = gwIndex.get(c.to) as number
      if ((count[to] as number) >= s.capacity) throw new Error(`set move overfilled ${c.to}`)
      set[set.indexOf(from)] = to
      count[from] = (count[from] as number) - 1
      count[to] = (count[to] as number) + 1
      // As the live round: the source frees its room only when the move is done (next round here).
      room.set(c.to, (room.get(c.to) ?? 0) - v)
      loc[b] = set[0] as number
      table.setBlock(c.volume, c.block, { current: s.gateways[set[0] as number] as string })
      rules.moved(c.volume, c.block, now)
      bytesMoved += (s.blocks[b] as Block).bytes
      moves++
      round.moves++
      round.bytes += v
    }
  }

  let rebalances = 0
  let nextRetrain = t0 + opts.retrainS * 1000
  let nextRebalance = t0 + opts.intervalS * 1000
  for (let i = 0; i < s.accesses.length; i++) {
    const a = s.accesses[i] as Access
    while (variant.partition && a.at >= nextRetrain) { await retrain(nextRetrain); nextRetrain += opts.retrainS * 1000 }
    while (variant.rebalance && a.at >= nextRebalance) {
      rebalance(nextRebalance)
      rebalances++
      if (variant.partition && model !== null) { simNow = nextRebalance; publish() }
      nextRebalance += opts.intervalS * 1000
    }
    const blk = s.blocks[a.block] as Block
    if (loc[a.block] === -1) {
      // First touch: the request that makes the block appear comes from a.site (its origin).
      origin[a.block] = a.site
      const meta = metaOf(a.block)
      const site = s.sites[a.site] as string
      let gateway: string
      let by: string
      let chosen: string[] = []
      const started = process.hrtime.bigint()
      if (variant.partition) {
        // At R > 1 the proxy asks the same placer for the whole set (proxy/server.ts: replication.factor).
        const d = placer.decide(blk.volume, blk.id, site === '' ? undefined : site, R)
        chosen = d.gateways
        gateway = d.gateways[0] as string
        by = d.by
      } else {
        gateway = hashPlacement(meta, infos(), 1).gateway as string
        by = 'hash'
      }
      firstTouchNs += process.hrtime.bigint() - started
      firstTouches++
      if (by === 'model') byModel++
      if (variant.partition) live.noteFirstWrite({ volume: blk.volume, block: blk.id, origin: site === '' ? null : site, at: a.at, ...(meta.path === undefined ? {} : { path: meta.path }) })
      const g = gwIndex.get(gateway) as number
      loc[a.block] = g
      if (R === 1) count[g] = (count[g] as number) + 1
      else {
        const set = chosen.map(id => gwIndex.get(id) as number)
        addCopies(s, count, set, R)
        sets[a.block] = set
      }
      table.setBlock(blk.volume, blk.id, { current: gateway, sizeBytes: 1 })
      if (by === 'model' && opts.prior === 'block' && model !== null) table.setBlockPrior(blk.volume, blk.id, await (model as PlacementModel).predict(meta))
    }
    served[i] = R === 1 ? loc[a.block] as number : nearestMember(s, sets[a.block] as number[], a.site)
    table.record(blk.volume, blk.id, s.sites[a.site], a.write, a.at)
  }
  return {
    served,
    bytesMoved,
    moves,
    model,
    table: model === null ? null : live.buildTable(),
    replicaSets: R > 1 ? sets : null,
    extra: {
      firstTouch: { decisions: firstTouches, byModel, meanUs: round(Number(firstTouchNs) / 1e3 / Math.max(1, firstTouches)) },
      ...(variant.partition ? { retrains, swaps, trainMsTotal: Math.round(trainMs), lastModel: lastValidation } : {}),
      ...(variant.rebalance ? { roundsAtMoveBudget: budgetCut, makeRoomMoves: madeRoom, skipped } : {}),
      ...(signal !== null ? { meanActiveVolumesPerRound: round(activeVolumes / Math.max(1, rebalances)) } : {}),
      finalBlocksPerGateway: Object.fromEntries(s.gateways.map((id, g) => [id, count[g]]))
    }
  }
}

// ───────────────────────────── (c) hourly oracle ─────────────────────────────

/**
 * Min-cost assignment of n items to G bins with capacities (cost[i × G + g]); every item is
 * assigned (the caller guarantees Σ cap ≥ n). Successive shortest paths: items are added one at
 * a time along a shortest path in the residual graph contracted to the bins, where moving some
 * item already in g over to h costs min_b (cost[b,h] − cost[b,g]). Unit augmentations along
 * shortest paths keep the flow min-cost at every size (no negative cycles appear), so the
 * result is optimal. O(n² G²) — fine for the few thousand blocks of an hour.
 */
export function minCostAssign (cost: Float64Array, n: number, G: number, cap: ArrayLike<number>): Int32Array {
  const assign = new Int32Array(n).fill(-1)
  const members: number[][] = Array.from({ length: G }, () => [])
  const pos = new Int32Array(n)
  const T = new Float64Array(G * G)
  const arg = new Int32Array(G * G)
  const dist = new Float64Array(G)
  const pred = new Int32Array(G)
  const put = (i: number, g: number): void => { assign[i] = g; pos[i] = members[g]!.length; members[g]!.push(i) }
  const take = (i: number): void => {
    const list = members[assign[i] as number] as number[]
    const p = pos[i] as number
    const last = list.pop() as number
    if (last !== i) { list[p] = last; pos[last] = p }
    assign[i] = -1
  }
  for (let i = 0; i < n; i++) {
    T.fill(Infinity)
    arg.fill(-1)
    for (let g = 0; g < G; g++) {
      for (const b of members[g] as number[]) {
        const base = b * G
        const cg = cost[base + g] as number
        for (let h = 0; h < G; h++) {
          if (h === g) continue
          const d = (cost[base + h] as number) - cg
          if (d < (T[g * G + h] as number)) { T[g * G + h] = d; arg[g * G + h] = b }
        }
      }
    }
    for (let g = 0; g < G; g++) dist[g] = cost[i * G + g] as number
    pred.fill(-1)
    for (let round = 0; round < G; round++) {
      let changed = false
      for (let g = 0; g < G; g++) {
        for (let h = 0; h < G; h++) {
          const d = (dist[g] as number) + (T[g * G + h] as number)
          if (d < (dist[h] as number) - 1e-9) { dist[h] = d; pred[h] = g; changed = true }
        }
      }
      if (!changed) break
    }
    let end = -1
    for (let g = 0; g < G; g++) if (members[g]!.length < (cap[g] as number) && (end < 0 || (dist[g] as number) < (dist[end] as number))) end = g
    if (end < 0) throw new Error('minCostAssign: capacities too small')
    const chain = [end]
    while (pred[chain[0] as number] !== -1 && chain.length <= G) chain.unshift(pred[chain[0] as number] as number)
    // Shift one item along each edge, from the end backwards, then place the new item at the start.
    const moving: Array<[number, number]> = []
    for (let k = 0; k + 1 < chain.length; k++) moving.push([arg[(chain[k] as number) * G + (chain[k + 1] as number)] as number, chain[k + 1] as number])
    for (const [b] of moving) take(b)
    for (const [b, h] of moving) put(b, h)
    put(i, chain[0] as number)
  }
  return assign
}

/** Exhaustive check of minCostAssign on random small instances (throws on a mismatch). */
function checkSolver (): number {
  let a = 12345
  const rnd = (): number => { a = (Math.imul(a, 1664525) + 1013904223) >>> 0; return a / 2 ** 32 }
  let checked = 0
  for (let t = 0; t < 300; t++) {
    const G = 2 + Math.floor(rnd() * 3)
    const n = 1 + Math.floor(rnd() * 6)
    const cap = Array.from({ length: G }, () => 1 + Math.floor(rnd() * n))
    if (cap.reduce((x, y) => x + y, 0) < n) continue
    const cost = Float64Array.from({ length: n * G }, () => Math.floor(rnd() * 50))
    const got = minCostAssign(cost, n, G, cap)
    const total = (as: ArrayLike<number>): number => { let c = 0; for (let i = 0; i < n; i++) c += cost[i * G + (as[i] as number)] as number; return c }
    const load = new Array(G).fill(0) as number[]
    for (let i = 0; i < n; i++) load[got[i] as number]!++
    if (load.some((l, g) => l > (cap[g] as number))) throw new Error('minCostAssign: capacity violated')
    let best = Infinity
    const cur = new Array(n).fill(0) as number[]
    const rec = (i: number, l: number[]): void => {
      if (i === n) { best = Math.min(best, total(cur)); return }
      for (let g = 0; g < G; g++) if ((l[g] as number) < (cap[g] as number)) { l[g]!++; cur[i] = g; rec(i + 1, l); l[g]!-- }
    }
    rec(0, new Array(G).fill(0) as number[])
    if (Math.abs(total(got) - best) > 1e-9) throw new Error(`minCostAssign: ${total(got)} is not the optimum ${best}`)
    checked++
  }
  return checked
}

export function oracle (s: Setup): PolicyResult {
  const G = s.gateways.length
  const HOUR = 3_600_000
  const t0 = s.accesses[0]?.at ?? 0
  const served = new Int32Array(s.accesses.length)
  const prev = new Int32Array(s.blocks.length).fill(-1)
  const caps = new Array(G).fill(s.capacity) as number[]
  let bytesMoved = 0
  let moves = 0
  let hours = 0
  let start = 0
  while (start < s.accesses.length) {
    const hourEnd = t0 + (Math.floor(((s.accesses[start] as Access).at - t0) / HOUR) + 1) * HOUR
    let end = start
    while (end < s.accesses.length && (s.accesses[end] as Access).at < hourEnd) end++
    const local = new Map<number, number>()
    const list: number[] = []
    for (let i = start; i < end; i++) {
      const b = (s.accesses[i] as Access).block
      if (!local.has(b)) { local.set(b, list.length); list.push(b) }
    }
    const cost = new Float64Array(list.length * G)
    for (let i = start; i < end; i++) {
      const a = s.accesses[i] as Access
      const j = local.get(a.block) as number
      for (let g = 0; g < G; g++) (cost[j * G + g] as number) += s.lat[a.site * G + g] as number
    }
    // Among equally good placements prefer the previous hour's (fewer bytes moved); the
    // tie-break is far below one millisecond in total, so it never changes the latency.
    for (let j = 0; j < list.length; j++) {
      const p = prev[list[j] as number] as number
      for (let g = 0; g < G; g++) if (p >= 0 && g !== p) (cost[j * G + g] as number) += 1e-7
    }
    const assign = minCostAssign(cost, list.length, G, caps)
    for (let i = start; i < end; i++) {
      served[i] = assign[local.get((s.accesses[i] as Access).block) as number] as number
    }
    for (let j = 0; j < list.length; j++) {
      const b = list[j] as number
      const g = assign[j] as number
      if (prev[b] !== -1 && prev[b] !== g) { bytesMoved += (s.blocks[b] as Block).bytes; moves++ }
      prev[b] = g
    }
    hours++
    start = end
  }
  return { served, bytesMoved, moves, extra: { hours } }
}

// ───────────────────────────── first-touch cost ─────────────────────────────

const PASSES = 10

async function firstTouchCost (s: Setup, table: PlacementTable, rounds = 7): Promise<Record<string, unknown>> {
  // The proxy's decision exactly as it runs live: FirstTouchPlacer.decide over the table the
  // planner published at the end of the run, eligibility by health (all healthy here).
  const placer = new FirstTouchPlacer(s.gateways.map((id, g) => ({ id, site: s.sites[s.gatewaySite[g] as number] as string })), () => true)
  placer.setTable(table)
  const nodes = s.gateways.map(id => rendezvousNode(id))
  const origins = s.sites.filter(x => x !== '')
  const blocks = s.blocks
  const perRound = { model: [] as number[], hash: [] as number[] }
  let sink = 0
  for (let r = 0; r < rounds; r++) {
    // Alternate the order so a noisy neighbour hurts both sides alike.
    for (const which of r % 2 === 0 ? ['hash', 'model'] as const : ['model', 'hash'] as const) {
      // Ten passes per round: long enough that one young-generation GC or a deopt does not decide it.
      const started = process.hrtime.bigint()
      for (let pass = 0; pass < PASSES; pass++) {
        for (let i = 0; i < blocks.length; i++) {
          const b = blocks[i] as Block
          if (which === 'model') sink += placer.decide(b.volume, b.id, origins[i % origins.length], 1).gateways.length
          else sink += (rendezvousPick(b.volume + '/' + b.id, nodes) as string).length
        }
      }
      perRound[which].push(Number(process.hrtime.bigint() - started) / 1e3 / (PASSES * blocks.length))
    }
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
  const modelUs = med(perRound.model)
  const hashUs = med(perRound.hash)
  return {
    decisions: blocks.length * PASSES,
    rounds,
    modelUsPerDecision: round(modelUs, 3),
    hashUsPerDecision: round(hashUs, 3),
    targetUs: 5,
    met: modelUs <= 5,
    ratio: ratio(modelUs, hashUs),
    tableVolumes: Object.keys(table.volumes).length,
    checksum: sink % 7,
    note: 'model = FirstTouchPlacer.decide (the proxy\'s inline decision: table lookup, cost per gateway, rank, R = 1); hash = rendezvousPick (the proxy\'s default route); median of rounds'
  }
}

// ───────────────────────────── main ─────────────────────────────

/**
 * An idealised online reference, not a policy anyone can run: before every access the block
 * is placed, instantly and for free, at the gateway minimising expected latency under the
 * information available *before* that access (its decayed per-site scores, optionally its
 * volume's short-term scores, plus a pseudo-count of the global site mix seen so far); a
 * block's first access ever goes to its origin site; no capacity limit. It bounds what a
 * history-driven placement could reach without moving blocks ahead of their accesses.
 */
export function onlineIdeal (s: Setup, o: { halfLifeS: number, volumeWeight: number, volumeHalfLifeS: number, priorWeight: number }): number {
  const G = s.gateways.length
  const S = s.sites.length
  const volOf = s.blocks.map(b => Number(b.volume.slice(1)))
  const NV = Math.max(0, ...volOf) + 1
  const sc = new Float64Array(s.blocks.length * S)
  const at = new Float64Array(s.blocks.length).fill(-1)
  const vs = new Float64Array(NV * S)
  const vat = new Float64Array(NV).fill(-1)
  const seen = new Float64Array(S)
  let seenTotal = 0
  let total = 0
  for (const a of s.accesses) {
    const b = a.block
    const v = volOf[b] as number
    if ((at[b] as number) >= 0) { const f = Math.pow(2, -(a.at - (at[b] as number)) / (o.halfLifeS * 1000)); for (let x = 0; x < S; x++) (sc[b * S + x] as number) *= f }
    if ((vat[v] as number) >= 0) { const f = Math.pow(2, -(a.at - (vat[v] as number)) / (o.volumeHalfLifeS * 1000)); for (let x = 0; x < S; x++) (vs[v * S + x] as number) *= f }
    let g = a.site
    if ((at[b] as number) >= 0 || (o.volumeWeight > 0 && (vat[v] as number) >= 0)) {
      let best = Infinity
      for (let h = 0; h < G; h++) {
        let c = 0
        let w = 0
        for (let x = 0; x < S; x++) {
          const val = (sc[b * S + x] as number) + o.volumeWeight * (vs[v * S + x] as number) + (seenTotal > 0 ? o.priorWeight * (seen[x] as number) / seenTotal : 0)
          c += val * (s.lat[x * G + h] as number); w += val
        }
        c = w > 0 ? c / w : 0
        if (c < best) { best = c; g = h }
      }
    }
    at[b] = a.at; vat[v] = a.at
    total += s.lat[a.site * G + g] as number
    ;(sc[b * S + a.site] as number) += 1; (vs[v * S + a.site] as number) += 1; (seen[a.site] as number) += 1; seenTotal++
  }
  return round(total / s.accesses.length)
}

const timed = async <T>(name: string, f: () => T | Promise<T>): Promise<T> => {
  const started = Date.now()
  const r = await f()
  console.log(`  ${name}: ${Date.now() - started} ms`)
  return r
}

const printLine = (name: string, p: Record<string, unknown>): void => {
  console.log(`  ${name.padEnd(58)} mean ${String(p.meanMs).padStart(7)} ms  p99 ${String(p.p99Ms).padStart(4)} ms  local ${(100 * (p.localShare as number)).toFixed(1).padStart(5)} %  moved ${((p.bytesMoved as number) / 1e6).toFixed(1).padStart(7)} MB in ${p.moves} moves`)
}

/**
 * `--replicas R` (R > 1), issue 20's figure: every block held by a replica set of R gateways,
 * every copy counting toward the per-gateway capacity, each read served by the set's nearest
 * member. Hashing R (ReplicaPlacer), ferry R (FirstTouchPlacer's R members, the live
 * rebalancer's set rounds) and the single-copy hourly oracle at the same capacity, in one run;
 * the single-copy hashing and ferry at that capacity too, for what the second copy buys. No
 * ablations or sensitivity sweep (they are R = 1 studies), so --quick changes nothing here.
 */
async function runReplicas (opts: Options, s: Setup, embedder: Embedder, base: { solverChecks: number, perSite: Record<string, number>, servedBytes: number }): Promise<void> {
  const R = opts.replicas
  const G = s.gateways.length
  if (R > G) throw new Error(`--replicas ${R}: only ${G} gateways`)
  // Every block lives for the whole trace, so by its end R copies of each must fit.
  if (R * s.blocks.length > G * s.capacity) {
    throw new Error(`--replicas ${R}: ${R} × ${s.blocks.length} blocks = ${R * s.blocks.length} copies do not fit in ${G} gateways × ${s.capacity} (--capacity ${opts.capacity}); R = ${R} needs --capacity ≥ ${(R / G).toFixed(3)}`)
  }
  const ALL: FerryVariant = { partition: true, rebalance: true }
  const hashR = await timed(`hashing R = ${R}`, () => hashing(s, R))
  const ferryR = await timed(`ferry R = ${R}`, () => ferry(s, opts, ALL, embedder))
  const orc = await timed('oracle (R = 1)', () => oracle(s))
  const hash1 = await timed('hashing R = 1', () => hashing(s, 1))
  const ferry1 = await timed('ferry R = 1', () => ferry(s, { ...opts, replicas: 1 }, ALL, embedder))
  const policies: Record<'hashing' | 'ferry' | 'oracle', Record<string, unknown>> = {
    hashing: { replicas: R, ...summarise(s, hashR) },
    ferry: { replicas: R, ...summarise(s, ferryR) },
    oracle: { replicas: 1, ...summarise(s, orc) }
  }
  const singleCopy: Record<'hashing' | 'ferry', Record<string, unknown>> = {
    hashing: { replicas: 1, ...summarise(s, hash1) },
    ferry: { replicas: 1, ...summarise(s, ferry1) }
  }
  const fm = policies.ferry.meanMs as number
  const ratios = {
    ferryOverOracle: ratio(fm, policies.oracle.meanMs as number),
    ferryOverHashing: ratio(fm, policies.hashing.meanMs as number),
    ferryBytesOverOracle: ratio(policies.ferry.bytesMoved as number, policies.oracle.bytesMoved as number),
    hashingOverOracle: ratio(policies.hashing.meanMs as number, policies.oracle.meanMs as number),
    ferryOverSingleCopyFerry: ratio(fm, singleCopy.ferry.meanMs as number)
  }
  printLine(`hashing R = ${R}`, policies.hashing)
  printLine(`ferry R = ${R}`, policies.ferry)
  printLine('oracle R = 1 (hourly)', policies.oracle)
  printLine('hashing R = 1 (same capacity)', singleCopy.hashing)
  printLine('ferry R = 1 (same capacity)', singleCopy.ferry)
  console.log(`  ferry R = ${R}: candidates passed over ${JSON.stringify(policies.ferry.skipped)}; copies per gateway ${JSON.stringify(policies.ferry.finalBlocksPerGateway)}`)
  console.log(`  ferry/oracle ${ratios.ferryOverOracle}; ferry/hashing ${ratios.ferryOverHashing}; ferry bytes/oracle bytes ${ratios.ferryBytesOverOracle} (no target: reported)`)
  const file = writeResult(`placement-r${R}-c${opts.capacity}`, {
    setup: {
      trace: path.relative(projectRoot, opts.trace),
      accesses: s.accesses.length,
      blocks: s.blocks.length,
      volumes: s.volumes,
      hosts: s.hosts,
      accessesPerSite: base.perSite,
      bytesServed: base.servedBytes,
      gateways: s.gateways,
      replicas: R,
      capacity: { fraction: opts.capacity, copiesPerGateway: s.capacity, by: 'block count, every copy counts' },
      reads: 'every access a read, served by the nearest member of the set at that moment (proxy/replicas.ts readOrder)',
      latency: opts.latency,
      ferry: { halfLifeS: opts.halfLifeS, rebalancer: rebalancerConfig(opts), retrainS: opts.retrainS, priorWeight: opts.priorWeight, prior: opts.prior, embedder: embedder.name },
      oracleSolverChecks: base.solverChecks
    },
    policies,
    singleCopySameCapacity: singleCopy,
    ratios
  })
  console.log(`  wrote ${file}`)
}

export default async function run (argv: string[]): Promise<void> {
  const opts = options(argv)
  const solverChecks = checkSolver()
  const s = setup(opts)
  let embedder: Embedder
  if (opts.embedder === 'transformers') {
    const { TransformersEmbedder } = await import('../planner/partition/transformers.js')
    embedder = new CachingEmbedder(await TransformersEmbedder.load({ model: opts.model as string }))
  } else {
    embedder = new CachingEmbedder(new NgramHashEmbedder())
  }
  const perSite: Record<string, number> = {}
  for (const a of s.accesses) perSite[s.sites[a.site] as string] = (perSite[s.sites[a.site] as string] ?? 0) + 1
  let servedBytes = 0
  for (const a of s.accesses) servedBytes += (s.blocks[a.block] as Block).bytes
  console.log(`placement: ${s.accesses.length} accesses, ${s.blocks.length} blocks in ${s.volumes} volumes, ${s.hosts} hosts; per site ${JSON.stringify(perSite)}; capacity ${s.capacity} blocks per gateway`)

  if (opts.replicas > 1) { await runReplicas(opts, s, embedder, { solverChecks, perSite, servedBytes }); return }
  const ALL: FerryVariant = { partition: true, rebalance: true }
  const hash = await timed('hashing', () => hashing(s))
  const full = await timed('ferry', () => ferry(s, opts, ALL, embedder))
  const orc = await timed('oracle', () => oracle(s))
  const policies = {
    hashing: summarise(s, hash),
    ferry: summarise(s, full),
    oracle: summarise(s, orc)
  }
  // What each part buys: the same run without it.
  const ablations: Record<string, Record<string, unknown>> = {}
  const ablate: Array<[string, Options, FerryVariant]> = [
    ['without partitioning engine (hash first touch, no prior)', opts, { ...ALL, partition: false }],
    ['without rebalancer', opts, { ...ALL, rebalance: false }],
    ['without headroom', { ...opts, headroom: 0 }, ALL],
    ['without prior (κ = 0)', { ...opts, priorWeight: 0 }, ALL]
  ]
  // --quick: the three policies only (set-up variations, parameter trials).
  if (opts.quick) ablate.length = 0
  for (const [name, o, v] of ablate) ablations[name] = summarise(s, await timed(`ferry ${name}`, () => ferry(s, o, v, embedder)))
  // How sensitive the result is to the knobs (each varies one default).
  const sensitivity: Record<string, Record<string, unknown>> = {}
  const vary: Array<[string, Partial<Options>]> = [
    ['half-life 120 s', { halfLifeS: 120 }],
    ['half-life 1800 s', { halfLifeS: 1800 }],
    ['per-volume prior', { prior: 'volume' }],
    ['per-block prior (re-predicted at every retrain)', { prior: 'block' }],
    ['rebalance every 10 s', { intervalS: 10 }],
    ['volume signal λ = 1', { volumeWeight: 1 }],
    // The live predictive signal (rebalancer.coAccess), on and off whatever the default.
    ['co-access signal on (rebalancer.coAccess)', { predict: true }],
    ['co-access signal off', { predict: false }],
    // The aggressive end: what it takes to approach the oracle, and what it costs in bytes.
    ['volume signal λ = 1, rounds every 1 s of up to 1000 moves, margin 10 %', { volumeWeight: 1, intervalS: 1, maxMoves: 1000, margin: 0.1 }]
  ]
  for (const [name, o] of vary) {
    if (opts.quick) break
    if (Object.entries(o).every(([k, v]) => (opts as unknown as Record<string, unknown>)[k] === v)) continue
    sensitivity[name] = summarise(s, await timed(`ferry ${name}`, () => ferry(s, { ...opts, ...o }, ALL, embedder)))
  }
  const reference = {
    onlineIdealBlockHistory: onlineIdeal(s, { halfLifeS: opts.halfLifeS, volumeWeight: 0, volumeHalfLifeS: 30, priorWeight: 1 }),
    onlineIdealWithVolumeSignal: onlineIdeal(s, { halfLifeS: opts.halfLifeS, volumeWeight: 1, volumeHalfLifeS: 30, priorWeight: 1 }),
    note: 'instant, free, unconstrained moves before every access using only earlier accesses (see onlineIdeal): not achievable, a bound on history-driven placement'
  }
  const cost = full.table === null ? null : await timed('first-touch cost', () => firstTouchCost(s, full.table as PlacementTable))

  const fm = policies.ferry.meanMs as number
  const om = policies.oracle.meanMs as number
  const hm = policies.hashing.meanMs as number
  const targets = {
    ferryOverOracle: ratio(fm, om),
    ferryOverOracleTarget: TARGET_VS_ORACLE,
    ferryOverOracleMet: fm <= TARGET_VS_ORACLE * om,
    ferryBelowHashing: round(1 - fm / hm, 3),
    ferryBelowHashingTarget: 1 - TARGET_VS_HASHING,
    ferryBelowHashingMet: fm <= TARGET_VS_HASHING * hm
  }
  const line = printLine
  for (const [name, p] of Object.entries(policies)) line(name, p)
  console.log(`  ferry: rebalancer ${JSON.stringify(rebalancerConfig(opts))}; candidates passed over ${JSON.stringify(policies.ferry.skipped)}`)
  for (const [name, p] of Object.entries(ablations)) line(`ferry ${name}`, p)
  for (const [name, p] of Object.entries(sensitivity)) line(`ferry, ${name}`, p)
  console.log(`  online ideal (not runnable): ${reference.onlineIdealBlockHistory} ms from block history, ${reference.onlineIdealWithVolumeSignal} ms with the volume signal`)
  console.log(`  ferry/oracle ${targets.ferryOverOracle} (target ≤ ${TARGET_VS_ORACLE}: ${targets.ferryOverOracleMet ? 'met' : 'NOT met'}); ferry ${(100 * targets.ferryBelowHashing).toFixed(1)} % below hashing (target ≥ 40 %: ${targets.ferryBelowHashingMet ? 'met' : 'NOT met'})`)
  if (cost !== null) console.log(`  first touch: model ${cost.modelUsPerDecision} µs vs hash ${cost.hashUsPerDecision} µs per decision (×${cost.ratio})`)

  const file = writeResult(opts.quick ? 'placement-quick' : 'placement', {
    setup: {
      trace: path.relative(projectRoot, opts.trace),
      accesses: s.accesses.length,
      skippedRows: s.skipped,
      blocks: s.blocks.length,
      volumes: s.volumes,
      hosts: s.hosts,
      accessesPerSite: perSite,
      bytesServed: servedBytes,
      gateways: s.gateways,
      capacity: { fraction: opts.capacity, blocksPerGateway: s.capacity, by: 'block count' },
      latency: opts.latency,
      ferry: { halfLifeS: opts.halfLifeS, rebalancer: rebalancerConfig(opts), retrainS: opts.retrainS, priorWeight: opts.priorWeight, prior: opts.prior, volumeWeight: opts.volumeWeight, volumeHalfLifeS: opts.volumeHalfLifeS, embedder: embedder.name },
      oracleSolverChecks: solverChecks
    },
    policies,
    ablations,
    sensitivity,
    reference,
    targets,
    firstTouchCost: cost
  })
  console.log(`  wrote ${file}`)
}
