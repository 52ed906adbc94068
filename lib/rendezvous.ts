/**
 * Rendezvous (highest-random-weight) hashing: every key ranks every node by hash(key, node)
 * and takes the top one. Removing a node only moves the keys it held; adding one only takes
 * its fair share. The proxy's default placement, DNS's default volume preference and the
 * planner's "static hashing" baseline all use this one ranking so they agree.
 */

/** FNV-1a over UTF-16 code units: fast, allocation-free, good enough once finalised. */
export function hashString (s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/**
 * hashString(blockKey(volume, block)) without building the key: FNV-1a runs on from where the
 * previous part left off, so the hash of a concatenation is the parts' hashes chained.
 */
export function hashBlock (volume: string, block: string): number {
  return hashString(block, hashString('/', hashString(volume)))
}

/** murmur3's finaliser: spreads FNV's weak low bits so ranking by it is uniform. */
function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export interface RendezvousNode { readonly id: string, readonly seed: number }

export function rendezvousNode (id: string): RendezvousNode {
  return { id, seed: hashString(id) }
}

export function rendezvousScore (keyHash: number, node: RendezvousNode): number {
  return fmix32(keyHash ^ node.seed)
}

/** The node ranked first for `key` among `nodes` for which `eligible` holds (all when omitted). */
export function rendezvousPick (key: string, nodes: readonly RendezvousNode[], eligible?: (id: string) => boolean): string | undefined {
  const kh = hashString(key)
  let best: string | undefined
  let bestScore = -1
  for (const node of nodes) {
    if (eligible !== undefined && !eligible(node.id)) continue
    const s = fmix32(kh ^ node.seed)
    if (s > bestScore) { bestScore = s; best = node.id }
  }
  return best
}

/** Every node's id in rendezvous order for `key`, best first. */
export function rendezvousRank (key: string, nodes: readonly RendezvousNode[]): string[] {
  const kh = hashString(key)
  return nodes
    .map(n => ({ id: n.id, s: fmix32(kh ^ n.seed) }))
    .sort((a, b) => b.s - a.s)
    .map(x => x.id)
}
