import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import t from 'tap'
import { Registry } from 'prom-client'
import { parseConfig } from '../../config/load.js'
import { silentLogger } from '../../lib/log.js'
import { S3Adapter, type BlockCore } from '../../proxy/s3/adapter.js'
import { MemoryObjectIndex, type ListedObject, type ListFrom } from '../../state/objects.js'

/**
 * What a delimited listing reads from the index. Each common prefix counts as one entry and the
 * listing seeks past its keys; the batch after a seek must be small, or a bucket of 200
 * directories of 200 keys reads every key of every directory (and its metadata, a Redis HMGET of
 * up to 1,000 fields per directory) to list 200 prefixes — seconds per page on Redis at a million
 * keys (bench/s3-list.ts). The adapter runs in process on the memory index, counting what it reads.
 */

class CountingIndex extends MemoryObjectIndex {
  read = 0
  calls = 0
  override async list (volume: string, prefix: string, from: ListFrom | undefined, limit: number): Promise<ListedObject[]> {
    const out = await super.list(volume, prefix, from, limit)
    this.calls++
    this.read += out.length
    return out
  }
}

async function list (adapter: S3Adapter, url: string): Promise<{ status: number, body: string }> {
  const req = new IncomingMessage(new Socket())
  req.method = 'GET'
  req.url = url
  req.headers = { host: '127.0.0.1:8080' }
  req.push(null)
  const res = new ServerResponse(req)
  return await new Promise(resolve => {
    const chunks: string[] = []
    res.write = ((c: string | Buffer) => { chunks.push(String(c)); return true }) as typeof res.write
    res.end = ((c?: string | Buffer) => { if (c !== undefined) chunks.push(String(c)); resolve({ status: res.statusCode, body: chunks.join('') }); return res }) as typeof res.end
    adapter.handle(req, res)
  })
}

t.test('a delimited listing seeks past each common prefix instead of reading its keys', async t => {
  const cfg = parseConfig('sites: [{ name: s, subnets: [127.0.0.0/8], edges: [127.0.0.1] }]\ngateways: [{ id: g, url: "http://127.0.0.1:1", site: s }]\ns3: { anonymous: ["*"] }\n', 'listing-cost.yaml')
  const core: BlockCore = { maxBodyBytes: 1 << 30, via: '1.1 ferry', dispatchBlock () { throw new Error('a listing needs no block') }, clientOf: () => '127.0.0.1', readersOf: () => [], holdersOf: () => [], receiversOf: () => [] }
  const index = new CountingIndex()
  const adapter = new S3Adapter(cfg.s3, undefined, core, index, silentLogger, new Registry())
  t.teardown(() => adapter.close())
  await index.createBucket('b', Date.now())
  const dirs = 200
  for (let d = 0; d < dirs; d++) {
    for (let f = 0; f < 200; f++) await index.putObject('b', `logs/${String(d).padStart(3, '0')}/${String(f).padStart(3, '0')}`, { etag: 'd41d8cd98f00b204e9800998ecf8427e', size: 1, lastModified: 0 })
  }
  await index.putObject('b', 'logs/zz-top-level-file', { etag: 'd41d8cd98f00b204e9800998ecf8427e', size: 1, lastModified: 0 })

  const r = await list(adapter, '/b?list-type=2&prefix=logs%2F&delimiter=%2F')
  t.equal(r.status, 200)
  const prefixes = [...r.body.matchAll(/<CommonPrefixes><Prefix>([^<]+)<\/Prefix><\/CommonPrefixes>/g)].map(m => m[1])
  t.equal(prefixes.length, dirs, 'every directory once')
  t.equal(prefixes[0], 'logs/000/')
  t.equal(prefixes[dirs - 1], `logs/${dirs - 1}/`)
  t.match(r.body, /<Contents><Key>logs\/zz-top-level-file<\/Key>/, 'and the key beside them')
  t.ok(index.read <= 10 * dirs, `entries read from the index: ${index.read} in ${index.calls} calls (every key would be ${dirs * 200})`)

  // Pages still join up: max-keys 50 over prefixes, then keys and prefixes mixed.
  index.read = 0
  let token: string | undefined
  const seen: string[] = []
  for (let page = 0; page < 10; page++) {
    const url = `/b?list-type=2&prefix=logs%2F&delimiter=%2F&max-keys=50${token !== undefined ? `&continuation-token=${encodeURIComponent(token)}` : ''}`
    const p = await list(adapter, url)
    seen.push(...[...p.body.matchAll(/<Prefix>(logs\/[^<]+)<\/Prefix>|<Key>([^<]+)<\/Key>/g)].map(m => m[1] ?? m[2] as string))
    token = /<NextContinuationToken>([^<]+)<\/NextContinuationToken>/.exec(p.body)?.[1]
    if (!/<IsTruncated>true<\/IsTruncated>/.test(p.body)) break
  }
  t.same(seen, [...prefixes, 'logs/zz-top-level-file'], 'paged with max-keys 50: the same entries in order, each once')
  t.ok(index.read <= 10 * (dirs + 10), `paged: ${index.read} entries read`)

  // Without a delimiter a page is read in large batches (1,000 keys: two calls).
  index.read = 0
  index.calls = 0
  const flat = await list(adapter, '/b?list-type=2&prefix=logs%2F')
  t.equal(flat.body.split('<Contents>').length - 1, 1000)
  t.ok(index.calls <= 2, `a flat page of 1,000 keys in ${index.calls} index calls`)
})
