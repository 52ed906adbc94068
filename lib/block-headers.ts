/**
 * Headers of the block protocol beyond plain HTTP, shared by ferry (proxy, planner, recovery) and
 * the reference gateway; gateway/README.md "Written-at" and "Tombstones" describe them for
 * gateway authors. Other kinds ignore them (nginx: `Date` plays the written-at part, see
 * upstream/kinds.ts).
 */

/**
 * When a block's bytes were first written, ms since the epoch. A PUT may send it (a migration's
 * copy keeps its original's time); GET and HEAD answer with it. A rebuild after the shared store
 * lost its data takes the copy written last, so a copy must never look newer than its original.
 */
export const WRITTEN_AT_HEADER = 'x-ferry-written-at'

/**
 * On a DELETE: `1` asks the gateway to remember the delete (a client's delete, not a migration's
 * clean-up), so a rebuild does not bring back a copy some other gateway still holds.
 */
export const TOMBSTONE_HEADER = 'x-ferry-tombstone'

/** A written-at header's value: a non-negative integer of ms since the epoch, or null when absent or not one. */
export function parseWrittenAt (value: string | string[] | undefined): number | null {
  if (typeof value !== 'string' || !/^\d{1,15}$/.test(value)) return null
  return Number(value)
}
