/**
 * Encoded answers for the fast path, keyed by query type and lower-case wire name, and per
 * client site for answers that depend on it. A body is a complete response without the OPT
 * record; the fast path copies it, patches id, flags and the question's letter case, and
 * appends the OPT.
 *
 * Bounded without an LRU list: two generations. Inserts go to the young map; when it holds
 * half the budget it becomes the old one and the previous old one is dropped. Hits in the old
 * generation are promoted. Random-name floods thus evict in O(1) and the answers in use
 * survive, at the cost of at most twice a miss for an entry that aged out.
 */

export interface CachedBody {
  readonly bytes: Buffer
  readonly rcode: number
}

export type CacheEntry =
  | { readonly siteDependent: false, readonly body: CachedBody }
  | { readonly siteDependent: true, readonly bySite: Map<string, CachedBody> }

type Generation = Map<number, Map<string, CacheEntry>>

export class AnswerCache {
  private young: Generation = new Map()
  private old: Generation = new Map()
  private youngSize = 0
  private readonly half: number

  constructor (maxEntries: number) {
    this.half = Math.max(8, maxEntries >>> 1)
  }

  get size (): number {
    return this.youngSize + countOf(this.old)
  }

  get (qtype: number, key: string): CacheEntry | undefined {
    const hit = this.young.get(qtype)?.get(key)
    if (hit !== undefined) return hit
    const aged = this.old.get(qtype)?.get(key)
    if (aged !== undefined) {
      this.old.get(qtype)?.delete(key)
      this.put(qtype, key, aged, entryWeight(aged))
    }
    return aged
  }

  /** Stores `body`; for site-dependent answers under `site` ('' = no site). */
  set (qtype: number, key: string, siteDependent: boolean, site: string, body: CachedBody): void {
    if (!siteDependent) {
      this.put(qtype, key, { siteDependent: false, body }, 1)
      return
    }
    const existing = this.get(qtype, key) // promotes an old entry, keeping its other sites
    if (existing !== undefined && existing.siteDependent) {
      if (!existing.bySite.has(site)) this.youngSize++
      existing.bySite.set(site, body)
      this.maybeAge()
      return
    }
    this.put(qtype, key, { siteDependent: true, bySite: new Map([[site, body]]) }, 1)
  }

  /** Drops every answer (all types, all sites) for one name. */
  deleteName (key: string): void {
    for (const g of [this.young, this.old]) {
      for (const byName of g.values()) {
        const e = byName.get(key)
        if (e === undefined) continue
        byName.delete(key)
        if (g === this.young) this.youngSize -= entryWeight(e)
      }
    }
  }

  clear (): void {
    this.young = new Map()
    this.old = new Map()
    this.youngSize = 0
  }

  private put (qtype: number, key: string, entry: CacheEntry, weight: number): void {
    let byName = this.young.get(qtype)
    if (byName === undefined) this.young.set(qtype, byName = new Map())
    const previous = byName.get(key)
    if (previous !== undefined) this.youngSize -= entryWeight(previous)
    byName.set(key, entry)
    this.youngSize += weight
    this.maybeAge()
  }

  private maybeAge (): void {
    if (this.youngSize < this.half) return
    this.old = this.young
    this.young = new Map()
    this.youngSize = 0
  }
}

function entryWeight (e: CacheEntry): number {
  return e.siteDependent ? e.bySite.size : 1
}

function countOf (g: Generation): number {
  let n = 0
  for (const byName of g.values()) for (const e of byName.values()) n += entryWeight(e)
  return n
}
