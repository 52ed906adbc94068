import { FerryError } from '../../lib/errors.js'
import { blockKey } from '../../lib/ids.js'
import type { Logger } from '../../lib/log.js'
import type { LocationCache } from '../../state/cache.js'
import { drainsChannel } from '../../state/channels.js'
import type { BlockRef, DrainRecord, MigrationRecord, StateStore } from '../../state/types.js'
import type { MigrationEngine } from '../migration/engine.js'
import { plannerError } from '../migration/errors.js'
import type { Fleet } from '../migration/fleet.js'
import type { MoveSubmitter } from './submit.js'
import type { Targets } from './targets.js'

/** Why a gateway is drained: an operator's `POST /v1/gateways/:id/drain`, or the health trigger's evacuation (lifted on recovery). */
export type DrainCause = 'operator' | 'health'

export interface DrainStatus {
  gateway: string
  /** `operator`: POST /v1/gateways/:id/drain; `health`: the predictive trigger (lifted on recovery). */
  cause: DrainCause
  state: 'draining' | 'drained'
  startedAt: number
  /** Placed blocks still on the gateway. */
  remaining: number
  migrations: { started: number, ok: number, failed: number, active: number }
  bytesMoved: number
  /** Blocks for which no target could be found in the last pass. */
  stuck: number
}

/** What one drain pass started (an evacuation's decision log keeps it). */
export interface DrainPassSummary {
  /** Blocks on the gateway considered, and migrations started, hottest first. */
  blocks: number
  started: number
  /** Blocks no target could be found for. */
  stuck: number
  /** The first few moves, in order: block, its access score, target. */
  first: Array<{ volume: string, block: string, score: number, to: string }>
}

interface DrainState {
  gateway: string
  cause: DrainCause
  to: string | undefined
  startedAt: number
  ids: Set<string>
  ok: number
  failed: number
  bytes: number
  stuck: number
}

export interface DrainsOptions {
  store: StateStore
  fleet: Fleet
  engine: MigrationEngine
  locations: LocationCache
  submitter: MoveSubmitter
  targets: Targets
  /** This planner's lease holder id, for a standby's 503. */
  holder: () => string
  /** A drain started: the proxies must stop creating blocks on the gateway now, not at the next periodic publish. */
  onDrainStarted: () => void
  logger: Logger
}

/**
 * The drain decider: moves everything off a gateway, hottest first, and keeps it from receiving
 * blocks (it counts as unhealthy for every ranking) until the drain ends. Drains live in the store
 * (`putDrain`/`listDrains`/`deleteDrain`), written before anything moves; this leader adds its
 * progress (the moves it started, bytes moved, blocks stuck). Every pass submits one move per
 * block still on the gateway through the MoveSubmitter; blocks that arrive later (a proxy's first
 * write) or whose move failed are picked up by the next pass (`tick`).
 */
export class Drains {
  /** The drains in force, as the store holds them (DrainRecord) plus this leader's progress. */
  private readonly drains = new Map<string, DrainState>()
  /** The store generation the drains were last read from (see sync). */
  private generation: string | undefined

  constructor (private readonly opts: DrainsOptions) {
    opts.engine.on('end', rec => { this.onMigrationEnd(rec) })
  }

  /** The operator's drain; `to` sends every block there instead of to each one's best gateway. */
  async drain (gateway: string, to?: string): Promise<DrainStatus> {
    this.checkGateway(gateway)
    if (to !== undefined) {
      if (to === gateway) throw plannerError('FERRY_TARGET_UNAVAILABLE', `cannot drain ${gateway} onto itself`, 409)
      this.opts.submitter.checkTarget(to)
    }
    this.requireLeader()
    // Recorded before anything moves: a drain the store does not hold would end with this leader.
    // An operator's drain of a gateway under evacuation becomes the operator's: recovery no longer lifts it.
    const record: DrainRecord = { gateway, cause: 'operator', to: to ?? null, startedAt: this.drains.get(gateway)?.startedAt ?? Date.now() }
    await this.opts.store.putDrain(record)
    this.adopt(record)
    this.announce(gateway)
    this.opts.onDrainStarted()
    await this.pass(gateway)
    return this.status(gateway) as DrainStatus
  }

  /**
   * Starts a drain with `cause` unless one is in force (an operator's drain stays the operator's),
   * then runs a pass. Repeated calls run another pass.
   */
  async ensure (gateway: string, cause: DrainCause): Promise<DrainPassSummary> {
    this.checkGateway(gateway)
    this.requireLeader()
    if (!this.drains.has(gateway)) {
      const record: DrainRecord = { gateway, cause, to: null, startedAt: Date.now() }
      await this.opts.store.putDrain(record)
      this.adopt(record)
      this.announce(gateway)
    }
    return await this.pass(gateway)
  }

  /**
   * Ends a drain: the gateway may receive blocks again. Any planner may be asked: the store is
   * where drains live, and the leader lifts one the store no longer holds at its next tick.
   */
  async undrain (gateway: string): Promise<boolean> {
    this.checkGateway(gateway)
    const stored = await this.opts.store.deleteDrain(gateway)
    const here = this.lift(gateway)
    this.announce(gateway)
    return stored || here
  }

  /**
   * Tells the proxies that the drains changed: they read from another member of a set while one
   * of its gateways is drained. A lost notice costs only time: proxies re-read the drains at
   * every store resync and periodically (proxy/drained.ts).
   */
  private announce (gateway: string): void {
    drainsChannel.publish(this.opts.store, { gateway }).catch(err => {
      this.opts.logger.debug({ gateway, err: (err as Error).message }, 'drain notice not published; proxies will see it at their next read of the drains')
    })
  }

  /** The cause of the drain in force on `gateway`, if any. */
  causeOf (gateway: string): DrainCause | undefined {
    return this.drains.get(gateway)?.cause
  }

  /** After a config reload: the fleet was rebuilt, the drained gateways must stay out of every ranking. */
  reapply (): void {
    for (const id of this.drains.keys()) this.opts.fleet.setDraining(id, true)
  }

  /** Periodic (the leader): re-read the drains from the store, then a pass over each. */
  async tick (): Promise<void> {
    await this.sync().catch(err => { this.opts.logger.warn({ err: (err as Error).message }, 'could not read the drains from the store; keeping the ones in force') })
    for (const gateway of this.drains.keys()) {
      await this.pass(gateway).catch(err => { this.opts.logger.warn({ gateway, err: (err as Error).message }, 'drain pass failed') })
    }
  }

  /**
   * Makes the drains in force here the ones the store holds: a new leader takes over its
   * predecessor's (with the moves still running off each drained gateway), and a drain ended
   * through another planner is lifted. When the store's generation changed it lost its data
   * (restarted empty): then what is missing there was lost, not ended, so it is written back.
   */
  async sync (): Promise<void> {
    const { store, fleet } = this.opts
    const generation = (await store.generation()).id
    const stored = new Map((await store.listDrains()).map(r => [r.gateway, r]))
    if (this.generation !== undefined && generation !== this.generation) {
      for (const d of this.drains.values()) {
        if (!stored.has(d.gateway)) await store.putDrain({ gateway: d.gateway, cause: d.cause, to: d.to ?? null, startedAt: d.startedAt })
      }
      this.generation = generation
      return
    }
    this.generation = generation
    for (const gateway of [...this.drains.keys()]) if (!stored.has(gateway)) this.lift(gateway)
    let adopted = false
    for (const r of stored.values()) {
      if (!fleet.has(r.gateway)) continue // removed from the config: nothing to drain
      if (!this.drains.has(r.gateway)) adopted = true
      this.adopt(r)
    }
    if (!adopted) return
    // Moves a predecessor started off a drained gateway count for its drain.
    for (const rec of await store.listMigrations({ active: true, limit: 100_000 })) {
      this.drains.get(rec.from)?.ids.add(rec.id)
    }
  }

  status (gateway: string): DrainStatus | undefined {
    const d = this.drains.get(gateway)
    if (d === undefined) return undefined
    const remaining = this.opts.fleet.blocksOn(gateway).length
    const active = d.ids.size - d.ok - d.failed
    return {
      gateway,
      cause: d.cause,
      state: remaining === 0 && active === 0 ? 'drained' : 'draining',
      startedAt: d.startedAt,
      remaining,
      migrations: { started: d.ids.size, ok: d.ok, failed: d.failed, active },
      bytesMoved: d.bytes,
      stuck: d.stuck
    }
  }

  list (): DrainStatus[] {
    return [...this.drains.keys()].map(g => this.status(g) as DrainStatus)
  }

  /** Puts a stored drain in force here (or updates its cause and target). */
  private adopt (r: DrainRecord): void {
    this.opts.fleet.setDraining(r.gateway, true)
    const d = this.drains.get(r.gateway)
    if (d === undefined) {
      this.drains.set(r.gateway, { gateway: r.gateway, cause: r.cause, to: r.to ?? undefined, startedAt: r.startedAt, ids: new Set(), ok: 0, failed: 0, bytes: 0, stuck: 0 })
    } else {
      d.cause = r.cause
      d.to = r.to ?? undefined
    }
  }

  private lift (gateway: string): boolean {
    this.opts.fleet.setDraining(gateway, false)
    return this.drains.delete(gateway)
  }

  /**
   * The blocks with a copy on `gateway`: placed there (in any place of the set: a drain that moved
   * only the sets the gateway heads left every other copy on it), or never placed and served
   * there by hash.
   */
  private async blocksOn (gateway: string): Promise<BlockRef[]> {
    const { store, fleet, locations } = this.opts
    const out: BlockRef[] = []
    for (const { volume, block, location } of locations.located()) if (location.members.includes(gateway)) out.push({ volume, block })
    // Blocks never placed are served by hash: the ones the affinity map knows and that hash here.
    // (A scan may return an entry twice.)
    const hashed = new Set<string>()
    for await (const { volume, block } of store.scanAffinity()) {
      const key = blockKey(volume, block)
      if (locations.get(volume, block) === null && fleet.hashed(key) === gateway && !hashed.has(key)) {
        hashed.add(key)
        out.push({ volume, block })
      }
    }
    return out
  }

  private async pass (gateway: string): Promise<DrainPassSummary> {
    const { engine, locations, submitter, targets } = this.opts
    const summary: DrainPassSummary = { blocks: 0, started: 0, stuck: 0, first: [] }
    const d = this.drains.get(gateway)
    if (d === undefined || !engine.isActive) return summary
    const blocks = await Promise.all((await this.blocksOn(gateway)).map(async ({ volume, block }) => ({ volume, block, score: await targets.score(volume, block).catch(() => 0) })))
    blocks.sort((a, b) => b.score - a.score)
    summary.blocks = blocks.length
    const planned = new Map<string, number>()
    let stuck = 0
    for (const { volume, block, score } of blocks) {
      if (engine.busy(volume, block)) continue
      const loc = locations.get(volume, block)
      // A member out of sync is not moved: repair brings it back in sync or replaces it.
      if (loc !== null && loc !== undefined && (loc.phase !== 'stable' || !loc.inSync.includes(gateway))) continue
      try {
        // The operator's `to` that already holds the block in sync cannot take this copy too.
        const to = d.to !== undefined && loc?.inSync.includes(d.to) === true ? undefined : d.to
        const rec = await submitter.submit({ volume, block, to, from: loc == null ? undefined : gateway, reason: `${d.cause === 'health' ? 'health' : 'drain'}:${gateway}` }, planned)
        d.ids.add(rec.id)
        summary.started++
        if (summary.first.length < 5) summary.first.push({ volume, block, score: Math.round(score * 1000) / 1000, to: rec.to })
      } catch (err) {
        if (!(err instanceof FerryError)) throw err
        if (err.code === 'FERRY_NO_TARGET' || err.code === 'FERRY_TARGET_UNAVAILABLE') stuck++
        else if (err.code === 'FERRY_PLANNER_NOT_LEADER') return summary
        else this.opts.logger.debug({ volume, block, err: err.message }, 'drain move not started')
      }
    }
    d.stuck = summary.stuck = stuck
    return summary
  }

  private onMigrationEnd (rec: MigrationRecord): void {
    const d = this.drains.get(rec.from)
    if (d === undefined || !d.ids.has(rec.id)) return
    if (rec.result === 'ok') { d.ok++; d.bytes += rec.bytes } else d.failed++
  }

  private checkGateway (gateway: string): void {
    if (!this.opts.fleet.has(gateway)) throw plannerError('FERRY_UNKNOWN_GATEWAY', `no gateway ${gateway} is configured`, 404)
  }

  private requireLeader (): void {
    if (!this.opts.engine.isActive) throw plannerError('FERRY_PLANNER_NOT_LEADER', 'this planner is not the leader', 503, { holder: this.opts.holder() })
  }
}
