import t from 'tap'
import { Redis } from 'ioredis'
import { keySlot } from '../../state/redis/slot.js'
import { startCluster } from '../helpers/redis.js'
import { contractSuite, mergeScriptSuite, pipeliningSuite } from './contract.js'
import { countWrites, redisHarness, scriptCalls } from './harness.js'

const cluster = await startCluster(3)
t.teardown(() => cluster.stop())

const harness = redisHarness('redis-cluster', { nodes: cluster.nodeAddresses })
contractSuite(t, harness)
pipeliningSuite(t, harness, countWrites)
mergeScriptSuite(t, harness, { cluster: true, scriptCalls: async () => await scriptCalls(cluster.nodeAddresses) })

t.test('keySlot agrees with CLUSTER KEYSLOT', async t => {
  const [host, port] = cluster.nodeAddresses[0]!.split(':')
  const client = new Redis({ host, port: Number(port) })
  t.teardown(() => client.disconnect())
  const keys = ['ferry:{v/b}:aff', 'p:{vol-1/blk_2.x}:aff', 'plain', '{}x', 'a{}{b}', 'x{y', `{${'é'.repeat(3)}}`]
  for (let i = 0; i < 200; i++) keys.push(`t:{v${i % 7}/b${i}}:aff`)
  for (const k of keys) t.equal(keySlot(k), await client.cluster('KEYSLOT', k), k)
})
