import t from 'tap'
import path from 'node:path'
import fs from 'node:fs'
import {
  loadNabCorpus, readDetectorResults, readScoreTable, scoreProfile, scoreFile, scaledSigmoid,
  probationLength, thresholdCurve, curveScoreAt, sweepOptimum, defaultNabRoot,
  type NabFile, type NabCorpus, type CostMatrix
} from '../../../planner/health/nab.js'
import { isFerryError } from '../../../lib/errors.js'

const root = defaultNabRoot()
const standard: CostMatrix = { tpWeight: 1, fnWeight: 1, fpWeight: 0.11 }

/** A synthetic file of n rows with the given windows (inclusive row ranges). */
function file (n: number, windows: Array<{ start: number, end: number }>): NabFile {
  const timestamps = Array.from({ length: n }, (_, i) => new Date(Date.UTC(2020, 0, 1) + i * 300_000).toISOString())
  return { key: 'synthetic/s.csv', category: 'synthetic', name: 's.csv', timestamps, values: new Array<number>(n).fill(0), windows }
}

function spikes (n: number, at: number[]): number[] {
  const s = new Array<number>(n).fill(0)
  for (const i of at) s[i] = 1
  return s
}

t.test('the scaled sigmoid has NAB\'s shape', async t => {
  t.equal(scaledSigmoid(0), 0)
  t.ok(Math.abs(scaledSigmoid(-1) - 0.98661) < 1e-5)
  t.ok(Math.abs(scaledSigmoid(-0.5) - 0.84828) < 1e-5)
  t.equal(scaledSigmoid(3.01), -1)
  t.ok(scaledSigmoid(1) < -0.98)
})

t.test('probation is 15% of rows, at most 750', async t => {
  t.equal(probationLength(1000), 150)
  t.equal(probationLength(4032), 604)
  t.equal(probationLength(20000), 750)
})

t.test('only the first detection in a window counts, and earlier is worth more', async t => {
  // 1000 rows: probation 150; one window of 101 rows at 500..600.
  const f = file(1000, [{ start: 500, end: 600 }])
  const first = scoreFile(f, spikes(1000, [500]), 0.5, standard)
  t.equal(first.score, 1, 'a detection on the first row of the window is worth tpWeight exactly')
  const both = scoreFile(f, spikes(1000, [500, 550, 590]), 0.5, standard)
  t.equal(both.score, first.score, 'later detections in the same window add nothing')
  t.equal(both.tp, 3)
  const late = scoreFile(f, spikes(1000, [590]), 0.5, standard)
  t.ok(late.score > 0 && late.score < 0.5, `a late detection earns little (${late.score})`)
  const expected = scaledSigmoid(-(600 - 590 + 1) / 101) / scaledSigmoid(-1)
  t.ok(Math.abs(late.score - expected) < 1e-12)
  const none = scoreFile(f, spikes(1000, []), 0.5, standard)
  t.equal(none.score, -1, 'a missed window costs fnWeight')
  t.equal(none.fn, 101)
})

t.test('false positives are scored relative to the preceding window', async t => {
  const f = file(1000, [{ start: 500, end: 600 }])
  const beforeAny = scoreFile(f, spikes(1000, [500, 300]), 0.5, standard)
  t.ok(Math.abs(beforeAny.score - (1 - 0.11)) < 1e-12, 'an FP before any window costs the full fpWeight')
  const justAfter = scoreFile(f, spikes(1000, [500, 605]), 0.5, standard)
  const farAfter = scoreFile(f, spikes(1000, [500, 950]), 0.5, standard)
  t.ok(justAfter.score > farAfter.score, 'an FP right after a window costs less than a far one')
  const expected = 1 + 0.11 * scaledSigmoid(5 / 100)
  t.ok(Math.abs(justAfter.score - expected) < 1e-12)
  t.ok(Math.abs(farAfter.score - (1 - 0.11)) < 1e-12, 'more than 3 window widths after: the full fpWeight')
  t.equal(justAfter.fp, 1)
})

t.test('detections during probation are not scored', async t => {
  const f = file(1000, [{ start: 500, end: 600 }])
  const s = scoreFile(f, spikes(1000, [10, 149, 500]), 0.5, standard)
  t.equal(s.score, 1)
  t.equal(s.fp, 0)
  t.equal(s.tp + s.tn + s.fp + s.fn, 1000 - 150)
  const edge = scoreFile(f, spikes(1000, [150, 500]), 0.5, standard)
  t.ok(Math.abs(edge.score - 0.89) < 1e-12, 'row 150 is the first scored row')
})

t.test('the corpus threshold is swept over every distinct score', async t => {
  const corpus: NabCorpus = { root: '', files: [file(1000, [{ start: 500, end: 600 }])], profiles: { standard }, windowCount: 1 }
  const scores = new Array<number>(1000).fill(0.1)
  scores[510] = 0.7
  scores[800] = 0.9 // a far FP with a higher score than the true detection
  const detector = new Map([['synthetic/s.csv', scores]])
  const curve = thresholdCurve(corpus, detector, standard)
  t.same(Array.from(curve.thresholds), [1.1, 0.9, 0.7, 0.1])
  const best = sweepOptimum(curve)
  t.equal(best.threshold, 0.7, 'detecting the window is worth its far FP')
  t.equal(curveScoreAt(curve, 0.75), curve.scores[1], 'a threshold between candidates reads the higher one')
  const r = scoreProfile(corpus, detector, 'standard')
  t.equal(r.rawNull, -1, 'the null detector finds nothing worth its FPs')
  t.equal(r.rawPerfect, 1)
  t.ok(Math.abs(r.raw - curveScoreAt(curve, 0.7)) < 1e-12, 'scoring at the optimum gives the curve value')
  const perfect = scoreProfile(corpus, new Map([['synthetic/s.csv', spikes(1000, [500])]]), 'standard')
  t.equal(perfect.normalized, 100)
})

t.test('a misaligned or missing NAB copy fails with a typed error', async t => {
  t.throws(() => loadNabCorpus('/nonexistent/nab'), { code: 'FERRY_NAB_NOT_FOUND' })
  const rows = ['timestamp,value', '2020-01-01 00:00:00,1', '2020-01-01 00:05:00,2', '2020-01-01 00:10:00,3']
  const dir = t.testdir({
    config: { 'profiles.json': JSON.stringify({ standard: { CostMatrix: standard } }) },
    labels: { 'combined_windows.json': JSON.stringify({ 'c/f.csv': [['2020-01-01 00:05:00.000000', '2020-01-01 00:07:00.000000']] }) },
    data: { c: { 'f.csv': rows.join('\n') } }
  })
  t.throws(() => loadNabCorpus(dir), { code: 'FERRY_NAB_WINDOW_MISALIGNED' })
  try { loadNabCorpus(dir) } catch (err) { t.ok(isFerryError(err), 'a FerryError') }
})

t.test('reproduces the published NAB scoreboard from the shipped raw outputs', { skip: !fs.existsSync(root) && 'no NAB copy' }, async t => {
  const corpus = loadNabCorpus(root)
  t.equal(corpus.files.length, 58)
  t.equal(corpus.windowCount, 116)
  const published = JSON.parse(fs.readFileSync(path.join(root, 'results', 'final_results.json'), 'utf8')) as Record<string, Record<string, number>>
  for (const det of ['numenta', 'windowedGaussian']) {
    const dir = path.join(root, 'reference-detectors', det)
    const outputs = readDetectorResults(dir, det, corpus)
    for (const profile of ['standard', 'reward_low_FP_rate', 'reward_low_FN_rate']) {
      const table = readScoreTable(path.join(dir, `${det}_${profile}_scores.csv`))
      const pubThreshold = [...table.files.values()][0]?.threshold as number
      // 1. At the published threshold, every file's score and counts match NAB's table.
      const atPub = scoreProfile(corpus, outputs, profile, { threshold: pubThreshold })
      let worst = 0
      let countErrors = 0
      for (const f of atPub.files) {
        const row = table.files.get(f.file)
        if (row === undefined) { countErrors++; continue }
        worst = Math.max(worst, Math.abs(row.score - f.score))
        if (row.tp !== f.tp || row.tn !== f.tn || row.fp !== f.fp || row.fn !== f.fn || row.rows !== f.rows) countErrors++
      }
      t.equal(table.files.size, 58)
      t.ok(worst < 1e-8, `${det}/${profile}: per-file scores match NAB's table (worst ${worst})`)
      t.equal(countErrors, 0, `${det}/${profile}: per-file TP/TN/FP/FN match`)
      t.ok(Math.abs(atPub.raw - table.total.score) < 1e-8, `${det}/${profile}: raw total ${atPub.raw}`)
      const pub = (published[det] as Record<string, number>)[profile] as number
      t.equal(atPub.normalized.toFixed(2), pub.toFixed(2), `${det}/${profile}: normalised ${atPub.normalized.toFixed(2)} at the published threshold`)
    }
    // 2. With our own corpus-wide optimisation (NAB's sweep), the standard totals come out too.
    const std = scoreProfile(corpus, outputs, 'standard')
    t.equal(std.normalized.toFixed(2), (published[det] as Record<string, number>).standard?.toFixed(2), `${det}: standard ${std.normalized.toFixed(2)} with the optimised threshold`)
  }
  // The published numenta thresholds come from NAB's earlier hill-climbing optimizer; it finds
  // a local optimum for reward_low_FP_rate that the sweep beats. Replaying it gives 63.12.
  const numenta = readDetectorResults(path.join(root, 'reference-detectors', 'numenta'), 'numenta', corpus)
  const twiddled = scoreProfile(corpus, numenta, 'reward_low_FP_rate', { optimizer: 'twiddle' })
  t.equal(twiddled.normalized.toFixed(2), '63.12')
  const swept = scoreProfile(corpus, numenta, 'reward_low_FP_rate')
  t.ok(swept.raw >= twiddled.raw, 'the sweep never does worse than the hill climber')
})
