import t from 'tap'
import net from 'node:net'
import crypto from 'node:crypto'
import { once } from 'node:events'
import { DelayRelay } from '../../bench/fleet/relay.js'
import { waitFor } from '../helpers/net.js'

/** An echo server on a real socket, counting its open connections. */
async function echoServer (greeting?: string): Promise<{ port: number, server: net.Server, open: () => number, peers: string[] }> {
  const peers: string[] = []
  const server = net.createServer({ allowHalfOpen: true }, s => {
    peers.push(s.remoteAddress ?? '')
    s.on('error', () => {}) // resets are part of the test
    if (greeting !== undefined) s.write(greeting)
    s.pipe(s)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  let n = 0
  server.on('connection', s => { n++; s.on('close', () => { n-- }) })
  return { port: (server.address() as net.AddressInfo).port, server, open: () => n, peers }
}

async function connect (port: number): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await once(s, 'connect')
  return s
}

function readBytes (s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let got = 0
    const onData = (b: Buffer): void => {
      parts.push(b); got += b.length
      if (got >= n) { s.off('data', onData); s.off('error', reject); resolve(Buffer.concat(parts)) }
    }
    s.on('data', onData)
    s.once('error', reject)
  })
}

t.test('delay is applied in both directions, the handshake costs one round trip', async t => {
  const echo = await echoServer('hi')
  const d = 40
  const relay = new DelayRelay({ targetHost: '127.0.0.1', targetPort: echo.port, delayMs: d })
  await relay.start()
  t.teardown(async () => { await relay.stop(); echo.server.close() })

  const t0 = performance.now()
  const c = await connect(relay.port)
  // Server → client only: the greeting leaves at the upstream connect and travels one delay.
  const greeting = await readBytes(c, 2)
  const greetMs = performance.now() - t0
  t.equal(greeting.toString(), 'hi')
  t.ok(greetMs >= d - 1, `server→client took ${greetMs.toFixed(1)} ms ≥ ${d}`)

  // First bytes of a fresh connection already waited out the handshake; a later round trip pays 2d.
  const t1 = performance.now()
  c.write('ping')
  t.equal((await readBytes(c, 4)).toString(), 'ping')
  const rtt = performance.now() - t1
  t.ok(rtt >= 2 * d - 1, `round trip ${rtt.toFixed(1)} ms ≥ ${2 * d}`)
  t.ok(rtt < 2 * d + 150, `round trip ${rtt.toFixed(1)} ms is not far above ${2 * d}`)

  // A fresh connection that talks at once pays the handshake too: ≥ 2d before the first byte leaves.
  const t2 = performance.now()
  const c2 = net.connect({ port: relay.port, host: '127.0.0.1' })
  c2.write('x')
  const first = await readBytes(c2, 3) // 'hi' + 'x' (the greeting may arrive first)
  const firstMs = performance.now() - t2
  t.ok(first.includes('x'))
  t.ok(firstMs >= 4 * d - 2, `first exchange on a new connection took ${firstMs.toFixed(1)} ms ≥ ${4 * d} (handshake + round trip)`)
  c.end(); c2.end()
  await Promise.all([once(c, 'close'), once(c2, 'close')])
  const st = relay.stats()
  t.equal(st.connections, 2)
  t.ok(st.latenessMeanMs >= 0 && st.latenessMaxMs < 100, `lateness mean ${st.latenessMeanMs} max ${st.latenessMaxMs} ms`)
})

t.test('bytes intact both ways under backpressure; clean close; no socket left open', async t => {
  const echo = await echoServer()
  const relay = new DelayRelay({ targetHost: '127.0.0.1', targetPort: echo.port, delayMs: 5, highWaterBytes: 64 * 1024, localAddress: '127.0.0.9' })
  await relay.start()
  t.teardown(async () => { await relay.stop(); echo.server.close() })

  const payload = crypto.randomBytes(8 * 1024 * 1024)
  const c = await connect(relay.port)
  const got = readBytes(c, payload.length)
  c.end(payload) // half-close after the payload: the echo finishes, then ends its side
  const back = await got
  t.equal(crypto.createHash('sha256').update(back).digest('hex'), crypto.createHash('sha256').update(payload).digest('hex'), '8 MiB echoed intact')
  const [hadError] = await once(c, 'close') as [boolean]
  t.equal(hadError, false, 'the client saw a clean close (FIN), not a reset')
  t.same(echo.peers, ['127.0.0.9'], 'the target saw the configured source address')
  await waitFor(() => relay.open === 0 && echo.open() === 0, 'relay and server sockets closed')
  t.equal(relay.stats().bytesUp, payload.length)
  t.equal(relay.stats().bytesDown, payload.length)
})

t.test('a reset on one side cuts the other; stop() closes everything', async t => {
  const echo = await echoServer()
  const relay = new DelayRelay({ targetHost: '127.0.0.1', targetPort: echo.port, delayMs: 2 })
  await relay.start()
  t.teardown(() => { echo.server.close() })

  const a = await connect(relay.port)
  a.write('x')
  await readBytes(a, 1)
  a.resetAndDestroy()
  await waitFor(() => relay.open === 0 && echo.open() === 0, 'reset propagated to the target')

  const b = await connect(relay.port)
  b.on('error', () => {})
  b.write('y')
  await readBytes(b, 1)
  // events.once() would reject on the reset's 'error'; the close is what matters.
  const closed = new Promise(resolve => b.once('close', resolve))
  await relay.stop()
  await closed
  await waitFor(() => echo.open() === 0, 'target side closed on stop()')
  t.equal(relay.open, 0)

  // A target that refuses: the client is cut, nothing stays open.
  const dead = new DelayRelay({ targetHost: '127.0.0.1', targetPort: 1, delayMs: 1 })
  await dead.start()
  const c = await connect(dead.port)
  c.on('error', () => {})
  if (!c.destroyed) await new Promise(resolve => c.once('close', resolve))
  t.equal(dead.open, 0)
  await dead.stop()
})
