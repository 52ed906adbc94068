/**
 * What the DNS server reads its data from. The server never looks at routes, health or the
 * store itself: the process that runs the `dns` role implements this interface over the route
 * table, the site map (fleet/site-map.ts) and gateway health, and the server turns it into
 * answers. Every method is synchronous and called on the query path (only on a cache miss,
 * see below), so implementations read in-memory state and must not block.
 *
 * Caching contract: the server caches encoded answers and serves them until `onChange` fires.
 * An implementation MUST call the listeners whenever anything that could change an answer
 * changes: a volume's or block's preferred gateway, a gateway's health (ejected, degraded,
 * restored), the edges of a site, the site map, the set of proxies. Missing a call means
 * stale answers until the next change; a spurious call only costs a few cache misses.
 *
 * A change that concerns only some volumes (a route update for a volume or one of its blocks)
 * should say so with `{ volumes: [...] }`: the server then drops only those names' answers
 * and every other answer stays cached. Anything else (health, sites, proxies, or not knowing)
 * is a call without an argument, which drops everything.
 */

/** What changed, when the view knows. */
export interface DnsChange {
  /** Only the answers for these volumes (any case) can have changed. */
  readonly volumes?: readonly string[]
}

/** Addresses of edges (ferry proxies), in preference order. Either list may be empty. */
export interface EdgeSet {
  readonly v4: readonly string[]
  readonly v6: readonly string[]
}

/** One proxy as published in `_ferry._tcp.<zone>` SRV records (RFC 2782). */
export interface SrvTarget {
  /** Host name of the proxy, without trailing dot. */
  readonly target: string
  readonly port: number
  /** Lower is preferred. Default 0. */
  readonly priority?: number
  /** Relative weight among equal priorities. Default 0. */
  readonly weight?: number
  /**
   * Addresses of `target`. When `target` is inside the zone, the server also answers A/AAAA
   * for that name and adds these as additional records to the SRV answer (so a client needs
   * no second round trip). Ignored for targets outside the zone.
   */
  readonly v4?: readonly string[]
  readonly v6?: readonly string[]
}

export interface DnsView {
  /**
   * Edges to answer for `<volume>.<zone>`, for a client at `site` (undefined when the client's
   * address matches no site), in preference order: the edge nearest the volume's preferred
   * gateway for that site first. Returns undefined when there is no such volume (NXDOMAIN).
   *
   * `volume` arrives in lower case, because DNS names are case-insensitive: an implementation
   * must match volume ids without regard to case.
   *
   * Health: an edge that fronts only unhealthy (ejected, degraded or draining) gateways for
   * this volume MUST NOT be returned while any edge in front of a healthy gateway holding the
   * volume exists. When no healthy choice is left, return the best unhealthy one rather than
   * nothing: a resolver that gets no address fails harder than a client that gets a slow one.
   * Empty lists for both families produce a NODATA answer.
   */
  volumeEdges (volume: string, site: string | undefined): EdgeSet | undefined

  /**
   * Edges in front of gateway `gateway` (`<gateway>.gw.<zone>`, lower case), regardless of its
   * health: an operator asking for a gateway by name wants that gateway. Undefined = unknown
   * gateway (NXDOMAIN).
   */
  gatewayEdges (gateway: string): EdgeSet | undefined

  /** The proxies, for `_ferry._tcp.<zone>` SRV. An empty list gives NODATA. */
  proxies (): readonly SrvTarget[]

  /**
   * The site of a client address: the EDNS Client Subnet address when the query has one
   * (IPv4 dotted or IPv6 text, host bits zero), else the query's source address. Undefined
   * when no site matches. Typically `new SiteMap(sites).siteOf(address)`.
   */
  siteOf (address: string): string | undefined

  /**
   * Registers `listener`, called (synchronously or not) after any change that can alter an
   * answer, with the scope of the change when it is known. Returns an unsubscribe function.
   */
  onChange (listener: (change?: DnsChange) => void): () => void
}
