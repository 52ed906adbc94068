/**
 * The telemetry CSV export (what the store exports and `ferry train` / `ferry evaluate` read):
 *
 *   timestamp,gateway,cpu,mem_pressure,disk_util,disk_await_ms,net_latency_ms,probe_latency_ms,probe_error_rate
 *   2024-05-01T12:00:00.000Z,gw-1,0.31,0.42,0.12,3.1,0.8,6.5,0
 *   2024-05-01T12:00:01.000Z,gw-1,0.33,,0.12,3.4,0.9,6.1,0
 *
 * - One row per gateway per sample; rows need not be sorted.
 * - timestamp: ISO 8601 (with a zone) or Unix milliseconds.
 * - An empty cell is a missing value (the source was unavailable), never a zero.
 * - Signal columns may be left out of the header entirely; unknown columns are refused, since
 *   a misspelt signal silently ignored would train a model without it.
 */
import fs from 'node:fs'
import { FerryError } from '../../lib/errors.js'
import { SIGNALS, type SignalName, type TelemetryRecord } from './types.js'

export const CSV_HEADER = ['timestamp', 'gateway', ...SIGNALS].join(',')

function bad (where: string, message: string): never {
  throw new FerryError('FERRY_HEALTH_BAD_TELEMETRY', `${where}: ${message}`, 400)
}

function parseTimestamp (cell: string, where: string): number {
  const s = cell.trim()
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s)
  const t = Date.parse(s)
  if (Number.isNaN(t)) bad(where, `timestamp ${JSON.stringify(cell)} is neither ISO 8601 nor Unix milliseconds`)
  return t
}

export function parseTelemetryCsv (text: string, source = 'telemetry'): TelemetryRecord[] {
  const lines = text.split(/\r?\n/)
  const header = (lines[0] ?? '').split(',').map(h => h.trim())
  if (header[0] !== 'timestamp' || header[1] !== 'gateway') bad(`${source}:1`, `header must start with timestamp,gateway (got ${JSON.stringify(lines[0] ?? '')})`)
  const columns: Array<SignalName> = []
  for (const h of header.slice(2)) {
    if (!(SIGNALS as readonly string[]).includes(h)) bad(`${source}:1`, `unknown column ${JSON.stringify(h)} (known: ${SIGNALS.join(', ')})`)
    if (columns.includes(h as SignalName)) bad(`${source}:1`, `column ${h} appears twice`)
    columns.push(h as SignalName)
  }
  const out: TelemetryRecord[] = []
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string
    if (line.trim() === '') continue
    const where = `${source}:${i + 1}`
    const cells = line.split(',')
    if (cells.length !== header.length) bad(where, `${cells.length} cells, header has ${header.length}`)
    const gateway = (cells[1] as string).trim()
    if (gateway === '') bad(where, 'empty gateway')
    const rec: TelemetryRecord = { timestamp: parseTimestamp(cells[0] as string, where), gateway }
    for (let c = 0; c < columns.length; c++) {
      const cell = (cells[c + 2] as string).trim()
      if (cell === '') continue
      const v = Number(cell)
      if (!Number.isFinite(v)) bad(where, `${columns[c] as string} ${JSON.stringify(cell)} is not a number`)
      rec[columns[c] as SignalName] = v
    }
    out.push(rec)
  }
  return out
}

export function readTelemetryCsv (file: string): TelemetryRecord[] {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new FerryError('FERRY_HEALTH_TELEMETRY_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`, 400)
  }
  return parseTelemetryCsv(text, file)
}

/** Writes records in the export format (ISO timestamps, empty cells for missing values). */
export function formatTelemetryCsv (records: Iterable<TelemetryRecord>): string {
  const lines = [CSV_HEADER]
  for (const r of records) {
    const cells = [new Date(r.timestamp).toISOString(), r.gateway]
    for (const s of SIGNALS) {
      const v = r[s]
      cells.push(v === undefined ? '' : String(Number(v.toPrecision(6))))
    }
    lines.push(cells.join(','))
  }
  return lines.join('\n') + '\n'
}
