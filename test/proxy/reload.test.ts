import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request, Agent } from 'undici'
import { stringify } from 'yaml'
import { ConfigWatcher } from '../../config/watch.js'
import { FerryNode } from '../../bin/node.js'
import { silentLogger } from '../../lib/log.js'
import { createRegistry } from '../../lib/metrics.js'
import { startGateways } from '../helpers/gateway.js'
import { sleep, waitFor } from '../helpers/net.js'

t.test('config reloads (valid and invalid) under load lose no request', async t => {
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-reload-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'ferry.yaml')
  const doc = (gateways: number, retries: number): string => stringify({
    log: { level: 'silent' },
    sites: [{ name: 's', subnets: ['127.0.0.0/8'] }],
    gateways: gws.urls.slice(0, gateways).map((url, i) => ({ id: `gw${i + 1}`, url, site: 's' })),
    // Port 0, kept by every version of the file: the listen address never changes on reload,
    // and no other test can take a port we picked in advance and then bind too late.
    proxy: { listen: { host: '127.0.0.1', port: 0 }, retries },
    admin: { listen: { host: '127.0.0.1', port: 0 } },
    health: { active: { intervalMs: 200 } }
  })
  fs.writeFileSync(file, doc(3, 2))
  const registry = createRegistry(false)
  const watcher = new ConfigWatcher({ file, registry, debounceMs: 20 })
  const node = new FerryNode({ config: watcher.current, roles: new Set(['proxy']), logger: silentLogger, registry, watcher })
  await node.start()
  watcher.start()
  t.teardown(() => node.stop())

  // Every block is written to all three gateways directly, so a read succeeds whichever gateway
  // the current config routes it to: what is tested is that no request fails during a reload.
  const body = Buffer.alloc(4096, 9)
  for (let i = 0; i < 50; i++) for (const g of gws.urls) await (await request(`${g}/v/b${i}`, { method: 'PUT', body })).body.dump()

  // Bounded waits, so a wedged request fails this test instead of stalling the whole suite.
  const agent = new Agent({ connections: 16, headersTimeout: 10_000, bodyTimeout: 10_000 })
  t.teardown(() => agent.close())
  const url = `http://127.0.0.1:${node.proxy?.address.port ?? 0}`
  let stop = false
  let okCount = 0
  const failures: string[] = []
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      try {
        const res = await request(`${url}/v/b${(i * 7 + w) % 50}`, { dispatcher: agent })
        const got = Buffer.from(await res.body.arrayBuffer())
        if (res.statusCode === 200 && got.equals(body)) okCount++
        else failures.push(`status ${res.statusCode}`)
      } catch (err) { failures.push((err as Error).message) }
    }
  }
  const workers = Array.from({ length: 8 }, (_, w) => worker(w))

  let reloads = 0
  watcher.on('reload', () => { reloads++ })
  let refused = 0
  watcher.on('invalid', () => { refused++ })
  const steps = [doc(2, 1), 'gateways: [broken', doc(3, 3), 'proxy: {listen: {port: "x"}}', doc(1, 0), doc(3, 2)]
  for (const text of steps) {
    const before = reloads + refused
    fs.writeFileSync(file, text)
    await waitFor(() => reloads + refused > before, 'the watcher to act on the edit')
    await sleep(150)
  }
  stop = true
  await Promise.all(workers)
  t.equal(reloads, 4, 'four valid configs applied')
  t.equal(refused, 2, 'two invalid configs refused')
  t.same(failures, [], 'no request failed')
  t.ok(okCount > 100, `requests served during the reloads (${okCount})`)
  t.equal(node.proxy?.gateways.all().length, 3, 'the last valid config is in force')
  const metrics = await registry.metrics()
  t.match(metrics, /ferry_config_reloads_total\{result="failure"\} 2/)
})
