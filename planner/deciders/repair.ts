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
  private status: Omit<RepairStatus, 'factor'> = { underReplicated: 0, unavailable: 0, submitted: 0, lostMembersRemoved: 0, lastPassAt: null, down: [], gateways: [] }
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
    }
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
      if (healthy > 0 && !engine.busy(volume, block)) needy.push({ volume, block, loc, healthy })
    }
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
    this.status = { ...this.status, underReplicated: under, unavailable, submitted, lastPassAt: now, gateways: [...tally.values()] }
    return submitted
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
