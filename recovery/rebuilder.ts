import { Counter, type Registry } from 'prom-client'
import type { GatewayConfig } from '../fleet/schema.js'
import { blockKey } from '../lib/ids.js'
import { silentLogger, type Logger } from '../lib/log.js'
import type { StateStore, StoreGeneration } from '../state/types.js'
import { listBlocks, type InventoryEntry } from '../upstream/inventory.js'
import { contentHashOf } from '../upstream/kinds.js'
import { generationChannel } from '../state/channels.js'
import type { GenerationWatch } from './generation-watch.js'

/** The lease that makes one process, of all that share the store, do the rebuild. */
export const REBUILD_LEASE = 'rebuild'

export interface LocationRebuilderOptions {
  store: StateStore
  watch: GenerationWatch
  /** The configured gateways (read at each rebuild: a reload may have changed them). */
  gateways: () => readonly GatewayConfig[]
  /** Who holds the rebuild lease, for logs and `GET /v1/...` (host:pid). */
  holder: string
  logger?: Logger
  registry?: Registry
  /** How long to keep retrying gateways that cannot be listed before finishing without them. Default 60 s. */
  deadlineMs?: number
  /** Rebuild lease time to live: a rebuilder that dies is replaced after this long. Default 15 s. */
  leaseTtlMs?: number
  /** Locations recorded at once. Default 64. */
  concurrency?: number
  /**
   * The rebuild reads the inventories no earlier than this long after the store came back (the
   * marker's `createdAt`), then records and finishes. Finishing lets proxies place blocks that
   * have no location anew, and a location recorded earlier could name an older copy than a write
   * that a process which has not heard of the loss acknowledges meanwhile from the cache it had
   * before it. Such a process stops serving from that cache `state.cutOffServeMs` after it last
   * confirmed its generation (GenerationWatch.cacheTrusted), which was before the loss: so this
   * is `cutOffServeMs` plus a margin for clocks; 0 for a store that lives in the process
   * (nothing else can be behind).
   */
  settleMs?: number
}

export interface RebuildReport {
  generation: string
  startedAt: number
  durationMs: number
  /** Gateways listed in full. */
  listed: string[]
  /** Gateways that could not be listed before the deadline: their blocks have no location. */
  unlisted: Array<{ gateway: string, error: string }>
  /** Blocks found (distinct). */
  blocks: number
  /** Locations recorded from the inventories. */
  recorded: number
  /** Blocks a proxy had already placed meanwhile (a new write): its location stands. */
  kept: number
  /** Blocks found on more than one gateway (the newest copy won). */
  duplicates: number
  /**
   * Blocks whose latest trace is a client's delete (a tombstone later than every copy): located
   * on the tombstone's gateway, which answers 404, so a stale copy left elsewhere is not brought
   * back. Counted in `recorded`/`kept` too.
   */
  deleted: number
}

interface Candidate { gateway: string, entry: InventoryEntry, order: number }

/**
 * Rebuilds block locations from what the gateways hold, after the store lost them. When the
 * generation watch says the marker is `rebuilding`, every process with a rebuilder tries for the
 * rebuild lease; the holder lists every gateway's inventory, records a location for each block
 * found, and marks the generation rebuilt.
 *
 * Choices that keep reads correct:
 * - A location is only ever *created* (compare-and-set from "none"): a block a proxy placed during
 *   the rebuild was written after the loss and is the newest version, so its location stands.
 * - A block on several gateways (a migration's source and target before cleanup, a replica set)
 *   goes to the copy written last (its mtime), which is the one later writes went to; the other
 *   copies that provably hold the same bytes (equal content-hash ETags) join it as in-sync
 *   members of its replica set, and the repair decider restores the factor from there.
 * - Gateways that cannot be listed are retried until the deadline; after it the rebuild finishes
 *   without them and says so (logs, `GET /v1/state`), rather than holding reads back forever.
 */
export class LocationRebuilder {
  private readonly logger: Logger
  private running: Promise<RebuildReport | null> | null = null
  private closed = false
  private unsubscribe: (() => void) | null = null
  last: RebuildReport | null = null
  private readonly recordedTotal: Counter

  constructor (private readonly opts: LocationRebuilderOptions) {
    this.logger = (opts.logger ?? silentLogger).child({ component: 'rebuild' })
    const registers = opts.registry === undefined ? [] : [opts.registry]
    this.recordedTotal = new Counter({ name: 'ferry_state_rebuilt_locations_total', help: 'Block locations recorded from gateway inventories after the store lost them', registers })
  }

  /** Rebuilds whenever the watch sees the marker ask for it (now, if it already does). */
  start (): void {
    const onRebuilding = (): void => { void this.rebuild() }
    this.opts.watch.on('rebuilding', onRebuilding)
    // The watch re-reads the marker every second while it says rebuilding: a rebuilder that
    // died with the lease is replaced once the lease expires.
    const retry = setInterval(() => { if (this.opts.watch.rebuilding) void this.rebuild() }, 2000)
    retry.unref()
    this.unsubscribe = () => { this.opts.watch.off('rebuilding', onRebuilding); clearInterval(retry) }
    if (this.opts.watch.rebuilding) void this.rebuild()
  }

  /** One rebuild attempt (concurrent calls share it); null when another process holds the lease or nothing is to do. Never throws. */
  rebuild (): Promise<RebuildReport | null> {
    this.running ??= this.attempt().catch(err => {
      this.logger.warn({ err: (err as Error).message }, 'location rebuild failed; it will be retried')
      return null
    }).finally(() => { this.running = null })
    return this.running
  }

  private async attempt (): Promise<RebuildReport | null> {
    const { store } = this.opts
    const generation = await store.generation()
    if (!generation.rebuilding || this.closed) return null
    const ttl = this.opts.leaseTtlMs ?? 15_000
    const grant = await store.acquireLease(REBUILD_LEASE, this.opts.holder, ttl)
    if (grant === null) return null
    const renew = setInterval(() => {
      store.renewLease(REBUILD_LEASE, this.opts.holder, grant.token, ttl).catch(() => {})
    }, Math.floor(ttl / 3))
    renew.unref()
    try {
      const report = await this.run(generation)
      this.last = report
      return report
    } finally {
      clearInterval(renew)
      await store.releaseLease(REBUILD_LEASE, this.opts.holder, grant.token).catch(() => false)
    }
  }

  private async run (generation: StoreGeneration): Promise<RebuildReport> {
    // The inventories are read only once no process can still be serving from a cache of the
    // generation that was lost (settleMs after the store came back, see the option). Until then
    // a process that has not heard of the loss may acknowledge writes where its old cache says:
    // a location recorded from an earlier listing could name an older copy (an unconfirmed
    // write's, a stale member's) while the acknowledged write sits elsewhere — stale reads in
    // CI's and the soak's redis-restart-empty. Meanwhile processes that have heard refuse what
    // the rebuild has not located (FERRY_LOCATIONS_REBUILDING). Whether this process saw the
    // loss does not matter: one that met the store only after it (restarted meanwhile) is not
    // the only process behind it.
    const settled = generation.createdAt + (this.opts.settleMs ?? 0)
    while (!this.closed && Date.now() < settled) await new Promise(resolve => setTimeout(resolve, Math.min(250, settled - Date.now())))
    const startedAt = Date.now()
    const deadline = startedAt + (this.opts.deadlineMs ?? 60_000)
    const gateways = [...this.opts.gateways()]
    this.logger.info({ generation: generation.id, gateways: gateways.map(g => g.id) }, 'rebuilding block locations from the gateways\' inventories')
    const best = new Map<string, Candidate>()
    /** Every gateway's copy, by blockKey, to rebuild a replica set (the copies that match the winner). */
    const copies = new Map<string, Candidate[]>()
    let duplicates = 0
    const listed: string[] = []
    let pending = gateways.map((g, order) => ({ g, order, error: '' }))
    // A gateway that cannot be listed now (down, restarting) is retried until the deadline.
    while (pending.length > 0 && !this.closed) {
      const failed: typeof pending = []
      for (const p of pending) {
        const found = new Map<string, Candidate>()
        try {
          for await (const entry of listBlocks(p.g, { tombstones: true, signal: AbortSignal.timeout(Math.max(1000, deadline - Date.now())) })) {
            const key = blockKey(entry.volume, entry.block)
            const c = { gateway: p.g.id, entry, order: p.order }
            // A block written or deleted during the listing can show up as both: the later counts.
            const had = found.get(key)
            if (had === undefined || newer(c, had)) found.set(key, c)
          }
        } catch (err) {
          failed.push({ ...p, error: (err as Error).message })
          continue
        }
        // Merged only once the gateway was listed in full: a half listing proves nothing.
        for (const [key, c] of found) {
          if (c.entry.deleted !== true) {
            const all = copies.get(key)
            if (all === undefined) copies.set(key, [c])
            else all.push(c)
          }
          const cur = best.get(key)
          if (cur === undefined) { best.set(key, c); continue }
          duplicates++
          if (newer(c, cur)) best.set(key, c)
        }
        listed.push(p.g.id)
      }
      pending = failed
      if (pending.length === 0 || Date.now() >= deadline) break
      this.logger.warn({ gateways: pending.map(p => `${p.g.id}: ${p.error}`) }, 'gateways could not be listed; retrying')
      await new Promise(resolve => setTimeout(resolve, 1000))
    }

    let recorded = 0
    let kept = 0
    const entries = [...best.values()]
    const deleted = entries.filter(c => c.entry.deleted === true).length
    const concurrency = this.opts.concurrency ?? 64
    const kinds = new Map(gateways.map(g => [g.id, g.kind]))
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < entries.length && !this.closed) {
        const c = entries[next++] as Candidate
        // A replica set: the winner and every other copy provably the same bytes (content-hash
        // ETags equal). Any other copy is left out — an out-of-sync member must never be read.
        const winnerHash = c.entry.deleted === true ? null : contentHashOf(kinds.get(c.gateway) ?? 'ferry', c.entry.etag)
        const same = winnerHash === null
          ? []
          : (copies.get(blockKey(c.entry.volume, c.entry.block)) ?? []).filter(o => o.gateway !== c.gateway && contentHashOf(kinds.get(o.gateway) ?? 'ferry', o.entry.etag) === winnerHash).map(o => o.gateway)
        // A deleted block is located where its tombstone is, as a client's delete leaves it (the
        // location stays, the gateway answers 404): with no location at all, a read would go to
        // the block's hashed gateway, which may hold just the stale copy the tombstone outranks.
        const members = c.entry.deleted === true ? [c.gateway] : [c.gateway, ...same]
        const version = c.entry.deleted === true ? null : c.entry.etag
        const r = await this.opts.store.casLocation(c.entry.volume, c.entry.block, 0, { gateway: c.gateway, members, inSync: members, version }, { reason: `rebuild:${generation.id}` })
        if (r.ok) recorded++
        else kept++
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker))
    this.recordedTotal.inc(recorded)
    const report: RebuildReport = {
      generation: generation.id,
      startedAt,
      durationMs: Date.now() - startedAt,
      listed,
      unlisted: pending.map(p => ({ gateway: p.g.id, error: p.error })),
      blocks: entries.length - deleted,
      recorded,
      kept,
      duplicates,
      deleted
    }
    if (this.closed) return report
    await this.opts.store.finishRebuild(generation.id)
    await generationChannel.publish(this.opts.store, { id: generation.id, rebuilt: true }).catch(() => {})
    if (report.unlisted.length > 0) this.logger.error(report, 'block locations rebuilt WITHOUT some gateways: their blocks have no location until written again')
    else this.logger.info(report, 'block locations rebuilt')
    return report
  }

  close (): void {
    this.closed = true
    this.unsubscribe?.()
    this.unsubscribe = null
  }
}

/**
 * The copy written last wins: copies keep their original's written-at (gateway/README.md
 * "Written-at"), so a copy never looks newer than a write its source took meanwhile. A tombstone
 * wins a tie (a delete comes after the write it deletes); on other equal times (nginx lists whole
 * seconds), the gateway listed first in the config.
 */
function newer (a: Candidate, b: Candidate): boolean {
  if (a.entry.modifiedAt !== b.entry.modifiedAt) return a.entry.modifiedAt > b.entry.modifiedAt
  if ((a.entry.deleted === true) !== (b.entry.deleted === true)) return a.entry.deleted === true
  return a.order < b.order
}
