import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { parse, stringify } from 'yaml'
import { sandboxYaml } from '../../bin/sandbox.js'
import { ctl } from '../helpers/ctl.js'
import { startGateways } from '../helpers/gateway.js'
import { freePort, waitFor } from '../helpers/net.js'
import { FERRY_BIN, spawnFerry } from '../helpers/process.js'
import { SANDBOX_TOKEN } from '../helpers/sandbox.js'
import { makeCert, run } from '../helpers/tls.js'

// HTTPS to a gateway in the running product: `ferry gateway` serving TLS that requires a client
// certificate, `ferry start` (proxy and planner) reaching it through gateways[].tls, certificates
// made here by openssl. Reads and writes through the proxy, the store rebuilt from its inventory,
// a move onto it and off it; then the CA file replaced by another CA's and SIGHUP: reads get the
// typed FERRY_GATEWAY_TLS, the planner's probes say why, and a move onto it is refused with that
// reason; the right CA back and SIGHUP: served again.

interface BlockView { location: { gateway: string, members: string[], inSync: string[] } }
interface Config {
  gateways: Array<{ url: string, tls?: { ca: string, cert?: string, key?: string } }>
  replication: { factor: number }
  log: unknown
}
interface Migration { id: string, volume: string, block: string, to: string, result: string | null, error: string | null }

t.test('gateways over HTTPS: CA and client certificate, reads, writes, moves, a wrong CA refused', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-gw-https-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const [server, other, client] = await Promise.all([makeCert(dir, 'server', 2), makeCert(dir, 'other', 2), makeCert(dir, 'client', 2)])
  const liveCa = path.join(dir, 'gateway-ca.pem')
  fs.copyFileSync(server.ca, liveCa)

  const plain = await startGateways(2)
  t.teardown(plain.stopAll)
  const [proxyPort, adminPort, dnsPort, gw3Port] = await Promise.all([freePort(), freePort(), freePort(), freePort()]) as [number, number, number, number]
  const gw3 = spawnFerry(['gateway', '--dir', path.join(dir, 'gw3'), '--port', String(gw3Port), '--id', 'gw3',
    '--tls-cert', server.cert, '--tls-key', server.key, '--tls-client-ca', client.ca])
  t.teardown(() => gw3.stop('SIGKILL'))
  await waitFor(() => gw3.output().includes('gateway started'), 'gw3 up', 20_000, 50)
  t.match(gw3.output(), new RegExp(`"url":"https://127\\.0\\.0\\.1:${gw3Port}"`), 'the reference gateway serves https')

  // The sandbox's config, one copy per block (a read of a block on gw3 then has nowhere else to go).
  const cfg = parse(sandboxYaml({ proxy: proxyPort, admin: adminPort, dns: dnsPort, gateways: [...plain.urls.map(u => Number(new URL(u).port)), gw3Port] })) as Config
  const tlsGateway = cfg.gateways[2] as Config['gateways'][number]
  tlsGateway.url = `https://127.0.0.1:${gw3Port}`
  tlsGateway.tls = { ca: liveCa, cert: client.cert, key: client.key }
  cfg.replication.factor = 1
  cfg.log = { level: 'info', format: 'json' }
  const file = path.join(dir, 'ferry.yaml')
  fs.writeFileSync(file, stringify(cfg))
  t.equal((await run(process.execPath, [FERRY_BIN, 'check', '--config', file])).code, 0, 'ferry check accepts it')

  const ferry = spawnFerry(['start', '--config', file, '--roles', 'proxy,planner'])
  t.teardown(() => ferry.stop('SIGKILL'))
  const proxy = `http://127.0.0.1:${proxyPort}`
  const admin = `http://127.0.0.1:${adminPort}`
  const env = { FERRY_ADMIN_URL: admin, FERRY_ADMIN_TOKEN: SANDBOX_TOKEN }
  await waitFor(() => ferry.output().includes('admin listening'), 'the admin listener', 30_000, 100)
  await waitFor(async () => ((await (await request(`${admin}/v1/planner`)).body.json()) as { leader: boolean }).leader, 'the planner leads', 20_000, 100)
  t.match(ferry.output(), /"listed":\["gw1","gw2","gw3"\].*block locations rebuilt/, 'the startup rebuild listed gw3\'s inventory over TLS')

  const get = async (p: string, headers: Record<string, string> = {}): Promise<{ status: number, text: string }> => {
    const res = await request(`${proxy}${p}`, { headers })
    return { status: res.statusCode, text: await res.body.text() }
  }
  const block = async (p: string): Promise<BlockView> => (await (await request(`${admin}/v1/blocks${p}`)).body.json()) as BlockView
  const gw3Direct = async (p: string): Promise<string> => (await run('curl', ['-sS', '--max-time', '10', '--cacert', server.ca, '--cert', client.cert, '--key', client.key, `https://127.0.0.1:${gw3Port}${p}`])).out

  // A write from site-c lands on site-c's gateway, gw3, over TLS with the client certificate.
  const put = await request(`${proxy}/vol2/c1`, { method: 'PUT', body: 'written over tls', headers: { 'x-forwarded-for': '127.0.2.9' } })
  t.equal(put.statusCode, 201, await put.body.text())
  t.same((await block('/vol2/c1')).location.inSync, ['gw3'])
  t.same(await get('/vol2/c1'), { status: 200, text: 'written over tls' }, 'read back through the proxy')
  t.equal(await gw3Direct('/vol2/c1'), 'written over tls', 'and it is on gw3 (curl with the client certificate)')

  // A block written at site-a moved onto gw3 by the operator, and back.
  await (await request(`${proxy}/vol1/a1`, { method: 'PUT', body: 'moved over tls' })).body.dump()
  const from = (await block('/vol1/a1')).location.gateway
  t.not(from, 'gw3')
  const moved = async (to: string): Promise<Migration> => {
    const r = await ctl(['move', 'vol1/a1', to], env)
    t.equal(r.code, 0, `ferry ctl move vol1/a1 ${to}: ${r.stdout}${r.stderr}`)
    return await waitFor(async () => {
      const list = (await (await request(`${admin}/v1/migrations`)).body.json()) as { migrations: Migration[] }
      const m = list.migrations.find(m => m.block === 'a1' && m.to === to && m.result !== null)
      return m ?? false
    }, `the move onto ${to}`, 60_000, 200) as Migration
  }
  const onto = await moved('gw3')
  t.equal(onto.result, 'ok', `copied onto gw3 over TLS ${onto.error ?? ''}`)
  t.same((await block('/vol1/a1')).location.inSync, ['gw3'])
  t.same(await get('/vol1/a1'), { status: 200, text: 'moved over tls' })
  t.equal(await gw3Direct('/vol1/a1'), 'moved over tls')
  const back = await moved(from)
  t.equal(back.result, 'ok', `and copied off it ${back.error ?? ''}`)
  t.same((await block('/vol1/a1')).location.inSync, [from])

  // The CA file now holds another CA (a renewal gone wrong): SIGHUP re-reads it.
  fs.copyFileSync(other.ca, liveCa)
  ferry.child.kill('SIGHUP')
  const refused = await waitFor(async () => { const r = await get('/vol2/c1'); return r.status === 502 && r }, 'the wrong CA in force', 20_000, 100) as { text: string }
  const body = JSON.parse(refused.text) as { error: { code: string, message: string } }
  t.equal(body.error.code, 'FERRY_GATEWAY_TLS', 'a read of a block on gw3: the typed error')
  t.match(body.error.message, /^gateway gw3: TLS handshake failed: .+ \[[A-Z_]+\] \(check gateways\[\]\.tls/)
  const probed = await waitFor(async () => {
    const r = await ctl(['move', 'vol1/a1', 'gw3'], env)
    return r.code === 1 && r.stderr.includes('its last probe') && r
  }, 'the planner sees gw3 down', 20_000, 250) as { stderr: string }
  t.match(probed.stderr, /gateway gw3 is down \(its last probe: TLS handshake failed: .+\) \[FERRY_TARGET_UNAVAILABLE\]/, 'a move onto it is refused, saying why')
  const gateways = (await (await request(`${admin}/v1/gateways`)).body.json()) as { gateways: Array<{ id: string, lastProbeError: string | null }> }
  t.match(gateways.gateways.find(g => g.id === 'gw3')?.lastProbeError, /^TLS handshake failed/, '/v1/gateways says why gw3 is down')

  // The right CA back: served again, no restart.
  fs.copyFileSync(server.ca, liveCa)
  ferry.child.kill('SIGHUP')
  t.same(await waitFor(async () => { const r = await get('/vol2/c1'); return r.status === 200 && r }, 'gw3 served again', 20_000, 100), { status: 200, text: 'written over tls' })

  // Without the client certificate, the gateway refuses the handshake (config edited: a file-watch reload).
  tlsGateway.tls = { ca: liveCa }
  fs.writeFileSync(file, stringify(cfg))
  const anonymous = await waitFor(async () => { const r = await get('/vol2/c1'); return r.status >= 500 && r }, 'the client certificate gone', 20_000, 100) as { status: number }
  t.equal(anonymous.status, 502, 'refused without a client certificate')
  await waitFor(() => gw3.output().includes('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE'), 'gw3 logs the refusal', 10_000, 100)

  t.equal(await ferry.stop('SIGTERM'), 0)
  t.equal(await gw3.stop('SIGTERM'), 0)
})
