import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Client } from 'undici'
import { parse, stringify } from 'yaml'
import { sandboxYaml } from '../../bin/sandbox.js'
import { freePort, waitFor } from '../helpers/net.js'
import { spawnFerry } from '../helpers/process.js'
import { makeCert, run } from '../helpers/tls.js'

// HTTPS on the proxy and admin listeners with certificates made here by openssl, checked with
// real clients (curl, and undici for a connection held across a certificate change).

t.test('TLS on the proxy and admin listeners: served, verified, reloaded live without dropping connections, bad certificates refused', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-tls-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const [one, two, expired] = await Promise.all([makeCert(dir, 'one', 2), makeCert(dir, 'two', 2), makeCert(dir, 'expired', -1)])
  const live = { cert: path.join(dir, 'live.pem'), key: path.join(dir, 'live.key') }
  fs.copyFileSync(one.cert, live.cert)
  fs.copyFileSync(one.key, live.key)

  const [proxy, admin, dnsPort, g1, g2, g3] = await Promise.all(Array.from({ length: 6 }, () => freePort())) as [number, number, number, number, number, number]
  const cfg = parse(sandboxYaml({ proxy, admin, dns: dnsPort, gateways: [g1, g2, g3] })) as Record<string, Record<string, unknown>>
  ;(cfg.proxy as Record<string, unknown>).tls = live
  ;(cfg.admin as Record<string, unknown>).tls = live
  const file = path.join(dir, 'ferry.yaml')
  fs.writeFileSync(file, stringify(cfg))

  const ferry = spawnFerry(['sandbox', '--config', file])
  t.teardown(() => ferry.stop('SIGKILL'))
  await waitFor(() => ferry.output().includes('Ctrl-C stops everything'), 'the sandbox', 60_000, 100)
  t.match(ferry.output(), /"tls":true.*"msg":"proxy listening"/)

  const curl = async (args: string[]): Promise<{ code: number, out: string }> => await run('curl', ['-sS', '--max-time', '10', ...args])
  const put = await curl(['--cacert', one.ca, '-X', 'PUT', '--data-binary', 'over tls', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${proxy}/vol1/blk1`])
  t.equal(put.out, '201', 'PUT over HTTPS through the proxy')
  const get = await curl(['--cacert', one.ca, `https://127.0.0.1:${proxy}/vol1/blk1`])
  t.equal(get.out, 'over tls')
  const health = await curl(['--cacert', one.ca, `https://127.0.0.1:${admin}/healthz`])
  t.match(health.out, /"status":"ok"/, 'the admin listener over HTTPS')
  const untrusted = await curl(['-o', '/dev/null', `https://127.0.0.1:${admin}/healthz`])
  t.equal(untrusted.code, 60, 'curl refuses a certificate it cannot verify')
  const plain = await curl(['-o', '/dev/null', `http://127.0.0.1:${proxy}/vol1/blk1`])
  t.not(plain.code, 0, 'plain HTTP to the TLS listener fails')

  // A keep-alive connection opened with certificate one…
  const held = new Client(`https://127.0.0.1:${proxy}`, { connect: { ca: [fs.readFileSync(one.ca), fs.readFileSync(two.ca)] }, pipelining: 1, keepAliveTimeout: 60_000 })
  t.teardown(() => held.close())
  let sockets = 0
  held.on('connect', () => { sockets++ })
  const first = await held.request({ path: '/vol1/blk1', method: 'GET' })
  t.equal(await first.body.text(), 'over tls')

  // …the files are replaced (rename, as certificate tools do): new connections get certificate two.
  fs.copyFileSync(two.key, `${live.key}.new`)
  fs.copyFileSync(two.cert, `${live.cert}.new`)
  fs.renameSync(`${live.key}.new`, live.key)
  fs.renameSync(`${live.cert}.new`, live.cert)
  await waitFor(() => (ferry.output().match(/TLS certificate reloaded/g) ?? []).length >= 2, 'both listeners reloaded', 20_000, 100)
  const viaTwo = await curl(['--cacert', two.ca, `https://127.0.0.1:${admin}/healthz`])
  t.match(viaTwo.out, /"status":"ok"/, 'new connections verify with the new CA')
  const viaOne = await curl(['--cacert', one.ca, '-o', '/dev/null', `https://127.0.0.1:${proxy}/vol1/blk1`])
  t.equal(viaOne.code, 60, 'and no longer with the old one')
  const again = await held.request({ path: '/vol1/blk1', method: 'GET' })
  t.equal(await again.body.text(), 'over tls', 'the connection opened before the change still serves')
  t.equal(sockets, 1, 'on the same socket: nothing was dropped')

  // An expired certificate is refused on reload; the current one keeps serving.
  fs.copyFileSync(expired.key, `${live.key}.new`)
  fs.copyFileSync(expired.cert, `${live.cert}.new`)
  fs.renameSync(`${live.key}.new`, live.key)
  fs.renameSync(`${live.cert}.new`, live.cert)
  await waitFor(() => /expired on.*TLS certificate reload refused/.test(ferry.output()), 'the refusal logged', 20_000, 100)
  const still = await curl(['--cacert', two.ca, `https://127.0.0.1:${admin}/healthz`])
  t.match(still.out, /"status":"ok"/, 'certificate two still serves')
  t.equal(await ferry.stop('SIGINT'), 0)

  // Starting on an expired certificate: a clear error, exit 1.
  const bad = spawnFerry(['sandbox', '--config', file])
  t.teardown(() => bad.stop('SIGKILL'))
  const code = await new Promise(resolve => bad.child.once('exit', resolve))
  t.equal(code, 1, 'refuses to start')
  t.match(bad.output(), /the certificate .*live\.pem .* expired on .* \[FERRY_TLS_INVALID\]/)
})
