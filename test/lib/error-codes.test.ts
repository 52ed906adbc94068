import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { FERRY_ERRORS, GATEWAY_ERRORS } from '../../lib/error-codes.js'

// In the manner of Fastify's test/internals/errors.test.js: the catalogue, the README's error
// table and the source say the same thing, so a code cannot be added, renamed or dropped in one
// place only.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const ferry = FERRY_ERRORS as Record<string, { status: number, meaning: string }>
const gateway = GATEWAY_ERRORS as Record<string, { status: number, meaning: string }>
const CATALOGUE = 'lib/error-codes.ts'

/** Every file of ferry itself: code, docs and config examples; not tests, builds or dependencies. */
function sourceFiles (dir = root, out: string[] = []): string[] {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const rel = path.relative(root, path.join(dir, entry.name))
    if (entry.name.startsWith('.') || ['node_modules', 'dist', 'test', 'bench/results'].includes(rel)) continue
    if (entry.isDirectory()) sourceFiles(path.join(dir, entry.name), out)
    else if (/\.(ts|md|yaml)$/.test(entry.name)) out.push(rel)
  }
  return out
}

const files = sourceFiles().map(rel => ({ rel, text: fs.readFileSync(path.join(root, rel), 'utf8') }))
const code = files.filter(f => f.rel.endsWith('.ts') && f.rel !== CATALOGUE)

t.test('the catalogue: FERRY_-prefixed codes with a status and a one-line meaning', async t => {
  for (const [name, e] of Object.entries(ferry)) {
    t.match(name, /^FERRY_[A-Z0-9_]+[A-Z0-9]$/, name)
    t.ok(Number.isInteger(e.status) && e.status >= 400 && e.status <= 599, `${name}: status ${e.status} is an error status`)
    t.ok(e.meaning.length > 0 && !e.meaning.includes('\n'), `${name}: one line of meaning`)
  }
  for (const [name, e] of Object.entries(gateway)) {
    t.notOk(name.startsWith('FERRY_'), `${name}: the gateway's own codes have no ferry prefix`)
    t.ok(e.status >= 400 && e.status <= 599, `${name}: status ${e.status}`)
    t.notOk(name in ferry, `${name} is not also one of ferry's codes`)
  }
})

t.test('every code in the catalogue is in the README\'s error table, with its status, and nothing else is', async t => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')
  const start = readme.indexOf('\n## Errors\n')
  t.ok(start >= 0, 'the README has an Errors section')
  const end = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, end < 0 ? undefined : end)
  const rows = new Map<string, number>()
  for (const m of section.matchAll(/^\| `([A-Z0-9_]+)` \| (\d{3}) \|/gm)) {
    t.notOk(rows.has(m[1]!), `${m[1]} is listed once`)
    rows.set(m[1]!, Number(m[2]))
  }
  for (const [name, e] of [...Object.entries(ferry), ...Object.entries(gateway)]) {
    t.equal(rows.get(name), e.status, `${name} (${e.status}) is in the README's table`)
  }
  for (const name of rows.keys()) t.ok(name in ferry || name in gateway, `the README's ${name} is in the catalogue`)
})

t.test('every FERRY_ code the source names is in the catalogue', async t => {
  // Not codes: names read from the environment (FERRY_ADMIN_TOKEN; `passwordEnv:
  // FERRY_REDIS_PASSWORD` in a config) and constants of the source (const FERRY_JS = …).
  const notCodes = new Set<string>()
  for (const f of files) {
    for (const m of f.text.matchAll(/(?:env(?:\.|\[')|[a-z]Env: |(?:const|let) )(FERRY_[A-Z0-9_]+)/g)) notCodes.add(m[1]!)
  }
  t.ok(notCodes.has('FERRY_ADMIN_TOKEN'), 'environment variables are recognised as such')

  const unknown: string[] = []
  let seen = 0
  for (const f of files) {
    if (f.rel === CATALOGUE) continue
    // A trailing _ is a prefix (`FERRY_SCENARIO_*`, startsWith('FERRY_GATEWAY_')), not a code.
    for (const m of f.text.matchAll(/\bFERRY_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])/g)) {
      if (notCodes.has(m[0])) continue
      seen++
      if (!(m[0] in ferry)) unknown.push(`${f.rel}: ${m[0]}`)
    }
  }
  t.ok(seen > 100, `${seen} mentions of codes checked`)
  t.same(unknown, [], 'no code outside the catalogue')
})

t.test('every code in the catalogue is produced somewhere', async t => {
  const all = code.map(f => f.text).join('\n')
  for (const name of Object.keys(ferry)) t.match(all, new RegExp(`'${name}'|${name}:`), `${name} is used`)
  const gatewaySource = code.filter(f => f.rel.startsWith('gateway/')).map(f => f.text).join('\n')
  for (const name of Object.keys(gateway)) t.match(gatewaySource, `'${name}'`, `the gateway's ${name} is used`)
})

t.test('where the source gives a code and a status together, the status is the catalogue\'s', async t => {
  const mismatches: string[] = []
  let checked = 0
  const check = (rel: string, name: string, status: number): void => {
    const e = ferry[name] ?? (rel.startsWith('gateway/') ? gateway[name] : undefined)
    if (e === undefined) return
    checked++
    if (e.status !== status) mismatches.push(`${rel}: ${name} with ${status}, the catalogue says ${e.status}`)
  }
  for (const f of code) {
    for (const line of f.text.split('\n')) {
      // sendError(res, 503, 'CODE', …), refuse(req, res, 405, 'CODE', …), reject(…, 404, 'CODE', …)
      for (const m of line.matchAll(/\b([45]\d\d), '([A-Z][A-Z0-9_]+)'/g)) check(f.rel, m[2]!, Number(m[1]))
      // new FerryError('CODE', message, 400, …), plannerError('CODE', message, 409)
      for (const m of line.matchAll(/(?:FerryError|plannerError|ProxyAnswer)\('([A-Z][A-Z0-9_]+)', .*?, ([45]\d\d)[,)]/g)) check(f.rel, m[1]!, Number(m[2]))
    }
  }
  t.ok(checked > 100, `${checked} code and status pairs checked`)
  t.same(mismatches, [], 'every status given with a code is the catalogue\'s')
})
