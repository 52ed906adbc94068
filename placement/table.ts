import { z } from 'zod'

/**
 * The placement table: what the planner's partitioning engine knows, compiled into numbers a
 * proxy can rank gateways with in a few hundred nanoseconds, with no model, no embedder and no
 * store round trip on the write path. The planner publishes it as the store document
 * `placement-table` and announces each new one on the `placement-table` channel
 * (state/channels.ts); proxies load it, check it with `placementTableSchema` and swap it in
 * whole (FirstTouchPlacer.setTable).
 *
 * Shares are carried unnormalised, as the model blends them (planner/partition/model.ts):
 *
 *     p(site) ∝ volumes[volume] (or prior when the volume is unknown) + origins[origin site]
 *
 * and each gateway carries its expected access latency for a client at each site, as the
 * planner's AffinityScorer (the rebalancer's ranking) costs it, health penalty included. Since
 * that cost is linear in the shares, the proxy's Σ p·cost / Σ p ranks gateways exactly as the
 * scorer would rank them for the predicted shares.
 */
export const PLACEMENT_TABLE_FORMAT = 'ferry-placement-table'
export const PLACEMENT_TABLE_VERSION = 1
/** The store document and channel name. */
export const PLACEMENT_TABLE_DOC = 'placement-table'

export interface PlacementTableModel {
  /** Increases by one with every model the planner swaps in. */
  version: number
  trainedAt: string
  embedder: string
  examples: number
}

export interface PlacementTable {
  format: typeof PLACEMENT_TABLE_FORMAT
  version: typeof PLACEMENT_TABLE_VERSION
  publishedAt: number
  /** null: no model yet; proxies place by write locality, then hashing. */
  model: PlacementTableModel | null
  /** Site order of every vector below. */
  sites: string[]
  /** Expected access latency (ms) at each gateway for a client at each site, health penalty included. */
  gateways: Array<{ id: string, cost: number[] }>
  /** Gateways that must receive no new block (full, draining, predicted to fail). */
  exclude: string[]
  /** Unnormalised shares of a block of a volume the model has no history of. */
  prior: number[]
  /** Unnormalised shares of a new block of each volume the model has history of. */
  volumes: Record<string, number[]>
  /** Added when the creating request's site is known: where data created there is read. */
  origins: Record<string, number[]>
}

const weights = z.array(z.number().finite().nonnegative())

export const placementTableSchema = z.object({
  format: z.literal(PLACEMENT_TABLE_FORMAT),
  version: z.literal(PLACEMENT_TABLE_VERSION),
  publishedAt: z.number().finite(),
  model: z.object({
    version: z.number().int().nonnegative(),
    trainedAt: z.string(),
    embedder: z.string(),
    examples: z.number().int().nonnegative()
  }).nullable(),
  sites: z.array(z.string()),
  gateways: z.array(z.object({ id: z.string(), cost: weights })),
  exclude: z.array(z.string()),
  prior: weights,
  volumes: z.record(weights),
  origins: z.record(weights)
}).superRefine((t, ctx) => {
  const S = t.sites.length
  const check = (v: number[], path: Array<string | number>): void => {
    if (v.length !== S) ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `expected ${S} values (one per site), got ${v.length}` })
  }
  if (t.model !== null) check(t.prior, ['prior'])
  t.gateways.forEach((g, i) => { check(g.cost, ['gateways', i, 'cost']) })
  for (const [k, v] of Object.entries(t.volumes)) check(v, ['volumes', k])
  for (const [k, v] of Object.entries(t.origins)) check(v, ['origins', k])
})

/** A table without a model: write locality, then hashing, minus the excluded gateways. */
export function emptyPlacementTable (exclude: string[] = [], publishedAt = Date.now()): PlacementTable {
  return { format: PLACEMENT_TABLE_FORMAT, version: PLACEMENT_TABLE_VERSION, publishedAt, model: null, sites: [], gateways: [], exclude, prior: [], volumes: {}, origins: {} }
}
