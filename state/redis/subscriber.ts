import type { Redis, RedisOptions } from 'ioredis'
import { ioredis } from './ioredis.js'
import type { Logger } from '../../lib/log.js'
import type { Endpoint } from './connection.js'

export interface SubscriberOptions {
  channel: string
  /** Nodes to try, in order; called at every (re)connection so a Cluster's current nodes are used. */
  targets: () => Endpoint[]
  common: RedisOptions
  backoff: (attempt: number) => number
  /** How often the idle subscription is probed with PING (a silent half-open TCP connection is otherwise never noticed). */
  pingIntervalMs: number
  logger: Logger
  onMessage: (raw: string) => void
  /** true once SUBSCRIBE is acknowledged (events flow from here on); false with a reason when lost. */
  onState: (subscribed: boolean, reason?: string) => void
}

/**
 * The dedicated pub/sub connection. Written by hand rather than relying on ioredis'
 * auto-resubscribe (standalone) or ClusterSubscriber (Cluster) because both re-subscribe
 * silently: a subscriber would never learn that messages were lost while it was away. Here every
 * loss is reported (`onState(false)`) and every successful SUBSCRIBE is reported
 * (`onState(true)`), which is what the store turns into its `resync` signal.
 *
 * Classic (non-sharded) pub/sub: on a Cluster a PUBLISH on any node reaches subscribers on every
 * node, so one connection to any node receives all events. On failure the next node is tried.
 */
export class ChannelSubscriber {
  private conn: Redis | null = null
  private attempt = 0
  private targetIndex = 0
  private stopped = false
  private subscribed = false
  private retryTimer: NodeJS.Timeout | null = null
  private pingTimer: NodeJS.Timeout | null = null
  private lastError = ''

  constructor (private readonly opts: SubscriberOptions) {}

  start (): void {
    this.connect()
  }

  isSubscribed (): boolean {
    return this.subscribed
  }

  private connect (): void {
    if (this.stopped) return
    const targets = this.opts.targets()
    if (targets.length === 0) {
      this.scheduleRetry('no node to subscribe on')
      return
    }
    const target = targets[this.targetIndex++ % targets.length]!
    const conn = new (ioredis().Redis)({
      ...this.opts.common,
      host: target.host,
      port: target.port,
      lazyConnect: true,
      // We reconnect ourselves (possibly to another node) and subscribe again explicitly.
      retryStrategy: () => null,
      autoResubscribe: false,
      enableOfflineQueue: true,
      connectionName: 'ferry-events'
    })
    this.conn = conn
    let done = false
    const fail = (reason: string): void => {
      if (done) return
      done = true
      conn.removeAllListeners('message')
      conn.disconnect()
      if (this.conn === conn) this.lost(reason)
    }
    // Without an 'error' listener ioredis would re-emit on the process as an unhandled error.
    conn.on('error', (err: Error) => { this.lastError = err.message })
    conn.on('message', (channel: string, message: string) => {
      if (channel === this.opts.channel) this.opts.onMessage(message)
    })
    conn.once('end', () => fail(this.lastError !== '' ? this.lastError : 'connection closed'))
    conn.connect()
      .then(() => conn.subscribe(this.opts.channel))
      .then(() => {
        if (done || this.stopped || this.conn !== conn) return
        this.attempt = 0
        this.targetIndex-- // stay on a node that works
        this.subscribed = true
        this.lastError = ''
        this.startPing(conn, fail)
        this.opts.onState(true)
      })
      .catch((err: Error) => fail(err.message))
  }

  private startPing (conn: Redis, fail: (reason: string) => void): void {
    this.stopPing()
    this.pingTimer = setInterval(() => {
      conn.ping().catch((err: Error) => fail(`ping: ${err.message}`))
    }, this.opts.pingIntervalMs)
    this.pingTimer.unref()
  }

  private stopPing (): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer)
    this.pingTimer = null
  }

  private lost (reason: string): void {
    this.stopPing()
    this.conn = null
    if (this.stopped) return
    const wasSubscribed = this.subscribed
    this.subscribed = false
    if (wasSubscribed) this.opts.logger.warn({ reason }, 'state event subscription lost')
    this.opts.onState(false, reason)
    this.scheduleRetry(reason)
  }

  private scheduleRetry (reason: string): void {
    if (this.stopped || this.retryTimer !== null) return
    const delay = this.opts.backoff(this.attempt++)
    this.opts.logger.debug({ reason, delay }, 'state event subscription: reconnecting')
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.connect()
    }, delay)
    this.retryTimer.unref()
  }

  async close (): Promise<void> {
    this.stopped = true
    this.stopPing()
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
    const conn = this.conn
    this.conn = null
    this.subscribed = false
    if (conn !== null) conn.disconnect()
  }
}
