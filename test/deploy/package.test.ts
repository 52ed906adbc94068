import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { freePort, waitFor } from '../helpers/net.js'
import { ROOT } from '../helpers/process.js'

// What a user installs: `npm pack`, then the tarball installed into an empty prefix (dependencies
// from the npm registry, as a user gets them), then its `ferry` command run from there.
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze'

async function run (cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile(cmd, args, { cwd: opts.cwd, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, out: stdout + stderr })
    })
  })
}

t.test('npm pack: the tarball installs and its ferry command works; the systemd unit verifies', async t => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'bin', 'ferry.js'))) throw new Error('dist/ is missing: run npm run build (npm test does it)')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-pack-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })

  const pack = await run('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: ROOT })
  t.equal(pack.code, 0, pack.out)
  const tarball = path.join(dir, pack.out.trim().split('\n').at(-1) as string)
  const list = (await run('tar', ['tzf', tarball])).out.split('\n')
  for (const f of ['package/dist/bin/ferry.js', 'package/console/static/index.html', 'package/config/example.yaml', 'package/deploy/systemd/ferry.service', 'package/deploy/prometheus/ferry-rules.yml']) t.ok(list.includes(f), `packs ${f}`)
  t.same(list.filter(f => /^package\/(test|bench|dist\/test|dist\/bench)\/|\.map$|\.ts$/.test(f) && !f.endsWith('.d.ts')), [], 'no tests, benchmarks, sources or maps')

  // --ignore-scripts: sharp (an optional image dependency of @xenova/transformers) downloads a
  // binary from outside the registry in its install script; ferry never needs it.
  const prefix = path.join(dir, 'prefix')
  const install = await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', tarball])
  t.equal(install.code, 0, install.out)
  const ferry = path.join(prefix, 'bin', 'ferry')
  const installed = path.join(prefix, 'lib', 'node_modules', 'ferry')

  const check = await run(ferry, ['check', '--config', path.join(installed, 'config', 'example.yaml')])
  t.equal(check.code, 0, check.out)
  t.match(check.out, /example\.yaml: ok/)

  // The installed sandbox serves blocks and the console (its static files and uPlot found in the install).
  const [proxy, admin, dnsPort, g1, g2, g3] = (await Promise.all(Array.from({ length: 6 }, () => freePort()))).map(String) as [string, string, string, string, string, string]
  const child = spawn(ferry, ['sandbox', '--proxy-port', proxy, '--admin-port', admin, '--dns-port', dnsPort, '--gateway-ports', `${g1},${g2},${g3}`], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', d => { out += String(d) })
  child.stderr.on('data', d => { out += String(d) })
  t.teardown(() => { child.kill('SIGKILL') })
  await waitFor(() => out.includes('Ctrl-C stops everything'), 'the installed sandbox', 60_000, 100)
  const put = await request(`http://127.0.0.1:${proxy}/vol1/blk1`, { method: 'PUT', body: 'installed' })
  t.equal(put.statusCode, 201)
  await put.body.dump()
  const ui = await request(`http://127.0.0.1:${admin}/ui/`)
  t.equal(ui.statusCode, 200)
  t.match(await ui.body.text(), /<title>ferry console<\/title>/)
  const uplot = await request(`http://127.0.0.1:${admin}/ui/uPlot.iife.min.js`)
  t.equal(uplot.statusCode, 200, 'uPlot served from the installed dependency')
  await uplot.body.dump()
  child.kill('SIGINT')
  t.equal(await new Promise(resolve => child.once('exit', resolve)), 0, 'exits 0 on SIGINT')

  if (!fs.existsSync(SYSTEMD_ANALYZE)) { t.comment(`${SYSTEMD_ANALYZE} is missing: the unit check is skipped`); return }
  const unit = fs.readFileSync(path.join(installed, 'deploy', 'systemd', 'ferry.service'), 'utf8')
  t.match(unit, /^ExecStartPre=\/usr\/bin\/ferry check --config \/etc\/ferry\/ferry\.yaml$/m, 'checks the config before every start')
  t.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m, 'reloads on SIGHUP')
  // systemd-analyze verify needs the commands to exist: point the unit at the installed one.
  const local = path.join(dir, 'ferry.service')
  fs.writeFileSync(local, unit.replaceAll('/usr/bin/ferry', ferry))
  const verify = await run(SYSTEMD_ANALYZE, ['verify', local])
  t.equal(verify.code, 0, verify.out)
  t.equal(verify.out.trim(), '', 'no warnings')
})
