/**
 * The telemetry agent (`ferry agent`), and the parsers and field list the planner's ingestion
 * and node_exporter scrape share with it. See README.md.
 */
export { agentCommand, parseAgentArgs, AGENT_USAGE, type AgentCommandOptions } from './command.js'
export { TelemetryAgent, type TelemetryAgentOptions, type AgentStatus } from './agent.js'
export { Sampler, type SamplerOptions, type SampleResult, type Source } from './sampler.js'
export { Pusher, backoffDelay, type PusherOptions } from './pusher.js'
export { AgentMetrics } from './metrics.js'
export { FIELDS, FIELD_NAMES, AGENT_FIELDS, HEALTH_SIGNALS, MAX_MS, fieldRange, type AgentSample, type FieldName, type FieldKind, type FieldSpec } from './fields.js'
export { parseProcStat, parsePsiSomeAvg10, parseMeminfo, parseDiskstats, type MemInfo } from './procfs.js'
export { cpuUtilisation, diskUsage, memoryUsed, type CpuTimes, type DiskCounters, type DiskUsage } from './counters.js'
export { parseExposition, nodeSnapshot, nodeExporterFields, NODE_EXPORTER_METRICS, type Exposition, type Series, type NodeSnapshot } from './node-exporter.js'
export { parsePeer, tcpConnectRtt, httpProbe, type Peer, type ProbeResult } from './probes.js'
