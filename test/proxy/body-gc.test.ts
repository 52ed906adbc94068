import t from 'tap'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import { request } from 'undici'
import { bodyGcCollections, enableBodyGc, noteBodyBytes } from '../../lib/body-gc.js'
import { startGateways } from '../helpers/gateway.js'
import { startProxyProcess } from '../helpers/proxy-process.js'

const MiB = 1024 * 1024

t.test('after every N body bytes a young-generation GC runs; the main context gets no global gc', async t => {
  const minors: number[] = []
  const obs = new PerformanceObserver(list => {
    for (const e of list.getEntries()) if (((e as unknown as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minors.push(e.startTime)
  })
  obs.observe({ entryTypes: ['gc'] })
  t.teardown(() => obs.disconnect())
  enableBodyGc(MiB)
  const before = bodyGcCollections()
  const since = performance.now()
  for (let i = 0; i < 12; i++) noteBodyBytes(256 * 1024) // 3 MiB
  t.equal(bodyGcCollections() - before, 3, 'one collection per MiB noted')
  await new Promise(resolve => setTimeout(resolve, 50)) // gc entries are delivered asynchronously
  t.ok(minors.filter(s => s >= since).length >= 3, `V8 ran the scavenges (${minors.length} minor GCs seen)`)
  t.equal((globalThis as { gc?: unknown }).gc, undefined, 'globalThis.gc stays undefined')
})

t.test('ferry start: bodies through the proxy drive the young-generation GCs, and arrive intact', async t => {
  const gws = await startGateways(1, { maxBlockBytes: 64 * MiB })
  t.teardown(gws.stopAll)
  const { ferry, port, adminPort } = await startProxyProcess(t, gws.urls[0] as string, 'ferry-body-gc-')
  const metric = async (): Promise<number> => {
    const text = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text()
    return Number(/^ferry_proxy_body_gcs_total (\d+)/m.exec(text)?.[1] ?? NaN)
  }
  const before = await metric()
  t.ok(Number.isFinite(before), 'the proxy reports ferry_proxy_body_gcs_total')

  // 8 blocks of 2 MiB up (one by Content-Length, one chunked: BodyLimit counts those) and down: 32 MiB.
  const sums: string[] = []
  for (let i = 0; i < 8; i++) {
    const body = Buffer.alloc(2 * MiB, i + 1)
    sums.push(createHash('sha256').update(body).digest('hex'))
    const chunked = i % 2 === 1
    const put = await request(`http://127.0.0.1:${port}/v/b${i}`, chunked
      ? { method: 'PUT', body: Readable.from([body.subarray(0, MiB), body.subarray(MiB)]) }
      : { method: 'PUT', body })
    t.equal(put.statusCode, 201, `PUT b${i}${chunked ? ' (chunked)' : ''}`)
    await put.body.dump()
  }
  for (let i = 0; i < 8; i++) {
    const get = await request(`http://127.0.0.1:${port}/v/b${i}`)
    t.equal(get.statusCode, 200)
    t.equal(createHash('sha256').update(Buffer.from(await get.body.arrayBuffer())).digest('hex'), sums[i], `b${i} back intact`)
  }
  const ran = await metric() - before
  // 4 MiB apart by default (lib/body-gc.ts): 32 MiB moved → 8.
  t.ok(ran >= 7 && ran <= 9, `young-generation GCs after 32 MiB of bodies: ${ran}`)
  t.equal(await ferry.stop('SIGTERM'), 0, 'clean exit on SIGTERM')
})
