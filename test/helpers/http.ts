import net from 'node:net'

/**
 * Sends raw bytes to an HTTP server and returns everything it answers, until it closes the
 * connection, a complete Content-Length response has arrived, or 2 s pass. For requests no
 * well-behaved client would send.
 */
export async function rawRequest (url: string, text: string | Buffer): Promise<string> {
  const { port } = new URL(url)
  return await new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), '127.0.0.1')
    let out = ''
    sock.setTimeout(2000, () => sock.destroy())
    sock.on('data', d => {
      out += d.toString('latin1')
      const head = out.indexOf('\r\n\r\n')
      const m = /content-length: (\d+)/i.exec(out)
      if (head >= 0 && m !== null && out.length - head - 4 >= Number(m[1])) sock.end()
    })
    sock.on('close', () => resolve(out))
    sock.on('error', err => { if (out !== '') resolve(out); else reject(err) })
    sock.write(text)
  })
}
