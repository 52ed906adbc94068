import { ecsBodyLength, writeEcsOption, type ClientSubnet } from './ecs.js'

/**
 * The OPT pseudo-record of a response (RFC 6891 §6.1.2), written by hand rather than through
 * dns2 so that the Client Subnet option is ours (see ecs.ts) and so that the fast path can
 * append it to a cached answer without encoding anything else.
 *
 *   owner: root (1 octet 0) | TYPE 41 | CLASS = our UDP payload size
 *   TTL: extended RCODE (8) | VERSION (8) | DO (1) | Z (15) | RDLENGTH | options
 */

export const OPT_FIXED_LENGTH = 11

export interface OptOut {
  /** UDP payload size we advertise. */
  readonly payload: number
  /** Upper 8 bits of a 12-bit RCODE (1 for BADVERS), the lower 4 go in the header. */
  readonly extendedRcode: number
  readonly dnssecOk: boolean
  /** The query's client subnet, echoed with `scope`. */
  readonly ecs: ClientSubnet | undefined
  readonly scope: number
}

export function optLength (ecs: ClientSubnet | undefined): number {
  return OPT_FIXED_LENGTH + (ecs === undefined ? 0 : 4 + ecsBodyLength(ecs.sourcePrefix))
}

/** Writes the OPT record at `offset`; returns the offset after it. `out` must have room for optLength(opt.ecs). */
export function writeOpt (out: Buffer, offset: number, opt: OptOut): number {
  out[offset] = 0
  out.writeUInt16BE(41, offset + 1)
  out.writeUInt16BE(opt.payload, offset + 3)
  out[offset + 5] = opt.extendedRcode
  out[offset + 6] = 0 // version 0: the only one there is
  out[offset + 7] = opt.dnssecOk ? 0x80 : 0
  out[offset + 8] = 0
  const rdlength = opt.ecs === undefined ? 0 : 4 + ecsBodyLength(opt.ecs.sourcePrefix)
  out.writeUInt16BE(rdlength, offset + 9)
  if (opt.ecs === undefined) return offset + OPT_FIXED_LENGTH
  return writeEcsOption(out, offset + OPT_FIXED_LENGTH, opt.ecs, opt.scope)
}
