/**
 * A young-generation GC after every `everyBytes` of request and response bodies a process has
 * moved, for processes that stream large bodies (the proxy). Measured with `npm run bench --
 * proxy` and by hand (BENCHMARKS.md, issue 22 "Garbage collection").
 *
 * Why: every body chunk is a fresh 64 KiB ArrayBuffer (Node's HTTP parser copies each request
 * chunk out of the socket's buffer; each read of a gateway socket allocates one), freed only when
 * a GC finds its JS wrapper dead. Those wrappers are a few hundred bytes, so V8's young generation
 * fills slowly and scavenges rarely, while dead body bytes pile up: V8 scavenges on its own only
 * once 32 MB of young backing stores are waiting (for the parser's copies; never for socket
 * reads). V8 counts external memory allocated since the last full GC against the old
 * generation's limit (`OldGenerationSpaceAvailable`), whose headroom over a ~20 MB live heap is
 * ~24 MB: so the pile alone started incremental marking and a full mark-compact every few dozen
 * 1 MiB requests (11–61 majors per 1,000; 20–50 % of the proxy's CPU on large bodies). A scavenge
 * every few MB frees the dead chunks while they are young — one scavenge costs well under a
 * millisecond (it copies only live young objects) — and the pile never reaches the limit.
 *
 * Off (no cost but a comparison per call) until `enable` is called: in-process tests and tools
 * that embed the proxy keep V8's own schedule.
 */
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'

type GcFunction = (options: { type: 'minor' | 'major', execution?: 'sync' | 'async' }) => void

/** Body bytes between two young-generation GCs by default (a fraction of the ~24 MB headroom). */
export const DEFAULT_BODY_GC_BYTES = 4 * 1024 * 1024

let collect: GcFunction | undefined
let everyBytes = Infinity
let pending = 0
let collections = 0

/**
 * Turns the schedule on for this process. `--expose-gc` set at run time gives the gc function to
 * contexts created afterwards only: the main context (and any code that probes `globalThis.gc`)
 * is unchanged.
 */
export function enableBodyGc (bytes = DEFAULT_BODY_GC_BYTES): void {
  if (collect === undefined) {
    v8.setFlagsFromString('--expose-gc')
    collect = runInNewContext('gc') as GcFunction
  }
  everyBytes = bytes
}

/** Counts body bytes moved (or about to be: a request's Content-Length); collects when due. */
export function noteBodyBytes (bytes: number): void {
  pending += bytes
  if (pending < everyBytes) return
  pending = 0
  if (collect === undefined) return
  collections++
  collect({ type: 'minor' })
}

/** Young-generation GCs this schedule asked for since the process started. */
export function bodyGcCollections (): number {
  return collections
}
