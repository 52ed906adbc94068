import { execFile } from 'node:child_process'
import { FERRY_BIN } from './process.js'

export interface CtlRun { code: number, stdout: string, stderr: string }

/** `ferry ctl` (the built CLI) as its own process, as an operator or a script runs it; FERRY_ADMIN_* only from `env`. */
export async function ctl (args: string[], env: Record<string, string | undefined> = {}): Promise<CtlRun> {
  return await new Promise(resolve => {
    const e = { ...process.env, FERRY_ADMIN_TOKEN: undefined, FERRY_ADMIN_URL: undefined, ...env }
    execFile(process.execPath, [FERRY_BIN, 'ctl', ...args], { env: e as NodeJS.ProcessEnv, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}
