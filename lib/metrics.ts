import { Registry, collectDefaultMetrics } from 'prom-client'

/**
 * Each process (and each test) builds its own registry and hands it to the components it
 * starts, so two proxies in one test process never fight over a global metric name.
 */
export function createRegistry (withDefaults = true): Registry {
  const registry = new Registry()
  if (withDefaults) collectDefaultMetrics({ register: registry })
  return registry
}

export type { Registry }
