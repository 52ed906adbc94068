/**
 * From cumulative kernel counters to sample fields. The agent reads the counters from /proc
 * (agent/procfs.ts) and the planner reads the same counters as node_exporter exports them
 * (node-exporter.ts); both derive the fields here, so the two sources mean the same thing.
 *
 * Every function returns undefined rather than a made-up number when the counters cannot give
 * an answer (no previous snapshot, no time elapsed, a counter that went backwards after a
 * wrap or a reboot).
 */

/** Aggregate CPU time, in any one unit (jiffies from /proc/stat, seconds from node_exporter). */
export interface CpuTimes {
  /** idle + iowait: time the CPUs could have run something and did not. */
  idle: number
  /** Every mode: user, nice, system, idle, iowait, irq, softirq, steal. */
  total: number
}

/** One block device's cumulative counters, times in milliseconds. */
export interface DiskCounters {
  device: string
  reads: number
  writes: number
  readMs: number
  writeMs: number
  /** Time with at least one request in flight (the kernel's io_ticks). */
  ioMs: number
}

export interface DiskUsage {
  device: string
  /** Fraction of the elapsed time the device was busy, in [0, 1]. */
  util: number
  /** Mean time per completed read or write, ms; 0 when none completed. */
  awaitMs: number
}

export function clamp01 (x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x
}

/** CPU utilisation in [0, 1] between two snapshots. */
export function cpuUtilisation (prev: CpuTimes | undefined, cur: CpuTimes | undefined): number | undefined {
  if (prev === undefined || cur === undefined) return undefined
  const total = cur.total - prev.total
  const idle = cur.idle - prev.idle
  if (!(total > 0) || idle < 0) return undefined
  return clamp01((total - idle) / total)
}

/**
 * Devices that are never where a gateway's blocks live (loop mounts of snaps, RAM disks, zram
 * swap, floppies, optical drives). Leaving them out keeps a busy zram from being reported as
 * "the disk"; an operator who really wants one names it with --disk.
 */
const VIRTUAL = /^(loop|ram|zram|fd|sr)\d+$/

/**
 * Utilisation and await of the configured device, or else of the busiest real device over the
 * interval (a gateway's data disk is the one doing the work, and that is the one whose
 * saturation predicts trouble). `elapsedMs` is the wall time between the two snapshots.
 */
export function diskUsage (prev: readonly DiskCounters[] | undefined, cur: readonly DiskCounters[] | undefined, elapsedMs: number, device?: string): DiskUsage | undefined {
  if (prev === undefined || cur === undefined || !(elapsedMs > 0)) return undefined
  const before = new Map(prev.map(d => [d.device, d]))
  let best: DiskUsage | undefined
  let bestBusy = -1
  for (const d of cur) {
    if (device !== undefined ? d.device !== device : VIRTUAL.test(d.device)) continue
    const p = before.get(d.device)
    if (p === undefined) continue
    const busy = d.ioMs - p.ioMs
    const ios = (d.reads - p.reads) + (d.writes - p.writes)
    const waited = (d.readMs - p.readMs) + (d.writeMs - p.writeMs)
    // A negative delta is a wrapped 32-bit counter (older kernels) or a replaced device.
    if (busy < 0 || ios < 0 || waited < 0) continue
    if (busy > bestBusy) {
      bestBusy = busy
      best = { device: d.device, util: clamp01(busy / elapsedMs), awaitMs: ios > 0 ? waited / ios : 0 }
    }
  }
  return best
}

/** 1 - available/total, or undefined when either is missing or nonsense. */
export function memoryUsed (totalBytes: number | undefined, availableBytes: number | undefined): number | undefined {
  if (totalBytes === undefined || availableBytes === undefined || !(totalBytes > 0) || availableBytes < 0) return undefined
  return clamp01((totalBytes - availableBytes) / totalBytes)
}

/** Median of a non-empty list. */
export function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}
