import { rendezvousPick, rendezvousRank } from '../lib/rendezvous.js'
import type { BlockLocation } from '../state/types.js'
import type { Gateway, GatewaySet } from './gateway-set.js'
import { nearestInSync } from './replicas.js'

/**
 * Where placed blocks live. The proxy only ever reads this from memory (state/LocationCache,
 * kept current by the store's notifications): no store round trip on the request path.
 * `null` means "known to have no location", `undefined` "not loaded yet"; both route by hash.
 */
export interface LocationLookup {
  get (volume: string, block: string): BlockLocation | null | undefined
}

export interface Route {
  gateway: Gateway | undefined
  /** True when the block has a placed location: then only its in-sync members hold it. */
  placed: boolean
  location: BlockLocation | undefined
}

/**
 * Block → gateway. A placed block goes to its location. Any other block goes to the first
 * healthy gateway in rendezvous order (the default placement before the planner moves
 * anything); when every gateway is down it ranks all of them anyway (Envoy's "panic mode"),
 * because refusing outright would turn a health-check blip into a full outage.
 */
export class RouteTable {
  constructor (private readonly gateways: GatewaySet, private readonly locations?: LocationLookup) {}

  /** `site`: the client's, so that a block with several in-sync members is read from the nearest. */
  route (volume: string, block: string, key: string, now = Date.now(), site?: string): Route {
    const location = this.locations?.get(volume, block)
    if (location !== undefined && location !== null) {
      const gateway = location.inSync.length > 1 ? nearestInSync(this.gateways, location, site, now) : this.gateways.get(location.gateway)
      return { gateway, placed: true, location }
    }
    return this.unplaced(key, now)
  }

  /** The route of a block without a location: its hashed gateway. */
  unplaced (key: string, now = Date.now()): Route {
    return { gateway: this.hashed(key, now), placed: false, location: undefined }
  }

  /** The first healthy gateway in rendezvous order for `key` (any gateway if none is healthy). */
  hashed (key: string, now = Date.now()): Gateway | undefined {
    const nodes = this.gateways.nodes
    const id = rendezvousPick(key, nodes, gid => this.gateways.isHealthy(gid, now)) ?? rendezvousPick(key, nodes)
    return id === undefined ? undefined : this.gateways.get(id)
  }

  /** The next gateway to try for an unplaced block after those in `tried` failed to connect. */
  next (key: string, tried: ReadonlySet<string>, now = Date.now()): Gateway | undefined {
    const rank = rendezvousRank(key, this.gateways.nodes)
    let fallback: Gateway | undefined
    for (const id of rank) {
      if (tried.has(id)) continue
      const g = this.gateways.get(id)
      if (g === undefined) continue
      if (g.isHealthy(now)) return g
      fallback ??= g
    }
    return fallback
  }
}
