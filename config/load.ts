import fs from 'node:fs'
import { LineCounter, parseDocument, isMap, isSeq, type Document } from 'yaml'
import type { ZodIssue } from 'zod'
import { FerryError } from '../lib/errors.js'
import { configSchema, type FerryConfig } from './schema.js'

/** Larger files are refused before parsing: a config is a few KiB, a 1 GiB one is a mistake or an attack. */
const MAX_CONFIG_BYTES = 1024 * 1024

export interface ConfigProblem {
  /** `proxy.listen.port`, `gateways[2].url`; empty for the document as a whole. */
  keyPath: string
  line: number
  column: number
  message: string
}

/**
 * An invalid configuration. `message` lists every problem as `file:line:col: key.path: what`,
 * the form editors and CI logs link to, so an operator can go straight to the line.
 */
export class ConfigError extends FerryError {
  readonly problems: ConfigProblem[]
  readonly file: string

  constructor (file: string, problems: ConfigProblem[]) {
    super('FERRY_CONFIG_INVALID',
      `invalid config ${file}:\n` + problems.map(p => `  ${file}:${p.line}:${p.column}: ${p.keyPath === '' ? '' : p.keyPath + ': '}${p.message}`).join('\n'),
      400, { problems })
    this.problems = problems
    this.file = file
  }
}

/** Reads, parses and validates a config file. Throws ConfigError (or FERRY_CONFIG_UNREADABLE). */
export function loadConfigFile (file: string): FerryConfig {
  let text: string
  try {
    const st = fs.statSync(file)
    if (st.size > MAX_CONFIG_BYTES) throw new ConfigError(file, [{ keyPath: '', line: 1, column: 1, message: `file is ${st.size} bytes; the limit is ${MAX_CONFIG_BYTES}` }])
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new FerryError('FERRY_CONFIG_UNREADABLE', `cannot read config ${file}: ${(err as Error).message}`, 400)
  }
  return parseConfig(text, file)
}

/** Parses and validates config text; `file` only names the source in messages. */
export function parseConfig (text: string, file = '<config>'): FerryConfig {
  const lineCounter = new LineCounter()
  // uniqueKeys: a key given twice is almost always an editing slip that would silently win.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false })
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map(e => {
      const pos = lineCounter.linePos(e.pos[0])
      return { keyPath: '', line: pos.line, column: pos.col, message: `YAML: ${e.message.split('\n')[0]}` }
    }))
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {}
  const result = configSchema.safeParse(raw)
  if (!result.success) {
    throw new ConfigError(file, result.error.issues.map(issue => locate(doc, lineCounter, issue)))
  }
  return result.data
}

function locate (doc: Document, lineCounter: LineCounter, issue: ZodIssue): ConfigProblem {
  // Walk down as far as the document goes: a missing key is reported at its parent map,
  // an unknown key at the key itself.
  let path = issue.path
  if (issue.code === 'unrecognized_keys' && issue.keys.length > 0) path = [...path, issue.keys[0] as string]
  let offset = 0
  for (let depth = path.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth), true)
    const range = keyRange(doc, path.slice(0, depth)) ?? (node as { range?: [number, number, number] } | null)?.range
    if (range) { offset = range[0]; break }
  }
  const pos = lineCounter.linePos(offset)
  return { keyPath: formatPath(path), line: pos.line, column: pos.col, message: issue.message }
}

/** The position of the key itself (`port:`) reads better than the value's. */
function keyRange (doc: Document, path: Array<string | number>): [number, number, number] | undefined {
  if (path.length === 0) return undefined
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true)
  const last = path[path.length - 1]
  if (isMap(parent)) {
    const pair = parent.items.find(p => (p.key as { value?: unknown } | null)?.value === last)
    return (pair?.key as { range?: [number, number, number] } | undefined)?.range
  }
  if (isSeq(parent) && typeof last === 'number') {
    return (parent.items[last] as { range?: [number, number, number] } | undefined)?.range
  }
  return undefined
}

export function formatPath (path: ReadonlyArray<string | number>): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : (out === '' ? p : `.${p}`)
  return out
}
