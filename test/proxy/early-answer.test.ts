import net from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { startGateways } from '../helpers/gateway.js'
import { startProxy, testConfig } from '../helpers/ferry.js'
import { runCommand } from '../helpers/process.js'

/**
 * Answers given before the request body is read (a bad path, a wrong signature), to clients that
 * send the whole body before they read the answer — Python's http.client, under boto3 and the
 * AWS CLI. A proxy that closed the connection right after such an answer cut these clients off
 * with a broken pipe (or, over TLS, an EOF) once the body outgrew the socket buffers, and they
 * never saw the error. The proxy reads and discards the rest (lib/http.ts discardUnreadBody),
 * keeps the connection for the next request, and still closes at once where reading would waste
 * what the answer saves (a 413).
 */

const hasPython = (await runCommand('python3', ['-c', 'import http.client'], {}, 30_000)).code === 0

// One connection: a refused 4 MiB PUT, then a good PUT and GET on the same connection.
const CLIENT = `
import http.client, json, sys
host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection(host, port, timeout=20)
out = {}
try:
    c.request('PUT', '/vol/.hidden', body=b'x' * (4 * 1024 * 1024))
    r = c.getresponse()
    out['refused'] = [r.status, json.loads(r.read())['error']['code'], r.getheader('connection')]
except Exception as e:
    out['refused'] = ['cut', repr(e)]
sock = c.sock
try:
    c.request('PUT', '/vol/' + key, body=b'hello')
    r = c.getresponse(); r.read()
    c.request('GET', '/vol/' + key)
    g = c.getresponse()
    out['next'] = [r.status, g.status, g.read().decode(), sock is not None and c.sock is sock]
except Exception as e:
    out['next'] = ['cut', repr(e)]
print(json.dumps(out))
`

t.test('a client that sends its whole body before reading gets the early answer, on a connection kept open', { skip: hasPython ? false : 'python3 is not installed' }, async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const proxy = await startProxy(testConfig(gws.urls))
  t.teardown(proxy.stop)
  const url = new URL(proxy.url)
  for (let round = 0; round < 3; round++) {
    const r = await runCommand('python3', ['-c', CLIENT, url.hostname, url.port, `after${round}`], {}, 60_000)
    t.equal(r.code, 0, `the client ran: ${r.stderr.slice(-500)}`)
    const out = JSON.parse(r.stdout) as { refused: unknown[], next: unknown[] }
    t.same(out.refused, [400, 'FERRY_BAD_PATH', 'keep-alive'], `round ${round}: the 400 reached the client, whose body was read and discarded`)
    t.same(out.next, [201, 200, 'hello', true], `round ${round}: the same connection served the next PUT and GET`)
  }
  const back = await request(`${proxy.url}/vol/after2`)
  t.equal(await back.body.text(), 'hello', 'the good write is stored')
})

t.test('a body declared over maxBodyBytes is not read: 413 and the connection closed', async t => {
  const gws = await startGateways(1)
  t.teardown(gws.stopAll)
  const proxy = await startProxy(testConfig(gws.urls, { proxy: { listen: { host: '127.0.0.1', port: 0 }, maxBodyBytes: 1024 * 1024 } }))
  t.teardown(proxy.stop)
  const url = new URL(proxy.url)
  const reply = await new Promise<{ text: string, closed: boolean }>((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname)
    let text = ''
    socket.on('data', d => { text += d.toString() })
    socket.on('error', reject)
    // Only the headers are sent: a server that waited for the 64 MiB would never answer.
    socket.on('connect', () => socket.write('PUT /vol/huge HTTP/1.1\r\nhost: x\r\ncontent-length: 67108864\r\n\r\n'))
    socket.on('end', () => { socket.end(); resolve({ text, closed: true }) })
    setTimeout(() => { socket.destroy(); resolve({ text, closed: false }) }, 10_000).unref()
  })
  t.match(reply.text, /^HTTP\/1\.1 413 /, '413')
  t.match(reply.text, /FERRY_BODY_TOO_LARGE/, 'with its code')
  t.match(reply.text.toLowerCase(), /\r\nconnection: close\r\n/, 'Connection: close')
  t.ok(reply.closed, 'and the connection is closed without waiting for the body')
})
