/**
 * `npm run bench -- loadgen --url U [options]`: a closed-loop HTTP load generator on undici, the
 * fallback that bench/proxy.ts runs in a child process when `wrk` is not installed (or when
 * `--loadgen node` asks for it). Every connection keeps exactly one request in flight; requests
 * cycle over `--blocks` block paths under `--volume`. It prints one line
 * `LOADGEN_RESULT {json}` in the same shape as the wrk Lua script of bench/proxy.ts:
 * requests, durationUs, errors and latency percentiles in microseconds.
 *
 * It costs far more CPU per request than wrk does, and on a small machine that CPU is taken from
 * the processes being measured: prefer wrk, and compare figures only within one run.
 */
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { percentile } from './lib.js'

export const RESULT_MARKER = 'LOADGEN_RESULT '

export interface LoadgenErrors {
  connect: number
  read: number
  write: number
  status: number
  timeout: number
}

/** What one load-generator run reports (wrk's Lua `done` prints the same shape). */
export interface LoadgenResult {
  requests: number
  durationUs: number
  bytes: number
  errors: LoadgenErrors
  latencyUs: { p50: number, p90: number, p99: number, max: number, mean: number }
}

/** `/{volume}/{prefix}00042`: the block paths both load generators cycle over. */
export function blockPath (volume: string, prefix: string, i: number): string {
  return `/${volume}/${prefix}${String(i).padStart(5, '0')}`
}

export default async function run (args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      url: { type: 'string' },
      method: { type: 'string', default: 'GET' },
      connections: { type: 'string', default: '32' },
      duration: { type: 'string', default: '8' },
      blocks: { type: 'string', default: '256' },
      bytes: { type: 'string', default: '65536' },
      volume: { type: 'string', default: 'bench' },
      prefix: { type: 'string', default: 'g' },
      timeout: { type: 'string', default: '10' }
    }
  })
  if (values.url === undefined) throw new Error('loadgen needs --url http://host:port')
  const method = values.method.toUpperCase()
  if (method !== 'GET' && method !== 'PUT') throw new Error(`loadgen: --method must be GET or PUT, got ${values.method}`)
  const connections = positiveInt('--connections', values.connections)
  const durationMs = Number(values.duration) * 1000
  if (!(durationMs > 0)) throw new Error(`loadgen: --duration must be positive seconds, got ${values.duration}`)
  const blocks = positiveInt('--blocks', values.blocks)
  const timeoutMs = Number(values.timeout) * 1000
  const body = method === 'PUT' ? Buffer.alloc(positiveInt('--bytes', values.bytes), 'x') : undefined
  const headers: Record<string, string> = method === 'PUT' ? { 'content-type': 'application/octet-stream' } : {}
  const paths = Array.from({ length: blocks }, (_, i) => blockPath(values.volume, values.prefix, i))

  const pool = new Pool(new URL(values.url).origin, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs
  })
  const latencies: number[] = []
  const errors: LoadgenErrors = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 }
  let bytes = 0
  const started = performance.now()
  const deadline = started + durationMs

  const worker = async (w: number): Promise<void> => {
    let i = (w * 97) % blocks
    while (performance.now() < deadline) {
      const p = paths[i] as string
      i = (i + 1) % blocks
      const t0 = performance.now()
      try {
        const res = await pool.request({ method, path: p, headers, body })
        for await (const chunk of res.body) bytes += (chunk as Buffer).length
        if (res.statusCode > 399) errors.status++
        latencies.push((performance.now() - t0) * 1000)
      } catch (err) {
        const code = (err as { code?: string }).code ?? ''
        if (code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT') errors.connect++
        else if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') errors.timeout++
        else errors.read++
        // Do not spin on a dead target.
        if (errors.connect > 0) await new Promise(resolve => setTimeout(resolve, 10))
      }
    }
  }
  await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)))
  const durationUs = Math.round((performance.now() - started) * 1000)
  await pool.close()

  const sorted = Float64Array.from(latencies).sort()
  let sum = 0
  for (const v of sorted) sum += v
  const result: LoadgenResult = {
    requests: sorted.length,
    durationUs,
    bytes,
    errors,
    latencyUs: {
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      max: sorted.length > 0 ? sorted[sorted.length - 1] as number : NaN,
      mean: sorted.length > 0 ? sum / sorted.length : NaN
    }
  }
  process.stdout.write(RESULT_MARKER + JSON.stringify(result) + '\n')
}

function positiveInt (flag: string, text: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`loadgen: ${flag} must be a positive integer, got ${text}`)
  return n
}
