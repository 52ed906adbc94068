/**
 * V8 settings of a data-plane process (the proxy and DNS roles, without the planner): what
 * bounds its memory under load, measured with `npm run bench -- proxy` (BENCHMARKS.md "Memory").
 */
import v8 from 'node:v8'
import type { Role } from './node.js'
import { enableBodyGc } from '../lib/body-gc.js'

/**
 * undici parses HTTP/1.1 with llhttp compiled to WebAssembly. V8 compiles it with Liftoff at
 * once, then recompiles the hot parser with TurboFan in the background: that compilation of one
 * very large function peaks at ~35 MB and set the process's peak RSS (VmHWM). Liftoff code parses
 * a response in a few microseconds too; the difference is below what the benchmark resolves.
 * Not for the planner: its placement model may run wasm where TurboFan code matters.
 */
const LIFTOFF_ONLY = '--liftoff-only'

/**
 * The old generation's limit after a full GC: 3× the live heap instead of V8's dynamic 1.1–2×.
 * External memory allocated since the last full GC counts against that limit, and a proxy's body
 * chunks in flight (up to 256 KiB per socket direction, 32 connections in the benchmark) and
 * those promoted while in flight come to more than the ~24 MB of headroom V8 leaves over a ~20 MB
 * live heap: even with the young GCs by body bytes (lib/body-gc.ts), 1 MiB PUTs still ran
 * 7–25 full GCs per 1,000 requests, 0 with this (BENCHMARKS.md, issue 22). The price is garbage
 * the old generation may hold before a full GC: up to twice the live heap (~40 MB for the
 * proxy's; measured peak RSS +6 MB on 1 MiB PUTs). Not for the planner, whose heap is larger.
 */
const HEAP_GROWING = '--heap-growing-percent=200'

/*
 * Tried and not kept (BENCHMARKS.md "Proxy", issue 22): a 4 MB semi-space (V8's default grows
 * to 16 MB) with MALLOC_ARENA_MAX=2 cut peak RSS by 10–30 MB but cost about a quarter more CPU
 * per GET in an A/B (one build with and without them; more scavenges promote requests in flight).
 * Measured again alone (fifth pass, `npm run bench -- proxy-ab`): 4 and 2 MB lowered the peak
 * by 4–12 MB only, and two runs disagreed on the sign of the CPU effect; it can only be given at
 * process start anyway. Nor did malloc's trim threshold or single-threaded scavenges help.
 */

/**
 * Applies the data-plane settings to this process, before any HTTP client connects: the proxy's
 * young-generation GC by body bytes (lib/body-gc.ts); Liftoff and the old generation's headroom
 * when it runs no planner.
 */
export function tuneDataPlane (roles: ReadonlySet<Role>): void {
  if (roles.has('proxy')) enableBodyGc()
  if (roles.has('planner')) return
  v8.setFlagsFromString(LIFTOFF_ONLY)
  v8.setFlagsFromString(HEAP_GROWING)
}
