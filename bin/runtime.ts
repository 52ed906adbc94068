/**
 * V8 settings of a data-plane process (the proxy and DNS roles, without the planner): what
 * bounds its memory under load, measured with `npm run bench -- proxy` (BENCHMARKS.md "Memory").
 */
import v8 from 'node:v8'
import type { Role } from './node.js'

/**
 * undici parses HTTP/1.1 with llhttp compiled to WebAssembly. V8 compiles it with Liftoff at
 * once, then recompiles the hot parser with TurboFan in the background: that compilation of one
 * very large function peaks at ~35 MB and set the process's peak RSS (VmHWM). Liftoff code parses
 * a response in a few microseconds too; the difference is below what the benchmark resolves.
 * Not for the planner: its placement model may run wasm where TurboFan code matters.
 */
const LIFTOFF_ONLY = '--liftoff-only'

/**
 * The young generation's cap for data-plane workers, in MB per semi-space (V8's default is 16,
 * so up to 48 MB of young heap). A proxy's objects die within a request, so a small nursery
 * costs little scavenging, and a scavenge also frees the dead body buffers (64 KiB each) sooner
 * than a major GC triggered by external memory would. Only settable at process start, so it
 * applies to the workers bin/workers.ts forks (and to `node --max-semi-space-size` by hand).
 */
export const WORKER_EXEC_ARGV = ['--max-semi-space-size=4', LIFTOFF_ONLY]

/**
 * glibc gives each thread that allocates its own malloc arena (up to 8 per core), and V8's
 * background threads (concurrent marking, compilation) hold a few MB in each that are never given
 * back; two arenas are enough for a process whose allocations happen on its main thread. An
 * operator's own MALLOC_ARENA_MAX wins.
 */
export const WORKER_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' }

/** Applies the data-plane settings to this process when it runs no planner; before any HTTP client connects. */
export function tuneDataPlane (roles: ReadonlySet<Role>): void {
  if (roles.has('planner')) return
  v8.setFlagsFromString(LIFTOFF_ONLY)
}
