import os from 'node:os'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The machine a figure was measured on: every result file carries it. */
export function machine (): Record<string, unknown> {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`
  }
}

export const resultsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results')

/** Writes bench/results/<name>.json (figures, ratios, machine, date) and returns its path. */
export function writeResult (name: string, result: Record<string, unknown>): string {
  fs.mkdirSync(resultsDir, { recursive: true })
  const file = path.join(resultsDir, `${name}.json`)
  fs.writeFileSync(file, JSON.stringify({ name, date: new Date().toISOString(), machine: machine(), ...result }, null, 2) + '\n')
  return file
}

export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i] as number
}

export function ratio (a: number, b: number): number {
  return b === 0 ? NaN : Math.round((a / b) * 1000) / 1000
}
