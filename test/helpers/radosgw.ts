import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { access, constants as fsConstants, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { request } from 'undici'
import { freePort, sleep } from './net.js'

/**
 * A real S3 gateway for the `s3` gateway kind: Debian's radosgw (Ceph 16.2) on a private
 * single-node Ceph cluster on loopback — one ceph-mon, one ceph-osd on memstore (objects in RAM),
 * no ceph-mgr, pool size 1, no cephx — all in a temp dir. About 4 s to an answering gateway.
 * Every process runs in the foreground (`-f`) as a child of the test, so stop() ends each one by
 * its PID and removes the dir.
 */

const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph-authtool', 'ceph'] as const
const execFileP = promisify(execFile)

export type RadosgwProbe = { ok: true } | { ok: false, reason: string }

let probe: Promise<RadosgwProbe> | undefined

/** Whether the Ceph binaries are here; tests skip with `reason` when not. */
export async function radosgwAvailable (): Promise<RadosgwProbe> {
  probe ??= (async (): Promise<RadosgwProbe> => {
    const dirs = ['/usr/bin', ...(process.env.PATH ?? '').split(':').filter(Boolean)]
    const missing: string[] = []
    for (const b of BINARIES) {
      let found = false
      for (const d of dirs) {
        if (await access(path.join(d, b), fsConstants.X_OK).then(() => true, () => false)) { found = true; break }
      }
      if (!found) missing.push(b)
    }
    return missing.length === 0 ? { ok: true } : { ok: false, reason: `radosgw not installed (missing ${missing.join(', ')}; apt-get install radosgw ceph-mon ceph-osd)` }
  })()
  return await probe
}

export interface RadosgwGateway {
  /** The S3 endpoint, e.g. http://127.0.0.1:40123 */
  url: string
  accessKeyId: string
  secret: string
  region: string
  /** Stops radosgw, the osd and the mon (SIGTERM, then SIGKILL if one lingers) and removes the dir. Safe to call twice. */
  stop: () => Promise<void>
}

/**
 * Starts a cluster, trying again in a fresh dir (new ports, new fsid) when one fails to come up:
 * on this 2-core machine under load, about one start in five right after another cluster stopped
 * saw its ceph-osd exit at boot ("mon_cmd_maybe_osd_create fail: 'wrong fsid'"), cause not found.
 */
export async function startRadosgw (): Promise<RadosgwGateway> {
  const errors: string[] = []
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce()
    } catch (err) {
      errors.push((err as Error).message)
    }
  }
  throw new Error(`radosgw did not come up in 3 attempts:\n${errors.join('\n---\n')}`)
}

async function startOnce (): Promise<RadosgwGateway> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-rgw-'))
  const procs: ChildProcess[] = []
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    // radosgw first: it holds the cluster's clients.
    for (const p of [...procs].reverse()) await stopProcess(p)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const monPort = await freePort()
    const rgwPort = await freePort()
    const fsid = randomUUID()
    for (const d of ['mon', 'osd', 'rgw', 'run']) await mkdir(path.join(dir, d))
    const conf = path.join(dir, 'ceph.conf')
    await writeFile(conf, `[global]
fsid = ${fsid}
mon host = v1:127.0.0.1:${monPort}
mon initial members = a
public addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
log file = ${dir}/$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
paxos propose interval = 0.1
[mon]
mon data = ${dir}/mon
[osd]
osd data = ${dir}/osd
osd objectstore = memstore
memstore device bytes = 1073741824
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
rgw gc obj min wait = 10
rgw gc processor period = 10
`)
    const c = ['-c', conf]
    const run = async (bin: string, args: string[]): Promise<string> => (await execFileP(bin, [...c, ...args], { cwd: dir, timeout: 20_000 })).stdout
    await execFileP('monmaptool', ['--create', '--addv', 'a', `[v1:127.0.0.1:${monPort}]`, '--fsid', fsid, path.join(dir, 'monmap')], { timeout: 10_000 })
    await execFileP('ceph-authtool', ['--create-keyring', path.join(dir, 'keyring'), '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], { timeout: 10_000 })
    await run('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap'), '--keyring', path.join(dir, 'keyring')])
    procs.push(daemon('ceph-mon', [...c, '-f', '-i', 'a'], dir))
    await run('ceph', ['--connect-timeout', '15', 'osd', 'create'])
    await run('ceph-osd', ['-i', '0', '--mkfs'])
    procs.push(daemon('ceph-osd', [...c, '-f', '-i', '0'], dir))
    procs.push(daemon('radosgw', [...c, '-f', '-n', 'client.rgw'], dir))
    const url = `http://127.0.0.1:${rgwPort}`
    const deadline = Date.now() + 30_000
    for (;;) {
      const exited = procs.find(p => p.exitCode !== null || p.signalCode !== null)
      if (exited !== undefined) {
        const log = { 'ceph-mon': 'mon.a', 'ceph-osd': 'osd.0', radosgw: 'client.rgw' }[exited.spawnfile] ?? exited.spawnfile
        const tail = await readFile(path.join(dir, `${log}.log`), 'utf8').then(s => s.split('\n').slice(-15).join('\n'), () => '(no log)')
        throw new Error(`${String(exited.spawnfile)} exited (${String(exited.exitCode ?? exited.signalCode)}); stderr: ${stderrOf.get(exited)?.() ?? ''}; its log ends:\n${tail}`)
      }
      const ok = await request(url + '/', { headersTimeout: 1000 }).then(async r => { await r.body.dump(); return r.statusCode === 200 }, () => false)
      if (ok) break
      if (Date.now() > deadline) throw new Error(`radosgw did not answer on ${url} within 30 s`)
      await sleep(100)
    }
    const accessKeyId = 'FERRYTEST' + randomUUID().replace(/-/g, '').slice(0, 11).toUpperCase()
    const secret = randomUUID().replace(/-/g, '')
    await run('radosgw-admin', ['-n', 'client.rgw', 'user', 'create', '--uid', 'ferry', '--display-name', 'ferry', '--access-key', accessKeyId, '--secret', secret])
    return { url, accessKeyId, secret, region: 'us-east-1', stop }
  } catch (err) {
    await stop()
    throw err
  }
}

function daemon (bin: string, args: string[], cwd: string): ChildProcess {
  const p = spawn(bin, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
  p.on('error', () => {})
  // What a daemon says on stderr before its log is open (a bind failure): kept for the error.
  let stderr = ''
  p.stderr?.on('data', (b: Buffer) => { stderr = (stderr + b.toString()).slice(-4000) })
  stderrOf.set(p, () => stderr)
  return p
}

const stderrOf = new WeakMap<ChildProcess, () => string>()

async function stopProcess (p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return
  const exited = new Promise<void>(resolve => p.once('exit', () => resolve()))
  p.kill('SIGTERM')
  const timer = setTimeout(() => p.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}
