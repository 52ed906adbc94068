import type { ServerResponse } from 'node:http'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AdminServer } from '../admin/server.js'
import { FerryError } from '../lib/errors.js'

interface Asset { type: string, body: Buffer }

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8'
}

/**
 * The page only talks to this listener: no CDN, no inline script. uPlot sets chart sizes through
 * element styles, hence 'unsafe-inline' for styles alone.
 */
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-cache'
}

/**
 * The static files live in console/static/ of the package, beside console/ in the source tree and
 * two levels up from dist/console/ once built: both are tried, so tests (from source) and the
 * installed package (from dist) serve the same files.
 */
function staticDir (): string {
  const here = path.dirname(fileURLToPath(import.meta.url))
  for (const dir of [path.join(here, 'static'), path.join(here, '..', '..', 'console', 'static')]) {
    if (fs.existsSync(path.join(dir, 'index.html'))) return dir
  }
  throw new Error(`console/static not found from ${here}`)
}

/** Every file the console serves, read once: the set is fixed, so no request path ever reaches the file system. */
function loadAssets (): Map<string, Asset> {
  const dir = staticDir()
  const assets = new Map<string, Asset>()
  for (const name of fs.readdirSync(dir)) {
    const type = TYPES[path.extname(name)]
    if (type !== undefined) assets.set(name, { type, body: fs.readFileSync(path.join(dir, name)) })
  }
  // uPlot from its npm package (a dependency), never from a CDN: the console works on an air-gapped management network.
  const require = createRequire(import.meta.url)
  for (const [name, file] of [['uPlot.iife.min.js', 'uplot/dist/uPlot.iife.min.js'], ['uPlot.min.css', 'uplot/dist/uPlot.min.css']] as const) {
    const type = TYPES[path.extname(name)] as string
    assets.set(name, { type, body: fs.readFileSync(require.resolve(file)) })
  }
  return assets
}

/**
 * The web console on the admin listener: `GET /ui/` (and `/` redirects there). A static page
 * that polls the /v1 JSON API the roles registered; it needs nothing else from the server.
 */
export function registerConsole (admin: AdminServer): void {
  const assets = loadAssets()
  const redirect = ({ res }: { res: ServerResponse }): void => {
    res.writeHead(302, { location: '/ui/', 'content-length': 0 })
    res.end()
  }
  admin.route('GET', '/', redirect)
  admin.route('GET', '/ui', redirect)
  const serve = (name: string, res: ServerResponse): void => {
    const a = assets.get(name)
    if (a === undefined) throw new FerryError('FERRY_NOT_FOUND', `no console file ${name}`, 404)
    res.writeHead(200, { 'content-type': a.type, 'content-length': a.body.length, ...SECURITY_HEADERS })
    res.end(a.body)
  }
  admin.route('GET', '/ui/', ({ res }) => { serve('index.html', res) })
  admin.route('GET', '/ui/:file', ({ params, res }) => { serve(params.file ?? '', res) })
}
