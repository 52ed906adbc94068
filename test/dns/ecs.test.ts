import t from 'tap'
import dns2 from 'dns2'
import { decodeEcs, ecsAddressText, encodeEcsBody, ipv6Bytes, parseSubnet } from '../../dns/ecs.js'

// The ECS option body (family, source prefix, scope, address octets), RFC 7871 §6.
const body = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex')

t.test('decodes IPv4 and IPv6 subnets of every shape, including the ones dns2 gets wrong', async t => {
  const cases: Array<[string, string, string]> = [
    // [option body, expected address text, cidr]
    ['0001 18 00 c00002', '192.0.2.0', '192.0.2.0/24'],
    ['0001 14 00 0a0200', '10.2.0.0', '10.2.0.0/20'], // /20: 3 octets, low nibble zero
    ['0001 20 00 c0000201', '192.0.2.1', '192.0.2.1/32'],
    ['0001 00 00', '0.0.0.0', '0.0.0.0/0'],
    ['0002 38 00 20010db8123456', '2001:db8:1234:5600:0:0:0:0', '2001:db8:1234:5600::/56'], // /56: 7 octets
    ['0002 14 00 200100', '2001:0:0:0:0:0:0:0', '2001::/20'], // /20: 3 octets
    ['0002 30 00 20010db8000e', '2001:db8:e:0:0:0:0:0', '2001:db8:e::/48'],
    ['0002 80 00 20010db8000000000000000000000001', '2001:db8:0:0:0:0:0:1', '2001:db8::1/128']
  ]
  for (const [hex, text, cidr] of cases) {
    const b = body(hex)
    const ecs = decodeEcs(b, 0, b.length)
    t.equal(ecsAddressText(ecs), text, `${cidr}: address`)
    t.equal(ecs.sourcePrefix, Number(cidr.split('/')[1]), `${cidr}: prefix`)
    t.same(encodeEcsBody(ecs), b, `${cidr}: encodes back to the same octets`)
    t.same(encodeEcsBody(parseSubnet(cidr)), b, `${cidr}: parseSubnet agrees`)
  }
})

t.test('rejects what RFC 7871 says to answer FORMERR', async t => {
  const bad: Array<[string, string]> = [
    ['0003 18 00 c00002', 'unknown family'],
    ['0001 21 00 c0000201ff', 'prefix longer than IPv4'],
    ['0002 81 00 ' + '00'.repeat(17), 'prefix longer than IPv6'],
    ['0001 18 00 c0000201', 'too many address octets'],
    ['0001 18 00 c000', 'too few address octets'],
    ['0001 14 00 0a0201', 'bits set past /20'],
    ['0002 34 00 20010db8123457', 'bits set past /52'],
    ['0001 18 08 c00002', 'non-zero scope in a query'],
    ['0001 18', 'shorter than the fixed part']
  ]
  for (const [hex, why] of bad) {
    const b = body(hex)
    t.throws(() => decodeEcs(b, 0, b.length), { code: 'FERRY_DNS_BAD_ECS' }, why)
  }
  const withScope = body('0001 18 18 c00002')
  t.equal(decodeEcs(withScope, 0, withScope.length, true).scopePrefix, 24, 'a scope is fine in a response')
})

t.test('dns2 3.0.0 mis-decodes odd-octet IPv6 prefixes: the reason ferry has its own codec', async t => {
  // An OPT record carrying ECS 2001:db8:1234:5600::/56, followed by nothing. dns2 reads the
  // address 16 bits at a time while counting the length down by 2 from 7: it never reaches
  // 0, runs off the end, and swallows the RangeError.
  const ecs = body('0002 38 00 20010db8123456')
  //               header: id, flags, QD 0, AN 0, NS 0, AR 1   OPT: root, type 41, 1232, ttl, rdlength 15, ECS code 8, length 11
  const msg = Buffer.concat([body('1234 0000 0000 0000 0000 0001 00 0029 04d0 00000000 000f 0008 000b'), ecs])
  t.equal(dns2.Packet.parse(msg).additionals.length, 0, 'dns2 loses the whole OPT record of a /56')
  const even = body('1234 0000 0000 0000 0000 0001 00 0029 04d0 00000000 000e 0008 000a 0002 30 00 20010db8000e')
  t.equal(dns2.Packet.parse(even).additionals.length, 1, 'while a /48 (even octets) survives')
  const ours = decodeEcs(ecs, 0, ecs.length)
  t.equal(ecsAddressText(ours), '2001:db8:1234:5600:0:0:0:0', 'ours does')

  // And dns2's ECS constructor always says family 1 (IPv4), so an IPv6 subnet is written as
  // garbage.
  const made = dns2.Packet.Resource.EDNS([(dns2.Packet.Resource.EDNS as unknown as { ECS: (s: string) => { family: number } }).ECS('2001:db8::/56')])
  t.equal((made as unknown as { rdata: Array<{ family: number }> }).rdata[0]?.family, 1, 'dns2 labels an IPv6 subnet as IPv4')
  t.equal(parseSubnet('2001:db8::/56').family, 2, 'ours does not')
})

t.test('ipv6Bytes understands every text form', async t => {
  const hex = (s: string): string => ipv6Bytes(s).toString('hex')
  t.equal(hex('::'), '0'.repeat(32))
  t.equal(hex('::1'), '0'.repeat(31) + '1')
  t.equal(hex('1::'), '0001' + '0'.repeat(28))
  t.equal(hex('2001:db8::1:2'), '20010db8' + '0'.repeat(16) + '00010002')
  t.equal(hex('::ffff:192.0.2.1'), '0'.repeat(20) + 'ffffc0000201')
  t.equal(hex('fe80::1%lo'), 'fe80' + '0'.repeat(27) + '1')
  t.equal(hex('1:2:3:4:5:6:7:8'), '00010002000300040005000600070008')
})
