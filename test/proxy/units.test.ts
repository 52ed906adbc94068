import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PathPattern } from '../../proxy/path-pattern.js'
import { ClientAddressResolver } from '../../proxy/client-address.js'
import { AccessRecorder } from '../../proxy/access-recorder.js'
import { SiteMap } from '../../fleet/site-map.js'
import { rendezvousPick, rendezvousRank, rendezvousNode } from '../../lib/rendezvous.js'

t.test('PathPattern reads volume and block and refuses everything else', async t => {
  const p = new PathPattern('/{volume}/{block}')
  t.same(p.match('/vol1/blk-2.bin'), { volume: 'vol1', block: 'blk-2.bin' })
  t.same(p.match('/vol1/blk?x=1'), { volume: 'vol1', block: 'blk' }, 'query ignored')
  t.same(p.match('/v%31/b'), { volume: 'v1', block: 'b' }, 'percent-decoded')
  for (const bad of ['', 'v/b', '/v', '/v/', '//b', '/v/b/', '/v/b/c', '/../b', '/v/..', '/v/%2e%2e', '/v%2fx/b', '/v/%zz', '/.v/b', `/v/${'b'.repeat(129)}`, '/v/b%00']) {
    t.equal(p.match(bad), undefined, `refuses ${JSON.stringify(bad)}`)
  }
  const nested = new PathPattern('/api/{volume}/blocks/{block}')
  t.same(nested.match('/api/v/blocks/b'), { volume: 'v', block: 'b' })
  t.equal(nested.match('/api/v/other/b'), undefined, 'literal segments must match')
  t.equal(nested.match('/v/b'), undefined)
})

t.test('ClientAddressResolver trusts X-Forwarded-For only from trusted proxies, walking from the right', async t => {
  const r = new ClientAddressResolver(['10.0.0.0/8', '2001:db8::/32'])
  t.equal(r.resolve('192.0.2.1', '198.51.100.7'), '192.0.2.1', 'untrusted peer: header ignored')
  t.equal(r.resolve('10.1.1.1', '198.51.100.7'), '198.51.100.7')
  t.equal(r.resolve('10.1.1.1', '6.6.6.6, 198.51.100.7, 10.2.2.2'), '198.51.100.7', 'spoofed left end ignored')
  t.equal(r.resolve('::ffff:10.1.1.1', '198.51.100.7'), '198.51.100.7', 'IPv4-mapped peer')
  t.equal(r.resolve('2001:db8::1', '2001:db9::5'), '2001:db9::5')
  t.equal(r.resolve('10.1.1.1', 'not-an-ip'), '10.1.1.1', 'garbage in the chain: the peer')
  t.equal(r.resolve('10.1.1.1', ['1.1.1.1', '2.2.2.2']), '2.2.2.2', 'repeated headers joined')
  t.equal(new ClientAddressResolver([]).resolve('10.1.1.1', '1.2.3.4'), '10.1.1.1')
})

t.test('SiteMap does longest-prefix match over IPv4 and IPv6', async t => {
  const m = new SiteMap([
    { name: 'wide', subnets: ['10.0.0.0/8', '2001:db8::/32'], edges: [] },
    { name: 'narrow', subnets: ['10.1.0.0/16', '2001:db8:1::/48'], edges: [] },
    { name: 'all', subnets: ['0.0.0.0/0'], edges: [] }
  ])
  t.equal(m.siteOf('10.1.2.3'), 'narrow')
  t.equal(m.siteOf('10.2.2.3'), 'wide')
  t.equal(m.siteOf('192.0.2.1'), 'all')
  t.equal(m.siteOf('::ffff:10.1.0.1'), 'narrow', 'IPv4-mapped')
  t.equal(m.siteOf('2001:db8:1::5'), 'narrow')
  t.equal(m.siteOf('2001:db8:2::5'), 'wide')
  t.equal(m.siteOf('2001:db9::1'), undefined)
  t.equal(m.siteOf('garbage'), undefined)
  t.equal(m.siteOf('::ffff:0:10.0.0.1'), undefined, 'not mapped form')
})

t.test('rendezvous hashing is stable and moves only the keys of a removed node', async t => {
  const nodes = ['a', 'b', 'c', 'd'].map(rendezvousNode)
  const before = new Map<string, string>()
  const counts: Record<string, number> = {}
  for (let i = 0; i < 4000; i++) {
    const k = `vol/blk${i}`
    const n = rendezvousPick(k, nodes) as string
    before.set(k, n)
    counts[n] = (counts[n] ?? 0) + 1
  }
  for (const n of ['a', 'b', 'c', 'd']) t.ok((counts[n] ?? 0) > 800 && (counts[n] ?? 0) < 1200, `${n} gets its share (${counts[n]})`)
  const without = nodes.filter(n => n.id !== 'c')
  let moved = 0
  let wronglyMoved = 0
  for (const [k, n] of before) {
    const m = rendezvousPick(k, without)
    if (n === 'c') moved++
    else if (m !== n) wronglyMoved++
  }
  t.equal(wronglyMoved, 0, 'keys of the other nodes stay put')
  t.equal(moved, counts.c, 'only c\'s keys moved')
  t.same(rendezvousRank('k', nodes)[0], rendezvousPick('k', nodes), 'rank and pick agree')
})

t.test('AccessRecorder: decayed scores per site, bursts, bounded memory, deltas', async t => {
  const t0 = 1_000_000
  const r = new AccessRecorder({ halfLifeS: 10, burstHalfLifeS: 1, burstFactor: 4, maxBlocks: 1000, sites: ['x', 'y'] }, t0)
  r.recordAt('v/b', 'v', 'b', 'x', false, t0)
  r.recordAt('v/b', 'v', 'b', 'y', true, t0)
  r.recordAt('v/b', 'v', 'b', undefined, false, t0)
  const now = r.get('v', 'b', t0)!
  t.ok(Math.abs(now.score - 3) < 1e-9)
  t.same(Object.keys(now.sites).sort(), ['', 'x', 'y'])
  t.equal(now.reads, 2)
  t.equal(now.writes, 1)
  const later = r.get('v', 'b', t0 + 10_000)!
  t.ok(Math.abs(later.score - 1.5) < 1e-9, 'halves after one half-life')
  t.ok(Math.abs((later.sites.x ?? 0) - 0.5) < 1e-9)

  // A burst: 50 accesses in one second after a quiet history.
  t.notOk(later.bursting)
  for (let i = 0; i < 50; i++) r.recordAt('v/b', 'v', 'b', 'x', false, t0 + 60_000 + i * 20)
  const hot = r.get('v', 'b', t0 + 61_000)!
  t.ok(hot.bursting, 'bursting')
  t.ok(hot.burst > 4)
  t.equal(r.bursts, 1)

  // Steady, slow access is not a burst.
  for (let i = 0; i < 100; i++) r.recordAt('v/steady', 'v', 'steady', 'x', false, t0 + i * 5000)
  t.notOk(r.get('v', 'steady', t0 + 500_000)!.bursting)

  const deltas = r.drainDeltas()
  const forB = deltas.filter(d => d.block === 'b')
  t.same(forB.map(d => [d.site, d.reads, d.writes]).sort(), [['', 1, 0], ['x', 51, 0], ['y', 0, 1]])
  t.same(r.drainDeltas(), [], 'drained')
})

t.test('AccessRecorder stays within maxBlocks, evicts the coldest and counts them', async t => {
  const t0 = 5_000_000
  const r = new AccessRecorder({ halfLifeS: 60, burstHalfLifeS: 5, burstFactor: 4, maxBlocks: 1000, sites: [] }, t0)
  for (let i = 0; i < 10; i++) r.recordAt('v/hot', 'v', 'hot', undefined, false, t0 + i)
  for (let i = 0; i < 5000; i++) r.recordAt(`v/c${i}`, 'v', `c${i}`, undefined, false, t0 + 100 + i)
  t.ok(r.size <= 1000, `size ${r.size} within bound`)
  t.ok(r.evicted >= 4000, `evictions counted (${r.evicted})`)
  t.ok(r.get('v', 'hot', t0 + 6000) !== undefined, 'the hot block survived')
})

t.test('AccessRecorder rescales forward-decay weights without changing scores', async t => {
  const t0 = 1_000
  const r = new AccessRecorder({ halfLifeS: 600, burstHalfLifeS: 0.01, burstFactor: 4, maxBlocks: 10, sites: [] }, t0)
  r.recordAt('v/b', 'v', 'b', undefined, false, t0)
  // 0.01 s burst half-life: 2^400 is passed after 4 s, forcing a rescale.
  r.recordAt('v/b', 'v', 'b', undefined, false, t0 + 600_000)
  const s = r.get('v', 'b', t0 + 600_000)!
  t.ok(Math.abs(s.score - 1.5) < 1e-9, `score ${s.score}`)
  t.ok(Number.isFinite(s.burst))
})

t.test('AccessRecorder writes a JSON-lines access log', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-rec-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'a.jsonl')
  const r = new AccessRecorder({ halfLifeS: 60, burstHalfLifeS: 5, burstFactor: 4, maxBlocks: 10, sites: ['x'], accessLog: file })
  r.logAccess({ volume: 'v', block: 'b', client: '10.0.0.1', site: 'x', write: true, at: Date.UTC(2026, 0, 1) }, 201, 'gw1', 1.234)
  await r.close()
  t.same(JSON.parse(fs.readFileSync(file, 'utf8')), { t: '2026-01-01T00:00:00.000Z', client: '10.0.0.1', user: null, site: 'x', volume: 'v', block: 'b', op: 'write', status: 201, gateway: 'gw1', ms: 1.23 })
})
