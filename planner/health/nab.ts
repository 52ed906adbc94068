/**
 * A TypeScript scorer for the Numenta Anomaly Benchmark (NAB) that follows NAB's own scorer
 * (nab/sweeper.py, nab/optimizer.py, nab/runner.py at commit ea702d75) rule for rule, so that
 * a figure printed by ferry means the same thing as a figure on NAB's scoreboard:
 *
 * - Windows come from labels/combined_windows.json; a window is entered on the row whose
 *   timestamp equals its start and left after the row whose timestamp equals its end.
 * - Probation: rows with index < min(floor(0.15 * rows), 0.15 * 5000) are not scored.
 * - Every row gets a "sweep score" as if it were a detection. Inside a window:
 *   `tpWeight * S(-(right - i + 1) / width) / S(-1)` — note NAB's `+ 1`, which makes the
 *   first row of a window worth exactly tpWeight and the last one a little more than 0.
 *   Outside: `fpWeight * S(|prevRight - i| / (prevWidth - 1))` relative to the preceding
 *   window, or `-fpWeight` when no window precedes. S(x) = 2/(1+e^{5x}) - 1, and -1 past x > 3.
 * - For a threshold T a row is a detection when its anomaly score is >= T. A window scores the
 *   best (i.e. the earliest) sweep score among its detections, or -fnWeight with none; every
 *   detection outside windows adds its (negative) sweep score.
 * - The threshold is ONE value for the whole corpus, per profile: every distinct anomaly
 *   score in the corpus is a candidate (NAB's sweep), the best total wins, ties go to the
 *   higher threshold (Python's stable sort in optimizer.py).
 * - Normalised score = 100 * (raw - rawNull) / (rawPerfect - rawNull), where the null detector
 *   outputs a constant 0.5 (and is itself threshold-optimised, as NAB runs it) and the
 *   perfect detector scores tpWeight per window (NAB: label count * tpWeight).
 *
 * The data is read from ../shared/data/nab relative to the project root; it is never copied
 * into the repository.
 */
import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import { fileURLToPath } from 'node:url'
import { FerryError } from '../../lib/errors.js'
import type { FerryErrorCode } from '../../lib/error-codes.js'

export interface CostMatrix {
  tpWeight: number
  fnWeight: number
  fpWeight: number
}

export type Profiles = Record<string, CostMatrix>

/** One NAB data file with its windows resolved to row indices. */
export interface NabFile {
  /** `<category>/<file>.csv`, NAB's key for the file. */
  key: string
  category: string
  name: string
  timestamps: string[]
  values: number[]
  /** Windows as inclusive row index ranges, in file order. */
  windows: Array<{ start: number, end: number }>
}

export interface NabCorpus {
  root: string
  files: NabFile[]
  profiles: Profiles
  windowCount: number
}

export interface Counts { tp: number, tn: number, fp: number, fn: number }

export interface FileScore extends Counts {
  file: string
  score: number
  rows: number
}

export interface ProfileResult {
  profile: string
  threshold: number
  raw: number
  rawNull: number
  rawPerfect: number
  normalized: number
  counts: Counts
  files: FileScore[]
}

export const PROBATION_PERCENT = 0.15

/**
 * Where the shared NAB copy lives: ../shared/data/nab relative to the project root, unless
 * FERRY_NAB_DIR says otherwise.
 */
export function defaultNabRoot (): string {
  if (process.env.FERRY_NAB_DIR !== undefined && process.env.FERRY_NAB_DIR !== '') return path.resolve(process.env.FERRY_NAB_DIR)
  const here = path.dirname(fileURLToPath(import.meta.url))
  // Works both from planner/health (ts via tap) and from dist/planner/health (compiled).
  let dir = here
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) break
    dir = path.dirname(dir)
  }
  return path.resolve(dir, '..', 'shared', 'data', 'nab')
}

export function scaledSigmoid (x: number): number {
  if (x > 3) return -1
  return 2 / (1 + Math.exp(5 * x)) - 1
}

export function probationLength (rows: number, percent = PROBATION_PERCENT): number {
  return Math.min(Math.floor(percent * rows), percent * 5000)
}

function fail (code: FerryErrorCode, message: string, details?: Record<string, unknown>): never {
  throw new FerryError(code, message, 500, details)
}

/** Splits a NAB CSV (`timestamp,<column>...`) into timestamps and one numeric column. */
export function parseNabCsv (text: string, column: string, source: string): { timestamps: string[], values: number[] } {
  const lines = text.split(/\r?\n/)
  const header = (lines[0] ?? '').split(',').map(s => s.trim())
  const col = header.indexOf(column)
  if (header[0] !== 'timestamp' || col < 0) fail('FERRY_NAB_BAD_CSV', `${source}: expected a header with timestamp and ${column}`, { header })
  const timestamps: string[] = []
  const values: number[] = []
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string
    if (line.length === 0) continue
    const cells = line.split(',')
    const v = Number(cells[col])
    if (cells[col] === undefined || cells[col] === '' || Number.isNaN(v)) fail('FERRY_NAB_BAD_CSV', `${source}:${i + 1}: not a number in column ${column}`)
    timestamps.push(normaliseTimestamp(cells[0] as string))
    values.push(v)
  }
  return { timestamps, values }
}

/** NAB writes window limits with microseconds ("… 15:30:00.000000"), data without. */
function normaliseTimestamp (t: string): string {
  const s = t.trim()
  return s.endsWith('.000000') ? s.slice(0, -7) : s
}

function readJson (file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (err) {
    fail('FERRY_NAB_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`)
  }
}

export function loadProfiles (root: string): Profiles {
  const raw = readJson(path.join(root, 'config', 'profiles.json')) as Record<string, { CostMatrix?: Partial<CostMatrix> }>
  const out: Profiles = {}
  for (const [name, p] of Object.entries(raw)) {
    const cm = p.CostMatrix
    if (cm?.tpWeight === undefined || cm.fnWeight === undefined || cm.fpWeight === undefined) fail('FERRY_NAB_BAD_PROFILE', `profile ${name} lacks a cost matrix`)
    out[name] = { tpWeight: cm.tpWeight, fnWeight: cm.fnWeight, fpWeight: cm.fpWeight }
  }
  return out
}

/** Loads every data file named in combined_windows.json, with windows resolved to rows. */
export function loadNabCorpus (root = defaultNabRoot()): NabCorpus {
  if (!fs.existsSync(root)) fail('FERRY_NAB_NOT_FOUND', `NAB data not found at ${root}`)
  const windowsByFile = readJson(path.join(root, 'labels', 'combined_windows.json')) as Record<string, Array<[string, string]>>
  const files: NabFile[] = []
  let windowCount = 0
  for (const key of Object.keys(windowsByFile).sort()) {
    const [category, name] = key.split('/') as [string, string]
    const { timestamps, values } = parseNabCsv(fs.readFileSync(path.join(root, 'data', key), 'utf8'), 'value', key)
    const index = new Map<string, number>()
    timestamps.forEach((t, i) => { if (!index.has(t)) index.set(t, i) })
    const windows = (windowsByFile[key] ?? []).map(([a, b]) => {
      const start = index.get(normaliseTimestamp(a))
      const end = index.get(normaliseTimestamp(b))
      // NAB enters a window only on an exact timestamp match; a label that matches no row
      // would silently drop this and every later window, so refuse it instead.
      if (start === undefined || end === undefined) fail('FERRY_NAB_WINDOW_MISALIGNED', `${key}: window [${a}, ${b}] does not fall on rows`)
      return { start, end }
    })
    windowCount += windows.length
    files.push({ key, category, name, timestamps, values, windows })
  }
  return { root, files, profiles: loadProfiles(root), windowCount }
}

/** Reads a detector's per-file outputs in NAB's results layout (`.csv` or `.csv.gz`). */
export function readDetectorResults (dir: string, detector: string, corpus: NabCorpus): Map<string, number[]> {
  const out = new Map<string, number[]>()
  for (const f of corpus.files) {
    const base = path.join(dir, f.category, `${detector}_${f.name}`)
    let text: string
    if (fs.existsSync(base)) text = fs.readFileSync(base, 'utf8')
    else if (fs.existsSync(base + '.gz')) text = zlib.gunzipSync(fs.readFileSync(base + '.gz')).toString('utf8')
    else fail('FERRY_NAB_RESULTS_MISSING', `no results for ${f.key} in ${dir}`)
    const { timestamps, values } = parseNabCsv(text, 'anomaly_score', base)
    if (timestamps.length !== f.timestamps.length) fail('FERRY_NAB_RESULTS_LENGTH', `${base}: ${timestamps.length} rows, data has ${f.timestamps.length}`)
    out.set(f.key, values)
  }
  return out
}

/**
 * Per-row scoring material for one file: the sweep score each row would earn as a detection
 * and which window it belongs to (-1 outside every window, -2 in probation).
 */
interface Sweep {
  sweep: Float64Array
  window: Int32Array
}

function sweepFile (file: NabFile, cost: CostMatrix, probationPercent: number): Sweep {
  const n = file.timestamps.length
  const sweep = new Float64Array(n)
  const window = new Int32Array(n)
  const maxTP = scaledSigmoid(-1)
  const probation = probationLength(n, probationPercent)
  let next = 0
  let cur = -1
  let prevRight = -1
  let prevWidth = 0
  for (let i = 0; i < n; i++) {
    const w = file.windows[next]
    if (w !== undefined && i === w.start) { cur = next; next++ }
    let s: number
    if (cur >= 0) {
      const cw = file.windows[cur] as { start: number, end: number }
      const width = cw.end - cw.start + 1
      s = scaledSigmoid(-(cw.end - i + 1) / width) * cost.tpWeight / maxTP
    } else if (prevRight < 0) {
      s = -cost.fpWeight
    } else {
      s = scaledSigmoid(Math.abs(prevRight - i) / (prevWidth - 1)) * cost.fpWeight
    }
    sweep[i] = s
    window[i] = i < probation ? -2 : cur
    if (cur >= 0 && i === (file.windows[cur] as { end: number }).end) {
      const cw = file.windows[cur] as { start: number, end: number }
      prevRight = i
      prevWidth = cw.end - cw.start + 1
      cur = -1
    }
  }
  return { sweep, window }
}

/** Score and counts of one file at a threshold (detection: anomaly score >= threshold). */
export function scoreFile (file: NabFile, scores: ArrayLike<number>, threshold: number, cost: CostMatrix, probationPercent = PROBATION_PERCENT): FileScore {
  const { sweep, window } = sweepFile(file, cost, probationPercent)
  const best = file.windows.map(() => -cost.fnWeight)
  const counts: Counts = { tp: 0, tn: 0, fp: 0, fn: 0 }
  let fpScore = 0
  for (let i = 0; i < sweep.length; i++) {
    const w = window[i] as number
    if (w === -2) continue
    const hit = (scores[i] as number) >= threshold
    if (w >= 0) {
      if (hit) { counts.tp++; best[w] = Math.max(best[w] as number, sweep[i] as number) } else counts.fn++
    } else if (hit) { counts.fp++; fpScore += sweep[i] as number } else counts.tn++
  }
  const score = fpScore + best.reduce((a, b) => a + b, 0)
  return { file: file.key, score, rows: sweep.length, ...counts }
}

/**
 * The corpus-wide score as a step function of the threshold: NAB's sweep (sweeper.py
 * calcScoreByThreshold) over every scorable row of every file, from the highest anomaly score
 * down. Entry k holds the total when every row with score >= thresholds[k] is a detection;
 * entry 0 is NAB's starting point (threshold 1.1: nothing detected, every window missed).
 */
export interface ThresholdCurve {
  /** Strictly decreasing candidate thresholds. */
  thresholds: Float64Array
  scores: Float64Array
}

export function thresholdCurve (corpus: NabCorpus, detector: Map<string, ArrayLike<number>>, cost: CostMatrix, probationPercent = PROBATION_PERCENT): ThresholdCurve {
  const scoreList: number[] = []
  const sweepList: number[] = []
  const windowList: number[] = []
  const windowBest: number[] = []
  for (const f of corpus.files) {
    const scores = detector.get(f.key)
    if (scores === undefined) fail('FERRY_NAB_RESULTS_MISSING', `detector has no output for ${f.key}`)
    const { sweep, window } = sweepFile(f, cost, probationPercent)
    const base = windowBest.length
    for (let i = 0; i < sweep.length; i++) {
      const w = window[i] as number
      if (w === -2) continue
      scoreList.push(scores[i] as number)
      sweepList.push(sweep[i] as number)
      windowList.push(w >= 0 ? base + w : -1)
    }
    for (let k = 0; k < f.windows.length; k++) windowBest.push(-cost.fnWeight)
  }
  // Stable sort by descending score, like Python's sorted(..., reverse=True).
  const order = Array.from(scoreList.keys()).sort((a, b) => (scoreList[b] as number) - (scoreList[a] as number))
  const thresholds: number[] = []
  const totals: number[] = []
  let windowsTotal = -cost.fnWeight * windowBest.length
  let fpTotal = 0
  let cur = 1.1
  for (const idx of order) {
    const s = scoreList[idx] as number
    if (s !== cur) { thresholds.push(cur); totals.push(fpTotal + windowsTotal); cur = s }
    const w = windowList[idx] as number
    const sw = sweepList[idx] as number
    if (w < 0) fpTotal += sw
    else if (sw > (windowBest[w] as number)) { windowsTotal += sw - (windowBest[w] as number); windowBest[w] = sw }
  }
  thresholds.push(cur)
  totals.push(fpTotal + windowsTotal)
  return { thresholds: Float64Array.from(thresholds), scores: Float64Array.from(totals) }
}

/** The corpus total at any threshold, read off the curve (the lowest candidate >= t). */
export function curveScoreAt (curve: ThresholdCurve, t: number): number {
  const th = curve.thresholds
  // Binary search for the last index whose threshold is >= t (thresholds decrease).
  let lo = 0
  let hi = th.length - 1
  if ((th[0] as number) < t) return curve.scores[0] as number
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if ((th[mid] as number) >= t) lo = mid
    else hi = mid - 1
  }
  return curve.scores[lo] as number
}

/**
 * NAB's current optimizer (optimizer.py since 2017): the best point of the sweep; on a tie the
 * earlier, i.e. higher, threshold stays (Python's stable sort).
 */
export function sweepOptimum (curve: ThresholdCurve): { threshold: number, score: number } {
  let best = 0
  for (let k = 1; k < curve.scores.length; k++) if ((curve.scores[k] as number) > (curve.scores[best] as number)) best = k
  return { threshold: curve.thresholds[best] as number, score: curve.scores[best] as number }
}

/**
 * NAB's earlier optimizer, a hill climber ("twiddle": start 0.5, step 0.1, tolerance 1e-7,
 * thresholds outside [0, 1] score -inf). The published numenta and windowedGaussian thresholds
 * (config/thresholds.json, e.g. 0.5421876907348634) come from it, so reproducing the published
 * reward_low_FP_rate figure needs it; the sweep finds the global optimum instead.
 */
export function twiddleOptimum (curve: ThresholdCurve): { threshold: number, score: number } {
  const objective = (t: number): number => (t < 0 || t > 1) ? -Infinity : curveScoreAt(curve, t)
  const past = new Map<number, number>()
  const call = (t: number): number => {
    let v = past.get(t)
    if (v === undefined) { v = objective(t); past.set(t, v) }
    return v
  }
  let x = 0.5
  let delta = 0.1
  let bestScore = call(x)
  while (delta > 1e-7) {
    x += delta
    if (call(x) > bestScore) {
      bestScore = call(x)
      delta *= 2
    } else {
      x -= 2 * delta
      if (call(x) > bestScore) {
        bestScore = call(x)
        delta *= 2
      } else {
        x += delta
        delta *= 0.5
      }
    }
  }
  // Like NAB: the best of every threshold tried (first on ties, in insertion order).
  let bestT = 0.5
  let bestV = -Infinity
  for (const [t, v] of past) if (v > bestV) { bestV = v; bestT = t }
  return { threshold: bestT, score: bestV }
}

export type Optimizer = 'sweep' | 'twiddle'

export function optimizeThreshold (corpus: NabCorpus, detector: Map<string, ArrayLike<number>>, cost: CostMatrix, probationPercent = PROBATION_PERCENT, optimizer: Optimizer = 'sweep'): { threshold: number, score: number } {
  const curve = thresholdCurve(corpus, detector, cost, probationPercent)
  return optimizer === 'sweep' ? sweepOptimum(curve) : twiddleOptimum(curve)
}

function sumCounts (files: FileScore[]): Counts {
  const c: Counts = { tp: 0, tn: 0, fp: 0, fn: 0 }
  for (const f of files) { c.tp += f.tp; c.tn += f.tn; c.fp += f.fp; c.fn += f.fn }
  return c
}

export function scoreCorpusAt (corpus: NabCorpus, detector: Map<string, ArrayLike<number>>, threshold: number, cost: CostMatrix, probationPercent = PROBATION_PERCENT): { raw: number, files: FileScore[] } {
  const files = corpus.files.map(f => {
    const scores = detector.get(f.key)
    if (scores === undefined) fail('FERRY_NAB_RESULTS_MISSING', `detector has no output for ${f.key}`)
    return scoreFile(f, scores, threshold, cost, probationPercent)
  })
  return { raw: files.reduce((a, f) => a + f.score, 0), files }
}

/** The null detector: a constant 0.5 on every row, threshold-optimised like any detector. */
export function nullDetector (corpus: NabCorpus): Map<string, Float64Array> {
  return new Map(corpus.files.map(f => [f.key, new Float64Array(f.timestamps.length).fill(0.5)]))
}

export interface ScoreOptions {
  /** Score at this threshold instead of optimising one (e.g. a published threshold). */
  threshold?: number
  probationPercent?: number
  /** 'sweep' (NAB today, the default) or 'twiddle' (the optimizer behind the published thresholds). */
  optimizer?: Optimizer
}

/** Scores a detector for one profile: optimised threshold, raw total, normalised score, per-file table. */
export function scoreProfile (corpus: NabCorpus, detector: Map<string, ArrayLike<number>>, profile: string, opts: ScoreOptions = {}): ProfileResult {
  const cost = corpus.profiles[profile]
  if (cost === undefined) fail('FERRY_NAB_BAD_PROFILE', `unknown profile ${profile}`)
  const pp = opts.probationPercent ?? PROBATION_PERCENT
  const threshold = opts.threshold ?? optimizeThreshold(corpus, detector, cost, pp, opts.optimizer).threshold
  const { raw, files } = scoreCorpusAt(corpus, detector, threshold, cost, pp)
  const rawNull = optimizeThreshold(corpus, nullDetector(corpus), cost, pp).score
  const rawPerfect = corpus.windowCount * cost.tpWeight
  const normalized = 100 * (raw - rawNull) / (rawPerfect - rawNull)
  return { profile, threshold, raw, rawNull, rawPerfect, normalized, counts: sumCounts(files), files }
}

/** All profiles of config/profiles.json. */
export function scoreDetector (corpus: NabCorpus, detector: Map<string, ArrayLike<number>>, opts: Omit<ScoreOptions, 'threshold'> = {}): Record<string, ProfileResult> {
  const out: Record<string, ProfileResult> = {}
  for (const name of Object.keys(corpus.profiles)) out[name] = scoreProfile(corpus, detector, name, opts)
  return out
}

/** Reads NAB's per-file score table (`<detector>_<profile>_scores.csv`). */
export function readScoreTable (file: string): { files: Map<string, FileScore & { threshold: number }>, total: FileScore } {
  const lines = fs.readFileSync(file, 'utf8').trim().split(/\r?\n/)
  const files = new Map<string, FileScore & { threshold: number }>()
  let total: FileScore | undefined
  for (const line of lines.slice(1)) {
    const c = line.split(',')
    const row = { file: c[2] as string, threshold: Number(c[3]), score: Number(c[4]), tp: Number(c[5]), tn: Number(c[6]), fp: Number(c[7]), fn: Number(c[8]), rows: Number(c[9]) }
    if (c[0] === 'Totals') total = { ...row, file: 'Totals' }
    else files.set(row.file, row)
  }
  if (total === undefined) fail('FERRY_NAB_BAD_CSV', `${file}: no Totals row`)
  return { files, total }
}
