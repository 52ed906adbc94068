import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { blockOfKey, blockOfPart } from '../../lib/ids.js'
import { TEST_ADMIN_TOKEN } from '../helpers/ferry.js'
import { freePort, sleep, waitFor } from '../helpers/net.js'
import type { FerryProcess } from '../helpers/process.js'
import { startProcessFleet } from '../helpers/process-fleet.js'
import { REDIS_SERVER, startRedis } from '../helpers/redis.js'
import { signedHeaders } from '../helpers/s3.js'

/**
 * Faults with S3 traffic, on real processes: three reference gateways (`ferry gateway`), two
 * proxies (`ferry start --roles proxy`) and a planner (`--roles planner`) on a private Redis,
 * R = 2, S3 with a SigV4 key. Every request is signed as an S3 client signs it
 * (test/helpers/s3.ts, checked against AWS's examples in test/s3/sigv4.test.ts).
 *
 * - a multipart upload across a planner SIGKILL (a part uploaded while it is down, one after its restart);
 * - a multipart upload across a proxy restart (parts through the other proxy while it is down, the
 *   rest and Complete through it once it is back);
 * - the parts and the object's block moved (the planner's move API) while the upload runs and completes;
 * - a gateway SIGKILLed during signed PUTs (single-part and multipart) through both proxies.
 *
 * Asserted everywhere: every acknowledged object reads back, and every read's MD5 equals the ETag
 * acknowledged for it (for a multipart object, S3's ETag: the MD5 of the parts' MD5s and `-N`,
 * recomputed here from the bytes sent, not taken from the server).
 */

const skip = !fs.existsSync(REDIS_SERVER) ? `${REDIS_SERVER} is not installed` : false
const KEY = { accessKeyId: 'fault-key', secret: 'fault-secret-0123456789' }
const PART = 1024 * 1024
const BUCKET = 'faults'

interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex')
/** S3's ETag of a multipart object made of `parts`. */
const multipartEtag = (parts: Buffer[]): string => `${createHash('md5').update(Buffer.concat(parts.map(p => createHash('md5').update(p).digest()))).digest('hex')}-${parts.length}`
const etagOf = (r: Reply): string => String(r.headers.etag ?? '').replace(/"/g, '')

t.test('S3 traffic through planner, proxy and gateway faults: 0 lost, 0 corrupt', { skip, timeout: 600_000 }, async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const fleet = await startProcessFleet(t, 's3-faults')
  const { gateways } = fleet

  // 0, 1: proxies; 2: the planner.
  const ports = await Promise.all([0, 1, 2].map(async () => ({ proxy: await freePort(), admin: await freePort() })))
  const config = (i: number): Record<string, unknown> => ({
    log: { level: 'warn' },
    ...fleet.topology(),
    proxy: { listen: { host: '127.0.0.1', port: ports[i]!.proxy }, workers: 1 },
    admin: { listen: { host: '127.0.0.1', port: ports[i]!.admin }, token: TEST_ADMIN_TOKEN },
    health: { active: { intervalMs: 300, timeoutMs: 500 }, passive: { failures: 2, baseEjectMs: 1000 } },
    sessions: { enabled: false },
    placement: { enabled: false },
    state: { backend: 'redis', url: redis.url },
    s3: { credentials: [{ ...KEY, volumes: ['*'] }], multipart: { minPartBytes: PART } },
    planner: {
      lease: { ttlMs: 3000, renewIntervalMs: 1000 },
      rebalancer: { enabled: false },
      prediction: { enabled: false },
      health: { probeIntervalMs: 300, probeTimeoutMs: 500, unhealthyThreshold: 2 },
      migration: { settleMs: 150, gracePeriodMs: 500, recoveryIntervalMs: 1000, retryDelayMs: 200 }
    },
    replication: { factor: 2, minInSync: 1, downAfterMs: 1500, repairIntervalMs: 500 }
  })
  const nodes: FerryProcess[] = []
  const start = (i: number): FerryProcess => {
    const p = fleet.startFerry(`ferry-${i}`, config(i), i < 2 ? 'proxy' : 'planner')
    nodes[i] = p
    return p
  }
  const ready = async (i: number): Promise<void> => {
    await waitFor(async () => (await request(`http://127.0.0.1:${ports[i]!.admin}/readyz`)).statusCode === 200, `ferry ${i} ready`, 90_000)
      .catch(err => { throw new Error(`${(err as Error).message}; its output: ${nodes[i]?.output() ?? ''}`) })
  }
  for (const i of [0, 1, 2]) start(i)
  for (const i of [0, 1, 2]) await ready(i)
  const proxies = [0, 1].map(i => `http://127.0.0.1:${ports[i]!.proxy}`)
  const proxyAdmin = `http://127.0.0.1:${ports[0]!.admin}`
  const plannerAdmin = `http://127.0.0.1:${ports[2]!.admin}`

  // Retries of a request the fleet answered 503 (SlowDown/ServiceUnavailable, as an SDK retries
  // them) are counted and reported; any other failure is not retried.
  let retried503 = 0
  const s3 = async (base: string, method: string, target: string, body?: Buffer | string, extra: Record<string, string> = {}): Promise<Reply> => {
    for (let attempt = 0; ; attempt++) {
      const host = base.replace(/^http:\/\//, '')
      const headers = { ...signedHeaders({ method, url: target, host, ...KEY, body: body ?? '' }), ...extra }
      const r = await request(base + target, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}), headersTimeout: 30_000, bodyTimeout: 30_000 })
      const out = { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) }
      if (out.status !== 503 || attempt >= 8) return out
      retried503++
      await sleep(250 * (attempt + 1))
    }
  }
  const ok = (r: Reply, what: string): Reply => {
    if (r.status !== 200 && r.status !== 204) throw new Error(`${what}: ${r.status} ${r.body.toString().slice(0, 300)}`)
    return r
  }

  t.equal((await s3(proxies[0]!, 'PUT', `/${BUCKET}`)).status, 200, 'CreateBucket')

  /** Checks a key reads back (through both proxies) with the MD5 of its body equal to `etag`. */
  const checkRead = async (t: Test, key: string, want: Buffer, etag: string): Promise<void> => {
    for (const via of proxies) {
      const r = await s3(via, 'GET', `/${BUCKET}/${key}`)
      t.equal(r.status, 200, `${key} via ${via}: 200`)
      t.equal(etagOf(r), etag, `${key} via ${via}: the acknowledged ETag`)
      t.ok(r.body.equals(want), `${key} via ${via}: the bytes sent (${r.body.length} of ${want.length})`)
      if (etag.includes('-')) {
        // A multipart object's ETag is not its body's MD5: check the body's part MD5s make it.
        const n = Number(etag.split('-')[1])
        const parts = Array.from({ length: n }, (_, i) => r.body.subarray(i * PART, i === n - 1 ? r.body.length : (i + 1) * PART))
        t.equal(multipartEtag(parts), etag, `${key} via ${via}: the body's part MD5s give the ETag`)
      } else t.equal(md5(r.body), etag, `${key} via ${via}: MD5 of the body = ETag`)
    }
  }

  /** A multipart upload of `parts`, with `between(n)` run after part n (1-based) is acknowledged. */
  const multipart = async (key: string, parts: Buffer[], via: (n: number) => string, between: (n: number, uploadId: string) => Promise<void>): Promise<{ uploadId: string, etag: string }> => {
    const created = ok(await s3(via(0), 'POST', `/${BUCKET}/${key}?uploads`), 'CreateMultipartUpload')
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.body.toString())?.[1] ?? ''
    await between(0, uploadId)
    const etags: string[] = []
    for (const [i, part] of parts.entries()) {
      const r = ok(await s3(via(i + 1), 'PUT', `/${BUCKET}/${key}?partNumber=${i + 1}&uploadId=${uploadId}`, part), `UploadPart ${i + 1}`)
      etags.push(etagOf(r))
      if (etagOf(r) !== md5(part)) throw new Error(`part ${i + 1}: ETag ${etagOf(r)}, its MD5 is ${md5(part)}`)
      await between(i + 1, uploadId)
    }
    const xml = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>"${e}"</ETag></Part>`).join('')}</CompleteMultipartUpload>`
    const done = ok(await s3(via(parts.length + 1), 'POST', `/${BUCKET}/${key}?uploadId=${uploadId}`, xml, { 'content-type': 'application/xml' }), 'CompleteMultipartUpload')
    const etag = /<ETag>([^<]+)<\/ETag>/.exec(done.body.toString())?.[1]?.replace(/&quot;|"/g, '') ?? ''
    return { uploadId, etag }
  }

  await t.test('a multipart upload across a planner SIGKILL completes', async t => {
    const parts = [randomBytes(PART), randomBytes(PART), randomBytes(PART + 17)]
    const { etag } = await multipart('mp/planner-kill.bin', parts, n => proxies[n % 2]!, async n => {
      if (n === 1) {
        t.comment('SIGKILL the planner')
        nodes[2]!.child.kill('SIGKILL')
        await sleep(500)
      }
      if (n === 2) {
        t.comment('restart the planner')
        start(2)
        await ready(2)
      }
    })
    t.equal(etag, multipartEtag(parts), 'Complete answers S3\'s multipart ETag')
    await checkRead(t, 'mp/planner-kill.bin', Buffer.concat(parts), etag)
  })

  await t.test('a multipart upload across a proxy restart completes', async t => {
    const parts = [randomBytes(PART), randomBytes(PART), randomBytes(PART), randomBytes(100)]
    let down = false
    const { uploadId, etag } = await multipart('mp/proxy-restart.bin', parts, () => proxies[down ? 1 : 0]!, async (n, id) => {
      if (n === 1) {
        t.comment('SIGKILL proxy 0')
        nodes[0]!.child.kill('SIGKILL')
        down = true
      }
      if (n === 2) {
        // ListParts through the surviving proxy sees the parts uploaded on either.
        const list = ok(await s3(proxies[1]!, 'GET', `/${BUCKET}/mp/proxy-restart.bin?uploadId=${id}`), 'ListParts')
        t.equal((list.body.toString().match(/<Part>/g) ?? []).length, 2, 'ListParts on proxy 1 lists both parts')
        t.comment('restart proxy 0')
        start(0)
        await ready(0)
        down = false
      }
    })
    t.ok(uploadId.length > 0)
    t.equal(etag, multipartEtag(parts), 'Complete answers S3\'s multipart ETag')
    await checkRead(t, 'mp/proxy-restart.bin', Buffer.concat(parts), etag)
    // A client whose Complete answer was lost (the proxy died after storing the object) retries
    // it through the other proxy: S3 answers it as the first.
    const xml = `<CompleteMultipartUpload>${parts.map((p, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>"${md5(p)}"</ETag></Part>`).join('')}</CompleteMultipartUpload>`
    const again = await s3(proxies[1]!, 'POST', `/${BUCKET}/mp/proxy-restart.bin?uploadId=${uploadId}`, xml, { 'content-type': 'application/xml' })
    t.equal(again.status, 200, `a retried Complete: ${again.body.toString().slice(0, 200)}`)
    t.match(again.body.toString(), etag, 'with the same ETag')
  })

  await t.test('the parts and the object moved while the upload runs and completes', async t => {
    const key = 'mp/moved.bin'
    const old = randomBytes(2000)
    const put = ok(await s3(proxies[0]!, 'PUT', `/${BUCKET}/${key}`, old), 'PUT the previous version')
    t.equal(etagOf(put), md5(old))
    const partMoves: Array<Promise<string>> = []
    let objectMove: Promise<string> = Promise.resolve('')
    const moveBlock = async (block: string): Promise<string> => {
      const loc = await (await request(`${proxyAdmin}/v1/blocks/${BUCKET}/${encodeURIComponent(block)}`)).body.json() as { location: { members: string[] } }
      const to = ['gw1', 'gw2', 'gw3'].find(g => !loc.location.members.includes(g)) as string
      let id = 0
      let refused = ''
      // The planner restarted by the first test leads once the killed one's lease ends.
      await waitFor(async () => {
        const res = await request(`${plannerAdmin}/v1/migrations`, { method: 'POST', headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ volume: BUCKET, block, to }) })
        const body = await res.body.json() as { migrations?: Array<{ id: number }>, error?: { code: string } }
        if (body.error?.code === 'FERRY_PLANNER_NOT_LEADER') return false
        if (res.statusCode !== 202 || body.migrations?.[0] === undefined) refused = `move of ${block}: ${res.statusCode} ${JSON.stringify(body)}`
        else id = body.migrations[0].id
        return true
      }, 'a leading planner', 30_000, 200)
      if (refused !== '') throw new Error(refused)
      // The move's end, whatever it is: a move that had to roll back is reported, not hidden.
      let result = ''
      await waitFor(async () => {
        const m = await (await request(`${plannerAdmin}/v1/migrations/${id}`)).body.json() as { result: string | null }
        result = m.result ?? ''
        return m.result !== null
      }, `move ${id} of ${block} to end`, 60_000, 100)
      return `${block} → ${to}: ${result}`
    }
    const parts = [randomBytes(PART), randomBytes(PART), randomBytes(PART), randomBytes(PART)]
    const { uploadId, etag } = await multipart(key, parts, n => proxies[n % 2]!, async (n, id) => {
      // Parts 1 and 2 move while part 3 uploads (and end before Complete reads them); the
      // object's block (its previous version) moves while part 4 and Complete run.
      if (n === 2) for (const p of [1, 2]) partMoves.push(moveBlock(blockOfPart(id, p)).catch(err => `${(err as Error).message}`))
      if (n === 3) {
        const ends = await Promise.all(partMoves)
        t.comment(`part moves: ${ends.join('; ')}`)
        t.ok(ends.every(r => r.endsWith(': ok')), 'both parts moved to another gateway mid-upload')
        objectMove = moveBlock(blockOfKey(key)).catch(err => `${(err as Error).message}`)
      }
    })
    const end = await objectMove
    t.comment(`object move: ${end}`)
    t.match(end, /: (ok|rolled-back)$/, 'the object\'s move ended')
    t.ok(uploadId.length > 0)
    t.equal(etag, multipartEtag(parts), 'Complete answers S3\'s multipart ETag')
    await checkRead(t, key, Buffer.concat(parts), etag)
  })

  await t.test('SIGKILL a gateway during signed PUTs at R = 2: every acknowledged object reads back with its ETag', async t => {
    const acked = new Map<string, { body: Buffer, etag: string }>()
    const failures: string[] = []
    let reads = 0
    let running = true
    const writer = async (w: number): Promise<void> => {
      for (let seq = 0; running; seq++) {
        const key = `load/w${w}/o${seq}`
        const via = proxies[(seq + w) % 2]!
        try {
          if (seq % 10 === 9) {
            // Every tenth object is multipart (2 parts).
            const parts = [randomBytes(PART), randomBytes(1000 + seq)]
            const { etag } = await multipart(key, parts, n => proxies[(n + w) % 2]!, async () => {})
            if (etag !== multipartEtag(parts)) failures.push(`${key}: Complete said ${etag}, S3's ETag is ${multipartEtag(parts)}`)
            acked.set(key, { body: Buffer.concat(parts), etag: multipartEtag(parts) })
          } else {
            const body = randomBytes(1000 + Math.floor(Math.random() * 60_000))
            const r = ok(await s3(via, 'PUT', `/${BUCKET}/${key}`, body), `PUT ${key}`)
            if (etagOf(r) !== md5(body)) failures.push(`${key}: ETag ${etagOf(r)}, its MD5 is ${md5(body)}`)
            acked.set(key, { body, etag: md5(body) })
          }
        } catch (err) {
          failures.push(`${key} via ${via}: ${(err as Error).message}`)
        }
      }
    }
    const corrupt: string[] = []
    const cut: string[] = []
    const reader = async (r: number): Promise<void> => {
      while (running) {
        const keys = [...acked.keys()]
        if (keys.length === 0) { await sleep(20); continue }
        const key = keys[Math.floor(Math.random() * keys.length)]!
        const want = acked.get(key)!
        const via = proxies[(reads + r) % 2]!
        let res: Reply
        try {
          res = await s3(via, 'GET', `/${BUCKET}/${key}`)
        } catch (err) {
          // A GET whose member is killed while it streams the body: its headers (status, length,
          // ETag) are out, so the proxy can only cut the connection, and the client sees a short
          // body and retries, as the SDKs do (boto3's IncompleteRead). Counted, and the retry
          // must be right; a cut read that looked complete would be a corrupt read.
          cut.push(`GET ${key} via ${via}: ${(err as Error).message}`)
          try {
            res = await s3(via, 'GET', `/${BUCKET}/${key}`)
          } catch (err2) {
            failures.push(`GET ${key} via ${via}, retried: ${(err2 as Error).message}`)
            continue
          }
        }
        reads++
        if (res.status !== 200) failures.push(`GET ${key} via ${via}: ${res.status} ${res.body.toString().slice(0, 200)}`)
        else if (!res.body.equals(want.body) || etagOf(res) !== want.etag) corrupt.push(`${key} via ${via}: ${res.body.length} bytes, ETag ${etagOf(res)}, want ${want.etag}`)
      }
    }
    // An upload whose parts are all acknowledged before the kill and completed right after it:
    // the victim is the member Complete reads part 1 from first, so Complete has to fail over.
    const pending = { key: 'mp/complete-after-kill.bin', parts: [randomBytes(PART), randomBytes(PART), randomBytes(PART / 2)], etags: [] as string[] }
    const created = ok(await s3(proxies[0]!, 'POST', `/${BUCKET}/${pending.key}?uploads`), 'CreateMultipartUpload')
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.body.toString())?.[1] ?? ''
    for (const [i, part] of pending.parts.entries()) pending.etags.push(etagOf(ok(await s3(proxies[i % 2]!, 'PUT', `/${BUCKET}/${pending.key}?partNumber=${i + 1}&uploadId=${uploadId}`, part), `UploadPart ${i + 1}`)))
    const loc = await (await request(`${proxyAdmin}/v1/blocks/${BUCKET}/${blockOfPart(uploadId, 1)}`)).body.json() as { location: { members: string[], inSync: string[] } }
    t.equal(loc.location.inSync.length, 2, `part 1 is on two members (${loc.location.inSync.join(', ')})`)

    const loads = [writer(0), writer(1), writer(2), writer(3), reader(0), reader(1)]
    await sleep(3000)
    const before = acked.size
    const victim = Number(loc.location.inSync[0]!.slice(2)) - 1
    t.comment(`SIGKILL gw${victim + 1} after ${before} acknowledged objects`)
    gateways[victim]!.child.kill('SIGKILL')
    const xml = `<CompleteMultipartUpload>${pending.etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>"${e}"</ETag></Part>`).join('')}</CompleteMultipartUpload>`
    const done = await s3(proxies[1]!, 'POST', `/${BUCKET}/${pending.key}?uploadId=${uploadId}`, xml, { 'content-type': 'application/xml' })
    t.equal(done.status, 200, `Complete right after the kill of the member holding its parts: ${done.status} ${done.status === 200 ? '' : done.body.toString().slice(0, 300)}`)
    if (done.status === 200) acked.set(pending.key, { body: Buffer.concat(pending.parts), etag: multipartEtag(pending.parts) })
    await sleep(6000)
    running = false
    await Promise.all(loads)
    t.comment(`${acked.size} objects acknowledged (${acked.size - before} after the kill), ${reads} reads during the load (${cut.length} cut mid-body by the kill and retried: ${cut.slice(0, 3).join('; ')}), ${retried503} retried 503s over the whole test`)
    t.ok(acked.size - before > 10, 'writes went on after the kill')
    t.same(failures.slice(0, 10), [], 'no request failed')
    t.same(corrupt.slice(0, 10), [], '0 corrupt reads during the load')

    // Settled: every acknowledged object, through both proxies.
    let lost = 0
    let bad = 0
    for (const [key, want] of acked) {
      for (const via of proxies) {
        const r = await s3(via, 'GET', `/${BUCKET}/${key}`)
        if (r.status !== 200) { lost++; if (lost <= 5) t.comment(`lost ${key} via ${via}: ${r.status} ${r.body.toString().slice(0, 200)}`) } else if (!r.body.equals(want.body) || etagOf(r) !== want.etag || (!want.etag.includes('-') && md5(r.body) !== want.etag)) bad++
      }
    }
    t.equal(lost, 0, `0 lost of ${acked.size} acknowledged objects`)
    t.equal(bad, 0, '0 corrupt reads once settled')
    const list = ok(await s3(proxies[1]!, 'GET', `/${BUCKET}?list-type=2&prefix=load/&max-keys=1000`), 'ListObjectsV2')
    t.equal((list.body.toString().match(/<Key>/g) ?? []).length, Math.min(1000, [...acked.keys()].filter(k => k.startsWith('load/')).length), 'the listing has every acknowledged object')
  })
})
