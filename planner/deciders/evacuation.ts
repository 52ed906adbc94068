import type { DrainPassSummary, Drains } from './drains.js'

/**
 * Evacuation before a predicted failure: what the health trigger (planner/health-monitor.ts)
 * asks for when a gateway's predicted health stands below the threshold with confidence, and
 * lifts once it has clearly recovered. An evacuation is a drain with cause `health` (migration
 * reason `health:<gw>`): the gateway's blocks, hottest first, each to its best target by
 * affinity, capacity and predicted health. An operator's drain of the same gateway is the
 * operator's: recovery does not lift it.
 */
export class Evacuation {
  constructor (private readonly drains: Drains) {}

  /** Starts (or continues, with another pass) moving everything off `gateway`. */
  async evacuate (gateway: string): Promise<DrainPassSummary> {
    return await this.drains.ensure(gateway, 'health')
  }

  /** Lifts a predictive evacuation; an operator's drain stays. True when one was lifted. */
  async release (gateway: string): Promise<boolean> {
    if (!this.evacuating(gateway)) return false
    return await this.drains.undrain(gateway)
  }

  /** Is a predictive evacuation of `gateway` in force (possibly a predecessor's)? */
  evacuating (gateway: string): boolean {
    return this.drains.causeOf(gateway) === 'health'
  }
}
