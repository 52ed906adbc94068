import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ConfigError, loadConfigFile, parseConfig } from '../../config/load.js'
import { fuzzCase, fuzzSeed, type FuzzCase } from './fuzz-inputs.js'

// Thousands of generated configs (see fuzz-inputs.ts). Each must either load or be refused with
// a ConfigError (FERRY_CONFIG_INVALID) whose every line is located: never another exception,
// never a hang. Seeded; a failure prints its seed and case, and replays alone:
//   FERRY_FUZZ_SEED=<seed> FERRY_FUZZ_CASE=<case> npx tap test/config/fuzz.test.ts
// A longer hunt: FERRY_FUZZ_CASES=50000 FERRY_FUZZ_BUDGET_MS=1e9 npx tap --timeout 3600 test/config/fuzz.test.ts

const CASES = Number(process.env.FERRY_FUZZ_CASES ?? 3000)
/**
 * The cases take roughly ten seconds on an idle machine and several times that on one running the
 * suite in parallel: past this budget no new case starts (each one replays alone by number).
 */
const BUDGET_MS = Number(process.env.FERRY_FUZZ_BUDGET_MS ?? 30_000)
/** A hang, not a slow case: the slowest (a 1 MiB file) take a second, a few on a loaded machine. */
const SLOW_MS = 15_000

/** Loads `c` (through the file loader for bytes and for some strings) and says what, if anything, was wrong. */
function judge (c: FuzzCase, dir: string): { outcome: 'loaded' | 'refused', ms: number, wrong?: string } {
  const file = path.join(dir, 'fuzz.yaml')
  const viaFile = typeof c.input !== 'string' || c.input.length % 4 === 0
  const text = typeof c.input === 'string' ? c.input : c.input.toString('utf8')
  if (viaFile) fs.writeFileSync(file, c.input)
  const started = performance.now()
  let outcome: 'loaded' | 'refused' = 'loaded'
  let wrong: string | undefined
  try {
    const config = viaFile ? loadConfigFile(file) : parseConfig(text, file)
    // The watcher compares configs as JSON: a loaded config must serialise (no cycles, no BigInt).
    JSON.stringify(config)
  } catch (err) {
    outcome = 'refused'
    wrong = problemWith(err, file, text)
  }
  const ms = performance.now() - started
  if (wrong === undefined && ms > SLOW_MS) wrong = `took ${ms.toFixed(0)} ms`
  return { outcome, ms, ...(wrong !== undefined ? { wrong } : {}) }
}

function problemWith (err: unknown, file: string, text: string): string | undefined {
  if (!(err instanceof ConfigError)) return `threw ${(err as Error)?.constructor?.name ?? typeof err}: ${(err as Error)?.stack ?? String(err)}`
  if (err.code !== 'FERRY_CONFIG_INVALID') return `code ${err.code}`
  if (err.problems.length === 0) return 'no problems listed'
  const [head, ...lines] = err.message.split('\n')
  if (head !== `invalid config ${file}:`) return `message starts ${JSON.stringify(head?.slice(0, 100))}`
  const lineCount = text.split(/\r\n|\r|\n/).length
  for (const line of lines) {
    if (/^ {2}… and \d+ more problems?$/.test(line)) continue
    const m = /^ {2}(.+?):(\d+):(\d+): /.exec(line)
    if (m === null || m[1] !== file) return `unlocated line ${JSON.stringify(line.slice(0, 200))}`
    if (Number(m[2]) < 1 || Number(m[2]) > lineCount + 1 || Number(m[3]) < 1) return `position out of range: ${line.slice(0, 200)}`
  }
  if (err.message.length > 100_000) return `message of ${err.message.length} characters`
  return undefined
}

t.test('generated configs load or are refused with located problems', async t => {
  const seed = fuzzSeed()
  const only = process.env.FERRY_FUZZ_CASE
  t.comment(`seed ${seed}`)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-fuzz-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const counts = new Map<string, { loaded: number, refused: number }>()
  const failures: string[] = []
  let slowest = { ms: 0, kind: '' }
  const started = performance.now()
  let ran = 0
  for (let i = only !== undefined ? Number(only) : 0; i < (only !== undefined ? Number(only) + 1 : CASES); i++) {
    if (performance.now() - started > BUDGET_MS) break
    ran++
    const c = fuzzCase(seed, i)
    const { outcome, ms, wrong } = judge(c, dir)
    const family = c.kind.split(':')[0] ?? c.kind
    const n = counts.get(family) ?? { loaded: 0, refused: 0 }
    n[outcome]++
    counts.set(family, n)
    if (ms > slowest.ms) slowest = { ms, kind: c.kind }
    if (wrong !== undefined) {
      const saved = path.join(os.tmpdir(), `ferry-fuzz-${seed}-${i}.yaml`)
      fs.writeFileSync(saved, c.input)
      failures.push(`case ${i} (${c.kind}, input in ${saved}): ${wrong}\n  replay: FERRY_FUZZ_SEED=${seed} FERRY_FUZZ_CASE=${i} npx tap test/config/fuzz.test.ts`)
      if (failures.length >= 5) break
    }
  }
  t.comment(`${ran} cases in ${((performance.now() - started) / 1000).toFixed(1)} s${ran < CASES && only === undefined && failures.length === 0 ? ` (the budget of ${BUDGET_MS} ms ran out)` : ''}; slowest ${slowest.ms.toFixed(0)} ms (${slowest.kind})`)
  const loaded = [...counts.values()].reduce((a, n) => a + n.loaded, 0)
  t.comment(`loaded/refused by kind: ${[...counts].map(([k, n]) => `${k} ${n.loaded}/${n.refused}`).join(', ')}`)
  t.same(failures, [], `seed ${seed}: every case loaded or was refused with FERRY_CONFIG_INVALID and located problems`)
  if (only === undefined) {
    // Guards the generator: fuzzing that only ever produced junk would test the YAML parser alone.
    t.ok(loaded > ran / 50, `some mutations still load (${loaded})`)
    t.ok(counts.size >= 20, `${counts.size} kinds of input`)
  }
})
