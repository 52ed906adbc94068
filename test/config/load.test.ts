import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ConfigError, loadConfigFile, parseConfig } from '../../config/load.js'
import { ConfigWatcher } from '../../config/watch.js'
import { configSchema } from '../../config/schema.js'
import { createRegistry } from '../../lib/metrics.js'
import { waitFor } from '../helpers/net.js'
import { eachSchema } from '../helpers/zod.js'

const VALID = `
sites:
  - name: east
    subnets: [10.1.0.0/16]
gateways:
  - id: gw1
    url: http://127.0.0.1:9001
    site: east
proxy:
  listen:
    port: 8080
`

function problemsOf (fn: () => unknown): ConfigError {
  try { fn() } catch (err) { if (err instanceof ConfigError) return err; throw err }
  throw new Error('expected a ConfigError')
}

t.test('a valid file parses with defaults filled in', async t => {
  const cfg = parseConfig(VALID, 'ferry.yaml')
  t.equal(cfg.proxy.listen.port, 8080)
  t.equal(cfg.proxy.pathPattern, '/{volume}/{block}')
  t.equal(cfg.recorder.halfLifeS, 600)
  t.equal(cfg.gateways[0]?.capacityBytes, 0)
})

t.test('invalid values are reported with file, line, column and key path', async t => {
  const text = VALID.replace('port: 8080', 'port: "eighty"')
  const err = problemsOf(() => parseConfig(text, 'ferry.yaml'))
  t.equal(err.code, 'FERRY_CONFIG_INVALID')
  t.equal(err.problems.length, 1)
  t.match(err.problems[0], { keyPath: 'proxy.listen.port', line: 11 })
  t.match(err.message, /ferry\.yaml:11:\d+: proxy\.listen\.port: Expected number/)
})

t.test('unknown keys, missing keys, cross-references and duplicates are named', async t => {
  const unknown = problemsOf(() => parseConfig(VALID.replace('    port: 8080', '    port: 8080\n    prot: 1'), 'f.yaml'))
  t.match(unknown.problems[0], { keyPath: 'proxy.listen.prot', line: 12 })
  t.match(unknown.message, /Unrecognized key/)

  const missing = problemsOf(() => parseConfig('proxy: {}\n', 'f.yaml'))
  t.match(missing.problems[0], { keyPath: 'gateways' })

  const badSite = problemsOf(() => parseConfig(VALID.replace('site: east', 'site: west'), 'f.yaml'))
  t.match(badSite.problems[0], { keyPath: 'gateways[0].site', line: 8 })
  t.match(badSite.message, /unknown site "west"/)

  const dupGateway = problemsOf(() => parseConfig(VALID + '  - id: gw1\n    url: http://127.0.0.1:9002\n    site: east\n'.replace(/^/, ''), 'f.yaml'))
  t.ok(dupGateway.problems.length >= 1)

  const dupKey = problemsOf(() => parseConfig('gateways: []\ngateways: []\n', 'f.yaml'))
  t.match(dupKey.problems[0], { line: 2 })
  t.match(dupKey.message, /YAML: Map keys must be unique/)

  const badUrl = problemsOf(() => parseConfig(VALID.replace('http://127.0.0.1:9001', 'ftp://x'), 'f.yaml'))
  t.match(badUrl.problems[0], { keyPath: 'gateways[0].url' })

  const badCidr = problemsOf(() => parseConfig(VALID.replace('10.1.0.0/16', '10.1.0.0/33'), 'f.yaml'))
  t.match(badCidr.problems[0], { keyPath: 'sites[0].subnets[0]', line: 4 })
})

t.test('YAML syntax errors and hostile documents are refused cleanly', async t => {
  const syntax = problemsOf(() => parseConfig('gateways:\n  - id: [unclosed\n', 'f.yaml'))
  t.match(syntax.message, /f\.yaml:\d+:\d+: YAML:/)
  // A billion-laughs alias bomb must not expand.
  const bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n'
  t.throws(() => parseConfig(bomb, 'bomb.yaml'))
  t.throws(() => parseConfig('just a string', 'f.yaml'), { code: 'FERRY_CONFIG_INVALID' })
  t.throws(() => parseConfig('- a list', 'f.yaml'), { code: 'FERRY_CONFIG_INVALID' })
  t.throws(() => parseConfig('\u0000\u0001binary', 'f.yaml'), { code: 'FERRY_CONFIG_INVALID' })
})

t.test('loadConfigFile: unreadable and oversized files', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cfg-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  t.throws(() => loadConfigFile(path.join(dir, 'missing.yaml')), { code: 'FERRY_CONFIG_UNREADABLE' })
  const big = path.join(dir, 'big.yaml')
  fs.writeFileSync(big, '#'.repeat(2 * 1024 * 1024))
  t.throws(() => loadConfigFile(big), { code: 'FERRY_CONFIG_INVALID' })
})

t.test('the example config documents a valid file', async t => {
  const cfg = loadConfigFile(path.resolve('config/example.yaml'))
  t.ok(cfg.gateways.length > 0)
})

t.test('ConfigWatcher publishes valid edits and refuses invalid ones, keeping the old config', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-watch-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'ferry.yaml')
  fs.writeFileSync(file, VALID)
  const registry = createRegistry(false)
  const w = new ConfigWatcher({ file, registry, debounceMs: 20 })
  t.teardown(() => w.stop())
  w.start()
  const reloads: number[] = []
  const invalid: string[] = []
  w.on('reload', next => reloads.push(next.proxy.listen.port))
  w.on('invalid', err => invalid.push(err.message))

  fs.writeFileSync(file, VALID.replace('port: 8080', 'port: 8081'))
  await waitFor(() => reloads.length === 1, 'a reload on file change')
  t.equal(w.current.proxy.listen.port, 8081)

  fs.writeFileSync(file, 'gateways: [this is not valid')
  await waitFor(() => invalid.length === 1, 'the invalid edit to be refused')
  t.equal(w.current.proxy.listen.port, 8081, 'old config stays in force')

  // An editor-style replace by rename still triggers.
  fs.writeFileSync(file + '.tmp', VALID.replace('port: 8080', 'port: 8082'))
  fs.renameSync(file + '.tmp', file)
  await waitFor(() => reloads.length === 2, 'a reload after rename')
  t.equal(w.current.proxy.listen.port, 8082)

  t.equal(w.reload('manual'), false, 'no change, no reload')
  const text = await registry.metrics()
  t.match(text, /ferry_config_reloads_total\{result="success"\} 2/)
  t.match(text, /ferry_config_reloads_total\{result="failure"\} 1/)
})

t.test('ConfigWatcher reloads on SIGHUP', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-hup-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'ferry.yaml')
  fs.writeFileSync(file, VALID)
  const w = new ConfigWatcher({ file, sighup: true })
  t.teardown(() => w.stop())
  // Edited before start(), so the file watch never sees it: only the signal can reload it.
  fs.writeFileSync(file, VALID.replace('port: 8080', 'port: 8090'))
  w.start()
  await new Promise(resolve => setTimeout(resolve, 200))
  t.equal(w.current.proxy.listen.port, 8080, 'not reloaded yet')
  process.kill(process.pid, 'SIGHUP')
  await waitFor(() => w.current.proxy.listen.port === 8090, 'SIGHUP reload')
  t.pass('reloaded on SIGHUP')
})

t.test('config/example.yaml names every key of the schema', async t => {
  const text = fs.readFileSync(path.resolve('config/example.yaml'), 'utf8')
  const missing = new Set<string>()
  eachSchema(configSchema, (_node, keyPath) => {
    const key = keyPath.split('.').pop()?.replace(/(\[\]|\{\})+$/, '') ?? ''
    if (key !== '' && !new RegExp(`\\b${key}\\b`).test(text)) missing.add(keyPath)
  })
  t.same([...missing], [], 'every option is documented in the example')
})
