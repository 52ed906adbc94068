import t from 'tap'
import { z } from 'zod'
import { parseStateConfig, stateConfigSchema } from '../../state/config.js'
import { createStore } from '../../state/factory.js'
import { KeySpace } from '../../state/keys.js'
import { MemoryStore } from '../../state/memory.js'
import { mapRedisError, resolveConnection } from '../../state/redis/connection.js'

t.test('defaults: an empty section is the in-memory store', async t => {
  const cfg = parseStateConfig({})
  t.match(cfg, {
    backend: 'memory',
    keyPrefix: 'ferry:',
    commandTimeoutMs: 1000,
    affinity: { halfLifeMs: 600_000, ttlMs: 86_400_000 },
    telemetry: { maxSamples: 2000 },
    history: { limit: 32 },
    migrations: { limit: 10_000 }
  })
  const store = createStore()
  t.teardown(() => store.close())
  t.ok(store instanceof MemoryStore)
  t.same(store.status(), { ok: true })
})

t.test('refusals name the key', async t => {
  const issues = (input: unknown): string[] => {
    const r = stateConfigSchema.safeParse(input)
    return r.success ? [] : r.error.issues.map(i => `${i.path.join('.')}: ${i.message}`)
  }
  t.match(issues({ backend: 'redis' }), [/^url: .*needs `url` or `cluster.nodes`/])
  t.match(issues({ backend: 'redis', url: 'redis://a:1', cluster: { nodes: ['b:2'] } }), [/^cluster: .*not both/])
  t.match(issues({ backend: 'redis', url: 'http://x' }), [/^url: .*redis:\/\//])
  t.match(issues({ backend: 'redis', cluster: { nodes: ['nohost'] } }), [/^cluster\.nodes\.0: .*host:port/])
  t.match(issues({ backend: 'redis', cluster: { nodes: ['a:1'] }, db: 2 }), [/^db: .*only database 0/])
  t.match(issues({ keyPrefix: 'a{b}' }), [/^keyPrefix: .*braces/], 'a brace in the prefix would break hash tags')
  t.match(issues({ keyPrefix: 'a*' }), [/^keyPrefix/], 'a glob character would widen SCAN patterns')
  t.match(issues({ backnd: 'memory' }), [/Unrecognized key/], 'typos are caught')
  t.match(issues({ tls: { key: '/k.pem' } }), [/^tls\.cert/])
  t.match(issues({ reconnect: { minDelayMs: 10_000, maxDelayMs: 100 } }), [/^reconnect\.minDelayMs/])
  t.match(issues({ cutOffServeMs: 1500 }), [/^cutOffServeMs: .*twice commandTimeoutMs/], 'one slow marker read must not stop the cache')
  t.same(issues({ cutOffServeMs: 600, commandTimeoutMs: 300 }), [])
  t.same(issues({ backend: 'redis', cluster: { nodes: ['10.0.0.1:6379', '[::1]:7000'] } }), [])
})

t.test('every key is described (the config reference is generated from these)', async t => {
  const missing: string[] = []
  const walk = (schema: z.ZodTypeAny, path: string): void => {
    let s = schema
    while (s instanceof z.ZodEffects || s instanceof z.ZodDefault || s instanceof z.ZodOptional) {
      s = s instanceof z.ZodEffects ? s.innerType() : s._def.innerType
    }
    if (s instanceof z.ZodObject) {
      for (const [key, child] of Object.entries(s.shape as Record<string, z.ZodTypeAny>)) {
        if (child.description === undefined) missing.push(`${path}${key}`)
        walk(child, `${path}${key}.`)
      }
    }
  }
  walk(stateConfigSchema, '')
  t.same(missing, [])
  t.ok(stateConfigSchema.description, 'the section itself too')
})

t.test('connection options from url, fields and environment', async t => {
  process.env.FERRY_TEST_REDIS_PASSWORD = 'from-env'
  t.teardown(() => { delete process.env.FERRY_TEST_REDIS_PASSWORD })
  const a = resolveConnection(parseStateConfig({ backend: 'redis', url: 'redis://alice:s%40cret@10.1.2.3:6380/4' }))
  t.match(a, { mode: 'redis', endpoints: [{ host: '10.1.2.3', port: 6380 }], common: { username: 'alice', password: 's@cret', db: 4, enableOfflineQueue: false, maxRetriesPerRequest: 0 } })
  t.equal(a.common.tls, undefined)
  const b = resolveConnection(parseStateConfig({ backend: 'redis', url: 'rediss://h', passwordEnv: 'FERRY_TEST_REDIS_PASSWORD', db: 2 }))
  t.match(b, { endpoints: [{ host: 'h', port: 6379 }], common: { password: 'from-env', db: 2, tls: { rejectUnauthorized: true } } }, 'rediss:// turns TLS on')
  const c = resolveConnection(parseStateConfig({ backend: 'redis', cluster: { nodes: ['n1:7000', '[::1]:7001'] }, username: 'u', password: 'p', tls: { rejectUnauthorized: false } }))
  t.match(c, { mode: 'redis-cluster', endpoints: [{ host: 'n1', port: 7000 }, { host: '::1', port: 7001 }], common: { username: 'u', password: 'p', tls: { rejectUnauthorized: false } } })
})

t.test('driver errors map to stable codes', async t => {
  const reply = (message: string): Error => Object.assign(new Error(message), { name: 'ReplyError' })
  t.equal(mapRedisError(new Error('Connection is closed.')).code, 'FERRY_STATE_UNAVAILABLE')
  t.equal(mapRedisError(new Error("Stream isn't writeable and enableOfflineQueue options is false")).code, 'FERRY_STATE_UNAVAILABLE')
  t.equal(mapRedisError(reply('CLUSTERDOWN The cluster is down')).code, 'FERRY_STATE_UNAVAILABLE')
  t.equal(mapRedisError(reply('LOADING Redis is loading the dataset in memory')).code, 'FERRY_STATE_UNAVAILABLE')
  t.equal(mapRedisError(reply('WRONGTYPE Operation against a key holding the wrong kind of value')).code, 'FERRY_STATE_ERROR')
  t.equal(mapRedisError(reply('ERR Error running script')).statusCode, 500)
})

t.test('key layout: one hash tag per block, ids cannot escape it', async t => {
  const k = new KeySpace('ferry:')
  t.equal(k.location('vol', 'blk'), 'ferry:{vol/blk}:loc')
  t.equal(k.history('vol', 'blk'), 'ferry:{vol/blk}:hist')
  t.equal(k.affinity('vol', 'blk'), 'ferry:{vol/blk}:aff')
  t.equal(k.session('s1'), 'ferry:{s:s1}:sess')
  t.equal(k.lease('planner'), 'ferry:{l:planner}:lease')
  t.equal(k.leaseSeq('planner'), 'ferry:{l:planner}:seq')
  t.equal(k.migration('m1'), 'ferry:{mig}:m:m1')
  t.equal(k.channel, 'ferry:events')
  t.same(k.parseBlockKey('ferry:{vol/blk}:loc', 'loc'), { volume: 'vol', block: 'blk' })
  t.equal(k.parseBlockKey('ferry:{vol/blk}:aff', 'loc'), null)
  t.equal(k.parseBlockKey('ferry:{s:x}:loc', 'loc'), null)
  t.equal(k.parseBlockKey('ferry:{a/b/c}:loc', 'loc'), null)
  t.equal(k.parseBlockKey('other:{vol/blk}:loc', 'loc'), null)
  t.throws(() => new KeySpace('x}'), { code: 'FERRY_STATE_INVALID' })
})
