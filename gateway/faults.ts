import { z } from 'zod'
import { FerryError } from '../lib/errors.js'

/**
 * Injected faults, as one plain data object. A call replaces the whole set (fields left out take
 * their "healthy" default), so a scenario can drive a gateway over time by sending one object per
 * step — latency growing, an error rate rising, a stall, a refusal — and the gateway's behaviour at
 * any moment is exactly the last object it was given, with no hidden history.
 *
 * Faults apply to the data listener only; the admin listener is never faulted, so a test can always
 * reach it to clear them.
 */
export interface Faults {
  /** Delay added before every data-port request is handled, in milliseconds. */
  latencyMs: number
  /** Plus a uniformly random extra delay in [0, jitterMs). */
  jitterMs: number
  /** Fraction in [0, 1] of block requests answered 503 (after any latency), without touching disk. */
  errorRate: number
  /** Accept requests but never answer them until the stall is lifted; they then proceed normally. */
  stall: boolean
  /** Fraction in [0, 1] of block GETs that send the headers and half of the body, then cut the socket. */
  dieMidResponse: number
  /**
   * Refuse new TCP connections. `reset`: accept and reset them at once (ECONNRESET).
   * `unbind`: stop listening, so the kernel refuses them (ECONNREFUSED), as for a dead process.
   * Either way idle keep-alive connections are closed so clients must reconnect; requests
   * already in flight finish.
   */
  refuse: 'none' | 'reset' | 'unbind'
}

export const NO_FAULTS: Readonly<Faults> = Object.freeze({
  latencyMs: 0,
  jitterMs: 0,
  errorRate: 0,
  stall: false,
  dieMidResponse: 0,
  refuse: 'none'
})

const ms = z.number().int().min(0).max(3_600_000)
const fraction = z.number().min(0).max(1)

/** Strict: an unknown key is a typo in a scenario, and silently ignoring it would hide the fault. */
export const faultsSchema = z.object({
  latencyMs: ms.default(0),
  jitterMs: ms.default(0),
  errorRate: fraction.default(0),
  stall: z.boolean().default(false),
  dieMidResponse: fraction.default(0),
  refuse: z.enum(['none', 'reset', 'unbind']).default('none')
}).strict()

export type FaultsInput = z.input<typeof faultsSchema>

/** Validates a fault set; throws FerryError INVALID_FAULTS (400) naming each bad key. */
export function parseFaults (input: unknown): Faults {
  const r = faultsSchema.safeParse(input)
  if (!r.success) {
    const why = r.error.issues.map(i => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')
    throw new FerryError('INVALID_FAULTS', `invalid faults: ${why}`, 400)
  }
  return Object.freeze(r.data)
}

/** True when requests need the slow (fault-checking) path at all. */
export function delaysOrStalls (f: Faults): boolean {
  return f.stall || f.latencyMs > 0 || f.jitterMs > 0
}
