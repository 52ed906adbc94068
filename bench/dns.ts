/**
 * `npm run bench -- dns [--volumes N] [--seconds S] [--rounds R] [--no-edns] [--node-loadgen]`
 *
 * Queries per second of ferry's authoritative DNS against, in the same run and on the same
 * machine: nsd serving an equivalent static zone (when installed), and a bare node:dgram
 * responder (the floor of any Node UDP server). Load comes from dnsperf when installed, else
 * from a Node load generator in a worker thread. Also measures change-to-answer latency: from
 * a route change in the view until a query returns the new address, idle and under load.
 * Writes bench/results/dns.json.
 *
 * The machines this runs on are shared and noisy, so the three targets are measured in turns
 * (ferry, nsd, bare; bare, nsd, ferry; …) for `rounds` rounds of `seconds` each, and each
 * target's figure is its median, with the ratios also computed per round: a burst of someone
 * else's load then hurts one round of each target rather than all of one.
 */
import dgram from 'node:dgram'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import { parseDnsConfig } from '../dns/config.js'
import { AuthoritativeServer } from '../dns/server.js'
import type { DnsChange, DnsView, EdgeSet, SrvTarget } from '../dns/view.js'
import { SiteMap } from '../fleet/site-map.js'
import { machine, percentile, ratio, writeResult } from './lib.js'

const ZONE = 'bench.ferry.test'
const TARGET_QPS = 40_000
const TARGET_RATIO = 0.45

interface Options { volumes: number, seconds: number, rounds: number, edns: boolean, nodeLoadgen: boolean }

function options (args: string[]): Options {
  const value = (name: string, dflt: number): number => {
    const i = args.indexOf(`--${name}`)
    const v = i >= 0 ? Number(args[i + 1]) : dflt
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} wants a positive number`)
    return v
  }
  return { volumes: value('volumes', 1000), seconds: value('seconds', 5), rounds: value('rounds', 3), edns: !args.includes('--no-edns'), nodeLoadgen: args.includes('--node-loadgen') }
}

/**
 * The view the DNS role would build, reduced to what the benchmark needs: volumes spread over
 * three gateways at three sites, the client (loopback) at a site with no gateway, so each
 * answer is the edge of the volume's first healthy gateway.
 */
class BenchView implements DnsView {
  private readonly sites = new SiteMap([
    { name: 'a', subnets: ['10.1.0.0/16'], edges: [] },
    { name: 'b', subnets: ['10.2.0.0/16'], edges: [] },
    { name: 'local', subnets: ['127.0.0.0/8'], edges: [] }
  ])

  readonly edges: Record<string, EdgeSet> = {
    gwa: { v4: ['192.0.2.1'], v6: ['2001:db8:a::1'] },
    gwb: { v4: ['192.0.2.2'], v6: ['2001:db8:b::1'] },
    gwc: { v4: ['192.0.2.3'], v6: ['2001:db8:c::1'] }
  }

  readonly volumes = new Map<string, string>()
  private readonly listeners = new Set<(change?: DnsChange) => void>()

  constructor (n: number) {
    const gws = Object.keys(this.edges)
    for (let i = 0; i < n; i++) this.volumes.set(`vol-${i}`, gws[i % gws.length] as string)
  }

  /** A route change: one volume moves (a scoped change, as the route table reports it). */
  move (volume: string, gateway: string): void {
    this.volumes.set(volume, gateway)
    for (const l of this.listeners) l({ volumes: [volume] })
  }

  /** A health change: everything may be different (an unscoped change). */
  flap (): void {
    for (const l of this.listeners) l()
  }

  volumeEdges (volume: string): EdgeSet | undefined {
    const gw = this.volumes.get(volume)
    return gw === undefined ? undefined : this.edges[gw]
  }

  gatewayEdges (gateway: string): EdgeSet | undefined { return this.edges[gateway] }
  proxies (): readonly SrvTarget[] { return [{ target: `edge.${ZONE}`, port: 8080, v4: ['192.0.2.1'] }] }
  siteOf (address: string): string | undefined { return this.sites.siteOf(address) }
  onChange (l: (change?: DnsChange) => void): () => void { this.listeners.add(l); return () => { this.listeners.delete(l) } }
}

// ------------------------------------------------------------------ load generation

interface Load { qps: number, sent: number, completed: number, lost: number, noerror: number, avgLatencyMs: number, tool: string }

async function hasCommand (cmd: string, args: string[]): Promise<boolean> {
  return await new Promise(resolve => execFile(cmd, args, err => resolve(err === null || (err as NodeJS.ErrnoException).code !== 'ENOENT')))
}

async function dnsperf (port: number, queryFile: string, seconds: number, edns: boolean, maxQps?: number): Promise<Load> {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', queryFile, '-l', String(seconds), '-c', '8', '-q', '200', '-t', '2', ...(edns ? ['-e'] : []), ...(maxQps === undefined ? [] : ['-Q', String(Math.round(maxQps))])]
  const out = await new Promise<string>((resolve, reject) => {
    execFile('dnsperf', args, { timeout: (seconds + 30) * 1000 }, (err, stdout, stderr) => err !== null ? reject(new Error(`dnsperf: ${stderr || err.message}`)) : resolve(stdout))
  })
  const num = (re: RegExp): number => Number(out.match(re)?.[1] ?? NaN)
  return {
    tool: 'dnsperf',
    qps: num(/Queries per second:\s+([\d.]+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    noerror: num(/NOERROR (\d+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000
  }
}

/**
 * The fallback: a worker thread keeping `window` queries in flight for `seconds` (a small
 * window when a rate is asked for: the Node generator does not pace, a short queue keeps the
 * server below saturation).
 */
async function nodeLoad (port: number, queries: Buffer[], seconds: number, maxQps?: number): Promise<Load> {
  const window = maxQps === undefined ? 200 : 8
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { role: 'loadgen', port, queries, seconds, window } })
  return await new Promise<Load>((resolve, reject) => {
    worker.once('message', (m: Load) => resolve(m))
    worker.once('error', reject)
  })
}

function runLoadgenWorker (): void {
  const { port, queries, seconds, window } = workerData as { port: number, queries: Uint8Array[], seconds: number, window: number }
  const sock = dgram.createSocket('udp4')
  const sentAt = new Float64Array(65536)
  let id = 0
  let sent = 0
  let completed = 0
  let noerror = 0
  let latency = 0
  let next = 0
  const send = (): void => {
    const q = Buffer.from(queries[next++ % queries.length] as Uint8Array)
    id = (id + 1) & 0xffff
    q.writeUInt16BE(id, 0)
    sentAt[id] = performance.now()
    sent++
    sock.send(q, port, '127.0.0.1')
  }
  const start = performance.now()
  const end = start + seconds * 1000
  sock.on('message', m => {
    const rid = m.readUInt16BE(0)
    if (sentAt[rid] !== 0) {
      completed++
      latency += performance.now() - (sentAt[rid] as number)
      sentAt[rid] = 0
      if (((m[3] as number) & 0xf) === 0) noerror++
    }
    if (performance.now() < end) send()
  })
  sock.bind(0, '127.0.0.1', () => {
    for (let i = 0; i < window; i++) send()
    // Replace queries lost in the kernel so the window does not shrink.
    const refill = setInterval(() => {
      const outstanding = sent - completed
      for (let i = outstanding; i < window && performance.now() < end; i++) send()
    }, 100)
    setTimeout(() => {
      clearInterval(refill)
      const elapsed = (performance.now() - start) / 1000
      parentPort?.postMessage({ tool: 'node loadgen', qps: completed / elapsed, sent, completed, lost: sent - completed, noerror, avgLatencyMs: completed === 0 ? NaN : latency / completed })
      sock.close()
    }, seconds * 1000 + 200)
  })
}

// ------------------------------------------------------------------ targets

async function udpAsk (port: number, msg: Buffer, timeoutMs = 1000): Promise<Buffer> {
  const sock = dgram.createSocket('udp4')
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timeout')), timeoutMs)
      sock.once('message', m => { clearTimeout(timer); resolve(m) })
      sock.send(msg, port, '127.0.0.1')
    })
  } finally {
    sock.close()
  }
}

function query (name: string, type: number, edns: boolean, id = 1): Buffer {
  const labels = name.split('.')
  const qname = Buffer.concat([...labels.map(l => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])])
  const out = Buffer.alloc(12 + qname.length + 4 + (edns ? 11 : 0))
  out.writeUInt16BE(id, 0)
  out.writeUInt16BE(0x0100, 2)
  out.writeUInt16BE(1, 4)
  out.writeUInt16BE(edns ? 1 : 0, 10)
  qname.copy(out, 12)
  out.writeUInt16BE(type, 12 + qname.length)
  out.writeUInt16BE(1, 14 + qname.length)
  if (edns) {
    const o = 16 + qname.length
    out.writeUInt16BE(41, o + 1)
    out.writeUInt16BE(1232, o + 3)
  }
  return out
}

/** The first A or AAAA address in a response (enough for single-answer checks). */
function firstAddress (m: Buffer): string | undefined {
  if (m.readUInt16BE(6) === 0) return undefined
  let off = 12
  while ((m[off] as number) !== 0) off += 1 + (m[off] as number)
  off += 5
  // Answer owner: a pointer (2) or a name.
  off += ((m[off] as number) & 0xc0) === 0xc0 ? 2 : (() => { let o = off; while ((m[o] as number) !== 0) o += 1 + (m[o] as number); return o + 1 - off })()
  const type = m.readUInt16BE(off)
  const rd = off + 10
  if (type === 1) return `${m[rd]}.${m[rd + 1]}.${m[rd + 2]}.${m[rd + 3]}`
  if (type === 28) return Array.from({ length: 8 }, (_, i) => m.readUInt16BE(rd + 2 * i).toString(16)).join(':').replace(/(^|:)0(:0)+(:|$)/, '::')
  return undefined
}

/** Checks that `port` answers a sample of volumes as the view says. Throws otherwise. */
async function verify (what: string, port: number, view: BenchView, edns: boolean): Promise<void> {
  const names = [...view.volumes.keys()]
  for (let i = 0; i < 20; i++) {
    const vol = names[Math.floor((i / 20) * names.length)] as string
    const gw = view.volumes.get(vol) as string
    const a = firstAddress(await udpAsk(port, query(`${vol}.${ZONE}`, 1, edns)))
    const aaaa = firstAddress(await udpAsk(port, query(`${vol}.${ZONE}`, 28, edns)))
    const want = view.edges[gw] as EdgeSet
    if (a !== want.v4[0] || aaaa !== want.v6[0]) throw new Error(`${what} answered ${vol} with ${a} / ${aaaa}, expected ${want.v4[0]} / ${want.v6[0]}`)
  }
}

function writeNsdZone (dir: string, view: BenchView): string {
  const lines = [
    `$ORIGIN ${ZONE}.`,
    '$TTL 5',
    `@ 3600 IN SOA ns1.${ZONE}. hostmaster.${ZONE}. 1 3600 600 86400 5`,
    `@ 3600 IN NS ns1.${ZONE}.`,
    'ns1 3600 IN A 127.0.0.1'
  ]
  for (const [vol, gw] of view.volumes) {
    const e = view.edges[gw] as EdgeSet
    lines.push(`${vol} IN A ${e.v4[0]}`, `${vol} IN AAAA ${e.v6[0]}`)
  }
  const zonefile = path.join(dir, 'bench.zone')
  fs.writeFileSync(zonefile, lines.join('\n') + '\n')
  return zonefile
}

async function startNsd (dir: string, port: number, view: BenchView): Promise<ChildProcess> {
  const zonefile = writeNsdZone(dir, view)
  // Running as root in a scratch directory: no privilege drop (username ""), no chroot, no
  // database file, no remote control; one server process, like the single Node process; the
  // same answers as ferry's (minimal responses: no NS RRset in the authority section) and the
  // same 1 MiB receive buffer.
  const conf = `server:
  ip-address: 127.0.0.1
  port: ${port}
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "${dir}"
  zonelistfile: "${dir}/zone.list"
  database: ""
  pidfile: "${dir}/nsd.pid"
  xfrdfile: "${dir}/xfrd.state"
  xfrdir: "${dir}"
  logfile: "${dir}/nsd.log"
  verbosity: 0
  hide-version: yes
  minimal-responses: yes
  receive-buffer-size: 1048576
remote-control:
  control-enable: no
zone:
  name: ${ZONE}
  zonefile: "${zonefile}"
`
  fs.writeFileSync(path.join(dir, 'nsd.conf'), conf)
  const child = spawn('nsd', ['-d', '-c', path.join(dir, 'nsd.conf')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nsd exited: ${stderr}`)
    try {
      await udpAsk(port, query(`${ZONE}`, 6, false), 200)
      return child
    } catch {
      if (Date.now() > deadline) { child.kill(); throw new Error(`nsd did not answer: ${stderr}`) }
    }
  }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 3000))])
  if (child.exitCode === null) child.kill('SIGKILL')
}

/** The floor: a node:dgram socket that turns each query into a reply by setting QR. */
async function startBare (): Promise<{ port: number, close: () => Promise<void> }> {
  const sock = dgram.createSocket('udp4')
  sock.on('message', (m, r) => {
    m[2] = (m[2] as number) | 0x80
    sock.send(m, r.port, r.address)
  })
  await new Promise<void>(resolve => sock.bind(0, '127.0.0.1', () => resolve()))
  return { port: sock.address().port, close: () => new Promise(resolve => sock.close(() => resolve())) }
}

async function freeUdpPort (): Promise<number> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', () => resolve()))
  const port = s.address().port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

/**
 * Change-to-answer latency: move a volume to another gateway, then query until the answer is
 * the new edge. `pause` between samples (under load, the changes are spread over the run).
 */
async function changeLatency (port: number, view: BenchView, samples: number, pauseMs: number, until: number): Promise<number[]> {
  const names = [...view.volumes.keys()]
  const gws = Object.keys(view.edges)
  const out: number[] = []
  for (let i = 0; i < samples && performance.now() < until; i++) {
    const vol = names[(i * 7919) % names.length] as string
    const next = gws[(gws.indexOf(view.volumes.get(vol) as string) + 1) % gws.length] as string
    const want = (view.edges[next] as EdgeSet).v4[0]
    const q = query(`${vol}.${ZONE}`, 1, true, 4242)
    const t0 = performance.now()
    view.move(vol, next)
    for (;;) {
      let got: string | undefined
      try { got = firstAddress(await udpAsk(port, q, 500)) } catch { got = undefined }
      if (got === want) break
      if (performance.now() - t0 > 5000) throw new Error(`${vol} still answered ${got} 5 s after moving to ${next}`)
    }
    out.push(performance.now() - t0)
    if (pauseMs > 0) await new Promise(resolve => setTimeout(resolve, pauseMs))
  }
  return out
}

function summary (ms: number[]): Record<string, number> {
  const s = [...ms].sort((a, b) => a - b)
  const r3 = (x: number): number => Math.round(x * 1000) / 1000
  return { samples: s.length, p50Ms: r3(percentile(s, 50)), p99Ms: r3(percentile(s, 99)), maxMs: r3(s[s.length - 1] ?? NaN) }
}

export default async function run (args: string[]): Promise<void> {
  const opt = options(args)
  const useDnsperf = !opt.nodeLoadgen && await hasCommand('dnsperf', ['-h'])
  const haveNsd = await hasCommand('nsd', ['-v'])
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-dns-'))
  const view = new BenchView(opt.volumes)
  const names = [...view.volumes.keys()]
  const queryFile = path.join(dir, 'queries.txt')
  fs.writeFileSync(queryFile, names.flatMap(v => [`${v}.${ZONE} A`, `${v}.${ZONE} AAAA`]).join('\n') + '\n')
  const queries = names.flatMap(v => [query(`${v}.${ZONE}`, 1, opt.edns), query(`${v}.${ZONE}`, 28, opt.edns)])
  const load = (port: number, maxQps?: number, seconds = opt.seconds): Promise<Load> => useDnsperf ? dnsperf(port, queryFile, seconds, opt.edns, maxQps) : nodeLoad(port, queries, seconds, maxQps)
  console.log(`dns bench: ${opt.volumes} volumes, ${opt.rounds} rounds of ${opt.seconds} s per target, ${opt.edns ? 'EDNS' : 'no EDNS'}, load from ${useDnsperf ? 'dnsperf' : 'a Node worker'}${haveNsd ? '' : ', nsd not installed'}`)

  const results: Record<string, Load[]> = { ferry: [], nsd: [], bareDgram: [] }
  const median = (runs: Load[] | undefined): number | undefined => {
    if (runs === undefined || runs.length === 0) return undefined
    const q = runs.map(r => r.qps).sort((a, b) => a - b)
    return q.length % 2 === 1 ? q[(q.length - 1) / 2] as number : ((q[q.length / 2 - 1] as number) + (q[q.length / 2] as number)) / 2
  }
  const server = new AuthoritativeServer({
    // Rate limiting off: the load comes from one address, which is exactly what RRL limits.
    config: parseDnsConfig({ zone: ZONE, listen: [{ address: '127.0.0.1', port: 0 }], rateLimit: { responsesPerSecond: 0 } }),
    view
  })
  let nsd: ChildProcess | undefined
  let bare: { port: number, close: () => Promise<void> } | undefined
  try {
    // The three servers: ferry (in this process), nsd with the equivalent static zone, and a
    // bare node:dgram responder. Each is checked for correct answers first.
    await server.start()
    const ferryPort = server.addresses()[0]?.port as number
    await verify('ferry', ferryPort, view, opt.edns)
    let nsdPort: number | undefined
    if (haveNsd) {
      nsdPort = await freeUdpPort()
      nsd = await startNsd(dir, nsdPort, view)
      await verify('nsd', nsdPort, view, opt.edns)
    }
    bare = await startBare()

    const servers: Array<[keyof typeof results, number]> = [['ferry', ferryPort], ...(nsdPort === undefined ? [] : [['nsd', nsdPort] as [keyof typeof results, number]]), ['bareDgram', bare.port]]
    for (let round = 1; round <= opt.rounds; round++) {
      // Odd rounds in one order, even rounds in the reverse (ABC CBA …), so that no target
      // always runs first or last.
      const order = round % 2 === 1 ? servers : [...servers].reverse()
      const line: string[] = []
      for (const [name, port] of order) {
        const run = await load(port)
        results[name]?.push(run)
        line.push(`${name} ${Math.round(run.qps)}`)
      }
      console.log(`round ${round}: ${line.join(', ')} qps`)
    }
    if (nsd !== undefined) await stopChild(nsd)
    nsd = undefined
    await bare.close()
    bare = undefined
    const ferryQps = median(results.ferry) as number
    const nsdQps = median(results.nsd)
    const bareQps = median(results.bareDgram) as number

    // 4. Change-to-answer latency. Idle: one change at a time, query until the new address.
    // Under load: a route change every 50 ms for 10 s while the server runs at half the rate
    // it managed above (at full rate the probe would only measure the load generator's queue).
    const idle = await changeLatency(ferryPort, view, 200, 0, Infinity)
    const underLoadRun = load(ferryPort, ferryQps / 2, 10)
    await new Promise(resolve => setTimeout(resolve, 500))
    const busy = await changeLatency(ferryPort, view, 10_000, 50, performance.now() + 9000)
    const halfRate = await underLoadRun
    results.ferryHalfRateWithRouteChanges = [halfRate]
    console.log(`ferry at half rate, a route change every 50 ms: ${Math.round(halfRate.qps)} qps, lost ${halfRate.lost}`)

    // 5. Health flaps: every 100 ms a change that drops every cached answer, at full load.
    const flapping = setInterval(() => view.flap(), 100)
    let flaps: Load
    try {
      flaps = await load(ferryPort)
    } finally {
      clearInterval(flapping)
    }
    results.ferryWithFlaps = [flaps]
    console.log(`ferry, full cache drop every 100 ms: ${Math.round(flaps.qps)} qps`)

    const figures = {
      ferryQps: Math.round(ferryQps),
      nsdQps: nsdQps === undefined ? null : Math.round(nsdQps),
      bareDgramQps: Math.round(bareQps),
      ferryAtHalfRateWithRouteChangesQps: Math.round(halfRate.qps),
      ferryWithFullInvalidationEvery100msQps: Math.round(flaps.qps),
      changeToAnswerIdle: summary(idle),
      changeToAnswerUnderLoad: summary(busy)
    }
    const perRound = (other: Load[] | undefined): number[] => (results.ferry ?? []).map((f, i) => ratio(f.qps, other?.[i]?.qps ?? NaN))
    const ratios = {
      ferryOverNsd: nsdQps === undefined ? null : ratio(ferryQps, nsdQps),
      ferryOverBareDgram: ratio(ferryQps, bareQps),
      ferryOverNsdPerRound: nsdQps === undefined ? null : perRound(results.nsd),
      ferryOverBareDgramPerRound: perRound(results.bareDgram)
    }
    const targets = {
      qps: { target: TARGET_QPS, met: ferryQps >= TARGET_QPS },
      ratioOverNsd: { target: TARGET_RATIO, met: ratios.ferryOverNsd === null ? null : ratios.ferryOverNsd >= TARGET_RATIO }
    }
    console.log(`median qps: ferry ${figures.ferryQps}, nsd ${figures.nsdQps ?? 'n/a'}, bare dgram ${figures.bareDgramQps}`)
    console.log(`ratios of medians: ferry/nsd ${ratios.ferryOverNsd ?? 'n/a'}, ferry/bare dgram ${ratios.ferryOverBareDgram}; per round: ferry/nsd ${ratios.ferryOverNsdPerRound?.join(' ') ?? 'n/a'}, ferry/bare ${ratios.ferryOverBareDgramPerRound.join(' ')}`)
    console.log(`change to answer: idle p50 ${figures.changeToAnswerIdle.p50Ms} ms p99 ${figures.changeToAnswerIdle.p99Ms} ms; under load p50 ${figures.changeToAnswerUnderLoad.p50Ms} ms p99 ${figures.changeToAnswerUnderLoad.p99Ms} ms`)
    console.log(`targets: >= ${TARGET_QPS} qps ${targets.qps.met ? 'met' : 'NOT met'}; >= ${TARGET_RATIO}x nsd ${targets.ratioOverNsd.met === null ? 'not measured' : targets.ratioOverNsd.met ? 'met' : 'NOT met'}`)
    const file = writeResult('dns', {
      command: `npm run bench -- dns ${args.join(' ')}`.trim(),
      options: opt,
      loadTool: useDnsperf ? 'dnsperf' : 'node worker',
      figures,
      ratios,
      targets,
      runs: results,
      machineAtStart: machine(),
      loadAverage: os.loadavg()
    })
    console.log(`wrote ${file}`)
  } finally {
    if (nsd !== undefined) await stopChild(nsd)
    if (bare !== undefined) await bare.close()
    await server.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === 'loadgen') runLoadgenWorker()
