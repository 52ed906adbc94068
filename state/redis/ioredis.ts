import { createRequire } from 'node:module'
import type * as IORedis from 'ioredis'

/**
 * ioredis, loaded on first use. A ferry process on the in-memory store (the sandbox, or a
 * proxy-only benchmark) never pays the few MiB of RSS the client costs just for having it
 * imported.
 */
const require = createRequire(import.meta.url)
let mod: typeof IORedis | undefined

export function ioredis (): typeof IORedis {
  mod ??= require('ioredis') as typeof IORedis
  return mod
}
