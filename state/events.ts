import type { Logger } from '../lib/log.js'
import { decodeEvent } from './codec.js'
import type { StateMetrics } from './metrics.js'
import type { StoreEvent, StoreEventHandler, StoreStatus } from './types.js'

/**
 * The subscriber list of one store instance. Delivery is synchronous and in arrival order; a
 * handler that throws is logged and skipped, so one faulty consumer cannot stop route changes
 * from reaching the others (or, worse, break the connection's message loop).
 */
export class EventHub {
  private readonly handlers = new Set<StoreEventHandler>()
  private current: StoreStatus = { ok: false, reason: 'connecting' }
  private lastMalformedLog = 0

  constructor (private readonly logger: Logger, private readonly metrics: StateMetrics) {}

  subscribe (handler: StoreEventHandler): () => void {
    // Wrap so the same function can be subscribed twice and unsubscribed independently.
    const h: StoreEventHandler = e => handler(e)
    this.handlers.add(h)
    return () => { this.handlers.delete(h) }
  }

  emit (event: StoreEvent): void {
    for (const h of [...this.handlers]) {
      try {
        h(event)
      } catch (err) {
        this.logger.error({ err, event: event.type }, 'state event handler threw')
      }
    }
  }

  /** A raw notification from the backend: decoded, validated, counted, dispatched. */
  deliverRaw (raw: string): void {
    const event = decodeEvent(raw)
    if (event === null) {
      this.metrics.malformed.inc()
      const now = Date.now()
      // Rate-limited: a misbehaving publisher must not turn into a log flood.
      if (now - this.lastMalformedLog > 10_000) {
        this.lastMalformedLog = now
        this.logger.warn({ sample: raw.slice(0, 200) }, 'ignoring malformed state notification')
      }
      return
    }
    this.metrics.eventsReceived.inc({ type: event.type })
    this.emit(event)
  }

  status (): StoreStatus {
    return this.current
  }

  /** Records the status and emits a `status` event if it changed (ok or reason). */
  setStatus (next: StoreStatus): boolean {
    if (next.ok === this.current.ok && next.reason === this.current.reason) return false
    const wasOk = this.current.ok
    this.current = next
    this.metrics.setUp(next.ok)
    if (next.ok !== wasOk) {
      if (next.ok) this.logger.info('state store is ready')
      else this.logger.warn({ reason: next.reason }, 'state store is degraded')
    }
    this.emit({ type: 'status', status: next })
    return true
  }

  resync (reason: string): void {
    this.metrics.resyncs.inc()
    this.emit({ type: 'resync', reason })
  }
}
