import { z } from 'zod'
import { blockKey } from '../lib/ids.js'
import { rendezvousNode, rendezvousRank, type RendezvousNode } from '../lib/rendezvous.js'

/**
 * Replica sets (README "Replica sets"): how many gateways hold each block, how many must hold a
 * write before it is acknowledged, and where a new block's copies go. The proxy (first writes),
 * the planner (repair) and the admin API all read this, so it lives below the roles.
 */
export const replicationSectionSchema = z.object({
  factor: z.number().int().min(1).max(16).default(1)
    .describe('gateways that hold each block (R). 1 is the single-copy model; the sandbox runs 2'),
  minInSync: z.number().int().min(1).max(16).default(1)
    .describe('in-sync members that must store a write before it is acknowledged; fewer reachable: 503 FERRY_REPLICAS_UNAVAILABLE'),
  downAfterMs: z.number().int().min(0).default(30_000)
    .describe('a member unhealthy this long is lost: the planner copies its blocks to another gateway'),
  repairIntervalMs: z.number().int().min(100).default(2_000)
    .describe('how often the planner looks for blocks with fewer in-sync members than the factor'),
  repairConcurrency: z.number().int().min(1).max(256).default(4)
    .describe('repair copies in flight at once (the bandwidth budget)')
}).strict().default({})

export type ReplicationConfig = z.infer<typeof replicationSectionSchema>

/** What placement needs to know of one gateway. */
export interface PlacementGateway {
  readonly id: string
  readonly site: string
}

export interface PlacementView {
  gateways (): readonly PlacementGateway[]
  /** False for a gateway that is ejected, draining or otherwise not to receive new copies. */
  isHealthy (id: string): boolean
}

/**
 * Chooses where a block's copies go. ONE decision point, so that another placement policy
 * (live first-touch placement, issue 21) plugs in here and nowhere else: the proxy's first write
 * and the planner's repair both ask `chooseReplicaSet`.
 *
 * Today: rendezvous order over healthy gateways gives the head (so with R = 1 a block lands
 * exactly where a single-copy ferry put it), then distinct sites first, then distinct gateways.
 */
export class ReplicaPlacer {
  private nodes: RendezvousNode[] = []
  private sites = new Map<string, string>()

  constructor (private readonly view: PlacementView) {
    this.refresh()
  }

  /** After a reload changed the gateways. */
  refresh (): void {
    const gws = this.view.gateways()
    this.nodes = gws.map(g => rendezvousNode(g.id))
    this.sites = new Map(gws.map(g => [g.id, g.site]))
  }

  /**
   * An ordered list of at most `r` gateway ids, preferred reader first. `originSite` is the site
   * of the client whose first write creates the block (unused by hash placement; first-touch
   * placement ranks by it). `exclude`: gateways that must not be chosen (a repair's current
   * members). Fewer than `r` when fewer gateways qualify; unhealthy gateways only when no
   * healthy one is left (refusing would turn a health blip into an outage).
   */
  chooseReplicaSet (volume: string, block: string, originSite: string | undefined, r: number, exclude: readonly string[] = []): string[] {
    void originSite
    const rank = rendezvousRank(blockKey(volume, block), this.nodes).filter(id => !exclude.includes(id))
    const healthy = rank.filter(id => this.view.isHealthy(id))
    const pool = healthy.length > 0 ? [...healthy, ...rank.filter(id => !healthy.includes(id))] : rank
    const out: string[] = []
    const usedSites = new Set(exclude.map(id => this.sites.get(id)))
    // Distinct sites first (a site is a failure domain), then distinct gateways.
    for (const id of pool) {
      if (out.length >= r) break
      if (out.length === 0 || !usedSites.has(this.sites.get(id))) { out.push(id); usedSites.add(this.sites.get(id)) }
    }
    for (const id of pool) {
      if (out.length >= r) break
      if (!out.includes(id)) out.push(id)
    }
    return out
  }
}
