import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { freePort, waitFor } from '../helpers/net.js'
import { FERRY_BIN } from '../helpers/process.js'

/** `ferry sandbox` with its output read until the banner; stdout is a pipe unless `tty`. */
async function sandboxOutput (t: Test, env: Record<string, string>, tty: boolean): Promise<string> {
  const ports = await Promise.all(Array.from({ length: 6 }, () => freePort()))
  const [proxy, admin, dnsPort, g1, g2, g3] = ports.map(String) as [string, string, string, string, string, string]
  const args = [FERRY_BIN, 'sandbox', '--proxy-port', proxy, '--admin-port', admin, '--dns-port', dnsPort, '--gateway-ports', `${g1},${g2},${g3}`]
  // A real terminal for `auto`: util-linux `script` runs the command on a pseudo-terminal.
  const child = tty
    ? spawn('script', ['-qfec', [process.execPath, ...args].join(' '), '/dev/null'], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', d => { out += String(d) })
  child.stderr?.on('data', d => { out += String(d) })
  t.teardown(() => { child.kill('SIGKILL') })
  await waitFor(() => out.includes('Ctrl-C stops everything') && out.includes('admin listening'), 'the sandbox banner', 60_000, 100)
  child.kill('SIGINT')
  await new Promise(resolve => child.once('exit', resolve))
  return out
}

const jsonLine = /^\{"level":30,.*"msg":"admin listening"\}$/m

t.test('log.format: JSON through a pipe, pretty on a terminal, FERRY_LOG_FORMAT overrides', async t => {
  const env = { FERRY_LOG_LEVEL: 'info', FERRY_LOG_FORMAT: '' }
  const piped = await sandboxOutput(t, env, false)
  t.match(piped, jsonLine, 'sandbox (format auto) through a pipe: JSON lines')

  const forced = await sandboxOutput(t, { ...env, FERRY_LOG_FORMAT: 'pretty' }, false)
  t.notMatch(forced, jsonLine)
  t.match(forced, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(ferry\): admin listening$/m, 'pretty: time, level, name, message')
  t.match(forced, /^\s+address: \{$/m, 'with the fields below')

  if (!fs.existsSync('/usr/bin/script')) { t.comment('util-linux script is missing: the terminal case is skipped'); return }
  const tty = await sandboxOutput(t, env, true)
  // eslint-disable-next-line no-control-regex
  const plain = tty.replace(/\u001b\[[0-9;]*m/g, '').replace(/\r/g, '')
  t.notMatch(plain, jsonLine)
  t.match(plain, /INFO \(ferry\): admin listening/, 'auto on a terminal: pretty')
})
