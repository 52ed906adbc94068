import net from 'node:net'

/** A TCP port that was free a moment ago on 127.0.0.1 (the kernel picks it). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      if (addr === null || typeof addr === 'string') return reject(new Error('no address'))
      srv.close(() => resolve(addr.port))
    })
  })
}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Polls `fn` until it returns truthy or `timeoutMs` passes; throws with `what` on timeout. */
export async function waitFor<T> (fn: () => T | Promise<T>, what: string, timeoutMs = 15_000, stepMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) { last = err }
    await sleep(stepMs)
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}
