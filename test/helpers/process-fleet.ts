import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { request } from 'undici'
import { freePort, waitFor } from './net.js'
import { spawnFerry, type FerryProcess } from './process.js'

/**
 * A fleet of real processes for the fault tests (test/fault/): reference gateways started as
 * `ferry gateway` on free ports, one per site, in a temp dir, and `ferry` processes started
 * from config files written there. Everything is stopped at teardown, newest first (SIGTERM,
 * SIGKILL after 3 s), and the dir removed.
 */
export interface ProcessFleet {
  readonly dir: string
  readonly gwPorts: number[]
  /** The running process of each gateway (replaced by a restart). */
  readonly gateways: FerryProcess[]
  /** Starts gateway i (again, after a kill) on its port and its directory, with its old files. */
  startGateway: (i: number) => FerryProcess
  /** Waits for gateway i to answer /healthz. */
  gatewayUp: (i: number) => Promise<void>
  /** `ferry start --config <written> --roles <roles>`, tracked for teardown. */
  startFerry: (name: string, config: Record<string, unknown>, roles: string) => FerryProcess
  /** The `sites` and `gateways` sections every process of the fleet shares: gw{i+1} at site-{a,b,c,…}. */
  topology: () => { sites: Array<{ name: string, subnets: string[] }>, gateways: Array<{ id: string, url: string, site: string }> }
}

export async function startProcessFleet (t: Test, name: string, gatewayCount = 3): Promise<ProcessFleet> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ferry-${name}-`))
  const procs: FerryProcess[] = []
  t.teardown(async () => {
    for (const p of procs.reverse()) await p.stop('SIGTERM', 3000)
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const gwPorts: number[] = []
  for (let i = 0; i < gatewayCount; i++) gwPorts.push(await freePort())
  const siteOf = (i: number): string => `site-${String.fromCharCode(97 + i)}`
  const gateways: FerryProcess[] = []
  const fleet: ProcessFleet = {
    dir,
    gwPorts,
    gateways,
    startGateway: i => {
      const p = spawnFerry(['gateway', '--dir', path.join(dir, `gw${i + 1}`), '--port', String(gwPorts[i]), '--host', '127.0.0.1'])
      procs.push(p)
      gateways[i] = p
      return p
    },
    gatewayUp: async i => {
      await waitFor(async () => (await request(`http://127.0.0.1:${gwPorts[i]}/healthz`)).statusCode < 500, `gateway gw${i + 1} up`, 30_000)
        .catch(err => { throw new Error(`${(err as Error).message}; its output: ${gateways[i]?.output() ?? ''}`) })
    },
    startFerry: (file, config, roles) => {
      const configFile = path.join(dir, `${file}.yaml`)
      fs.writeFileSync(configFile, JSON.stringify(config))
      const p = spawnFerry(['start', '--config', configFile, '--roles', roles])
      procs.push(p)
      return p
    },
    topology: () => ({
      sites: gwPorts.map((_, i) => ({ name: siteOf(i), subnets: [`127.0.${i}.0/24`] })),
      gateways: gwPorts.map((port, i) => ({ id: `gw${i + 1}`, url: `http://127.0.0.1:${port}`, site: siteOf(i) }))
    })
  }
  for (let i = 0; i < gatewayCount; i++) fleet.startGateway(i)
  for (let i = 0; i < gatewayCount; i++) await fleet.gatewayUp(i)
  return fleet
}
