/**
 * Stable error codes of upstream/ (thrown as FerryError; callers match on `code`):
 *
 * - `FERRY_COPY_VERIFY_FAILED` (502): a copied block is not provably the bytes that were sent —
 *   the source's content-hash ETag does not match what was read from it, or the target's
 *   content-hash ETag, digest header or read-back hash does not match what was written to it.
 * - `FERRY_INVENTORY_FAILED` (502): a gateway's blocks cannot be listed — unreachable, an error
 *   status, listing not enabled (nginx without `autoindex on; autoindex_format json;`), or an
 *   answer that is not a listing. `details`: `{ gateway, kind, status? }`.
 */
export const COPY_VERIFY_FAILED = 'FERRY_COPY_VERIFY_FAILED'
export const INVENTORY_FAILED = 'FERRY_INVENTORY_FAILED'
