import { parseArgs } from 'node:util'
import { FerryError } from '../lib/errors.js'
import { createLogger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import { DEFAULT_MAX_BLOCK_BYTES, ReferenceGateway } from './gateway.js'

export const GATEWAY_USAGE = `usage: ferry gateway --dir DIR --port PORT [options]

Runs a reference gateway: a file-backed block store on GET/HEAD/PUT/DELETE /{volume}/{block}.

  --dir DIR              directory holding the blocks (created if missing)
  --port PORT            data port (0: any free port)
  --host HOST            address of both listeners (default 127.0.0.1)
  --admin-port PORT      fault-injection admin port (default 0: any free port, logged at start)
  --max-block-bytes N    largest block accepted; a number with an optional KiB/MiB/GiB suffix
                         (default 64MiB)
  --id ID                name in logs and metrics (default gateway-<port>)
  --log-level LEVEL      trace|debug|info|warn|error|silent (default info; FERRY_LOG_LEVEL wins)
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
        'log-level': { type: 'string' },
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

  const gateway = new ReferenceGateway({
    dir: values.dir,
    port: parsePort('--port', values.port),
    host: values.host,
    adminPort: values['admin-port'] === undefined ? 0 : parsePort('--admin-port', values['admin-port']),
    adminToken: process.env.FERRY_GATEWAY_ADMIN_TOKEN || undefined,
    maxBlockBytes: values['max-block-bytes'] === undefined ? DEFAULT_MAX_BLOCK_BYTES : parseBytes('--max-block-bytes', values['max-block-bytes']),
    id: values.id,
    logger: createLogger(level as 'info', 'ferry-gateway'),
    registry: createRegistry(true)
  })
  await gateway.start()
  await new Promise<void>((resolve, reject) => {
    const onSignal = (): void => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      // A second signal means "now": do not wait out the drain.
      const force = (): void => { void gateway.kill() }
      process.once('SIGINT', force)
      process.once('SIGTERM', force)
      void gateway.stop().then(resolve, reject).finally(() => {
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
