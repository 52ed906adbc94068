/**
 * What the clients saw, and the checks on it. Every block has exactly one writer, which issues its
 * writes one after another, so the version a read may return is fully determined by the history:
 * the last write acknowledged before the read started, or any write that was not (yet)
 * acknowledged after it — a write that failed or timed out may or may not have landed.
 *
 * - lost: a read returned 404 although a write of the block was acknowledged and not deleted;
 * - stale: a read returned a version older than one acknowledged before the read started;
 * - corrupt: a read returned bytes no writer ever wrote to that block.
 */

/** The version of a block that does not exist (never written, or deleted). */
export const ABSENT = '(absent)'

export interface WriteRecord {
  seq: number
  op: 'put' | 'delete'
  /** Date.now() at the start, to line up with the planner's migration log. */
  wallStartedAt: number
  /** Body hash for a put, ABSENT for a delete. */
  version: string
  startedAt: number
  endedAt: number | undefined
  acked: boolean
  etag: string | undefined
  via: string
}

export type AnomalyKind = 'lost' | 'stale' | 'corrupt'

export interface Anomaly {
  kind: AnomalyKind
  key: string
  via: string
  phase: string
  observed: string
  allowed: string[]
  at: string
  /** The block's last writes when the read was judged (History.describeWrites). */
  writes: string[]
}

interface BlockLog {
  writes: WriteRecord[]
  /** Every version ever written to the block, to tell stale (older) from corrupt (never written). */
  written: Set<string>
}

/** Longer than any read of a history takes (clients time out well before): see beginWrite. */
const RETAIN_MS = 120_000

export class History {
  private readonly blocks = new Map<string, BlockLog>()
  readonly anomalies: Anomaly[] = []

  keys (): string[] { return [...this.blocks.keys()] }

  beginWrite (key: string, op: 'put' | 'delete', version: string, via: string): WriteRecord {
    let log = this.blocks.get(key)
    if (log === undefined) { log = { writes: [], written: new Set() }; this.blocks.set(key, log) }
    const w: WriteRecord = { seq: (log.writes.at(-1)?.seq ?? -1) + 1, op, wallStartedAt: Date.now(), version, startedAt: performance.now(), endedAt: undefined, acked: false, etag: undefined, via }
    log.writes.push(w)
    log.written.add(version)
    // Only the tail matters for checks; keep a bounded history so a long soak does not grow
    // without limit. A read still in flight is judged against the last write acknowledged before
    // it *started*: trimmed to the last acknowledgement now, a read that began before it lost
    // its base, and the version it rightly returned was reported stale (one in the 10,000-move
    // run at R = 2: a read that began before v2016 was acknowledged and returned v2015, judged
    // after v2017's start had trimmed v2015 away). So only writes superseded by an
    // acknowledgement older than any read may take (RETAIN_MS) go.
    if (log.writes.length > 64) {
      const horizon = w.startedAt - RETAIN_MS
      const base = findLastIndex(log.writes, x => x.acked && (x.endedAt as number) < horizon)
      if (base > 32) log.writes.splice(0, base)
    }
    return w
  }

  endWrite (w: WriteRecord, acked: boolean, etag?: string): void {
    w.endedAt = performance.now()
    w.acked = acked
    w.etag = etag
  }

  /**
   * The block's retained writes, one line each (version, proxy, wall-clock start, outcome and
   * duration): what a report of an anomaly needs to be read against the faults' times.
   */
  describeWrites (key: string, last = 6): string[] {
    const writes = this.blocks.get(key)?.writes ?? []
    return writes.slice(-last).map(w => {
      const took = w.endedAt === undefined ? 'in flight' : `${w.acked ? 'acked' : 'failed'} after ${Math.round(w.endedAt - w.startedAt)} ms`
      return `${w.op} ${w.version} via ${w.via} at ${new Date(w.wallStartedAt).toISOString()}, ${took}`
    })
  }

  /** The versions a read that ran over [startedAt, endedAt] may return. */
  allowed (key: string, startedAt: number, endedAt: number): Set<string> {
    const writes = this.blocks.get(key)?.writes ?? []
    const lastAck = findLastIndex(writes, w => w.acked && (w.endedAt as number) < startedAt)
    const allowed = new Set<string>()
    allowed.add(lastAck < 0 ? ABSENT : (writes[lastAck] as WriteRecord).version)
    // Writes after it that were not acknowledged before the read began: in flight, failed
    // (perhaps applied), or acknowledged while the read ran.
    for (let i = lastAck + 1; i < writes.length; i++) {
      const w = writes[i] as WriteRecord
      if (w.startedAt < endedAt) allowed.add(w.version)
    }
    // Writes trimmed away before the first kept one cannot be told apart from "never written".
    if (lastAck < 0 && writes.length > 0 && writes[0]?.seq !== 0) allowed.add(ABSENT)
    return allowed
  }

  /** Checks one completed read; returns the anomaly it is, if any. */
  checkRead (key: string, startedAt: number, endedAt: number, observed: string, via: string, phase: string): AnomalyKind | undefined {
    return this.judge(key, this.allowed(key, startedAt, endedAt), observed, via, phase)
  }

  /** Checks what a request observed against the versions it was allowed to see. */
  judge (key: string, allowed: Set<string>, observed: string, via: string, phase: string): AnomalyKind | undefined {
    if (allowed.has(observed)) return undefined
    const kind: AnomalyKind = observed === ABSENT ? 'lost' : this.blocks.get(key)?.written.has(observed) === true ? 'stale' : 'corrupt'
    this.anomalies.push({ kind, key, via, phase, observed, allowed: [...allowed], at: new Date().toISOString(), writes: this.describeWrites(key) })
    return kind
  }

  /**
   * Whether the block may have been absent at some time between two wall-clock times (ms): the
   * last write sent before `from` was a delete, or a delete was sent in between.
   */
  mayBeAbsentBetween (key: string, from: number, to: number): boolean {
    const writes = this.blocks.get(key)?.writes ?? []
    const before = findLastIndex(writes, w => w.wallStartedAt < from)
    // Nothing sent before `from`: not written yet, or its history was trimmed (then: cannot tell).
    if (before < 0 || (writes[before] as WriteRecord).op === 'delete') return true
    return writes.some(w => w.op === 'delete' && w.wallStartedAt >= from && w.wallStartedAt <= to)
  }

  /** The version every read should see once nothing is in flight (undefined: unknown, a failed write is pending). */
  settledVersion (key: string): string | undefined {
    const writes = this.blocks.get(key)?.writes ?? []
    const last = writes.at(-1)
    return last === undefined ? ABSENT : last.acked ? last.version : undefined
  }
}

/** Counts of everything the clients saw, by kind. */
export class Tally {
  /** The schedule's current step: every finding and refusal is attributed to it. */
  phase = 'start-up'
  writesAcked = 0
  deletesAcked = 0
  writesNotAcked = 0
  reads = 0
  readsFailed = 0
  lost = 0
  stale = 0
  corrupt = 0
  /** Typed refusals: 503 + Retry-After + {error:{code}}, by code. */
  readonly refusals = new Map<string, number>()
  /** Failures through a process the schedule had taken down (expected), by what the client saw. */
  readonly outages = new Map<string, number>()
  /** Anything else: each one a finding, by signature, with the phases it happened in. */
  readonly findings = new Map<string, { count: number, phases: Set<string>, example: string }>()
  /** Typed gateway errors (502/504 FERRY_GATEWAY_*) while the schedule had a gateway failing, by signature. */
  readonly gatewayErrors = new Map<string, number>()
  /** Signatures the current step makes legitimate (a dead gateway's blocks give typed 502s). */
  tolerated: RegExp | undefined
  /** Reused idle connections that the server closed as the request went out (the keep-alive race). */
  keepAliveRaces = 0

  refusal (code: string): void { bump(this.refusals, `${code}`) }
  outage (what: string): void { bump(this.outages, what) }

  finding (signature: string, example: string): void {
    if (this.tolerated?.test(signature) === true) { bump(this.gatewayErrors, signature); return }
    const f = this.findings.get(signature)
    if (f === undefined) this.findings.set(signature, { count: 1, phases: new Set([this.phase]), example })
    else { f.count++; f.phases.add(this.phase) }
  }

  anomaly (kind: AnomalyKind): void {
    if (kind === 'lost') this.lost++
    else if (kind === 'stale') this.stale++
    else this.corrupt++
  }
}

function bump (m: Map<string, number>, k: string): void { m.set(k, (m.get(k) ?? 0) + 1) }

function findLastIndex<T> (a: readonly T[], f: (x: T) => boolean): number {
  for (let i = a.length - 1; i >= 0; i--) if (f(a[i] as T)) return i
  return -1
}
