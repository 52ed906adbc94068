import t from 'tap'
import { request } from 'undici'
import { FerryNode } from '../../bin/node.js'
import { silentLogger } from '../../lib/log.js'
import { createRegistry } from '../../lib/metrics.js'
import { PLACEMENT_TABLE_DOC, emptyPlacementTable, placementTableSchema } from '../../placement/table.js'
import { placementTableChannel } from '../../state/channels.js'
import { startGateways } from '../helpers/gateway.js'
import { collectEscapes, testConfig } from '../helpers/ferry.js'
import { waitFor } from '../helpers/net.js'
import { startRedis } from '../helpers/redis.js'

// testConfig's sites: 127.0.0.0/24 site-a, 127.0.1.0/24 site-b, 127.0.2.0/24 site-c; gateways
// gw1, gw4 at site-a; gw2, gw5 at site-b; gw3, gw6 at site-c.
const SITE_OF: Record<string, string> = { gw1: 'site-a', gw2: 'site-b', gw3: 'site-c', gw4: 'site-a', gw5: 'site-b', gw6: 'site-c' }
const SITES = ['site-a', 'site-b', 'site-c']

const escapes = collectEscapes(t)

t.test('R = 2: the partitioning engine chooses the whole replica set of a new block, not only its head', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gws = await startGateways(6)
  t.teardown(gws.stopAll)
  const config = testConfig(gws.urls, {
    state: { backend: 'redis', url: redis.url, keyPrefix: 'rs:' },
    replication: { factor: 2, minInSync: 1 },
    planner: { rebalancer: { enabled: false } },
    placement: { enabled: true, retrainIntervalMs: 0, reportIntervalMs: 200 }
  })
  // A proxy alone: no planner republishes over the table this test publishes.
  const node = new FerryNode({ config, roles: new Set(['proxy']), logger: silentLogger, registry: createRegistry(false) })
  await node.start()
  t.teardown(() => node.stop())
  const url = `http://127.0.0.1:${node.proxy?.address.port ?? 0}`

  // Volume sci is read mostly at site-c, some at site-b, never at site-a: for a block written
  // from site-a the expected cost ranks site-c (110 ms), site-b (502), site-a (600). Rendezvous
  // order, which chose the members after the head before, puts site-a second for about half of
  // the blocks.
  const table = placementTableSchema.parse({
    ...emptyPlacementTable(),
    publishedAt: Date.now(),
    model: { version: 7, trainedAt: new Date().toISOString(), embedder: 'ngram-hash-v1:d=256:n=3,4', examples: 100 },
    sites: SITES,
    gateways: Object.entries(SITE_OF).map(([id, site]) => ({ id, cost: SITES.map(s => s === site ? 2 : 100) })),
    prior: [1, 1, 1],
    volumes: { sci: [0, 1, 5] },
    origins: {}
  })
  await node.store.putDocument(PLACEMENT_TABLE_DOC, table)
  await placementTableChannel.publish(node.store, { version: 7, publishedAt: table.publishedAt })
  await waitFor(() => node.proxy?.placement?.placer.current?.model?.version === 7, 'the proxy to load the table')

  const seconds = new Set<string>()
  for (let k = 0; k < 16; k++) {
    const r = await request(`${url}/sci/new${k}`, { method: 'PUT', body: `sci/new${k}`, headers: { 'x-forwarded-for': '127.0.0.9' } })
    await r.body.dump()
    t.equal(r.statusCode, 201)
    const loc = await node.store.getLocation('sci', `new${k}`)
    t.same(loc?.members.map(id => SITE_OF[id]), ['site-c', 'site-b'], `sci/new${k}: both members where the model ranks them`)
    t.same([...(loc?.inSync ?? [])].sort(), [...(loc?.members ?? [])].sort(), 'both members took the first write')
    seconds.add(loc?.members[1] as string)
    const back = await request(`${url}/sci/new${k}`, { headers: { 'x-forwarded-for': '127.0.1.9' } })
    t.equal(await back.body.text(), `sci/new${k}`, 'readable')
  }
  t.same([...seconds].sort(), ['gw2', 'gw5'], 'site-b\'s two gateways share the second members')
  t.equal(node.proxy?.placement?.placer.counts.model, 16, 'one decision per new block')
})

t.test('nothing escaped to the process', async t => { t.same(escapes, []) })
