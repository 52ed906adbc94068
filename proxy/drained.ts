import type { Logger } from '../lib/log.js'
import { SingleFlight } from '../lib/single-flight.js'
import { drainsChannel } from '../state/channels.js'
import type { StateStore } from '../state/types.js'
import type { GatewaySet } from './gateway-set.js'

/** A backstop for a lost `drains` notice (pub/sub is at most once): the drains are few, the read is one command. */
const REREAD_MS = 10_000

/**
 * The proxy's view of which gateways the planner drains (an operator's drain, or an evacuation
 * before a predicted failure, README "Replica sets"): reads of a block go to another in-sync
 * member while one can serve (replicas.ts readRank), so a gateway predicted to fail stops
 * serving reads before it fails, not after its copies have moved. Read from the store's drains
 * at start, on every `drains` notice and store resync, and every REREAD_MS. A store that does
 * not answer keeps the view in force: it only orders reads, never refuses one.
 */
export class DrainedGateways {
  private unsubscribe: (() => void) | null = null
  private timer: NodeJS.Timeout | null = null
  private readonly loads = new SingleFlight(async () => { await this.load() })

  constructor (private readonly store: StateStore, private readonly gateways: GatewaySet, private readonly logger: Logger) {}

  async start (): Promise<void> {
    this.unsubscribe = this.store.subscribe(event => {
      if (drainsChannel.decode(event) !== undefined || event.type === 'resync') this.reload()
    })
    this.timer = setInterval(() => { this.reload() }, REREAD_MS)
    this.timer.unref()
    this.reload()
    await this.loads.settled()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.unsubscribe?.()
    this.unsubscribe = null
  }

  /** One read at a time; a notice during a read causes one more after it. */
  private reload (): void {
    this.loads.request()
  }

  private async load (): Promise<void> {
    try {
      const drains = await this.store.listDrains()
      this.gateways.setDrained(new Set(drains.map(d => d.gateway)))
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'drains not read (store); the view in force keeps ordering reads')
    }
  }
}
