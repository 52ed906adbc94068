/**
 * The agent's own Prometheus metrics. The registry is passed in (lib/metrics.ts explains why),
 * and metrics are fetched if already registered so that two agents in one test process, or a
 * restarted agent, share them instead of failing on a duplicate name.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import { FIELDS, type AgentSample, type FieldName } from '../telemetry/fields.js'

function counter<L extends string> (registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  return (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] })
}

function gauge<L extends string> (registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
  return (registry.getSingleMetric(name) as Gauge<L> | undefined) ?? new Gauge({ name, help, labelNames, registers: [registry] })
}

export class AgentMetrics {
  readonly samplesTaken: Counter
  readonly samplesPushed: Counter
  /** reason: `overflow` (buffer full while the planner was away) or `rejected` (planner said 400/413). */
  readonly samplesDropped: Counter<'reason'>
  /** status: an HTTP status, `network` or `timeout`. */
  readonly pushErrors: Counter<'status'>
  readonly buffered: Gauge
  readonly lastPush: Gauge
  /** The latest value of each sample field; a field missing from the last sample is removed. */
  readonly field: Gauge<'field'>
  readonly sourceUnavailable: Counter<'source'>
  readonly sampleErrors: Counter

  constructor (registry: Registry) {
    this.samplesTaken = counter(registry, 'ferry_agent_samples_taken_total', 'samples taken')
    this.samplesPushed = counter(registry, 'ferry_agent_samples_pushed_total', 'samples the planner accepted')
    this.samplesDropped = counter(registry, 'ferry_agent_samples_dropped_total', 'samples given up on, by reason (overflow: buffer full while the planner was away; rejected: the planner refused them as invalid)', ['reason'])
    this.pushErrors = counter(registry, 'ferry_agent_push_errors_total', 'failed pushes, by HTTP status or network/timeout', ['status'])
    this.buffered = gauge(registry, 'ferry_agent_buffered_samples', 'samples waiting to be pushed')
    this.lastPush = gauge(registry, 'ferry_agent_last_push_success_timestamp_seconds', 'when the planner last accepted a push (Unix seconds)')
    this.field = gauge(registry, 'ferry_agent_sample_value', 'latest value of each sample field (units: see agent/README.md)', ['field'])
    this.sourceUnavailable = counter(registry, 'ferry_agent_source_unavailable_total', 'samples for which a source could not be read (stat, psi, meminfo, diskstats, peers, probe)', ['source'])
    this.sampleErrors = counter(registry, 'ferry_agent_sample_errors_total', 'ticks that produced no sample because sampling itself failed')
  }

  observeSample (sample: AgentSample): void {
    this.samplesTaken.inc()
    for (const f of Object.keys(FIELDS) as FieldName[]) {
      const v = sample[f]
      if (v === undefined) this.field.remove({ field: f })
      else this.field.set({ field: f }, v)
    }
  }
}
