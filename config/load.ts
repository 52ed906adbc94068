import fs from 'node:fs'
import { isMap, isSeq, type Document, type LineCounter } from 'yaml'
import type { ZodIssue } from 'zod'
import { FerryError } from '../lib/errors.js'
import { s3Secret } from '../upstream/s3.js'
import { loadGatewayTls } from '../upstream/connect.js'
import { configSchema, type FerryConfig } from './schema.js'
import { parseYaml, type ConfigProblem } from './yaml.js'

/** Larger files are refused before parsing: a config is a few KiB, a 1 GiB one is a mistake or an attack. */
const MAX_CONFIG_BYTES = 1024 * 1024
/**
 * Problems listed in one error. A generated or mangled file can have hundreds of thousands;
 * past the first screenful they only bury the first one, and locating each costs a search.
 */
const MAX_PROBLEMS = 100
/** A message quoting a 1 MiB value (or listing 100k unknown keys) is cut: the line says enough. */
const MAX_MESSAGE_CHARS = 300


/**
 * An invalid configuration. `message` lists the problems (the first MAX_PROBLEMS) as
 * `file:line:col: key.path: what`, the form editors and CI logs link to, so an operator can go
 * straight to the line.
 */
export class ConfigError extends FerryError {
  readonly problems: ConfigProblem[]
  readonly file: string

  /** `more`: problems found beyond those listed (MAX_PROBLEMS). */
  constructor (file: string, problems: ConfigProblem[], more = 0) {
    problems = problems.map(p => ({ ...p, keyPath: printable(p.keyPath), message: printable(p.message) }))
    super('FERRY_CONFIG_INVALID',
      `invalid config ${file}:\n` + problems.map(p => `  ${file}:${p.line}:${p.column}: ${p.keyPath === '' ? '' : p.keyPath + ': '}${p.message}`).join('\n') +
        (more > 0 ? `\n  … and ${more} more problem${more === 1 ? '' : 's'}` : ''),
      400, { problems, ...(more > 0 ? { more } : {}) })
    this.problems = problems
    this.file = file
  }
}

/**
 * Messages quote the file's values and keys. A newline in one would start a line that is not a
 * problem (or forges one: `other.yaml:1:1: …`) and bidirectional overrides would make a log lie
 * about what it shows, so control and bidi characters are escaped; and long values are cut.
 */
function printable (text: string): string {
  const clipped = text.length <= MAX_MESSAGE_CHARS ? text : `${text.slice(0, MAX_MESSAGE_CHARS)}… (${text.length} characters)`
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return clipped.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, c =>
    c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** Reads, parses and validates a config file. Throws ConfigError (or FERRY_CONFIG_UNREADABLE). */
export function loadConfigFile (file: string): FerryConfig {
  let text: string
  try {
    text = readBounded(file)
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new FerryError('FERRY_CONFIG_UNREADABLE', `cannot read config ${file}: ${(err as Error).message}`, 400)
  }
  return parseConfig(text, file)
}

/**
 * Reads at most MAX_CONFIG_BYTES + 1 bytes whatever the file claims to be: the size stat gives
 * is 0 for /dev/zero or a pipe, and stale for a file being appended to.
 */
function readBounded (file: string): string {
  const fd = fs.openSync(file, 'r')
  try {
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1)
    let n = 0
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null)
      if (got === 0) break
      n += got
      if (n > MAX_CONFIG_BYTES) {
        const size = fs.fstatSync(fd).size
        const message = size > MAX_CONFIG_BYTES ? `file is ${size} bytes; the limit is ${MAX_CONFIG_BYTES}` : `file is larger than the limit of ${MAX_CONFIG_BYTES} bytes`
        throw new ConfigError(file, [{ keyPath: '', line: 1, column: 1, message }])
      }
    }
    return buf.toString('utf8', 0, n)
  } finally {
    fs.closeSync(fd)
  }
}

/** Parses and validates config text; `file` only names the source in messages. */
export function parseConfig (text: string, file = '<config>'): FerryConfig {
  // Duplicate keys are refused as YAML errors: a key given twice is almost always an editing slip that would silently win.
  const yaml = parseYaml(text, MAX_PROBLEMS)
  if (!yaml.ok) throw new ConfigError(file, yaml.problems, yaml.more)
  const { doc, lineCounter } = yaml
  const result = configSchema.safeParse(yaml.value ?? {})
  if (!result.success) {
    const issues = result.error.issues
    throw new ConfigError(file, issues.slice(0, MAX_PROBLEMS).map(issue => locate(doc, lineCounter, issue)), Math.max(0, issues.length - MAX_PROBLEMS))
  }
  // An s3 gateway's secret file or variable is read now, so a missing one refuses the config (at
  // start, or a reload that keeps the previous config) instead of failing when its pool is made.
  const secrets: ZodIssue[] = []
  result.data.gateways.forEach((g, i) => {
    if (g.kind !== 's3') return
    try {
      s3Secret(g)
    } catch (err) {
      const key = g.s3?.secretFile !== undefined ? 'secretFile' : 'secretEnv'
      secrets.push({ code: 'custom', path: ['gateways', i, 's3', key], message: (err as Error).message })
    }
  })
  // An https gateway's CA and client certificate likewise: a file that cannot be used would fail
  // every connection to the gateway, which the operator should hear of from the config check.
  result.data.gateways.forEach((g, i) => {
    try {
      loadGatewayTls(g)
    } catch (err) {
      const { key, reason } = (err as FerryError).details ?? {}
      secrets.push({ code: 'custom', path: ['gateways', i, 'tls', ...(typeof key === 'string' ? [key] : [])], message: typeof reason === 'string' ? reason : (err as Error).message })
    }
  })
  if (secrets.length > 0) throw new ConfigError(file, secrets.slice(0, MAX_PROBLEMS).map(issue => locate(doc, lineCounter, issue)), Math.max(0, secrets.length - MAX_PROBLEMS))
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
