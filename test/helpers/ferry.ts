import { configSchema, type FerryConfig, type FerryConfigInput } from '../../config/schema.js'
import { createRegistry } from '../../lib/metrics.js'
import { silentLogger } from '../../lib/log.js'
import { FerryNode } from '../../bin/node.js'
import type { StateStore } from '../../state/types.js'
import type { StateConfigInput } from '../../state/config.js'
import type { Test } from 'tap'
import { waitFor } from './net.js'

export interface ProxyUnderTest {
  node: FerryNode
  config: FerryConfig
  /** http://127.0.0.1:PORT of the proxy listener. */
  url: string
  adminUrl: string
  stop: () => Promise<void>
}

export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789'

/**
 * A config for tests: the given gateways (ids gw1…), proxy and admin on ephemeral loopback
 * ports, quick health checks, hash placement of first writes, and whatever `overrides` say (merged one level deep per section).
 */
export function testConfig (gatewayUrls: readonly string[], overrides: Partial<Record<keyof FerryConfigInput, unknown>> = {}): FerryConfig {
  const base: Record<string, unknown> = {
    log: { level: 'silent' },
    sites: [
      { name: 'site-a', subnets: ['127.0.0.0/24', '::1/128'] },
      { name: 'site-b', subnets: ['127.0.1.0/24'] },
      { name: 'site-c', subnets: ['127.0.2.0/24'] }
    ],
    gateways: gatewayUrls.map((url, i) => ({ id: `gw${i + 1}`, url, site: ['site-a', 'site-b', 'site-c'][i % 3] })),
    proxy: { listen: { host: '127.0.0.1', port: 0 }, trustedProxies: ['127.0.0.1/32'] },
    admin: { listen: { host: '127.0.0.1', port: 0 }, token: TEST_ADMIN_TOKEN },
    health: { active: { intervalMs: 200, timeoutMs: 300 }, passive: { failures: 2, baseEjectMs: 500 } },
    // Tests of other concerns predict where a first write lands by rendezvous hashing
    // (routes.hashed); the placement tests (test/placement/) turn first-touch placement on.
    placement: { enabled: false }
  }
  for (const [k, v] of Object.entries(overrides)) {
    const cur = base[k]
    base[k] = cur !== null && typeof cur === 'object' && !Array.isArray(cur) && v !== null && typeof v === 'object' && !Array.isArray(v)
      ? { ...(cur as object), ...(v as object) }
      : v
  }
  return configSchema.parse(base)
}

/** Starts a FerryNode with the proxy role on `config`. Use with t.teardown(p.stop). */
export async function startProxy (config: FerryConfig, opts: { store?: StateStore } = {}): Promise<ProxyUnderTest> {
  const node = new FerryNode({ config, roles: new Set(['proxy']), logger: silentLogger, registry: createRegistry(false), ...opts })
  await node.start()
  const p = node.proxy?.address
  const a = node.admin.address
  let stopped = false
  return {
    node,
    config,
    url: `http://127.0.0.1:${p?.port ?? 0}`,
    adminUrl: `http://127.0.0.1:${a.port}`,
    stop: async () => { if (!stopped) { stopped = true; await node.stop() } }
  }
}

/**
 * Collects anything that escapes to the process (an 'error' without a listener, a rejected
 * promise nobody awaited) for the rest of the test file, so a test can assert that nothing did.
 */
export function collectEscapes (t: Test): unknown[] {
  const escaped: unknown[] = []
  const onEscape = (err: unknown): void => { escaped.push(err) }
  process.on('unhandledRejection', onEscape)
  process.on('uncaughtException', onEscape)
  t.teardown(() => {
    process.off('unhandledRejection', onEscape)
    process.off('uncaughtException', onEscape)
  })
  return escaped
}

/** A proxy with sessions on the given shared state, started once it has loaded its routes. */
export async function proxyOnState (t: Test, gatewayUrls: readonly string[], state: StateConfigInput): Promise<ProxyUnderTest> {
  const p = await startProxy(testConfig(gatewayUrls, { state, sessions: { enabled: true } }))
  t.teardown(p.stop)
  await waitFor(() => p.node.store.status().ok && p.node.proxy?.sync?.cache.loaded, 'the proxy to load its routes from the store', 10_000)
  return p
}
