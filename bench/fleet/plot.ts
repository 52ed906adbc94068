/**
 * The fleet replay's plot: client latency over trace time, one line per policy (mean per bin,
 * p99 dashed), fault windows shaded. Written by hand as SVG: a few polylines and rectangles need
 * no plotting library (vega, chart.js + canvas would add native or large dependencies for this).
 */
import type { Sample } from './replay.js'

export interface PlotWindow { name: string, fromS: number, toS: number | null }

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd']
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

export function latencyPlot (series: Record<string, Sample[]>, windows: PlotWindow[], speed: number, bins = 120): string {
  const W = 900
  const H = 420
  const L = 60
  const R = 20
  const T = 30
  const B = 50
  // Trace time of a sample = its wall time × speed (the replay's clock), in hours.
  const all = Object.values(series).flat()
  const maxH = Math.max(1e-6, ...all.map(s => s.wallMs / 1000 * speed / 3600))
  const binned = Object.fromEntries(Object.entries(series).map(([name, xs]) => {
    const b: number[][] = Array.from({ length: bins }, () => [])
    for (const s of xs) b[Math.min(bins - 1, Math.floor((s.wallMs / 1000 * speed / 3600) / maxH * bins))]?.push(s.ms)
    return [name, b.map(v => {
      if (v.length === 0) return null
      v.sort((x, y) => x - y)
      return { mean: v.reduce((x, y) => x + y, 0) / v.length, p99: v[Math.min(v.length - 1, Math.ceil(0.99 * v.length) - 1)] as number }
    })]
  }))
  const maxY = Math.max(10, ...Object.values(binned).flat().map(p => p?.p99 ?? 0)) * 1.05
  const x = (h: number): number => L + (h / maxH) * (W - L - R)
  const y = (ms: number): number => T + (1 - ms / maxY) * (H - T - B)
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`]
  for (const w of windows) {
    const x0 = x(w.fromS / 3600)
    const x1 = x((w.toS ?? maxH * 3600) / 3600)
    out.push(`<rect x="${x0.toFixed(1)}" y="${T}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${H - T - B}" fill="#f5c2c2" opacity="0.6"/>`, `<text x="${(x0 + 3).toFixed(1)}" y="${T + 14}" fill="#900">${esc(w.name)}</text>`)
  }
  for (let i = 0; i <= 5; i++) {
    const v = (maxY / 5) * i
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(0)}</text>`)
    const h = (maxH / 5) * i
    out.push(`<text x="${x(h).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${h.toFixed(1)}</text>`)
  }
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">trace time (h)</text>`, `<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">client latency (ms): mean per bin, p99 dashed</text>`)
  Object.entries(binned).forEach(([name, pts], i) => {
    const c = COLORS[i % COLORS.length] as string
    const line = (k: 'mean' | 'p99'): string => pts.map((p, j) => p === null ? '' : `${x(((j + 0.5) / bins) * maxH).toFixed(1)},${y(p[k]).toFixed(1)}`).filter(Boolean).join(' ')
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="1.8" points="${line('mean')}"/>`, `<polyline fill="none" stroke="${c}" stroke-width="1" stroke-dasharray="4 3" opacity="0.7" points="${line('p99')}"/>`)
    out.push(`<rect x="${W - R - 150}" y="${T + 6 + i * 18}" width="12" height="3" fill="${c}"/>`, `<text x="${W - R - 132}" y="${T + 11 + i * 18}">${esc(name)}</text>`)
  })
  out.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`, `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`, '</svg>')
  return out.join('\n') + '\n'
}
