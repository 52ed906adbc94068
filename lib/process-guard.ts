import { Counter, type Registry } from 'prom-client'
import type { Logger } from './log.js'

/** The counter of the registry last given; the listeners are added once per process. */
let count: ((kind: 'exception' | 'rejection') => void) | undefined

/**
 * Every error that reaches the process unhandled is a bug in ferry. Node's default is to end
 * the process, which for a proxy means dropping every connection of every client because of one
 * request: instead each one is logged at fatal level with its stack and counted in
 * `ferry_uncaught_errors_total{kind}`, so it is seen (the fault suite and the soak fail on any
 * fatal line) and fixed where it starts, while the process goes on serving. Installed once per
 * process, by the command that owns it (`ferry start`, `ferry sandbox`, `ferry gateway`, …).
 */
export function guardProcess (logger: Logger, registry: Registry): void {
  const counter = new Counter({
    name: 'ferry_uncaught_errors_total',
    help: 'Errors that reached the process unhandled (each one is a bug), by kind: exception or rejection.',
    labelNames: ['kind'],
    registers: [registry]
  })
  counter.inc({ kind: 'exception' }, 0)
  counter.inc({ kind: 'rejection' }, 0)
  const first = count === undefined
  count = kind => { counter.inc({ kind }) }
  if (!first) return
  process.on('uncaughtException', (err, origin) => {
    logger.fatal({ err, origin }, 'uncaught exception (a bug: please report it with this stack)')
    count?.('exception')
  })
  process.on('unhandledRejection', reason => {
    logger.fatal({ err: reason }, 'unhandled promise rejection (a bug: please report it with this stack)')
    count?.('rejection')
  })
}
