import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { stringify } from 'yaml'
import { startGateways } from '../helpers/gateway.js'
import { KeepAliveConnection } from '../helpers/http.js'
import { freePort, sleep, waitFor } from '../helpers/net.js'
import { spawnFerry } from '../helpers/process.js'

/**
 * Clients that keep connections open and go quiet — browsers, SDK pools, `requests.Session` —
 * against a real `ferry start` process. A proxy once died on the first such client: its socket
 * 'timeout' handler read `_httpMessage.headersSent` on an idle keep-alive socket, where Node
 * leaves `_httpMessage` null. Every client here idles past every timeout the proxy has (idle,
 * headers, body idle, whole request) and the admin listener's keep-alive timeout, and then the
 * process must still be alive, still answer, and have logged nothing fatal.
 */

const TIMEOUTS = { idleTimeoutMs: 300, headersTimeoutMs: 600, bodyIdleTimeoutMs: 800, requestTimeoutMs: 1200 }
/** Longer than every proxy timeout above, with room for the server's 1 s connection sweep. */
const PAST_EVERY_TIMEOUT_MS = 2500

t.test('keep-alive clients idling past every timeout do not stop the proxy', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-idle-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const [proxyPort, adminPort] = [await freePort(), await freePort()]
  const file = path.join(dir, 'ferry.yaml')
  await writeFile(file, stringify({
    log: { level: 'info' },
    sites: [{ name: 'site-a', subnets: ['127.0.0.0/8'] }],
    gateways: [{ id: 'gw1', url: gws.urls[0], site: 'site-a' }],
    proxy: { listen: { host: '127.0.0.1', port: proxyPort }, ...TIMEOUTS },
    admin: { listen: { host: '127.0.0.1', port: adminPort }, token: 'idle-test-token-0123456789' }
  }))
  const ferry = spawnFerry(['start', '--config', file, '--roles', 'proxy'])
  t.teardown(() => ferry.stop('SIGKILL'))
  await waitFor(async () => {
    const r = await request(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null)
    await r?.body.dump()
    return r?.statusCode === 200
  }, 'the proxy to be ready', 20_000, 100)

  const alive = async (): Promise<boolean> => {
    if (ferry.child.exitCode !== null || ferry.child.signalCode !== null) return false
    const r = await request(`http://127.0.0.1:${adminPort}/healthz`).catch(() => null)
    await r?.body.dump()
    return r?.statusCode === 200
  }

  // Used, then quiet: the Python reproduction from the issue.
  const used = await KeepAliveConnection.open(proxyPort)
  t.equal((await used.request('PUT', '/vol1/blk1', 'hello')).status, 201, 'PUT on a keep-alive connection')
  const first = await used.request('GET', '/vol1/blk1')
  t.equal(first.body.toString(), 'hello', 'GET on the same connection')
  // Opened and never used.
  const silent = await KeepAliveConnection.open(proxyPort)
  // Half a request line, then nothing: the headers timeout.
  const halfHeaders = await KeepAliveConnection.open(proxyPort)
  halfHeaders.write('GET /vol1/blk1 HTTP/1.1\r\nhost: te')
  // Headers of a PUT, part of its body, then nothing: the body-idle and request timeouts.
  const halfBody = await KeepAliveConnection.open(proxyPort)
  halfBody.write('PUT /vol1/blk2 HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\n0123456789')
  // A keep-alive admin client (a load balancer's health checker) that idles past its keep-alive timeout.
  const lb = await KeepAliveConnection.open(adminPort)
  t.equal((await lb.request('GET', '/readyz')).status, 200)

  await sleep(PAST_EVERY_TIMEOUT_MS)
  t.ok(await alive(), 'the process is alive after every client idled past every timeout')

  // Each idle connection was closed cleanly (never a half response), or still works.
  for (const [name, conn] of [['used', used], ['silent', silent]] as const) {
    await conn.closed
    t.ok(conn.isClosed, `${name}: the idle connection was closed by the server`)
  }
  // The body-idle timeout (0.8 s) fires long before Node's request-timeout sweep: the proxy answers.
  const halfBodyReply = await halfBody.response().catch(() => null)
  t.equal(halfBodyReply?.status, 408, 'a stalled upload gets a 408')
  t.match(JSON.parse(halfBodyReply?.body.toString() ?? '{}'), { error: { code: 'FERRY_REQUEST_TIMEOUT' } })
  await halfBody.closed
  await halfHeaders.closed
  t.ok(halfBody.isClosed && halfHeaders.isClosed, 'stalled requests are closed')

  // The admin listener's keep-alive timeout is 5 s: idle past it and come back.
  await sleep(5500)
  t.ok(await alive(), 'alive after the health checker idled past the admin keep-alive timeout')
  const again = await lb.request('GET', '/readyz').catch(() => null)
  t.ok(again === null ? lb.isClosed : again.status === 200, 'the admin connection was reused or cleanly closed')

  // A new client is served as before: nothing was lost to the idle ones.
  const fresh = await KeepAliveConnection.open(proxyPort)
  const got = await fresh.request('GET', '/vol1/blk1')
  t.equal(got.body.toString(), 'hello', 'a new connection reads the block')
  fresh.destroy()
  lb.destroy()

  t.notMatch(ferry.output(), /"level":60|uncaught|unhandled/i, 'nothing fatal or uncaught was logged')
  t.equal(await ferry.stop('SIGTERM'), 0, 'exits 0 when told to')
})
