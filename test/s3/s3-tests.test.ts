import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { ROOT } from '../helpers/process.js'
import { startConfiguredSandbox } from '../helpers/sandbox.js'

/**
 * The Ceph project's S3 compatibility suite (s3-tests: pytest + boto3) against `ferry sandbox`,
 * started as a user starts it: its embedded config (`--print-config`) with three more keys for
 * the suite's main, alt and tenant users. Every test of test/s3/s3-tests.pass must pass, so what
 * passes cannot regress; what fails and why is in proxy/s3/README.md. The snapshot lives beside
 * the repository (../shared/s3-tests, or S3_TESTS_DIR); Debian's python3 and its packages run it
 * (there is no PyPI here): .ci/run installs them.
 */

// Beside the repository, or where this machine keeps the shared material (a CI checkout may sit elsewhere).
const SUITE = process.env.S3_TESTS_DIR ?? [path.resolve(ROOT, '..', 'shared', 's3-tests'), '/work/shared/s3-tests'].find(d => fs.existsSync(d)) ?? path.resolve(ROOT, '..', 'shared', 's3-tests')
// Debian's interpreter, whose packages .ci/run installs (a pyenv python3 earlier on PATH lacks them).
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
const MODULES: Record<string, string> = { pytest: 'python3-pytest', boto3: 'python3-boto3', munch: 'python3-munch', isodate: 'python3-isodate', pytz: 'python3-tz', dateutil: 'python3-dateutil', requests: 'python3-requests' }

interface Run { code: number, stdout: string, stderr: string }

async function run (cmd: string, args: string[], opts: { cwd?: string, env?: Record<string, string>, timeoutMs?: number } = {}): Promise<Run> {
  return await new Promise(resolve => {
    execFile(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

async function missing (): Promise<string | false> {
  if (!fs.existsSync(path.join(SUITE, 's3tests', 'functional', 'test_s3.py'))) return `the s3-tests snapshot is not at ${SUITE} (set S3_TESTS_DIR)`
  const lacking: string[] = []
  for (const [mod, pkg] of Object.entries(MODULES)) if ((await run(PYTHON, ['-c', `import ${mod}`])).code !== 0) lacking.push(pkg)
  return lacking.length > 0 ? `${PYTHON} lacks ${lacking.join(', ')} (apt-get install ${lacking.join(' ')})` : false
}

const passList = fs.readFileSync(path.join(ROOT, 'test', 's3', 's3-tests.pass'), 'utf8').split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#'))

// The whole file, not just the subtest: the runner's per-file limit (package.json, 300 s) would
// kill the file first. pytest takes 31 s on a quiet machine and 468 s was seen at load 35–40.
t.setTimeout(720_000)

t.test(`the s3-tests pass list (${passList.length} tests) passes against ferry sandbox`, { skip: await missing(), timeout: 660_000 }, async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-s3-tests-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  // The snapshot is read-only; pytest and Python write beside the code they run.
  fs.cpSync(SUITE, path.join(dir, 'suite'), { recursive: true })

  const users = ['main', 'alt', 'tenant'].map(u => ({ user: u, accessKeyId: `s3tests-${u}`, secret: `s3tests-${u}-secret-0123456789` }))
  const { ferry, proxyPort: proxy } = await startConfiguredSandbox<{ log: { level: string }, s3: { credentials: Array<Record<string, unknown>> } }>(t, dir, c => {
    for (const u of users) c.s3.credentials.push({ accessKeyId: u.accessKeyId, secret: u.secret })
    c.log.level = 'warn'
  })

  // The suite will not load without main, alt and tenant users, and [iam] sections it reads at
  // import (ferry has no IAM: they name the main key; no test of the pass list uses them).
  const [main, alt, tenant] = users as [typeof users[number], typeof users[number], typeof users[number]]
  const section = (name: string, u: typeof main, extra = ''): string => `[${name}]\ndisplay_name = ferry\nuser_id = ferry\nemail = ${u.user}@ferry.test\naccess_key = ${u.accessKeyId}\nsecret_key = ${u.secret}\n${extra}\n`
  const conf = `[DEFAULT]\nhost = 127.0.0.1\nport = ${proxy}\nis_secure = False\nssl_verify = False\n\n[fixtures]\nbucket prefix = ferry-{random}-\n\n` +
    section('s3 main', main, 'api_name =\n') + section('s3 alt', alt) + section('s3 tenant', tenant, 'tenant = testx\n') +
    section('iam', main) + section('iam root', main) + section('iam alt root', alt)
  const confFile = path.join(dir, 's3tests.conf')
  fs.writeFileSync(confFile, conf)

  // 31 s on a quiet machine; a CI run beside a long soak took over 200 s (the old limit).
  const started = Date.now()
  const r = await run(PYTHON, ['-m', 'pytest', '-q', '-rA', '--tb=line', '-p', 'no:cacheprovider', ...passList.map(n => `s3tests/functional/test_s3.py::${n}`)], {
    cwd: path.join(dir, 'suite'), env: { S3TEST_CONF: confFile, PYTHONDONTWRITEBYTECODE: '1' }, timeoutMs: 600_000
  })
  const seconds = Math.round((Date.now() - started) / 1000)
  const passed = new Set([...r.stdout.matchAll(/^PASSED s3tests\/functional\/test_s3\.py::(\S+)/gm)].map(m => m[1]))
  const notPassed = passList.filter(n => !passed.has(n))
  t.comment(`pytest: ${r.stdout.trim().split('\n').pop() ?? ''} (${seconds} s)`)
  for (const n of notPassed) {
    const line = new RegExp(`^(FAILED|ERROR) s3tests/functional/test_s3\\.py::${n}\\b.*$`, 'm').exec(r.stdout)?.[0] ?? 'no result (see the output)'
    t.fail(`${n}: ${line}`)
  }
  t.equal(notPassed.length, 0, `every test of the pass list passed (${passed.size} of ${passList.length})`)
  if (notPassed.length > 0 || passed.size === 0) t.comment(`pytest output (end): ${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`)
  t.notMatch(ferry.output(), /"level":60|uncaught/i, 'no uncaught error in the sandbox log')
})
