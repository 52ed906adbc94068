/**
 * The latency model between sites: milliseconds from a client's site to a gateway's site, from
 * the operator's `planner.latency` table. The planner ranks placements and moves by it, the
 * proxy picks the nearest in-sync member of a replica set to read by it, and DNS the edge for a
 * client by it: one model, here below the roles.
 */
import { FerryError } from '../lib/errors.js'

export interface LatencyMatrix {
  /** Milliseconds from a client at `fromSite` to a gateway at `toSite`. */
  get (fromSite: string, toSite: string): number
}

/** The shape of `planner.latency` (planner/config.ts latencySchema). */
export interface LatencyTable {
  sameSiteMs: number
  defaultMs: number
  between: Record<string, Record<string, number>>
}

/**
 * A symmetric latency lookup: `entries[a][b]` or `entries[b][a]`, else `sameSiteMs` for a == b
 * and `defaultMs` otherwise (which is also what clients in no configured site, site '', see).
 * Asymmetric matrices are rare between data centres, and accepting either order means an
 * operator writes each pair once.
 */
export function latencyMatrix (entries: Record<string, Record<string, number>>, opts: { sameSiteMs: number, defaultMs: number }): LatencyMatrix {
  const check = (what: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new FerryError('FERRY_AFFINITY_BAD_INPUT', `latency ${what} must be a finite number ≥ 0 ms, got ${String(v)}`, 400)
    return v
  }
  const same = check('sameSiteMs', opts.sameSiteMs)
  const dflt = check('defaultMs', opts.defaultMs)
  const table = new Map<string, number>()
  for (const [a, row] of Object.entries(entries)) {
    for (const [b, ms] of Object.entries(row)) {
      const v = check(`${a}→${b}`, ms)
      const k1 = a + '\0' + b
      const k2 = b + '\0' + a
      // An explicit entry in the written direction wins over the mirror of the other one.
      table.set(k1, v)
      if (!Object.hasOwn(entries[b] ?? {}, a)) table.set(k2, v)
    }
  }
  return {
    get (from: string, to: string): number {
      const v = table.get(from + '\0' + to)
      if (v !== undefined) return v
      return from === to && from !== '' ? same : dflt
    }
  }
}
