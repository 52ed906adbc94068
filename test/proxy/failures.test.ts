import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import net from 'node:net'
import { request } from 'undici'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { sleep, waitFor } from '../helpers/net.js'
import { rawRequest } from '../helpers/http.js'

/** Block files and temp files in a reference gateway's directory. */
function gatewayFiles (dir: string): { blocks: string[], temps: string[] } {
  const blocks: string[] = []
  for (const v of fs.readdirSync(dir)) {
    if (v.startsWith('.')) continue
    for (const b of fs.readdirSync(path.join(dir, v))) if (!b.startsWith('.')) blocks.push(`${v}/${b}`)
  }
  const tmp = path.join(dir, '.tmp')
  return { blocks, temps: fs.existsSync(tmp) ? fs.readdirSync(tmp) : [] }
}

async function proxyConnections (p: { node: { proxy?: { server: { getConnections: (cb: (e: Error | null, n: number) => void) => void } } } }): Promise<number> {
  return await new Promise((resolve, reject) => p.node.proxy?.server.getConnections((e, n) => e ? reject(e) : resolve(n)))
}

t.test('a client that aborts mid-upload leaves no partial block and no leaked socket', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls))
  t.teardown(p.stop)
  const gw = gws.gateways[0]!

  const sock = net.connect(Number(new URL(p.url).port), '127.0.0.1')
  await new Promise(resolve => sock.once('connect', resolve))
  sock.write('PUT /v/partial HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n')
  sock.write(Buffer.alloc(200_000, 7))
  await waitFor(() => gatewayFiles(gw.dir).temps.length === 1, 'the upload to reach the gateway')
  sock.destroy()

  await waitFor(() => gatewayFiles(gw.dir).temps.length === 0, 'the gateway to drop its temp file')
  t.same(gatewayFiles(gw.dir).blocks, [], 'no block stored')
  await waitFor(async () => await proxyConnections(p) === 0, 'the proxy to close the client socket')
  const res = await request(`${p.url}/v/partial`)
  t.equal(res.statusCode, 404, 'reads see no block')
  await res.body.dump()
})

t.test('a slow client gets 408 and the partial upload is discarded', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: 0 }, bodyIdleTimeoutMs: 300, trustedProxies: ['127.0.0.1/32'] } }))
  t.teardown(p.stop)
  const gw = gws.gateways[0]!

  const started = Date.now()
  const answer = await new Promise<string>(resolve => {
    const sock = net.connect(Number(new URL(p.url).port), '127.0.0.1')
    let out = ''
    sock.on('data', d => { out += d.toString() })
    sock.on('close', () => resolve(out))
    sock.write('PUT /v/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n')
    sock.write(Buffer.alloc(1000, 1)) // then nothing: the client stalls
  })
  t.match(answer, /^HTTP\/1\.1 408 /, 'answered 408')
  t.match(answer, /FERRY_REQUEST_TIMEOUT/)
  t.ok(Date.now() - started < 15_000, 'closed by the idle timeout, not left open')
  await waitFor(() => gatewayFiles(gw.dir).temps.length === 0, 'the gateway to drop its temp file')
  t.same(gatewayFiles(gw.dir).blocks, [])
})

t.test('a slow client that never finishes its headers is cut off', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: 0 }, headersTimeoutMs: 300, bodyIdleTimeoutMs: 300 } }))
  t.teardown(p.stop)
  const started = Date.now()
  const answer = await new Promise<string>(resolve => {
    const sock = net.connect(Number(new URL(p.url).port), '127.0.0.1')
    let out = ''
    sock.on('data', d => { out += d.toString() })
    sock.on('close', () => resolve(out))
    sock.on('error', () => resolve(out))
    sock.write('GET /v/b HTTP/1.1\r\nHost: x\r\n') // headers never end
  })
  t.ok(Date.now() - started < 15_000, 'socket closed by the proxy')
  // The socket idle timeout (bodyIdleTimeoutMs) fires long before Node checks headersTimeout
  // (every 30 s), and with no request parsed yet there is nothing to answer: the socket is closed.
  t.equal(answer, '', 'closed without an answer')
})

t.test('a gateway that dies mid-response: the client sees an error, never a complete-looking body', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls))
  t.teardown(p.stop)
  const gw = gws.gateways[0]!
  const body = Buffer.alloc(512 * 1024, 3)
  await (await request(`${p.url}/v/big`, { method: 'PUT', body })).body.dump()
  await gw.setFaults({ dieMidResponse: 1 })

  for (let i = 0; i < 5; i++) {
    const res = await request(`${p.url}/v/big`)
    t.equal(res.statusCode, 200, 'headers were already on their way')
    await t.rejects(res.body.arrayBuffer(), 'reading the body fails')
  }
  await gw.clearFaults()
  await waitFor(async () => { const r = await request(`${p.url}/v/big`); const b = Buffer.from(await r.body.arrayBuffer()); return r.statusCode === 200 && b.equals(body) }, 'recovery', 5000)
  t.pass('serves whole bodies again once the fault is gone')
})

t.test('a gateway killed mid-traffic is ejected and requests go to the next gateway', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  // Active probes off: this is about passive detection from real traffic.
  const p = await startProxy(testConfig(gws.urls, { health: { active: { enabled: false }, passive: { failures: 2, baseEjectMs: 60_000 } } }))
  t.teardown(p.stop)

  const location = async (b: string): Promise<string> =>
    ((await (await request(`${p.adminUrl}/v1/blocks/v/${b}`)).body.json()) as { location: { gateway: string } }).location.gateway
  // Find blocks that hash to gw1 before it dies.
  const onGw1: string[] = []
  for (let i = 0; onGw1.length < 20; i++) if (await location(`b${i}`) === 'gw1') onGw1.push(`b${i}`)

  await gws.gateways[0]!.kill()
  let failures = 0
  let ok = 0
  for (const b of onGw1) {
    const put = await request(`${p.url}/v/${b}`, { method: 'PUT', body: `content of ${b}` })
    await put.body.dump()
    if (put.statusCode >= 500) { failures++; continue }
    const get = await request(`${p.url}/v/${b}`)
    t.equal(await get.body.text(), `content of ${b}`)
    ok++
  }
  t.ok(failures <= 2, `at most the ejection threshold of writes fail (${failures})`)
  t.ok(ok >= onGw1.length - 2, 'the rest are served by the next gateway')
  t.not(await location(onGw1[0]!), 'gw1', 'gw1 no longer routed to')

  const gwList = await (await request(`${p.adminUrl}/v1/gateways`)).body.json() as { gateways: Array<{ id: string, healthy: boolean, reason: string | null }> }
  t.match(gwList.gateways.find(g => g.id === 'gw1'), { healthy: false, reason: 'ejected' })
})

t.test('idempotent reads are retried on the next gateway when a connection fails', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  // Ejection needs many failures, so the retry (not the ejection) is what saves these reads.
  const p = await startProxy(testConfig(gws.urls, { health: { active: { enabled: false }, passive: { failures: 1000 } } }))
  t.teardown(p.stop)
  await gws.gateways[0]!.setFaults({ refuse: 'unbind' })
  let served = 0
  for (let i = 0; i < 20; i++) {
    const res = await request(`${p.url}/v/r${i}`)
    await res.body.dump()
    if (res.statusCode === 404) served++ // gw2 answered: the block simply does not exist
  }
  t.equal(served, 20, 'every read answered by the surviving gateway')
  const metrics = await (await request(`${p.adminUrl}/metrics`)).body.text()
  const retries = Number(/ferry_proxy_retries_total (\d+)/.exec(metrics)?.[1])
  t.ok(retries > 0, `retries counted (${retries})`)
})

t.test('/readyz turns 503 with reasons when every gateway is down, and 200 when one returns', async t => {
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { health: { active: { intervalMs: 100, timeoutMs: 200, unhealthyThreshold: 1 } } }))
  t.teardown(p.stop)
  const ready = async (): Promise<{ status: number, body: { reasons: string[] } }> => {
    const r = await request(`${p.adminUrl}/readyz`)
    return { status: r.statusCode, body: await r.body.json() as { reasons: string[] } }
  }
  t.equal((await ready()).status, 200)
  await gws.gateways[0]!.setFaults({ refuse: 'unbind' })
  await gws.gateways[1]!.setFaults({ refuse: 'unbind' })
  const down = await waitFor(async () => { const r = await ready(); return r.status === 503 ? r : undefined }, 'readyz 503')
  t.match(down?.body.reasons.join('\n'), /gateways: no healthy gateway: gw1 probe-failed.*gw2 probe-failed/)
  await gws.gateways[1]!.clearFaults()
  await waitFor(async () => (await ready()).status === 200, 'readyz 200 again')
  t.pass('ready again')
})

t.test('graceful shutdown lets in-flight requests finish', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls))
  t.teardown(p.stop)
  await (await request(`${p.url}/v/slow`, { method: 'PUT', body: 'x' })).body.dump()
  await gws.gateways[0]!.setFaults({ latencyMs: 400 })
  const inflight = request(`${p.url}/v/slow`).then(async r => ({ status: r.statusCode, body: await r.body.text() }))
  await sleep(100)
  const stopping = p.stop()
  await sleep(50)
  await t.rejects(request(`${p.url}/v/slow`), 'new connections are refused while draining')
  t.same(await inflight, { status: 200, body: 'x' }, 'the in-flight request completed')
  await stopping
})

t.test('malformed and hostile HTTP never crashes the proxy', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls))
  t.teardown(p.stop)
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['garbage', 'HELLO\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['binary', Buffer.from([0, 1, 2, 255, 254, 13, 10, 13, 10]), /^HTTP\/1\.1 400 /],
    ['bad version', 'GET /v/b HTTP/9.9\r\n\r\n', /^HTTP\/1\.1 (400|505) /],
    ['huge header', `GET /v/b HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
    ['bad content-length', 'PUT /v/b HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['two content-lengths', 'PUT /v/b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', /^HTTP\/1\.1 400 /],
    ['smuggling TE+CL', 'PUT /v/b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['CONNECT', 'CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n', /^HTTP\/1\.1 (400|405) /],
    ['absolute URI', 'GET http://evil/v/b HTTP/1.1\r\nHost: evil\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['websocket upgrade', 'GET /v/b HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n', /^HTTP\/1\.1 405 /]
  ]
  for (const [name, bytes, expect] of cases) {
    t.match(await rawRequest(p.url, bytes), expect, name)
  }
  const res = await request(`${p.url}/v/b`)
  t.equal(res.statusCode, 404, 'still serving')
  await res.body.dump()
})
