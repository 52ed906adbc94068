/**
 * Affinity: which gateways should hold a block, and which share of a data subset each gateway
 * should serve (the seeds' "affinity map" and "host affinity score").
 *
 * Three layers, from convenient to fast:
 *
 *   AffinityScorer.preferred()   one block, scores as a plain object: the admin API, tests,
 *                                the migration engine's one-off decisions (scorer.ts).
 *   PreferenceKernel             the same ranking compiled for one (sites, gateways) set:
 *                                a dense latency table, no allocation per block (kernel.ts).
 *   AffinityTable                every tracked block in columns (typed arrays), fed with
 *                                accesses or store entries, with all preferred lists recomputed
 *                                by the kernel in one pass (table.ts); the rebalancer plans its
 *                                moves on it (moves.ts).
 *
 * Below them: the latency model (latency.ts), the gateway as a ranking sees it (gateways.ts)
 * and data subsets for host affinity (subsets.ts).
 */
export { badInput, type GatewayInfo } from './gateways.js'
export { latencyMatrix, type LatencyMatrix } from './latency.js'
export { subsetOf, type Subset } from './subsets.js'
export { AffinityScorer, type AffinityScorerOptions, type Preference, type PreferredOptions } from './scorer.js'
export { NO_GATEWAY, PreferenceKernel } from './kernel.js'
export { AffinityTable, type AffinityTableOptions, type TrackedBlock } from './table.js'
export type { MoveCandidate, PlannedMove, PlanOptions } from './moves.js'
export { bestReplacement, setCostMs, type MemberReplacement } from './sets.js'
