import t from 'tap'
import { startCluster } from '../helpers/redis.js'
import { contractSuite, pipeliningSuite } from './contract.js'
import { countWrites, redisHarness } from './harness.js'

const cluster = await startCluster(3)
t.teardown(() => cluster.stop())

const harness = redisHarness('redis-cluster', { nodes: cluster.nodeAddresses })
contractSuite(t, harness)
pipeliningSuite(t, harness, countWrites)
