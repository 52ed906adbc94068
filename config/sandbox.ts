import type { FerryConfigInput } from './schema.js'

export interface SandboxPorts {
  proxy: number
  admin: number
  dns: number
  gateways: readonly number[]
}

/** The sandbox defaults of DESIGN.md. */
export const SANDBOX_PORTS: SandboxPorts = { proxy: 8080, admin: 9090, dns: 5353, gateways: [9001, 9002, 9003] }

export const SANDBOX_SITES = ['site-a', 'site-b', 'site-c'] as const

/** The sandbox's S3 access key, printed at start: loopback only, for trying the S3 clients. */
export const SANDBOX_S3_KEY = { accessKeyId: 'ferry-sandbox', secret: 'ferry-sandbox-secret-change-me' } as const

/**
 * The embedded config `npm start` runs on: three gateways on loopback, one per site. Loopback
 * is split into three /24s so that a curl with `--interface 127.0.0.2` (or X-Forwarded-For from
 * the trusted 127.0.0.1) shows up as a different site in the affinity map.
 */
export function sandboxConfig (ports: SandboxPorts = SANDBOX_PORTS): FerryConfigInput {
  return {
    log: { level: 'info', format: 'auto' },
    sites: SANDBOX_SITES.map((name, i) => ({
      name,
      subnets: [`127.0.${i}.0/24`, ...(i === 0 ? ['::1/128'] : [])],
      edges: ['127.0.0.1']
    })),
    gateways: ports.gateways.map((port, i) => ({
      id: `gw${i + 1}`,
      url: `http://127.0.0.1:${port}`,
      site: SANDBOX_SITES[i % SANDBOX_SITES.length] as string,
      capacityBytes: 0
    })),
    proxy: { listen: { host: '127.0.0.1', port: ports.proxy }, trustedProxies: ['127.0.0.1/32'] },
    admin: { listen: { host: '127.0.0.1', port: ports.admin }, token: 'sandbox-admin-token-change-me' },
    health: { active: { intervalMs: 1000 } },
    sessions: { enabled: true },
    dns: { listen: [{ address: '127.0.0.1', port: ports.dns }], zone: 'sandbox.ferry.test' },
    // Quick enough to watch: reads from site-b move a block to gw2 within ~10 s.
    planner: {
      latency: { sameSiteMs: 2, defaultMs: 80 },
      rebalancer: { intervalMs: 10_000, minDwellMs: 60_000, minScore: 3 },
      migration: { gracePeriodMs: 5_000 }
    },
    recorder: { halfLifeS: 300 },
    // Every block on two of the three gateways: one can crash without a failed request.
    replication: { factor: 2, minInSync: 1, downAfterMs: 10_000 },
    // Quick enough to watch: a model once 5 blocks have history, retrained every minute.
    placement: { minExamples: 5, retrainIntervalMs: 60_000, publishIntervalMs: 5_000 },
    // Signed requests need the key below; unsigned ones (curl, the plain block API) stay open on
    // every volume, as the sandbox has always been. A real config lists its volumes here, or none.
    s3: { credentials: [{ ...SANDBOX_S3_KEY, volumes: ['*'] }], anonymous: ['*'] }
  }
}
