import fs from 'node:fs'
import path from 'node:path'
import { EventEmitter } from 'node:events'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../lib/log.js'
import { silentLogger } from '../lib/log.js'
import { gatewayTlsFingerprint } from '../upstream/connect.js'
import { loadConfigFile } from './load.js'
import type { FerryConfig } from './schema.js'

/**
 * What a reload compares: the config, and the contents of the gateways' TLS files it names — a
 * certificate renewed under the same path is a change to apply (the pools are rebuilt), though
 * the text of the config is the same.
 */
function snapshot (cfg: FerryConfig): string {
  return JSON.stringify(cfg) + '\n' + cfg.gateways.map(g => gatewayTlsFingerprint(g) ?? '').join(',')
}

export interface ConfigWatcherOptions {
  file: string
  logger?: Logger
  registry?: Registry
  /** Reload on SIGHUP as well as on file change (the CLI turns it on; tests call reload()). */
  sighup?: boolean
  /** Editors save in bursts (truncate, write, rename): wait this long for the burst to end. */
  debounceMs?: number
}

export interface ConfigWatcherEvents {
  reload: [next: FerryConfig, prev: FerryConfig]
  invalid: [err: Error]
}

/**
 * Holds the current config and replaces it when the file changes or on SIGHUP. A new config is
 * only published once it has parsed and validated in full; a bad one is logged, counted and
 * ignored, so a typo in production never takes the old, working config away.
 */
export class ConfigWatcher extends EventEmitter<ConfigWatcherEvents> {
  current: FerryConfig
  private currentSnapshot: string
  private readonly file: string
  private readonly logger: Logger
  private readonly reloads: Counter<'result'>
  private readonly debounceMs: number
  private watcher: fs.FSWatcher | undefined
  private timer: NodeJS.Timeout | undefined
  private readonly onSighup = (): void => { this.reload('sighup') }
  private readonly sighup: boolean

  constructor (opts: ConfigWatcherOptions) {
    super()
    this.file = path.resolve(opts.file)
    this.logger = opts.logger ?? silentLogger
    this.debounceMs = opts.debounceMs ?? 100
    this.sighup = opts.sighup ?? false
    this.reloads = new Counter({
      name: 'ferry_config_reloads_total',
      help: 'Config reloads by result (success, failure)',
      labelNames: ['result'],
      registers: opts.registry ? [opts.registry] : []
    })
    this.current = loadConfigFile(this.file)
    this.currentSnapshot = snapshot(this.current)
  }

  start (): void {
    // Watch the directory, not the file: editors and config-management tools replace files by
    // rename, after which a watch on the old inode would never fire again.
    this.watcher = fs.watch(path.dirname(this.file), { persistent: false }, (_event, name) => {
      if (name !== null && name !== path.basename(this.file)) return
      clearTimeout(this.timer)
      this.timer = setTimeout(() => { this.reload('file') }, this.debounceMs)
    })
    this.watcher.on('error', err => { this.logger.warn({ err }, 'config watch failed; SIGHUP still reloads') })
    if (this.sighup) process.on('SIGHUP', this.onSighup)
  }

  /** Re-reads the file; returns true when a new config was published. */
  reload (trigger: string): boolean {
    let next: FerryConfig
    try {
      next = loadConfigFile(this.file)
    } catch (err) {
      this.reloads.inc({ result: 'failure' })
      this.logger.error({ trigger, err: (err as Error).message }, 'config reload refused; the previous config stays in force')
      this.emit('invalid', err as Error)
      return false
    }
    const nextSnapshot = snapshot(next)
    if (nextSnapshot === this.currentSnapshot) return false
    const prev = this.current
    this.current = next
    this.currentSnapshot = nextSnapshot
    this.reloads.inc({ result: 'success' })
    this.logger.info({ trigger }, 'config reloaded')
    this.emit('reload', next, prev)
    return true
  }

  stop (): void {
    clearTimeout(this.timer)
    this.watcher?.close()
    this.watcher = undefined
    if (this.sighup) process.off('SIGHUP', this.onSighup)
  }
}
