import { ZodType, type ZodTypeAny } from 'zod'

/**
 * Visits every node of a zod schema, the root included, depth first, with the key path that
 * leads to it (`proxy.listen.port`; `[]` for an array's elements, `{}` for a record's values).
 * Wrappers (default, optional, effects) are visited as well as what they wrap, with the same
 * path, so a test can look for a kind of node anywhere (every refinement) or for every key.
 */
export function eachSchema (schema: ZodTypeAny, visit: (node: ZodTypeAny, keyPath: string) => void): void {
  const ancestors = new Set<ZodTypeAny>()
  const go = (node: ZodTypeAny, keyPath: string): void => {
    if (ancestors.has(node)) return // z.lazy recursion
    ancestors.add(node)
    visit(node, keyPath)
    const def = node._def as Record<string, unknown>
    if (def.typeName === 'ZodObject') {
      for (const [key, child] of Object.entries((def.shape as () => Record<string, ZodTypeAny>)())) go(child, keyPath === '' ? key : `${keyPath}.${key}`)
    } else if (def.typeName === 'ZodLazy') {
      go((def.getter as () => ZodTypeAny)(), keyPath)
    }
    for (const [name, v] of Object.entries(def)) {
      const suffix = def.typeName === 'ZodArray' && name === 'type' ? '[]' : def.typeName === 'ZodRecord' && name === 'valueType' ? '{}' : ''
      if (v instanceof ZodType) go(v, keyPath + suffix)
      else if (Array.isArray(v)) for (const o of v) if (o instanceof ZodType) go(o, keyPath)
    }
    ancestors.delete(node)
  }
  go(schema, '')
}
