import fs from 'node:fs'
import path from 'node:path'
import { parse, stringify, type ToStringOptions } from 'yaml'
import { sandboxConfig } from '../../config/sandbox.js'
import { configSchema } from '../../config/schema.js'
import { rng } from '../../planner/health/scenarios.js'
import { ROOT } from '../helpers/process.js'
import { eachSchema } from '../helpers/zod.js'

/**
 * Config inputs for fuzzing the loader (fuzz.test.ts) and live reload (reload-fuzz.test.ts):
 * mutations of config/example.yaml and of the embedded sandbox config at every key path, text
 * edits, random YAML, hostile documents and binary junk. Case `i` of seed `s` is always the same
 * input, so a failure replays alone: FERRY_FUZZ_SEED=s FERRY_FUZZ_CASE=i.
 */

export interface FuzzCase {
  kind: string
  /** A Buffer is written as bytes (not valid UTF-8, say) and must go through the file loader. */
  input: string | Buffer
}

type Random = () => number
type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

const EXAMPLE_TEXT = fs.readFileSync(path.join(ROOT, 'config', 'example.yaml'), 'utf8')
const SANDBOX_TEXT = stringify(sandboxConfig())
const SEEDS: Array<{ text: string, value: Json }> = [
  { text: EXAMPLE_TEXT, value: parse(EXAMPLE_TEXT) as Json },
  { text: SANDBOX_TEXT, value: parse(SANDBOX_TEXT) as Json }
]

/** Every key the schema knows: random documents use them so they get past the unknown-key check. */
const SCHEMA_KEYS: string[] = (() => {
  const keys = new Set<string>()
  eachSchema(configSchema, (_node, keyPath) => {
    const key = keyPath.split('.').pop()?.replace(/(\[\]|\{\})+$/, '')
    if (key !== undefined && key !== '') keys.add(key)
  })
  return [...keys]
})()

const pick = <T>(r: Random, items: readonly T[]): T => items[Math.floor(r() * items.length)] as T
const int = (r: Random, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1))

function randomString (r: Random, max: number): string {
  const alphabets = ['abcxyz-_.:/ 019', '\u0000\u0001\u0007\u001b\u007f', 'äöüßéñ中文日本語한국어', '\u{1F600}\u{1F4A9}\u200B\u202E\uFEFF', '{}[]&*!|>\'"%@`#,?-: \t\n\r\\']
  let s = ''
  const n = int(r, 0, max)
  const alphabet = pick(r, alphabets)
  for (let i = 0; i < n; i++) s += [...alphabet][Math.floor(r() * [...alphabet].length)]
  return s
}

function nested (depth: number, leaf: Json, asArray: boolean): Json {
  let v = leaf
  for (let i = 0; i < depth; i++) v = asArray ? [v] : { a: v }
  return v
}

/** A value of the wrong type, size or form for whatever key it lands on. */
function wrongValue (r: Random, huge: boolean): Json {
  const choices: Array<() => Json> = [
    () => 'x', () => '', () => ' ', () => 'http://[::1', () => 'http://[::1]:99999', () => '10.0.0.0/33', () => '::1', () => '/',
    () => 0, () => -1, () => 1.5, () => 2 ** 53 + 2, () => 1e308, () => -1e308, () => Number.MAX_VALUE * 10, () => -Infinity, () => NaN,
    () => 'NaN', () => '.nan', () => '1e999', () => '0x10', () => '9'.repeat(400), () => 'true', () => 'null', () => '~',
    () => true, () => false, () => null, () => [], () => ({}), () => [1, [2, [3]]], () => ({ a: { b: 1 } }), () => ['x', 1, null],
    () => randomString(r, 40), () => randomString(r, 2000), () => nested(int(r, 2, 12), 'x', r() < 0.5),
    () => Array.from({ length: int(r, 10, 500) }, (_, i) => i), () => Object.fromEntries(Array.from({ length: int(r, 2, 200) }, (_, i) => [`k${i}`, i]))
  ]
  if (huge) {
    choices.push(() => 'x'.repeat(int(r, 100_000, 1_000_000)), () => nested(int(r, 30, 200), 1, r() < 0.5),
      () => Array.from({ length: int(r, 10_000, 60_000) }, () => 'x'))
  }
  return pick(r, choices)()
}

/** Paths to every node of a JSON value: the root is []. */
function paths (v: Json, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix)
  if (Array.isArray(v)) v.forEach((c, i) => paths(c, [...prefix, i], out))
  else if (v !== null && typeof v === 'object') for (const [k, c] of Object.entries(v)) paths(c, [...prefix, k], out)
  return out
}

function mutateAt (root: Json, at: Array<string | number>, edit: (parent: Json[] | Record<string, Json>, key: string | number) => void): Json {
  const copy = structuredClone(root)
  if (at.length === 0) return copy
  let parent = copy as Json[] | Record<string, Json>
  for (const k of at.slice(0, -1)) parent = (parent as Record<string, Json>)[k as string] as Json[] | Record<string, Json>
  edit(parent, at[at.length - 1] as string | number)
  return copy
}

function stringifyOptions (r: Random): ToStringOptions {
  return {
    lineWidth: pick(r, [0, 20, 80]),
    indent: int(r, 1, 6),
    collectionStyle: pick(r, ['any', 'block', 'flow'] as const),
    defaultStringType: pick(r, ['PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE', 'BLOCK_LITERAL', 'BLOCK_FOLDED'] as const),
    defaultKeyType: pick(r, [null, 'PLAIN', 'QUOTE_DOUBLE'] as const)
  }
}

function structural (r: Random, huge: boolean): FuzzCase {
  const seed = pick(r, SEEDS)
  const at = pick(r, paths(seed.value))
  const op = pick(r, ['replace', 'replace', 'replace', 'delete', 'insert', 'rename'] as const)
  const value = mutateAt(seed.value, at, (parent, key) => {
    if (op === 'replace') (parent as Record<string, Json>)[key] = wrongValue(r, huge)
    else if (op === 'delete') {
      if (Array.isArray(parent)) parent.splice(key as number, 1)
      else delete parent[key]
    } else if (op === 'insert') {
      if (Array.isArray(parent)) parent.splice(key as number, 0, wrongValue(r, false))
      // defineProperty: `parent.__proto__ = v` would set the prototype instead of adding a key.
      else Object.defineProperty(parent, pick(r, [...SCHEMA_KEYS, 'unknownKey', '__proto__', 'constructor', '']), { value: wrongValue(r, false), enumerable: true, writable: true, configurable: true })
    } else if (!Array.isArray(parent)) {
      const v = parent[key] as Json
      delete parent[key]
      parent[pick(r, SCHEMA_KEYS)] = v
    }
  })
  const text = at.length === 0 ? stringify(wrongValue(r, huge), stringifyOptions(r)) : stringify(value, stringifyOptions(r))
  return { kind: `${op}: ${at.join('.') || '(root)'}`, input: text }
}

const YAML_SOUP = ['{', '}', '[', ']', ',', ':', ': ', '- ', '? ', '&a ', '*a ', '&b ', '*b ', '*zz ', '!!str ', '!!int ', '!!binary ', '!!set ', '!!omap ', '!t ', '! ',
  '|', '>', '|-', '"', '\'', '#', '\n', '\n  ', '\n    ', '  ', '\t', '---\n', '...\n', '%YAML 1.1\n', '%TAG ! tag:x:\n', '<<: ', '\\', '\r\n', '\r', '@', '`', '%']

function textEdit (r: Random): FuzzCase {
  const seed = pick(r, SEEDS).text
  const lines = seed.split('\n')
  const i = int(r, 0, lines.length - 1)
  const op = pick(r, ['dup-line', 'drop-line', 'swap-lines', 'indent', 'insert', 'delete-range', 'truncate', 'flip', 'anchor-alias'] as const)
  let text = seed
  const at = int(r, 0, seed.length)
  switch (op) {
    case 'dup-line': lines.splice(i, 0, lines[i] ?? ''); text = lines.join('\n'); break
    case 'drop-line': lines.splice(i, 1); text = lines.join('\n'); break
    case 'swap-lines': { const j = int(r, 0, lines.length - 1); [lines[i], lines[j]] = [lines[j] ?? '', lines[i] ?? '']; text = lines.join('\n'); break }
    case 'indent': lines[i] = pick(r, ['', ' ', '\t', '   ', '          ']) + (lines[i] ?? '').trimStart(); text = lines.join('\n'); break
    case 'insert': text = seed.slice(0, at) + Array.from({ length: int(r, 1, 5) }, () => pick(r, YAML_SOUP)).join('') + seed.slice(at); break
    case 'delete-range': text = seed.slice(0, at) + seed.slice(at + int(r, 1, 200)); break
    case 'truncate': text = seed.slice(0, at); break
    case 'flip': text = seed.slice(0, at) + String.fromCharCode(int(r, 0, 0xffff)) + seed.slice(at + 1); break
    case 'anchor-alias': {
      // An anchor on one value and an alias in place of another: types mix, and the alias may
      // come before its anchor or inside it.
      const values = lines.map((l, k) => [k, /^(\s*(?:- )?[\w-]+:\s)(\S.*)$/.exec(l)] as const).filter(([, m]) => m !== null)
      const [a, ma] = pick(r, values)
      const [b, mb] = pick(r, values)
      if (ma && mb) { lines[a] = `${ma[1]}&x ${ma[2]}`; lines[b] = `${mb[1]}*x` }
      text = lines.join('\n')
    }
  }
  return { kind: `text ${op}`, input: text }
}

function randomTree (r: Random, depth: number): Json {
  if (depth <= 0 || r() < 0.3) return wrongValue(r, false)
  if (r() < 0.5) return Array.from({ length: int(r, 0, 4) }, () => randomTree(r, depth - 1))
  return Object.fromEntries(Array.from({ length: int(r, 0, 5) }, () => [pick(r, SCHEMA_KEYS), randomTree(r, depth - 1)]))
}

function randomYaml (r: Random): FuzzCase {
  if (r() < 0.5) return { kind: 'random tree', input: stringify(randomTree(r, int(r, 1, 6)), stringifyOptions(r)) }
  let text = ''
  const n = int(r, 1, 300)
  for (let i = 0; i < n; i++) text += r() < 0.2 ? pick(r, SCHEMA_KEYS) : r() < 0.1 ? randomString(r, 8) : pick(r, YAML_SOUP)
  return { kind: 'token soup', input: text }
}

function hostile (r: Random): FuzzCase {
  const op = pick(r, ['laughs', 'chain', 'deep', 'keys', 'huge-string', 'many-errors', 'self-alias'] as const)
  switch (op) {
    case 'laughs': {
      const width = int(r, 2, 12)
      const levels = int(r, 2, 9)
      let text = `l0: &l0 [${Array(width).fill('"lol"').join(',')}]\n`
      for (let i = 1; i < levels; i++) text += `l${i}: &l${i} [${Array(width).fill(`*l${i - 1}`).join(',')}]\n`
      return { kind: `hostile laughs: ${width}^${levels}`, input: text + `gateways: *l${levels - 1}\n` }
    }
    case 'chain': {
      const n = int(r, 2, 900)
      let text = 'c0: &c0 {x: 1}\n'
      for (let i = 1; i <= n; i++) text += `c${i}: &c${i} {x: *c${i - 1}}\n`
      return { kind: `hostile alias chain: ${n}`, input: text }
    }
    case 'deep': {
      const style = int(r, 0, 3)
      // Block nesting costs n²/2 characters of indentation.
      const n = int(r, 10, style === 2 ? 1400 : 5000)
      const input = style === 0 ? '['.repeat(n) + ']'.repeat(n)
        : style === 1 ? '{a: '.repeat(n) + '1' + '}'.repeat(n)
          : style === 2 ? Array.from({ length: n }, (_, i) => ' '.repeat(i) + 'a:').join('\n')
            : '- '.repeat(n) + 'x'
      return { kind: `hostile deep: ${n} style ${style}`, input }
    }
    case 'keys': {
      const n = int(r, 1000, 120_000)
      const dup = r() < 0.5
      return { kind: `hostile keys: ${n}${dup ? ' (duplicates)' : ''}`, input: Array.from({ length: n }, (_, i) => `k${dup ? i % 7 : i}: ${i}`).join('\n') }
    }
    case 'huge-string': {
      const seed = pick(r, SEEDS)
      const at = pick(r, paths(seed.value).filter(p => p.length > 0))
      return { kind: `hostile huge string: at ${at.join('.')}`, input: stringify(mutateAt(seed.value, at, (parent, key) => { (parent as Record<string, Json>)[key] = 'ü'.repeat(int(r, 100_000, 500_000)) }), { lineWidth: 0 }) }
    }
    case 'many-errors': return { kind: 'hostile many errors', input: pick(r, ['[]', ']', '}', ': :', '\t- ', '"\n', '&', '!!', '%x\n', '@']).repeat(int(r, 1000, 300_000)) }
    case 'self-alias': return { kind: 'hostile self alias', input: pick(r, ['a: &a [*a]\n', 'a: &a {b: *a}\n', 'gateways: &g [{id: a, url: "http://x", site: s, kind: *g}]\n', '*a : &a b\n', '&a a: *a\n']) }
  }
}

function binary (r: Random): FuzzCase {
  const bytes = Buffer.alloc(int(r, 0, 4096))
  for (let i = 0; i < bytes.length; i++) bytes[i] = int(r, 0, 255)
  const op = pick(r, ['junk', 'prefix', 'suffix', 'utf16'] as const)
  const seed = Buffer.from(pick(r, SEEDS).text)
  const input = op === 'junk' ? bytes
    : op === 'prefix' ? Buffer.concat([bytes.subarray(0, 16), seed])
      : op === 'suffix' ? Buffer.concat([seed, bytes])
        : Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(seed.toString(), 'utf16le')])
  return { kind: `binary ${op}`, input }
}

/** Case `i` of `seed`; big inputs (100 KiB-1 MiB) only in about one case in 300, as they cost up to a second each. */
export function fuzzCase (seed: number, i: number): FuzzCase {
  const r = rng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0)
  const huge = r() < 1 / 300
  if (huge) return r() < 0.5 ? structural(r, true) : hostile(r)
  const x = r()
  if (x < 0.45) return structural(r, false)
  if (x < 0.65) return textEdit(r)
  if (x < 0.85) return randomYaml(r)
  if (x < 0.92) return binary(r)
  // Hostile documents, kept small here: the big ones come through `huge`.
  for (;;) {
    const c = hostile(r)
    if (c.input.length < 50_000) return c
  }
}

export function fuzzSeed (): number {
  return Number(process.env.FERRY_FUZZ_SEED ?? Math.floor(Math.random() * 0xffffffff))
}
