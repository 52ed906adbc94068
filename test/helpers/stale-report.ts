import fs from 'node:fs'
import type { Test } from 'tap'
import { request } from 'undici'
import type { Anomaly, AnomalyKind } from '../../bench/fleet-faults/ledger.js'

/**
 * What a stale read in a history test needs to be understood: the block's writes (kept by the
 * ledger with the anomaly) and its set's changes around the read, from whichever planner admin
 * answers. The set's history is taken the moment the read is judged (the store keeps only the
 * latest entries) and again when the report is printed.
 */
export class StaleReport {
  private readonly taken = new Map<string, Promise<unknown[]>>()

  /** accessLogs: the proxies' JSON-lines access logs (recorder.accessLog), to show which gateway served each request. */
  constructor (private readonly admins: readonly string[], private readonly volume: string, private readonly accessLogs: readonly string[] = []) {}

  /** Call with each read's verdict (History.checkRead). */
  judged (key: string, kind: AnomalyKind | undefined): void {
    if (kind === 'stale') this.taken.set(key, this.history(key))
  }

  /** Comments the first stale reads with their writes and the set's changes within 2 s of them. */
  async print (t: Test, stale: readonly Anomaly[]): Promise<void> {
    for (const a of stale.slice(0, 3)) {
      t.comment(`${a.kind}: ${JSON.stringify(a)}`)
      for (const line of a.writes) t.comment(`  ${line}`)
      const at = Date.parse(a.at)
      const seen = new Set<string>()
      for (const h of [...((await this.taken.get(a.key)) ?? []), ...(await this.history(a.key))]) {
        const line = JSON.stringify(h)
        if (Math.abs(((h as { at?: number }).at ?? 0) - at) < 2000 && !seen.has(line)) { seen.add(line); t.comment(`  set: ${line}`) }
      }
      for (const [i, file] of this.accessLogs.entries()) {
        for (const line of this.accessNear(file, a.key, at)) t.comment(`  proxy ${i}: ${line}`)
      }
    }
  }

  /** The access-log lines of one block within 1 s of `at` (the log's `t` is when the request began). */
  private accessNear (file: string, key: string, at: number): string[] {
    let text: string
    try { text = fs.readFileSync(file, 'utf8') } catch { return [] }
    const out: string[] = []
    for (const line of text.split('\n')) {
      if (!line.includes(`"block":"${key}"`)) continue
      let e: { t: string, volume: string, op: string, status: number, gateway: string | null, ms: number }
      try { e = JSON.parse(line) as typeof e } catch { continue } // the line being written
      if (e.volume === this.volume && Math.abs(Date.parse(e.t) - at) < 1000) out.push(`${e.t} ${e.op} ${e.status} ${e.gateway ?? '-'} ${e.ms} ms`)
    }
    return out
  }

  private async history (key: string): Promise<unknown[]> {
    for (const admin of this.admins) {
      const h = await request(`${admin}/v1/blocks/${this.volume}/${key}/history`).then(async r => (await r.body.json() as { history?: unknown[] }).history).catch(() => undefined)
      if (h !== undefined) return h
    }
    return []
  }
}
