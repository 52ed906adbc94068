import type { Registry } from 'prom-client'
import type { FerryConfig } from '../config/schema.js'
import type { ConfigWatcher } from '../config/watch.js'
import type { Logger } from '../lib/log.js'
import { AdminServer } from '../admin/server.js'
import { registerConsole } from '../console/routes.js'
import { FerryError, isFerryError } from '../lib/errors.js'
import { registerProxyAdmin } from '../proxy/admin-routes.js'
import { ProxyServer } from '../proxy/server.js'
import { createStore } from '../state/factory.js'
import { LocationCache } from '../state/cache.js'
import { PROCESS_REPORTER } from '../state/channels.js'
import { GatewayHealthView } from '../state/gateway-health.js'
import type { AuthoritativeServer } from '../dns/server.js'
import { FleetDnsView } from './dns-view.js'
import { ProfileFeed } from './profile-feed.js'
import { registerProfileRoutes } from './profile-routes.js'
import { PassiveFeed } from './passive-feed.js'
import type { TelemetryIngest } from '../planner/telemetry.js'
import type { Planner } from '../planner/planner.js'
import type { StateStore } from '../state/types.js'
import { GenerationWatch } from '../recovery/generation-watch.js'
import { LocationRebuilder } from '../recovery/rebuilder.js'
import os from 'node:os'

export type Role = 'proxy' | 'dns' | 'planner'
export const ALL_ROLES: readonly Role[] = ['proxy', 'dns', 'planner']

export interface FerryNodeOptions {
  config: FerryConfig
  roles: ReadonlySet<Role>
  logger: Logger
  registry: Registry
  /** When given, reloads are applied as the watcher publishes them. */
  watcher?: ConfigWatcher
  /** A store to use instead of the one `state:` describes (tests share one memory store). */
  store?: StateStore
  /**
   * A worker's private admin listener (bin/workers.ts) instead of `admin.listen`: plain HTTP on
   * loopback, whatever `admin.tls` says — only the primary on the same host talks to it (forwarded
   * data-plane routes), and a TLS listener there would refuse the primary's plain requests.
   */
  privateAdmin?: { port: number }
}

/**
 * One ferry process: the admin listener plus whichever roles it runs, wired to one config.
 * The roles never see each other; this is the only place that knows them all.
 */
export class FerryNode {
  readonly admin: AdminServer
  readonly proxy: ProxyServer | undefined
  readonly store: StateStore
  dns: AuthoritativeServer | undefined
  planner: Planner | undefined
  readonly health: GatewayHealthView
  readonly profile: ProfileFeed
  telemetry: TelemetryIngest | undefined
  private passive: PassiveFeed | undefined
  private dnsView: FleetDnsView | undefined
  private dnsLocations: LocationCache | undefined
  readonly generation: GenerationWatch
  readonly rebuilder: LocationRebuilder
  private config: FerryConfig
  private readonly logger: Logger

  constructor (private readonly opts: FerryNodeOptions) {
    this.config = opts.config
    this.logger = opts.logger
    const cfg = opts.config
    this.admin = new AdminServer({
      host: opts.privateAdmin === undefined ? cfg.admin.listen.host : '127.0.0.1',
      port: opts.privateAdmin?.port ?? cfg.admin.listen.port,
      registry: opts.registry,
      token: adminToken(cfg),
      tls: opts.privateAdmin === undefined ? cfg.admin.tls : null,
      logger: opts.logger.child({ role: 'admin' })
    })
    registerConsole(this.admin)
    this.store = opts.store ?? createStore(cfg.state, { logger: opts.logger.child({ role: 'state' }), registry: opts.registry })
    this.profile = new ProfileFeed(this.store, {
      publish: opts.roles.has('proxy'),
      merge: opts.roles.has('planner'),
      intervalMs: cfg.recorder.profileIntervalMs,
      halfLifeMs: cfg.recorder.halfLifeS * 1000,
      logger: opts.logger
    })
    if (this.profile.merged !== undefined) registerProfileRoutes(this.admin, this.profile.merged, opts.registry)
    // Every process watches the store's generation and can rebuild lost locations (one at a
    // time, under a lease): a fleet of proxies without a running planner still recovers.
    // A memory store lives and dies with this process: no cache can outlive a loss of it.
    const shared = opts.config.state.backend !== 'memory'
    this.generation = new GenerationWatch(this.store, {
      logger: opts.logger,
      registry: opts.registry,
      cutOffServeMs: shared ? cfg.state.cutOffServeMs : Infinity,
      reloadLocations: async () => { await this.reloadLocations() }
    })
    this.rebuilder = new LocationRebuilder({
      store: this.store,
      watch: this.generation,
      gateways: () => this.config.gateways,
      holder: `${os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`,
      // A second for the clocks of the processes that share the store.
      settleMs: shared ? cfg.state.cutOffServeMs + 1000 : 0,
      logger: opts.logger,
      registry: opts.registry
    })
    this.admin.addReadinessCheck('locations', () => {
      if (this.generation.recoveringFromLoss) return { degraded: 'the shared store lost its block locations; rebuilding them from the gateways (reads of blocks not yet found answer 503 FERRY_LOCATIONS_REBUILDING)' }
      const unlisted = this.rebuilder.last?.unlisted ?? []
      if (unlisted.length > 0 && this.rebuilder.last?.generation === this.generation.current?.id) {
        return { degraded: `block locations rebuilt without ${unlisted.map(u => u.gateway).join(', ')} (could not be listed): their blocks have no location until written again` }
      }
      return undefined
    })
    this.admin.route('GET', '/v1/state', () => ({
      backend: this.store.backend,
      status: this.store.status(),
      generation: this.generation.current,
      recoveringFromLoss: this.generation.recoveringFromLoss,
      lastRebuild: this.rebuilder.last
    }))
    if (opts.roles.has('proxy')) {
      this.proxy = new ProxyServer({ config: cfg, logger: opts.logger.child({ role: 'proxy' }), registry: opts.registry, store: this.store, observer: this.profile.observe, locations: this.generation })
      registerProxyAdmin(this.admin, this.proxy)
    }
    // One check for the store whatever the roles: an outage degrades every role (the proxy serves
    // its cached routes, the planner stops deciding) but never makes the process unready or ends it.
    this.admin.addReadinessCheck('state', () => {
      const st = this.store.status()
      if (st.ok) return undefined
      const doing = [
        ...(this.proxy?.sync !== undefined ? [`proxy serving from ${this.proxy.sync.cache.size} cached routes`] : []),
        ...(opts.roles.has('planner') ? ['planner not deciding until it returns'] : [])
      ]
      return { degraded: `shared state unavailable (${st.reason ?? 'unknown'})${doing.length > 0 ? `; ${doing.join('; ')}` : ''}` }
    })
    // The fleet's reports through the store, and this process's proxy at once (no round trip,
    // and still while the store is down): the same reporter as its published reports.
    this.health = new GatewayHealthView({ store: this.store })
    this.proxy?.gateways.on('change', (id, healthy) => { this.health.apply({ gateway: id, healthy, at: Date.now(), from: PROCESS_REPORTER }) })
    opts.watcher?.on('reload', next => { this.reconfigure(next) })
    const watcher = opts.watcher
    if (watcher !== undefined) {
      // What SIGHUP does, for `ferry ctl reload`: an invalid file is refused and the old config keeps serving.
      this.admin.route('POST', '/v1/config/reload', () => {
        let refused: Error | undefined
        const onInvalid = (err: Error): void => { refused = err }
        watcher.once('invalid', onInvalid)
        const changed = watcher.reload('admin')
        watcher.off('invalid', onInvalid)
        if (refused !== undefined) throw isFerryError(refused) ? refused : new FerryError('FERRY_CONFIG_INVALID', refused.message, 400)
        return { changed }
      })
    }
  }

  async start (): Promise<void> {
    this.admin.beginStart()
    await this.admin.listen()
    await this.generation.start()
    this.rebuilder.start()
    await this.proxy?.listen()
    if (this.opts.roles.has('dns') && this.config.dns.enabled) await this.startDns()
    if (this.opts.roles.has('planner')) {
      // Agents push here; the health model reads the history from the store. Loaded only in a
      // process with the planner role, so a proxy-only process carries none of it.
      const { registerTelemetryRoutes } = await import('../planner/telemetry.js')
      this.telemetry = registerTelemetryRoutes(this.admin, this.store, {
        logger: this.logger.child({ role: 'telemetry' }),
        registry: this.opts.registry,
        gateways: () => this.config.gateways.map(g => g.id)
      })
    }
    this.passive = new PassiveFeed(this.store, this.proxy?.gateways, this.telemetry?.recordPassive, 5000, this.logger)
    if (this.opts.roles.has('planner')) {
      const { Planner } = await import('../planner/planner.js')
      const { registerPlannerAdmin } = await import('../planner/admin-routes.js')
      this.planner = new Planner({ config: this.config, store: this.store, logger: this.logger.child({ role: 'planner' }), registry: this.opts.registry })
      registerPlannerAdmin(this.admin, this.planner)
      const { registerAffinityRoutes } = await import('./affinity-routes.js')
      registerAffinityRoutes(this.admin, this.store, this.planner, this.config.state.affinity.halfLifeMs)
    }
    // Every route is registered: from here a path no route serves is a 404. The planner's start
    // (its first leadership round, recovering migrations) is not waited for: until it leads, its
    // routes answer as a standby does.
    this.admin.finishStart()
    await this.planner?.start()
  }

  /** Loaded on demand: a process without the DNS role never loads dns2. */
  private async startDns (): Promise<void> {
    const { AuthoritativeServer } = await import('../dns/server.js')
    const cfg = this.config
    // With a proxy in this process, DNS reads its location cache; otherwise it keeps its own.
    // The SRV records name the proxy's bound port (the config may say 0, "pick one").
    const locations = this.proxy?.sync?.cache ?? (this.dnsLocations = new LocationCache(this.store, { logger: this.logger }))
    this.dnsView = new FleetDnsView(cfg, locations, this.health, this.proxy?.address.port ?? cfg.proxy.listen.port)
    const dns = new AuthoritativeServer({ config: cfg.dns, view: this.dnsView, registry: this.opts.registry, logger: this.logger.child({ role: 'dns' }) })
    this.dns = dns
    this.admin.addReadinessCheck('dns', () => {
      const down = dns.status().listeners.filter(l => l.error !== undefined || !l.bound)
      return down.length === 0 ? undefined : `DNS listeners not bound: ${down.map(l => `${l.transport} ${l.address}:${l.port}${l.error ? ` (${l.error})` : ''}`).join(', ')}`
    })
    await this.dnsLocations?.start()
    await dns.start()
  }

  /** After the store lost its data or finished rebuilding it: every cache of locations reloads in full. */
  private async reloadLocations (): Promise<void> {
    await Promise.all([this.proxy?.sync?.cache.reload(), this.dnsLocations?.reload(), this.planner?.locations.reload()])
  }


  reconfigure (cfg: FerryConfig): void {
    if (JSON.stringify(cfg.state) !== JSON.stringify(this.config.state)) this.logger.warn('state: changed; takes effect on restart')
    if (JSON.stringify(cfg.dns) !== JSON.stringify(this.config.dns)) this.logger.warn('dns: changed; takes effect on restart')
    this.proxy?.reconfigure(cfg)
    this.planner?.reconfigure(cfg)
    this.dnsView?.reconfigure(cfg, this.proxy?.address.port ?? cfg.proxy.listen.port)
    this.admin.setToken(adminToken(cfg))
    if (this.opts.privateAdmin === undefined) this.admin.setTls(cfg.admin.tls)
    if (cfg.log.level !== this.config.log.level) this.logger.level = cfg.log.level
    this.config = cfg
  }

  /** Stops taking new work, drains what is in flight, then closes the admin listener last. */
  async stop (): Promise<void> {
    this.opts.watcher?.stop()
    this.rebuilder.close()
    this.generation.close()
    await this.planner?.stop()
    await this.proxy?.close()
    await this.dns?.stop()
    this.dnsView?.close()
    this.dnsLocations?.close()
    this.health.close()
    this.profile.close()
    this.passive?.close()
    await this.telemetry?.close()
    await this.admin.close()
    if (this.opts.store === undefined) await this.store.close()
  }
}

function adminToken (cfg: FerryConfig): string | null {
  return process.env.FERRY_ADMIN_TOKEN ?? cfg.admin.token
}
