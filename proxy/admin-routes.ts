import { idParam } from '../admin/input.js'
import type { AdminServer } from '../admin/server.js'
import { blockKey } from '../lib/ids.js'
import type { ProxyServer } from './server.js'

/** The proxy's readiness and its part of the /v1 API; called by bin/ for a process with the proxy role. */
export function registerProxyAdmin (admin: AdminServer, proxy: ProxyServer): void {
  admin.addReadinessCheck('proxy', () => proxy.isListening ? undefined : 'proxy listener is not bound')
  admin.addReadinessCheck('gateways', () => {
    const now = Date.now()
    if (proxy.gateways.healthyCount(now) > 0) return undefined
    const why = proxy.gateways.all().map(g => `${g.id} ${g.downReason(now) ?? 'down'}${g.probe.lastError !== null ? ` (${g.probe.lastError})` : ''}`)
    return `no healthy gateway: ${why.join('; ')}`
  })

  admin.route('GET', '/v1/gateways', () => {
    const now = Date.now()
    return {
      gateways: proxy.gateways.all().map(g => ({
        id: g.id,
        url: g.url,
        site: g.site,
        capacityBytes: g.capacityBytes,
        healthy: g.isHealthy(now),
        reason: g.downReason(now) ?? null,
        ejectedForMs: Math.max(0, g.ejectedUntil - now),
        consecutiveFailures: g.consecutiveFailures,
        lastProbeError: g.probe.lastError,
        inflight: g.inflight,
        ...admin.gatewayExtras(g.id)
      }))
    }
  })

  admin.route('GET', '/v1/blocks/:volume/:block', ({ params }) => {
    const volume = idParam(params, 'volume')
    const block = idParam(params, 'block')
    const key = blockKey(volume, block)
    const route = proxy.routes.route(volume, block, key)
    return {
      volume,
      block,
      location: {
        gateway: route.gateway?.id ?? null,
        placed: route.placed,
        ...(route.location ? { epoch: route.location.epoch, phase: route.location.phase, version: route.location.version, ...(route.location.target ? { target: route.location.target } : {}) } : {})
      },
      access: proxy.recorder.get(volume, block) ?? null
    }
  })
}
