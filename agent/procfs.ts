/**
 * Parsers for the /proc files the agent samples, kept free of I/O so they can be tested on
 * fixture text. They never throw: a file from an odd kernel, a container that fakes part of
 * /proc, or a read cut short yields undefined (or fewer entries), and the sample simply lacks
 * the field that depended on it.
 */
import type { CpuTimes, DiskCounters } from '../telemetry/counters.js'

/** A non-negative finite number, or undefined. Counters are integers but we accept any number. */
function num (s: string | undefined): number | undefined {
  if (s === undefined || !/^\d+(\.\d+)?$/.test(s)) return undefined
  const n = Number(s)
  return Number.isFinite(n) ? n : undefined
}

/**
 * The aggregate `cpu` line of /proc/stat: `cpu user nice system idle iowait irq softirq steal
 * guest guest_nice` (jiffies). guest and guest_nice are already counted in user and nice, so
 * they are left out of the total. Kernels before 2.6 have only the first four columns.
 */
export function parseProcStat (text: string): CpuTimes | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith('cpu ')) continue
    const cols = line.trim().split(/\s+/).slice(1, 9).map(num)
    if (cols.length < 4 || cols.some(c => c === undefined)) return undefined
    const v = cols as number[]
    const total = v.reduce((a, b) => a + b, 0)
    return { idle: (v[3] as number) + (v[4] ?? 0), total }
  }
  return undefined
}

/**
 * `some avg10` of /proc/pressure/memory, in percent (0-100): the share of the last 10 s in which
 * at least one task was stalled waiting for memory.
 *
 *   some avg10=1.53 avg60=0.87 avg300=0.22 total=123456
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 */
export function parsePsiSomeAvg10 (text: string): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith('some ')) continue
    const m = /(?:^|\s)avg10=(\d+(?:\.\d+)?)(?:\s|$)/.exec(line)
    const v = num(m?.[1])
    return v !== undefined && v <= 100 ? v : undefined
  }
  return undefined
}

export interface MemInfo {
  totalBytes: number
  availableBytes: number
  /** False when MemAvailable was missing (kernels before 3.14) and was estimated. */
  exact: boolean
}

/**
 * MemTotal and MemAvailable from /proc/meminfo. Kernels before 3.14 have no MemAvailable; its
 * usual estimate is MemFree + Buffers + Cached (what `free` showed as "free" then).
 */
export function parseMeminfo (text: string): MemInfo | undefined {
  const kb = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line)
    if (m !== null) kb.set(m[1] as string, Number(m[2]))
  }
  const total = kb.get('MemTotal')
  if (total === undefined || !(total > 0)) return undefined
  const available = kb.get('MemAvailable')
  if (available !== undefined) return { totalBytes: total * 1024, availableBytes: available * 1024, exact: true }
  const free = kb.get('MemFree')
  if (free === undefined) return undefined
  const estimate = free + (kb.get('Buffers') ?? 0) + (kb.get('Cached') ?? 0)
  return { totalBytes: total * 1024, availableBytes: Math.min(estimate, total) * 1024, exact: false }
}

/**
 * /proc/diskstats, one device per line:
 *
 *   major minor name reads merged sectors ms_reading writes merged sectors ms_writing
 *   in_flight ms_doing_io weighted_ms [discard and flush columns on newer kernels]
 *
 * Lines with fewer than 14 columns (partitions on 2.6.25-era kernels) or non-numeric counters
 * are skipped.
 */
export function parseDiskstats (text: string): DiskCounters[] {
  const out: DiskCounters[] = []
  for (const line of text.split('\n')) {
    const c = line.trim().split(/\s+/)
    if (c.length < 14) continue
    const name = c[2] as string
    const reads = num(c[3])
    const readMs = num(c[6])
    const writes = num(c[7])
    const writeMs = num(c[10])
    const ioMs = num(c[12])
    if (reads === undefined || readMs === undefined || writes === undefined || writeMs === undefined || ioMs === undefined) continue
    out.push({ device: name, reads, writes, readMs, writeMs, ioMs })
  }
  return out
}
