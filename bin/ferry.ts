#!/usr/bin/env node
/**
 * The `ferry` command. Each subcommand parses its own flags; roles are started by FerryNode.
 */
import { parseArgs } from 'node:util'
import { loadConfigFile } from '../config/load.js'
import { ConfigWatcher } from '../config/watch.js'
import { isFerryError } from '../lib/errors.js'
import { createLogger, type Logger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import { guardProcess } from '../lib/process-guard.js'
import type { Role } from './node.js'
import { isUsageError, usage } from './args.js'
import { tuneDataPlane } from './runtime.js'
import type { SandboxScenario } from './sandbox.js'

const USAGE = `usage: ferry <command> [options]

commands:
  start --config FILE [--roles proxy,dns,planner]   run ferry on a config file (reloads on change and SIGHUP);
                                                    proxy.workers / dns.workers processes share the data plane
  sandbox [--config FILE] [--proxy-port P] [--admin-port P] [--dns-port P] [--gateway-ports P,P,P] [--print-config]
          [--scenario memory-leak|disk-latency|cpu-saturation|crash [--scenario-speed N]]   (gw1 degrades; simulated telemetry)
                                                    everything on loopback with an embedded default config
  gateway --dir D --port P [--host H] [--admin-port P] [--max-block-bytes N]
                                                    run a reference gateway
  agent --gateway ID --planner URL [--token T] [--interval-ms N] [--probe URL] [--peers H:P,…] [--metrics-port P]
                                                    the telemetry agent beside a gateway (ferry agent --help)
  train --telemetry FILE.csv --out MODEL.json [--horizon S]
                                                    train the gateway health model (ferry train --help)
  evaluate --model MODEL.json --telemetry FILE.csv  print the health model's metrics
  train-placement …                                 train the placement model of the partitioning engine
  check --config FILE                               validate a config file and exit
  ctl [--admin URL] [--token T] [--json] <command>  operate a running ferry through its admin API (ferry ctl help)
`

type Command = (argv: string[]) => Promise<void>

const commands: Record<string, Command> = {
  start: startCommand,
  sandbox: sandboxCommand,
  check: checkCommand,
  ctl: async argv => { const m = await import('./ctl.js'); exitWith(await m.ctlCommand(argv)) },
  gateway: async argv => { const m = await import('../gateway/command.js'); await m.gatewayCommand(argv) },
  agent: async argv => { const m = await import('../agent/command.js'); await m.agentCommand(argv) },
  train: async argv => { const m = await import('../planner/health/commands.js'); exitWith(await m.trainCommand(argv)) },
  evaluate: async argv => { const m = await import('../planner/health/commands.js'); exitWith(await m.evaluateCommand(argv)) },
  'train-placement': async argv => {
    const [m, { createStore }] = await Promise.all([import('../planner/partition/command.js'), import('../state/factory.js')])
    exitWith(await m.trainPlacementCommand(argv, undefined, file => createStore(loadConfigFile(file).state)))
  }
}

/** Commands that return an exit code (train, evaluate) end the process with it. */
function exitWith (code: number): void {
  if (code !== 0) process.exit(code)
}

async function startCommand (argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, roles: { type: 'string', default: 'proxy' } } })
  if (values.config === undefined) throw usage('start needs --config FILE')
  const registry = createRegistry()
  const boot = loadConfigFile(values.config)
  const logger = createLogger(boot.log.level, 'ferry', boot.log.format)
  guardProcess(logger, registry)
  const watcher = new ConfigWatcher({ file: values.config, logger, registry, sighup: true })
  // Loaded here, not at the top: `ferry ctl` and `ferry check` start without loading every role.
  const [{ FerryNode, ALL_ROLES }, { planWorkers, WorkerPool, workerRoles }] = await Promise.all([import('./node.js'), import('./workers.js')])
  const asWorker = workerRoles()
  if (asWorker !== undefined) {
    tuneDataPlane(asWorker)
    return await runWorker(asWorker, watcher, logger, registry)
  }
  const roles = parseRoles(values.roles, ALL_ROLES)
  const plan = planWorkers(watcher.current, roles)
  if (plan.count <= 1) {
    tuneDataPlane(roles)
    const node = new FerryNode({ config: watcher.current, roles, logger, registry, watcher })
    await node.start()
    watcher.start()
    runUntilSignal(logger, () => node.stop())
    return
  }
  // The primary: the roles that must not run N times (the planner) and the admin listener; the
  // data plane runs in the workers (bin/workers.ts).
  const pool = new WorkerPool({ plan, logger, registry, stopGraceMs: watcher.current.proxy.shutdownGraceMs })
  const node = new FerryNode({ config: watcher.current, roles: new Set([...roles].filter(r => r === 'planner')), logger, registry, watcher })
  node.admin.setFallback(async (req, res) => await pool.forward(req, res))
  node.admin.setMetricsSource(async () => await pool.metrics(registry))
  node.admin.addReadinessCheck('workers', () => pool.readiness())
  watcher.on('reload', next => {
    const now = planWorkers(next, roles)
    if (now.proxy !== plan.proxy || now.dns !== plan.dns) logger.warn({ running: plan, configured: now }, 'workers: changed; takes effect on restart')
  })
  await pool.start()
  await node.start()
  watcher.start()
  process.on('SIGHUP', () => { pool.reload() })
  runUntilSignal(logger, async () => { await pool.stop(); await node.stop() })
}

/**
 * A data-plane worker: the proxy and/or DNS on the sockets the primary shares, its admin
 * listener private, plain HTTP on 127.0.0.1 (the primary's forwards to it; see FerryNodeOptions.privateAdmin). It reloads its config itself
 * (file watch, and the SIGHUP the primary forwards).
 */
async function runWorker (roles: Set<Role>, watcher: ConfigWatcher, logger: Logger, registry: ReturnType<typeof createRegistry>): Promise<void> {
  const [{ FerryNode }, { serveAsWorker }] = await Promise.all([import('./node.js'), import('./workers.js')])
  const log = logger.child({ worker: Number(process.env.FERRY_WORKER_INDEX ?? 0), pid: process.pid })
  const node = new FerryNode({ config: watcher.current, roles, logger: log, registry, watcher, privateAdmin: { port: 0 } })
  await node.start()
  watcher.start()
  let stopping = false
  const stop = (why: string, code: number): void => {
    // One drain whatever arrives: a Ctrl-C reaches the whole process group and the primary then
    // sends SIGTERM as well; a second signal must not cut the first drain short (the primary
    // SIGKILLs a worker that overruns its grace period).
    if (stopping) return
    stopping = true
    stopReporting()
    log.info({ why }, 'worker stopping')
    node.stop().then(() => process.exit(code), err => { log.error({ err }, 'worker shutdown failed'); process.exit(1) })
  }
  const stopReporting = serveAsWorker({
    adminUrl: `http://127.0.0.1:${node.admin.address.port}`,
    registry,
    readiness: async () => await node.admin.readiness(),
    onOrphaned: () => { stop('the primary is gone', 1) }
  })
  process.on('SIGINT', () => { stop('SIGINT', 0) })
  process.on('SIGTERM', () => { stop('SIGTERM', 0) })
}

async function sandboxCommand (argv: string[]): Promise<void> {
  const [{ ALL_ROLES }, { SANDBOX_SCENARIOS, Sandbox, sandboxYaml }] = await Promise.all([import('./node.js'), import('./sandbox.js')])
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      'proxy-port': { type: 'string' },
      'admin-port': { type: 'string' },
      'dns-port': { type: 'string' },
      'gateway-ports': { type: 'string' },
      roles: { type: 'string', default: ALL_ROLES.join(',') },
      'print-config': { type: 'boolean', default: false },
      scenario: { type: 'string' },
      'scenario-speed': { type: 'string', default: '10' }
    }
  })
  const scenario = values.scenario
  if (scenario !== undefined && !(SANDBOX_SCENARIOS as readonly string[]).includes(scenario)) throw usage(`--scenario must be one of ${SANDBOX_SCENARIOS.join(', ')}`)
  const speed = Number(values['scenario-speed'])
  if (!(speed > 0)) throw usage('--scenario-speed must be a positive number')
  const ports = {
    ...(values['proxy-port'] !== undefined ? { proxy: port(values['proxy-port']) } : {}),
    ...(values['admin-port'] !== undefined ? { admin: port(values['admin-port']) } : {}),
    ...(values['dns-port'] !== undefined ? { dns: port(values['dns-port']) } : {}),
    ...(values['gateway-ports'] !== undefined ? { gateways: values['gateway-ports'].split(',').map(port) } : {})
  }
  if (values['print-config']) {
    process.stdout.write(sandboxYaml({ proxy: 8080, admin: 9090, dns: 5353, gateways: [9001, 9002, 9003], ...ports }))
    return
  }
  const config = values.config !== undefined ? loadConfigFile(values.config) : undefined
  const logger = createLogger(config?.log.level ?? 'info', 'ferry', config?.log.format ?? 'auto')
  const registry = createRegistry()
  guardProcess(logger, registry)
  const sandbox = new Sandbox({ ports, ...(config ? { config } : {}), ...(scenario !== undefined ? { scenario: { kind: scenario as SandboxScenario, speed } } : {}), roles: parseRoles(values.roles, ALL_ROLES), logger, registry })
  await sandbox.start()
  process.stderr.write(sandbox.tryLines())
  runUntilSignal(logger, () => sandbox.stop())
}

async function checkCommand (argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' } } })
  if (values.config === undefined) throw usage('check needs --config FILE')
  loadConfigFile(values.config)
  process.stdout.write(`${values.config}: ok\n`)
}

/** First SIGINT/SIGTERM drains gracefully; a second one exits at once. */
function runUntilSignal (logger: Logger, stop: () => Promise<void>): void {
  let stopping = false
  const onSignal = (sig: string): void => {
    if (stopping) { logger.warn({ sig }, 'second signal: exiting now'); process.exit(1) }
    stopping = true
    logger.info({ sig }, 'shutting down')
    stop().then(() => { logger.info('stopped'); process.exit(0) }, err => { logger.error({ err }, 'shutdown failed'); process.exit(1) })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

function parseRoles (text: string, ALL_ROLES: readonly Role[]): Set<Role> {
  const roles = new Set<Role>()
  for (const r of text.split(',').map(s => s.trim()).filter(Boolean)) {
    if (!(ALL_ROLES as readonly string[]).includes(r)) throw usage(`unknown role "${r}" (roles: ${ALL_ROLES.join(', ')})`)
    roles.add(r as Role)
  }
  return roles
}

function port (text: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw usage(`not a port: ${text}`)
  return n
}

async function main (): Promise<void> {
  const [name, ...argv] = process.argv.slice(2)
  const command = name === undefined ? undefined : commands[name]
  if (command === undefined) {
    process.stderr.write(name === undefined || name === 'help' || name === '--help' ? USAGE : `ferry: unknown command "${name}"\n\n${USAGE}`)
    process.exit(name === undefined || name === 'help' || name === '--help' ? 0 : 2)
  }
  try {
    await command(argv)
  } catch (err) {
    if (isUsageError(err)) {
      process.stderr.write(`ferry ${name}: ${(err as Error).message}\n\n${USAGE}`)
      process.exit(2)
    }
    process.stderr.write(`ferry ${name}: ${isFerryError(err) ? `${err.message} [${err.code}]` : (err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  }
}

await main()
