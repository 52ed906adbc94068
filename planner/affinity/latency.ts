/**
 * The latency model the rankings are made with: milliseconds from a client's site to a
 * gateway's site, from the operator's `planner.latency` table.
 */
import { badInput } from './gateways.js'

export interface LatencyMatrix {
  /** Milliseconds from a client at `fromSite` to a gateway at `toSite`. */
  get (fromSite: string, toSite: string): number
}

/**
 * A symmetric latency lookup: `entries[a][b]` or `entries[b][a]`, else `sameSiteMs` for a == b
 * and `defaultMs` otherwise (which is also what clients in no configured site, site '', see).
 * Asymmetric matrices are rare between data centres, and accepting either order means an
 * operator writes each pair once.
 */
export function latencyMatrix (entries: Record<string, Record<string, number>>, opts: { sameSiteMs: number, defaultMs: number }): LatencyMatrix {
  const check = (what: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw badInput(`latency ${what} must be a finite number ≥ 0 ms, got ${String(v)}`)
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
