import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { stringify } from 'yaml'
import { configSchema } from '../../config/schema.js'
import { startGateways } from '../helpers/gateway.js'
import { freePort, waitFor } from '../helpers/net.js'
import { spawnFerry } from '../helpers/process.js'

const NODE_EXPORTER = process.env.NODE_EXPORTER_BIN ?? '/usr/bin/prometheus-node-exporter'

// A gateway host that runs Prometheus' node_exporter and no ferry agent: the planner scrapes it
// when the config says so (planner.nodeExporter), and the samples reach the same telemetry
// history the health model reads. Real node_exporter, real `ferry start`.
t.test('a planner started from its config scrapes a real node_exporter into the telemetry history', { skip: fs.existsSync(NODE_EXPORTER) ? false : `${NODE_EXPORTER} not installed (apt-get install -y prometheus-node-exporter)` }, async t => {
  const exporterPort = await freePort()
  const exporter = spawn(NODE_EXPORTER, [`--web.listen-address=127.0.0.1:${exporterPort}`, '--collector.disable-defaults', '--collector.cpu', '--collector.meminfo', '--collector.diskstats', '--collector.pressure'], { stdio: 'ignore' })
  t.teardown(() => { exporter.kill('SIGKILL') })
  await waitFor(async () => {
    const r = await request(`http://127.0.0.1:${exporterPort}/metrics`).catch(() => null)
    await r?.body.dump()
    return r?.statusCode === 200
  }, 'node_exporter to answer', 15_000, 100)

  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-nodeexp-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const adminPort = await freePort()
  const config = {
    sites: [{ name: 'site-a', subnets: ['127.0.0.0/8'] }],
    gateways: [{ id: 'gw1', url: gws.urls[0], site: 'site-a' }, { id: 'gw2', url: gws.urls[1], site: 'site-a' }],
    admin: { listen: { host: '127.0.0.1', port: adminPort }, token: 'node-exporter-token-0123456789' },
    planner: { nodeExporter: { intervalMs: 200, targets: { gw1: `http://127.0.0.1:${exporterPort}/metrics` } }, prediction: { enabled: false } }
  }
  const file = path.join(dir, 'ferry.yaml')
  await writeFile(file, stringify(config))
  const ferry = spawnFerry(['start', '--config', file, '--roles', 'planner'])
  t.teardown(() => ferry.stop('SIGKILL'))

  interface Sample { cpu?: number, mem_used?: number }
  const withRates = await waitFor(async () => {
    const r = await request(`http://127.0.0.1:${adminPort}/v1/telemetry/gw1`)
    const body = await r.body.json() as { samples: Sample[] }
    return body.samples.find(s => typeof s.cpu === 'number')
  }, `scraped samples for gw1 (ferry said: ${ferry.output().slice(-500)})`, 20_000, 200)
  const cpu = withRates?.cpu ?? -1
  const memUsed = withRates?.mem_used ?? -1
  t.ok(cpu >= 0 && cpu <= 1, `cpu is a share (${cpu})`)
  t.ok(memUsed > 0 && memUsed < 1, `mem_used is a share (${memUsed})`)
  const other = await request(`http://127.0.0.1:${adminPort}/v1/telemetry/gw2`)
  t.same((await other.body.json() as { samples: unknown[] }).samples, [], 'a gateway without a target gets nothing')
  const metrics = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text()
  t.match(metrics, /ferry_telemetry_scrapes_total\{gateway="gw1",result="ok"\} [1-9]/, 'scrapes are counted')
  t.equal(ferry.child.exitCode, null, 'still running')
})

t.test('a target that names no configured gateway is refused with the path and the known ids', async t => {
  const r = configSchema.safeParse({
    sites: [{ name: 'site-a', subnets: ['127.0.0.0/8'] }],
    gateways: [{ id: 'gw1', url: 'http://127.0.0.1:1', site: 'site-a' }],
    planner: { nodeExporter: { targets: { gw9: 'http://127.0.0.1:9100/metrics' } } }
  })
  t.equal(r.success, false)
  const issue = r.error?.issues[0]
  t.same(issue?.path, ['planner', 'nodeExporter', 'targets', 'gw9'])
  t.match(issue?.message, /unknown gateway "gw9" \(gateways: gw1\)/)
})
