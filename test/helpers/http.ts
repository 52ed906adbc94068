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

export interface KeepAliveReply {
  status: number
  headers: Record<string, string>
  body: Buffer
}

/**
 * One raw keep-alive connection, used the way browsers, SDK pools and `requests.Session` use
 * theirs: several requests in a row, quiet periods in between. Unlike a client library it never
 * hides what the server did: a closed connection is reported as closed, not silently redialled.
 */
export class KeepAliveConnection {
  private readonly socket: net.Socket
  private buf = Buffer.alloc(0)
  private waiter: (() => void) | undefined
  private ended = false
  /** Resolves when the server closes (or resets) the connection. */
  readonly closed: Promise<void>

  private constructor (socket: net.Socket) {
    this.socket = socket
    socket.on('data', d => { this.buf = Buffer.concat([this.buf, d]); this.waiter?.() })
    socket.on('error', () => {})
    this.closed = new Promise(resolve => socket.once('close', () => { this.ended = true; this.waiter?.(); resolve() }))
  }

  static async open (port: number, host = '127.0.0.1'): Promise<KeepAliveConnection> {
    const socket = net.connect(port, host)
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    return new KeepAliveConnection(socket)
  }

  get isClosed (): boolean { return this.ended }

  /** Writes bytes as they are (a partial request, a body in pieces). */
  write (data: string | Buffer): void { this.socket.write(data) }

  /** Sends a complete request and reads one response; rejects with `closed` if the server hung up first. */
  async request (method: string, path: string, body?: string | Buffer, timeoutMs = 5000): Promise<KeepAliveReply> {
    const len = body === undefined ? 0 : Buffer.byteLength(body)
    this.write(`${method} ${path} HTTP/1.1\r\nhost: test\r\n${body === undefined ? '' : `content-length: ${len}\r\n`}\r\n`)
    if (body !== undefined) this.write(body)
    return await this.response(method === 'HEAD', timeoutMs)
  }

  /** Reads one response (Content-Length framed, as ferry answers). */
  async response (headOnly = false, timeoutMs = 5000): Promise<KeepAliveReply> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const head = this.buf.indexOf('\r\n\r\n')
      if (head >= 0) {
        const lines = this.buf.subarray(0, head).toString('latin1').split('\r\n')
        const status = Number(lines[0]?.split(' ')[1])
        const headers: Record<string, string> = {}
        for (const l of lines.slice(1)) { const i = l.indexOf(':'); headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim() }
        const len = headOnly ? 0 : Number(headers['content-length'] ?? 0)
        if (this.buf.length >= head + 4 + len) {
          const body = this.buf.subarray(head + 4, head + 4 + len)
          this.buf = this.buf.subarray(head + 4 + len)
          return { status, headers, body }
        }
      }
      if (this.ended) throw Object.assign(new Error('the server closed the connection'), { code: 'closed' })
      const left = deadline - Date.now()
      if (left <= 0) throw Object.assign(new Error(`no complete response within ${timeoutMs} ms`), { code: 'timeout' })
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.waiter = () => { clearTimeout(timer); this.waiter = undefined; resolve() }
      })
    }
  }

  destroy (): void { this.socket.destroy() }
}
