import { createRegistry } from '../../lib/metrics.js'
import type { Registry } from 'prom-client'
import { parseDnsConfig, type DnsConfigInput } from '../../dns/config.js'
import { AuthoritativeServer } from '../../dns/server.js'
import type { DnsView } from '../../dns/view.js'
import { ipv6Available } from './client.js'

export interface Running {
  readonly server: AuthoritativeServer
  readonly registry: Registry
  /** UDP and TCP share one port per address. */
  readonly port4: number
  /** Undefined when ::1 cannot be bound here. */
  readonly port6: number | undefined
}

/**
 * Starts a server for `view` on free ports on 127.0.0.1 and (when available) ::1, with rate
 * limiting off unless `config` says otherwise; stopped by the test's teardown.
 */
export async function startServer (t: { teardown: (fn: () => Promise<void>) => void }, view: DnsView, config: DnsConfigInput = {}): Promise<Running> {
  const v6 = await ipv6Available()
  const registry = createRegistry(false)
  const server = new AuthoritativeServer({
    config: parseDnsConfig({
      listen: [{ address: '127.0.0.1', port: 0 }, ...(v6 ? [{ address: '::1', port: 0 }] : [])],
      ...config,
      rateLimit: { responsesPerSecond: 0, ...config.rateLimit }
    }),
    view,
    registry
  })
  await server.start()
  t.teardown(async () => { await server.stop() })
  const addrs = server.addresses()
  const port4 = addrs.find(a => a.address === '127.0.0.1')?.port as number
  const port6 = addrs.find(a => a.address === '::1')?.port
  return { server, registry, port4, port6 }
}

export const ZONE = 'sandbox.ferry.test'
