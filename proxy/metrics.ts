import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/**
 * The proxy's metrics. Children are cached per label set because prom-client hashes the label
 * object on every inc/observe, which is measurable on a path that runs for every request.
 */
export class ProxyMetrics {
  private readonly requests: Counter<'gateway' | 'method' | 'code'>
  private readonly duration: Histogram<'gateway' | 'method'>
  readonly retries: Counter
  readonly errors: Counter<'code'>
  readonly healthy: Gauge<'gateway'>
  readonly confirmations: Counter<'result'>
  private readonly reqChildren = new Map<string, Counter.Internal>()
  private readonly durChildren = new Map<string, Histogram.Internal<'gateway' | 'method'>>()

  constructor (registry: Registry) {
    const registers = [registry]
    this.requests = new Counter({ name: 'ferry_proxy_requests_total', help: 'Proxied requests by gateway, method and status code', labelNames: ['gateway', 'method', 'code'], registers })
    this.duration = new Histogram({
      name: 'ferry_proxy_request_duration_seconds',
      help: 'Time from request to the end of the response, by gateway and method',
      labelNames: ['gateway', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers
    })
    this.retries = new Counter({ name: 'ferry_proxy_retries_total', help: 'Requests retried on another gateway after a connection failure', registers })
    this.errors = new Counter({ name: 'ferry_proxy_errors_total', help: 'Requests ferry answered itself with an error, by error code', labelNames: ['code'], registers })
    this.confirmations = new Counter({ name: 'ferry_proxy_write_confirmations_total', help: 'Writes that raced a block move and were checked on the new location, by HEAD status', labelNames: ['result'], registers })
    this.healthy = new Gauge({ name: 'ferry_gateway_healthy', help: '1 when the gateway is healthy (probes pass and not ejected)', labelNames: ['gateway'], registers })
  }

  observe (gateway: string, method: string, code: number, seconds: number): void {
    const rk = gateway + '\0' + method + '\0' + code
    let c = this.reqChildren.get(rk)
    if (c === undefined) this.reqChildren.set(rk, c = this.requests.labels(gateway, method, String(code)))
    c.inc()
    const dk = gateway + '\0' + method
    let h = this.durChildren.get(dk)
    if (h === undefined) this.durChildren.set(dk, h = this.duration.labels(gateway, method))
    h.observe(seconds)
  }
}
