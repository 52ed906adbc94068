import net from 'node:net'

/**
 * A TCP port that was free a moment ago on 127.0.0.1, for a listener that must be told its port
 * before it starts. It is drawn at random below the kernel's ephemeral range (32768–60999 on
 * Linux): a port the kernel picked for us is free again the moment we close it, and the next
 * outgoing connection of any test running in parallel may take it as its source port, so the
 * listener we meant it for fails with EADDRINUSE (seen in CI). Ports below the range are only
 * ever taken by explicit binds.
 */
export async function freePort (): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    if (await canListen(port)) return port
  }
  throw new Error('no free port in 20000–31999 after 50 tries')
}

async function canListen (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
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
