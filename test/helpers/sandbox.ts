import fs from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'
import { request } from 'undici'
import { parse, stringify } from 'yaml'
import { freePort, waitFor } from './net.js'
import { FERRY_BIN, runCommand, spawnFerry, type FerryProcess } from './process.js'

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

export interface ConfiguredSandbox<C> {
  ferry: FerryProcess
  /** The config it runs, as `edit` left it. */
  config: C
  proxyPort: number
  adminPort: number
}

/**
 * `ferry sandbox` on its own embedded config changed by `edit`, as a user does it: `ferry
 * sandbox --print-config` on free ports, the YAML edited and written to `dir`, then `ferry
 * sandbox --config` until /readyz answers 200; stopped in teardown.
 */
export async function startConfiguredSandbox<C> (t: Test, dir: string, edit: (config: C) => void): Promise<ConfiguredSandbox<C>> {
  const [proxyPort, adminPort, dnsPort, g1, g2, g3] = await Promise.all([freePort(), freePort(), freePort({ udp: true }), freePort(), freePort(), freePort()])
  const printed = await runCommand(process.execPath, [FERRY_BIN, 'sandbox', '--print-config', '--proxy-port', String(proxyPort), '--admin-port', String(adminPort), '--dns-port', String(dnsPort), '--gateway-ports', `${g1},${g2},${g3}`], {}, 30_000)
  if (printed.code !== 0) throw new Error(`ferry sandbox --print-config exited ${printed.code}: ${printed.stderr}`)
  const config = parse(printed.stdout) as C
  edit(config)
  const configFile = path.join(dir, 'sandbox.yaml')
  fs.writeFileSync(configFile, stringify(config))
  const ferry = spawnFerry(['sandbox', '--config', configFile])
  t.teardown(() => ferry.stop('SIGKILL'))
  await waitFor(async () => (await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode === 200, 'the sandbox ready', 60_000, 200)
    .catch(err => { throw new Error(`${(err as Error).message}; its output: ${ferry.output()}`) })
  return { ferry, config, proxyPort, adminPort }
}
