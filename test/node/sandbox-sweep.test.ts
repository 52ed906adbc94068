/**
 * A sandbox that never got to stop (SIGKILL) leaves its gateways' directory in the temp
 * directory; the next sandbox removes it, and leaves a live one's alone.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startSandbox } from '../helpers/sandbox.js'

const dirsOf = (pid: number | undefined): string[] => fs.readdirSync(os.tmpdir()).filter(n => n.startsWith(`ferry-sandbox-${String(pid)}-`))

t.test('a killed sandbox\'s directory is removed by the next sandbox, a running one\'s is kept', async t => {
  const killed = await startSandbox(t)
  const killedPid = killed.ferry.child.pid
  t.equal(dirsOf(killedPid).length, 1, 'a sandbox keeps its gateways under one directory named by its pid')
  const put = await fetch(`${killed.proxy}/vol1/blk1`, { method: 'PUT', body: 'bytes on disk' })
  t.equal(put.status, 201)
  await killed.ferry.stop('SIGKILL')
  t.equal(dirsOf(killedPid).length, 1, 'SIGKILL left it behind')

  const running = await startSandbox(t)
  const next = await startSandbox(t)
  t.equal(dirsOf(killedPid).length, 0, 'the next sandbox removed the dead one\'s directory')
  t.equal(dirsOf(running.ferry.child.pid).length, 1, 'and kept the running one\'s')
  t.equal(dirsOf(next.ferry.child.pid).length, 1)
  for (const s of [running, next]) {
    const code = await s.ferry.stop('SIGTERM')
    t.equal(code, 0, 'a stopped sandbox exits cleanly')
  }
  t.equal(dirsOf(running.ferry.child.pid).length + dirsOf(next.ferry.child.pid).length, 0, 'and removes its own directory')
  // Old-style directories (ferry-sandbox-gw1-…, before the pid was in the name) are not touched.
  const old = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-sandbox-gw1-'))
  t.teardown(() => fs.rmSync(old, { recursive: true, force: true }))
  const third = await startSandbox(t)
  t.ok(fs.existsSync(old), 'a directory without a pid in its name is left alone')
  await third.ferry.stop('SIGTERM')
})
