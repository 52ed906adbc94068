import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/**
 * The store's metrics. Metrics are fetched-or-created by name, so two stores handed the same
 * registry (e.g. the proxy's and the planner's in one process) share them instead of throwing
 * "already registered".
 */
export class StateMetrics {
  readonly operations: Counter<'op' | 'result'>
  readonly duration: Histogram<'op'>
  readonly up: Gauge
  readonly resyncs: Counter
  readonly eventsReceived: Counter<'type'>
  readonly malformed: Counter

  constructor (registry: Registry | undefined, backend: string) {
    const labels = { backend }
    this.operations = get(registry, 'ferry_state_operations_total', () => new Counter({
      name: 'ferry_state_operations_total',
      help: 'State store calls by operation and result (ok, unavailable, error)',
      labelNames: ['op', 'result'],
      registers: registry ? [registry] : []
    }))
    this.duration = get(registry, 'ferry_state_operation_duration_seconds', () => new Histogram({
      name: 'ferry_state_operation_duration_seconds',
      help: 'State store call latency, including the round trip to the backend',
      labelNames: ['op'],
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: registry ? [registry] : []
    }))
    this.up = get(registry, 'ferry_state_up', () => new Gauge({
      name: 'ferry_state_up',
      help: '1 while the state store is usable (connected and subscribed), else 0',
      labelNames: ['backend'],
      registers: registry ? [registry] : []
    }))
    this.resyncs = get(registry, 'ferry_state_resyncs_total', () => new Counter({
      name: 'ferry_state_resyncs_total',
      help: 'Resync signals emitted (first connection and every reconnection)',
      registers: registry ? [registry] : []
    }))
    this.eventsReceived = get(registry, 'ferry_state_events_received_total', () => new Counter({
      name: 'ferry_state_events_received_total',
      help: 'Change notifications received, by type (location, message)',
      labelNames: ['type'],
      registers: registry ? [registry] : []
    }))
    this.malformed = get(registry, 'ferry_state_malformed_messages_total', () => new Counter({
      name: 'ferry_state_malformed_messages_total',
      help: 'Notifications ignored because they did not decode (not JSON, unknown version, bad fields)',
      registers: registry ? [registry] : []
    }))
    this.up.set(labels, 0)
    this.setUp = (ok: boolean) => this.up.set(labels, ok ? 1 : 0)
  }

  readonly setUp: (ok: boolean) => void
}

function get<T> (registry: Registry | undefined, name: string, make: () => T): T {
  const existing = registry?.getSingleMetric(name)
  return (existing as T | undefined) ?? make()
}
