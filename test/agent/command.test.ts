import t from 'tap'
import { agentCommand, parseAgentArgs } from '../../agent/command.js'
import type { TelemetryAgent } from '../../agent/agent.js'
import { silentLogger } from '../../lib/log.js'
import { waitFor } from '../helpers/net.js'
import { startPlanner, TOKEN } from './planner.js'

const base = ['--gateway', 'gw1', '--planner', 'http://127.0.0.1:9090']

t.test('flags: required ones, the token from the environment, bad values named', async t => {
  const env = { FERRY_AGENT_TOKEN: 'from-env' }
  const o = parseAgentArgs([...base, '--interval-ms', '250', '--peers', '10.0.0.2:9001, [::1]:9002', '--probe', 'http://127.0.0.1:9001/healthz', '--disk', 'nvme0n1', '--buffer', '100', '--metrics-port', '9400'], env)
  if (o === 'help') throw new Error('unexpected help')
  t.equal(o.token, 'from-env', 'token from FERRY_AGENT_TOKEN')
  t.equal(o.intervalMs, 250)
  t.same(o.peers, [{ host: '10.0.0.2', port: 9001 }, { host: '::1', port: 9002 }])
  t.equal(String(o.probe), 'http://127.0.0.1:9001/healthz')
  t.equal(o.disk, 'nvme0n1')
  t.equal(o.bufferMax, 100)
  t.equal(o.metricsPort, 9400)
  const flag = parseAgentArgs([...base, '--token', 'from-flag'], env)
  t.equal(flag !== 'help' && flag.token, 'from-flag', '--token wins when given')
  t.equal(parseAgentArgs(['--help'], {}), 'help')

  const bad: Array<[string[], RegExp]> = [
    [['--planner', 'http://x'], /--gateway ID is required/],
    [['--gateway', 'gw/1', '--planner', 'http://x'], /--gateway ID is required/],
    [['--gateway', 'gw1'], /--planner URL is required/],
    [['--gateway', 'gw1', '--planner', 'ftp://x'], /--planner must be http/],
    [['--gateway', 'gw1', '--planner', 'not a url'], /--planner is not a URL/],
    [[...base, '--interval-ms', '5'], /--interval-ms must be an integer 10-/],
    [[...base, '--interval-ms', '1e3'], /--interval-ms must be an integer/],
    [[...base, '--peers', 'a:1,nope'], /--peers: "nope" is not host:port/],
    [[...base, '--disk', '../../etc'], /--disk must be a device name/],
    [[...base, '--log-level', 'loud'], /--log-level must be one of/],
    [[...base, '--bogus'], /Unknown option '--bogus'/]
  ]
  for (const [argv, message] of bad) {
    t.throws(() => parseAgentArgs(argv, env), { code: 'FERRY_AGENT_USAGE', message }, argv.join(' '))
  }
  t.throws(() => parseAgentArgs(base, {}), { code: 'FERRY_AGENT_USAGE', message: /set FERRY_AGENT_TOKEN/ }, 'no token anywhere')
})

t.test('agentCommand runs the agent until aborted', async t => {
  const planner = await startPlanner()
  t.teardown(planner.stop)
  const ac = new AbortController()
  let agent: TelemetryAgent | undefined
  const done = agentCommand(['--gateway', 'gw2', '--planner', planner.url, '--interval-ms', '50', '--metrics-port', '0', '--log-level', 'silent'], {
    signal: ac.signal,
    env: { FERRY_AGENT_TOKEN: TOKEN },
    logger: silentLogger,
    onStarted: a => { agent = a }
  })
  t.teardown(() => { ac.abort(); return done })
  await waitFor(async () => (await planner.store.readTelemetry('gw2')).length >= 2, 'samples from the command')
  const port = agent?.metricsAddress?.port ?? 0
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  t.match(text, /^ferry_agent_samples_pushed_total [1-9]/m, 'its /metrics counts pushed samples')
  t.match(text, /^process_cpu_user_seconds_total /m, 'with the default process metrics')
  ac.abort()
  await done
  t.equal(agent?.status().running, false, 'stopped')
  await t.rejects(agent?.start() ?? Promise.resolve(), { code: 'FERRY_AGENT_STOPPED' }, 'a stopped agent does not restart half-working')
  await t.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'metrics listener closed')
})
