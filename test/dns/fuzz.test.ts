import t from 'tap'
import dgram from 'node:dgram'
import net from 'node:net'
import { promises as dnsp } from 'node:dns'
import { parseSubnet } from '../../dns/ecs.js'
import { encodeName } from '../../dns/wire.js'
import { buildQuery, decode, udpQuery } from './client.js'
import { sampleView } from './memory-view.js'
import { startServer, ZONE } from './harness.js'

// 100,000+ random and mutated packets over UDP (and some over TCP), sent in bursts without
// waiting for replies; then the server must still answer correctly. Seeded, so a failure can
// be replayed: FERRY_FUZZ_SEED=<seed> npx tap test/dns/fuzz.test.ts

const PACKETS = 100_000
const TCP_PACKETS = 3_000
const BURST = 64

// xorshift32: small, fast, reproducible.
function rng (seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13; s >>>= 0
    s ^= s >>> 17
    s ^= s << 5; s >>>= 0
    return s / 0x100000000
  }
}

function seeds (): Buffer[] {
  const names = [`vol1.${ZONE}`, `VOL2.${ZONE}`, ZONE, `_ferry._tcp.${ZONE}`, `gw-east.gw.${ZONE}`, `nope.${ZONE}`, 'example.com']
  const out: Buffer[] = []
  for (const name of names) {
    for (const type of [1, 28, 6, 2, 33, 255, 16]) {
      out.push(buildQuery({ name, type }))
      out.push(buildQuery({ name, type, edns: { payload: 4096, dnssecOk: true } }))
      out.push(buildQuery({ name, type, edns: { ecs: parseSubnet('2001:db8:1234:5600::/56') } }))
      out.push(buildQuery({ name, type, edns: { ecs: parseSubnet('10.2.0.0/20') } }))
    }
  }
  // A question whose name is a compression pointer into itself, and a pointer chain.
  out.push(Buffer.from('abcd01000001000000000000c00c00010001', 'hex'))
  out.push(Buffer.concat([Buffer.from('abcd01000001000000000000', 'hex'), Buffer.from([4]), Buffer.from('vol1'), Buffer.from([0xc0, 12]), Buffer.from('00010001', 'hex')]))
  // 63-octet labels up to and past the 255-octet limit.
  const long = Buffer.concat([...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])), encodeName(ZONE)])
  out.push(Buffer.concat([Buffer.from('abcd01000001000000000000', 'hex'), long, Buffer.from('00010001', 'hex')]))
  return out
}

function mutate (base: Buffer, r: () => number): Buffer {
  const pick = (n: number): number => Math.floor(r() * n)
  const kind = pick(10)
  let b = Buffer.from(base)
  switch (kind) {
    case 0: { // pure noise
      b = Buffer.alloc(pick(600))
      for (let i = 0; i < b.length; i++) b[i] = pick(256)
      return b
    }
    case 1: return b.subarray(0, pick(b.length + 1)) // truncated anywhere
    case 2: { // flip a few bits
      for (let n = 1 + pick(8); n > 0; n--) { const i = pick(b.length); b[i] = (b[i] as number) ^ (1 << pick(8)) }
      return b
    }
    case 3: { // random bytes over a random stretch
      const start = pick(b.length)
      for (let i = start; i < Math.min(b.length, start + 1 + pick(8)); i++) b[i] = pick(256)
      return b
    }
    case 4: { // header counts nonsense
      b.writeUInt16BE(pick(65536), 4 + 2 * pick(4))
      return b
    }
    case 5: { // a compression pointer planted somewhere, pointing anywhere (loops included)
      const i = 12 + pick(Math.max(1, b.length - 13))
      if (i + 1 < b.length) { b[i] = 0xc0 | pick(64); b[i + 1] = pick(256) }
      return b
    }
    case 6: { // a label length made too large or reserved
      const i = 12 + pick(Math.max(1, b.length - 12))
      if (i < b.length) b[i] = [63, 64, 0x40, 0x80, 0xff][pick(5)] as number
      return b
    }
    case 7: { // trailing garbage
      const tail = Buffer.alloc(1 + pick(40))
      for (let i = 0; i < tail.length; i++) tail[i] = pick(256)
      return Buffer.concat([b, tail])
    }
    case 8: { // flags and opcode randomised (QR, opcode, TC, Z…)
      if (b.length >= 4) { b[2] = pick(256); b[3] = pick(256) }
      return b
    }
    default: { // a slice repeated: duplicated records, overlong OPT
      const s = pick(b.length)
      const e = s + pick(b.length - s + 1)
      return Buffer.concat([b, b.subarray(s, e)])
    }
  }
}

t.test(`fuzz: ${PACKETS} packets over UDP, ${TCP_PACKETS} over TCP`, async t => {
  const seed = Number(process.env.FERRY_FUZZ_SEED ?? Math.floor(Math.random() * 0xffffffff))
  t.comment(`seed ${seed}`)
  const r = rng(seed)
  const view = sampleView()
  const { server, port4 } = await startServer(t, view)
  const corpus = seeds()
  const processed = (): number => server.metrics.totalQueries() + server.metrics.malformedUdp + server.metrics.malformedTcp

  const sock = dgram.createSocket('udp4')
  t.teardown(() => new Promise<void>(resolve => sock.close(() => resolve())))
  let replies = 0
  let badReplies = 0
  sock.on('message', m => {
    replies++
    // Every reply is a response (QR), fits UDP's largest, and has a header.
    if (m.length < 12 || ((m[2] as number) & 0x80) === 0 || m.length > 1232) badReplies++
  })
  await new Promise<void>(resolve => sock.bind(0, '127.0.0.1', () => resolve()))

  const start = processed()
  let sent = 0
  let lost = 0
  while (sent < PACKETS) {
    for (let i = 0; i < BURST && sent < PACKETS; i++, sent++) {
      const base = corpus[Math.floor(r() * corpus.length)] as Buffer
      sock.send(mutate(base, r), port4, '127.0.0.1')
    }
    // Let the server drain the burst; the sender shares its event loop, so yielding is enough
    // unless the kernel dropped some (then give up on those after a short quiet spell).
    let last = -1
    let quiet = 0
    while (processed() - start + lost < sent) {
      await new Promise(resolve => setImmediate(resolve))
      const now = processed()
      if (now === last) {
        if (++quiet > 200) { lost = sent - (now - start); break }
      } else {
        quiet = 0
        last = now
      }
    }
  }
  t.comment(`udp phase done, lost ${lost}, ${Math.round(performance.now())} ms`)
  t.ok(processed() - start >= PACKETS * 0.99, `the server handled ${processed() - start} of ${PACKETS} (the kernel may drop a few)`)
  t.equal(badReplies, 0, `every one of ${replies} replies is a well-formed response`)
  t.ok(replies > PACKETS / 4, 'many mutants were still answerable')

  // TCP: framed mutants on a connection; a message the server cannot answer closes it, then a
  // new connection carries on.
  let tcpSent = 0
  while (tcpSent < TCP_PACKETS) {
    const conn = net.connect({ port: port4, host: '127.0.0.1' })
    conn.on('error', () => {})
    conn.on('data', () => {})
    await new Promise<void>(resolve => conn.once('connect', () => resolve()))
    const closed = new Promise<void>(resolve => conn.once('close', () => resolve()))
    const frames: Buffer[] = []
    for (let i = 0; i < 100 && tcpSent < TCP_PACKETS; i++, tcpSent++) {
      const m = mutate(corpus[Math.floor(r() * corpus.length)] as Buffer, r).subarray(0, 65535)
      const f = Buffer.alloc(2 + m.length)
      f.writeUInt16BE(m.length, 0)
      m.copy(f, 2)
      frames.push(f)
    }
    conn.end(Buffer.concat(frames))
    await Promise.race([closed, new Promise(resolve => setTimeout(resolve, 2000))])
    conn.destroy()
  }

  t.comment(`tcp phase done ${Math.round(performance.now())} ms`)
  // Still correct afterwards, over every path.
  t.ok(server.ready(), 'still listening')
  const res = new dnsp.Resolver({ timeout: 1500, tries: 2 })
  res.setServers([`127.0.0.1:${port4}`])
  t.same(await res.resolve4(`vol1.${ZONE}`), ['192.0.2.1'])
  t.same(await res.resolve6(`vol2.${ZONE}`), ['2001:db8:f0::2'])
  await t.rejects(res.resolve4(`nope.${ZONE}`), { code: 'ENOTFOUND' })
  const ecs = decode(await udpQuery(port4, '127.0.0.1', buildQuery({ name: `vol1.${ZONE}`, type: 28, edns: { ecs: parseSubnet('2001:db8:1234:5600::/56') } })))
  t.same(ecs.answers.map(a => a.address), ['2001:db8:f0::2'])
  t.equal(ecs.opt?.ecs?.scopePrefix, 56)
  view.setVolume('vol1', ['gw-west'])
  t.same(await res.resolve4(`vol1.${ZONE}`), ['192.0.2.2'], 'and still follows the data')
})
