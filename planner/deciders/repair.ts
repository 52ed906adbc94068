import { Counter, Gauge, type Registry } from 'prom-client'
import { ReplicaPlacer, type ReplicationConfig } from '../../fleet/replication.js'
import { FerryError } from '../../lib/errors.js'
import type { Logger } from '../../lib/log.js'
import type { BlockLocation, StateStore } from '../../state/types.js'
import type { Fence } from '../../state/types.js'
import type { MigrationEngine } from '../migration/engine.js'
import type { Fleet } from '../migration/fleet.js'

export interface RepairStatus {
  /** Blocks with fewer in-sync members (not lost) than replication.factor, at the last pass. */
  underReplicated: number
  /** Of those, blocks with no in-sync member left that is up: unreadable until one returns. */
  unavailable: number
  /** Repairs submitted to the engine at the last pass. */
  submitted: number
  /** Members removed from sets because their gateway was lost (down longer than downAfterMs). */
  lostMembersRemoved: number
  /**
   * Bytes still to copy to restore R, at the last pass: per under-replicated block, its size (the
   * fleet's mean block size where unknown) times the copies it lacks.
   */
  bytesRemaining: number
  /** Repair copy rate over the last rateWindowMs: bytes of repairs that completed ÷ the window (null: none completed). */
  bytesPerSec: number | null
  /** bytesRemaining ÷ bytesPerSec (null when no rate is known, 0 when nothing is left). */
  etaMs: number | null
  lastPassAt: number | null
  /** Gateways down, and since when. */
  down: Array<{ gateway: string, since: number, lost: boolean }>
  /** replication.factor: the copies each block should have. */
  factor: number
  /** Per gateway, at the last pass: the replica sets it is a member of, and of those the ones it is in sync in. */
  gateways: Array<{ gateway: string, members: number, inSync: number }>
}

export interface ReplicaRepairOptions {
  store: StateStore
  fleet: Fleet
  engine: MigrationEngine
  fence: () => Fence | null
  config: ReplicationConfig
  logger: Logger
  registry?: Registry
}

/** Blocks of unknown size a repair pass asks a gateway about (HEAD), at most. */
const SIZE_PROBES_PER_PASS = 32

/** The window over which the repair rate (and so the ETA) is measured. */
const RATE_WINDOW_MS = 60_000

/**
 * The repair decider: restores each block's replication factor after a member is lost (its
 * gateway down longer than `replication.downAfterMs`) or stale (it failed a write and left the
 * in-sync set). Every `repairIntervalMs`, while this planner leads, it scans the locations and
 * submits one repair per under-replicated block to the migration engine — the executor — as a
 * membership change (the target joins, is copied to from an in-sync member, verified, marked in
 * sync): a stale member that is up again is the first choice of target (its old copy is
 * overwritten, never served meanwhile: it is not in sync), else the placement's choice among the
 * gateways outside the set. Blocks with fewest healthy in-sync members go first, at most
 * `repairConcurrency` at a time. Members on lost gateways leave the set once the others suffice.
 */
export class ReplicaRepair {
  private config: ReplicationConfig
  private readonly placer: ReplicaPlacer
  private readonly downSince = new Map<string, number>()
  private timer: NodeJS.Timeout | null = null
  private running = false
  private status: Omit<RepairStatus, 'factor'> = { underReplicated: 0, unavailable: 0, submitted: 0, lostMembersRemoved: 0, bytesRemaining: 0, bytesPerSec: null, etaMs: null, lastPassAt: null, down: [], gateways: [] }
  /** Repairs that completed within rateWindowMs: when, and the bytes they copied. */
  private completed: Array<{ at: number, bytes: number }> = []
  private readonly submitted: Counter | undefined

  constructor (private readonly opts: ReplicaRepairOptions) {
    this.config = opts.config
    this.placer = new ReplicaPlacer({ gateways: () => opts.fleet.all(), isHealthy: id => opts.fleet.isTarget(id) })
    opts.fleet.on('health', (id, healthy) => {
      if (healthy) this.downSince.delete(id)
      else if (!this.downSince.has(id)) this.downSince.set(id, Date.now())
    })
    if (opts.registry !== undefined) {
      const status = (): Omit<RepairStatus, 'factor'> => this.status
      const registers = [opts.registry]
      new Gauge({ name: 'ferry_replication_under_replicated_blocks', help: 'Blocks with fewer in-sync members than replication.factor (last repair pass)', registers, collect () { this.set(status().underReplicated) } })
      new Gauge({ name: 'ferry_replication_unavailable_blocks', help: 'Blocks with no in-sync member up (last repair pass)', registers, collect () { this.set(status().unavailable) } })
      this.submitted = new Counter({ name: 'ferry_replication_repairs_submitted_total', help: 'Repairs submitted to the migration engine', registers })
      new Gauge({ name: 'ferry_repair_bytes_remaining', help: 'Bytes still to copy to restore the replication factor (last repair pass; unknown sizes counted at the mean block size)', registers, collect () { this.set(status().bytesRemaining) } })
      const eta = new Gauge({ name: 'ferry_repair_eta_seconds', help: 'ferry_repair_bytes_remaining ÷ the measured repair rate (absent while no rate is known)', registers, collect () { eta.reset(); const ms = status().etaMs; if (ms !== null) this.set(ms / 1000) } })
    }
    // The measured rate: bytes of the repairs that complete, over a sliding window.
    opts.engine.on('end', rec => {
      if (rec.result === 'ok' && rec.reason?.startsWith('repair') === true) this.completed.push({ at: Date.now(), bytes: rec.bytes })
    })
  }

  start (): void {
    if (this.timer !== null) return
    this.timer = setInterval(() => { void this.pass() }, this.config.repairIntervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  reconfigure (config: ReplicationConfig): void {
    const restart = this.timer !== null && config.repairIntervalMs !== this.config.repairIntervalMs
    this.config = config
    this.placer.refresh()
    if (restart) { this.stop(); this.start() }
  }

  view (): RepairStatus {
    const now = Date.now()
    return { ...this.status, factor: this.config.factor, down: [...this.downSince].map(([gateway, since]) => ({ gateway, since, lost: this.isLost(gateway, now) })) }
  }

  private isLost (id: string, now: number): boolean {
    if (this.opts.fleet.isHealthy(id, now)) return false
    const since = this.downSince.get(id) ?? (this.downSince.set(id, now), now)
    return now - since >= this.config.downAfterMs
  }

  /** One scan; returns the number of repairs submitted. Does nothing unless this planner's engine is active. */
  async pass (): Promise<number> {
    if (this.running || !this.opts.engine.isActive) return 0
    this.running = true
    try {
      return await this.passOnce()
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, 'repair pass failed')
      return 0
    } finally {
      this.running = false
    }
  }

  private async passOnce (): Promise<number> {
    const { fleet, engine, store } = this.opts
    const now = Date.now()
    const factor = this.config.factor
    const needy: Array<{ volume: string, block: string, loc: BlockLocation, healthy: number }> = []
    let under = 0
    let unavailable = 0
    // The scan visits every set anyway: the per-gateway tally for the console's fleet map costs nothing more.
    const tally = new Map<string, { gateway: string, members: number, inSync: number }>(fleet.all().map(g => [g.id, { gateway: g.id, members: 0, inSync: 0 }]))
    let bytesRemaining = 0
    // Sizes are learnt from copies; blocks never copied yet are asked for theirs (a few per
    // pass), so that "bytes to repair" is not 0 while nothing has been copied (a whole
    // gateway's blocks lost before any move: the ETA would read "done").
    let unknownCopies = 0
    const unsized: Array<{ volume: string, block: string, from: string, copies: number }> = []
    for await (const { volume, block, location: loc } of store.scanLocations()) {
      for (const m of loc.members) {
        const t = tally.get(m)
        if (t === undefined) continue
        t.members++
        if (loc.inSync.includes(m)) t.inSync++
      }
      if (loc.phase !== 'stable') continue
      const live = loc.inSync.filter(m => !this.isLost(m, now))
      const healthy = loc.inSync.filter(m => fleet.isHealthy(m, now)).length
      if (healthy === 0) unavailable++
      if (live.length >= factor) {
        if (live.length < loc.inSync.length || loc.members.some(m => !loc.inSync.includes(m) && this.isLost(m, now))) await this.dropLost(volume, block, loc, now)
        continue
      }
      under++
      const size = fleet.sizeOf(volume, block)
      if (size !== undefined) bytesRemaining += size * (factor - live.length)
      else {
        unknownCopies += factor - live.length
        const from = live.find(m => fleet.isHealthy(m, now))
        if (from !== undefined && unsized.length < SIZE_PROBES_PER_PASS) unsized.push({ volume, block, from, copies: factor - live.length })
      }
      if (healthy > 0 && !engine.busy(volume, block)) needy.push({ volume, block, loc, healthy })
    }
    for (const u of await Promise.all(unsized.map(async u => ({ ...u, size: await engine.learnSize(u.volume, u.block, u.from) })))) {
      if (u.size === null) continue
      bytesRemaining += u.size * u.copies
      unknownCopies -= u.copies
    }
    bytesRemaining += unknownCopies * fleet.meanBlockBytes()
    // Fewest healthy copies first: those are one failure from unreadable.
    needy.sort((a, b) => a.healthy - b.healthy)
    let submitted = 0
    const budget = Math.max(0, this.config.repairConcurrency - engine.activeRepairs())
    for (const n of needy) {
      if (submitted >= budget) break
      const source = n.loc.members.find(m => n.loc.inSync.includes(m) && fleet.isHealthy(m, now))
      if (source === undefined) continue
      const stale = n.loc.members.find(m => !n.loc.inSync.includes(m) && fleet.isTarget(m, now))
      const target = stale ?? this.placer.chooseReplicaSet(n.volume, n.block, undefined, 1, n.loc.members).find(id => fleet.isTarget(id, now))
      if (target === undefined) continue
      try {
        await engine.submit({ volume: n.volume, block: n.block, to: target, reason: stale !== undefined ? `repair:stale:${stale}` : 'repair', repair: { from: source }, priority: 1e9 - n.healthy })
        submitted++
        this.submitted?.inc()
      } catch (err) {
        if (!(err instanceof FerryError) || err.statusCode >= 500) throw err
        this.opts.logger.debug({ volume: n.volume, block: n.block, err: err.message }, 'repair not submitted')
      }
    }
    const rate = this.rate(Date.now())
    this.status = {
      ...this.status, underReplicated: under, unavailable, submitted, lastPassAt: now, gateways: [...tally.values()], bytesRemaining: Math.round(bytesRemaining),
      bytesPerSec: rate === null ? null : Math.round(rate),
      etaMs: bytesRemaining === 0 ? 0 : rate === null || rate === 0 ? null : Math.round((bytesRemaining / rate) * 1000)
    }
    return submitted
  }

  /**
   * Bytes per second of completed repairs over the last RATE_WINDOW_MS (or since the first one in
   * it, when that is later than a second ago: a burst is not averaged over an idle window).
   */
  private rate (now: number): number | null {
    this.completed = this.completed.filter(c => now - c.at <= RATE_WINDOW_MS)
    if (this.completed.length === 0) return null
    const bytes = this.completed.reduce((n, c) => n + c.bytes, 0)
    const since = this.completed.length > 1 ? (this.completed[0] as { at: number }).at : now - RATE_WINDOW_MS
    return bytes / (Math.max(1000, now - since) / 1000)
  }

  /** Members on lost gateways leave the set once the others hold the factor. */
  private async dropLost (volume: string, block: string, loc: BlockLocation, now: number): Promise<void> {
    if (this.opts.engine.busy(volume, block)) return
    const fence = this.opts.fence()
    if (fence === null) return
    const members = loc.members.filter(m => !this.isLost(m, now))
    const inSync = loc.inSync.filter(m => members.includes(m))
    const gateway = members.find(m => inSync.includes(m))
    if (gateway === undefined || members.length === loc.members.length) return
    const r = await this.opts.store.casLocation(volume, block, loc.epoch, { gateway, members, inSync }, { fence, reason: 'repair:lost-member' })
    if (r.ok) this.status.lostMembersRemoved += loc.members.length - members.length
  }
}
