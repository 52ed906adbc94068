import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { freePort, waitFor } from '../helpers/net.js'
import { runCommand, spawnFerry, type CommandRun } from '../helpers/process.js'
import { loadSdk, sdkFlows, virtualHostedFlow } from './sdk-flows.js'

/**
 * The S3 clients users already have, against a sandbox started as a user starts it (`ferry
 * sandbox`, path style, the key it prints): the AWS CLI, rclone, s3cmd and boto3. Each client is
 * skipped with a message when it is not installed (.ci/run installs them all). One sandbox for
 * the file: these clients are slow to start, the flows are what is under test.
 */

const HERE = path.dirname(fileURLToPath(import.meta.url))

type Run = CommandRun

const run = async (cmd: string, args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 180_000): Promise<Run> => await runCommand(cmd, args, env, timeoutMs)

async function have (cmd: string, args: string[]): Promise<boolean> {
  return (await run(cmd, args, {}, 30_000)).code === 0
}

function md5File (file: string): string {
  return createHash('md5').update(fs.readFileSync(file)).digest('hex')
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-s3-clients-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

const ports = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort({ udp: true })])
const [proxyPort, adminPort, g1, g2, g3, dnsPort] = ports as [number, number, number, number, number, number]
const ferry = spawnFerry(['sandbox', '--proxy-port', String(proxyPort), '--admin-port', String(adminPort), '--dns-port', String(dnsPort), '--gateway-ports', `${g1},${g2},${g3}`])
t.teardown(() => ferry.stop('SIGKILL'))
await waitFor(() => ferry.output().includes('Ctrl-C stops everything'), 'the sandbox banner', 30_000, 100)
const endpoint = `http://127.0.0.1:${proxyPort}`

// The credentials as a user reads them off the banner.
const keyLine = /AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)/.exec(ferry.output())
const accessKey = keyLine?.[1] ?? ''
const secret = keyLine?.[2] ?? ''
// AWS_CA_BUNDLE (set on some machines) makes rclone's SDK refuse plain HTTP transports.
const awsEnv = { AWS_ACCESS_KEY_ID: accessKey, AWS_SECRET_ACCESS_KEY: secret, AWS_DEFAULT_REGION: 'us-east-1', AWS_CA_BUNDLE: undefined, AWS_PAGER: '' }

const hasAws = await have('aws', ['--version'])
const hasRclone = await have('rclone', ['version'])
const hasS3cmd = await have('s3cmd', ['--version'])
const hasBoto3 = await have('python3', ['-c', 'import boto3'])
const sdk = await loadSdk()

async function alive (): Promise<boolean> {
  const r = await request(`http://127.0.0.1:${adminPort}/healthz`).catch(() => undefined)
  await r?.body.dump()
  return r?.statusCode === 200
}

t.test('the sandbox prints its S3 credentials', async t => {
  t.ok(keyLine, 'AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… in the banner')
})


t.test('aws cli: mb, cp small and multipart, ls, sync both ways, rm; s3api ranged get, head, copy; wrong secret', { skip: hasAws ? false : 'aws (awscli) is not installed' }, async t => {
  // Transfers without their progress lines (ls and mb take no such flag).
  const aws = async (...args: string[]): Promise<Run> => await run('aws', ['--endpoint-url', endpoint, ...args, ...(['cp', 'sync', 'rm'].includes(args[1] ?? '') ? ['--only-show-errors'] : [])], awsEnv)
  const awsApi = async (...args: string[]): Promise<Run> => await run('aws', ['--endpoint-url', endpoint, ...args], awsEnv)
  t.equal((await aws('s3', 'mb', 's3://awscli')).code, 0, 'mb')
  const small = path.join(dir, 'small.bin')
  fs.writeFileSync(small, randomBytes(1_000_003))
  const big = path.join(dir, 'big.bin')
  fs.writeFileSync(big, randomBytes(64 * 1024 * 1024 + 17))
  let r = await aws('s3', 'cp', small, 's3://awscli/dir/small.bin')
  t.equal(r.code, 0, `cp small: ${r.stderr}`)
  r = await aws('s3', 'cp', big, 's3://awscli/dir/sub/big.bin')
  t.equal(r.code, 0, `cp 64 MiB (multipart): ${r.stderr}`)
  const head = JSON.parse((await awsApi('s3api', 'head-object', '--bucket', 'awscli', '--key', 'dir/sub/big.bin')).stdout) as { ContentLength: number, ETag: string }
  t.equal(head.ContentLength, 64 * 1024 * 1024 + 17, 'head-object: size')
  t.match(head.ETag, /^"[0-9a-f]{32}-\d+"$/, 'head-object: a multipart ETag')
  const ls = await aws('s3', 'ls', '--recursive', 's3://awscli')
  t.match(ls.stdout, /1000003 dir\/small\.bin/)
  t.match(ls.stdout, /67108881 dir\/sub\/big\.bin/)
  const top = await aws('s3', 'ls', 's3://awscli/dir/')
  t.match(top.stdout, /PRE sub\//, 'ls shows the "directory"')
  const back = path.join(dir, 'big.back')
  t.equal((await aws('s3', 'cp', 's3://awscli/dir/sub/big.bin', back)).code, 0, 'cp down')
  t.equal(md5File(back), md5File(big), 'the 64 MiB object comes back byte for byte')
  const part = path.join(dir, 'range.bin')
  r = await awsApi('s3api', 'get-object', '--bucket', 'awscli', '--key', 'dir/small.bin', '--range', 'bytes=10-19', part)
  t.equal(r.code, 0, 'ranged get')
  t.same(fs.readFileSync(part), fs.readFileSync(small).subarray(10, 20), 'bytes 10-19 only')
  r = await awsApi('s3api', 'copy-object', '--bucket', 'awscli', '--key', 'copied/small.bin', '--copy-source', 'awscli/dir/small.bin')
  t.equal(r.code, 0, `copy-object: ${r.stderr}`)
  t.match(r.stdout, createHash('md5').update(fs.readFileSync(small)).digest('hex'), 'the copy has the MD5 ETag')
  // sync up, then down into an empty directory.
  const up = path.join(dir, 'up')
  fs.mkdirSync(path.join(up, 'a', 'b'), { recursive: true })
  fs.writeFileSync(path.join(up, 'a', 'b', 'one.txt'), 'one')
  fs.writeFileSync(path.join(up, 'two with space.txt'), randomBytes(5000))
  t.equal((await aws('s3', 'sync', up, 's3://awscli/synced')).code, 0, 'sync up')
  const down = path.join(dir, 'down')
  t.equal((await aws('s3', 'sync', 's3://awscli/synced', down)).code, 0, 'sync down')
  t.equal(fs.readFileSync(path.join(down, 'a', 'b', 'one.txt'), 'utf8'), 'one')
  t.same(fs.readFileSync(path.join(down, 'two with space.txt')), fs.readFileSync(path.join(up, 'two with space.txt')))
  r = await run('aws', ['--endpoint-url', endpoint, 's3', 'sync', '--dryrun', up, 's3://awscli/synced'], awsEnv)
  t.equal(r.code, 0)
  t.equal(r.stdout.trim(), '', 'a second sync up has nothing to do (sizes and times match)')
  t.equal((await aws('s3', 'rm', '--recursive', 's3://awscli/synced')).code, 0, 'rm --recursive')
  t.notMatch((await aws('s3', 'ls', '--recursive', 's3://awscli')).stdout, /synced/, 'gone from the listing')
  r = await run('aws', ['--endpoint-url', endpoint, 's3', 'ls', 's3://awscli'], { ...awsEnv, AWS_SECRET_ACCESS_KEY: 'wrong-secret' })
  t.not(r.code, 0, 'a wrong secret fails')
  t.match(r.stderr, /SignatureDoesNotMatch/, 'with SignatureDoesNotMatch')
  t.ok(await alive(), 'ferry is alive')
})

t.test('rclone: copy, check (size and MD5), sync, lsl, cat', { skip: hasRclone ? false : 'rclone is not installed' }, async t => {
  const env = {
    ...awsEnv,
    RCLONE_CONFIG_FERRY_TYPE: 's3',
    RCLONE_CONFIG_FERRY_PROVIDER: 'Other',
    RCLONE_CONFIG_FERRY_ACCESS_KEY_ID: accessKey,
    RCLONE_CONFIG_FERRY_SECRET_ACCESS_KEY: secret,
    RCLONE_CONFIG_FERRY_ENDPOINT: endpoint,
    RCLONE_CONFIG_FERRY_REGION: 'us-east-1',
    RCLONE_CONFIG_FERRY_FORCE_PATH_STYLE: 'true'
  }
  const rclone = async (...args: string[]): Promise<Run> => await run('rclone', ['--config', '/dev/null', ...args], env)
  const src = path.join(dir, 'rc')
  fs.mkdirSync(path.join(src, 'x', 'y'), { recursive: true })
  fs.writeFileSync(path.join(src, 'x', 'y', 'f1.bin'), randomBytes(300_000))
  fs.writeFileSync(path.join(src, 'top.txt'), 'hello rclone\n')
  let r = await rclone('copy', src, 'ferry:rclone/tree')
  t.equal(r.code, 0, `copy: ${r.stderr}`)
  r = await rclone('check', src, 'ferry:rclone/tree')
  t.equal(r.code, 0, `check: ${r.stderr}`)
  t.match(r.stderr, /0 differences found/)
  t.notMatch(r.stderr, /hashes could not be checked|no hashes in common/, 'the MD5s were compared')
  fs.rmSync(path.join(src, 'top.txt'))
  r = await rclone('sync', src, 'ferry:rclone/tree')
  t.equal(r.code, 0, `sync: ${r.stderr}`)
  r = await rclone('lsl', 'ferry:rclone')
  t.match(r.stdout, /300000 \S+ \S+ tree\/x\/y\/f1\.bin/)
  t.notMatch(r.stdout, /top\.txt/, 'sync deleted what the source no longer has')
  fs.writeFileSync(path.join(src, 'cat.txt'), 'meow')
  await rclone('copy', src, 'ferry:rclone/tree')
  r = await rclone('cat', 'ferry:rclone/tree/cat.txt')
  t.equal(r.stdout, 'meow', 'cat')
})

t.test('s3cmd: mb, put (MD5 checked), get, ls, del', { skip: hasS3cmd ? false : 's3cmd is not installed' }, async t => {
  const cfg = path.join(dir, 's3cfg')
  fs.writeFileSync(cfg, [
    '[default]', `access_key = ${accessKey}`, `secret_key = ${secret}`, `host_base = 127.0.0.1:${proxyPort}`,
    `host_bucket = 127.0.0.1:${proxyPort}`, 'use_https = False', 'signature_v2 = False', 'bucket_location = us-east-1', ''
  ].join('\n'))
  const s3cmd = async (...args: string[]): Promise<Run> => await run('s3cmd', ['-c', cfg, ...args], awsEnv)
  t.equal((await s3cmd('mb', 's3://s3cmd')).code, 0, 'mb')
  const file = path.join(dir, 's3cmd.bin')
  fs.writeFileSync(file, randomBytes(123_456))
  let r = await s3cmd('put', file, 's3://s3cmd/a/b.bin')
  t.equal(r.code, 0, `put: ${r.stderr}`)
  t.notMatch(r.stdout + r.stderr, /MD5 Sums don't match/i, 'the ETag is the MD5 s3cmd checks')
  const got = path.join(dir, 's3cmd.back')
  r = await s3cmd('get', 's3://s3cmd/a/b.bin', got)
  t.equal(r.code, 0, `get: ${r.stderr}`)
  t.same(fs.readFileSync(got), fs.readFileSync(file))
  r = await s3cmd('ls', 's3://s3cmd/a/')
  t.match(r.stdout, /123456\s+s3:\/\/s3cmd\/a\/b\.bin/)
  t.equal((await s3cmd('del', 's3://s3cmd/a/b.bin')).code, 0, 'del')
  r = await s3cmd('ls', '-r', 's3://s3cmd')
  t.notMatch(r.stdout, /b\.bin/)
})

t.test('boto3: transfer manager, presigned GET and PUT, copy, upload_part_copy, delete_objects, pagination over 2,500 keys, metadata, auth errors', { skip: hasBoto3 ? false : 'python3-boto3 is not installed' }, async t => {
  const r = await run('python3', [path.join(HERE, 'boto3_flows.py')], { ...awsEnv, FERRY_S3_ENDPOINT: endpoint }, 300_000)
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('ok   ')) t.pass(line.slice(5))
    else if (line.startsWith('FAIL ')) t.fail(line.slice(5))
  }
  t.equal(r.code, 0, `boto3 flows: ${r.stderr.slice(-2000)}`)
})

t.test('@aws-sdk/client-s3 from Node (today\'s defaults: CRC32 checksums, aws-chunked streams) over HTTP', { skip: typeof sdk === 'string' ? sdk : false }, async t => {
  if (typeof sdk === 'string') return
  await sdkFlows(t, sdk, { endpoint, accessKey, secret, bucket: 'nodesdk' })
  t.ok(await alive(), 'ferry is alive')
})

t.test('virtual-hosted style: @aws-sdk/client-s3 addresses <bucket>.<zone>, resolved through ferry\'s DNS', { skip: typeof sdk === 'string' ? sdk : false }, async t => {
  if (typeof sdk === 'string') return
  const zone = /dig @\S+ -p \d+ vol1\.(\S+) \+short/.exec(ferry.output())?.[1] ?? 'sandbox.ferry.test'
  await virtualHostedFlow(t, sdk, { endpoint, accessKey, secret, bucket: 'vhostsdk', zone, proxyPort, dnsPort })
})

t.test('the plain block API and S3 name the same objects; ferry survives it all', async t => {
  const put = await request(`${endpoint}/plainvol/blk1`, { method: 'PUT', body: 'plain' })
  t.equal(put.statusCode, 201)
  await put.body.dump()
  const listed = await request(`${endpoint}/awscli?list-type=2&prefix=dir/&delimiter=/`)
  t.equal(listed.statusCode, 200, 'anonymous listing: the sandbox opens every volume to unsigned requests')
  t.match(await listed.body.text(), /<CommonPrefixes><Prefix>dir\/sub\/<\/Prefix><\/CommonPrefixes>/)
  t.ok(await alive())
  // Only after every client: the anonymous listing reads what the AWS CLI wrote.
  // A clean exit, not a fast one: after every client's flows the sandbox took 5-10 s to stop at
  // load 13-38 (two runs here), at the edge of the default 10 s before SIGKILL.
  t.equal(await ferry.stop('SIGINT', 30_000), 0, 'exits 0 on SIGINT')
  t.notMatch(ferry.output(), /"level":60|uncaught/i, 'no uncaught error in the log')
})
