/**
 * Volume and block identifiers, shared by the proxy, the reference gateway and the planner.
 * They become file names on gateways and DNS labels, so the alphabet is deliberately small:
 * letters, digits, '.', '_' and '-', not starting with '.' (no hidden files, no '..' traversal),
 * at most 128 characters.
 */
export const ID_MAX_LENGTH = 128

export function isValidId (id: string): boolean {
  const n = id.length
  if (n === 0 || n > ID_MAX_LENGTH) return false
  if (id.charCodeAt(0) === 46 /* . */) return false
  for (let i = 0; i < n; i++) {
    const c = id.charCodeAt(i)
    const ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46 || c === 95
    if (!ok) return false
  }
  return true
}

/** The key of a block in maps and in the store: `volume/block` (ids cannot contain '/'). */
export function blockKey (volume: string, block: string): string {
  return volume + '/' + block
}
