import { Counter, Histogram, type Registry } from 'prom-client'

/**
 * The gateway's Prometheus metrics. Every series carries a `gateway` label and metrics are looked
 * up before being created, so several gateways in one process (the sandbox) can share a registry.
 */
export class GatewayMetrics {
  readonly #requests: Counter<'gateway' | 'method' | 'status'>
  readonly #duration: Histogram<'gateway' | 'method'>
  readonly #received: Counter<'gateway'>
  readonly #sent: Counter<'gateway'>
  readonly #faults: Counter<'gateway' | 'kind'>
  readonly #id: string

  constructor (registry: Registry, id: string) {
    this.#id = id
    this.#requests = metric(registry, 'ferry_gateway_requests_total', () => new Counter({
      name: 'ferry_gateway_requests_total',
      help: 'Data-port requests by method and status (status "aborted" when the connection closed before the response ended).',
      labelNames: ['gateway', 'method', 'status'],
      registers: [registry]
    }))
    this.#duration = metric(registry, 'ferry_gateway_request_duration_seconds', () => new Histogram({
      name: 'ferry_gateway_request_duration_seconds',
      help: 'Data-port request duration, from headers received to the connection done with the response (injected latency included).',
      labelNames: ['gateway', 'method'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry]
    }))
    this.#received = metric(registry, 'ferry_gateway_received_bytes_total', () => new Counter({
      name: 'ferry_gateway_received_bytes_total',
      help: 'Block body bytes received by PUT (including uploads later refused or aborted).',
      labelNames: ['gateway'],
      registers: [registry]
    }))
    this.#sent = metric(registry, 'ferry_gateway_sent_bytes_total', () => new Counter({
      name: 'ferry_gateway_sent_bytes_total',
      help: 'Block body bytes sent by GET.',
      labelNames: ['gateway'],
      registers: [registry]
    }))
    this.#faults = metric(registry, 'ferry_gateway_faults_injected_total', () => new Counter({
      name: 'ferry_gateway_faults_injected_total',
      help: 'Faults injected, by kind (latency, error, stall, die, reset).',
      labelNames: ['gateway', 'kind'],
      registers: [registry]
    }))
  }

  request (method: string, status: string, seconds: number): void {
    const m = METHODS.has(method) ? method : 'OTHER'
    this.#requests.inc({ gateway: this.#id, method: m, status })
    this.#duration.observe({ gateway: this.#id, method: m }, seconds)
  }

  received (bytes: number): void {
    this.#received.inc({ gateway: this.#id }, bytes)
  }

  sent (bytes: number): void {
    this.#sent.inc({ gateway: this.#id }, bytes)
  }

  fault (kind: 'latency' | 'error' | 'stall' | 'die' | 'reset'): void {
    this.#faults.inc({ gateway: this.#id, kind })
  }
}

/** Bounded label values: a client sending made-up methods must not grow the series set. */
const METHODS = new Set(['GET', 'HEAD', 'PUT', 'DELETE'])

function metric<T> (registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create()
}
