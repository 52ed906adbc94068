import { Counter, Gauge, type Registry } from 'prom-client'
import { bodyGcCollections } from '../lib/body-gc.js'

const METHODS = ['GET', 'HEAD', 'PUT', 'DELETE'] as const
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Per gateway: request counts by method and status, and a latency histogram per method. */
interface Traffic {
  /** key: methodIndex * 1000 + status code. */
  counts: Map<number, number>
  /** Per method: BUCKETS.length + 1 slots (the last is +Inf), not cumulative. */
  buckets: Float64Array[]
  sums: Float64Array
}

/**
 * The proxy's metrics. Per-request figures are kept in plain typed arrays and turned into
 * Prometheus series only when scraped: prom-client hashes and validates label sets on every
 * inc/observe, even on a bound child, and that showed up at ~3% of the proxy's CPU.
 */
export class ProxyMetrics {
  readonly retries: Counter
  readonly errors: Counter<'code'>
  readonly healthy: Gauge<'gateway'>
  readonly storeLookups: Counter
  readonly missingCopies: Counter<'gateway'>
  private readonly traffic = new Map<string, Traffic>()

  constructor (registry: Registry) {
    const registers = [registry]
    this.retries = new Counter({ name: 'ferry_proxy_retries_total', help: 'Requests retried on another gateway after a connection failure', registers })
    this.errors = new Counter({ name: 'ferry_proxy_errors_total', help: 'Requests ferry answered itself with an error, by error code', labelNames: ['code'], registers })
    this.storeLookups = new Counter({ name: 'ferry_proxy_store_lookups_total', help: 'Requests routed by a location read from the store, because the location cache may have missed a notification (reconnecting to the store, or reloading after it)', registers })
    this.missingCopies = new Counter({ name: 'ferry_proxy_missing_copies_total', help: 'Reads an in-sync member of the block\'s set answered 404 (it lost its copy, or this proxy had not heard of a change of the set): sent on to the next in-sync member', labelNames: ['gateway'], registers })
    this.healthy = new Gauge({ name: 'ferry_gateway_healthy', help: '1 when the gateway is healthy (probes pass and not ejected)', labelNames: ['gateway'], registers })
    const traffic = this.traffic
    registry.registerMetric(exported('ferry_proxy_requests_total', 'Proxied requests by gateway, method and status code', 'counter', () => {
      const values: Value[] = []
      for (const [gateway, t] of traffic) {
        for (const [key, n] of t.counts) values.push({ labels: { gateway, method: METHODS[Math.floor(key / 1000)] as string, code: String(key % 1000) }, value: n })
      }
      return values
    }))
    registry.registerMetric(exported('ferry_proxy_body_gcs_total', 'Young-generation GCs this process ran after a few MB of bodies (lib/body-gc.ts: dead body chunks freed before they force a full GC)', 'counter',
      () => [{ labels: {}, value: bodyGcCollections() }]))
    const name = 'ferry_proxy_request_duration_seconds'
    registry.registerMetric(exported(name, 'Time from request to the end of the response, by gateway and method', 'histogram', () => {
      const values: Value[] = []
      for (const [gateway, t] of traffic) {
        for (let m = 0; m < METHODS.length; m++) {
          const b = t.buckets[m] as Float64Array
          let total = 0
          for (let i = 0; i < b.length; i++) total += b[i] as number
          if (total === 0) continue
          const method = METHODS[m] as string
          let cum = 0
          for (let i = 0; i < BUCKETS.length; i++) {
            cum += b[i] as number
            values.push({ metricName: `${name}_bucket`, labels: { gateway, method, le: BUCKETS[i] as number }, value: cum })
          }
          values.push({ metricName: `${name}_bucket`, labels: { gateway, method, le: '+Inf' }, value: total })
          values.push({ metricName: `${name}_sum`, labels: { gateway, method }, value: t.sums[m] as number })
          values.push({ metricName: `${name}_count`, labels: { gateway, method }, value: total })
        }
      }
      return values
    }))
  }

  observe (gateway: string, method: string, code: number, seconds: number): void {
    let t = this.traffic.get(gateway)
    if (t === undefined) {
      t = { counts: new Map(), buckets: METHODS.map(() => new Float64Array(BUCKETS.length + 1)), sums: new Float64Array(METHODS.length) }
      this.traffic.set(gateway, t)
    }
    const m = method === 'GET' ? 0 : method === 'HEAD' ? 1 : method === 'PUT' ? 2 : 3
    const key = m * 1000 + code
    t.counts.set(key, (t.counts.get(key) ?? 0) + 1)
    let i = 0
    while (i < BUCKETS.length && seconds > (BUCKETS[i] as number)) i++
    const b = t.buckets[m] as Float64Array
    b[i] = (b[i] as number) + 1
    t.sums[m] = (t.sums[m] as number) + seconds
  }
}

interface Value { metricName?: string, labels: Record<string, string | number>, value: number }

/** A metric prom-client's registry can serialise, whose values are computed at scrape time. */
function exported (name: string, help: string, type: 'counter' | 'histogram', values: () => Value[]): Parameters<Registry['registerMetric']>[0] {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
    reset: () => {}
  }
  return metric as unknown as Parameters<Registry['registerMetric']>[0]
}
