import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

/** A command's exit code and its stdout and stderr together. */
export async function run (cmd: string, args: string[], cwd?: string): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile(cmd, args, { cwd, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, out: stdout + stderr })
    })
  })
}

/** A CA and a certificate for 127.0.0.1 signed by it (openssl), valid for `days` (negative: already expired). */
export async function makeCert (dir: string, name: string, days: number): Promise<{ ca: string, cert: string, key: string }> {
  const f = (ext: string): string => path.join(dir, `${name}.${ext}`)
  fs.writeFileSync(f('ext'), 'subjectAltName=IP:127.0.0.1\n')
  for (const args of [
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '3', '-subj', `/CN=ferry test CA ${name}`],
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('key'), '-out', f('csr'), '-subj', '/CN=127.0.0.1'],
    ['x509', '-req', '-in', f('csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('pem'), '-days', String(days), '-extfile', f('ext')]
  ]) {
    const r = await run('openssl', args)
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.out}`)
  }
  return { ca: f('ca.pem'), cert: f('pem'), key: f('key') }
}
