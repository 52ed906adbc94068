import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { sandboxYaml } from '../../bin/sandbox.js'
import { ctl } from '../helpers/ctl.js'
import { freePort, waitFor } from '../helpers/net.js'
import { spawnFerry } from '../helpers/process.js'
import { SANDBOX_TOKEN } from '../helpers/sandbox.js'

t.test('ferry ctl reload and config check against ferry start', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-ctl-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const [proxy, admin, dnsPort, g1, g2, g3] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]) as number[]
  const file = path.join(dir, 'ferry.yaml')
  const yaml = sandboxYaml({ proxy: proxy as number, admin: admin as number, dns: dnsPort as number, gateways: [g1, g2, g3] as number[] })
  fs.writeFileSync(file, yaml)
  t.equal((await ctl(['config', 'check', file])).code, 0, 'a valid file')

  const ferry = spawnFerry(['start', '--config', file, '--roles', 'proxy'])
  t.teardown(() => ferry.stop('SIGKILL'))
  await waitFor(() => ferry.output().includes('admin listening'), 'the admin listener', 20_000, 100)
  const env = { FERRY_ADMIN_URL: `http://127.0.0.1:${admin}`, FERRY_ADMIN_TOKEN: SANDBOX_TOKEN }

  const same = await ctl(['reload'], env)
  t.equal(same.code, 0, same.stderr)
  t.match(same.stdout, /no change/)
  fs.writeFileSync(file, yaml.replace('level: info', 'level: debug'))
  const changed = await ctl(['reload'], env)
  t.equal(changed.code, 0)
  t.match(changed.stdout, /changes applied|no change/, 'applied (by this call, or by the file watch just before it)')

  fs.writeFileSync(file, yaml.replace('level: info', 'level: loud'))
  const bad = await ctl(['reload'], env)
  t.equal(bad.code, 1, 'an invalid file is refused')
  t.match(bad.stderr, /log\.level.*FERRY_CONFIG_INVALID/)
  const check = await ctl(['config', 'check', file])
  t.equal(check.code, 1)
  t.match(check.stderr, new RegExp(`${file.replace(/[.]/g, '\\.')}:\\d+:\\d+: log\\.level`), 'file:line:col: key.path')
  const stillServing = await request(`http://127.0.0.1:${admin}/healthz`)
  t.equal(stillServing.statusCode, 200, 'the old config keeps serving')
  await stillServing.body.dump()
})
