import { rendezvousPick, rendezvousRank } from '../lib/rendezvous.js'
import type { Gateway, GatewaySet } from './gateway-set.js'

/**
 * Where a block lives when something (the planner, through the store) has placed it. The proxy
 * only ever reads this from memory: the shared-state layer keeps it current by notification.
 */
export interface PlacedLocation {
  gateway: string
  epoch: number
  phase: 'stable' | 'copying' | 'cutover' | 'done'
  target?: string
}

export interface LocationLookup {
  /** `key` is blockKey(volume, block), already computed by the caller. */
  lookup (key: string): PlacedLocation | undefined
}

export interface Route {
  gateway: Gateway | undefined
  /** True when the block has a placed location: then only that gateway holds it, no fallback. */
  placed: boolean
  location: PlacedLocation | undefined
}

/**
 * Block → gateway. A placed block goes to its location. Any other block goes to the first
 * healthy gateway in rendezvous order (the default placement before the planner moves
 * anything); when every gateway is down it ranks all of them anyway (Envoy's "panic mode"),
 * because refusing outright would turn a health-check blip into a full outage.
 */
export class RouteTable {
  private locations: LocationLookup | undefined

  constructor (private readonly gateways: GatewaySet, locations?: LocationLookup) {
    this.locations = locations
  }

  setLocations (locations: LocationLookup | undefined): void {
    this.locations = locations
  }

  route (key: string, now = Date.now()): Route {
    const location = this.locations?.lookup(key)
    if (location !== undefined) {
      return { gateway: this.gateways.get(location.gateway), placed: true, location }
    }
    const nodes = this.gateways.nodes
    const id = rendezvousPick(key, nodes, gid => this.gateways.isHealthy(gid, now)) ?? rendezvousPick(key, nodes)
    return { gateway: id === undefined ? undefined : this.gateways.get(id), placed: false, location: undefined }
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

  /** Rendezvous ranking of healthy gateways for any key (DNS uses it for volumes). */
  rank (key: string, now = Date.now()): Gateway[] {
    return rendezvousRank(key, this.gateways.nodes)
      .map(id => this.gateways.get(id))
      .filter((g): g is Gateway => g !== undefined && g.isHealthy(now))
  }
}
