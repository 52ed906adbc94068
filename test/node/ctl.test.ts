import t from 'tap'
import { request } from 'undici'
import { ctl } from '../helpers/ctl.js'
import { freePort, waitFor } from '../helpers/net.js'
import { SANDBOX_TOKEN, startSandbox } from '../helpers/sandbox.js'

t.test('ferry ctl against a running sandbox', async t => {
  const sb = await startSandbox(t)
  for (const b of ['blk1', 'blk2', 'blk3']) {
    const put = await request(`${sb.proxy}/vol1/${b}`, { method: 'PUT', body: `bytes of ${b}` })
    await put.body.dump()
  }
  const env = { FERRY_ADMIN_URL: sb.admin }
  const withToken = { ...env, FERRY_ADMIN_TOKEN: SANDBOX_TOKEN }

  const status = await ctl(['status'], env)
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, /readiness\s+ready/)
  t.match(status.stdout, /gateways\s+3\/3 healthy/)
  t.match(status.stdout, /movement\s+on/)

  const gws = await ctl(['gateways'], env)
  t.equal(gws.code, 0)
  t.match(gws.stdout, /^GATEWAY\s+SITE\s+HEALTH/)
  for (const [gw, site] of [['gw1', 'site-a'], ['gw2', 'site-b'], ['gw3', 'site-c']]) t.match(gws.stdout, new RegExp(`^${gw}\\s+${site}\\s+healthy`, 'm'))
  const json = await ctl(['--json', 'gateways'], env)
  t.same((JSON.parse(json.stdout) as { gateways: Array<{ id: string }> }).gateways.map(g => g.id), ['gw1', 'gw2', 'gw3'], '--json prints the API answer')
  t.same(JSON.parse((await ctl(['gateways', '--json'], env)).stdout), JSON.parse(json.stdout), '--json after the command too')

  const where = await (await request(`${sb.admin}/v1/blocks/vol1/blk1`)).body.json() as { location: { gateway: string } }
  const blk = await ctl(['block', 'vol1/blk1'], env)
  t.equal(blk.code, 0)
  t.match(blk.stdout, new RegExp(`location\\s+${where.location.gateway} \\(`), 'where the block is')
  t.match(blk.stdout, /ranking\s+1\. gw/, 'and the ranking that put it there')
  t.equal((await ctl(['block', 'vol1'], env)).code, 2, 'block needs VOLUME/BLOCK')

  // Actions: refused without the token (exit 4), nothing happens.
  const to = where.location.gateway === 'gw3' ? 'gw2' : 'gw3'
  const denied = await ctl(['move', 'vol1/blk1', to], env)
  t.equal(denied.code, 4)
  t.match(denied.stderr, /FERRY_UNAUTHORIZED/)
  t.equal((await ctl(['--token', 'wrong-token-wrong-token', 'pause'], env)).code, 4, 'a wrong token too')

  // Pause, move (queued), resume, watch it complete.
  const pause = await ctl(['pause'], withToken)
  t.equal(pause.code, 0, pause.stderr)
  t.match(pause.stdout, /data movement paused/)
  t.match((await ctl(['status'], env)).stdout, /movement\s+PAUSED/)
  const move = await ctl(['move', 'vol1/blk1', to], withToken)
  t.equal(move.code, 0, move.stderr)
  t.match(move.stdout, new RegExp(`1 migration\\(s\\) started[\\s\\S]*vol1/blk1\\s+${where.location.gateway}→${to}`))
  const active = JSON.parse((await ctl(['migrations', '--active', '--json'], env)).stdout) as { migrations: Array<{ block: string, phase: string }> }
  t.same(active.migrations.map(m => [m.block, m.phase]), [['blk1', 'queued']], 'queued while paused')
  t.equal((await ctl(['resume'], withToken)).code, 0)
  const watch = await ctl(['migrations', '--watch', '--interval-ms', '300'], env)
  t.equal(watch.code, 0)
  t.match(watch.stdout, /0 active/)
  t.match(watch.stdout, new RegExp(`vol1/blk1\\s+${where.location.gateway}→${to}\\s+operator\\s+\\w+\\s+\\[#{20}\\] 100%.*\\bok\\s*$`, 'm'), 'progress bar full, result ok')

  // Refusals carry the API's code and exit 1.
  const unknown = await ctl(['move', 'vol1/blk2', 'gw9'], withToken)
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /FERRY_UNKNOWN_GATEWAY/)

  const drain = await ctl(['drain', to], withToken)
  t.equal(drain.code, 0, drain.stderr)
  t.match(drain.stdout, new RegExp(`draining ${to}`))
  await waitFor(async () => /draining\s+gw/.test((await ctl(['status'], env)).stdout), 'status lists the drain')
  t.match((await ctl(['gateways'], env)).stdout, new RegExp(`^${to}\\s+\\S+\\s+healthy\\s+\\S+\\s+\\S+\\s+yes`, 'm'), 'gateways shows it draining')
  const undrain = await ctl(['undrain', to], withToken)
  t.equal(undrain.code, 0)
  t.match(undrain.stdout, /drain ended/)

  const reload = await ctl(['reload'], withToken)
  t.equal(reload.code, 1, 'the sandbox has no config file to reload')
  t.match(reload.stderr, /does not reload from a file/)

  t.equal((await ctl(['frobnicate'], env)).code, 2, 'unknown command: usage')
  t.equal((await ctl(['--nope', 'status'], env)).code, 2, 'unknown flag: usage')
  const down = await ctl(['--admin', `http://127.0.0.1:${await freePort()}`, 'status'])
  t.equal(down.code, 3, 'unreachable: exit 3')
  t.match(down.stderr, /cannot reach the admin listener/)
})
