/**
 * The shared state store: one interface (types.ts), one checked store (checked.ts) in front of
 * two backends (memory.ts, redis/), a config section (config.ts), the typed pub/sub channels
 * (channels.ts) and the consumer-side views of them: the route cache (cache.ts) and gateway
 * health (gateway-health.ts). See README.md.
 */
export * from './types.js'
export { stateConfigSchema, parseStateConfig, type StateConfig, type StateConfigInput } from './config.js'
export { createStore, waitForReady, type StoreDeps } from './factory.js'
export { CheckedStore } from './checked.js'
export type { StoreBackend, StoreLimits } from './backend.js'
export { LocationCache, type ApplyResult, type LocationChange, type LocationCacheOptions, type LocationCacheStats } from './cache.js'
export {
  Channel, gatewayHealthChannel, passiveChannel, profileChannel, generationChannel, PROCESS_REPORTER,
  type GatewayHealthReport, type PassiveCounts, type PassiveReport, type ProfileReport, type GenerationNotice
} from './channels.js'
export { GatewayHealthView, type GatewayHealthViewOptions } from './gateway-health.js'
export { MemoryBackend, MemoryStore } from './memory.js'
export { RedisStore } from './redis/store.js'
export { decayScores, decayFactor } from './affinity.js'
