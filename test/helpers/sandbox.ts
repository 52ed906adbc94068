import type { Test } from 'tap'
import { freePort, waitFor } from './net.js'
import { spawnFerry, type FerryProcess } from './process.js'

export const SANDBOX_TOKEN = 'sandbox-admin-token-change-me'

export interface RunningSandbox {
  ferry: FerryProcess
  proxy: string
  admin: string
}

/** `ferry sandbox` as its own process on free ports (the real CLI, what a user runs); stopped in teardown. */
export async function startSandbox (t: Test, args: string[] = [], env: Record<string, string> = {}): Promise<RunningSandbox> {
  const [proxy, admin, g1, g2, g3, dnsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]) as [number, number, number, number, number, number]
  const ferry = spawnFerry(['sandbox', '--proxy-port', String(proxy), '--admin-port', String(admin), '--dns-port', String(dnsPort), '--gateway-ports', `${g1},${g2},${g3}`, ...args], env)
  t.teardown(() => ferry.stop('SIGKILL'))
  await waitFor(() => ferry.output().includes('Ctrl-C stops everything'), 'the sandbox banner', 30_000, 100)
  return { ferry, proxy: `http://127.0.0.1:${proxy}`, admin: `http://127.0.0.1:${admin}` }
}
