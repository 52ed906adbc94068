/**
 * Child processes and small utilities the benchmarks share: each benchmark runs its targets as
 * separate processes so it can read their CPU time and RSS from /proc, and must stop every one
 * of them, on success, on error and on Ctrl-C.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

export const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

/** utime and stime of a whole process, in seconds. */
export function cpuTimes (pid: number): { user: number, sys: number } {
  const f = statFields(pid)
  return { user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK }
}

/** Minor page faults of a process so far (minflt, field 10 of /proc/<pid>/stat). */
export function minorFaults (pid: number): number {
  return Number(statFields(pid)[7])
}

/** /proc/<pid>/stat after "(comm) ": [0] is field 3, so minflt (10) is [7], utime (14) [11], stime (15) [12]. */
function statFields (pid: number): string[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

export class Proc {
  private tail = ''
  exitCode: number | null | undefined
  readonly exited: Promise<void>

  constructor (readonly name: string, readonly child: ChildProcess) {
    const keep = (b: Buffer): void => { this.tail = (this.tail + b.toString('utf8')).slice(-4000) }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    this.exited = new Promise(resolve => {
      child.once('exit', code => { this.exitCode = code ?? -1; resolve() })
      child.once('error', err => { keep(Buffer.from(String(err))); this.exitCode = -1; resolve() })
    })
  }

  /** The last few KiB the process printed. */
  get output (): string { return this.tail }

  assertAlive (): void {
    if (this.exitCode !== undefined) throw new Error(`${this.name} exited (code ${String(this.exitCode)}):\n${this.tail}`)
  }
}

export class Procs {
  private readonly list: Proc[] = []
  private readonly transient = new Set<ChildProcess>()

  start (name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Proc {
    const p = new Proc(name, spawn(cmd, args, { ...(env !== undefined ? { env } : {}), stdio: ['ignore', 'pipe', 'pipe'] }))
    this.list.push(p)
    return p
  }

  /** SIGTERM, SIGKILL after 5 s. */
  async stop (p: Proc): Promise<void> {
    if (p.exitCode !== undefined) return
    p.child.kill('SIGTERM')
    const timer = setTimeout(() => { p.child.kill('SIGKILL') }, 5000)
    await p.exited
    clearTimeout(timer)
  }

  /** Load generators, proxies, then gateways and Redis (started first, stopped last). */
  async stopAll (): Promise<void> {
    for (const c of this.transient) c.kill('SIGKILL')
    for (const p of [...this.list].reverse()) await this.stop(p)
  }

  runToEnd (cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null, stdout: string, stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      this.transient.add(child)
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (b: Buffer) => { stdout += b.toString('utf8') })
      child.stderr.on('data', (b: Buffer) => { stderr += b.toString('utf8') })
      const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
      child.once('error', err => { clearTimeout(timer); this.transient.delete(child); reject(err) })
      child.once('close', code => { clearTimeout(timer); this.transient.delete(child); resolve({ code, stdout, stderr }) })
    })
  }
}

export async function waitFor (fn: () => boolean | Promise<boolean>, what: string, proc?: Proc, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    proc?.assertAlive()
    try {
      if (await fn()) return
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(20)
  }
  throw new Error(`timed out waiting for ${what}${last !== '' ? ` (${last})` : ''}`)
}

// One port picker for tests and benchmarks: it stays clear of the kernel's ephemeral range.
export { freePort } from '../test/helpers/net.js'

export function positiveInt (name: string, v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${v}`)
  return n
}
