import t from 'tap'
import { startRedis } from '../helpers/redis.js'
import { contractSuite, mergeScriptSuite, pipeliningSuite } from './contract.js'
import { countWrites, redisHarness, scriptCalls } from './harness.js'

// REDIS_URL (CI's service container) when set, else a private server for this file.
let url = process.env.REDIS_URL
if (url === undefined || url === '') {
  const server = await startRedis()
  t.teardown(() => server.stop())
  url = server.url
}

const harness = redisHarness('redis', { url })
contractSuite(t, harness)
pipeliningSuite(t, harness, countWrites)
// Counting script calls needs a server nothing else uses.
if (process.env.REDIS_URL === undefined || process.env.REDIS_URL === '') mergeScriptSuite(t, harness, { cluster: false, scriptCalls: async () => await scriptCalls([url!]) })
