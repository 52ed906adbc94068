import t from 'tap'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { runCommand } from '../helpers/process.js'
import { waitFor } from '../helpers/net.js'
import { LINGER_MAX_MS } from '../../lib/http.js'

/**
 * A client that sends its whole body before it reads the answer (Python's http.client, which
 * boto3 and requests sit on): the proxy refuses the request after its headers and closes the
 * connection. Closed with the body unread, the socket sends RST and the client, still writing,
 * sees its write fail (BrokenPipeError / ConnectionResetError) and never the answer. With a
 * lingering close it reads its answer. Prints the status and body, or the exception's name.
 */
const CLIENT = `
import http.client, json, sys
port, method, path, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
headers = json.loads(sys.argv[5])
c = http.client.HTTPConnection('127.0.0.1', port, timeout=20)
try:
    c.request(method, path, body=b'x' * size, headers=headers)
    r = c.getresponse()
    print(json.dumps({'status': r.status, 'body': r.read().decode(), 'connection': r.getheader('connection')}))
except OSError as e:
    print(json.dumps({'error': type(e).__name__}))
`

interface Outcome { status?: number, body?: string, connection?: string | null, error?: string }

async function put (port: number, path: string, size: number, headers: Record<string, string> = {}): Promise<Outcome> {
  const run = await runCommand('python3', ['-c', CLIENT, String(port), 'PUT', path, String(size), JSON.stringify(headers)], {}, 60_000)
  if (run.code !== 0) throw new Error(`python client failed: ${run.stderr}`)
  return JSON.parse(run.stdout.trim()) as Outcome
}

t.test('an early refusal of a PUT reaches a client still sending its body (lingering close)', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: 0 }, maxBodyBytes: 1024 * 1024 } }))
  t.teardown(p.stop)
  const port = Number(new URL(p.url).port)
  // 6 MiB: far more than the loopback socket buffers take before the proxy answers, and within
  // the bytes a lingering close reads.
  const size = 6 * 1024 * 1024

  for (let i = 0; i < 3; i++) {
    const bad = await put(port, '/a/', size)
    t.same(bad.error, undefined, `bad path, try ${i}: the client was not cut off (${bad.error ?? ''})`)
    t.equal(bad.status, 400)
    t.match(JSON.parse(bad.body ?? '{}'), { error: { code: 'FERRY_BAD_PATH' } })
    t.not(bad.connection, 'close', 'the body was discarded and the connection kept (early-answer.test.ts)')

    const big = await put(port, '/a/too-big', 4 * 1024 * 1024)
    t.same(big.error, undefined, `body over maxBodyBytes, try ${i}: the client was not cut off (${big.error ?? ''})`)
    t.equal(big.status, 413)
    t.equal(big.connection, 'close', 'a 413 closes the connection (lingering)')
    t.match(JSON.parse(big.body ?? '{}'), { error: { code: 'FERRY_BODY_TOO_LARGE' } })

    // S3: a signed request with a key the proxy does not know, refused before its body is read
    // (the wrong-secret PUT of the boto3 flows, here without TLS).
    const s3 = await put(port, '/vol/never', size, {
      authorization: 'AWS4-HMAC-SHA256 Credential=NOSUCHKEY/20261205/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=' + '0'.repeat(64),
      'x-amz-date': '20261205T000000Z',
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD'
    })
    t.same(s3.error, undefined, `S3 auth failure, try ${i}: the client was not cut off (${s3.error ?? ''})`)
    t.equal(s3.status, 403)
    t.match(s3.body ?? '', /<Code>(InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied)<\/Code>/)
  }

  // Each client closed its half once it had its answer: the proxy closes its sockets then, not
  // at the lingering close's time limit.
  const server = p.node.proxy?.server
  const open = async (): Promise<number> => await new Promise((resolve, reject) => server?.getConnections((e, n) => e !== null ? reject(e) : resolve(n)))
  await waitFor(async () => await open() === 0, 'the proxy to close the refused connections', LINGER_MAX_MS / 2, 50)

  // Nothing was stored by any of them.
  const { request } = await import('undici')
  for (const path of ['/a/too-big', '/vol/never']) {
    const r = await request(`${gws.urls[0] as string}${path}`)
    t.equal(r.statusCode, 404, `${path} not on the gateway`)
    await r.body.dump()
  }
})

t.test('a lingering close is bounded: a client that keeps sending is cut', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const p = await startProxy(testConfig(gws.urls))
  t.teardown(p.stop)
  const port = Number(new URL(p.url).port)
  // Far past the bytes a lingering close reads (DISCARD_MAX_BYTES): the proxy stops reading and
  // closes, as before; an unbounded linger would read all of it and answer.
  const out = await put(port, '/a/', 128 * 1024 * 1024)
  t.ok(out.error !== undefined, `the client is cut (${JSON.stringify(out)})`)
})
