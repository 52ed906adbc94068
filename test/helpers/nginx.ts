import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { access, constants as fsConstants, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { freePort, sleep } from './net.js'

/**
 * nginx as a third-party gateway: its WebDAV module (`dav_methods PUT DELETE MOVE`) speaks the same
 * GET/HEAD/PUT/DELETE subset as the reference gateway, and JSON autoindex lists its blocks
 * (the config upstream/README.md asks of users). Each instance runs in the foreground
 * (`daemon off`, single process) in a private temp prefix with its own config, pid file, error log,
 * temp dirs and document root, so tests can run several side by side and clean up completely.
 */

export type NginxProbe =
  | { ok: true, bin: string, version: string }
  | { ok: false, reason: string }

export interface NginxGateway {
  /** e.g. http://127.0.0.1:40123 */
  url: string
  port: number
  /** Where blocks land: `<root>/<volume>/<block>`. */
  root: string
  /** Stops nginx (SIGQUIT, then SIGKILL if it lingers) and removes the prefix. Safe to call twice. */
  stop: () => Promise<void>
}

export interface NginxOptions {
  /** client_max_body_size; default 64m. */
  maxBodySize?: string
  /**
   * Directory listings as JSON (`autoindex on; autoindex_format json;`), which a `webdav`
   * gateway's inventory needs (upstream/README.md); default true. False: what a user who left
   * them out has.
   */
  autoindex?: boolean
  /**
   * `dav_methods`; default `PUT DELETE MOVE`, the config upstream/README.md asks of users (MOVE:
   * the planner's copies land by rename, so a newer write proxies sent meanwhile is kept).
   * `PUT DELETE`: what a user who left MOVE out has.
   */
  davMethods?: string
}

const execFileP = promisify(execFile)
let probe: Promise<NginxProbe> | undefined

/**
 * Whether nginx with the WebDAV module can be used here. Looks at $NGINX_BIN, /usr/sbin/nginx,
 * then $PATH. Tests skip with `reason` when it is not: `{ skip: p.ok ? false : p.reason }`.
 */
export async function nginxAvailable (): Promise<NginxProbe> {
  probe ??= (async (): Promise<NginxProbe> => {
    const candidates = [process.env.NGINX_BIN, '/usr/sbin/nginx', ...(process.env.PATH ?? '').split(':').filter(Boolean).map(d => path.join(d, 'nginx'))]
    for (const bin of candidates) {
      if (bin === undefined || bin === '') continue
      try {
        await access(bin, fsConstants.X_OK)
      } catch {
        continue
      }
      // `nginx -V` prints to stderr.
      const { stderr } = await execFileP(bin, ['-V'])
      if (!stderr.includes('--with-http_dav_module')) return { ok: false, reason: `${bin} was built without the WebDAV module (--with-http_dav_module)` }
      const version = /nginx\/(\S+)/.exec(stderr)?.[1] ?? 'unknown'
      return { ok: true, bin, version }
    }
    return { ok: false, reason: 'nginx not installed (apt-get install -y nginx, or set NGINX_BIN)' }
  })()
  return await probe
}

/** Children still running, killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>()
let exitHookInstalled = false

export async function startNginxGateway (opts: NginxOptions = {}): Promise<NginxGateway> {
  const p = await nginxAvailable()
  if (!p.ok) throw new Error(`nginx unavailable: ${p.reason}`)
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.once('exit', () => { for (const c of running) c.kill('SIGKILL') })
  }
  const prefix = await mkdtemp(path.join(os.tmpdir(), 'ferry-nginx-'))
  const root = path.join(prefix, 'data')
  for (const d of [root, 'client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs']) {
    await mkdir(path.resolve(prefix, d), { recursive: true })
  }
  // Another process can take the port between freePort() and nginx's bind: retry a few times.
  let lastError: unknown
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    await writeFile(path.join(prefix, 'nginx.conf'), config(prefix, root, port, opts))
    try {
      const child = await launch(p.bin, prefix, port)
      let stopped: Promise<void> | undefined
      const stop = async (): Promise<void> => {
        stopped ??= (async () => {
          await terminate(child)
          await rm(prefix, { recursive: true, force: true })
        })()
        await stopped
      }
      return { url: `http://127.0.0.1:${port}`, port, root, stop }
    } catch (err) {
      lastError = err
      if (!String(err).includes('Address already in use')) break
    }
  }
  await rm(prefix, { recursive: true, force: true })
  throw lastError
}

function config (prefix: string, root: string, port: number, opts: NginxOptions): string {
  const p = (name: string): string => path.join(prefix, name)
  // `user` only means something (and is only allowed without a warning) when started as root;
  // as root, workers would otherwise switch to `nobody` and be unable to write the temp root.
  const user = process.getuid?.() === 0 ? 'user root;\n' : ''
  return `${user}daemon off;
master_process off;
worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('logs/error.log')} warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path ${p('client_body')};
  proxy_temp_path ${p('proxy')};
  fastcgi_temp_path ${p('fastcgi')};
  uwsgi_temp_path ${p('uwsgi')};
  scgi_temp_path ${p('scgi')};
  client_max_body_size ${opts.maxBodySize ?? '64m'};
  keepalive_timeout 5s;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location / {
      dav_methods ${opts.davMethods ?? 'PUT DELETE MOVE'};
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      default_type application/octet-stream;${opts.autoindex === false ? '' : `
      autoindex on;
      autoindex_format json;`}
    }
  }
}
`
}

/** Spawns nginx and resolves once it accepts connections; rejects with its error log if it exits. */
async function launch (bin: string, prefix: string, port: number): Promise<ChildProcess> {
  const errorLog = path.join(prefix, 'logs', 'error.log')
  // -e: the startup error log, before the config's error_log is read (the built-in default may be
  // a system path that is not writable, or shared with other instances).
  const child = spawn(bin, ['-p', prefix, '-c', path.join(prefix, 'nginx.conf'), '-e', errorLog], { stdio: ['ignore', 'ignore', 'pipe'] })
  running.add(child)
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => { running.delete(child); resolve(code) }))
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const code = await Promise.race([exited, sleep(25).then(() => 'running' as const)])
    if (code !== 'running') {
      const log = await readFile(errorLog, 'utf8').catch(() => '')
      throw new Error(`nginx exited with ${String(code)}: ${(stderr + log).trim()}`)
    }
    if (await canConnect(port)) return child
  }
  await terminate(child)
  throw new Error(`nginx did not start listening on ${port} within 5 s: ${stderr.trim()}`)
}

async function canConnect (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

async function terminate (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill('SIGQUIT') // graceful: finish in-flight requests
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
  await exited
  clearTimeout(timer)
  running.delete(child)
}
