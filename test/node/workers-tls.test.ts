import t from 'tap'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { stringify } from 'yaml'
import { startGateways } from '../helpers/gateway.js'
import { freePort, waitFor } from '../helpers/net.js'
import { spawnFerry } from '../helpers/process.js'
import { startRedis } from '../helpers/redis.js'
import { makeCert, run } from '../helpers/tls.js'

const TOKEN = 'workers-tls-token-0123456789'

/** TCP listening addresses (host:port) of a process, from `ss`. */
function listening (pid: number): string[] {
  const out = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' })
  return out.split('\n').filter(l => l.includes(`pid=${pid},`)).map(l => l.trim().split(/\s+/)[3] ?? '')
}

// admin.tls with proxy.workers = 2: the public admin listener is HTTPS (on every address here),
// the data-plane routes it forwards to a worker go over the worker's private admin listener,
// which is plain HTTP bound to 127.0.0.1 only (before, it took admin.tls too, and the primary's
// plain request to it failed).
t.test('admin TLS with two workers: forwarded routes work, the workers\' admin listeners are loopback-only plain HTTP', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-workers-tls-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const cert = await makeCert(dir, 'admin', 2)
  const [proxyPort, adminPort] = [await freePort(), await freePort()]
  const file = path.join(dir, 'ferry.yaml')
  fs.writeFileSync(file, stringify({
    sites: [{ name: 'site-a', subnets: ['127.0.0.0/8'] }],
    gateways: [{ id: 'gw1', url: gws.urls[0], site: 'site-a' }, { id: 'gw2', url: gws.urls[1], site: 'site-a' }],
    state: { backend: 'redis', url: redis.url },
    proxy: { listen: { host: '127.0.0.1', port: proxyPort }, workers: 2, shutdownGraceMs: 1000 },
    admin: { listen: { host: '0.0.0.0', port: adminPort }, token: TOKEN, tls: { cert: cert.cert, key: cert.key } }
  }))
  const ferry = spawnFerry(['start', '--config', file, '--roles', 'proxy'])
  t.teardown(() => ferry.stop('SIGKILL'))
  const curl = async (args: string[]): Promise<{ code: number, out: string }> => await run('curl', ['-sS', '--max-time', '10', '--cacert', cert.ca, ...args])
  await waitFor(async () => (await curl(['-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${adminPort}/readyz`])).out === '200', `ready (ferry said: ${ferry.output().slice(-800)})`, 60_000, 250)

  // /v1/gateways is a data-plane route: the primary answers it by forwarding to a worker.
  const gateways = await curl([`https://127.0.0.1:${adminPort}/v1/gateways`])
  t.equal(gateways.code, 0, gateways.out)
  t.same((JSON.parse(gateways.out) as { gateways: Array<{ id: string }> }).gateways.map(g => g.id), ['gw1', 'gw2'], 'a forwarded route answers over the HTTPS listener')
  const block = await curl(['-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${adminPort}/v1/blocks/vol1/nothing`])
  t.match(block.out, /^(200|404)$/, `another forwarded route (${block.out})`)

  const primary = ferry.child.pid as number
  const workers = fs.readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  t.equal(workers.length, 2, 'two workers')
  t.ok(listening(primary).includes(`0.0.0.0:${adminPort}`), `the primary's admin listener is public (${listening(primary).join(' ')})`)
  for (const w of workers) {
    const own = listening(w).filter(a => !a.endsWith(`:${proxyPort}`) && !a.endsWith(`:${adminPort}`))
    t.equal(own.length, 1, `worker ${w}: one private listener (${listening(w).join(' ')})`)
    for (const a of own) {
      t.match(a, /^127\.0\.0\.1:\d+$/, `worker ${w}: bound to loopback only (${a})`)
      const plain = await run('curl', ['-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${a}/healthz`])
      t.equal(plain.out, '200', `worker ${w}: plain HTTP (${a})`)
    }
  }
})
