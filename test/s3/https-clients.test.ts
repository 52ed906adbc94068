import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import { runCommand, type CommandRun } from '../helpers/process.js'
import { startConfiguredSandbox } from '../helpers/sandbox.js'
import { makeCert } from '../helpers/tls.js'
import { loadSdk, sdkFlows } from './sdk-flows.js'

/**
 * S3 SDKs over HTTPS with their default checksum settings: there boto3 and the JavaScript SDK
 * send uploads as aws-chunked bodies with a trailing CRC32 and an unsigned payload
 * (STREAMING-UNSIGNED-PAYLOAD-TRAILER), which they do not over plain HTTP. A user's set-up:
 * `ferry sandbox --print-config`, `proxy.tls` pointed at a certificate, `ferry sandbox --config`;
 * the clients trust the CA (AWS_CA_BUNDLE for boto3, an https.Agent for the JS SDK).
 */

const HERE = path.dirname(fileURLToPath(import.meta.url))

type Run = CommandRun

const run = async (cmd: string, args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 300_000): Promise<Run> => await runCommand(cmd, args, env, timeoutMs)

const hasOpenssl = (await run('openssl', ['version'], {}, 30_000)).code === 0
const hasBoto3 = (await run('python3', ['-c', 'import boto3'], {}, 30_000)).code === 0
const sdk = await loadSdk()

t.test('boto3 and @aws-sdk/client-s3 over HTTPS with their default checksums', { skip: hasOpenssl ? false : 'openssl is not installed' }, async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-s3-https-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const cert = await makeCert(dir, 'proxy', 3)
  const { ferry, config, proxyPort: proxy } = await startConfiguredSandbox<{ proxy: { tls: unknown }, s3: { credentials: Array<{ accessKeyId: string, secret: string }> } }>(t, dir, c => {
    c.proxy.tls = { cert: cert.cert, key: cert.key }
  })
  const endpoint = `https://127.0.0.1:${proxy}`
  const { accessKeyId, secret } = config.s3.credentials[0] as { accessKeyId: string, secret: string }
  const ca = fs.readFileSync(cert.ca, 'utf8')
  const tls = new Agent({ connect: { ca } })
  t.teardown(() => tls.close())
  const hello = await request(`${endpoint}/`, { dispatcher: tls })
  t.equal(hello.statusCode, 403, 'the proxy answers S3 over HTTPS (anonymous ListBuckets: AccessDenied)')
  await hello.body.dump()

  await t.test('boto3 flows over HTTPS', { skip: hasBoto3 ? false : 'python3-boto3 is not installed' }, async t => {
    const r = await run('python3', [path.join(HERE, 'boto3_flows.py')], {
      AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secret, AWS_DEFAULT_REGION: 'us-east-1', AWS_CA_BUNDLE: cert.ca, FERRY_S3_ENDPOINT: endpoint,
      // Today's defaults, whatever the machine's AWS config says.
      AWS_REQUEST_CHECKSUM_CALCULATION: undefined, AWS_RESPONSE_CHECKSUM_VALIDATION: undefined, AWS_CONFIG_FILE: '/dev/null'
    })
    for (const line of r.stdout.split('\n')) {
      if (line.startsWith('ok   ')) t.pass(line.slice(5))
      else if (line.startsWith('FAIL ')) t.fail(line.slice(5))
    }
    t.equal(r.code, 0, `boto3 flows: ${r.stderr.slice(-2000)}`)
  })

  await t.test('@aws-sdk/client-s3 flows over HTTPS', { skip: typeof sdk === 'string' ? sdk : false }, async t => {
    if (typeof sdk === 'string') return
    await sdkFlows(t, sdk, { endpoint, accessKey: accessKeyId, secret, ca, bucket: 'nodesdk-tls' })
  })

  t.equal(await ferry.stop('SIGINT'), 0, 'exits 0 on SIGINT')
  t.notMatch(ferry.output(), /"level":60|uncaught/i, 'no uncaught error in the log')
})
