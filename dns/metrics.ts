import { Counter, type Registry } from 'prom-client'
import { RCODE } from './wire.js'

/**
 * DNS metrics. The query path only bumps numbers in typed arrays; they are handed to
 * prom-client when the registry is scraped (a counter's `collect` hook, and a histogram
 * object of our own). prom-client's label hashing costs about as much as answering a cached
 * query, so doing it per query would cost a measurable share of the throughput.
 *
 *   ferry_dns_queries_total{transport, type, rcode}
 *   ferry_dns_request_duration_seconds{transport}   (histogram: receipt until the reply is handed to the socket)
 *   ferry_dns_dropped_total{transport, reason}       (malformed = no reply possible, rate_limited)
 *   ferry_dns_rate_limited_slips_total               (truncated replies sent instead of drops)
 *   ferry_dns_cache_total{result}                    (hit, miss: answers served from the encoded-answer cache)
 *   ferry_dns_cache_invalidations_total              (view changes)
 */

export const TRANSPORT_UDP = 0
export const TRANSPORT_TCP = 1
const TRANSPORTS = ['udp', 'tcp'] as const

// Query types worth their own label value; everything else is "other" (bounded cardinality
// whatever a fuzzer sends).
const TYPE_NAMES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 41: 'OPT', 65: 'HTTPS', 251: 'IXFR', 252: 'AXFR', 255: 'ANY' }
const TYPE_SLOTS = 256 // qtype & 0xff, with unknown ones folded into slot 0 ("other")
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE', 'RCODE11', 'RCODE12', 'RCODE13', 'RCODE14', 'RCODE15', 'BADVERS']
const RCODE_SLOTS = RCODE_NAMES.length
// Seconds. Cached answers take microseconds; misses tens of microseconds (dns2 encoding); the
// upper buckets are there to show a blocked event loop.
const BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1]
const SUM = BUCKETS.length + 1
const COUNT = BUCKETS.length + 2

export class DnsMetrics {
  private readonly queries = new Float64Array(2 * TYPE_SLOTS * RCODE_SLOTS)
  private readonly flushedQueries = new Float64Array(2 * TYPE_SLOTS * RCODE_SLOTS)
  // Per transport: one slot per bucket (non-cumulative) plus +Inf, then sum, then count.
  private readonly latency = [new Float64Array(BUCKETS.length + 3), new Float64Array(BUCKETS.length + 3)]
  malformedUdp = 0
  malformedTcp = 0
  rateLimited = 0
  slips = 0
  cacheHits = 0
  cacheMisses = 0
  invalidations = 0

  constructor (registry?: Registry) {
    if (registry === undefined) return
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- read from prom-client's collect hooks, where `this` is the metric
    const self = this
    new Counter({
      name: 'ferry_dns_queries_total',
      help: 'DNS queries answered, by transport, query type and response code',
      labelNames: ['transport', 'type', 'rcode'] as const,
      registers: [registry],
      collect () { self.flushQueries(this) }
    })
    registry.registerMetric(new LatencyHistogram(this.latency) as never)
    const simple = (name: string, help: string, labelNames: readonly string[], read: () => Array<[Record<string, string>, number]>): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect () {
          this.reset()
          for (const [labels, value] of read()) this.inc(labels, value)
        }
      })
    }
    simple('ferry_dns_dropped_total', 'DNS messages not answered, by transport and reason', ['transport', 'reason'], () => [
      [{ transport: 'udp', reason: 'malformed' }, this.malformedUdp],
      [{ transport: 'tcp', reason: 'malformed' }, this.malformedTcp],
      [{ transport: 'udp', reason: 'rate_limited' }, this.rateLimited]
    ])
    simple('ferry_dns_rate_limited_slips_total', 'Truncated replies sent to rate-limited clients instead of dropping', [], () => [[{}, this.slips]])
    simple('ferry_dns_cache_total', 'Queries answered from the encoded-answer cache (hit) or computed (miss)', ['result'], () => [
      [{ result: 'hit' }, this.cacheHits],
      [{ result: 'miss' }, this.cacheMisses]
    ])
    simple('ferry_dns_cache_invalidations_total', 'Times the answer cache was dropped because the data changed', [], () => [[{}, this.invalidations]])
  }

  /** One answered query. `qtype` and `rcode` as on the wire. */
  query (transport: number, qtype: number, rcode: number, seconds: number): void {
    const slot = TYPE_NAMES[qtype] === undefined ? 0 : (qtype & 0xff)
    const q = (transport * TYPE_SLOTS + slot) * RCODE_SLOTS + (rcode < RCODE_SLOTS ? rcode : RCODE.SERVFAIL)
    this.queries[q] = (this.queries[q] as number) + 1
    const h = this.latency[transport] as Float64Array
    let i = 0
    while (i < BUCKETS.length && seconds > (BUCKETS[i] as number)) i++
    h[i] = (h[i] as number) + 1
    h[SUM] = (h[SUM] as number) + seconds
    h[COUNT] = (h[COUNT] as number) + 1
  }

  /** Total queries answered so far (all transports, types and codes); for status() and tests. */
  totalQueries (): number {
    let n = 0
    for (const v of this.queries) n += v
    return n
  }

  private flushQueries (counter: Counter<'transport' | 'type' | 'rcode'>): void {
    for (let i = 0; i < this.queries.length; i++) {
      const delta = (this.queries[i] as number) - (this.flushedQueries[i] as number)
      if (delta === 0) continue
      this.flushedQueries[i] = this.queries[i] as number
      const rcode = i % RCODE_SLOTS
      const slot = Math.floor(i / RCODE_SLOTS) % TYPE_SLOTS
      const transport = Math.floor(i / (RCODE_SLOTS * TYPE_SLOTS))
      counter.inc({ transport: TRANSPORTS[transport] as string, type: slot === 0 ? 'other' : TYPE_NAMES[slot] ?? String(slot), rcode: RCODE_NAMES[rcode] as string }, delta)
    }
  }
}

/**
 * A Prometheus histogram over the arrays DnsMetrics fills. Implements what a prom-client
 * Registry asks of a metric (`name`, `help`, `type`, `aggregator`, `get()`), in the shape
 * prom-client's own Histogram returns.
 */
class LatencyHistogram {
  readonly name = 'ferry_dns_request_duration_seconds'
  readonly help = 'Time from receiving a DNS query to handing the reply to the socket'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly data: Float64Array[]

  constructor (data: Float64Array[]) { this.data = data }

  async get (): Promise<Record<string, unknown>> {
    const values: Array<{ value: number, labels: Record<string, string | number>, metricName: string }> = []
    this.data.forEach((h, t) => {
      const transport = TRANSPORTS[t] as string
      let cumulative = 0
      BUCKETS.forEach((le, i) => {
        cumulative += h[i] as number
        values.push({ value: cumulative, labels: { le, transport }, metricName: `${this.name}_bucket` })
      })
      cumulative += h[BUCKETS.length] as number
      values.push({ value: cumulative, labels: { le: '+Inf', transport }, metricName: `${this.name}_bucket` })
      values.push({ value: h[BUCKETS.length + 1] as number, labels: { transport }, metricName: `${this.name}_sum` })
      values.push({ value: h[BUCKETS.length + 2] as number, labels: { transport }, metricName: `${this.name}_count` })
    })
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    for (const h of this.data) h.fill(0)
  }
}
