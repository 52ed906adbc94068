import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Dispatcher } from 'undici'
import { parseConfig } from '../../config/load.js'
import { gatewaySchema, type GatewayConfig } from '../../fleet/schema.js'
import { describeGatewayError, gatewayPool, gatewayTlsError, gatewayTlsFingerprint, loadGatewayTls, tlsFailureOf } from '../../upstream/connect.js'
import { listBlocks } from '../../upstream/inventory.js'
import { probeOnce } from '../../upstream/prober.js'
import { startGateways } from '../helpers/gateway.js'
import { makeCert } from '../helpers/tls.js'

// HTTPS to gateways, in one process: a reference gateway serving TLS with client certificates
// required, reached through the pools every role builds (upstream/connect.ts), with certificates
// made here by openssl.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-gw-tls-'))
t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })

const gatewayCfg = (url: string, tls?: Record<string, string>): GatewayConfig =>
  gatewaySchema.parse({ id: 'gw-tls', url, site: 's', ...(tls === undefined ? {} : { tls }) })

async function attempt (pool: Dispatcher, method: 'GET' | 'PUT', p: string, body?: string): Promise<{ status: number, text: string } | { err: unknown }> {
  try {
    const res = await pool.request({ method, path: p, ...(body === undefined ? {} : { body }) })
    return { status: res.statusCode, text: await res.body.text() }
  } catch (err) {
    return { err }
  }
}

t.test('a TLS reference gateway through the gateway pool: CA, client certificate, servername; refusals say TLS', async t => {
  const [server, other, client] = await Promise.all([makeCert(dir, 'server', 2), makeCert(dir, 'other', 2), makeCert(dir, 'client', 2)])
  const gws = await startGateways(1, { tls: { cert: server.cert, key: server.key, clientCa: client.ca } })
  t.teardown(gws.stopAll)
  const url = gws.urls[0] as string
  t.match(url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the gateway serves https')
  const right = { ca: server.ca, cert: client.cert, key: client.key }

  const pool = gatewayPool(gatewayCfg(url, right), { connections: 2 })
  t.teardown(() => pool.close())
  t.same(await attempt(pool, 'PUT', '/vol1/b1', 'over tls'), { status: 201, text: '' }, 'a PUT with the CA and a client certificate')
  t.same(await attempt(pool, 'GET', '/vol1/b1'), { status: 200, text: 'over tls' }, 'and its GET')
  t.equal(await probeOnce(pool, '/healthz', 2000), null, 'a probe passes')

  const listed = []
  for await (const e of listBlocks(gatewayCfg(url, right))) listed.push(`${e.volume}/${e.block}`)
  t.same(listed, ['vol1/b1'], 'the inventory lists it over TLS (its own pool, with the gateway\'s tls)')

  // The wrong CA: the handshake fails, and every description of it says TLS.
  const wrong = gatewayPool(gatewayCfg(url, { ...right, ca: other.ca }))
  t.teardown(() => wrong.close())
  const refused = await attempt(wrong, 'GET', '/vol1/b1')
  t.ok('err' in refused, 'a gateway signed by another CA is refused')
  const err = (refused as { err: unknown }).err
  t.ok(tlsFailureOf(err), 'as a TLS failure')
  const typed = gatewayTlsError('gw-tls', err)
  t.equal(typed?.code, 'FERRY_GATEWAY_TLS')
  t.equal(typed?.statusCode, 502)
  t.match(typed?.message, /^gateway gw-tls: TLS handshake failed: .+ \[[A-Z_]+\] \(check gateways\[\]\.tls/)
  t.match(describeGatewayError(err), /^TLS handshake failed: /)
  t.match(await probeOnce(wrong, '/healthz', 2000), /^TLS handshake failed: /, 'the probe says why it failed')
  await t.rejects(async () => { for await (const e of listBlocks(gatewayCfg(url, { ...right, ca: other.ca }))) t.fail(`listed ${e.block}`) },
    { code: 'FERRY_INVENTORY_FAILED', message: /TLS handshake failed/ }, 'the inventory too')

  // A servername the certificate does not carry (it names 127.0.0.1 only): refused, so it is used.
  const named = gatewayPool(gatewayCfg(url, { ...right, servername: 'gw.example.test' }))
  t.teardown(() => named.close())
  const misnamed = await attempt(named, 'GET', '/vol1/b1')
  t.equal(tlsFailureOf((misnamed as { err: unknown }).err)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID', 'servername is the name checked')

  // No client certificate: the gateway refuses the handshake.
  const anonymous = gatewayPool(gatewayCfg(url, { ca: server.ca }))
  t.teardown(() => anonymous.close())
  t.ok('err' in await attempt(anonymous, 'GET', '/vol1/b1'), 'a gateway that requires a client certificate refuses a pool without one')

  // A plain http gateway is not a TLS failure.
  const plain = await startGateways(1)
  t.teardown(plain.stopAll)
  const toPlainAsHttps = gatewayPool(gatewayCfg(plain.urls[0]!.replace('http:', 'https:'), { ca: server.ca }))
  t.teardown(() => toPlainAsHttps.close())
  const mismatch = await attempt(toPlainAsHttps, 'GET', '/vol1/b1')
  t.ok('err' in mismatch, 'https to a plain HTTP gateway fails')
})

t.test('the config refuses TLS files it cannot use, at their key; renewed files change the fingerprint', async t => {
  const [good, expired] = await Promise.all([makeCert(dir, 'good', 2), makeCert(dir, 'expired', -1)])
  const notPem = path.join(dir, 'not.pem')
  fs.writeFileSync(notPem, 'hello\n')
  const yaml = (tls: string, url = 'https://127.0.0.1:9443'): string => `gateways:
  - id: gw1
    url: ${url}
    site: a
    tls: ${tls}
`
  const refused = (text: string): string => {
    try { parseConfig(text, 'f.yaml') } catch (err) { return (err as Error).message }
    return 'accepted'
  }
  t.equal(refused(yaml(`{ ca: ${good.ca}, cert: ${good.cert}, key: ${good.key}, servername: gw1.example }`)), 'accepted')
  t.match(refused(yaml(`{ ca: ${path.join(dir, 'missing.pem')} }`)), /f\.yaml:5:\d+: gateways\[0\]\.tls\.ca: cannot read .*missing\.pem/)
  t.match(refused(yaml(`{ ca: ${notPem} }`)), /gateways\[0\]\.tls\.ca: .*not\.pem holds no PEM certificate/)
  t.match(refused(yaml(`{ ca: ${good.ca}, cert: ${expired.cert}, key: ${expired.key} }`)), /gateways\[0\]\.tls\.cert: the certificate .*expired\.pem .* expired on/)
  t.match(refused(yaml(`{ ca: ${good.ca}, cert: ${good.cert}, key: ${expired.key} }`)), /gateways\[0\]\.tls\.key: the key .* does not belong to the certificate/)
  t.match(refused(yaml(`{ cert: ${good.cert} }`)), /gateways\[0\]\.tls\.key: a client certificate needs both cert and key/)
  t.match(refused(yaml(`{ ca: ${good.ca} }`, 'http://127.0.0.1:9001')), /gateways\[0\]\.tls: a tls section is only for an https:\/\/ gateway url/)

  t.throws(() => loadGatewayTls(gatewayCfg('https://127.0.0.1:1', { ca: notPem })), { code: 'FERRY_TLS_INVALID', statusCode: 400, message: `gateway gw-tls: tls.ca: ${notPem} holds no PEM certificate`, details: { gateway: 'gw-tls', key: 'ca' } }, 'typed')
  t.equal(loadGatewayTls(gatewayCfg('https://127.0.0.1:1')), null, 'https without tls: the system CAs')

  const live = path.join(dir, 'live-ca.pem')
  fs.copyFileSync(good.ca, live)
  const cfg = gatewayCfg('https://127.0.0.1:1', { ca: live })
  const before = gatewayTlsFingerprint(cfg)
  t.equal(gatewayTlsFingerprint(cfg), before, 'the same files: the same fingerprint')
  fs.copyFileSync(expired.ca, live)
  t.not(gatewayTlsFingerprint(cfg), before, 'a renewed CA under the same path: another (a reload rebuilds the pools)')
  fs.rmSync(live)
  t.equal(gatewayTlsFingerprint(cfg), null, 'unreadable now: null (the pools keep what they have)')
  t.equal(gatewayTlsFingerprint(gatewayCfg('http://127.0.0.1:1')), '')
})
