import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { ReferenceGateway, type GatewayOptions } from '../../gateway/gateway.js'

export interface Gateways {
  gateways: ReferenceGateway[]
  /** Data URLs, in the same order. */
  urls: string[]
  /** Stops every gateway (killed ones too) and removes their directories. Safe to call twice. */
  stopAll: () => Promise<void>
}

/**
 * Starts `n` in-process reference gateways, each on its own free port (the kernel picks: port 0,
 * so no race with other test processes) and its own temporary directory, with ids `gw1`…`gwN`.
 * Use with `t.teardown(g.stopAll)`.
 */
export async function startGateways (n: number, opts: Partial<Omit<GatewayOptions, 'dir' | 'port' | 'id'>> = {}): Promise<Gateways> {
  const gateways: ReferenceGateway[] = []
  const dirs: string[] = []
  let stopped = false
  const stopAll = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    // kill, not stop: a test that left a stall or a slow request behind must not slow teardown.
    await Promise.all(gateways.map(g => g.kill()))
    await Promise.all(dirs.map(d => rm(d, { recursive: true, force: true })))
  }
  try {
    for (let i = 1; i <= n; i++) {
      const dir = await mkdtemp(path.join(os.tmpdir(), `ferry-gw${i}-`))
      dirs.push(dir)
      const g = new ReferenceGateway({ ...opts, id: `gw${i}`, dir, port: 0 })
      gateways.push(g)
      await g.start()
    }
  } catch (err) {
    await stopAll()
    throw err
  }
  return { gateways, urls: gateways.map(g => g.url), stopAll }
}
