import { FerryError } from '../../lib/errors.js'
import type { FleetGateway } from './fleet.js'
import { describeGatewayError } from '../../upstream/connect.js'
import { writtenAtOf } from '../../upstream/kinds.js'

/** What a HEAD said about a block on one gateway. `status` 0: the gateway did not answer. */
export interface HeadResult {
  status: number
  etag: string | null
  size: number | null
  /** When the bytes were first written (upstream/kinds.ts writtenAtOf), when the answer says. */
  writtenAt: number | null
  /** Why there is no status (connection error code), when status is 0. */
  error?: string
}

/**
 * HEAD of a block. Never throws for a gateway failure (status 0 with the reason): callers decide
 * whether a silent gateway means "retry" or "give up". Throws only the signal's reason on abort.
 */
export async function headBlock (g: FleetGateway | undefined, path: string, timeoutMs: number, signal?: AbortSignal): Promise<HeadResult> {
  if (g === undefined) return { status: 0, etag: null, size: null, writtenAt: null, error: 'not configured' }
  const timeout = AbortSignal.timeout(timeoutMs)
  try {
    const res = await g.pool.request({ method: 'HEAD', path, signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]) })
    await res.body.dump()
    const etag = res.headers.etag
    const len = res.headers['content-length']
    return { status: res.statusCode, etag: typeof etag === 'string' ? etag : null, size: typeof len === 'string' ? Number(len) : null, writtenAt: writtenAtOf(g.kind, res.headers) }
  } catch (err) {
    if (signal?.aborted === true) throw signal.reason
    return { status: 0, etag: null, size: null, writtenAt: null, error: describeGatewayError(err) }
  }
}

/**
 * DELETE of one copy; 2xx and 404 (already gone) are success. Resolves whether there was a copy
 * to delete. A gateway not configured has nothing to delete.
 */
export async function deleteBlock (g: FleetGateway | undefined, path: string, timeoutMs: number): Promise<boolean> {
  if (g === undefined) return false
  const res = await g.pool.request({ method: 'DELETE', path, signal: AbortSignal.timeout(Math.max(1, Math.floor(timeoutMs))) })
  await res.body.dump()
  if (res.statusCode !== 404 && (res.statusCode < 200 || res.statusCode >= 300)) {
    const message = `DELETE ${path} on ${g.id} answered ${res.statusCode}`
    throw res.statusCode >= 500 ? new FerryError('FERRY_COPY_TARGET_FAILED', message, 502) : new FerryError('FERRY_LOCATION_CHANGED', message, 409)
  }
  return res.statusCode !== 404
}

/** setTimeout as a promise that rejects with the signal's own reason (timers/promises would wrap it). */
export function delay (ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return Promise.reject(signal.reason as Error)
  return new Promise((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason as Error) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
