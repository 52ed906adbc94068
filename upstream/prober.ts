import type { Dispatcher } from 'undici'
import { describeGatewayError } from './connect.js'

/**
 * Active health checks of a gateway, one rule for every role that probes: the proxy (which takes
 * a gateway out of its routes) and the planner (which stops choosing it as a target and starts
 * evacuation). Two roles counting differently would disagree about the same gateway for as long
 * as their thresholds differ; keeping the rule here keeps them in step.
 */

export interface ProbeThresholds {
  /** Passing probes in a row that bring a down gateway back. */
  healthyThreshold: number
  /** Failing probes in a row that take an up gateway out. */
  unhealthyThreshold: number
}

/**
 * One probe: GET `path` on the gateway's pool within `timeoutMs`. Any answer below 500 passes (a
 * 404 from a gateway without a health path still proves it serves). Resolves to null when it
 * passed, else to why it failed (a socket error code, a TLS failure, or the status); never rejects.
 */
export async function probeOnce (pool: Dispatcher, path: string, timeoutMs: number): Promise<string | null> {
  try {
    const res = await pool.request({ method: 'GET', path, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) })
    await res.body.dump()
    return res.statusCode < 500 ? null : `status ${res.statusCode}`
  } catch (err) {
    // Socket errors carry a string code (ECONNREFUSED); the timeout's DOMException carries a
    // number (23), which says nothing in a log, so its message is kept instead; a failed TLS
    // handshake says so (the CA is what to look at).
    return describeGatewayError(err)
  }
}

/**
 * A gateway's verdict from its recent probes, with hysteresis: it starts up (a fresh process
 * serves at once; the first failed probes or requests take a dead gateway out within seconds) and
 * flips only after a run of `unhealthyThreshold` failures or `healthyThreshold` passes, so one
 * lost probe does not flap routes.
 */
export class ProbeState {
  up = true
  /** When the last probe finished (ms since the epoch; 0: never). */
  lastAt = 0
  /** Why the last probe failed; null after a pass. */
  lastError: string | null = null
  private passes = 0
  private failures = 0

  /** Records a probe's outcome (null: passed); returns true when `up` flipped. */
  record (error: string | null, thresholds: ProbeThresholds, at = Date.now()): boolean {
    this.lastAt = at
    this.lastError = error
    if (error === null) {
      this.failures = 0
      this.passes++
      if (!this.up && this.passes >= thresholds.healthyThreshold) return (this.up = true)
    } else {
      this.passes = 0
      this.failures++
      if (this.up && this.failures >= thresholds.unhealthyThreshold) { this.up = false; return true }
    }
    return false
  }
}
