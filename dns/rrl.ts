import { SiteMap } from '../fleet/site-map.js'
import type { DnsConfig } from './config.js'
import { ipv4ToInt, ipv6Bytes } from '../lib/ip.js'

/**
 * Response rate limiting per client subnet, so that ferry cannot be used to amplify a flood at
 * a spoofed victim (the idea of BIND's RRL, keyed on the subnet only: ferry's answers are all
 * small, so what matters is how many go to one place).
 *
 * Each subnet has a balance, credited `rate` per second up to `rate` (one second of burst) and
 * debited one per response, answered or not. While the balance is negative the subnet is
 * limited; the debt is capped at `rate × window`, so a subnet that stops flooding is free
 * again at most `window` seconds later, and one that keeps flooding stays limited. Of the
 * limited responses every `slip`-th is sent as a bare truncated reply: a real client behind a
 * spoofed flood then retries over TCP, which cannot be spoofed and is never limited.
 */

export const RRL_SEND = 0
export const RRL_DROP = 1
export const RRL_SLIP = 2
export type RrlVerdict = typeof RRL_SEND | typeof RRL_DROP | typeof RRL_SLIP

interface Bucket {
  balance: number
  /** Seconds (monotonic) of the last update. */
  last: number
  limited: number
  readonly exempt: boolean
}

type RateLimitConfig = DnsConfig['rateLimit']

export class RateLimiter {
  private readonly rate: number
  private readonly floor: number
  private readonly slip: number
  private readonly v4Shift: number
  private readonly v6Bits: number
  private readonly maxTableSize: number
  private readonly window: number
  private readonly exempt: SiteMap | undefined
  private readonly v4 = new Map<number, Bucket>()
  private readonly v6 = new Map<string, Bucket>()
  // Shared by every new subnet once the tables are full of active subnets: under a flood from
  // that many sources, treating newcomers as one subnet is the safe side.
  private readonly overflow: Bucket
  limitedTotal = 0

  constructor (cfg: RateLimitConfig) {
    this.rate = cfg.responsesPerSecond
    this.window = cfg.windowS
    this.floor = -cfg.responsesPerSecond * cfg.windowS
    this.slip = cfg.slip
    this.v4Shift = 32 - cfg.ipv4PrefixLength
    this.v6Bits = cfg.ipv6PrefixLength
    this.maxTableSize = cfg.maxTableSize
    this.exempt = cfg.exempt.length > 0 ? new SiteMap([{ name: 'exempt', subnets: cfg.exempt, edges: [] }]) : undefined
    this.overflow = { balance: this.rate, last: 0, limited: 0, exempt: false }
  }

  get enabled (): boolean { return this.rate > 0 }

  /** Subnets currently tracked. */
  get size (): number { return this.v4.size + this.v6.size }

  /**
   * Accounts one UDP response to `address` at `now` (monotonic seconds) and says whether to
   * send it, drop it, or send a truncated reply instead.
   */
  check (address: string, now: number): RrlVerdict {
    if (this.rate === 0) return RRL_SEND
    const bucket = this.bucket(address, now)
    if (bucket.exempt) return RRL_SEND
    const credit = (now - bucket.last) * this.rate
    bucket.last = now
    bucket.balance = Math.min(this.rate, bucket.balance + credit) - 1
    if (bucket.balance >= 0) return RRL_SEND
    if (bucket.balance < this.floor) bucket.balance = this.floor
    this.limitedTotal++
    bucket.limited++
    return this.slip > 0 && bucket.limited % this.slip === 0 ? RRL_SLIP : RRL_DROP
  }

  /** Forgets subnets that have been quiet long enough to be back at a full balance. */
  sweep (now: number): void {
    // A bucket at the floor is full again after window + 1 seconds.
    const idle = this.window + 1
    for (const [k, b] of this.v4) if (now - b.last > idle) this.v4.delete(k)
    for (const [k, b] of this.v6) if (now - b.last > idle) this.v6.delete(k)
  }

  private bucket (address: string, now: number): Bucket {
    let ip = address
    if (ip.length > 7 && ip.charCodeAt(0) === 58 /* : */ && ip.startsWith('::ffff:') && ip.indexOf('.') > 0) ip = ip.slice(7)
    if (ip.indexOf(':') < 0) {
      const key = this.v4Shift === 32 ? 0 : ipv4ToInt(ip) >>> this.v4Shift
      let b = this.v4.get(key)
      if (b === undefined) {
        b = this.create(ip, now)
        if (b !== this.overflow) this.v4.set(key, b)
      }
      return b
    }
    const bytes = ipv6Bytes(ip)
    const whole = this.v6Bits >>> 3
    let key = bytes.toString('hex', 0, whole)
    const rest = this.v6Bits & 7
    if (rest > 0) key += ((bytes[whole] as number) & (0xff00 >>> rest) & 0xff).toString(16)
    let b = this.v6.get(key)
    if (b === undefined) {
      b = this.create(ip, now)
      if (b !== this.overflow) this.v6.set(key, b)
    }
    return b
  }

  private create (ip: string, now: number): Bucket {
    if (this.size >= this.maxTableSize) {
      this.sweep(now)
      if (this.size >= this.maxTableSize) return this.overflow
    }
    return { balance: this.rate, last: now, limited: 0, exempt: this.exempt?.siteOf(ip) !== undefined }
  }
}

