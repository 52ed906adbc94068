import net from 'node:net'

/**
 * Who the client is. The socket's peer address, unless that peer is a configured trusted proxy,
 * in which case X-Forwarded-For is walked from the right and the first address that is not a
 * trusted proxy is the client. Walking from the right matters: the left end is whatever the
 * client chose to send and would let anyone claim any site.
 */
export class ClientAddressResolver {
  private readonly trusted: net.BlockList | undefined

  constructor (trustedCidrs: readonly string[]) {
    if (trustedCidrs.length === 0) return
    this.trusted = new net.BlockList()
    for (const cidr of trustedCidrs) {
      const [ip, bits] = cidr.split('/') as [string, string]
      this.trusted.addSubnet(ip, Number(bits), net.isIPv6(ip) ? 'ipv6' : 'ipv4')
    }
  }

  resolve (peer: string | undefined, xff: string | string[] | undefined): string {
    const address = peer ?? ''
    if (this.trusted === undefined || xff === undefined || !this.isTrusted(address)) return address
    const list = Array.isArray(xff) ? xff.join(',') : xff
    const hops = list.split(',')
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = (hops[i] as string).trim()
      if (net.isIP(hop) === 0) return address // garbage in the chain: trust nothing left of it
      if (!this.isTrusted(hop)) return hop
    }
    return address
  }

  private isTrusted (ip: string): boolean {
    const family = net.isIP(ip)
    if (family === 0) return false
    const trusted = this.trusted as net.BlockList
    if (family === 6 && ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7))) return trusted.check(ip.slice(7), 'ipv4')
    return trusted.check(ip, family === 6 ? 'ipv6' : 'ipv4')
  }
}
