/** Fixture texts shared by the agent and planner telemetry tests. */

/** A node_exporter response, cut down to what the scrape reads plus some neighbours. */
export function nodeExporterText (o: { idle: number, user: number, iowait?: number, avail: number, psi?: number, io: number, rt: number, wt: number, r: number, w: number }): string {
  return `# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} ${o.idle / 2}
node_cpu_seconds_total{cpu="0",mode="iowait"} ${(o.iowait ?? 0) / 2}
node_cpu_seconds_total{cpu="0",mode="user"} ${o.user / 2}
node_cpu_seconds_total{cpu="1",mode="idle"} ${o.idle / 2}
node_cpu_seconds_total{cpu="1",mode="iowait"} ${(o.iowait ?? 0) / 2}
node_cpu_seconds_total{cpu="1",mode="user"} ${o.user / 2}
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes ${o.avail}
node_memory_MemTotal_bytes 1.6e+10
node_memory_MemFree_bytes 1e+09
${o.psi === undefined ? '' : `node_pressure_memory_waiting_seconds_total ${o.psi}\nnode_pressure_memory_stalled_seconds_total 0`}
node_disk_io_time_seconds_total{device="nvme0n1"} ${o.io}
node_disk_read_time_seconds_total{device="nvme0n1"} ${o.rt}
node_disk_write_time_seconds_total{device="nvme0n1"} ${o.wt}
node_disk_reads_completed_total{device="nvme0n1"} ${o.r}
node_disk_writes_completed_total{device="nvme0n1"} ${o.w}
node_disk_io_time_seconds_total{device="sdb"} 5
node_disk_read_time_seconds_total{device="sdb"} 1
node_disk_write_time_seconds_total{device="sdb"} 1
node_disk_reads_completed_total{device="sdb"} 10
node_disk_writes_completed_total{device="sdb"} 10
node_disk_io_time_seconds_total{device="loop3"} 99999
node_load1 0.42
go_gc_duration_seconds{quantile="0.5"} NaN
`
}
