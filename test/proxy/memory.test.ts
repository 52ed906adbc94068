import t from 'tap'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { startGateways } from '../helpers/gateway.js'
import { procStatusBytes } from '../helpers/process.js'
import { startProxyProcess } from '../helpers/proxy-process.js'

const MiB = 1024 * 1024
const SIZE = 200 * MiB

/** 200 MiB of deterministic bytes, generated on demand so the test process holds none of it. */
function source (hash: ReturnType<typeof createHash>): Readable {
  let sent = 0
  const chunk = Buffer.alloc(MiB)
  return new Readable({
    read () {
      if (sent >= SIZE) { this.push(null); return }
      chunk.fill(sent / MiB & 0xff)
      sent += chunk.length
      hash.update(chunk)
      this.push(Buffer.from(chunk))
    }
  })
}

t.test('a 200 MiB streamed upload and download keep the proxy RSS growth under 64 MiB', async t => {
  const gws = await startGateways(1, { maxBlockBytes: 512 * MiB })
  t.teardown(gws.stopAll)
  const { ferry, port } = await startProxyProcess(t, gws.urls[0] as string, 'ferry-mem-')
  const pid = ferry.child.pid as number

  // Warm up the code paths so JIT and pools are not counted as "growth".
  for (let i = 0; i < 20; i++) await (await request(`http://127.0.0.1:${port}/v/warm`, { method: 'PUT', body: Buffer.alloc(64 * 1024) })).body.dump()
  const baseline = procStatusBytes(pid, 'VmRSS')

  const hash = createHash('sha256')
  const body = source(hash)
  const put = await request(`http://127.0.0.1:${port}/v/huge`, { method: 'PUT', body, headers: { 'content-length': String(SIZE) } })
  t.equal(put.statusCode, 201)
  await put.body.dump()
  const sent = hash.digest('hex')

  const get = await request(`http://127.0.0.1:${port}/v/huge`)
  t.equal(get.statusCode, 200)
  const back = createHash('sha256')
  let n = 0
  for await (const d of get.body) { back.update(d as Buffer); n += (d as Buffer).length }
  t.equal(n, SIZE, `all bytes back (${n} of ${SIZE}, content-length ${String(get.headers['content-length'])})`)
  t.equal(back.digest('hex'), sent, 'the same bytes')

  const peak = procStatusBytes(pid, 'VmHWM')
  const growth = peak - baseline
  t.comment(`proxy RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, growth ${(growth / MiB).toFixed(1)} MiB`)
  t.ok(growth < 64 * MiB, `RSS growth ${(growth / MiB).toFixed(1)} MiB < 64 MiB`)
  t.equal(await ferry.stop('SIGTERM'), 0, 'clean exit on SIGTERM')
})
