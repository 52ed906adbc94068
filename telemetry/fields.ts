/**
 * The telemetry sample fields: what the agent measures, what the planner accepts on
 * `POST /v1/telemetry`, what the store keeps. One list shared by the agent, the ingestion
 * endpoint and the node_exporter scrape, so a field cannot be spelt two ways.
 *
 * The first seven are the health model's signals (planner/health/types.ts `SIGNALS`, same names,
 * same units) and are the columns of the CSV export; the others are context an operator or a
 * later model can use. Every field is optional: a source that is missing on this host (no PSI,
 * no /proc/diskstats in a container, no peers configured) leaves its field out, and a missing
 * value must never be read as zero.
 */

export type FieldKind =
  /** A fraction in [0, 1]. */
  | 'fraction'
  /** Milliseconds, >= 0. */
  | 'ms'
  /** 0 or 1. */
  | 'flag'
  /** A count, >= 0. */
  | 'count'

export interface FieldSpec {
  kind: FieldKind
  /** One line for the README and the agent's /metrics help. */
  help: string
}

/** Milliseconds above this are refused: no probe or disk request waits an hour and returns. */
export const MAX_MS = 3_600_000

export const FIELDS = {
  cpu: { kind: 'fraction', help: 'CPU utilisation over the last interval (1 - idle/total from /proc/stat deltas; iowait counts as idle)' },
  mem_pressure: { kind: 'fraction', help: 'memory pressure: PSI "some avg10"/100 where the kernel has PSI, else 1 - MemAvailable/MemTotal' },
  disk_util: { kind: 'fraction', help: 'share of the last interval the chosen disk had I/O in flight (/proc/diskstats io_ticks delta)' },
  disk_await_ms: { kind: 'ms', help: 'mean time a read or write completed in the last interval spent queued and served (0 when none completed)' },
  net_latency_ms: { kind: 'ms', help: 'median TCP connect round trip to the reachable peers (the timeout when none answered)' },
  probe_latency_ms: { kind: 'ms', help: 'time for GET <probe> to return its whole body (or to fail, or time out)' },
  probe_error_rate: { kind: 'fraction', help: 'share of the last 10 probes that failed (network error, timeout or a status other than 2xx)' },
  mem_pressure_psi: { kind: 'flag', help: '1 when mem_pressure came from PSI, 0 when it is the MemAvailable/MemTotal fallback' },
  mem_used: { kind: 'fraction', help: '1 - MemAvailable/MemTotal, also when PSI is present (a leak shows here before it stalls anything)' },
  net_error_rate: { kind: 'fraction', help: 'share of peers that did not accept a TCP connection within the timeout' },
  passive_latency_ms: { kind: 'ms', help: 'planner side: mean latency of the proxies\' real requests to the gateway over the flush window' },
  passive_error_rate: { kind: 'fraction', help: 'planner side: share of the proxies\' real requests to the gateway that failed over the window' },
  passive_requests: { kind: 'count', help: 'planner side: how many proxied requests the passive fields summarise' }
} as const satisfies Record<string, FieldSpec>

export type FieldName = keyof typeof FIELDS
export const FIELD_NAMES = Object.keys(FIELDS) as FieldName[]

/** The health model's signals, in CSV column order (must equal planner/health SIGNALS). */
export const HEALTH_SIGNALS = [
  'cpu', 'mem_pressure', 'disk_util', 'disk_await_ms', 'net_latency_ms', 'probe_latency_ms', 'probe_error_rate'
] as const satisfies readonly FieldName[]

/** Fields the agent (or a node_exporter scrape) may send; the passive ones only the planner writes. */
export const AGENT_FIELDS = FIELD_NAMES.filter(f => !f.startsWith('passive_'))

/**
 * One sample as the agent pushes it and the store keeps it: `at` (Unix ms) plus whichever
 * fields were available. Structurally a store `TelemetrySample`.
 */
export type AgentSample = { at: number } & { [F in FieldName]?: number }

/** Lower and upper bound of a field's legal values. */
export function fieldRange (name: FieldName): [number, number] {
  switch (FIELDS[name].kind) {
    case 'fraction': return [0, 1]
    case 'flag': return [0, 1]
    case 'ms': return [0, MAX_MS]
    case 'count': return [0, Number.MAX_SAFE_INTEGER]
  }
}
