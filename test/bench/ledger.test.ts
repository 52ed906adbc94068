import t from 'tap'
import { ABSENT, History } from '../../bench/fleet-faults/ledger.js'

/**
 * The history checker of the fault suites (moves-history, replica-kill, the fleet-faults bench):
 * a read is judged against the last write acknowledged before it started, however many writes
 * the writer got through while it ran. Its bounded history once trimmed that base away, and a
 * read that rightly returned it was reported stale (the 10,000-move run at R = 2).
 */
t.test('a slow read keeps its base version through the history\'s trimming', async t => {
  const h = new History()
  const write = (v: string): void => { h.endWrite(h.beginWrite('b', 'put', v, 'p'), true) }
  for (let i = 0; i < 40; i++) write(`v${i}`)
  const started = performance.now()
  // The read is slow; the writer writes 100 more versions meanwhile (the history trims past 64).
  for (let i = 40; i < 140; i++) write(`v${i}`)
  const ended = performance.now()
  t.equal(h.checkRead('b', started, ended, 'v39', 'p', 'load'), undefined, 'the version acknowledged before the read began is allowed')
  t.equal(h.checkRead('b', started, ended, 'v90', 'p', 'load'), undefined, 'and any written while it ran')
  t.equal(h.checkRead('b', started, ended, 'v38', 'p', 'load'), 'stale', 'an older one is stale')
  t.equal(h.checkRead('b', performance.now(), performance.now(), 'v138', 'p', 'load'), 'stale', 'a read after the last acknowledgement sees only it')
  t.equal(h.checkRead('b', started, ended, ABSENT, 'p', 'load'), 'lost', 'a 404 is lost')
  t.equal(h.checkRead('b', started, ended, 'never written', 'p', 'load'), 'corrupt')
})
