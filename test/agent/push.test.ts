import t from 'tap'
import type { AgentSample } from '../../telemetry/fields.js'
import { AgentMetrics } from '../../agent/metrics.js'
import { backoffDelay, Pusher } from '../../agent/pusher.js'
import { TelemetryAgent } from '../../agent/agent.js'
import { createRegistry } from '../../lib/metrics.js'
import { silentLogger } from '../../lib/log.js'
import { startGateways } from '../helpers/gateway.js'
import { freePort, waitFor } from '../helpers/net.js'
import { metricValue, startPlanner, TOKEN } from './planner.js'

const T0 = Date.now() - 60_000

function samples (n: number, from = 0): AgentSample[] {
  return Array.from({ length: n }, (_, i) => ({ at: T0 + (from + i) * 1000, cpu: ((from + i) % 10) / 10, disk_await_ms: from + i }))
}

function pusher (planner: string, o: Partial<ConstructorParameters<typeof Pusher>[0]> = {}): { p: Pusher, registry: ReturnType<typeof createRegistry> } {
  const registry = createRegistry(false)
  const p = new Pusher({ planner: new URL(planner), token: TOKEN, gateway: 'gw1', metrics: new AgentMetrics(registry), logger: silentLogger, minBackoffMs: 20, maxBackoffMs: 80, ...o })
  return { p, registry }
}

t.test('the agent samples this host and its gateway, and the samples land in the store', async t => {
  const planner = await startPlanner()
  t.teardown(planner.stop)
  const gws = await startGateways(2)
  t.teardown(gws.stopAll)
  const peer = new URL(gws.urls[1] as string)
  const agent = new TelemetryAgent({
    gateway: 'gw1',
    planner: planner.url,
    token: TOKEN,
    intervalMs: 50,
    // The default timeout is the interval; a loaded test machine can take longer than 50 ms.
    timeoutMs: 2000,
    probe: `${gws.urls[0] as string}/healthz`,
    peers: [{ host: '127.0.0.1', port: Number(peer.port) }],
    metricsPort: 0
  })
  await agent.start()
  t.teardown(() => agent.stop())
  await waitFor(async () => (await planner.store.readTelemetry('gw1')).length >= 3, 'three samples in the store')
  const stored = await planner.store.readTelemetry('gw1')
  const last = stored[stored.length - 1] ?? { at: 0 }
  for (const f of ['cpu', 'mem_pressure', 'mem_pressure_psi', 'mem_used', 'disk_util', 'disk_await_ms', 'net_latency_ms', 'net_error_rate', 'probe_latency_ms', 'probe_error_rate']) {
    t.type(last[f], 'number', `${f} stored`)
  }
  t.equal(last.probe_error_rate, 0, 'the gateway answers its probe')
  t.equal(last.net_error_rate, 0, 'the peer accepts connections')
  t.ok(stored.every((s, i) => i === 0 || s.at > (stored[i - 1]?.at ?? 0)), 'one sample per tick, in time order')
  // The planner stores a batch before the agent reads its answer and counts it: the count follows.
  await waitFor(async () => await metricValue(agent.registry, 'ferry_agent_samples_pushed_total') >= 3, 'the pushed samples to be counted', 5000)
  t.ok(await metricValue(agent.registry, 'ferry_agent_samples_pushed_total') >= 3)

  const port = agent.metricsAddress?.port
  const text = await (await fetch(`http://127.0.0.1:${port ?? 0}/metrics`)).text()
  for (const m of ['ferry_agent_samples_taken_total', 'ferry_agent_samples_pushed_total', 'ferry_agent_samples_dropped_total', 'ferry_agent_push_errors_total', 'ferry_agent_buffered_samples']) {
    t.match(text, new RegExp(`^# TYPE ${m} `, 'm'), `/metrics has ${m}`)
  }
  t.match(text, /ferry_agent_sample_value\{field="probe_latency_ms"\} \d/, 'the latest field values')
  const health = await (await fetch(`http://127.0.0.1:${port ?? 0}/healthz`)).json() as { status: string, gateway: string }
  t.same([health.status, health.gateway], ['ok', 'gw1'])

  // The gateway dies: the probe and the peer connect now fail, and that is what gets stored.
  await gws.stopAll()
  await waitFor(async () => {
    const [s] = await planner.store.readTelemetry('gw1', { limit: 1 })
    return s !== undefined && (s.probe_error_rate ?? 0) > 0 && s.net_error_rate === 1
  }, 'a sample showing the dead gateway: probe failing, peer unreachable')
})

t.test('wrong token: 401, counted, samples kept for when the token is fixed', async t => {
  const planner = await startPlanner()
  t.teardown(planner.stop)
  const { p, registry } = pusher(planner.url, { token: 'wrong-token' })
  t.teardown(() => p.stop())
  for (const s of samples(3)) p.enqueue(s)
  await waitFor(async () => await metricValue(registry, 'ferry_agent_push_errors_total', { status: '401' }) >= 2, 'two 401s (retried)')
  t.match(p.lastError, /^status 401: missing or wrong bearer token/)
  t.equal(p.buffered, 3, 'nothing dropped: 401 is the planner\'s problem to fix')
  t.same(await planner.store.readTelemetry('gw1'), [], 'nothing stored')
  t.equal(await metricValue(registry, 'ferry_agent_samples_pushed_total'), 0)

  // The planner's token is changed to the one the agent has: delivery resumes.
  planner.admin.setToken('wrong-token')
  await waitFor(() => p.buffered === 0, 'delivered after the fix')
  t.equal((await planner.store.readTelemetry('gw1')).length, 3)
  t.equal(await metricValue(registry, 'ferry_agent_samples_pushed_total'), 3)
})

t.test('planner down: buffered, oldest dropped beyond the bound, the rest delivered in order', async t => {
  const port = await freePort()
  const { p, registry } = pusher(`http://127.0.0.1:${port}`, { bufferMax: 5, batchMax: 2 })
  t.teardown(() => p.stop())
  for (const s of samples(8)) p.enqueue(s)
  await waitFor(async () => await metricValue(registry, 'ferry_agent_push_errors_total', { status: 'network' }) >= 2, 'failed pushes (nothing listening)')
  t.equal(p.buffered, 5)
  t.equal(await metricValue(registry, 'ferry_agent_samples_dropped_total', { reason: 'overflow' }), 3, 'the 3 oldest dropped and counted')
  t.equal(await metricValue(registry, 'ferry_agent_buffered_samples'), 5)

  const planner = await startPlanner({ port })
  t.teardown(planner.stop)
  await waitFor(() => p.buffered === 0, 'buffer drained after the planner came back', 5000)
  const want = samples(5, 3).map(s => s.at)
  t.same(planner.arrivals.map(a => a.at), want, 'arrived oldest first, in batches of 2, none twice')
  t.same((await planner.store.readTelemetry('gw1')).map(s => s.at), want)
  t.equal(await metricValue(registry, 'ferry_agent_samples_pushed_total'), 5)
  t.equal(p.consecutiveFailures, 0)
})

t.test('a refused sample is dropped and counted; an over-large batch is split', async t => {
  const planner = await startPlanner({ maxBatchSamples: 3 })
  t.teardown(planner.stop)
  const { p, registry } = pusher(planner.url, { batchMax: 8 })
  t.teardown(() => p.stop())
  p.enqueue({ at: T0, cpu: 1.5 })
  await waitFor(async () => await metricValue(registry, 'ferry_agent_samples_dropped_total', { reason: 'rejected' }) === 1, 'the invalid sample rejected')
  t.match(p.lastError, /^status 400: invalid telemetry: samples\[0\]\.cpu: Number must be less than or equal to 1/)
  for (const s of samples(7, 1)) p.enqueue(s)
  await waitFor(async () => (await planner.store.readTelemetry('gw1')).length === 7, 'all 7 delivered in batches the planner accepts')
  t.ok(await metricValue(registry, 'ferry_agent_push_errors_total', { status: '413' }) >= 1, '413 seen and counted')
  t.same(planner.arrivals.map(a => a.at), samples(7, 1).map(s => s.at), 'in order')
  t.equal(await metricValue(registry, 'ferry_agent_samples_dropped_total', { reason: 'rejected' }), 1, 'nothing else dropped')
})

t.test('stop() delivers what is buffered when the planner is there', async t => {
  const port = await freePort()
  // A long backoff: only the flush in stop() can deliver in time.
  const agent = new TelemetryAgent({ gateway: 'gw2', planner: `http://127.0.0.1:${port}`, token: TOKEN, intervalMs: 30, minBackoffMs: 60_000, maxBackoffMs: 60_000, flushOnStopMs: 3000 })
  await agent.start()
  await waitFor(() => agent.status().buffered >= 3 && agent.status().consecutivePushFailures >= 1, 'samples buffered while the planner is away')
  const planner = await startPlanner({ port })
  t.teardown(planner.stop)
  await agent.stop()
  t.equal(agent.status().buffered, 0)
  t.ok((await planner.store.readTelemetry('gw2')).length >= 3, 'flushed on stop')
  t.equal(agent.status().running, false)
})

t.test('backoff: exponential, capped, jittered within [half, full]', async t => {
  t.equal(backoffDelay(1, 100, 1000, () => 0), 50)
  t.equal(backoffDelay(1, 100, 1000, () => 1), 100)
  t.equal(backoffDelay(3, 100, 1000, () => 1), 400)
  t.equal(backoffDelay(10, 100, 1000, () => 0), 500, 'capped: half of the cap at least')
  t.equal(backoffDelay(10_000, 100, 1000, () => 1), 1000)
})
