import { PassThrough } from 'node:stream'
import { Counter, type Registry } from 'prom-client'
import type { Dispatcher } from 'undici'
import { ReplicaPlacer, type ReplicationConfig } from '../fleet/replication.js'
import type { Logger } from '../lib/log.js'
import type { LoopStalls } from '../lib/loop-stalls.js'
import type { BlockLocation, LocationInput } from '../state/types.js'
import type { Gateway, GatewaySet } from './gateway-set.js'
import { ProxyAnswer, type IncomingHttpHeaders, type ProxyRequest, type ResponseHandler } from './request.js'
import { transient, type StateSync } from './state-sync.js'

/** How long a write that must be settled waits for an unreachable store before it is refused. */
const SETTLE_STORE_WAIT_MS = 10_000

/** See Replication.lagBoundMs. */
const LAG_MARGIN_MS = 25

/**
 * The proxy's half of replica sets (README "Replica sets"): which set a first write claims,
 * which member a read goes to first, and a write sent to every member at once.
 *
 * The rule every write follows before it is acknowledged: each in-sync member of the block's
 * *current* set (as this proxy knows it when the members have answered, not when the write
 * started) that did not store the write leaves the in-sync set, and each joining member (being
 * copied to by the planner) that the write was sent to and did not store it leaves the set —
 * in the store first, by one compare-and-set, which bumps the epoch and is published to every
 * proxy. Then the write is
 * acknowledged if at least `replication.minInSync` in-sync members stored it.
 */
export class Replication {
  readonly placer: ReplicaPlacer
  private config: ReplicationConfig
  private readonly demotions: Counter
  private readonly refused: Counter
  private readonly lagChecks: Counter
  /** planner.migration.settleMs: how late the planner allows a proxy to hear of a new member. */
  private settleMs: number

  constructor (
    private readonly sync: StateSync,
    readonly gateways: GatewaySet,
    config: ReplicationConfig,
    settleMs: number,
    /** This process's event-loop stalls over settleMs / 2 (the owner keeps the threshold). */
    private readonly stalls: LoopStalls,
    registry: Registry,
    private readonly logger: Logger
  ) {
    this.config = config
    this.settleMs = settleMs
    this.lagChecks = new Counter({ name: 'ferry_replica_store_checks_total', help: 'Writes whose acknowledgement waited for the block\'s location from the store, because they took half of planner.migration.settleMs or more, or the event loop stalled that long meanwhile', registers: [registry] })
    this.placer = new ReplicaPlacer({ gateways: () => gateways.all(), isHealthy: id => gateways.isHealthy(id) })
    this.demotions = new Counter({ name: 'ferry_replica_demotions_total', help: 'Members that left a block\'s in-sync set (or its set) because they failed a write', labelNames: ['gateway'], registers: [registry] })
    this.refused = new Counter({ name: 'ferry_replica_writes_refused_total', help: 'Writes answered 503 FERRY_REPLICAS_UNAVAILABLE (fewer than minInSync in-sync members stored them)', registers: [registry] })
  }

  get factor (): number { return this.config.factor }

  reconfigure (config: ReplicationConfig, settleMs: number): void {
    this.config = config
    this.settleMs = settleMs
    this.placer.refresh()
  }

  /**
   * How late a proxy whose event loop has not stalled over settleMs / 2 may hear of a change of
   * a set: the stall threshold, plus a margin for the notification's way through Redis and the
   * kernel. A proxy that did stall longer reads locations from the store (ProxyServer).
   */
  get lagBoundMs (): number { return this.settleMs / 2 + LAG_MARGIN_MS }

  /**
   * Whether the cache this write was routed by, and would be settled by, may not have heard of a
   * change of the block's set yet. The planner copies to a new member settleMs after it joined,
   * trusting every proxy to send that member each write from then on; a proxy that took longer
   * to hear — a write that waited half of that or more since it was routed, or an event loop
   * that stalled that long meanwhile (a loaded machine: notifications are not processed) — may
   * have sent a write to the old set only, landing after the copy read it. Acknowledged from the
   * cache, it would be missing on the new member once that is in sync (a read of the previous
   * version, seen under CI load at R = 2). Quick writes on a live loop cannot have: they landed
   * before the copy began.
   */
  cacheMayLag (request: ProxyRequest): boolean {
    const routedAgo = Date.now() - request.now
    const half = this.settleMs / 2
    if (routedAgo >= half) return true
    const now = performance.now()
    return this.stalls.stalledSince(now - routedAgo - half, now)
  }

  /** When the cache may lag (cacheMayLag), takes the block's location from the store first. */
  async refreshIfLagging (request: ProxyRequest): Promise<void> {
    if (!this.cacheMayLag(request)) return
    this.lagChecks.inc()
    const { volume, block } = request
    try {
      const loc = await this.sync.store.getLocation(volume, block)
      if (loc !== null) this.sync.cache.apply(volume, block, loc.epoch, loc, 'resync')
    } catch {
      // The store does not answer: nobody changes a set without it (and after an outage the
      // planner waits for proxies to reconnect before it does).
    }
  }

  /**
   * The set a block's first write records: the partitioning engine's set when it placed the
   * write (request.placedSet), else `chooseReplicaSet` by hashing; a gateway a sticky session
   * proposes goes first either way (the session's reads then find the block on it).
   */
  claimSet (request: ProxyRequest, proposed: Gateway): LocationInput {
    const chosen = request.placedSet ?? this.placer.chooseReplicaSet(request.volume, request.block, request.site, this.config.factor)
    const members = chosen.includes(proposed.id) ? [proposed.id, ...chosen.filter(id => id !== proposed.id)] : [proposed.id, ...chosen].slice(0, Math.max(1, this.config.factor))
    return { gateway: proposed.id, members, inSync: members }
  }

  /** A write to a block with more than one member goes to all of them; undefined otherwise. */
  fanOut (request: ProxyRequest): ReplicatedWrite | undefined {
    const loc = request.location
    if (loc === undefined || loc.members.length < 2) return undefined
    return new ReplicatedWrite(this, request, this.logger)
  }

  get minInSync (): number { return this.config.minInSync }

  refuse (): void { this.refused.inc() }

  /** The location as this proxy knows it now (kept current by the store's notifications). */
  current (request: ProxyRequest): BlockLocation | undefined {
    return this.sync.cache.get(request.volume, request.block) ?? request.location
  }

  /**
   * Records in the store what a write that has been answered means for the block's *current* set
   * (this proxy's cache; a stale epoch is corrected by the compare-and-set, retried), before the
   * write may be acknowledged. `stored`: the members that stored it; `dispatched`: the location
   * the write was sent with (its members were sent the write). One compare-and-set, which bumps
   * the epoch and is published to every proxy:
   *
   * - an in-sync member that did not store it leaves the in-sync set (it stays a member, at the
   *   back, until repair overwrites it);
   * - a member out of sync that was sent the write and did not store it leaves the set (a joining
   *   target, or a leaving source: its copy no longer follows the writes);
   * - a member that joined after the write was sent (the planner is copying to it) is not
   *   demoted, but the epoch is bumped: the planner marks a joiner in sync only by a
   *   compare-and-set on an epoch read after its last check of the bytes, so a write that landed
   *   on the source after that check makes it check again instead of marking a copy in sync that
   *   misses it;
   * - when no in-sync member stored it — the write started before a move and ended after the
   *   source left the in-sync set — members that were in sync when the write was sent and stored
   *   it (the leaving source, kept as a member for planner.migration.gracePeriodMs) become the
   *   in-sync set again, and the members that missed it leave it: the move is undone rather than
   *   the write refused.
   *
   * Resolves with the location in force afterwards (null: the block has none); throws when the
   * store cannot record it (the write is then not acknowledged).
   */
  async settle (request: ProxyRequest, stored: ReadonlySet<string>, dispatched: BlockLocation): Promise<BlockLocation | null> {
    const { volume, block } = request
    const sentTo = dispatched.members
    let loc: BlockLocation | null = this.current(request) ?? null
    for (let round = 0; round < 8 && loc !== null; round++) {
      const l: BlockLocation = loc
      const outOfSync = l.members.filter(m => !l.inSync.includes(m))
      let inSync = l.inSync.filter(m => stored.has(m))
      let reason = 'write-failed'
      if (inSync.length === 0) {
        inSync = outOfSync.filter(m => stored.has(m) && dispatched.inSync.includes(m))
        if (inSync.length === 0) return l // nobody in the set has it: the caller refuses the write
        reason = 'write-outlived-move'
      }
      const missed = l.inSync.filter(m => !inSync.includes(m))
      const dropped = outOfSync.filter(m => sentTo.includes(m) && !stored.has(m) && !inSync.includes(m))
      const joinedSince = outOfSync.some(m => !sentTo.includes(m))
      if (missed.length === 0 && dropped.length === 0 && !joinedSince) return l
      // Demoted members go to the back: the order is the read preference.
      const members = [...l.members.filter(m => inSync.includes(m)), ...l.members.filter(m => !inSync.includes(m) && !dropped.includes(m))]
      const next: LocationInput = { gateway: members[0] as string, members, inSync, phase: l.phase }
      if (l.target !== undefined && l.target !== next.gateway) next.target = l.target
      else if (l.phase === 'copying' || l.phase === 'cutover') next.phase = 'stable'
      const why = missed.length + dropped.length === 0 ? 'write-during-join' : `${reason}:${[...missed, ...dropped].join(',')}`
      const r = await this.casRidingOut(volume, block, l.epoch, next, why.slice(0, 200))
      if (r.ok) {
        for (const m of [...missed, ...dropped]) this.demotions.inc({ gateway: m })
        this.sync.cache.apply(volume, block, r.location.epoch, r.location, 'local')
        // A member that left the in-sync set now — or a source that left it a moment ago in a
        // move's leave step and is dropped now because it missed this write (down, or so this
        // proxy thinks) — may still be read by proxies that have not heard: it lacks this write.
        // Acknowledged only once every proxy has heard, or is reading locations from the store
        // because its loop stalled (lagBoundMs): a read that reaches the member meanwhile began
        // before the acknowledgement, and may return the older version.
        if (missed.length + dropped.length > 0) await new Promise(resolve => setTimeout(resolve, this.lagBoundMs))
        return r.location
      }
      loc = r.current
    }
    return loc
  }

  /**
   * The settling compare-and-set, retried while the store is briefly unreachable (a Redis
   * restart): the write waits, up to SETTLE_STORE_WAIT_MS, rather than being refused at once.
   */
  private async casRidingOut (volume: string, block: string, epoch: number, next: LocationInput, reason: string): Promise<Awaited<ReturnType<StateSync['store']['casLocation']>>> {
    const deadline = Date.now() + SETTLE_STORE_WAIT_MS
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.sync.store.casLocation(volume, block, epoch, next, { reason })
      } catch (err) {
        if (!transient(err) || Date.now() >= deadline) throw err
        await new Promise(resolve => setTimeout(resolve, Math.min(1000, 50 * 2 ** attempt)))
      }
    }
  }

  /**
   * Whether a write settled into `after` may be acknowledged: every in-sync member stored it, and
   * at least minInSync did. Else the answer that refuses it.
   */
  verdict (request: ProxyRequest, stored: ReadonlySet<string>, after: BlockLocation | null): ProxyAnswer | null {
    if (after === null) return new ProxyAnswer('FERRY_REPLICAS_UNAVAILABLE', `block ${request.key} lost its location while the write was in flight; retry`, 503, { 'retry-after': 1 })
    const have = after.inSync.filter(m => stored.has(m)).length
    if (have >= this.config.minInSync && have === after.inSync.length) return null
    this.refused.inc()
    if (have === 0 && stored.size > 0 && !after.members.some(m => stored.has(m))) {
      // Kept only for this: the write started before a move and ended after the members that
      // stored it had left the set (beyond the grace period). Not acknowledged; the client retries.
      return new ProxyAnswer('FERRY_WRITE_NOT_CONFIRMED', `block ${request.key} moved while this write was in flight, and the gateways that stored it have left its set; retry`, 503, { 'retry-after': 1 })
    }
    return unavailable(request, have, this.config.minInSync)
  }

  /**
   * Members of the block's set a read may go to, nearest first: in-sync members only, healthy
   * ones first, then the nearest to the client's site (planner.latency), then the set's order.
   */
  readOrder (loc: BlockLocation, site: string | undefined, now: number): Gateway[] {
    return readOrder(this.gateways, loc, site, now)
  }
}

/** See Replication.readOrder; also used by the route table for a read's first member. */
export function readOrder (gateways: GatewaySet, loc: BlockLocation, site: string | undefined, now: number): Gateway[] {
  const out: Array<{ g: Gateway, rank: number }> = []
  let i = 0
  for (const id of loc.members) {
    i++
    if (!loc.inSync.includes(id)) continue
    const g = gateways.get(id)
    if (g === undefined) continue
    out.push({ g, rank: readRank(gateways, g, site, now, i) })
  }
  return out.sort((a, b) => a.rank - b.rank).map(x => x.g)
}

/**
 * The head of `readOrder`, without building the order: what every GET of a replicated block
 * needs to route (the whole order is built only when a read fails over).
 */
export function nearestInSync (gateways: GatewaySet, loc: BlockLocation, site: string | undefined, now: number): Gateway | undefined {
  let best: Gateway | undefined
  let bestRank = Infinity
  let i = 0
  for (const id of loc.members) {
    i++
    if (!loc.inSync.includes(id)) continue
    const g = gateways.get(id)
    if (g === undefined) continue
    const rank = readRank(gateways, g, site, now, i)
    if (rank < bestRank) { best = g; bestRank = rank }
  }
  return best
}

/**
 * Healthy before unhealthy, then members the planner is not draining (an operator's drain, or an
 * evacuation before a predicted failure: the gateway may fail before its copies are moved), then
 * the nearest to the client's site by the latency model (without one, the client's site before
 * others), then set order (i: 1-based position, at most 16). The set's head is the best member
 * for all of the block's readers, not for this one: a client at a site holding no member read
 * the head even when the other member was nearer (on the NASA trace at R = 2, hashed sets,
 * 20 % of reads, 46.7 ms mean where the nearest member gives 35.6: BENCHMARKS.md, fleet replay).
 */
function readRank (gateways: GatewaySet, g: Gateway, site: string | undefined, now: number, i: number): number {
  return (g.isHealthy(now) ? 0 : 1e8) + (g.drained ? 1e7 : 0) + gateways.readMs(site, g) * 32 + i
}

interface MemberResult {
  gateway: Gateway
  inSync: boolean
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  error: Error | undefined
}

/**
 * One write sent to every member of a block's set. It stands in for a gateway's pool in the
 * forwarder (the handler chain is unchanged): the client's body is read once and teed to every
 * member, each through its own small buffer, and the next chunk is read only when every member
 * still receiving has taken the last one (backpressure: nothing is buffered whole). A member
 * whose request fails is dropped from the tee so it cannot stall the others.
 */
export class ReplicatedWrite {
  private readonly abort = new AbortController()

  constructor (private readonly rep: Replication, private readonly request: ProxyRequest, private readonly logger: Logger) {}

  dispatch (opts: Dispatcher.DispatchOptions, handler: ResponseHandler): boolean {
    const controller = new FanOutController(this.abort)
    handler.onRequestStart(controller, {})
    this.run(opts, handler, controller).catch(err => {
      this.logger.error({ err }, 'replicated write failed')
      handler.onResponseError(controller, new ProxyAnswer('FERRY_INTERNAL', 'internal error', 500))
    })
    return true
  }

  private async run (opts: Dispatcher.DispatchOptions, handler: ResponseHandler, controller: FanOutController): Promise<void> {
    const { request } = this
    const loc = request.location as BlockLocation
    const now = Date.now()
    if (loc.inSync.length < this.rep.minInSync) {
      this.rep.refuse()
      handler.onResponseError(controller, unavailable(request, loc.inSync.length, this.rep.minInSync))
      return
    }
    // Joining members get every write (so the planner's copy cannot miss one); one that is known
    // to be down is not waited for: it will be demoted like any member that did not store it.
    const targets: Array<{ gateway: Gateway, inSync: boolean }> = []
    for (const id of loc.members) {
      const g = this.rep.gateways.get(id)
      const inSync = loc.inSync.includes(id)
      if (g !== undefined && (inSync || g.isHealthy(now))) targets.push({ gateway: g, inSync })
    }
    const body = opts.body as NodeJS.ReadableStream | null | undefined
    const pipes = body === null || body === undefined ? undefined : targets.map(() => new PassThrough({ highWaterMark: 64 * 1024 }))
    const results = targets.map((t, i) => this.send(t.gateway, t.inSync, opts, pipes?.[i]))
    let bodyError: Error | undefined
    if (body !== null && body !== undefined && pipes !== undefined) bodyError = await tee(body, pipes, this.abort.signal)
    const answers = await Promise.all(results)
    if (bodyError !== undefined || controller.aborted) {
      // The client's body broke off (413, client gone): nothing is acknowledged; members that
      // got a partial body discard it (their requests were aborted with it).
      handler.onResponseError(controller, bodyError instanceof ProxyAnswer ? bodyError : (controller.reason ?? bodyError ?? new Error('aborted')))
      return
    }
    for (const a of answers) {
      if (a.error !== undefined || a.status >= 500) this.rep.gateways.reportFailure(a.gateway, a.error?.message ?? `status ${a.status}`)
      else this.rep.gateways.reportSuccess(a.gateway)
    }
    const ok = (a: MemberResult): boolean => a.error === undefined && (a.status < 300 || (request.method === 'DELETE' && a.status === 404))
    const stored = new Set(answers.filter(a => ok(a)).map(a => a.gateway.id))
    const anyOk = answers.some(a => ok(a) && a.status < 300)
    if (!anyOk) {
      // Nobody stored it: relay a gateway's own refusal (4xx) as it is, else fail like a single gateway.
      const refusal = answers.find(a => a.error === undefined && a.status < 500) ?? answers.find(a => a.error === undefined)
      if (refusal !== undefined) { relay(handler, controller, refusal, request); return }
      const err = answers[0]?.error ?? new Error('no member of the replica set could be reached')
      handler.onResponseError(controller, err)
      return
    }
    let after: BlockLocation | null
    try {
      await this.rep.refreshIfLagging(request)
      after = await this.rep.settle(request, stored, loc)
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, volume: request.volume, block: request.block }, 'could not record a member leaving the in-sync set')
      this.rep.refuse()
      handler.onResponseError(controller, new ProxyAnswer('FERRY_REPLICAS_UNAVAILABLE',
        `block ${request.key}: a member failed the write and the store could not record it; not acknowledged, retry`, 503, { 'retry-after': 1 }))
      return
    }
    const refusal = this.rep.verdict(request, stored, after)
    if (refusal !== null || after === null) {
      handler.onResponseError(controller, refusal as ProxyAnswer)
      return
    }
    request.location = after
    let first = answers.find(a => a.gateway.id === after.gateway && ok(a)) ?? answers.find(a => ok(a)) as MemberResult
    // The digest of what was stored (lib/block-headers.ts "Digests") stands for the write only
    // when every member that stored it reported one: the S3 front end takes its ETag from it,
    // and learns from it which gateways check what a client declared.
    if (first.headers['repr-digest'] !== undefined && answers.some(a => ok(a) && a.headers['repr-digest'] === undefined)) {
      const { 'repr-digest': _dropped, ...headers } = first.headers
      first = { ...first, headers }
    }
    relay(handler, controller, first, request)
  }

  /**
   * One member's request, its (small) answer read whole. Dispatched with a handler of its own
   * rather than through undici's request(): no response stream and no async iteration per
   * member, which a replicated PUT pays R times.
   */
  private send (gateway: Gateway, inSync: boolean, opts: Dispatcher.DispatchOptions, pipe: PassThrough | undefined): Promise<MemberResult> {
    return new Promise(resolve => {
      new MemberRequest(gateway, inSync, pipe, this.abort.signal, resolve).dispatch(opts)
    })
  }
}

/** The handler of one member's request: collects its answer; a failure resolves too, with the error. */
class MemberRequest implements Dispatcher.DispatchHandler {
  private status = 0
  private headers: IncomingHttpHeaders = {}
  private readonly chunks: Buffer[] = []
  private controller: Dispatcher.DispatchController | undefined
  private readonly onAbort = (): void => { this.controller?.abort(this.signal.reason as Error) }

  constructor (
    private readonly gateway: Gateway,
    private readonly inSync: boolean,
    private readonly pipe: PassThrough | undefined,
    private readonly signal: AbortSignal,
    private readonly done: (r: MemberResult) => void
  ) {}

  dispatch (opts: Dispatcher.DispatchOptions): void {
    if (this.signal.aborted) { this.onResponseError(null, this.signal.reason as Error); return }
    this.signal.addEventListener('abort', this.onAbort)
    this.gateway.pool.dispatch({ method: opts.method, path: opts.path, headers: opts.headers, body: this.pipe ?? null }, this)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    // Aborted while queued for a connection.
    if (this.signal.aborted) controller.abort(this.signal.reason as Error)
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return
    this.status = statusCode
    this.headers = headers
  }

  onResponseData (_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk)
  }

  onResponseEnd (): void {
    this.signal.removeEventListener('abort', this.onAbort)
    const body = this.chunks.length === 1 ? this.chunks[0] as Buffer : Buffer.concat(this.chunks)
    this.done({ gateway: this.gateway, inSync: this.inSync, status: this.status, headers: this.headers, body, error: undefined })
  }

  onResponseError (_controller: Dispatcher.DispatchController | null, err: Error): void {
    this.signal.removeEventListener('abort', this.onAbort)
    // This member stops taking the body; the tee no longer waits for it.
    this.pipe?.destroy()
    this.done({ gateway: this.gateway, inSync: this.inSync, status: 0, headers: {}, body: EMPTY, error: err })
  }
}

const EMPTY = Buffer.alloc(0)

/**
 * Reads `source` once and writes every chunk to each pipe still open; when a pipe is full the
 * source is paused until every full pipe has drained (or closed). Resolves with the source's
 * error, if any (the pipes are then destroyed). Driven by the stream's own events: no promise
 * per chunk.
 */
function tee (source: NodeJS.ReadableStream, pipes: PassThrough[], signal: AbortSignal): Promise<Error | undefined> {
  return new Promise(resolve => {
    let waiting = 0
    let over = false
    const onDrained = (): void => { if (--waiting === 0 && !over) source.resume() }
    const finish = (err: Error | undefined): void => {
      if (over) return
      over = true
      source.off('data', onData)
      source.off('end', onEnd)
      source.off('error', onError)
      source.off('close', onClose)
      signal.removeEventListener('abort', onAbort)
      for (const p of pipes) {
        if (err !== undefined) p.destroy(err)
        else if (!p.destroyed) p.end()
      }
      resolve(err)
    }
    const onData = (chunk: Buffer): void => {
      for (const p of pipes) {
        if (p.destroyed || p.writableEnded) continue
        if (!p.write(chunk)) {
          waiting++
          // Whichever comes first; the other is removed so that it cannot count twice.
          const once = (): void => { p.off('drain', once); p.off('close', once); onDrained() }
          p.on('drain', once)
          p.on('close', once)
        }
      }
      if (waiting > 0) source.pause()
    }
    const onEnd = (): void => { finish(undefined) }
    const onError = (err: Error): void => { finish(err) }
    // Closed without 'end' or 'error' (the client went away mid-body): the body is incomplete.
    const onClose = (): void => { finish(new Error('the request body ended early')) }
    const onAbort = (): void => { finish(signal.reason as Error) }
    if (signal.aborted) { finish(signal.reason as Error); return }
    signal.addEventListener('abort', onAbort)
    source.on('data', onData)
    source.once('end', onEnd)
    source.once('error', onError)
    source.once('close', onClose)
  })
}

function relay (handler: ResponseHandler, controller: Dispatcher.DispatchController, a: MemberResult, request: ProxyRequest): void {
  // The forwarder counted the request in flight on the gateway it was addressed to.
  const was = request.gateway
  if (was !== undefined && was !== a.gateway) { was.inflight--; a.gateway.inflight++ }
  request.gateway = a.gateway
  handler.onResponseStart(controller, a.status, a.headers)
  if (a.body.length > 0) handler.onResponseData(controller, a.body)
  handler.onResponseEnd(controller, {})
}

function unavailable (request: ProxyRequest, have: number, need: number): ProxyAnswer {
  return new ProxyAnswer('FERRY_REPLICAS_UNAVAILABLE',
    `block ${request.key}: ${have} in-sync member(s) stored the write, replication.minInSync is ${need}; not acknowledged, retry`, 503, { 'retry-after': 1 })
}

/** The controller the forwarder's handlers see for a replicated write: aborting it aborts every member's request. */
class FanOutController implements Dispatcher.DispatchController {
  private _reason: Error | null = null
  constructor (private readonly ac: AbortController) {}
  get aborted (): boolean { return this.ac.signal.aborted }
  get paused (): boolean { return false }
  get reason (): Error | null { return this._reason }
  abort (reason: Error): void {
    if (this.ac.signal.aborted) return
    this._reason = reason
    this.ac.abort(reason)
  }

  // The members' replies are small and already read whole: nothing to pause.
  pause (): void {}
  resume (): void {}
}
