import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { stringify } from 'yaml'
import type { Registry } from 'prom-client'
import { parseConfig } from '../config/load.js'
import { SANDBOX_PORTS, SANDBOX_S3_KEY, sandboxConfig, type SandboxPorts } from '../config/sandbox.js'
import type { FerryConfig } from '../config/schema.js'
import { ReferenceGateway } from '../gateway/gateway.js'
import { httpTelemetrySink, parseFaultTimeline, ScenarioDriver, ScenarioTelemetryFeed } from '../gateway/scenario.js'
import { generateScenario, type ScenarioKind } from '../planner/health/index.js'
import type { Logger } from '../lib/log.js'
import { FerryNode, type Role } from './node.js'

export interface SandboxOptions {
  ports?: Partial<SandboxPorts>
  /** A config file to use instead of the embedded one (its gateways are still started locally). */
  config?: FerryConfig
  roles: ReadonlySet<Role>
  logger: Logger
  registry: Registry
  /** Degrade gw1 per a generated health scenario (a simulation: faults plus matching telemetry). */
  scenario?: { kind: SandboxScenario, speed: number, seed?: number }
}

export const SANDBOX_SCENARIOS = ['memory-leak', 'disk-latency', 'cpu-saturation', 'crash'] as const
export type SandboxScenario = typeof SANDBOX_SCENARIOS[number]

/** The embedded sandbox config as YAML: what `ferry sandbox --print-config` shows. */
export function sandboxYaml (ports: SandboxPorts = SANDBOX_PORTS): string {
  return stringify(sandboxConfig(ports))
}

const SANDBOX_DIR_PREFIX = 'ferry-sandbox-'
/** `${SANDBOX_DIR_PREFIX}<pid>-` plus mkdtemp's six characters. */
const ABANDONED = new RegExp(`^${SANDBOX_DIR_PREFIX}(\\d+)-[A-Za-z0-9]{6}$`)

/**
 * Removes the gateway directories of sandboxes whose process is gone. A sandbox removes its own
 * when it stops, but one that never got to (SIGKILL, a second Ctrl-C, a crashed test) would leave
 * them in the temp directory for good. Only `ferry-sandbox-<pid>-…` with no process of that pid
 * is removed: a directory whose pid is alive (or was reused) is left alone.
 */
function sweepAbandonedSandboxes (tmp: string, logger: Logger): void {
  let entries: string[]
  try { entries = fs.readdirSync(tmp) } catch { return }
  for (const name of entries) {
    const m = ABANDONED.exec(name)
    if (m === null || processAlive(Number(m[1]))) continue
    try {
      fs.rmSync(path.join(tmp, name), { recursive: true, force: true })
      logger.info({ dir: path.join(tmp, name) }, 'removed the directory of a sandbox that did not stop')
    } catch (err) {
      logger.warn({ err: (err as Error).message, dir: path.join(tmp, name) }, 'could not remove an abandoned sandbox directory')
    }
  }
}

function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

/**
 * Everything on loopback: three reference gateways in temporary directories, and a ferry node
 * on the embedded config. Going through the YAML text means the sandbox validates exactly like
 * a user's file does.
 */
export class Sandbox {
  readonly gateways: ReferenceGateway[] = []
  readonly node: FerryNode
  readonly config: FerryConfig
  /** Holds every gateway's directory; its name carries this process's pid (sweepAbandonedSandboxes). */
  private readonly root: string
  private driver: ScenarioDriver | undefined
  private feed: ScenarioTelemetryFeed | undefined

  constructor (private readonly opts: SandboxOptions) {
    const ports: SandboxPorts = { ...SANDBOX_PORTS, ...opts.ports }
    this.config = opts.config ?? parseConfig(sandboxYaml(ports), '<embedded sandbox config>')
    sweepAbandonedSandboxes(os.tmpdir(), opts.logger)
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), `${SANDBOX_DIR_PREFIX}${process.pid}-`))
    for (const g of this.config.gateways) {
      const url = new URL(g.url)
      const dir = path.join(this.root, g.id)
      fs.mkdirSync(dir)
      // As large as the proxy takes: a multipart S3 upload is stored as one block.
      this.gateways.push(new ReferenceGateway({ id: g.id, dir, host: url.hostname, port: Number(url.port), maxBlockBytes: this.config.proxy.maxBodyBytes, logger: opts.logger.child({ role: 'gateway' }) }))
    }
    this.node = new FerryNode({ config: this.config, roles: opts.roles, logger: opts.logger, registry: opts.registry })
  }

  async start (): Promise<void> {
    await Promise.all(this.gateways.map(g => g.start()))
    await this.node.start()
    if (this.opts.scenario !== undefined) await this.startScenario(this.opts.scenario)
  }

  /**
   * gw1 degrades to failure per a generated scenario, replayed `speed` times faster from 700 s
   * before the degradation (so the health model starts warm), and its telemetry is pushed to the
   * planner as an agent would: SIMULATION, the host itself is fine.
   */
  private async startScenario (o: NonNullable<SandboxOptions['scenario']>): Promise<void> {
    const gw = this.gateways[0]
    if (gw === undefined) return
    const s = generateScenario(o.kind.replace('-', '_') as ScenarioKind, { seed: o.seed ?? 1, gateway: gw.id })
    const timeline = parseFaultTimeline(JSON.parse(JSON.stringify(s)))
    const from = (s.onsetS ?? (s.failureS as number) - 120) - 700
    this.driver = new ScenarioDriver({ target: gw, timeline, speed: o.speed, startAtMs: Math.max(0, from * 1000), end: 'crash', logger: this.opts.logger })
    await this.driver.start()
    const a = this.node.admin.address
    this.feed = new ScenarioTelemetryFeed({ driver: this.driver, timeline, gateway: gw.id, sink: httpTelemetrySink(`http://${a.address}:${a.port}`, this.config.admin.token ?? ''), logger: this.opts.logger })
    await this.feed.start()
    this.opts.logger.warn({ scenario: s.name, gateway: gw.id, failsInS: Math.round(((s.failureS as number) - Math.max(0, from)) / o.speed) }, 'scenario: the gateway will degrade and fail (simulated telemetry)')
  }

  async stop (): Promise<void> {
    await this.feed?.stop()
    await this.driver?.stop()
    await this.node.stop()
    await Promise.all(this.gateways.map(g => g.stop()))
    fs.rmSync(this.root, { recursive: true, force: true })
  }

  /** The embedded key when the config is the embedded one (a user's own secrets are never printed). */
  private s3Key (): { accessKeyId: string, secret: string } | undefined {
    return this.opts.config === undefined && this.config.s3.credentials.some(c => c.accessKeyId === SANDBOX_S3_KEY.accessKeyId) ? SANDBOX_S3_KEY : undefined
  }

  /** A few lines to try, printed at start. */
  tryLines (): string {
    const p = this.node.proxy?.address
    const proxy = p ? `http://${p.address}:${p.port}` : ''
    const a = this.node.admin.address
    const admin = `http://${a.address}:${a.port}`
    const gw = this.gateways[0]
    return [
      '',
      'ferry sandbox is up. Try:',
      `  curl -sS -X PUT --data-binary 'hello ferry' ${proxy}/vol1/blk1          # write a block`,
      `  curl -sS -i ${proxy}/vol1/blk1                                         # read it back (ETag, Via)`,
      `  curl -sS -H 'X-Forwarded-For: 127.0.1.9' ${proxy}/vol1/blk1             # the same read from site-b`,
      `  curl -sS ${admin}/v1/blocks/vol1/blk1                                  # location and access scores`,
      `  curl -sS ${admin}/v1/gateways                                          # gateways and health`,
      ...(this.node.dns ? [`  dig @127.0.0.1 -p ${this.config.dns.listen[0]?.port ?? 5353} vol1.${this.config.dns.zone} +short           # the edge nearest vol1's data`] : []),
      `  curl -sS ${admin}/readyz ; curl -sS ${admin}/metrics | grep ferry_`,
      gw ? `  curl -sS -X PUT -d '{"errorRate":1}' ${gw.adminUrl}/faults     # make ${gw.id} fail; watch it get ejected` : '',
      ...(this.s3Key() !== undefined ? [
        '',
        'S3 (path style, SigV4) with the sandbox key:',
        `  export AWS_ACCESS_KEY_ID=${this.s3Key()?.accessKeyId ?? ''} AWS_SECRET_ACCESS_KEY=${this.s3Key()?.secret ?? ''} AWS_DEFAULT_REGION=${this.config.s3.region}`,
        `  aws --endpoint-url ${proxy} s3 mb s3://bucket1 && aws --endpoint-url ${proxy} s3 cp README.md s3://bucket1/docs/README.md`,
        `  aws --endpoint-url ${proxy} s3 ls s3://bucket1 --recursive`
      ] : []),
      ...(this.driver ? [`  curl -sS ${admin}/v1/health ; curl -sS ${admin}/v1/health/decisions   # ${gw?.id ?? ''} is degrading: predicted health, trigger, evacuation`] : []),
      '',
      'Ctrl-C stops everything.',
      ''
    ].join('\n')
  }
}
