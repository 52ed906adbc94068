/**
 * `npm run bench -- placement-sessions [placement options]`: what a session co-access signal
 * could buy the rebalancer, bounded, before anyone builds it (issue 21, "predict, not only
 * follow"). Not a policy ferry runs: a reference, like bench/placement.ts onlineIdeal.
 *
 * The signal: blocks read one after the other by the same client within SESSION_GAP_S are a
 * pair (a → b), learned from the past only. When a site reads a, the blocks that followed a in
 * earlier sessions are likely its next reads there, before their own first access from it. Per
 * block and site, the expected next reads Σ pairs(a → b) / pairs(a → ·) over the site's reads of
 * a, forward-decayed with a short half-life, join the block's history with weight λ.
 *
 * The replay is the placement benchmark's set-up (NASA trace, four sites, the same latency
 * matrix and site rules, --sites/--latency/--half-life/--interval honoured), at rebalancer
 * rounds: every --interval seconds each block is put, instantly and for free, where its decayed
 * history (half-life --half-life) plus the global site mix (pseudo-count 1) plus λ × the
 * prediction cost least; a block's first access creates it at the reader's site (write
 * locality). No capacity, no budget, no hysteresis: the figures bound what a round-based
 * rebalancer could do with the signal, and λ = 0 in the same run is the bound without it. Bytes
 * moved are the blocks' sizes at each change of place. Writes
 * bench/results/placement-sessions.json.
 */
import os from 'node:os'
import { decayFactor } from '../lib/forward-decay.js'
import { options, oracle, setup, summarise, type Setup } from './placement.js'
import { ratio, writeResult } from './lib.js'

const SESSION_GAP_S = 60

interface Variant { lambda: number, predictionHalfLifeS: number }

function replay (s: Setup, v: Variant, halfLifeS: number, intervalS: number): { meanMs: number, bytesMoved: number, moves: number } {
  const S = s.sites.length
  const G = s.gateways.length
  const B = s.blocks.length
  const hl = halfLifeS * 1000
  const phl = v.predictionHalfLifeS * 1000
  const sc = new Float64Array(B * S)
  const pred = new Float64Array(B * S)
  const place = new Int32Array(B).fill(-1)
  const seen = new Float64Array(S)
  let seenTotal = 0
  // Pair counts, learned as the trace goes: succ[a] maps b → count; out[a] = Σ.
  const succ: Array<Map<number, number> | undefined> = new Array(B)
  const out = new Float64Array(B)
  const lastOf = new Map<number, { block: number, at: number }>()
  const accesses = s.accesses
  let t = accesses[0]?.at ?? 0
  let nextRound = t + intervalS * 1000
  let total = 0
  let bytes = 0
  let moves = 0
  const vec = new Float64Array(S)
  const rebalance = (now: number): void => {
    const f = decayFactor(now - t, hl)
    const fp = decayFactor(now - t, phl)
    for (let i = 0; i < B * S; i++) { (sc[i] as number) *= f; (pred[i] as number) *= fp }
    t = now
    for (let b = 0; b < B; b++) {
      if (place[b] === -1) continue
      let w = 0
      for (let x = 0; x < S; x++) {
        const val = (sc[b * S + x] as number) + v.lambda * (pred[b * S + x] as number) + (seenTotal > 0 ? (seen[x] as number) / seenTotal : 0)
        vec[x] = val; w += val
      }
      if (!(w > 0)) continue
      let best = place[b] as number
      let bestCost = Infinity
      for (let g = 0; g < G; g++) {
        let c = 0
        for (let x = 0; x < S; x++) c += (vec[x] as number) * (s.lat[x * G + g] as number)
        if (c < bestCost - 1e-9) { bestCost = c; best = g }
      }
      if (best !== place[b]) { place[b] = best; bytes += (s.blocks[b] as { bytes: number }).bytes; moves++ }
    }
  }
  for (const a of accesses) {
    while (a.at >= nextRound) { rebalance(nextRound); nextRound += intervalS * 1000 }
    const b = a.block
    if (place[b] === -1) place[b] = a.site
    total += s.lat[a.site * G + (place[b] as number)] as number
    // Scores are kept as of t (the last round): an access between rounds adds its growth.
    const g = 1 / decayFactor(a.at - t, hl)
    ;(sc[b * S + a.site] as number) += g
    ;(seen[a.site] as number) += 1; seenTotal++
    // The site reading b will likely read what followed b before.
    const next = succ[b]
    if (next !== undefined && (out[b] as number) > 0) {
      const gp = 1 / decayFactor(a.at - t, phl)
      for (const [c, n] of next) (pred[c * S + a.site] as number) += gp * n / (out[b] as number)
    }
    const last = lastOf.get(a.client)
    if (last !== undefined && last.block !== b && a.at - last.at <= SESSION_GAP_S * 1000) {
      let m = succ[last.block]
      if (m === undefined) succ[last.block] = m = new Map()
      m.set(b, (m.get(b) ?? 0) + 1)
      ;(out[last.block] as number) += 1
    }
    lastOf.set(a.client, { block: b, at: a.at })
  }
  return { meanMs: Math.round(total / accesses.length * 1000) / 1000, bytesMoved: bytes, moves }
}

export default async function run (argv: string[]): Promise<void> {
  const opts = options(argv)
  const s = setup(opts)
  const or = oracle(s)
  const o = { meanMs: summarise(s, or).meanMs as number, bytesMoved: or.bytesMoved }
  const variants: Array<[string, Variant]> = [
    ['history only (λ = 0)', { lambda: 0, predictionHalfLifeS: 120 }],
    ['sessions λ = 1, prediction half-life 120 s', { lambda: 1, predictionHalfLifeS: 120 }],
    ['sessions λ = 4, prediction half-life 120 s', { lambda: 4, predictionHalfLifeS: 120 }],
    ['sessions λ = 1, prediction half-life 600 s', { lambda: 1, predictionHalfLifeS: 600 }],
    ['sessions λ = 4, prediction half-life 600 s', { lambda: 4, predictionHalfLifeS: 600 }]
  ]
  const results: Record<string, unknown> = {}
  console.log(`placement-sessions: rounds every ${opts.intervalS} s, history half-life ${opts.halfLifeS} s, session gap ${SESSION_GAP_S} s; oracle ${o.meanMs} ms, ${(o.bytesMoved / 1e6).toFixed(1)} MB`)
  for (const [name, v] of variants) {
    const r = replay(s, v, opts.halfLifeS, opts.intervalS)
    results[name] = { ...v, ...r, overOracle: ratio(r.meanMs, o.meanMs), bytesOverOracle: ratio(r.bytesMoved, o.bytesMoved) }
    console.log(`  ${name.padEnd(46)} mean ${r.meanMs.toFixed(3)} ms (× oracle ${ratio(r.meanMs, o.meanMs)})  moved ${(r.bytesMoved / 1e6).toFixed(1)} MB in ${r.moves} moves (× oracle ${ratio(r.bytesMoved, o.bytesMoved)})`)
  }
  const file = writeResult('placement-sessions', {
    setup: { trace: opts.trace, intervalS: opts.intervalS, halfLifeS: opts.halfLifeS, sessionGapS: SESSION_GAP_S, loadAverage: os.loadavg(), note: 'a bound: instant, free, uncapacitated moves at every round; not a policy ferry runs' },
    oracle: { meanMs: o.meanMs, bytesMoved: o.bytesMoved },
    results
  })
  console.log(`  wrote ${file}`)
}
