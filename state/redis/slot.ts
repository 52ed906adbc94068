/**
 * Redis Cluster key → hash slot (CRC16/XMODEM of the hash tag, mod 16384), as the server computes
 * it (`CLUSTER KEYSLOT`). Used to group a mergeAccess batch so that each script call's keys share
 * one slot. ioredis has the same function in its `cluster-key-slot` dependency; it is not a
 * dependency of ours, and this is twenty lines.
 */

export const SLOTS = 16384

const TABLE = new Uint16Array(256)
for (let i = 0; i < 256; i++) {
  let c = i << 8
  for (let j = 0; j < 8; j++) c = (c & 0x8000) !== 0 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff
  TABLE[i] = c
}

function crc16 (bytes: Uint8Array, start: number, end: number): number {
  let crc = 0
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!
  return crc
}

/** The slot of `key`: only the part between the first `{` and the next `}` counts, if non-empty. */
export function keySlot (key: string): number {
  const bytes = Buffer.from(key, 'utf8')
  let start = 0
  let end = bytes.length
  const open = bytes.indexOf(0x7b) // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1) // }
    if (close > open + 1) {
      start = open + 1
      end = close
    }
  }
  return crc16(bytes, start, end) % SLOTS
}
