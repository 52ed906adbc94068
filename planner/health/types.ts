/**
 * Telemetry as the health model sees it. One sample per gateway per tick (the agent samples
 * every second by default); every signal is optional because not every host exposes every
 * source (no PSI on old kernels, no probe before the gateway is up) and a missing value must
 * not be mistaken for a zero.
 */

/** The gateway signals, in the order of the CSV export. Higher is worse for every one. */
export const SIGNALS = [
  'cpu',
  'mem_pressure',
  'disk_util',
  'disk_await_ms',
  'net_latency_ms',
  'probe_latency_ms',
  'probe_error_rate'
] as const

export type SignalName = typeof SIGNALS[number]

/**
 * One telemetry sample. Units: `cpu`, `mem_pressure`, `disk_util` and `probe_error_rate` are
 * fractions in [0, 1] (mem_pressure: PSI "some avg10" / 100 where the kernel has PSI, else
 * 1 - available/total); the `_ms` signals are milliseconds. `timestamp` is Unix milliseconds.
 */
export type TelemetrySample = {
  timestamp: number
} & { [S in SignalName]?: number }

/** A sample with the gateway it came from: a row of the telemetry CSV export. */
export type TelemetryRecord = TelemetrySample & { gateway: string }

/**
 * What the model reads from a sample: any numeric field by name. TelemetrySample is one; the
 * NAB adapter feeds `{ timestamp, value }`.
 */
export type SampleLike = { timestamp: number } & { readonly [signal: string]: unknown }

/** How a signal turns into health. */
export interface SignalSpec {
  name: string
  /**
   * `up`: only high values are bad (every gateway signal); `both`: either direction is news
   * (a generic metric with no known failure side, e.g. a NAB series).
   */
  direction: 'up' | 'both'
  /**
   * The level at which the gateway is failed (health 0), in the signal's units; undefined
   * when no level is known: the signal then only contributes novelty.
   */
  limit?: number
}

/**
 * Default failure levels. Fractions: a saturated CPU or disk and exhausted memory stop a
 * gateway; latencies: an object gateway whose disk await passes a quarter second or whose own
 * probe takes a second has, for its clients, failed; a fifth of probes failing is an outage.
 */
export const DEFAULT_SIGNAL_SPECS: readonly SignalSpec[] = [
  { name: 'cpu', direction: 'up', limit: 0.97 },
  { name: 'mem_pressure', direction: 'up', limit: 0.9 },
  { name: 'disk_util', direction: 'up', limit: 0.98 },
  { name: 'disk_await_ms', direction: 'up', limit: 250 },
  { name: 'net_latency_ms', direction: 'up', limit: 500 },
  { name: 'probe_latency_ms', direction: 'up', limit: 1000 },
  { name: 'probe_error_rate', direction: 'up', limit: 0.2 }
]

/** Per-signal part of an assessment, for the admin API and for explaining a decision. */
export interface SignalAssessment {
  /** Latest value. */
  value: number
  /** Median forecast at the horizon. */
  forecast: number
  /** Forecast interval at the model's confidence level. */
  forecastLow: number
  forecastHigh: number
  /** Expected health of this signal at the horizon, in [0, 1]. */
  health: number
  /** Behavioural surprise, -log10 p (0: ordinary). */
  surprise: number
}

export type TrendDirection = 'improving' | 'stable' | 'degrading'

export interface HealthAssessment {
  gateway: string
  /** Time of the newest sample used (Unix ms). */
  at: number
  horizonS: number
  /** Predicted health at the horizon, in [0, 1] (1: healthy). */
  score: number
  /** Interval of the predicted health at `level` (e.g. 0.9). */
  lower: number
  upper: number
  level: number
  /** How much to trust the score, in [0, 1]: a narrow interval on enough fresh data. */
  confidence: number
  /** Health now (the same model at horizon 0). */
  current: number
  trend: { direction: TrendDirection, perMinute: number }
  /** Novelty of the gateway's behaviour, in [0, 1), and the signal responsible. */
  novelty: number
  noveltySignal?: string
  /** The signal that limits the score, if any is below full health. */
  limitingSignal?: string
  signals: Record<string, SignalAssessment>
  /** The predicted health's interval at 80 % and 95 % (same construction as lower/upper). */
  intervals: Array<{ level: number, lower: number, upper: number }>
  /**
   * Measured coverage of this gateway's forecast intervals at the model's level, 80 % and 95 %:
   * the share of its last matured forecasts (pooled over signals) whose interval held the
   * realised level; null before any has matured.
   */
  coverage: Array<{ level: number, coverage: number | null, n: number }>
  /** Samples this gateway's state has taken in (warm-up is visible in confidence). */
  samples: number
}
