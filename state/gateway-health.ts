import { gatewayHealthChannel, type GatewayHealthReport } from './channels.js'
import type { StateStore } from './types.js'

export interface GatewayHealthViewOptions {
  /** Follow the store's `gateway-health` channel (otherwise feed it with `apply`). */
  store?: Pick<StateStore, 'subscribe'>
  /** How long a "down" report counts unless its reporter revokes it. Default: until revoked. */
  reportTtlMs?: number
}

/**
 * Gateway health as the proxies report it (`gateway-health`), with the one rule every consumer
 * applies — DNS to choose which edge to answer with, the planner (on top of its own probes) to
 * choose targets:
 *
 *   a gateway is healthy unless a reporter's latest report says it is down, and that report is
 *   younger than `reportTtlMs`.
 *
 * Per reporter, because proxies disagree: one proxy that cannot reach a gateway is reason enough
 * not to send more clients there, and another proxy's "up" does not overrule it; a reporter's "up"
 * withdraws only its own "down". The TTL is for a reporter that died with a "down" standing: the
 * planner, which probes every gateway itself, lets such a report lapse; DNS has no other source
 * and keeps it. A gateway nobody reported on is healthy, so a fresh process answers at once.
 */
export class GatewayHealthView {
  reportTtlMs: number
  /** gateway → reporter → when it reported the gateway down. */
  private readonly down = new Map<string, Map<string, number>>()
  private readonly listeners = new Set<(gateway: string, healthy: boolean) => void>()
  private readonly unsubscribe: (() => void) | undefined

  constructor (opts: GatewayHealthViewOptions = {}) {
    this.reportTtlMs = opts.reportTtlMs ?? Infinity
    if (opts.store !== undefined) this.unsubscribe = gatewayHealthChannel.subscribe(opts.store, r => { this.apply(r) })
  }

  /** Takes one report into account; true when it changed the gateway's health. */
  apply (report: GatewayHealthReport, now = Date.now()): boolean {
    const was = this.isHealthy(report.gateway, now)
    let reporters = this.down.get(report.gateway)
    if (report.healthy) {
      reporters?.delete(report.from)
    } else {
      if (reporters === undefined) this.down.set(report.gateway, reporters = new Map())
      // A report dated ahead of this clock must not outlive the TTL.
      reporters.set(report.from, Math.min(report.at, now))
    }
    const is = this.isHealthy(report.gateway, now)
    if (was !== is) for (const l of this.listeners) l(report.gateway, is)
    return was !== is
  }

  isHealthy (gateway: string, now = Date.now()): boolean {
    return this.reportedDownBy(gateway, now).length === 0
  }

  /** The reporters whose "down" report on `gateway` still counts. */
  reportedDownBy (gateway: string, now = Date.now()): string[] {
    const reporters = this.down.get(gateway)
    if (reporters === undefined) return []
    for (const [from, at] of reporters) if (now - at >= this.reportTtlMs) reporters.delete(from)
    if (reporters.size === 0) this.down.delete(gateway)
    return [...reporters.keys()]
  }

  /** Drops every report on `gateway` (it left the fleet, or is a new gateway under an old id). */
  forget (gateway: string): void {
    this.down.delete(gateway)
  }

  /** Called when `apply` changes a gateway's health (not when a report lapses). */
  onChange (listener: (gateway: string, healthy: boolean) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  close (): void {
    this.unsubscribe?.()
  }
}
