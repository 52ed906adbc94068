import { blockKey } from '../../lib/ids.js'
import type { BlockLocation, MigrationRecord } from '../../state/types.js'
import { DeposedError, describeError } from './errors.js'
import { isRepair } from './job.js'
import type { MigrationOps } from './ops.js'
import type { Admission } from './queue.js'
import type { MigrationSteps } from './steps.js'

/**
 * Resuming after a leader change: every migration the log shows as unfinished that is not
 * running here (a predecessor's, or one whose rollback could not be written) is completed,
 * resumed or undone from what the block's location says — the location is the truth, the log
 * only says what was intended:
 *
 * | the target is                | and the source is              | then                                  |
 * | ---                          | ---                            | ---                                   |
 * | not a member                 | in sync                        | run the migration again (same record) |
 * | a member out of sync         | in sync                        | take the joiner out, run it again     |
 * | in sync (a repair)           | any                            | done                                  |
 * | in sync                      | in sync                        | the leave step, then remove after the grace period |
 * | in sync                      | out of sync, or gone           | remove after what is left of the grace period |
 *
 * Locations left in round 1's `copying`/`cutover`/`done` (by an older planner) are settled where
 * they are served, and the copy that is no member's is deleted.
 */
export class MigrationRecovery {
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null

  constructor (
    private readonly ops: MigrationOps,
    private readonly admission: Admission,
    private readonly steps: MigrationSteps,
    private readonly isActive: () => boolean
  ) {}

  schedule (): void {
    this.clear()
    if (!this.isActive()) return
    this.timer = setTimeout(() => {
      this.timer = null
      void this.recover(false).finally(() => this.schedule())
    }, this.ops.config.recoveryIntervalMs)
    this.timer.unref()
  }

  clear (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /**
   * Completes, resumes or undoes every unfinished migration that is not running here. With
   * `scanLocations`, also blocks left in round 1's phases with no log record at all. Never throws.
   */
  recover (scanLocations = false): Promise<void> {
    this.running ??= this.once(scanLocations).finally(() => { this.running = null })
    return this.running
  }

  private async once (scanLocations: boolean): Promise<void> {
    const { ops } = this
    try {
      const active = await ops.store.listMigrations({ active: true, limit: 1_000_000 })
      const claimed = new Set<string>()
      for (const rec of active) {
        claimed.add(blockKey(rec.volume, rec.block))
        if (!this.isActive()) return
        if (this.admission.jobs.has(rec.id)) continue
        await this.one(rec).catch(err => {
          ops.logger.warn({ id: rec.id, err: describeError(err) }, 'could not recover a migration; will retry')
        })
      }
      await this.retryStrays()
      if (!scanLocations) return
      for await (const { volume, block, location } of ops.store.scanLocations()) {
        if (!this.isActive()) return
        if (location.phase === 'stable' || claimed.has(blockKey(volume, block)) || this.admission.busy(volume, block)) continue
        ops.logger.warn({ volume, block, phase: location.phase, gateway: location.gateway, target: location.target }, 'recovery: settling a location no migration explains')
        await this.settleLegacy(volume, block, location, undefined).catch(err => {
          ops.logger.warn({ volume, block, err: describeError(err) }, 'could not settle an orphaned location')
        })
      }
    } catch (err) {
      ops.logger.warn({ err: describeError(err) }, 'migration recovery failed; will retry')
    }
  }

  private async retryStrays (): Promise<void> {
    const { ops } = this
    const now = performance.now()
    for (const s of [...ops.strays.values()]) {
      if (s.dueAt > now || !this.isActive() || !ops.fleet.isHealthy(s.gateway)) continue
      if (!this.admission.reserve(s.volume, s.block)) continue
      try {
        const loc = await ops.store.getLocation(s.volume, s.block)
        // A member's copy is the block's, not a stray: the gateway rejoined (a move back). No
        // location after a store loss: the rebuild may yet locate the block on this copy (the
        // clean-up keeps the source's copy for the same reason, MigrationSteps.remove).
        if (loc?.members.includes(s.gateway) === true || (loc === null && s.recheck)) { ops.strays.delete(`${s.gateway} /${s.volume}/${s.block}`); continue }
        await ops.dropStray(s.volume, s.block, s.gateway)
      } finally {
        this.admission.release(s.volume, s.block)
      }
    }
  }

  /** One unfinished migration of someone else's (or an earlier attempt of ours). */
  private async one (rec: MigrationRecord): Promise<void> {
    const { ops, admission } = this
    if (admission.busy(rec.volume, rec.block)) return
    const job = admission.register(rec, 0)
    job.phase = rec.phase
    job.bytes = rec.bytes
    let keep = false
    try {
      const loc = await ops.read(job)
      if (loc !== null && loc.phase !== 'stable') {
        await this.settleLegacy(rec.volume, rec.block, loc, rec)
        await ops.end(job, loc.phase === 'done' ? 'ok' : 'rolled-back', loc.phase === 'done' ? null : `FERRY_INTERRUPTED: found in round-1 ${loc.phase} after a planner restart`)
        return
      }
      const toIn = loc?.inSync.includes(rec.to) === true
      const fromIn = loc?.inSync.includes(rec.from) === true
      if (loc !== null && toIn && rec.phase !== 'queued') {
        if (isRepair(rec)) { await ops.end(job, 'ok', null); return }
        keep = true
        if (fromIn) {
          ops.logger.info({ id: rec.id, key: job.key }, 'recovery: completing the leave step of a move')
          const members = [...loc.members.filter(m => m !== rec.to).map(m => m === rec.from ? rec.to : m), rec.from]
          const inSync = members.filter(m => m !== rec.from && loc.inSync.includes(m))
          await ops.cas(job, loc, { gateway: inSync[0] as string, members, inSync }, 'leave', true)
          this.steps.scheduleRemove(job, ops.config.gracePeriodMs)
        } else {
          // The source left (or never was removed): the grace period runs from the last change.
          this.steps.scheduleRemove(job, loc.updatedAt + ops.config.gracePeriodMs - Date.now())
        }
        return
      }
      // Never in sync: the joiner leaves; the migration runs again (same record, so the log shows
      // one migration) while the source still serves — the steps refuse a target that is down.
      if (rec.phase !== 'queued') await this.steps.undoJoin(job, 'recover')
      if (loc !== null && fromIn && !toIn && ops.fleet.has(rec.to)) {
        if (rec.phase !== 'queued') await ops.store.updateMigration(rec.id, { phase: 'queued', bytes: 0 })
        admission.requeue(job)
        keep = true
        return
      }
      await ops.end(job, rec.phase === 'queued' ? 'cancelled' : 'rolled-back', `FERRY_INTERRUPTED: found unfinished after a planner restart (location ${loc === null ? 'none' : `in sync on ${loc.inSync.join(',')}`})`)
    } catch (err) {
      if (err instanceof DeposedError) return
      throw err
    } finally {
      if (!keep && admission.jobs.get(job.id) === job) ops.forget(job)
    }
  }

  /**
   * A location an older planner left in round 1's `copying`, `cutover` (the source still serves:
   * back to `stable` there, the target's copy goes) or `done` (the target serves: `stable`, and
   * the source's copy goes when the record names it).
   */
  private async settleLegacy (volume: string, block: string, loc: BlockLocation, rec: MigrationRecord | undefined): Promise<void> {
    const { ops } = this
    const fence = ops.requireLeader()
    const r = await ops.store.casLocation(volume, block, loc.epoch, { gateway: loc.gateway, members: loc.members, inSync: loc.inSync, phase: 'stable' }, { fence, reason: 'recover:round-1' })
    if (!r.ok) {
      if (r.reason === 'fenced') throw new DeposedError('the store refused a write as fenced')
      return
    }
    const stray = loc.phase === 'done' ? rec?.from : loc.target
    if (stray !== undefined && !r.location.members.includes(stray)) await ops.dropStray(volume, block, stray)
  }
}
