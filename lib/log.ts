import { pino, type Logger, type LevelWithSilent } from 'pino'
import { PinoPretty } from 'pino-pretty'

export type { Logger }

/** `json`: one JSON object a line; `pretty`: human-readable lines; `auto`: pretty on a terminal, else JSON. */
export type LogFormat = 'json' | 'pretty' | 'auto'

/** What `auto` (and FERRY_LOG_FORMAT) resolve to for this process's stdout. */
export function resolveLogFormat (format: LogFormat = 'json'): 'json' | 'pretty' {
  const env = process.env.FERRY_LOG_FORMAT
  const f = env === 'json' || env === 'pretty' || env === 'auto' ? env : format
  return f === 'auto' ? (process.stdout.isTTY === true ? 'pretty' : 'json') : f
}

/**
 * One logger factory for every role. Structured JSON on stdout by default (what log shippers
 * expect); `pretty` formats the same records with pino-pretty, pino's own formatter (it knows
 * pino's fields, levels and error serialisation, so nothing is lost or reinvented), in-process and
 * synchronous so the last lines before an exit are never lost in a worker's buffer.
 * FERRY_LOG_LEVEL overrides the configured level so tests can stay quiet without a config;
 * FERRY_LOG_FORMAT overrides the format.
 */
export function createLogger (level: LevelWithSilent = 'info', name = 'ferry', format: LogFormat = 'json'): Logger {
  const envLevel = process.env.FERRY_LOG_LEVEL as LevelWithSilent | undefined
  const opts = { name, level: envLevel ?? level, base: { pid: process.pid } }
  if (resolveLogFormat(format) === 'json') return pino(opts)
  return pino(opts, PinoPretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }))
}

/** A logger that discards everything: for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' })
