/**
 * `npm run bench -- s3-adapter [--requests N]`: the S3 adapter's own CPU per signed GET, in
 * process: S3Adapter.handle on a SigV4-signed GET of a 4 KiB object (parse, signature verified
 * in full, grant, object index, the S3Reply turning a gateway answer into S3's), with a core that
 * answers at once instead of a gateway. No sockets, so unlike `bench s3` the figure does not
 * depend on how the OS schedules processes on a loaded machine; it is what the adapter adds to
 * a plain GET, which `bench s3` measures end to end. The cost of building the request and
 * response objects is measured alone and subtracted.
 */
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { parseArgs } from 'node:util'
import { Registry } from 'prom-client'
import { parseConfig } from '../config/load.js'
import { createLogger } from '../lib/log.js'
import { S3Adapter, type BlockCore } from '../proxy/s3/adapter.js'
import type { BlockOperation, ResponseHandler } from '../proxy/request.js'
import { canonicalRequest, sha256Hex, signatureOf, signingKey, type SignedRequest } from '../proxy/s3/sigv4.js'
import { MemoryObjectIndex } from '../state/objects.js'
import { writeResult } from './lib.js'
import { positiveInt } from './procs.js'

export default async function run (args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { requests: { type: 'string', default: '50000' }, rounds: { type: 'string', default: '3' }, 'no-write': { type: 'boolean', default: false } } })
  const n = positiveInt('--requests', values.requests)
  const rounds = positiveInt('--rounds', values.rounds)
  const cfg = parseConfig(`sites: [{ name: local, subnets: [127.0.0.0/8], edges: [127.0.0.1] }]
gateways: [{ id: g, url: "http://127.0.0.1:1", site: local }]
s3:
  credentials: [{ accessKeyId: bench-key, secret: bench-secret-0123456789, volumes: ["*"] }]
  anonymous: ["*"]
`, 's3-adapter-bench.yaml')
  const body = Buffer.alloc(4096, 'g')
  let answered = 0
  const client: ResponseHandler = {
    onRequestStart () {},
    onResponseStart (_c, status) { if (status === 200) answered++ },
    onResponseData () {},
    onResponseEnd () {},
    onResponseError (_c, err) { throw err }
  }
  const controller = {} as never
  const core: BlockCore = {
    maxBodyBytes: 1 << 30,
    via: '1.1 ferry',
    dispatchBlock (op: BlockOperation) {
      const h = op.wrap === undefined ? client : op.wrap(client, op as never)
      h.onRequestStart(controller, {})
      h.onResponseStart(controller, 200, { etag: '"x"', 'content-length': String(body.length), 'content-type': 'application/octet-stream' })
      h.onResponseData(controller, body)
      h.onResponseEnd(controller, {})
    },
    clientOf: () => '127.0.0.1',
    readersOf: () => [],
    holdersOf: () => [],
    receiversOf: () => []
  }
  const index = new MemoryObjectIndex()
  const adapter = new S3Adapter(cfg.s3, undefined, core, index, createLogger('silent'), new Registry())
  await index.createBucket('benchs3', Date.now())
  await index.putObject('benchs3', 'g00001', { etag: '0123456789abcdef0123456789abcdef', size: body.length, lastModified: Date.now() })
  const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
  const headers: Record<string, string> = { host: '127.0.0.1:8080', 'x-amz-date': amzDate, 'x-amz-content-sha256': sha256Hex('') }
  const signed = Object.keys(headers).sort()
  const sig: SignedRequest = { accessKeyId: 'bench-key', amzDate, scope: `${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request`, signedHeaders: signed, signature: '', payloadHash: headers['x-amz-content-sha256'] as string, presigned: false }
  const canonical = canonicalRequest({ method: 'GET', url: '/benchs3/g00001', headers } as unknown as IncomingMessage, sig)
  const signature = signatureOf(signingKey('bench-secret-0123456789', sig.scope), `AWS4-HMAC-SHA256\n${amzDate}\n${sig.scope}\n${sha256Hex(canonical)}`)
  const all = { ...headers, authorization: `AWS4-HMAC-SHA256 Credential=bench-key/${sig.scope},SignedHeaders=${signed.join(';')},Signature=${signature}`, 'user-agent': 'bench', accept: '*/*' }
  const socket = new Socket()
  const make = (): [IncomingMessage, ServerResponse] => {
    const req = new IncomingMessage(socket)
    req.method = 'GET'
    req.url = '/benchs3/g00001'
    req.headers = all
    return [req, new ServerResponse(req)]
  }
  const cpu = (): number => { const u = process.cpuUsage(); return u.user + u.system }
  const perRound: number[] = []
  for (let r = 0; r < rounds + 1; r++) {
    let t = cpu()
    for (let i = 0; i < n; i++) make()
    const base = (cpu() - t) / n
    answered = 0
    t = cpu()
    for (let i = 0; i < n; i++) {
      const [req, res] = make()
      adapter.handle(req, res)
      // Let the adapter's promise continuations (the index lookup) run, as the event loop would.
      if (i % 100 === 99) await new Promise(resolve => setImmediate(resolve))
    }
    await new Promise(resolve => setImmediate(resolve))
    const us = (cpu() - t) / n - base
    if (answered !== n) throw new Error(`${answered} of ${n} signed GETs were answered 200`)
    if (r > 0) perRound.push(us) // round 0 warms up
    process.stderr.write(`round ${r}${r === 0 ? ' (warm-up)' : ''}: ${us.toFixed(1)} µs of CPU per signed GET in the adapter\n`)
  }
  const sorted = [...perRound].sort((a, b) => a - b)
  const median = sorted[Math.floor(sorted.length / 2)] as number
  console.log(`S3 adapter, signed GET 4 KiB: median ${median.toFixed(1)} µs of CPU per request (rounds ${perRound.map(x => x.toFixed(1)).join(', ')})`)
  await adapter.close()
  if (!values['no-write']) console.log(writeResult('s3-adapter', { settings: { requests: n, rounds }, perRoundUs: perRound, medianUs: median }))
}
