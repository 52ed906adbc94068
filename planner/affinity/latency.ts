/**
 * The latency model the rankings are made with (fleet/latency.ts, shared with the proxy's read
 * order and DNS): milliseconds from a client's site to a gateway's site, from the operator's
 * `planner.latency` table.
 */
export { latencyMatrix, type LatencyMatrix } from '../../fleet/latency.js'
