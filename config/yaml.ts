import { CST, Composer, Lexer, LineCounter, Parser, isAlias, isCollection, isMap, isPair, isScalar, type Document } from 'yaml'

/** One thing wrong with a config file, where it is. */
export interface ConfigProblem {
  /** `proxy.listen.port`, `gateways[2].url`; empty for the document as a whole. */
  keyPath: string
  line: number
  column: number
  message: string
}

/**
 * YAML parsing for config files, bounded so that no input can crash the process, expand into
 * something big or hold the event loop for long: a reload runs on the proxy's event loop, and
 * `ferry check` runs in CI on files anyone can write.
 *
 * `parseDocument` alone is not enough:
 * - its composer recurses once per nesting level, and deep nesting (`[[[[…`) exhausts the stack.
 *   The library reports that as a YAML error, but when V8 happens to compile a regular
 *   expression at that depth it aborts the whole process ("RegExpCompiler Allocation failed -
 *   process out of memory"). Nesting is checked on the parser's own stack, which is iterative,
 *   before anything recurses.
 * - its duplicate-key check compares every key with every earlier one: a flat map of 100k keys
 *   takes minutes. Keys are checked here with a Set.
 * - `toJS` throws on an alias to a missing anchor, resolves each alias by scanning every anchor,
 *   and its `maxAliasCount` estimate walks the whole document again per anchor. Aliases are
 *   resolved and measured here in one pass instead.
 * - the library's cost is some microseconds per token and far more per error (each is an Error
 *   with a stack): 1 MiB of junk took a minute. Counts are bounded as the input is read.
 */

/** Collections nested deeper than this are refused, aliases expanded; the config's own depth is 5. */
export const MAX_NESTING = 32
/**
 * Scalars (keys included), collections and tags in a document: a gateway is about ten, so this
 * leaves room for a fleet of several thousand. With MAX_LINES, this is what bounds a reload's
 * time on the event loop (a second or two at worst, most of it in zod), more than the size limit.
 */
export const MAX_VALUES = 100_000
export const MAX_LINES = 100_000
/** Anchors plus aliases: a config needs a handful, and `toJS` scans them all for each alias. */
export const MAX_ANCHORS_AND_ALIASES = 1000
/** Nodes the aliases within any one collection may add when expanded (billion laughs). */
export const MAX_ALIAS_EXPANSION = 10_000

export type YamlResult =
  | { ok: true, doc: Document.Parsed, lineCounter: LineCounter, value: unknown }
  | { ok: false, problems: ConfigProblem[], more: number }

/** Parses one YAML document into plain JS, or says what is wrong with it (every message starts "YAML: "). */
export function parseYaml (text: string, maxProblems: number): YamlResult {
  const lineCounter = new LineCounter()
  const problemAt = (offset: number, message: string): ConfigProblem => {
    const pos = lineCounter.linePos(offset)
    return { keyPath: '', line: pos.line, column: pos.col, message: `YAML: ${message}` }
  }
  const fail = (problems: ConfigProblem[], more = 0): YamlResult => ({ ok: false, problems, more })

  // What Parser.parse does, one lexeme at a time, so that a limit stops it as soon as it is
  // passed rather than after the whole input.
  const parser = new Parser(lineCounter.addNewLine)
  lineCounter.addNewLine(0)
  const tokens: CST.Token[] = []
  const syntaxErrors: ConfigProblem[] = []
  let values = 0
  let links = 0
  let documents = 0
  let scalarNext = false
  for (const lexeme of new Lexer().lex(text)) {
    const at = parser.offset
    // Plain and block scalars come as a marker and then their text, which may well be "-" or
    // "&x": no indicator then. Quoted scalars come in one piece.
    const type: string | null = scalarNext ? 'scalar-text' : lexeme === CST.SCALAR ? 'scalar' : CST.tokenType(lexeme)
    scalarNext = type === 'scalar'
    if (type === 'scalar' || type === 'double-quoted-scalar' || type === 'single-quoted-scalar' || type === 'flow-seq-start' ||
        type === 'flow-map-start' || type === 'seq-item-ind' || type === 'explicit-key-ind' || type === 'tag') {
      if (++values > MAX_VALUES) return fail([problemAt(at, `more than ${MAX_VALUES} values`)])
    } else if (type === 'anchor' || type === 'alias') {
      if (++links > MAX_ANCHORS_AND_ALIASES) return fail([problemAt(at, `more than ${MAX_ANCHORS_AND_ALIASES} anchors and aliases`)])
    }
    for (const token of parser.next(lexeme)) {
      tokens.push(token)
      if (token.type === 'error') syntaxErrors.push(problemAt(token.offset, token.source !== '' ? `${token.message}: ${JSON.stringify(token.source)}` : token.message))
      if (token.type === 'document' && ++documents > 1) return fail([problemAt(token.offset, 'more than one document (---); a config is one')])
    }
    // Junk is thousands of syntax errors, each of which the composer would turn into an Error.
    if (syntaxErrors.length > maxProblems) return fail([...syntaxErrors.slice(0, maxProblems), problemAt(at, 'too many syntax errors; the rest of the file was not read')])
    // The stack holds the document, the open collections and the scalar being read.
    if (parser.stack.length > MAX_NESTING + 2) return fail([problemAt(at, `collections nested more than ${MAX_NESTING} levels deep`)])
    if (lineCounter.lineStarts.length > MAX_LINES) return fail([problemAt(at, `more than ${MAX_LINES} lines`)])
  }
  for (const token of parser.end()) {
    tokens.push(token)
    if (token.type === 'document' && ++documents > 1) return fail([problemAt(token.offset, 'more than one document (---); a config is one')])
  }

  // uniqueKeys is checked below in linear time; the library's check is quadratic. Warnings
  // (a collection used as a key, an unknown tag) would go to process.emitWarning, on stderr of a
  // server: what they are about is reported as a schema problem anyway.
  const composer = new Composer({ uniqueKeys: false, logLevel: 'error' })
  let doc: Document.Parsed | undefined
  // The composer reports problems as Error objects: their stack traces, which nobody reads,
  // are most of its time on a document with many errors (100k of them: 3 s instead of 0.3 s).
  const stackTraceLimit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    for (const d of composer.compose(tokens, true, text.length)) doc ??= d
  } finally {
    Error.stackTraceLimit = stackTraceLimit
  }
  if (doc === undefined) return fail([problemAt(0, 'no document')])
  if (doc.errors.length > 0) {
    return fail(doc.errors.slice(0, maxProblems).map(e => problemAt(e.pos[0], e.message.split('\n')[0] ?? '')), Math.max(0, doc.errors.length - maxProblems))
  }

  const walked = walk(doc, maxProblems)
  if (walked.problems.length > 0) return fail(walked.problems.map(p => problemAt(p.offset, p.message)), walked.more)

  try {
    // Expansion and cycles were measured by walk(), exactly and in linear time; the library's
    // own estimate (maxAliasCount) rescans the document per anchor, so it is turned off.
    return { ok: true, doc, lineCounter, value: doc.toJS({ maxAliasCount: -1 }) }
  } catch (err) {
    // What is left to throw here is a YAML 1.1 merge key (`<<`) on something that is not a map.
    return fail([problemAt(doc.range[0], (err as Error).message)])
  }
}

interface Shape {
  /** Collection levels, aliases expanded. */
  depth: number
  /** Nodes, aliases expanded. */
  size: number
  /** Nodes as written, an alias counting as one. */
  written: number
}

interface WalkProblem { offset: number, message: string }

/** Thrown inside walk() to stop at a limit: past it, going on only costs time. */
class Stop extends Error {}

/**
 * One pass over the document, in the order in which the library resolves aliases (an anchor
 * before its node's children, a key before its value; an alias refers to the last node with its
 * anchor before it). The recursion is as deep as the nesting, which the parser has bounded.
 */
function walk (doc: Document.Parsed, maxProblems: number): { problems: WalkProblem[], more: number } {
  const problems: WalkProblem[] = []
  let more = 0
  const report = (offset: number, message: string): void => {
    if (problems.length < maxProblems) problems.push({ offset, message })
    else more++
  }
  const stop = (offset: number, message: string): never => {
    report(offset, message)
    throw new Stop()
  }
  const anchors = new Map<string, unknown>()
  // Finished nodes only: an alias to a node still being walked is an alias to its own ancestor.
  const shapes = new Map<unknown, Shape>()

  const visit = (node: unknown): Shape => {
    if (node === null || typeof node !== 'object') return { depth: 0, size: 0, written: 0 }
    const offset = (node as { range?: [number, number, number] | null }).range?.[0] ?? 0
    if (isAlias(node)) {
      const target = anchors.get(node.source)
      if (target === undefined) return stop(offset, `unresolved alias *${node.source} (the anchor must be set before the alias)`)
      const s = shapes.get(target)
      if (s === undefined) return stop(offset, `alias *${node.source} refers to a collection that contains it`)
      return { ...s, written: 1 }
    }
    const anchor = (node as { anchor?: string }).anchor
    if (anchor !== undefined) anchors.set(anchor, node)
    const shape: Shape = { depth: 0, size: 1, written: 1 }
    if (isCollection(node)) {
      const keys = new Set<unknown>()
      const add = (child: Shape): void => {
        shape.depth = Math.max(shape.depth, child.depth + 1)
        shape.size += child.size
        shape.written += child.written
      }
      for (const item of node.items) {
        if (!isPair(item)) { add(visit(item)); continue }
        if (isMap(node) && isScalar(item.key)) {
          if (keys.has(item.key.value)) report(item.key.range?.[0] ?? offset, 'Map keys must be unique')
          keys.add(item.key.value)
        }
        add(visit(item.key))
        add(visit(item.value))
      }
      if (shape.depth > MAX_NESTING) stop(offset, `collections nested more than ${MAX_NESTING} levels deep (aliases expanded)`)
      if (shape.size - shape.written > MAX_ALIAS_EXPANSION) stop(offset, `aliases here expand to more than ${MAX_ALIAS_EXPANSION} nodes`)
    }
    shapes.set(node, shape)
    return shape
  }

  try {
    visit(doc.contents)
  } catch (err) {
    if (!(err instanceof Stop)) throw err
  }
  return { problems, more }
}
