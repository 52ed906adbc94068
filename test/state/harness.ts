import { randomBytes } from 'node:crypto'
import { Cluster, Redis } from 'ioredis'
import { createRegistry, type Registry } from '../../lib/metrics.js'
import { MemoryBackend, MemoryStore } from '../../state/memory.js'
import { createStore, waitForReady } from '../../state/factory.js'
import type { StateConfigInput } from '../../state/config.js'
import type { StateStore } from '../../state/types.js'

/**
 * How the contract suite reaches a backend. A namespace is an empty, private data set (a fresh
 * MemoryBackend, or a fresh key prefix on a shared Redis); each `connect()` is one more store
 * over it — one more "proxy".
 */
export interface Connected {
  store: StateStore
  registry: Registry
}

export interface Namespace {
  connect (): Promise<Connected>
  /** Puts a raw string on the notification channel, bypassing every encoder. */
  injectRaw (raw: string): Promise<void>
  /** Redis only: the namespace's key prefix and a plain client, to damage keys on purpose. */
  raw?: { keyPrefix: string, client: Redis | Cluster }
  close (): Promise<void>
}

export interface Harness {
  name: string
  namespace (config?: StateConfigInput): Promise<Namespace>
}

/** Small bounds so the suite can observe trimming and expiry quickly. */
export const TEST_LIMITS: StateConfigInput = {
  affinity: { halfLifeMs: 1000, ttlMs: 60_000 },
  telemetry: { maxSamples: 5, maxAgeMs: 60_000 },
  history: { limit: 4 },
  migrations: { limit: 3 },
  sessions: { maxBytes: 2048 }
}

function merge (a: StateConfigInput, b: StateConfigInput | undefined): StateConfigInput {
  return { ...a, ...(b ?? {}) }
}

export function memoryHarness (): Harness {
  return {
    name: 'memory',
    async namespace (config) {
      const backend = new MemoryBackend(merge(TEST_LIMITS, config))
      const stores: StateStore[] = []
      return {
        async connect () {
          const registry = createRegistry(false)
          const store = new MemoryStore({ backend, registry })
          stores.push(store)
          return { store, registry }
        },
        async injectRaw (raw) { backend.publishRaw(raw) },
        async close () { await Promise.all(stores.map(s => s.close())) }
      }
    }
  }
}

/** `target`: a standalone URL, or Cluster node addresses. Each namespace gets its own key prefix. */
export function redisHarness (name: string, target: { url: string } | { nodes: string[] }): Harness {
  return {
    name,
    async namespace (config) {
      const keyPrefix = `t${randomBytes(4).toString('hex')}:`
      const base: StateConfigInput = {
        ...merge(TEST_LIMITS, config),
        backend: 'redis',
        keyPrefix,
        ...('url' in target ? { url: target.url } : { cluster: { nodes: target.nodes } }),
        reconnect: { minDelayMs: 50, maxDelayMs: 500 }
      }
      const stores: StateStore[] = []
      const raw = 'url' in target
        ? new Redis(target.url, { lazyConnect: true })
        : new Cluster(target.nodes.map(n => ({ host: n.split(':')[0]!, port: Number(n.split(':')[1]) })), { lazyConnect: true })
      raw.on('error', () => { /* the test using it reports failures */ })
      return {
        async connect () {
          const registry = createRegistry(false)
          const store = createStore(base, { registry })
          stores.push(store)
          if (!await waitForReady(store, 10_000)) throw new Error(`store did not become ready: ${store.status().reason ?? ''}`)
          return { store, registry }
        },
        async injectRaw (message) {
          await raw.publish(keyPrefix + 'events', message)
        },
        raw: { keyPrefix, client: raw },
        async close () {
          await Promise.all(stores.map(s => s.close()))
          // Leave a shared REDIS_URL server as we found it.
          if (raw.status === 'wait') await raw.connect()
          const nodes = raw instanceof Cluster ? raw.nodes('master') : [raw]
          for (const node of nodes) {
            let cursor = '0'
            do {
              const [next, keys] = await node.scan(cursor, 'MATCH', keyPrefix + '*', 'COUNT', 1000)
              cursor = next
              for (const k of keys) await node.del(k)
            } while (cursor !== '0')
          }
          raw.disconnect()
        }
      }
    }
  }
}

type Writable = { write: (...args: unknown[]) => boolean }
type Connection = { stream?: Writable }

/**
 * Socket writes per connection while `fn` runs: white-box, through the backend's private client,
 * because "a batch costs one round trip (per node)" is a property of what goes on the wire.
 */
export async function countWrites (store: StateStore, fn: () => Promise<unknown>): Promise<number[]> {
  // The checked store's backend (state/checked.ts `storage`) holds the connection.
  const client = (store as unknown as { storage: { client: Connection & { nodes?: (role: string) => Connection[] } } }).storage.client
  const conns: Connection[] = typeof client.nodes === 'function' ? client.nodes('master') : [client]
  const counts = conns.map(() => 0)
  const restore: Array<() => void> = []
  conns.forEach((c, i) => {
    const stream = c.stream
    if (stream === undefined) return
    const original = stream.write
    stream.write = (...args: unknown[]) => { counts[i]!++; return original.apply(stream, args) }
    restore.push(() => { stream.write = original })
  })
  try {
    await fn()
  } finally {
    for (const r of restore) r()
  }
  return counts
}

/**
 * Script calls (EVAL + EVALSHA) the server(s) have executed so far, from INFO commandstats,
 * summed over `addresses` (every Cluster master): what "one call per batch / per slot" is about.
 * Only meaningful on a private server: anything else using it is counted too.
 */
export async function scriptCalls (addresses: string[]): Promise<number> {
  let total = 0
  for (const address of addresses) {
    const url = new URL(address.includes('://') ? address : `redis://${address}`)
    const client = new Redis({ host: url.hostname, port: Number(url.port || 6379), lazyConnect: true, maxRetriesPerRequest: 0 })
    client.on('error', () => { /* the caller's assertion reports it */ })
    try {
      await client.connect()
      const info = await client.info('commandstats')
      for (const m of info.matchAll(/^cmdstat_(eval|evalsha):calls=(\d+)/gm)) total += Number(m[2])
    } finally {
      client.disconnect()
    }
  }
  return total
}
