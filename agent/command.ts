import fs from 'node:fs'
import { parseArgs } from 'node:util'
import { FerryError } from '../lib/errors.js'
import { isValidId } from '../lib/ids.js'
import { createLogger, type Logger } from '../lib/log.js'
import { createRegistry } from '../lib/metrics.js'
import { guardProcess } from '../lib/process-guard.js'
import { TelemetryAgent, type TelemetryAgentOptions } from './agent.js'
import { parsePeer, type Peer } from './probes.js'

export const AGENT_USAGE = `usage: ferry agent --gateway ID --planner URL [--token T] [options]

Samples this host (CPU, memory pressure, disk I/O, network latency to peers, the gateway's own
health probe) every interval and pushes the samples to the planner. See agent/README.md.

  --gateway ID          the gateway this host runs (its id in the planner's config)
  --planner URL         the planner's admin URL, e.g. http://planner:9090
  --token T             admin bearer token; prefer FERRY_AGENT_TOKEN (keeps it out of ps)
  --interval-ms N       sampling interval (default 1000)
  --probe URL           the gateway's health URL, e.g. http://127.0.0.1:9001/healthz
  --probe-ca FILE       an https probe: PEM CA the gateway's certificate must chain to (default: the system's)
  --probe-cert FILE     an https probe: PEM client certificate to present (with --probe-key)
  --probe-key FILE      its PEM private key
  --peers H:P,...       hosts to measure TCP connect latency to (the other gateways)
  --timeout-ms N        probe and connect timeout (default min(1000, interval))
  --disk DEV            block device to report, as named in /proc/diskstats (default: busiest)
  --buffer N            samples kept while the planner is away, oldest dropped (default 3600)
  --batch N             samples per push (default 500)
  --metrics-port P      serve /metrics and /healthz on this port
  --metrics-host H      address of the metrics listener (default 127.0.0.1)
  --log-level LEVEL     trace|debug|info|warn|error|silent (default info; FERRY_LOG_LEVEL wins)
  -h, --help            this text

Stops on SIGINT or SIGTERM after trying for up to 2 s to deliver buffered samples.
`

export interface AgentCommandOptions {
  /** Stops the agent when aborted (tests, embedding); signals work either way. */
  signal?: AbortSignal
  logger?: Logger
  /** Where the token comes from when --token is absent. Default process.env. */
  env?: NodeJS.ProcessEnv
  /** Called once the agent runs (tests read its metrics address). */
  onStarted?: (agent: TelemetryAgent) => void
}

/** Parses `ferry agent …` into agent options; throws FERRY_AGENT_USAGE naming the bad flag. */
export function parseAgentArgs (argv: string[], env: NodeJS.ProcessEnv = process.env): (TelemetryAgentOptions & { logLevel: string }) | 'help' {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        gateway: { type: 'string' },
        planner: { type: 'string' },
        token: { type: 'string' },
        'interval-ms': { type: 'string' },
        probe: { type: 'string' },
        'probe-ca': { type: 'string' },
        'probe-cert': { type: 'string' },
        'probe-key': { type: 'string' },
        peers: { type: 'string' },
        'timeout-ms': { type: 'string' },
        disk: { type: 'string' },
        buffer: { type: 'string' },
        batch: { type: 'string' },
        'metrics-port': { type: 'string' },
        'metrics-host': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      }
    }))
  } catch (err) {
    throw usage((err as Error).message)
  }
  if (values.help === true) return 'help'
  if (values.gateway === undefined || !isValidId(values.gateway)) throw usage('--gateway ID is required (letters, digits, ".", "_", "-")')
  if (values.planner === undefined) throw usage('--planner URL is required')
  const planner = url('--planner', values.planner)
  const token = values.token ?? env.FERRY_AGENT_TOKEN
  if (token === undefined || token === '') throw usage('a token is required: set FERRY_AGENT_TOKEN (or --token)')
  const level = values['log-level'] ?? 'info'
  if (!LEVELS.has(level)) throw usage(`--log-level must be one of ${[...LEVELS].join(', ')}`)
  const opts: TelemetryAgentOptions & { logLevel: string } = { gateway: values.gateway, planner, token, logLevel: level }
  if (values['interval-ms'] !== undefined) opts.intervalMs = int('--interval-ms', values['interval-ms'], 10, 3_600_000)
  if (values['timeout-ms'] !== undefined) opts.timeoutMs = int('--timeout-ms', values['timeout-ms'], 1, 60_000)
  if (values.probe !== undefined) opts.probe = url('--probe', values.probe)
  const tlsFlags = (['probe-ca', 'probe-cert', 'probe-key'] as const).filter(f => values[f] !== undefined)
  if (tlsFlags.length > 0) {
    if (values.probe === undefined || new URL(values.probe).protocol !== 'https:') throw usage(`--${tlsFlags[0] as string} is for an https --probe URL`)
    if ((values['probe-cert'] === undefined) !== (values['probe-key'] === undefined)) throw usage('--probe-cert and --probe-key go together')
    const read = (flag: string, file: string | undefined): Buffer | undefined => {
      if (file === undefined) return undefined
      try { return fs.readFileSync(file) } catch (err) { throw usage(`--${flag}: cannot read ${file}: ${(err as Error).message}`) }
    }
    const ca = read('probe-ca', values['probe-ca'])
    const cert = read('probe-cert', values['probe-cert'])
    const key = read('probe-key', values['probe-key'])
    opts.probeTls = { ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }) }
  }
  if (values.peers !== undefined) opts.peers = peers(values.peers)
  if (values.disk !== undefined) {
    if (!/^[\w.!-]{1,64}$/.test(values.disk)) throw usage(`--disk must be a device name as in /proc/diskstats (got ${JSON.stringify(values.disk)})`)
    opts.disk = values.disk
  }
  if (values.buffer !== undefined) opts.bufferMax = int('--buffer', values.buffer, 1, 10_000_000)
  if (values.batch !== undefined) opts.batchMax = int('--batch', values.batch, 1, 10_000)
  if (values['metrics-port'] !== undefined) opts.metricsPort = int('--metrics-port', values['metrics-port'], 0, 65535)
  if (values['metrics-host'] !== undefined) opts.metricsHost = values['metrics-host']
  return opts
}

/** `ferry agent …`: runs until SIGINT/SIGTERM (or `signal`), then stops gracefully. */
export async function agentCommand (argv: string[], o: AgentCommandOptions = {}): Promise<void> {
  const parsed = parseAgentArgs(argv, o.env ?? process.env)
  if (parsed === 'help') {
    process.stdout.write(AGENT_USAGE)
    return
  }
  const { logLevel, ...opts } = parsed
  const logger = o.logger ?? createLogger(logLevel as 'info', 'ferry-agent')
  const registry = createRegistry(true)
  // Only the process's own command guards it: a caller that passes its logger (a test) owns its process.
  if (o.logger === undefined) guardProcess(logger, registry)
  const agent = new TelemetryAgent({ ...opts, logger, registry })
  await agent.start()
  o.onStarted?.(agent)
  await new Promise<void>((resolve, reject) => {
    const onStop = (): void => {
      process.off('SIGINT', onStop)
      process.off('SIGTERM', onStop)
      o.signal?.removeEventListener('abort', onStop)
      agent.stop().then(resolve, reject)
    }
    if (o.signal?.aborted === true) return onStop()
    process.on('SIGINT', onStop)
    process.on('SIGTERM', onStop)
    o.signal?.addEventListener('abort', onStop)
  })
}

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])

function usage (message: string): FerryError {
  return new FerryError('FERRY_AGENT_USAGE', `ferry agent: ${message}\n\n${AGENT_USAGE}`, 400)
}

function int (flag: string, s: string, min: number, max: number): number {
  const n = /^\d{1,10}$/.test(s) ? Number(s) : NaN
  if (!(n >= min && n <= max)) throw usage(`${flag} must be an integer ${min}-${max} (got ${JSON.stringify(s)})`)
  return n
}

function url (flag: string, s: string): URL {
  let u: URL
  try { u = new URL(s) } catch { throw usage(`${flag} is not a URL: ${JSON.stringify(s)}`) }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw usage(`${flag} must be http:// or https:// (got ${JSON.stringify(s)})`)
  return u
}

function peers (s: string): Peer[] {
  const out: Peer[] = []
  for (const part of s.split(',').map(p => p.trim()).filter(Boolean)) {
    const p = parsePeer(part)
    if (p === undefined) throw usage(`--peers: ${JSON.stringify(part)} is not host:port`)
    out.push(p)
  }
  return out
}
