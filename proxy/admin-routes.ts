import { PathPattern } from './path-pattern.js'
import { idParam } from '../admin/input.js'
import type { AdminServer } from '../admin/server.js'
import { blockKey } from '../lib/ids.js'
import type { ProxyServer } from './server.js'
import { describeGatewayError } from '../upstream/connect.js'

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

  admin.route('GET', '/v1/blocks/:volume/:block', async ({ params }) => {
    const volume = idParam(params, 'volume')
    const block = idParam(params, 'block')
    const key = blockKey(volume, block)
    const route = proxy.routes.route(volume, block, key)
    const loc = route.location
    return {
      volume,
      block,
      location: {
        gateway: route.gateway?.id ?? null,
        placed: route.placed,
        ...(loc
          ? {
              epoch: loc.epoch,
              phase: loc.phase,
              version: loc.version,
              ...(loc.target ? { target: loc.target } : {}),
              members: loc.members,
              inSync: loc.inSync,
              // What each member holds now (its ETag, asked for here): an in-sync member holds
              // the block's current version; one out of sync is joining or stale, and never read.
              replicas: await Promise.all(loc.members.map(async id => ({
                gateway: id,
                state: loc.inSync.includes(id) ? 'in-sync' : 'out-of-sync',
                healthy: proxy.gateways.isHealthy(id),
                ...await memberVersion(proxy, id, volume, block)
              })))
            }
          : {})
      },
      access: proxy.recorder.get(volume, block) ?? null
    }
  })
}

/** A member's ETag for the block (null: it does not hold it), or why it could not be asked. */
async function memberVersion (proxy: ProxyServer, id: string, volume: string, block: string): Promise<{ version: string | null } | { version: null, error: string }> {
  const g = proxy.gateways.get(id)
  if (g === undefined) return { version: null, error: 'not configured' }
  try {
    const res = await g.pool.request({ method: 'HEAD', path: PathPattern.gatewayPath(volume, block), signal: AbortSignal.timeout(1000) })
    await res.body.dump()
    if (res.statusCode === 404) return { version: null }
    if (res.statusCode !== 200) return { version: null, error: `status ${res.statusCode}` }
    return { version: typeof res.headers.etag === 'string' ? res.headers.etag : null }
  } catch (err) {
    return { version: null, error: describeGatewayError(err) }
  }
}
