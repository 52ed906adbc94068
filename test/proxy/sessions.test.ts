import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { blockKey } from '../../lib/ids.js'
import type { StateConfigInput } from '../../state/config.js'
import { createStore, waitForReady } from '../../state/factory.js'
import type { StateStore } from '../../state/types.js'
import { startProxy, testConfig, type ProxyUnderTest, collectEscapes, proxyOnState } from '../helpers/ferry.js'
import { startGateways, type Gateways } from '../helpers/gateway.js'
import { waitFor } from '../helpers/net.js'
import { REDIS_CLI, startRedis } from '../helpers/redis.js'

/**
 * Sticky sessions over a real Redis, with two proxies (each its own FerryNode and connections):
 * a session started on one proxy continues on the other and on a restarted one, because the
 * binding volume → gateway lives in the store; an ejected gateway or a moved block rebinds the
 * session without losing its other bindings or its state; and a session reads its own write after
 * the block moved under it.
 *
 * New blocks are chosen so that their hash placement is NOT the session's gateway: if a proxy
 * ignored the binding, the data would visibly land elsewhere.
 */

const escaped = collectEscapes(t)

const GATEWAYS = ['gw1', 'gw2', 'gw3']

async function proxyOn (t: Test, gws: Gateways, state: StateConfigInput): Promise<ProxyUnderTest> {
  return await proxyOnState(t, gws.urls, state)
}

/** A block of `volume` whose hash placement (among the healthy gateways of `p`) is none of `avoid`. */
function newBlock (p: ProxyUnderTest, volume: string, prefix: string, avoid: readonly string[]): string {
  for (let i = 0; ; i++) {
    const block = `${prefix}${i}`
    const g = p.node.proxy?.routes.hashed(blockKey(volume, block))
    if (g !== undefined && !avoid.includes(g.id)) return block
  }
}

const urlOf = (gws: Gateways, id: string): string => gws.urls[GATEWAYS.indexOf(id)] as string

async function onGateway (gws: Gateways, id: string, path: string): Promise<{ status: number, body: string }> {
  const r = await request(`${urlOf(gws, id)}${path}`)
  return { status: r.statusCode, body: await r.body.text() }
}

class Client {
  cookie: string | undefined
  setCookies = 0
  private headers (): Record<string, string> {
    return this.cookie === undefined ? {} : { cookie: this.cookie }
  }

  private remember (h: Record<string, string | string[] | undefined>): void {
    const set = h['set-cookie']
    if (set === undefined) return
    this.setCookies++
    const first = (Array.isArray(set) ? set[0] : set) as string
    this.cookie = first.split(';')[0]
  }

  async put (p: ProxyUnderTest, path: string, body: string): Promise<number> {
    const r = await request(`${p.url}${path}`, { method: 'PUT', body, headers: this.headers() })
    this.remember(r.headers)
    await r.body.dump()
    return r.statusCode
  }

  async get (p: ProxyUnderTest, path: string): Promise<{ status: number, body: string }> {
    const r = await request(`${p.url}${path}`, { headers: this.headers() })
    this.remember(r.headers)
    return { status: r.statusCode, body: await r.body.text() }
  }

  get id (): string {
    if (this.cookie === undefined) throw new Error('no session yet')
    return this.cookie.slice(this.cookie.indexOf('=') + 1)
  }
}

async function bindingIs (store: StateStore, id: string, volume: string, gateway: string): Promise<void> {
  await waitFor(async () => (await store.getSession(id))?.bindings[volume] === gateway, `the session's binding of ${volume} to become ${gateway}`)
}

t.test('sessions continue across proxies, a restart, an ejection and a move', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const state: StateConfigInput = { backend: 'redis', url: redis.url, keyPrefix: 'sess:' }
  let a = await proxyOn(t, gws, state)
  const b = await proxyOn(t, gws, state)
  const planner = createStore(state)
  t.teardown(() => planner.close())
  t.ok(await waitForReady(planner, 10_000))
  const client = new Client()
  const outer = t

  // The first request has no session: the proxy hands out a cookie. The client then writes a new
  // block of V with it, which binds V to the gateway that block was placed on.
  t.equal((await client.get(a, '/other/probe')).status, 404)
  t.equal(client.setCookies, 1, 'A handed out a session cookie')
  t.equal(await client.put(a, '/V/first', 'one'), 201, 'first write through A')
  const id = client.id
  t.match(id, /^[A-Za-z0-9_-]{16,128}$/, 'a well-formed session id')
  const G = (await planner.getLocation('V', 'first'))?.gateway as string
  t.ok(GATEWAYS.includes(G), `the block was placed on ${G}`)
  await bindingIs(planner, id, 'V', G)

  await t.test('across proxies: B reads the block and places the next new block of V on G', async t => {
    t.same(await client.get(b, '/V/first'), { status: 200, body: 'one' }, 'B reads it')
    const second = newBlock(b, 'V', 'second', [G])
    t.equal(await client.put(b, `/V/${second}`, 'two'), 201, `B writes ${second} (hash placement elsewhere)`)
    t.equal((await planner.getLocation('V', second))?.gateway, G, 'recorded on G')
    t.same(await onGateway(gws, G, `/V/${second}`), { status: 200, body: 'two' }, 'and it is on G')
    t.equal(client.setCookies, 1, 'B continued the session rather than starting another')
  })

  await t.test('across a restart of A: the session still binds V to G', async t => {
    await a.stop()
    a = await proxyOn(outer, gws, state) // lives until the end of the outer test
    const third = newBlock(a, 'V', 'third', [G])
    t.equal(await client.put(a, `/V/${third}`, 'three'), 201, `the new A writes ${third}`)
    t.same(await onGateway(gws, G, `/V/${third}`), { status: 200, body: 'three' }, 'on G')
    t.same(await client.get(a, '/V/first'), { status: 200, body: 'one' })
    t.equal(client.setCookies, 1, 'same session')
  })

  // A second volume, bound to another gateway, and some session state: an ejection of G must
  // leave both alone.
  let W = ''
  let G2 = ''
  await t.test('a second volume bound elsewhere, and session state', async t => {
    const w0 = newBlock(a, 'W', 'w', [G])
    G2 = a.node.proxy?.routes.hashed(blockKey('W', w0))?.id as string
    t.equal(await client.put(a, `/W/${w0}`, 'w'), 201)
    W = 'W'
    await bindingIs(planner, id, W, G2)
    const s = await planner.getSession(id)
    await planner.putSession(id, { bindings: s?.bindings ?? {}, state: { user: 'alice', cart: [1, 2] } }, 60_000)
    t.match((await planner.getSession(id))?.bindings, { V: G, W: G2 })
  })

  let H = ''
  await t.test('G ejected: the session is rebound, keeps its other binding and its state', async t => {
    const g = gws.gateways[GATEWAYS.indexOf(G)]!
    await g.kill()
    await waitFor(() => a.node.proxy?.gateways.isHealthy(G) === false && b.node.proxy?.gateways.isHealthy(G) === false,
      'both proxies to eject G', 10_000)
    const fourth = newBlock(b, 'V', 'fourth', [])
    t.equal(await client.put(b, `/V/${fourth}`, 'four'), 201, `a new block of V through B (${fourth})`)
    H = (await planner.getLocation('V', fourth))?.gateway as string
    t.not(H, G, `placed on a live gateway (${H})`)
    t.same(await onGateway(gws, H, `/V/${fourth}`), { status: 200, body: 'four' })
    await bindingIs(planner, id, 'V', H)
    const s = await planner.getSession(id)
    t.equal(s?.bindings[W], G2, 'the other volume\'s binding is unchanged')
    t.same(s?.state, { user: 'alice', cart: [1, 2] }, 'the session state is kept')

    // New data of V follows the new binding.
    const fifth = newBlock(b, 'V', 'fifth', [H])
    t.equal(await client.put(b, `/V/${fifth}`, 'five'), 201)
    t.same(await onGateway(gws, H, `/V/${fifth}`), { status: 200, body: 'five' }, `${fifth} placed on ${H} too`)
    if (G2 !== G) {
      // And W still goes to G2 (while it is up).
      const w1 = newBlock(a, W, 'w1-', [G2])
      t.equal(await client.put(a, `/${W}/${w1}`, 'w1'), 201)
      t.same(await onGateway(gws, G2, `/${W}/${w1}`), { status: 200, body: 'w1' }, 'W still follows its binding')
    }
  })

  await t.test('the session reads its own write after the block moves', async t => {
    const X = 'moving'
    const [K] = GATEWAYS.filter(g => g !== G && g !== H) as [string]
    t.equal(await client.put(b, `/V/${X}`, 'before the move'), 201)
    const loc = await planner.getLocation('V', X)
    t.equal(loc?.gateway, H, 'written on the session\'s gateway')

    // Planner, by hand, as a membership change: K joins, is copied to, in sync; H leaves.
    const joined = await planner.casLocation('V', X, loc!.epoch, { gateway: H, members: [H, K], inSync: [H] }, { reason: 'test-move' })
    t.ok(joined.ok, 'K joined')
    const copy = await request(`${urlOf(gws, H)}/V/${X}`)
    const put = await request(`${urlOf(gws, K)}/V/${X}`, { method: 'PUT', body: await copy.body.text() })
    await put.body.dump()
    const synced = await planner.casLocation('V', X, joined.ok ? joined.location.epoch : 0, { gateway: H, members: [H, K], inSync: [H, K] }, { reason: 'test-move' })
    t.ok(synced.ok, 'K in sync')
    const left = await planner.casLocation('V', X, synced.ok ? synced.location.epoch : 0, { gateway: K, members: [K, H], inSync: [K] }, { reason: 'test-move' })
    t.ok(left.ok, 'H left the in-sync set (a member for the grace period)')
    const leftEpoch = left.ok ? left.location.epoch : 0
    await waitFor(() => b.node.proxy?.sync?.cache.get('V', X)?.epoch === leftEpoch, 'B to see the move')

    // The session writes again through B: never held, sent to K (and to H, still a member).
    const w = await client.put(b, `/V/${X}`, 'after the move')
    t.equal(w, 204, 'the write was acknowledged at once (204: it overwrote the copy on K)')
    t.same(await onGateway(gws, K, `/V/${X}`), { status: 200, body: 'after the move' }, 'on the new location')
    const removed = await planner.casLocation('V', X, (await planner.getLocation('V', X))!.epoch, { gateway: K, members: [K], inSync: [K] }, { reason: 'test-move' })
    t.ok(removed.ok, 'H removed from the set')

    // The other proxy, once it has the move, serves the session its own write.
    await waitFor(() => a.node.proxy?.sync?.cache.get('V', X)?.gateway === K, 'A to see the move')
    t.same(await client.get(a, `/V/${X}`), { status: 200, body: 'after the move' }, 'A reads the session\'s write')
    await bindingIs(planner, id, 'V', K)
    const s = await planner.getSession(id)
    t.equal(s?.bindings[W], G2, 'W still bound to its gateway')
    t.same(s?.state, { user: 'alice', cart: [1, 2] }, 'state kept through the rebinding')
    t.equal(client.setCookies, 1, 'one session from start to end')
  })
})

// A read the session (V → G) and keeps its copy for sessions.cacheMs. B then finds G ejected and
// rebinds V to H. When A next places new data of V it also finds G ejected; before replacing the
// binding it re-reads the session from the store, finds B's H, and follows it — rather than
// picking a gateway of its own from its stale copy and overwriting B's binding.
t.test('a proxy with a cached copy of the session follows another proxy\'s rebinding', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  // A long cache window, so that A's copy is certainly the one it read before B's rebinding.
  const state: StateConfigInput = { backend: 'redis', url: redis.url, keyPrefix: 'stale:' }
  const cfg = (): ReturnType<typeof testConfig> => testConfig(gws.urls, { state, sessions: { enabled: true, cacheMs: 60_000 } })
  const a = await startProxy(cfg())
  t.teardown(a.stop)
  const b = await startProxy(cfg())
  t.teardown(b.stop)
  await waitFor(() => a.node.store.status().ok && b.node.store.status().ok, 'both proxies connected', 10_000)
  const planner = createStore(state)
  t.teardown(() => planner.close())
  const client = new Client()
  t.equal((await client.get(a, '/other/probe')).status, 404, 'a cookie')
  t.equal(await client.put(a, '/V/first', 'one'), 201)
  const G = (await planner.getLocation('V', 'first'))?.gateway as string
  await bindingIs(planner, client.id, 'V', G)
  t.equal((await client.get(b, '/V/first')).status, 200, 'B has the session too')

  await gws.gateways[GATEWAYS.indexOf(G)]!.kill()
  await waitFor(() => a.node.proxy?.gateways.isHealthy(G) === false && b.node.proxy?.gateways.isHealthy(G) === false, 'both proxies to eject G', 10_000)
  t.equal(await client.put(b, '/V/through-b', 'b'), 201)
  const H = (await planner.getLocation('V', 'through-b'))?.gateway as string
  await bindingIs(planner, client.id, 'V', H)

  const next = newBlock(a, 'V', 'through-a', [H])
  t.equal(await client.put(a, `/V/${next}`, 'a'), 201)
  t.equal((await planner.getLocation('V', next))?.gateway, H, `A places new data of V on ${H}, where B rebound the session`)
  t.equal((await planner.getSession(client.id))?.bindings.V, H, 'and leaves the binding there')
  await waitFor(() => b.node.proxy?.sync?.cache.get('V', next) != null, 'B to receive the location')
  t.equal((await client.get(b, `/V/${next}`)).body, 'a', 'wherever A put it, B finds it by its location')
})

/** Store calls of one kind a proxy has made, from its metrics. */
async function storeOps (p: ProxyUnderTest, op: string): Promise<number> {
  const text = await (await request(`${p.adminUrl}/metrics`)).body.text()
  let n = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(`ferry_state_operations_total{op="${op}"`)) n += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return n
}

t.test('a session is stored once the client presents it back; clients that keep no cookie cost the store nothing', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const state: StateConfigInput = { backend: 'redis', url: redis.url, keyPrefix: 'lazy:' }
  // B names its session header in mixed case, as an operator might write it in the config.
  const a = await proxyOn(t, gws, state)
  const b = await startProxy(testConfig(gws.urls, { state, sessions: { enabled: true, header: 'X-Session-Id' } }))
  t.teardown(b.stop)
  const planner = createStore(state)
  t.teardown(() => planner.close())
  t.ok(await waitForReady(planner, 10_000))
  const sessionKeys = async (): Promise<number> => {
    const { stdout } = await promisify(execFile)(REDIS_CLI, ['-p', String(redis.port), '--scan', '--pattern', 'lazy:{s:*'])
    return stdout.split('\n').filter(l => l !== '').length
  }

  // 40 requests from clients that never send a cookie back.
  t.equal(await put(a, '/C/blk', 'c'), 201)
  const cookies = new Set<string>()
  for (let i = 0; i < 40; i++) {
    const r = await request(`${a.url}/C/blk`)
    t.equal(await r.body.text(), 'c')
    const set = r.headers['set-cookie'] as string
    cookies.add(set.split(';')[0] as string)
    t.notOk(/max-age|expires/i.test(set), 'the cookie lasts as long as the session is used (no fixed expiry)')
  }
  t.equal(cookies.size, 40, 'each was offered a session')
  t.equal(await sessionKeys(), 0, 'none of them left a session in the store')
  t.equal(await storeOps(a, 'getSession'), 0, 'nor cost a session read')
  t.equal(await storeOps(a, 'bindSession'), 0, 'nor a session write')

  // A client that does keep its cookie: its first binding, made before it had the cookie, is
  // stored when it comes back.
  const client = new Client()
  t.equal(await client.put(a, '/V/first', 'one'), 201)
  const G = (await planner.getLocation('V', 'first'))?.gateway as string
  t.equal(await sessionKeys(), 0, 'not stored yet')
  const next = newBlock(a, 'V', 'next', [G])
  t.equal(await client.put(a, `/V/${next}`, 'two'), 201)
  t.same(await onGateway(gws, G, `/V/${next}`), { status: 200, body: 'two' }, 'the next new block of V follows the first one to G')
  await bindingIs(planner, client.id, 'V', G)
  t.equal(await sessionKeys(), 1, 'one session in the store')

  // A header named in mixed case in the config matches (HTTP header names are case-insensitive).
  const id = 'header-session-0123456789'
  const r = await request(`${b.url}/H/blk`, { method: 'PUT', body: 'h', headers: { 'x-session-id': id } })
  await r.body.dump()
  t.equal(r.statusCode, 201)
  t.equal(r.headers['set-cookie'], undefined, 'the header was taken as the session: no cookie offered')
  await bindingIs(planner, id, 'H', (await planner.getLocation('H', 'blk'))?.gateway as string)
})

async function put (p: ProxyUnderTest, path: string, body: string): Promise<number> {
  const r = await request(`${p.url}${path}`, { method: 'PUT', body })
  await r.body.dump()
  return r.statusCode
}

t.test('nothing escaped to the process', async t => { t.same(escaped, []) })
