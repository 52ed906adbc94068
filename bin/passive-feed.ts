import { randomBytes } from 'node:crypto'
import type { Logger } from '../lib/log.js'
import type { GatewaySet } from '../proxy/gateway-set.js'
import type { PassiveObservation } from '../planner/telemetry.js'
import { passiveChannel } from '../state/channels.js'
import type { StateStore } from '../state/types.js'

/**
 * The proxies' passive observations of each gateway (requests, errors, mean latency of real
 * traffic) for the planner's health telemetry. Every interval the proxy takes the difference of
 * its per-gateway totals and hands it to the planner: directly when the planner runs in this
 * process, through the store's `passive` channel otherwise.
 */
export class PassiveFeed {
  private readonly id = randomBytes(6).toString('hex')
  private readonly last = new Map<string, { requests: number, errors: number, latencyMsTotal: number }>()
  private timer: NodeJS.Timeout | undefined
  private unsubscribe: (() => void) | undefined

  constructor (
    private readonly store: StateStore,
    private readonly gateways: GatewaySet | undefined,
    private readonly record: ((gateway: string, obs: PassiveObservation) => void) | undefined,
    intervalMs: number,
    private readonly logger: Logger
  ) {
    if (gateways !== undefined) {
      this.timer = setInterval(() => { this.tick() }, intervalMs)
      this.timer.unref()
    }
    if (record !== undefined) {
      this.unsubscribe = passiveChannel.subscribe(store, m => {
        if (m.from === this.id) return
        for (const [gateway, obs] of Object.entries(m.observations)) record(gateway, obs)
      })
    }
  }

  close (): void {
    clearInterval(this.timer)
    this.unsubscribe?.()
  }

  private tick (): void {
    const observations: Record<string, PassiveObservation> = {}
    for (const g of this.gateways?.all() ?? []) {
      const prev = this.last.get(g.id) ?? { requests: 0, errors: 0, latencyMsTotal: 0 }
      const requests = g.requests - prev.requests
      this.last.set(g.id, { requests: g.requests, errors: g.errors, latencyMsTotal: g.latencyMsTotal })
      if (requests <= 0) continue
      observations[g.id] = { requests, errors: g.errors - prev.errors, latencyMs: (g.latencyMsTotal - prev.latencyMsTotal) / requests }
    }
    if (Object.keys(observations).length === 0) return
    if (this.record !== undefined) {
      for (const [gateway, obs] of Object.entries(observations)) this.record(gateway, obs)
      return
    }
    passiveChannel.publish(this.store, { from: this.id, observations }).catch(err => {
      this.logger.debug({ err: (err as Error).message }, 'could not publish passive observations')
    })
  }
}
