import { createRegistry, type Registry } from '../../lib/metrics.js'
import { AdminServer } from '../../admin/server.js'
import { createStore } from '../../state/factory.js'
import type { StateStore, TelemetrySample } from '../../state/types.js'
import { registerTelemetryRoutes, type TelemetryIngest, type TelemetryRoutesOptions } from '../../planner/telemetry.js'

export const TOKEN = 'telemetry-test-token-0123456789'

export interface PlannerUnderTest {
  admin: AdminServer
  store: StateStore
  ingest: TelemetryIngest
  registry: Registry
  url: string
  port: number
  /** Every sample the store was asked to append, in arrival order, per gateway. */
  arrivals: Array<{ gateway: string, at: number }>
  stop: () => Promise<void>
}

/**
 * A real AdminServer on loopback with the telemetry routes over a memory store, the way the
 * planner role wires them. `port` 0 picks a free one; a fixed port lets a test "restart" it.
 */
export async function startPlanner (o: { port?: number, gateways?: string[], store?: StateStore } & Partial<Omit<TelemetryRoutesOptions, 'registry' | 'gateways'>> = {}): Promise<PlannerUnderTest> {
  const registry = createRegistry(false)
  const store = o.store ?? createStore({})
  const arrivals: Array<{ gateway: string, at: number }> = []
  const append = store.appendTelemetry.bind(store)
  store.appendTelemetry = async (gateway: string, samples: readonly TelemetrySample[]) => {
    for (const s of samples) arrivals.push({ gateway, at: s.at })
    await append(gateway, samples)
  }
  const admin = new AdminServer({ host: '127.0.0.1', port: o.port ?? 0, registry, token: TOKEN })
  const gateways = o.gateways ?? ['gw1', 'gw2']
  const { port: _p, gateways: _g, store: _s, ...rest } = o
  const ingest = registerTelemetryRoutes(admin, store, { ...rest, registry, gateways: () => gateways })
  const addr = await admin.listen()
  let stopped = false
  return {
    admin,
    store,
    ingest,
    registry,
    arrivals,
    port: addr.port,
    url: `http://127.0.0.1:${addr.port}`,
    stop: async () => {
      if (stopped) return
      stopped = true
      await ingest.close()
      await admin.close()
      if (o.store === undefined) await store.close()
    }
  }
}

/** The value of a counter or gauge (summed over the series matching `labels`). */
export async function metricValue (registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name)
  if (m === undefined) return 0
  const data = await m.get()
  let sum = 0
  for (const v of data.values) {
    if (Object.entries(labels).every(([k, l]) => String((v.labels as Record<string, unknown>)[k]) === l)) sum += v.value
  }
  return sum
}
