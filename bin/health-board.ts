import type { StateStore } from '../state/types.js'

/**
 * Gateway health as the fleet sees it: the proxies publish every change on the store's
 * `gateway-health` channel (proxy/server.ts), and a process without a proxy of its own learns it
 * here. The latest report wins; a gateway nobody has reported on counts as healthy, so a fresh
 * DNS server answers at once rather than refusing everything until the first report.
 */
export class GatewayHealthBoard {
  private readonly healthy = new Map<string, { healthy: boolean, at: number }>()
  private readonly listeners = new Set<() => void>()
  private readonly unsubscribe: () => void

  constructor (store: StateStore) {
    this.unsubscribe = store.subscribe(e => {
      if (e.type !== 'message' || e.channel !== 'gateway-health') return
      const m = e.message as { gateway?: unknown, healthy?: unknown, at?: unknown }
      if (typeof m?.gateway !== 'string' || typeof m.healthy !== 'boolean') return
      this.set(m.gateway, m.healthy, typeof m.at === 'number' ? m.at : Date.now())
    })
  }

  /** A report from this process's own proxy (no round trip through the store needed). */
  set (gateway: string, healthy: boolean, at = Date.now()): void {
    const cur = this.healthy.get(gateway)
    if (cur !== undefined && cur.at > at) return
    this.healthy.set(gateway, { healthy, at })
    if (cur?.healthy !== healthy) for (const l of this.listeners) l()
  }

  isHealthy (gateway: string): boolean {
    return this.healthy.get(gateway)?.healthy ?? true
  }

  onChange (listener: () => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  close (): void {
    this.unsubscribe()
  }
}
