import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { trainPlacementCommand } from '../../../planner/partition/command.js'
import { NgramHashEmbedder } from '../../../planner/partition/embedder.js'
import { PlacementModel } from '../../../planner/partition/model.js'
import { DEFAULT_SITE_RULES, parseSiteRules, readAccessLog, readTsvTrace, siteNames, siteOfHost, urlBlock } from '../../../planner/partition/trace.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-train-placement-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

function io (): { io: { stdout: { write: (s: string) => void }, stderr: { write: (s: string) => void } }, out: () => string, err: () => string } {
  let o = ''
  let e = ''
  return { io: { stdout: { write: s => { o += s } }, stderr: { write: s => { e += s } } }, out: () => o, err: () => e }
}

t.test('site rules: country codes, the Asian list and a stable split of the rest', async t => {
  t.equal(siteOfHost('www.cern.ch', DEFAULT_SITE_RULES), 'europe')
  t.equal(siteOfHost('proxy.bt.CO.UK', DEFAULT_SITE_RULES), 'europe', 'case-insensitive')
  t.equal(siteOfHost('ns.ntt.jp', DEFAULT_SITE_RULES), 'asia')
  t.equal(siteOfHost('uq.edu.au', DEFAULT_SITE_RULES), 'asia')
  const na = new Set<string>()
  for (const host of ['a.compuserve.com', 'b.berkeley.edu', '128.159.1.2', 'c.nasa.gov', 'd.aol.com', 'e.mit.edu', 'f.org', '192.0.2.7']) {
    const s = siteOfHost(host, DEFAULT_SITE_RULES)
    t.equal(s, siteOfHost(host, DEFAULT_SITE_RULES), 'stable')
    na.add(s)
  }
  t.same([...na].sort(), ['na-east', 'na-west'], 'other hosts are split between the two')
  t.same(siteNames(DEFAULT_SITE_RULES), ['asia', 'europe', 'na-east', 'na-west'])
  const custom = parseSiteRules({ tld: { br: 'sa' }, otherwise: ['x'] })
  t.equal(siteOfHost('a.br', custom), 'sa')
  t.equal(siteOfHost('a.de', custom), 'x')
  t.throws(() => parseSiteRules({ tld: {}, otherwise: [] }), { code: 'FERRY_PLACEMENT_BAD_SITES' })
  t.throws(() => parseSiteRules({ tld: { '.de': 'eu' }, otherwise: ['x'] }), { code: 'FERRY_PLACEMENT_BAD_SITES' })
})

t.test('URLs become blocks, directories volumes', async t => {
  t.same(urlBlock('/shuttle/missions/sts-70/images/logo.gif'), { volume: '/shuttle/missions/sts-70/images/', block: '/shuttle/missions/sts-70/images/logo.gif', path: '/shuttle/missions/sts-70/images/logo.gif', name: 'logo.gif' })
  t.same(urlBlock('/cgi-bin/imagemap/countdown?99,176#top'), { volume: '/cgi-bin/imagemap/', block: '/cgi-bin/imagemap/countdown?99,176', path: '/cgi-bin/imagemap/countdown', name: 'countdown' })
  t.equal(urlBlock('/').volume, '/')
  t.equal(urlBlock('/index.html').volume, '/')
  t.equal(urlBlock('/history/').name, 'index')
})

function writeTrace (file: string): void {
  const rows = ['host\tlogname\ttime\tmethod\turl\tresponse\tbytes\treferer\tuseragent']
  let time = 807256800
  for (let i = 0; i < 400; i++) {
    // Europe reads /archive/, Asia reads /catalog/, North America the rest.
    const which = i % 4
    const host = which === 0 ? `h${i % 7}.uni.de` : which === 1 ? `h${i % 5}.ac.jp` : `h${i % 11}.example.com`
    const url = which === 0 ? `/archive/y${i % 3}/doc-${i % 13}.html` : which === 1 ? `/catalog/c${i % 3}/item-${i % 17}.gif` : `/media/m${i % 2}/clip-${i % 19}.mpg`
    rows.push(`${host}\t-\t${time++}\tGET\t${url}\t200\t${i % 9 === 0 ? '-' : 1000 + i}\t\t`)
  }
  rows.push('\t-\tbroken row')
  fs.writeFileSync(file, rows.join('\n') + '\n')
}

t.test('readTsvTrace and readAccessLog', async t => {
  const file = path.join(dir, 'trace.tsv')
  writeTrace(file)
  const { requests, skipped } = readTsvTrace(file)
  t.equal(requests.length, 400)
  t.equal(skipped, 1)
  t.same(requests[0], { client: 'h0.uni.de', at: 807256800_000, method: 'GET', url: '/archive/y0/doc-0.html', status: 200, bytes: 0 })
  t.equal(requests[1]!.bytes, 1001)
  fs.writeFileSync(path.join(dir, 'bad.tsv'), 'a\tb\n1\t2\n')
  t.throws(() => readTsvTrace(path.join(dir, 'bad.tsv')), { code: 'FERRY_PLACEMENT_TRACE_UNREADABLE' })
  t.throws(() => readTsvTrace(path.join(dir, 'missing.tsv')), { code: 'FERRY_PLACEMENT_TRACE_UNREADABLE' })

  const log = path.join(dir, 'access.jsonl')
  fs.writeFileSync(log, [
    JSON.stringify({ t: '2024-01-01T00:00:00.000Z', client: '10.0.0.1', site: 'europe', volume: 'v', block: 'b', op: 'write', status: 201 }),
    '{"t": "2024-01-01T00:00:01.000Z", "volume": "v"',
    JSON.stringify({ t: '2024-01-01T00:00:02.000Z', client: '10.0.0.2', site: null, volume: 'v', block: 'c', op: 'read' })
  ].join('\n'))
  const l = readAccessLog(log)
  t.equal(l.skipped, 1, 'a line cut short is skipped')
  t.same(l.accesses.map(a => [a.block, a.site, a.write]), [['b', 'europe', true], ['c', '', false]])
})

t.test('ferry train-placement: trains from a trace and writes a loadable model', async t => {
  const trace = path.join(dir, 'trace.tsv')
  writeTrace(trace)
  const out = path.join(dir, 'model.json')
  const c = io()
  t.equal(await trainPlacementCommand(['--trace', trace, '--out', out, '--dim', '128', '--k', '4'], c.io), 0, c.err())
  t.match(c.out(), /400 requests/)
  t.match(c.out(), /trained on \d+ blocks over 4 sites/)
  t.match(c.out(), /leave-one-out/)
  const model = PlacementModel.fromJSON(JSON.parse(fs.readFileSync(out, 'utf8')), new NgramHashEmbedder({ dim: 128 }))
  t.equal(model.params.k, 4)
  const p = await model.predict({ volume: '/archive/y9/', block: '/archive/y9/doc-1.html', path: '/archive/y9/doc-1.html' })
  t.equal(Object.entries(p).sort((a, b) => b[1] - a[1])[0]![0], 'europe', 'a new European directory is predicted to europe')

  // Site rules from a file, an access log and metadata joined by block.
  const rules = path.join(dir, 'sites.json')
  fs.writeFileSync(rules, JSON.stringify({ tld: { de: 'eu', jp: 'ap' }, otherwise: ['us'] }))
  const log = path.join(dir, 'access.jsonl')
  fs.writeFileSync(log, Array.from({ length: 30 }, (_, i) => JSON.stringify({ t: 1_700_000_000_000 + i, client: 'x', site: 'eu', volume: 'vol-a', block: `b${i % 3}`, op: 'read' })).join('\n'))
  const meta = path.join(dir, 'meta.jsonl')
  fs.writeFileSync(meta, JSON.stringify({ volume: 'vol-a', block: 'b1', path: '/reports/b1.pdf', tags: ['finance'] }) + '\n')
  const c2 = io()
  t.equal(await trainPlacementCommand(['--trace', trace, '--sites', rules, '--access-log', log, '--meta', meta, '--out', out], c2.io), 0, c2.err())
  t.match(c2.out(), /30 accesses/)
  t.match(c2.out(), /metadata joined to 1 blocks/)
  const m2 = PlacementModel.fromJSON(JSON.parse(fs.readFileSync(out, 'utf8')), new NgramHashEmbedder())
  t.same(m2.sites, ['ap', 'eu', 'us'])
})

t.test('ferry train-placement: usage and input errors', async t => {
  const trace = path.join(dir, 'trace.tsv')
  writeTrace(trace)
  const cases: Array<[string[], number, RegExp]> = [
    [[], 2, /--out FILE is required/],
    [['--out', path.join(dir, 'x.json')], 2, /give a history/],
    [['--trace', trace, '--out', path.join(dir, 'x.json'), '--embedder', 'magic'], 2, /unknown embedder/],
    [['--trace', trace, '--out', path.join(dir, 'x.json'), '--embedder', 'transformers'], 2, /needs --model/],
    [['--trace', trace, '--out', path.join(dir, 'x.json'), '--k', '0'], 2, /--k must be a positive integer/],
    [['--trace', trace, '--out', path.join(dir, 'x.json'), '--bogus'], 2, /Unknown option/],
    [['--trace', path.join(dir, 'nope.tsv'), '--out', path.join(dir, 'x.json')], 1, /FERRY_PLACEMENT_TRACE_UNREADABLE/],
    [['--trace', trace, '--out', path.join(dir, 'x.json'), '--embedder', 'transformers', '--model', path.join(dir, 'no-model')], 1, /FERRY_PLACEMENT_EMBEDDER_UNAVAILABLE/]
  ]
  for (const [argv, code, message] of cases) {
    const c = io()
    t.equal(await trainPlacementCommand(argv, c.io), code, argv.join(' '))
    t.match(c.err(), message)
  }
  const help = io()
  t.equal(await trainPlacementCommand(['--help'], help.io), 0)
  t.match(help.out(), /usage: ferry train-placement/)
})
