import { EventEmitter } from 'node:events'
import { silentLogger, type Logger } from '../lib/log.js'
import type { Fence, StateStore } from '../state/types.js'

export interface LeaderElectionOptions {
  /** Lease name in the store. Default `planner`. */
  name?: string
  /** Who we are: unique per planner instance (two planners in one process must differ). */
  holder: string
  ttlMs: number
  renewIntervalMs: number
  logger?: Logger
}

export interface LeaderEvents {
  elected: [token: number]
  deposed: [reason: string]
}

/**
 * Fraction of the TTL, counted from when the last successful acquire/renew was *sent*, during
 * which we still consider ourselves leader. The store's lease runs from when it *received* the
 * call (later), so our deadline always falls before the store lets anyone else in, with 10 % of
 * slack for clock-rate differences between this host and the store.
 */
const LOCAL_VALIDITY = 0.9

/**
 * Leader election through the store's lease: one planner acts, the others stand by and take
 * over once the leader stops renewing.
 *
 * Two defences keep a deposed leader (paused by GC, partitioned from the store) from doing harm:
 *
 * - **Fencing.** `fence()` is passed with every location write; the store refuses a token that
 *   is no longer the lease's (and any token lower than one that already wrote the block). So a
 *   late compare-and-set from an old leader is refused even if it still believes it leads.
 * - **Local expiry.** Gateway side effects (PUT to a target, DELETE of a copy) are not fenced by
 *   the gateways, so the planner only starts them while `validForMs()` covers them. The local
 *   deadline is computed from when the renewal was sent and ends before the store's, so by the
 *   time a new leader can be elected the old one has stopped starting such requests.
 */
export class LeaderElection extends EventEmitter<LeaderEvents> {
  readonly name: string
  readonly holder: string
  private ttlMs: number
  private renewIntervalMs: number
  private token: number | null = null
  private validUntil = 0
  private timer: NodeJS.Timeout | null = null
  /** Fires at the local deadline: a renewal stuck on a hung store must not leave us acting. */
  private watchdog: NodeJS.Timeout | null = null
  private running = false
  private ticking: Promise<void> | null = null
  private readonly logger: Logger

  constructor (private readonly store: StateStore, opts: LeaderElectionOptions) {
    super()
    this.name = opts.name ?? 'planner'
    this.holder = opts.holder
    this.ttlMs = opts.ttlMs
    this.renewIntervalMs = opts.renewIntervalMs
    this.logger = (opts.logger ?? silentLogger).child({ component: 'leader', holder: this.holder })
  }

  get isLeader (): boolean { return this.token !== null && Date.now() < this.validUntil }

  /** The token to pass with every location write, or null when we are not (or no longer surely) the leader. */
  fence (): Fence | null {
    return this.isLeader ? { lease: this.name, token: this.token as number } : null
  }

  /** How long we are still surely the leader (0 when we are not). */
  validForMs (): number {
    return this.token === null ? 0 : Math.max(0, this.validUntil - Date.now())
  }

  /** Starts campaigning: the first attempt runs at once, then every renewIntervalMs. */
  start (): Promise<void> {
    if (this.running) return this.ticking ?? Promise.resolve()
    this.running = true
    return this.tick()
  }

  reconfigure (ttlMs: number, renewIntervalMs: number): void {
    this.ttlMs = ttlMs
    this.renewIntervalMs = renewIntervalMs
  }

  /** Stops campaigning and hands the lease back, so a standby takes over at once rather than after the TTL. */
  async stop (): Promise<void> {
    this.running = false
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    await this.ticking
    const token = this.token
    if (token === null) return
    this.depose('stopped')
    try {
      await this.store.releaseLease(this.name, this.holder, token)
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'could not release the lease; it expires on its own')
    }
  }

  /** As a crash: stop renewing, keep the lease (it expires after its TTL), say nothing to the store. */
  kill (): void {
    this.running = false
    if (this.timer !== null) clearTimeout(this.timer)
    if (this.watchdog !== null) clearTimeout(this.watchdog)
    this.timer = null
    this.watchdog = null
    this.token = null
    this.validUntil = 0
  }

  /** One acquire-or-renew attempt (exposed so tests can step it). */
  tick (): Promise<void> {
    this.ticking ??= this.attempt().finally(() => {
      this.ticking = null
      this.schedule()
    })
    return this.ticking
  }

  private schedule (): void {
    if (!this.running || this.timer !== null) return
    // A leader whose renewals fail keeps retrying faster, so a store blip does not cost the lease.
    const delay = this.token !== null && Date.now() + this.renewIntervalMs > this.validUntil
      ? Math.max(50, Math.floor(this.renewIntervalMs / 4))
      : this.renewIntervalMs
    this.timer = setTimeout(() => { this.timer = null; void this.tick() }, delay)
    this.timer.unref()
  }

  private async attempt (): Promise<void> {
    if (!this.running) return
    const sentAt = Date.now()
    if (this.token === null) {
      let grant
      try {
        grant = await this.store.acquireLease(this.name, this.holder, this.ttlMs)
      } catch (err) {
        this.logger.debug({ err: (err as Error).message }, 'lease acquisition failed')
        return
      }
      if (grant === null || !this.running) return
      this.token = grant.token
      this.extend(sentAt)
      this.logger.info({ token: grant.token }, 'elected planner leader')
      this.emit('elected', grant.token)
      return
    }
    let renewed: boolean
    try {
      renewed = await this.store.renewLease(this.name, this.holder, this.token, this.ttlMs)
    } catch (err) {
      // Unknown outcome: we stay leader until our local deadline, and retry before it.
      if (Date.now() >= this.validUntil) this.depose(`lease renewal failed past its deadline: ${(err as Error).message}`)
      return
    }
    if (renewed) this.extend(sentAt)
    else this.depose('lease lost (expired or taken over)')
  }

  private extend (sentAt: number): void {
    this.validUntil = sentAt + Math.floor(this.ttlMs * LOCAL_VALIDITY)
    if (this.watchdog !== null) clearTimeout(this.watchdog)
    this.watchdog = setTimeout(() => {
      this.watchdog = null
      if (this.token !== null && Date.now() >= this.validUntil) this.depose('lease not renewed before its deadline')
    }, Math.max(0, this.validUntil - Date.now()) + 1)
    this.watchdog.unref()
  }

  private depose (reason: string): void {
    if (this.token === null) return
    this.logger.warn({ token: this.token, reason }, 'no longer planner leader')
    this.token = null
    this.validUntil = 0
    if (this.watchdog !== null) clearTimeout(this.watchdog)
    this.watchdog = null
    this.emit('deposed', reason)
  }
}
