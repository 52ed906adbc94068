/** The run's figures as the table the soak prints (and the fault test leaves in its output). */
import { percentile } from '../lib.js'
import type { RunReport } from './schedule.js'

export function formatReport (r: RunReport): string {
  const lines: string[] = []
  const row = (k: string, v: string | number): void => { lines.push(`  ${k.padEnd(34)} ${v}`) }
  lines.push(`fleet fault run: ${r.durationS.toFixed(0)} s, ${r.rounds} round(s)${r.aborted !== undefined ? ' — ABORTED' : ''}`)
  row('writes acknowledged', r.writesAcked)
  row('deletes acknowledged', r.deletesAcked)
  row('writes not acknowledged', r.writesNotAcked)
  row('reads checked', r.reads)
  row('reads failed', r.readsFailed)
  const blocks = (kind: string): string => {
    const n = new Set(r.anomalies.filter(a => a.kind === kind).map(a => a.key)).size
    return n === 0 ? '' : ` (${n} blocks)`
  }
  row('lost acknowledged writes', `${r.lost}${blocks('lost')}`)
  row('stale reads', `${r.stale}${blocks('stale')}`)
  row('reads of bytes never written', `${r.corrupt}${blocks('corrupt')}`)
  row('final check (block × proxy reads)', `${r.finalCheck.checked} ok, ${r.finalCheck.unreadable.length} unreadable`)
  row('unexpected exits', r.unexpectedExits.length === 0 ? 0 : r.unexpectedExits.map(e => e.member).join(', '))
  row('fatal/uncaught log lines', r.logProblems.length)
  row('keep-alive races (idle sockets)', r.keepAliveRaces)
  lines.push('  refusals (503 + Retry-After) by code:')
  for (const [code, n] of sorted(r.refusals)) lines.push(`    ${code.padEnd(32)} ${n}`)
  if (Object.keys(r.refusals).length === 0) lines.push('    (none)')
  lines.push('  typed gateway errors while a gateway was failing:')
  for (const [what, n] of sorted(r.gatewayErrors)) lines.push(`    ${what.padEnd(32)} ${n}`)
  if (Object.keys(r.gatewayErrors).length === 0) lines.push('    (none)')
  lines.push('  failures through a process the schedule had down:')
  for (const [what, n] of sorted(r.outages)) lines.push(`    ${what.padEnd(32)} ${n}`)
  if (Object.keys(r.outages).length === 0) lines.push('    (none)')
  lines.push('  findings (anything else the clients saw):')
  for (const f of r.findings) lines.push(`    ${f.signature} ×${f.count} in ${f.phases.join(', ')}`)
  if (r.findings.length === 0) lines.push('    (none)')
  lines.push('')
  lines.push(`  ${'fault'.padEnd(22)} ${'runs'.padStart(5)} ${'recovered'.padStart(10)} ${'p50 s'.padStart(8)} ${'max s'.padStart(8)}  problems`)
  for (const f of r.faults) {
    const s = [...f.recoveryS].sort((a, b) => a - b)
    const fmt = (x: number): string => Number.isNaN(x) ? '-' : x.toFixed(2)
    lines.push(`  ${f.name.padEnd(22)} ${String(f.runs).padStart(5)} ${String(f.recoveryS.length).padStart(10)} ${fmt(percentile(s, 50)).padStart(8)} ${fmt(s.at(-1) ?? NaN).padStart(8)}  ${f.problems.length}`)
  }
  return lines.join('\n')
}

function sorted (m: Record<string, number>): Array<[string, number]> {
  return Object.entries(m).sort((a, b) => b[1] - a[1])
}
