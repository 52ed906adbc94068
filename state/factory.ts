import type { Registry } from 'prom-client'
import { silentLogger, type Logger } from '../lib/log.js'
import { parseStateConfig, type StateConfigInput } from './config.js'
import { MemoryBackend, MemoryStore } from './memory.js'
import { RedisStore } from './redis/store.js'
import type { StateStore } from './types.js'

export interface StoreDeps {
  logger?: Logger
  registry?: Registry
  /** Memory backend only: share data with other stores in this process (tests, multi-role sandboxes). */
  memoryBackend?: MemoryBackend
}

/**
 * The store the `state:` section asks for: the checked store (checked.ts) over the memory or the
 * Redis backend, so callers get the same validation and metering whichever it is. Returns at
 * once: a Redis store connects in the background (calls fail fast with FERRY_STATE_UNAVAILABLE
 * until it is ready; `status()` and the `status`/`resync` events say when). Wait for readiness
 * with `waitForReady()` if needed.
 */
export function createStore (config: StateConfigInput = {}, deps: StoreDeps = {}): StateStore {
  const cfg = parseStateConfig(config)
  const logger = deps.logger ?? silentLogger
  if (cfg.backend === 'memory') {
    return new MemoryStore({
      backend: deps.memoryBackend ?? new MemoryBackend(cfg),
      logger,
      ...(deps.registry ? { registry: deps.registry } : {})
    })
  }
  return new RedisStore(cfg, { logger, ...(deps.registry ? { registry: deps.registry } : {}) })
}

/** Resolves true once `store.status().ok`, false after `timeoutMs`. */
export async function waitForReady (store: StateStore, timeoutMs = 5000): Promise<boolean> {
  if (store.status().ok) return true
  return await new Promise<boolean>(resolve => {
    const timer = setTimeout(() => { unsubscribe(); resolve(false) }, timeoutMs)
    const unsubscribe = store.subscribe(e => {
      if (e.type === 'status' && e.status.ok) {
        clearTimeout(timer)
        unsubscribe()
        resolve(true)
      }
    })
  })
}
