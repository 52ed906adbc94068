import { FerryError } from '../../lib/errors.js'

/** A gateway as every affinity ranking sees it: where it is, its room and its health. */
export interface GatewayInfo {
  id: string
  site: string
  /** 0 = unlimited. */
  capacityBytes: number
  usedBytes: number
  healthy: boolean
  /** [0, 1], 1 = healthy; from the health model. Missing = 1. */
  healthScore?: number
}

/** A caller's mistake (bad options, bad latency values): 400, so the admin API can pass it on. */
export function badInput (message: string, details?: Record<string, unknown>): FerryError {
  return new FerryError('FERRY_AFFINITY_BAD_INPUT', message, 400, details)
}
