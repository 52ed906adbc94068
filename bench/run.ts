/**
 * `npm run bench -- <name> [options]`: runs bench/<name>.js, whose default export is
 * `run(args: string[]): Promise<void>`. Each benchmark measures its baseline in the same run,
 * prints ratios and writes bench/results/<name>.json.
 */
import path from 'node:path'
import fs from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const [name, ...args] = process.argv.slice(2)
const available = fs.readdirSync(here).filter(f => f.endsWith('.js') && !['run.js', 'lib.js'].includes(f)).map(f => f.slice(0, -3))
if (name === undefined || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name> [options]\navailable: ${available.join(', ')}`)
  process.exit(2)
}
const mod = await import(pathToFileURL(path.join(here, `${name}.js`)).href) as { default: (args: string[]) => Promise<void> }
await mod.default(args)
