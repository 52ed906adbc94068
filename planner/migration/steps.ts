import { FerryError } from '../../lib/errors.js'
import type { BlockLocation } from '../../state/types.js'
import { DeposedError, StoppingError, describeError, plannerError } from './errors.js'
import { delay } from './gateway-ops.js'
import { isRepair, type Job } from './job.js'
import type { MigrationOps } from './ops.js'

/**
 * How much earlier than the source's bytes a target's must have been first written to be known
 * older by their written-at (gateways' clocks apart by less: the store-loss rebuild trusts the
 * same order; nginx's Last-Modified has whole seconds).
 */
const WRITTEN_AT_MARGIN_MS = 1000

/**
 * The executor of one migration, as a membership change of the block's replica set, one step at
 * a time (in the manner of TiKV PD's operators: each step is one compare-and-set on the
 * location's epoch, and the next step starts only when the last one is in the store):
 *
 *   join      the target becomes a member, out of sync: from then on every proxy sends it every
 *             write (a write it fails takes it out again)
 *   copy      after settleMs (every proxy has heard of the new member), stream the current
 *             version from the source; the PUT is conditional on what the target held before it
 *             joined (each kind as it can: upstream/README.md "Conditional copies"), so a write
 *             proxies teed to the target since (newer than what the copy read) is kept, not
 *             overwritten
 *   verify    the target holds the source's bytes at one moment after the copy (writes keep
 *             changing both meanwhile; a persistent difference while the source stays the same
 *             means the copy missed something: copy again, over bytes known to be older
 *             than the source's only)
 *   in-sync   by a compare-and-set on an epoch read before that check: a write that landed on
 *             the source only in between has bumped it (proxy/replicas.ts settle), so the
 *             target is checked again rather than marked in sync without it
 *   leave     (moves, not repairs) the target takes the source's place in the order; the source
 *             stays a member, out of sync, so a write that started before the move and ends now
 *             still finds a member that stored it (it puts the source back in sync and undoes
 *             the move instead of being refused)
 *   remove    after gracePeriodMs the source leaves the set and its copy is deleted
 *
 * No write is held or refused at any step, for any replication factor (R = 1 included: the set
 * is {source, target} for the length of the move). A failure before the target is in sync leaves
 * the old set in force and deletes the target's copy.
 */
export class MigrationSteps {
  constructor (private readonly ops: MigrationOps) {}

  /** Runs a job to its end (or its cleanup timer); throws what made it fail, after undoing it. */
  async run (job: Job): Promise<void> {
    const { ops } = this
    const loc = await ops.read(job)
    if (loc === null) throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key} is no longer placed`, 409)
    if (loc.phase !== 'stable') throw plannerError('FERRY_BLOCK_BUSY', `block ${job.key} is in ${loc.phase} (a round-1 cut-over being recovered)`, 409)
    if (!loc.inSync.includes(job.from)) {
      if (loc.inSync.includes(job.to) && !isRepair(job)) { await ops.end(job, 'cancelled', `FERRY_MIGRATION_NOOP: the block is already on ${job.to}`); return }
      throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key}: ${job.from} is not an in-sync member (${loc.inSync.join(',')})`, 409)
    }
    if (loc.inSync.includes(job.to)) { await ops.end(job, 'cancelled', `FERRY_MIGRATION_NOOP: ${job.to} is already an in-sync member`); return }
    if (!ops.fleet.isTarget(job.to)) throw plannerError('FERRY_TARGET_UNAVAILABLE', `gateway ${job.to} is down or draining`, 409)
    const started = performance.now()
    let inSync: BlockLocation
    job.touched = true
    try {
      // What the target holds before any proxy sends it a write: the first copy may replace
      // that and nothing newer (MigrationOps.copy). A stale member being repaired already gets
      // writes: the verify step copies to it once what it holds is known to be older.
      const stale = loc.members.includes(job.to)
      const before = stale ? undefined : await ops.targetBeforeJoin(job)
      const joined = await this.join(job, loc)
      ops.setPhase(job, 'copying')
      // Every proxy learns of the new member before the copy reads the source, so a write that
      // lands on the source after the copy's read was sent to the target too (or bumps the epoch).
      await delay(ops.config.settleMs, job.abort.signal)
      const copied = before === undefined ? null : await ops.copy(job, before)
      inSync = await this.verifyInSync(job, joined, stale ? 'none' : copied?.sha256)
      if (!isRepair(job)) inSync = await this.leave(job, inSync)
    } catch (err) {
      // Deposed or killed: touch nothing more, the next leader's recovery undoes the join.
      if (err instanceof DeposedError || abrupt(job)) throw err
      await this.undoJoin(job).catch(e => { ops.logger.warn({ id: job.id, key: job.key, err: describeError(e) }, 'could not take a failed joiner out of the set') })
      job.touched = false
      throw err
    }
    job.touched = false
    ops.metrics.duration.observe((performance.now() - started) / 1000)
    ops.events.emit('flip', { id: job.id, volume: job.volume, block: job.block, from: job.from, to: job.to, location: inSync, at: performance.now() })
    if (isRepair(job)) { await ops.end(job, 'ok', null); return }
    ops.setPhase(job, 'cleanup')
    this.scheduleRemove(job, ops.config.gracePeriodMs)
  }

  /** Step join: the target becomes a member, out of sync. */
  private async join (job: Job, loc: BlockLocation): Promise<BlockLocation> {
    if (loc.members.includes(job.to)) return loc // a stale member being repaired: it already gets every write
    return await this.ops.cas(job, loc, { gateway: loc.gateway, members: [...loc.members, job.to], inSync: loc.inSync }, 'join')
  }

  /**
   * Steps verify and in-sync (see the class comment). While the target differs from a source
   * that stays the same, the target is copied to again — but only over bytes known to be older
   * than the source's: bytes this job saw on the source or copied from it (`copied`: the first
   * copy's hash; 'none': no copy yet, a stale member being repaired), or first written more than
   * WRITTEN_AT_MARGIN_MS before the source's. Other bytes on the target came from a proxy's
   * write teed to it, which may still be on its way to the source; a proxy has counted the
   * target as storing it, and replacing it with the source's older bytes would let the target go
   * in sync without it the moment that write lands on the source (a stale read in the
   * 10,000-move run at R = 2, under load: the write reached the target before the source). Such
   * bytes are replaced only once the source has stayed the same for lateWriteMs, longer than a
   * write can take to land.
   */
  private async verifyInSync (job: Job, joined: BlockLocation, copied: string | undefined | 'none'): Promise<BlockLocation> {
    const { ops } = this
    const budgetStart = performance.now()
    const left = (): number => ops.config.copyTimeoutMs - (performance.now() - budgetStart)
    // Contents no newer than the source's now (the source only moves forward): bounded by the
    // number of checks and copies, a few hundred at most within copyTimeoutMs.
    const seen = new Set<string>()
    if (copied !== undefined && copied !== 'none') seen.add(copied)
    let copyDue = copied === 'none'
    let unchanged = 0
    let lastSource: string | null = null
    let sourceSince = performance.now()
    for (;;) {
      const now = await ops.read(job)
      // A write the target missed took it out of the set, or the source failed one: this change is over.
      if (now === null || !now.members.includes(job.to) || !now.inSync.includes(job.from) || now.epoch < joined.epoch) {
        throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key} changed while ${job.to} was joining (a write it missed, or another change)`, 409)
      }
      if (left() <= 0) throw plannerError('FERRY_CUTOVER_TIMEOUT', `block ${job.key}: ${job.to} did not come to hold the source's bytes within copyTimeoutMs`, 503)
      const check = await ops.sameBytes(job, left)
      if (check.same) {
        try {
          return await ops.cas(job, now, { gateway: now.gateway, members: now.members, inSync: now.members.filter(m => m === job.to || now.inSync.includes(m)) }, 'in-sync')
        } catch (err) {
          // A write landed on the source only since `now` was read (it bumped the epoch): look again.
          if (err instanceof FerryError && err.code === 'FERRY_LOCATION_CHANGED') continue
          throw err
        }
      }
      if (check.sourceTag !== null) seen.add(check.sourceTag)
      if (check.sourceTag !== null && check.sourceTag === lastSource) {
        unchanged++
      } else {
        unchanged = 0
        sourceSince = performance.now()
      }
      lastSource = check.sourceTag
      const { target, sourceWrittenAt } = check
      const replaceable = !target.present ||
        (target.tag !== null && seen.has(target.tag)) ||
        (target.writtenAt !== null && sourceWrittenAt !== null && target.writtenAt + WRITTEN_AT_MARGIN_MS < sourceWrittenAt) ||
        performance.now() - sourceSince >= ops.config.lateWriteMs
      if (replaceable && copyDue) {
        // A stale member's first copy, over bytes older than the source's.
        const first = await ops.copy(job, target)
        if (first !== null) seen.add(first.sha256)
        copyDue = false
        unchanged = 0
      } else if (unchanged >= 3 && replaceable) {
        // The source stays the same and the target still differs, holding nothing newer: the
        // copy missed a write (one a proxy that had not heard of the target sent the source
        // alone), or the target stored other bytes than were sent. Copy again, over exactly
        // what was checked.
        if (job.recopies >= ops.config.maxRecopies) throw plannerError('FERRY_COPY_VERIFY_FAILED', `block ${job.key}: ${job.to} still differs from ${job.from} after ${job.recopies} re-copies`, 502)
        job.recopies++
        ops.recopies++
        ops.metrics.recopies.inc()
        const again = await ops.copy(job, target)
        if (again !== null) seen.add(again.sha256)
        unchanged = 0
      } else {
        await delay(Math.min(100, Math.max(1, left())), job.abort.signal)
      }
    }
  }

  /** Step leave: the target takes the source's place in the order; the source stays, out of sync, at the back. */
  private async leave (job: Job, start: BlockLocation): Promise<BlockLocation> {
    const { ops } = this
    let loc: BlockLocation | null = start
    for (let attempt = 0; ; attempt++) {
      if (loc === null || !loc.inSync.includes(job.to) || !loc.inSync.includes(job.from)) {
        throw plannerError('FERRY_LOCATION_CHANGED', `block ${job.key} changed before ${job.from} could leave (a write ${job.to} missed, or another change)`, 409)
      }
      const l: BlockLocation = loc
      const members = [...l.members.filter(m => m !== job.to).map(m => m === job.from ? job.to : m), job.from]
      const inSync = members.filter(m => m !== job.from && l.inSync.includes(m))
      try {
        return await ops.cas(job, l, { gateway: inSync[0] as string, members, inSync }, 'leave')
      } catch (err) {
        if (!(err instanceof FerryError) || err.code !== 'FERRY_LOCATION_CHANGED' || attempt >= 5) throw err
        loc = await ops.read(job)
      }
    }
  }

  scheduleRemove (job: Job, afterMs: number): void {
    job.state = 'cleanup'
    job.phase = 'cleanup'
    job.timer = setTimeout(() => {
      job.timer = null
      void this.remove(job)
    }, Math.max(0, afterMs))
  }

  /**
   * Step remove, after the grace period: the source leaves the set and its copy goes — unless a
   * write that outlived the move put the source back in sync, which undoes the move.
   */
  async remove (job: Job): Promise<void> {
    const { ops } = this
    try {
      const now = await ops.read(job, true)
      if (now === null) {
        // No location: the store lost its data and the rebuild (recovery/) has not recorded the
        // block yet, and may record it on the source's copy (the copies tie on written-at).
        // Deleting it then would locate the block where it no longer is (an acknowledged write
        // read 404 in the 30-minute soak): the copy is kept, a stray at worst.
        ops.logger.warn({ id: job.id, key: job.key, source: job.from }, 'the block has no location at the clean-up; the source copy is kept')
        await ops.end(job, 'ok', null)
        return
      }
      if (now.inSync.includes(job.from)) {
        await this.undoJoin(job)
        await ops.end(job, 'rolled-back', `FERRY_LOCATION_CHANGED: a write that started before the move ended on ${job.from} only and put it back in sync`)
        return
      }
      if (now.members.includes(job.from)) {
        await ops.cas(job, now, { gateway: now.gateway, members: now.members.filter(m => m !== job.from), inSync: now.inSync }, 'remove', true)
        // Writes still teed to the source by proxies that have not heard yet land first; one
        // landing after the DELETE leaves a copy that is no member's, which the re-check deletes.
        await delay(ops.config.settleMs)
      }
      await ops.deleteCopy(job.path, job.from)
      ops.recheckLater(job.volume, job.block, job.from, Math.max(ops.config.gracePeriodMs, ops.config.settleMs))
      await ops.end(job, 'ok', null)
    } catch (err) {
      if (err instanceof DeposedError || job.abort.signal.aborted) { ops.forget(job); return }
      ops.logger.warn({ id: job.id, key: job.key, err: describeError(err) }, 'removing the source failed; will retry')
      this.scheduleRemove(job, err instanceof FerryError && err.code === 'FERRY_LOCATION_CHANGED' ? 0 : ops.config.retryDelayMs)
    }
  }

  /**
   * Undoes a join: a target that is out of sync (or in sync beside a source still in sync: a move
   * that failed at its last step) leaves the set, and its copy goes unless it is a member.
   */
  async undoJoin (job: Job, step = 'rollback'): Promise<void> {
    const { ops } = this
    for (let attempt = 0; attempt < 5; attempt++) {
      const loc = await ops.read(job, true)
      if (loc === null || !loc.members.includes(job.to)) break
      const extra = !loc.inSync.includes(job.to) || (!isRepair(job) && loc.inSync.includes(job.from))
      if (!extra) return
      const members = loc.members.filter(m => m !== job.to)
      const inSync = loc.inSync.filter(m => m !== job.to)
      const gateway = inSync.includes(loc.gateway) ? loc.gateway : inSync[0] as string
      try {
        if (loc.inSync.includes(job.to)) {
          // In sync, so proxies read it: out of the in-sync set first, still a member (it keeps
          // getting every write), and out of the set only once every proxy has heard — as a
          // move's source leaves. Dropped at once, it would stop getting writes while a proxy
          // that had not heard yet still read it.
          await ops.cas(job, loc, { gateway, members: [...members, job.to], inSync }, `${step}-leave`, true)
          await delay(ops.config.settleMs)
          continue
        }
        await ops.cas(job, loc, { gateway, members, inSync }, step, true)
        break
      } catch (err) {
        if (!(err instanceof FerryError) || err.code !== 'FERRY_LOCATION_CHANGED') throw err
      }
    }
    const after = await ops.read(job, true)
    if (after === null || !after.members.includes(job.to)) await ops.dropStray(job.volume, job.block, job.to)
  }
}

function abrupt (job: Job): boolean {
  const reason: unknown = job.abort.signal.reason
  return job.abort.signal.aborted && (reason instanceof DeposedError || (reason instanceof StoppingError && reason.abrupt))
}
