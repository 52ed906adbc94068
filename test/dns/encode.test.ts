import t from 'tap'
import dns2 from 'dns2'
import { parseDnsConfig } from '../../dns/config.js'
import { encodeByHand, encodeWithDns2, type ResponseHead } from '../../dns/encode.js'
import { parseQuery } from '../../dns/wire.js'
import { Zone } from '../../dns/zone.js'
import { buildQuery } from './client.js'
import { sampleView } from './memory-view.js'

// The hand encoder (addresses, SOA, negative answers) must produce what dns2 produces, record
// for record, for every answer it is used for.

const ZONE = 'sandbox.ferry.test'

t.test('hand-written and dns2 encodings decode to the same message', async t => {
  const view = sampleView()
  view.setGateway('gw-v6only', 'home')
  const zone = new Zone(parseDnsConfig(), view)
  const cases: Array<[string, number]> = [
    [`vol1.${ZONE}`, 1], [`Vol2.${ZONE}`, 28], [`solo.${ZONE}`, 255], [`gw-west.gw.${ZONE}`, 1],
    [`nope.${ZONE}`, 1], [`vol1.${ZONE}`, 16], [ZONE, 6], [ZONE, 255], [`gw.${ZONE}`, 28], ['example.com', 1],
    [`${'a'.repeat(63)}.${'b'.repeat(63)}.${ZONE}`, 1]
  ]
  for (const [name, type] of cases) {
    const parsed = parseQuery(buildQuery({ name, type, id: 77 }))
    if (parsed?.ok !== true || parsed.query.question === undefined) throw new Error('bad test query')
    const q = parsed.query.question
    const head: ResponseHead = { id: 77, queryFlags: parsed.query.flags, question: q }
    const answer = zone.resolve(q, () => 'west')
    const mine = encodeByHand(head, answer, false)
    const theirs = encodeWithDns2(head, answer, [], false)
    const a = dns2.Packet.parse(mine)
    const b = dns2.Packet.parse(theirs)
    t.same(a, b, `${name} type ${type}: same records`)
    t.ok(mine.length <= theirs.length, `${name} type ${type}: no larger (${mine.length} vs ${theirs.length})`)
  }
})

t.test('addresses the view gets wrong are left out of the answer', async t => {
  const view = sampleView()
  const sloppy = Object.assign(Object.create(view) as typeof view, {
    volumeEdges: () => ({ v4: ['not-an-ip', '192.0.2.9', '2001:db8::1', '999.1.1.1'], v6: ['192.0.2.1', '2001:db8::9', '::ffff:192.0.2.7'] })
  })
  const zone = new Zone(parseDnsConfig(), sloppy)
  for (const [type, want] of [[1, ['192.0.2.9']], [28, ['2001:db8::9', '::ffff:c000:207']]] as const) {
    const parsed = parseQuery(buildQuery({ name: `vol1.${ZONE}`, type }))
    if (parsed?.ok !== true || parsed.query.question === undefined) throw new Error('bad test query')
    const head: ResponseHead = { id: 1, queryFlags: parsed.query.flags, question: parsed.query.question }
    const answer = zone.resolve(parsed.query.question, () => undefined)
    for (const [what, bytes] of [['by hand', encodeByHand(head, answer, false)], ['dns2', encodeWithDns2(head, answer, [], false)]] as const) {
      t.same(dns2.Packet.parse(bytes).answers.map(a => a.address), want, `type ${type} ${what}`)
    }
  }
})
