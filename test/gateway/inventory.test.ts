import t from 'tap'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { request } from 'undici'
import { startGateways } from '../helpers/gateway.js'
import { sleep } from '../helpers/net.js'

/** The reference gateway's `GET /inventory`: every block, in (volume, block) order, paged by a cursor. */
interface Page {
  blocks: Array<{ volume: string, block: string, size: number, etag: string | null, modifiedAt: number }>
  next: string | null
}

async function inventory (url: string, query = ''): Promise<{ status: number, body: unknown }> {
  const res = await request(`${url}/inventory${query}`)
  return { status: res.statusCode, body: await res.body.json() }
}

const etagOf = (s: string): string => `"${createHash('sha256').update(s).digest('hex')}"`

t.test('pages through every block in (volume, block) order', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const gw = gws.gateways[0]!
  const url = gws.urls[0] as string
  t.same((await inventory(url)).body, { blocks: [], next: null }, 'an empty gateway lists nothing')

  // Volumes whose names sort differently as ids than as `volume/block` strings ('-' < '/').
  const written: string[] = []
  for (const volume of ['a', 'a-b', 'b']) {
    for (const block of ['x', 'y.1', 'z_2']) {
      const key = `${volume}/${block}`
      await (await request(`${url}/${key}`, { method: 'PUT', body: `content of ${key}` })).body.dump()
      written.push(key)
    }
  }
  const started = Date.now()
  const all: Page['blocks'] = []
  let after: string | null = null
  let pages = 0
  for (;;) {
    const r = await inventory(url, `?limit=4${after === null ? '' : `&after=${encodeURIComponent(after)}`}`)
    t.equal(r.status, 200)
    const page = r.body as Page
    t.ok(page.blocks.length <= 4, 'at most limit blocks a page')
    all.push(...page.blocks)
    pages++
    if (page.next === null) break
    after = page.next
  }
  t.equal(pages, 3, '9 blocks at 4 a page: the last page says it is the last')
  t.same(all.map(b => `${b.volume}/${b.block}`), written, 'each block once, in order')
  for (const b of all) {
    t.equal(b.size, Buffer.byteLength(`content of ${b.volume}/${b.block}`))
    t.equal(b.etag, etagOf(`content of ${b.volume}/${b.block}`), 'the ETag of a block written since the start')
    t.ok(b.modifiedAt > started - 60_000 && b.modifiedAt <= Date.now() + 1000, 'modifiedAt is the commit time')
  }
  const fromMiddle = (await inventory(url, '?after=a-b/x&limit=2')).body as Page
  t.same(fromMiddle.blocks.map(b => `${b.volume}/${b.block}`), ['a-b/y.1', 'a-b/z_2'])
  t.equal(fromMiddle.next, 'a-b/z_2')
  t.same((await inventory(url, '?after=a-b/zzz')).body, { blocks: ['b/x', 'b/y.1', 'b/z_2'].map(k => all.find(b => `${b.volume}/${b.block}` === k)), next: null },
    'a cursor at a block that does not exist continues after where it would be')

  // Blocks put in place with plain tools (seeded, or from before a restart) have no cached ETag.
  await mkdir(path.join(gw.dir, 'c'), { recursive: true })
  await writeFile(path.join(gw.dir, 'c', 'seeded'), 'seeded bytes')
  await writeFile(path.join(gw.dir, 'c', 'not an id'), 'skipped')
  await mkdir(path.join(gw.dir, 'c', 'subdir'))
  const c = (await inventory(url, '?after=b/z_2')).body as Page
  t.match(c.blocks, [{ volume: 'c', block: 'seeded', size: 12, etag: null }], 'an uncached ETag is null (no block is read to list it); non-blocks skipped')
  const hashed = (await inventory(url, '?after=b/z_2&etags=all')).body as Page
  t.match(hashed.blocks, [{ volume: 'c', block: 'seeded', etag: etagOf('seeded bytes') }], 'etags=all hashes what is not cached')
  t.match((await inventory(url, '?after=b/z_2')).body, { blocks: [{ etag: etagOf('seeded bytes') }] }, 'and caches it')

  await (await request(`${url}/a/y.1`, { method: 'DELETE' })).body.dump()
  const afterDelete = (await inventory(url, '?limit=10')).body as Page
  t.notOk(afterDelete.blocks.some(b => b.volume === 'a' && b.block === 'y.1'), 'a deleted block is gone from the listing')
  t.notOk(afterDelete.blocks.some(b => b.volume.startsWith('.')), 'uploads in progress (.tmp) are never listed')
})

t.test('a big volume pages in order while blocks come and go', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const gw = gws.gateways[0]!
  const url = gws.urls[0] as string
  await mkdir(path.join(gw.dir, 'big'), { recursive: true })
  const names = Array.from({ length: 1500 }, (_, i) => `blk-${String(i).padStart(5, '0')}`)
  for (const n of names) await writeFile(path.join(gw.dir, 'big', n), n)
  const seen: string[] = []
  let after: string | null = null
  for (let page = 0; ; page++) {
    const r = (await inventory(url, `?limit=500${after === null ? '' : `&after=${after}`}`)).body as Page
    seen.push(...r.blocks.map(b => b.block))
    // Writes between pages: the blocks present throughout must each be listed exactly once.
    if (page === 0) {
      await (await request(`${url}/big/blk-00000`, { method: 'DELETE' })).body.dump()
      await (await request(`${url}/big/aaa-new`, { method: 'PUT', body: 'x' })).body.dump()
    }
    if (r.next === null) break
    after = r.next
  }
  t.same(seen.filter(n => n !== 'aaa-new' && n !== 'blk-00000'), names.slice(1), 'every block present throughout, once, in order')

  // A volume quiet for a while has its sorted names kept between pages; a change must show.
  await sleep(1100)
  const listAll = async (): Promise<string[]> => {
    const out: string[] = []
    let from: string | null = null
    for (;;) {
      const r = (await inventory(url, `?limit=1000${from === null ? '' : `&after=${from}`}`)).body as Page
      out.push(...r.blocks.map(b => b.block))
      if (r.next === null) return out
      from = r.next
    }
  }
  const before = await listAll()
  await (await request(`${url}/big/blk-00700a`, { method: 'PUT', body: 'x' })).body.dump()
  const after2 = await listAll()
  t.same(after2, [...before.slice(0, before.indexOf('blk-00700') + 1), 'blk-00700a', ...before.slice(before.indexOf('blk-00700') + 1)],
    'a block written after a listing shows in the next one')
})

t.test('refuses what it cannot answer', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const url = gws.urls[0] as string
  for (const q of ['?limit=0', '?limit=10001', '?limit=abc', '?after=novolume', '?after=a/..%2f', '?etags=some', '?cursor=a/b']) {
    const r = await inventory(url, q)
    t.equal(r.status, 400, q)
    t.match(r.body, { error: { code: 'INVALID_QUERY' } })
  }
  const post = await request(`${url}/inventory`, { method: 'POST', body: '' })
  t.equal(post.statusCode, 405)
  t.equal(post.headers.allow, 'GET')
  await post.body.dump()
})
