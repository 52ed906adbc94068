/** ferry's authoritative DNS: see README.md in this folder. */
export { AuthoritativeServer, type AuthoritativeServerOptions, type DnsStatus, type ListenerStatus } from './server.js'
export { dnsSectionSchema, parseDnsConfig, type DnsConfig, type DnsConfigInput } from './config.js'
export type { DnsChange, DnsView, EdgeSet, SrvTarget } from './view.js'
export { DnsServerError, DnsWireError, type WireErrorCode } from './errors.js'
