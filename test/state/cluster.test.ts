import t from 'tap'
import { startCluster } from '../helpers/redis.js'
import { contractSuite } from './contract.js'
import { redisHarness } from './harness.js'

const cluster = await startCluster(3)
t.teardown(() => cluster.stop())

contractSuite(t, redisHarness('redis-cluster', { nodes: cluster.nodeAddresses }))
