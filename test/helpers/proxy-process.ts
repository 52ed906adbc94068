import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { request } from 'undici'
import { stringify } from 'yaml'
import { freePort, waitFor } from './net.js'
import { spawnFerry, type FerryProcess } from './process.js'

/**
 * `ferry start` as its own process (the real CLI, with its data-plane tuning) proxying to one
 * gateway, on free ports, with a config file in a temp dir; ready when it returns, stopped and
 * cleaned up in teardown.
 */
export async function startProxyProcess (t: Test, gatewayUrl: string, tmpPrefix: string): Promise<{ ferry: FerryProcess, port: number, adminPort: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const port = await freePort()
  const adminPort = await freePort()
  const file = path.join(dir, 'ferry.yaml')
  fs.writeFileSync(file, stringify({
    log: { level: 'warn' },
    gateways: [{ id: 'gw1', url: gatewayUrl, site: 's' }],
    proxy: { listen: { host: '127.0.0.1', port } },
    admin: { listen: { host: '127.0.0.1', port: adminPort } }
  }))
  const ferry = spawnFerry(['start', '--config', file])
  t.teardown(() => ferry.stop())
  await waitFor(async () => (await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode === 200, 'ferry to be ready', 60_000, 100)
  return { ferry, port, adminPort }
}
