/**
 * The shared state store: one interface (types.ts), two backends (memory.ts, redis/), a config
 * section (config.ts) and the proxy-side route cache (cache.ts). See README.md.
 */
export * from './types.js'
export { stateConfigSchema, parseStateConfig, type StateConfig, type StateConfigInput } from './config.js'
export { createStore, waitForReady, type StoreDeps } from './factory.js'
export { LocationCache, type ApplyResult, type LocationChange, type LocationCacheOptions, type LocationCacheStats } from './cache.js'
export { MemoryBackend, MemoryStore } from './memory.js'
export { RedisStore } from './redis/store.js'
export { decayScores, decayFactor } from './affinity.js'
export {
  STATE_UNAVAILABLE, STATE_INVALID, STATE_TOO_LARGE, STATE_CONFLICT, STATE_CORRUPT, STATE_CLOSED, STATE_ERROR
} from './errors.js'
