import { randomBytes } from 'node:crypto'
import type { Logger } from '../lib/log.js'
import { AccessProfiler, type ProfileSnapshot } from '../planner/profiler.js'
import { profileChannel } from '../state/channels.js'
import type { StateStore } from '../state/types.js'

/** Hottest blocks per published interval: keeps a message well under the store's size limit. */
const PUBLISH_BLOCKS = 100

/**
 * Feeds the access-pattern profiler. A proxy records every access into a profiler of its own
 * and, every interval, publishes that interval's summary on the store's `profile` channel and
 * starts a fresh one (the summaries are additive, so each access is counted exactly once). The
 * process that runs the planner merges every proxy's summaries into one profile — its own
 * accesses go straight into it.
 */
export class ProfileFeed {
  /** The fleet-wide profile; only in a process with the planner role. */
  readonly merged: AccessProfiler | undefined
  private current: AccessProfiler | undefined
  private readonly id = randomBytes(6).toString('hex')
  private timer: NodeJS.Timeout | undefined
  private readonly unsubscribe: (() => void) | undefined
  dropped = 0

  constructor (private readonly store: StateStore, opts: { publish: boolean, merge: boolean, intervalMs: number, halfLifeMs: number, logger: Logger }) {
    if (opts.merge) {
      const merged = new AccessProfiler({ halfLifeMs: opts.halfLifeMs })
      this.merged = merged
      const malformed = (why: string): void => {
        this.dropped++
        opts.logger.debug({ err: why }, 'ignored a malformed profile summary')
      }
      this.unsubscribe = profileChannel.subscribe(store, m => {
        if (m.from === this.id) return
        try {
          // The envelope is the channel's; the snapshot is the profiler's format, which merge checks.
          merged.merge(m.snapshot as ProfileSnapshot)
        } catch (err) {
          malformed((err as Error).message)
        }
      }, () => { malformed('not a profile message') })
    }
    if (opts.publish && !opts.merge) {
      this.current = new AccessProfiler({ halfLifeMs: opts.halfLifeMs })
      this.timer = setInterval(() => { this.publish(opts.halfLifeMs, opts.logger) }, opts.intervalMs)
      this.timer.unref()
    }
  }

  /** The proxy's AccessObserver: one call per proxied request. */
  readonly observe = (volume: string, block: string, client: string, site: string | undefined, write: boolean, at: number, servedBySite: string): void => {
    const p = this.merged ?? this.current
    p?.record({ volume, block, client, site: site ?? '', servedBySite, write, at })
  }

  close (): void {
    clearInterval(this.timer)
    this.unsubscribe?.()
  }

  private publish (halfLifeMs: number, logger: Logger): void {
    const p = this.current
    if (p === undefined || p.records === 0) return
    this.current = new AccessProfiler({ halfLifeMs })
    profileChannel.publish(this.store, { from: this.id, snapshot: p.snapshot({ limit: PUBLISH_BLOCKS }) }).catch(err => {
      this.dropped++
      logger.debug({ err: (err as Error).message }, 'could not publish a profile summary')
    })
  }
}
