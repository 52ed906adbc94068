import { parseArgs } from 'node:util'
import { FerryError } from '../lib/errors.js'
import { createLogger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import { guardProcess } from '../lib/process-guard.js'
import { DEFAULT_MAX_BLOCK_BYTES, ReferenceGateway } from './gateway.js'
import { loadFaultTimeline, ScenarioDriver, type ScenarioEnd } from './scenario.js'

export const GATEWAY_USAGE = `usage: ferry gateway --dir DIR --port PORT [options]

Runs a reference gateway: a file-backed block store on GET/HEAD/PUT/DELETE /{volume}/{block}.

  --dir DIR              directory holding the blocks (created if missing)
  --port PORT            data port (0: any free port)
  --host HOST            address of both listeners (default 127.0.0.1)
  --admin-port PORT      fault-injection admin port (default 0: any free port, logged at start)
  --max-block-bytes N    largest block accepted; a number with an optional KiB/MiB/GiB suffix
                         (default 64MiB)
  --tls-cert FILE        serve the data port over HTTPS with this PEM certificate (chain)
  --tls-key FILE         the certificate's PEM private key (with --tls-cert)
  --tls-client-ca FILE   with --tls-cert: serve only clients with a certificate signed by this CA (mutual TLS)
  --id ID                name in logs and metrics (default gateway-<port>)
  --log-level LEVEL      trace|debug|info|warn|error|silent (default info; FERRY_LOG_LEVEL wins)
  --scenario FILE        drive the fault injection from a scenario file (JSON: {"steps":[{"atMs","faults"}]}
                         or a health scenario export); see gateway/README.md "Scenarios"
  --scenario-speed N     replay N times faster (default 1)
  --scenario-end E       after the last step: hold (default), loop, or crash (the gateway dies)
  -h, --help             this text

FERRY_GATEWAY_ADMIN_TOKEN, when set, is required as a bearer token to change faults.
Stops gracefully on SIGINT or SIGTERM; a second signal stops at once.
`

/** `ferry gateway …`: runs until SIGINT/SIGTERM, then stops gracefully. */
export async function gatewayCommand (argv: string[]): Promise<void> {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        dir: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        'admin-port': { type: 'string' },
        'max-block-bytes': { type: 'string' },
        id: { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'tls-client-ca': { type: 'string' },
        'log-level': { type: 'string' },
        scenario: { type: 'string' },
        'scenario-speed': { type: 'string' },
        'scenario-end': { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      }
    }))
  } catch (err) {
    throw usageError((err as Error).message)
  }
  if (values.help === true) {
    process.stdout.write(GATEWAY_USAGE)
    return
  }
  if (values.dir === undefined || values.dir === '') throw usageError('--dir is required')
  if (values.port === undefined) throw usageError('--port is required')
  const level = values['log-level'] ?? 'info'
  if (!LEVELS.has(level)) throw usageError(`--log-level must be one of ${[...LEVELS].join(', ')}`)

  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw usageError('--tls-cert and --tls-key go together')
  if (values['tls-client-ca'] !== undefined && values['tls-cert'] === undefined) throw usageError('--tls-client-ca needs --tls-cert and --tls-key')
  const tls = values['tls-cert'] === undefined || values['tls-key'] === undefined
    ? undefined
    : { cert: values['tls-cert'], key: values['tls-key'], ...(values['tls-client-ca'] === undefined ? {} : { clientCa: values['tls-client-ca'] }) }

  const logger = createLogger(level as 'info', 'ferry-gateway')
  const registry = createRegistry(true)
  guardProcess(logger, registry)
  const gateway = new ReferenceGateway({
    dir: values.dir,
    port: parsePort('--port', values.port),
    host: values.host,
    adminPort: values['admin-port'] === undefined ? 0 : parsePort('--admin-port', values['admin-port']),
    adminToken: process.env.FERRY_GATEWAY_ADMIN_TOKEN || undefined,
    maxBlockBytes: values['max-block-bytes'] === undefined ? DEFAULT_MAX_BLOCK_BYTES : parseBytes('--max-block-bytes', values['max-block-bytes']),
    id: values.id,
    ...(tls === undefined ? {} : { tls }),
    logger,
    registry
  })
  // Validated before the gateway starts: a bad file is a usage error, not a half-started demo.
  const timeline = values.scenario === undefined ? undefined : loadFaultTimeline(values.scenario)
  const speed = values['scenario-speed'] === undefined ? 1 : Number(values['scenario-speed'])
  if (!(speed > 0 && Number.isFinite(speed))) throw usageError('--scenario-speed must be a positive number')
  const end = values['scenario-end'] ?? 'hold'
  if (!['hold', 'loop', 'crash'].includes(end)) throw usageError('--scenario-end must be hold, loop or crash')
  await gateway.start()
  const driver = timeline === undefined ? undefined : new ScenarioDriver({ target: gateway, timeline, speed, end: end as ScenarioEnd, logger: createLogger(level as 'info', 'ferry-gateway') })
  driver?.on('error', err => { process.stderr.write(`ferry gateway: scenario stopped: ${err.message}\n`) })
  await driver?.start()
  await new Promise<void>((resolve, reject) => {
    // A crash ends the command: the gateway is dead, as its process would be.
    driver?.on('crash', () => { resolve() })
    const onSignal = (): void => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      // A second signal means "now": do not wait out the drain.
      const force = (): void => { void gateway.kill() }
      process.once('SIGINT', force)
      process.once('SIGTERM', force)
      void (driver?.stop() ?? Promise.resolve()).then(() => gateway.stop()).then(resolve, reject).finally(() => {
        process.off('SIGINT', force)
        process.off('SIGTERM', force)
      })
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])

function usageError (message: string): FerryError {
  return new FerryError('INVALID_ARGUMENT', `ferry gateway: ${message}\n\n${GATEWAY_USAGE}`, 400)
}

function parsePort (flag: string, s: string): number {
  const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN
  if (!(n >= 0 && n <= 65535)) throw usageError(`${flag} must be a port number 0-65535, got ${JSON.stringify(s)}`)
  return n
}

const UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }

function parseBytes (flag: string, s: string): number {
  const m = /^(\d+)\s*(B|KiB|MiB|GiB)?$/.exec(s)
  const n = m === null ? NaN : Number(m[1]) * (UNITS[m[2] ?? ''] ?? NaN)
  if (!Number.isSafeInteger(n)) throw usageError(`${flag} must be a byte count like 1048576 or 64MiB, got ${JSON.stringify(s)}`)
  return n
}
