import { execFile, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const FERRY_BIN = path.join(ROOT, 'dist', 'bin', 'ferry.js')

export interface FerryProcess {
  child: ChildProcess
  output: () => string
  /** Sends `signal` and resolves with the exit code (SIGKILL after `graceMs`). */
  stop: (signal?: NodeJS.Signals, graceMs?: number) => Promise<number | null>
}

/**
 * Runs the built CLI (`npm test` builds first) as its own process, for what only a separate
 * process shows: its own RSS, signals, a clean exit.
 */
export function spawnFerry (args: string[], env: Record<string, string> = {}): FerryProcess {
  if (!fs.existsSync(FERRY_BIN)) throw new Error(`${FERRY_BIN} is missing: run npm run build (npm test does it)`)
  const child = spawn(process.execPath, [FERRY_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', d => { out += String(d) })
  child.stderr?.on('data', d => { out += String(d) })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  return {
    child,
    output: () => out,
    stop: async (signal = 'SIGTERM', graceMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      const code = await exited
      clearTimeout(timer)
      return code
    }
  }
}

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM). */
export function procStatusBytes (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no ${field} for ${pid}`)
  return Number(m[1]) * 1024
}

export interface CommandRun { code: number, stdout: string, stderr: string }

/** Runs a client command to its end (the environment extended by `env`; undefined unsets), never rejecting: its exit code and output. */
export async function runCommand (cmd: string, args: string[], env: Record<string, string | undefined>, timeoutMs: number): Promise<CommandRun> {
  const fullEnv: Record<string, string> = {}
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) fullEnv[k] = v
  return await new Promise(resolve => {
    execFile(cmd, args, { env: fullEnv, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}
