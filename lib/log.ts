import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

/**
 * One logger factory for every role. Structured JSON on stdout (what log shippers expect);
 * FERRY_LOG_LEVEL overrides the configured level so tests can stay quiet without a config.
 */
export function createLogger (level: LevelWithSilent = 'info', name = 'ferry'): Logger {
  const envLevel = process.env.FERRY_LOG_LEVEL as LevelWithSilent | undefined
  return pino({ name, level: envLevel ?? level, base: { pid: process.pid } })
}

/** A logger that discards everything: for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' })
