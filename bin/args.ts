import { parseArgs, type ParseArgsConfig } from 'node:util'

/** Bad command-line input: the CLI prints the message and the usage, and exits 2. */
export class UsageError extends Error {}

export function usage (message: string): UsageError { return new UsageError(message) }

/** True for a UsageError or one of node:util parseArgs' own refusals (unknown option, missing value, …). */
export function isUsageError (err: unknown): boolean {
  return err instanceof UsageError || /^ERR_PARSE_ARGS_/.test((err as { code?: string }).code ?? '')
}

/**
 * node:util parseArgs for bin/'s commands, with positionals allowed and strict options: the one
 * way bin/ reads flags (no third-party parser: parseArgs covers flags, booleans and positionals,
 * and its errors carry codes the CLI maps to exit 2).
 */
export function parseFlags<O extends NonNullable<ParseArgsConfig['options']>> (argv: string[], options: O): { values: ReturnType<typeof parseArgs<{ options: O, allowPositionals: true, strict: true }>>['values'], positionals: string[] } {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true })
  return { values, positionals }
}
