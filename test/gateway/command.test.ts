import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Agent, request } from 'undici'
import { gatewayCommand } from '../../gateway/command.js'
import { freePort, waitFor } from '../helpers/net.js'

process.env.FERRY_LOG_LEVEL = 'silent'

t.test('bad arguments are refused with the usage', async t => {
  const cases: Array<[string[], RegExp]> = [
    [[], /--dir is required/],
    [['--dir', '/tmp/x'], /--port is required/],
    [['--dir', '/tmp/x', '--port', '70000'], /--port must be a port number/],
    [['--dir', '/tmp/x', '--port', 'http'], /--port must be a port number/],
    [['--dir', '/tmp/x', '--port', '1', '--max-block-bytes', '12XB'], /--max-block-bytes must be a byte count/],
    [['--dir', '/tmp/x', '--port', '1', '--log-level', 'loud'], /--log-level/],
    [['--dir', '/tmp/x', '--port', '1', '--bogus'], /Unknown option '--bogus'/],
    [['--dir', '/tmp/x', '--port', '1', 'extra'], /positional/]
  ]
  for (const [argv, message] of cases) {
    await t.rejects(gatewayCommand(argv), { code: 'INVALID_ARGUMENT', message }, argv.join(' ') || '(no arguments)')
  }
})

t.test('runs until SIGTERM, then stops gracefully', async t => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-gwcmd-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await freePort()
  const handlers = process.listenerCount('SIGTERM')
  const running = gatewayCommand(['--dir', dir, '--port', String(port), '--max-block-bytes', '1KiB', '--id', 'cli'])
  let done = false
  void running.then(() => { done = true })
  const url = `http://127.0.0.1:${port}`
  const health = await waitFor(async () => {
    const r = await request(`${url}/healthz`)
    return r.statusCode === 200 ? await r.body.json() : undefined
  }, 'the gateway to answer')
  t.match(health, { status: 'ok', id: 'cli' })
  const big = await request(`${url}/v/b`, { method: 'PUT', body: Buffer.alloc(1025) })
  t.equal(big.statusCode, 413, '--max-block-bytes 1KiB is in force')
  await big.body.dump()
  t.notOk(done, 'still running')
  process.emit('SIGTERM')
  await running
  // A fresh connection (not undici's pooled one, which may not have seen the close yet).
  await t.rejects(request(`${url}/healthz`, { reset: true, dispatcher: new Agent() }), { code: 'ECONNREFUSED' }, 'stopped listening')
  t.equal(process.listenerCount('SIGTERM'), handlers, 'signal handlers removed')
})
