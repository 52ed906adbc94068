/**
 * One sample of this host: reads the /proc files (procfs.ts parses), keeps the previous
 * counters to turn them into rates (counters.ts), and runs the peer connects and the gateway
 * probe (probes.ts) concurrently so that a slow peer does not delay the rest.
 */
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { cpuUtilisation, diskUsage, median, memoryUsed, type CpuTimes, type DiskCounters } from '../telemetry/counters.js'
import type { AgentSample } from '../telemetry/fields.js'
import { parseDiskstats, parseMeminfo, parseProcStat, parsePsiSomeAvg10 } from './procfs.js'
import { httpProbe, tcpConnectRtt, type Peer, type ProbeResult, type ProbeTls } from './probes.js'

export interface SamplerOptions {
  /** Where /proc is (tests point it at fixtures; a container may mount the host's elsewhere). */
  procRoot?: string
  /** Block device to report (a name in /proc/diskstats, e.g. `nvme0n1`); default the busiest. */
  disk?: string
  /** Hosts to measure TCP connect latency to (typically the other gateways). */
  peers?: readonly Peer[]
  /** The gateway's health URL (e.g. http://127.0.0.1:9001/healthz). */
  probe?: URL
  /** An https probe's CA and client certificate. */
  probeTls?: ProbeTls
  /** Limit for each connect and for the probe, ms. Default 1000. */
  timeoutMs?: number
  /** probe_error_rate is over this many most recent probes. Default 10. */
  probeWindow?: number
}

/** The sources a sample is built from; a missing one is reported so /metrics can show why. */
export type Source = 'stat' | 'psi' | 'meminfo' | 'diskstats' | 'peers' | 'probe'

export interface SampleResult {
  sample: AgentSample
  /** Sources that were configured or expected but could not be read this time. */
  unavailable: Source[]
  /** The last probe, for logs. */
  probe?: ProbeResult
  /** The device disk_* describe. */
  disk?: string
}

async function readText (file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8')
  } catch {
    // ENOENT (no PSI, a container without diskstats), EOPNOTSUPP (PSI compiled in but disabled
    // with psi=0), EACCES: all mean "this source is not available here".
    return undefined
  }
}

export class Sampler {
  private readonly root: string
  private readonly timeoutMs: number
  private readonly probeWindow: number
  private prevCpu: CpuTimes | undefined
  private prevDisks: { at: number, disks: DiskCounters[] } | undefined
  /** Outcomes of the most recent probes, oldest first (true = failed). */
  private readonly probeFailures: boolean[] = []

  constructor (private readonly opts: SamplerOptions = {}) {
    this.root = opts.procRoot ?? '/proc'
    this.timeoutMs = opts.timeoutMs ?? 1000
    this.probeWindow = Math.max(1, opts.probeWindow ?? 10)
  }

  /** True once a baseline for the rate fields (cpu, disk) has been taken. */
  get primed (): boolean {
    return this.prevCpu !== undefined || this.prevDisks !== undefined
  }

  /** Takes the counter baseline without producing a sample, so the first sample has rates. */
  async prime (): Promise<void> {
    const [stat, disks] = await Promise.all([this.read('stat'), this.read('diskstats')])
    this.prevCpu = stat === undefined ? undefined : parseProcStat(stat)
    this.prevDisks = disks === undefined ? undefined : { at: performance.now(), disks: parseDiskstats(disks) }
  }

  async sample (at: number = Date.now()): Promise<SampleResult> {
    const o = this.opts
    const [stat, psi, meminfo, [diskstats, diskAt], rtts, probe] = await Promise.all([
      this.read('stat'),
      this.read('pressure/memory'),
      this.read('meminfo'),
      // Timestamped when read, not when the slowest probe returns: disk_util divides by it.
      this.read('diskstats').then(text => [text, performance.now()] as const),
      Promise.all((o.peers ?? []).map(p => tcpConnectRtt(p, this.timeoutMs))),
      o.probe === undefined ? Promise.resolve(undefined) : httpProbe(o.probe, this.timeoutMs, o.probeTls)
    ])
    const sample: AgentSample = { at: Math.round(at) }
    const unavailable: Source[] = []
    const result: SampleResult = { sample, unavailable }

    const cpu = stat === undefined ? undefined : parseProcStat(stat)
    if (cpu === undefined) unavailable.push('stat')
    const util = cpuUtilisation(this.prevCpu, cpu)
    if (util !== undefined) sample.cpu = util
    this.prevCpu = cpu

    const psiAvg10 = psi === undefined ? undefined : parsePsiSomeAvg10(psi)
    if (psiAvg10 === undefined) unavailable.push('psi')
    const mem = meminfo === undefined ? undefined : parseMeminfo(meminfo)
    if (mem === undefined) unavailable.push('meminfo')
    const used = memoryUsed(mem?.totalBytes, mem?.availableBytes)
    if (psiAvg10 !== undefined) {
      sample.mem_pressure = psiAvg10 / 100
      sample.mem_pressure_psi = 1
    } else if (used !== undefined) {
      sample.mem_pressure = used
      sample.mem_pressure_psi = 0
    }
    if (used !== undefined) sample.mem_used = used

    const disks = diskstats === undefined ? undefined : parseDiskstats(diskstats)
    if (disks === undefined || disks.length === 0) unavailable.push('diskstats')
    const d = diskUsage(this.prevDisks?.disks, disks, diskAt - (this.prevDisks?.at ?? diskAt), o.disk)
    if (d !== undefined) {
      sample.disk_util = d.util
      sample.disk_await_ms = d.awaitMs
      result.disk = d.device
    }
    this.prevDisks = disks === undefined ? undefined : { at: diskAt, disks }

    if (rtts.length > 0) {
      const ok = rtts.filter((r): r is number => r !== undefined)
      // All peers unreachable: report the timeout, a lower bound of the latency, rather than
      // nothing; "cannot reach anyone" is the strongest network signal there is.
      sample.net_latency_ms = ok.length > 0 ? median(ok) : this.timeoutMs
      sample.net_error_rate = (rtts.length - ok.length) / rtts.length
      if (ok.length === 0) unavailable.push('peers')
    }

    if (probe !== undefined) {
      result.probe = probe
      this.probeFailures.push(!probe.ok)
      if (this.probeFailures.length > this.probeWindow) this.probeFailures.shift()
      sample.probe_latency_ms = probe.latencyMs
      sample.probe_error_rate = this.probeFailures.filter(Boolean).length / this.probeFailures.length
      if (!probe.ok) unavailable.push('probe')
    }
    return result
  }

  private async read (name: string): Promise<string | undefined> {
    return await readText(path.join(this.root, name))
  }
}
