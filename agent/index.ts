/**
 * The telemetry agent (`ferry agent`) and its /proc parsers. The sample fields, the counters →
 * fields rules it shares with the node_exporter path, and the push protocol are telemetry/'s.
 * See README.md.
 */
export { agentCommand, parseAgentArgs, AGENT_USAGE, type AgentCommandOptions } from './command.js'
export { TelemetryAgent, type TelemetryAgentOptions, type AgentStatus } from './agent.js'
export { Sampler, type SamplerOptions, type SampleResult, type Source } from './sampler.js'
export { Pusher, backoffDelay, type PusherOptions } from './pusher.js'
export { AgentMetrics } from './metrics.js'
export { parseProcStat, parsePsiSomeAvg10, parseMeminfo, parseDiskstats, type MemInfo } from './procfs.js'
export { parsePeer, tcpConnectRtt, httpProbe, type Peer, type ProbeResult } from './probes.js'
