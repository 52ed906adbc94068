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

/**
 * Digests on a PUT (gateway/README.md "Digests"). A gateway that stores the bytes checks them
 * where it hashes them anyway, instead of the proxy hashing every body a second time:
 * - `Content-Digest: sha-256=:<base64>:` (RFC 9530) and `Content-MD5` (RFC 1864) on the request:
 *   the body must have them, or nothing is stored (400 `DIGEST_MISMATCH`, with
 *   DIGEST_MISMATCH_HEADER naming the algorithm);
 * - `Want-Repr-Digest: md5=1` asks for the MD5 too; the 2xx answer carries
 *   `Repr-Digest: sha-256=:…:[, md5=:…:]` of what was stored.
 */
export const DIGEST_MISMATCH_HEADER = 'x-ferry-digest-mismatch'

/** The members of an RFC 9530 digest field (`alg=:base64:`, comma-separated), by lower-case algorithm. */
export function parseDigestField (value: string | string[] | undefined): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  if (value === undefined) return out
  for (const line of Array.isArray(value) ? value : [value]) {
    for (const member of line.split(',')) {
      const m = /^\s*([A-Za-z0-9-]+)=:([A-Za-z0-9+/]*={0,2}):\s*$/.exec(member)
      if (m !== null) out.set((m[1] as string).toLowerCase(), Buffer.from(m[2] as string, 'base64'))
    }
  }
  return out
}

/** An RFC 9530 digest field of these (algorithm, raw digest) pairs. */
export function digestField (digests: ReadonlyArray<readonly [string, Buffer]>): string {
  return digests.map(([alg, d]) => `${alg}=:${d.toString('base64')}:`).join(', ')
}
