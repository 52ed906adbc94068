import type { Test } from 'tap'
import { request } from 'undici'
import type { FerryConfig } from '../../../config/schema.js'
import { createRegistry } from '../../../lib/metrics.js'
import { silentLogger } from '../../../lib/log.js'
import type { PlannerConfigInput } from '../../../planner/config.js'
import { Planner } from '../../../planner/planner.js'
import { createStore } from '../../../state/factory.js'
import type { MigrationRecord, StateStore } from '../../../state/types.js'
import { startGateways, type Gateways } from '../../helpers/gateway.js'
import { startProxy, testConfig, type ProxyUnderTest } from '../../helpers/ferry.js'
import { waitFor } from '../../helpers/net.js'

/** Planner settings for tests: short lease, quick probes, short settle and grace, no rebalancer. */
export function testPlannerConfig (overrides: PlannerConfigInput = {}): PlannerConfigInput {
  return {
    ...overrides,
    // Short enough for quick takeovers, long enough that a loaded machine's event-loop stalls
    // do not make a leader stand down.
    lease: { ttlMs: 2000, renewIntervalMs: 300, ...overrides.lease },
    health: { probeIntervalMs: 200, probeTimeoutMs: 300, ...overrides.health },
    rebalancer: { enabled: false, ...overrides.rebalancer },
    migration: {
      concurrency: 8,
      settleMs: 15,
      gracePeriodMs: 100,
      cutoverTimeoutMs: 1000,
      recoveryIntervalMs: 300,
      retryDelayMs: 100,
      copyTimeoutMs: 10_000,
      requestTimeoutMs: 2000,
      progressIntervalMs: 50,
      ...overrides.migration
    }
  }
}

export interface Rig {
  gws: Gateways
  store: StateStore
  config: FerryConfig
  /** Starts a planner on the rig's store (stopped at teardown unless killed). */
  planner: (overrides?: PlannerConfigInput, opts?: { store?: StateStore, admin?: boolean }) => Promise<Planner>
  proxy: () => Promise<ProxyUnderTest>
}

/**
 * Reference gateways gw1…gwN (sites site-a, site-b, site-c), one memory store, and factories for
 * planners and a proxy on it. Everything is torn down with the test.
 */
export async function rig (t: Test, opts: { gateways?: number, store?: StateStore, config?: Parameters<typeof testConfig>[1] } = {}): Promise<Rig> {
  const gws = await startGateways(opts.gateways ?? 3)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, opts.config ?? {})
  const store = opts.store ?? createStore(config.state)
  if (opts.store === undefined) {
    t.teardown(() => store.close())
    // What a node's rebuilder does at once for a memory store (nobody else can hold a cache of
    // it): the rig's planners run without one, and a planner places no block while the store's
    // locations are being rebuilt.
    const generation = await store.generation()
    await store.finishRebuild(generation.id)
  }
  return {
    gws,
    store,
    config,
    planner: async (overrides = {}, o = {}) => await startPlanner(t, config, o.store ?? store, overrides),
    proxy: async () => {
      const p = await startProxy(config, { store })
      t.teardown(p.stop)
      return p
    }
  }
}

/** A planner on `config`'s gateways and `store`, with testPlannerConfig(overrides); stopped at teardown. */
export async function startPlanner (t: Test, config: FerryConfig, store: StateStore, overrides: PlannerConfigInput = {}): Promise<Planner> {
  const p = new Planner({
    config: { gateways: config.gateways, sites: config.sites, planner: testPlannerConfig(overrides), state: config.state, proxy: config.proxy },
    store,
    logger: silentLogger,
    registry: createRegistry(false)
  })
  t.teardown(() => p.stop())
  await p.start()
  return p
}

export async function waitLeader (p: Planner, timeoutMs = 5000): Promise<void> {
  await waitFor(() => p.engine.isActive, 'the planner to lead', timeoutMs)
}

/** Polls the migration log until the migration has a result. */
export async function waitEnded (p: Planner, id: string, timeoutMs = 10_000): Promise<MigrationRecord> {
  return await waitFor(async () => {
    const r = await p.store.getMigration(id)
    return r !== null && r.result !== null ? r : undefined
  }, `migration ${id} to end`, timeoutMs, 10) as MigrationRecord
}

export async function put (url: string, body: string | Buffer): Promise<{ status: number, etag: string | undefined, code?: string }> {
  const res = await request(url, { method: 'PUT', body })
  const text = await res.body.text()
  let code: string | undefined
  if (res.statusCode >= 400) try { code = (JSON.parse(text) as { error?: { code?: string } }).error?.code } catch { /* not JSON */ }
  return { status: res.statusCode, etag: res.headers.etag as string | undefined, ...(code === undefined ? {} : { code }) }
}

export async function get (url: string): Promise<{ status: number, body: string, etag: string | undefined }> {
  const res = await request(url)
  return { status: res.statusCode, body: await res.body.text(), etag: res.headers.etag as string | undefined }
}
