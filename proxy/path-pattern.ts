import { isValidId } from '../lib/ids.js'

export interface BlockAddress { volume: string, block: string }

/**
 * Reads volume and block out of a request target according to `proxy.pathPattern`
 * (e.g. `/{volume}/{block}` or `/v1/{volume}/blocks/{block}`). Returns undefined for anything
 * that does not match or carries an invalid id, so the caller answers one clean 400.
 *
 * The pattern is split into segments once; matching walks the target without a regex and only
 * decodes segments that contain '%', so the common case allocates just the two id strings.
 */
export class PathPattern {
  private readonly segments: ReadonlyArray<string>
  private readonly volumeIndex: number
  private readonly blockIndex: number

  constructor (readonly pattern: string) {
    this.segments = pattern.slice(1).split('/')
    this.volumeIndex = this.segments.indexOf('{volume}')
    this.blockIndex = this.segments.indexOf('{block}')
    if (this.volumeIndex < 0 || this.blockIndex < 0) throw new Error(`path pattern ${pattern} needs {volume} and {block}`)
  }

  match (target: string): BlockAddress | undefined {
    if (target.charCodeAt(0) !== 47 /* / */) return undefined
    const q = target.indexOf('?')
    const end = q < 0 ? target.length : q
    let volume: string | undefined
    let block: string | undefined
    let start = 1
    for (let i = 0; i < this.segments.length; i++) {
      let slash = target.indexOf('/', start)
      if (slash < 0 || slash > end) slash = end
      // Too few segments, or more than the pattern has.
      if ((slash === end) !== (i === this.segments.length - 1)) return undefined
      let seg = target.slice(start, slash)
      if (seg.includes('%')) {
        try { seg = decodeURIComponent(seg) } catch { return undefined }
      }
      if (i === this.volumeIndex) volume = seg
      else if (i === this.blockIndex) block = seg
      else if (seg !== this.segments[i]) return undefined
      start = slash + 1
    }
    // isValidId rejects '/', '..', '.'-prefixed and empty ids, so a decoded "%2e%2e" or "a%2fb"
    // can never reach a gateway as a path.
    if (volume === undefined || block === undefined || !isValidId(volume) || !isValidId(block)) return undefined
    return { volume, block }
  }

  /** The path a gateway expects for the block (the gateway protocol is always /{volume}/{block}). */
  static gatewayPath (volume: string, block: string): string {
    return '/' + volume + '/' + block
  }
}
