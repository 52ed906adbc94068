import t from 'tap'
import { parseSubnet } from '../../dns/ecs.js'
import { parseQuery, readName } from '../../dns/wire.js'
import { buildQuery } from './client.js'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const HEADER_1Q = '1234 0100 0001 0000 0000 0000'

t.test('a plain query, with and without EDNS and a client subnet', async t => {
  const plain = parseQuery(buildQuery({ name: 'Vol1.Sandbox.Ferry.Test', type: 1 }))
  t.ok(plain?.ok)
  const q = plain?.query
  t.equal(q?.id, 0x1234)
  t.same(q?.question?.labels, ['vol1', 'sandbox', 'ferry', 'test'], 'labels in lower case')
  t.equal(q?.question?.raw.toString('latin1').slice(1, 5), 'Vol1', 'raw keeps the case for the echo')
  t.equal(q?.question?.type, 1)
  t.equal(q?.edns, undefined)

  const withEcs = parseQuery(buildQuery({ name: 'x.sandbox.ferry.test', type: 28, edns: { payload: 4096, dnssecOk: true, ecs: parseSubnet('2001:db8:1234:5600::/56') } }))
  t.ok(withEcs?.ok)
  t.equal(withEcs?.query.edns?.payload, 4096)
  t.equal(withEcs?.query.edns?.dnssecOk, true)
  t.equal(withEcs?.query.edns?.ecs?.sourcePrefix, 56)

  const tiny = parseQuery(buildQuery({ name: 'x.test', type: 1, edns: { payload: 100 } }))
  t.equal(tiny?.query.edns?.payload, 512, 'payload below 512 counts as 512 (RFC 6891 §6.2.5)')
})

t.test('what gets no reply at all', async t => {
  t.equal(parseQuery(Buffer.alloc(0)), undefined, 'empty')
  t.equal(parseQuery(Buffer.alloc(11)), undefined, 'shorter than a header')
  t.equal(parseQuery(hex('1234 8000 0001 0000 0000 0000 00 0001 0001')), undefined, 'a response (QR set)')
})

t.test('malformed messages are FORMERR, with the id and whatever question could be read', async t => {
  const cases: Array<[string, Buffer, string]> = [
    ['no question', hex('1234 0100 0000 0000 0000 0000'), 'FERRY_DNS_QDCOUNT'],
    ['two questions', hex(HEADER_1Q.replace('0001 0000 0000 0000', '0002 0000 0000 0000') + '00 0001 0001 00 0001 0001'), 'FERRY_DNS_QDCOUNT'],
    ['name cut short', hex(HEADER_1Q + '05 616263'), 'FERRY_DNS_TRUNCATED'],
    ['type and class missing', hex(HEADER_1Q + '01 61 00 0001'), 'FERRY_DNS_TRUNCATED'],
    ['label of 64 octets', Buffer.concat([hex(HEADER_1Q + '40'), Buffer.alloc(64, 0x61), hex('00 0001 0001')]), 'FERRY_DNS_BAD_LABEL'],
    ['reserved label type 0x80', hex(HEADER_1Q + '80 61 00 0001 0001'), 'FERRY_DNS_BAD_LABEL'],
    ['name over 255 octets', Buffer.concat([hex(HEADER_1Q), Buffer.concat(Array.from({ length: 5 }, () => Buffer.concat([hex('3f'), Buffer.alloc(63, 0x61)]))), hex('00 0001 0001')]), 'FERRY_DNS_NAME_TOO_LONG'],
    ['pointer to itself', hex(HEADER_1Q + 'c00c 0001 0001'), 'FERRY_DNS_BAD_POINTER'],
    ['pointer forwards', hex(HEADER_1Q + 'c010 0001 0001 00'), 'FERRY_DNS_BAD_POINTER'],
    ['pointer cut short', hex(HEADER_1Q + 'c0'), 'FERRY_DNS_TRUNCATED'],
    ['trailing garbage', hex(HEADER_1Q + '00 0001 0001 ff'), 'FERRY_DNS_TRAILING_DATA'],
    ['additional record missing', hex(HEADER_1Q.replace(/0000$/, '0001') + '00 0001 0001'), 'FERRY_DNS_TRUNCATED'],
    ['two OPT records', hex(HEADER_1Q.replace(/0000$/, '0002') + '00 0001 0001' + '00 0029 1000 00000000 0000' + '00 0029 1000 00000000 0000'), 'FERRY_DNS_MULTIPLE_OPT'],
    ['OPT with a name', hex(HEADER_1Q.replace(/0000$/, '0001') + '00 0001 0001' + '01 61 00 0029 1000 00000000 0000'), 'FERRY_DNS_BAD_OPT'],
    ['OPT option runs over', hex(HEADER_1Q.replace(/0000$/, '0001') + '00 0001 0001' + '00 0029 1000 00000000 0006 0008 0010 0001 1800'), 'FERRY_DNS_BAD_OPT'],
    ['bad client subnet', hex(HEADER_1Q.replace(/0000$/, '0001') + '00 0001 0001' + '00 0029 1000 00000000 000c 0008 0008 0001 1800 c0000201'), 'FERRY_DNS_BAD_ECS'],
    ['rdata past the end', hex(HEADER_1Q.replace(/0000$/, '0001') + '00 0001 0001' + '00 0029 1000 00000000 00ff'), 'FERRY_DNS_TRUNCATED']
  ]
  for (const [why, msg, code] of cases) {
    const r = parseQuery(msg)
    t.equal(r?.ok, false, `${why}: rejected`)
    if (r === undefined || r.ok) continue
    t.equal(r.error.code, code, `${why}: ${code}`)
    t.equal(r.query.id, 0x1234, `${why}: id kept for the FORMERR`)
  }
  const late = parseQuery(hex(HEADER_1Q + '01 61 00 0001 0001 ff'))
  t.equal(late?.ok === false ? late.query.question?.labels[0] : undefined, 'a', 'a question read before the error is kept for the echo')
})

t.test('compression pointers: backwards chains are followed, loops cannot be built', async t => {
  // "b" at 12, then at 15 a name "a" + pointer to 12: a.b
  const msg = hex('0000 0000 0000 0000 0000 0000' + '01 62 00' + '01 61 c00c')
  const n = readName(msg, 15)
  t.same(n.labels, ['a', 'b'])
  t.equal(n.end, 19, 'end is after the pointer, not after the target')
  // A two-pointer cycle: 12 → 14 → 12. The forward hop is already refused.
  const loop = hex('0000 0000 0000 0000 0000 0000' + 'c00e c00c')
  t.throws(() => readName(loop, 12), { code: 'FERRY_DNS_BAD_POINTER' })
  // Backward only, but each hop to a smaller offset: terminates by construction.
  const chain = hex('0000 0000 0000 0000 0000 0000' + '00' + 'c00c' + 'c00d' + 'c00f')
  t.same(readName(chain, 17).labels, [], 'a chain of backward pointers ends at the root')
  const self = hex('0000 0000 0000 0000 0000 0000' + '01 61 c00c')
  t.throws(() => readName(self, 12), { code: 'FERRY_DNS_BAD_POINTER' }, 'a label followed by a pointer to its own start')
})

t.test('non-QUERY opcodes are reported without reading further', async t => {
  const notify = parseQuery(hex('1234 2000 0001 0000 0000 0000 00 0006 0001'))
  t.equal(notify?.ok, true)
  t.equal(notify?.query.opcode, 4)
})
