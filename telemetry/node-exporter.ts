/**
 * The Prometheus text exposition format (version 0.0.4, what node_exporter serves) and the
 * node_exporter metrics that carry the same kernel counters the agent reads from /proc. The
 * planner's NodeExporterScraper (planner/telemetry.ts) uses this for gateways that run
 * node_exporter instead of (or beside) the ferry agent; it lives in telemetry/, beside
 * counters.ts, because it and the agent's /proc reader (agent/procfs.ts) turn the same
 * counters into the same fields through counters.ts.
 *
 * Like the /proc parsers it never throws: a malformed line is skipped and counted.
 */
import { clamp01, cpuUtilisation, diskUsage, memoryUsed, type CpuTimes, type DiskCounters } from './counters.js'
import type { AgentSample } from './fields.js'

export interface Series {
  labels: Record<string, string>
  value: number
}

export interface Exposition {
  /** Metric name → its series, in the order they appeared. */
  metrics: Map<string, Series[]>
  /** Lines that were neither comments, blank, nor a well-formed sample. */
  skipped: number
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/
/** Sticky: matched in place, so a line with thousands of labels is not re-sliced for each. */
const LABEL = /[a-zA-Z_][a-zA-Z0-9_]*/y
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/

function parseValue (s: string): number | undefined {
  if (s === 'NaN') return NaN
  if (s === '+Inf' || s === 'Inf') return Infinity
  if (s === '-Inf') return -Infinity
  return FLOAT.test(s) ? Number(s) : undefined
}

/** Parses one sample line; undefined when it is malformed. */
function parseLine (line: string): { name: string, series: Series } | undefined {
  const nm = NAME.exec(line)
  if (nm === null) return undefined
  const name = nm[0]
  let i = name.length
  const labels: Record<string, string> = {}
  if (line[i] === '{') {
    i++
    while (true) {
      while (line[i] === ' ') i++
      if (line[i] === '}') { i++; break }
      LABEL.lastIndex = i
      const lm = LABEL.exec(line)
      if (lm === null) return undefined
      const key = lm[0]
      i += key.length
      while (line[i] === ' ') i++
      if (line[i] !== '=') return undefined
      i++
      while (line[i] === ' ') i++
      if (line[i] !== '"') return undefined
      i++
      let value = ''
      while (true) {
        const c = line[i]
        if (c === undefined) return undefined
        if (c === '"') { i++; break }
        if (c === '\\') {
          const e = line[i + 1]
          value += e === 'n' ? '\n' : e === '\\' ? '\\' : e === '"' ? '"' : `\\${e ?? ''}`
          i += 2
          continue
        }
        value += c
        i++
      }
      labels[key] = value
      while (line[i] === ' ') i++
      if (line[i] === ',') { i++; continue }
      if (line[i] === '}') { i++; break }
      return undefined
    }
  }
  const rest = line.slice(i).trim().split(/\s+/)
  // value, optionally a timestamp (ignored: the scraper stamps samples with its own clock).
  if (rest.length > 2 || (line[i] !== ' ' && line[i] !== '\t')) return undefined
  const value = parseValue(rest[0] as string)
  if (value === undefined) return undefined
  if (rest.length === 2 && !/^-?\d+$/.test(rest[1] as string)) return undefined
  return { name, series: { labels, value } }
}

/**
 * Parses exposition text. `want` limits what is kept (node_exporter serves a thousand series;
 * we need a few dozen), which also bounds memory on a hostile endpoint.
 */
export function parseExposition (text: string, want: (name: string) => boolean = () => true): Exposition {
  const metrics = new Map<string, Series[]>()
  let skipped = 0
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const parsed = parseLine(line)
    if (parsed === undefined) { skipped++; continue }
    if (!want(parsed.name)) continue
    let list = metrics.get(parsed.name)
    if (list === undefined) metrics.set(parsed.name, list = [])
    list.push(parsed.series)
  }
  return { metrics, skipped }
}

/** The node_exporter metrics the scrape reads. */
export const NODE_EXPORTER_METRICS = [
  'node_cpu_seconds_total',
  'node_memory_MemTotal_bytes',
  'node_memory_MemAvailable_bytes',
  'node_pressure_memory_waiting_seconds_total',
  'node_disk_io_time_seconds_total',
  'node_disk_read_time_seconds_total',
  'node_disk_write_time_seconds_total',
  'node_disk_reads_completed_total',
  'node_disk_writes_completed_total'
] as const

const WANTED = new Set<string>(NODE_EXPORTER_METRICS)

/** One scrape's counters, in the units counters.ts works in. */
export interface NodeSnapshot {
  /** When the scrape was taken (Unix ms, the scraper's clock). */
  atMs: number
  cpu?: CpuTimes
  memTotalBytes?: number
  memAvailableBytes?: number
  /** Cumulative seconds in which some task waited for memory (PSI "some" total). */
  psiSomeSeconds?: number
  disks: DiskCounters[]
}

function single (e: Exposition, name: string): number | undefined {
  const v = e.metrics.get(name)?.[0]?.value
  return v !== undefined && Number.isFinite(v) && v >= 0 ? v : undefined
}

/** Extracts a snapshot from node_exporter's text. Missing collectors leave fields out. */
export function nodeSnapshot (text: string, atMs: number): NodeSnapshot & { skipped: number } {
  const e = parseExposition(text, n => WANTED.has(n))
  const snap: NodeSnapshot & { skipped: number } = { atMs, disks: [], skipped: e.skipped }

  const cpuSeries = e.metrics.get('node_cpu_seconds_total') ?? []
  if (cpuSeries.length > 0) {
    let idle = 0
    let total = 0
    let ok = true
    for (const s of cpuSeries) {
      if (!Number.isFinite(s.value) || s.value < 0) { ok = false; break }
      total += s.value
      if (s.labels.mode === 'idle' || s.labels.mode === 'iowait') idle += s.value
    }
    if (ok) snap.cpu = { idle, total }
  }

  const memTotal = single(e, 'node_memory_MemTotal_bytes')
  const memAvailable = single(e, 'node_memory_MemAvailable_bytes')
  if (memTotal !== undefined) snap.memTotalBytes = memTotal
  if (memAvailable !== undefined) snap.memAvailableBytes = memAvailable
  const psi = single(e, 'node_pressure_memory_waiting_seconds_total')
  if (psi !== undefined) snap.psiSomeSeconds = psi

  // node_exporter reports disk times in seconds; counters.ts works in milliseconds.
  const byDevice = new Map<string, Partial<DiskCounters>>()
  const put = (metric: string, key: keyof Omit<DiskCounters, 'device'>, scale: number): void => {
    for (const s of e.metrics.get(metric) ?? []) {
      const device = s.labels.device
      if (device === undefined || !Number.isFinite(s.value) || s.value < 0) continue
      let d = byDevice.get(device)
      if (d === undefined) byDevice.set(device, d = { device })
      d[key] = s.value * scale
    }
  }
  put('node_disk_io_time_seconds_total', 'ioMs', 1000)
  put('node_disk_read_time_seconds_total', 'readMs', 1000)
  put('node_disk_write_time_seconds_total', 'writeMs', 1000)
  put('node_disk_reads_completed_total', 'reads', 1)
  put('node_disk_writes_completed_total', 'writes', 1)
  for (const d of byDevice.values()) {
    if (d.ioMs !== undefined && d.readMs !== undefined && d.writeMs !== undefined && d.reads !== undefined && d.writes !== undefined) {
      snap.disks.push(d as DiskCounters)
    }
  }
  return snap
}

/**
 * The sample fields two consecutive scrapes give. Rates (cpu, disk, PSI) need the previous
 * scrape, so the first scrape of a gateway yields only mem_used. PSI from node_exporter is a
 * counter, so mem_pressure here is the stalled share of the scrape interval rather than the
 * kernel's avg10: the same quantity over a different window.
 */
export function nodeExporterFields (prev: NodeSnapshot | undefined, cur: NodeSnapshot, disk?: string): Omit<AgentSample, 'at'> {
  const out: Omit<AgentSample, 'at'> = {}
  const elapsedMs = prev === undefined ? 0 : cur.atMs - prev.atMs
  const cpu = cpuUtilisation(prev?.cpu, cur.cpu)
  if (cpu !== undefined) out.cpu = cpu
  const used = memoryUsed(cur.memTotalBytes, cur.memAvailableBytes)
  if (cur.psiSomeSeconds !== undefined) {
    const before = prev?.psiSomeSeconds
    const stalled = before === undefined ? -1 : cur.psiSomeSeconds - before
    if (elapsedMs > 0 && stalled >= 0) {
      out.mem_pressure = clamp01(stalled * 1000 / elapsedMs)
      out.mem_pressure_psi = 1
    }
  } else if (used !== undefined) {
    out.mem_pressure = used
    out.mem_pressure_psi = 0
  }
  if (used !== undefined) out.mem_used = used
  const d = diskUsage(prev?.disks, cur.disks, elapsedMs, disk)
  if (d !== undefined) {
    out.disk_util = d.util
    out.disk_await_ms = d.awaitMs
  }
  return out
}
