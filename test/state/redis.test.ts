import t from 'tap'
import { startRedis } from '../helpers/redis.js'
import { contractSuite } from './contract.js'
import { redisHarness } from './harness.js'

// REDIS_URL (CI's service container) when set, else a private server for this file.
let url = process.env.REDIS_URL
if (url === undefined || url === '') {
  const server = await startRedis()
  t.teardown(() => server.stop())
  url = server.url
}

contractSuite(t, redisHarness('redis', { url }))
