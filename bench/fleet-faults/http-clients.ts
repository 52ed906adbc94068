/**
 * The two kinds of HTTP client users point at ferry. Both keep connections alive between
 * requests, but they treat an idle connection differently, and proxies have died of that:
 *
 * - `PoolClient`: an undici Pool, as Node services use. It honours the server's
 *   `Keep-Alive: timeout=N` hint and stops reusing a connection before the server drops it.
 * - `IdleSocketClient`: what Python's requests/urllib3 does. One connection, reused after any
 *   idle time at all; before reuse it only checks whether the server has already closed it
 *   (urllib3's `is_connection_dropped`) and reconnects if so. The server's hint is ignored.
 */
import net from 'node:net'
import { Pool } from 'undici'

export interface HttpReply {
  status: number
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>
  body: Buffer
}

export interface RequestOptions {
  method: 'GET' | 'PUT' | 'DELETE' | 'HEAD'
  path: string
  headers?: Record<string, string>
  body?: Buffer
  timeoutMs: number
}

export interface HttpClient {
  readonly kind: 'pool' | 'idle-socket'
  request (opts: RequestOptions): Promise<HttpReply>
  close (): Promise<void>
}

/** A client-side failure: no complete response. `code` is what a user's log would show. */
export class ClientError extends Error {
  constructor (readonly code: string, message: string, /** The idle socket client reused a connection for this request. */ readonly reused = false) {
    super(message)
    this.name = 'ClientError'
  }
}

export class PoolClient implements HttpClient {
  readonly kind = 'pool' as const
  private readonly pool: Pool

  constructor (origin: string, connections = 1) {
    this.pool = new Pool(origin, { connections, pipelining: 1 })
  }

  async request (opts: RequestOptions): Promise<HttpReply> {
    try {
      const r = await this.pool.request({
        method: opts.method,
        path: opts.path,
        headers: opts.headers,
        body: opts.body,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
        signal: AbortSignal.timeout(opts.timeoutMs * 2)
      })
      const body = Buffer.from(await r.body.arrayBuffer())
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v
      return { status: r.statusCode, headers, body }
    } catch (err) {
      const e = err as Error & { code?: string }
      throw new ClientError(e.code ?? e.name, e.message)
    }
  }

  async close (): Promise<void> { await this.pool.destroy() }
}

/** An HTTP/1.1 client on one raw socket, reused like urllib3 reuses its pooled connection. */
export class IdleSocketClient implements HttpClient {
  readonly kind = 'idle-socket' as const
  private socket: net.Socket | undefined
  /** Set when the server ended or reset the connection while we were not using it. */
  private dropped = true
  private closed = false

  constructor (private readonly host: string, private readonly port: number) {}

  async request (opts: RequestOptions): Promise<HttpReply> {
    if (this.closed) throw new ClientError('ECLOSED', 'client closed')
    // urllib3 asks the kernel (select) whether the server has closed the idle connection; here
    // that means letting the event loop deliver a FIN that has already arrived before looking.
    await new Promise(resolve => setImmediate(resolve))
    const reused = !this.dropped && this.socket !== undefined
    const socket = reused ? this.socket as net.Socket : await this.connect(opts.timeoutMs)
    const head = [`${opts.method} ${opts.path} HTTP/1.1`, `Host: ${this.host}:${this.port}`, 'User-Agent: python-requests/2.31.0',
      'Accept-Encoding: identity', 'Accept: */*', 'Connection: keep-alive']
    for (const [k, v] of Object.entries(opts.headers ?? {})) head.push(`${k}: ${v}`)
    if (opts.body !== undefined || opts.method === 'PUT') head.push(`Content-Length: ${opts.body?.length ?? 0}`)
    const reply = this.readReply(socket, opts.method, opts.timeoutMs, reused)
    socket.write(Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n', 'latin1'), opts.body ?? Buffer.alloc(0)]))
    return await reply
  }

  async close (): Promise<void> {
    this.closed = true
    this.socket?.destroy()
  }

  private async connect (timeoutMs: number): Promise<net.Socket> {
    this.socket?.destroy()
    const socket = net.connect(this.port, this.host)
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { socket.destroy(); reject(new ClientError('ETIMEDOUT', 'connect timed out')) }, timeoutMs)
      socket.once('connect', () => { clearTimeout(timer); resolve() })
      socket.once('error', err => { clearTimeout(timer); reject(new ClientError((err as NodeJS.ErrnoException).code ?? 'ECONNERROR', err.message)) })
    })
    this.socket = socket
    this.dropped = false
    // While idle nobody reads the socket; these only note that the server let go of it.
    const drop = (): void => { if (this.socket === socket) this.dropped = true }
    socket.on('end', drop)
    socket.on('close', drop)
    socket.on('error', drop)
    return socket
  }

  private async readReply (socket: net.Socket, method: string, timeoutMs: number, reused: boolean): Promise<HttpReply> {
    return await new Promise<HttpReply>((resolve, reject) => {
      let buf = Buffer.alloc(0)
      let head: { status: number, headers: Record<string, string>, bodyStart: number } | undefined
      let settled = false
      const finish = (err: ClientError | undefined, reply?: HttpReply): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        socket.off('data', onData)
        socket.off('close', onClose)
        socket.off('error', onError)
        if (err !== undefined) {
          this.dropped = true
          socket.destroy()
          reject(err)
          return
        }
        if (reply?.headers.connection?.toLowerCase() === 'close') { this.dropped = true; socket.end() }
        resolve(reply as HttpReply)
      }
      const timer = setTimeout(() => { finish(new ClientError('ETIMEDOUT', `no complete response in ${timeoutMs} ms`, reused)) }, timeoutMs)
      const tryParse = (ended: boolean): void => {
        if (head === undefined) {
          const end = buf.indexOf('\r\n\r\n')
          if (end < 0) return
          const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
          const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN)
          if (!Number.isInteger(status)) return finish(new ClientError('EPROTO', `bad status line ${JSON.stringify(lines[0])}`, reused))
          const headers: Record<string, string> = {}
          for (const l of lines.slice(1)) {
            const i = l.indexOf(':')
            if (i <= 0) continue
            const k = l.slice(0, i).trim().toLowerCase()
            const v = l.slice(i + 1).trim()
            headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`
          }
          head = { status, headers, bodyStart: end + 4 }
          if (status < 200) { buf = buf.subarray(end + 4); head = undefined; return tryParse(ended) }
        }
        const { status, headers, bodyStart } = head
        const rest = buf.subarray(bodyStart)
        if (method === 'HEAD' || status === 204 || status === 304) return finish(undefined, { status, headers, body: Buffer.alloc(0) })
        if (headers['content-length'] !== undefined) {
          const n = Number(headers['content-length'])
          if (rest.length >= n) return finish(undefined, { status, headers, body: Buffer.from(rest.subarray(0, n)) })
          if (ended) finish(new ClientError('ECONNRESET', `connection closed after ${rest.length} of ${n} body bytes`, reused))
          return
        }
        if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
          const body = dechunk(rest)
          if (body !== undefined) return finish(undefined, { status, headers, body })
          if (ended) finish(new ClientError('ECONNRESET', 'connection closed inside a chunked body', reused))
          return
        }
        // Neither: the body runs to the end of the connection.
        if (ended) { this.dropped = true; finish(undefined, { status, headers, body: Buffer.from(rest) }) }
      }
      const onData = (d: Buffer): void => { buf = Buffer.concat([buf, d]); tryParse(false) }
      const onClose = (): void => {
        tryParse(true)
        // RemoteDisconnected is what Python reports when the server closed before answering.
        finish(new ClientError(buf.length === 0 ? 'RemoteDisconnected' : 'ECONNRESET', 'connection closed before a complete response', reused))
      }
      const onError = (err: NodeJS.ErrnoException): void => {
        tryParse(true)
        finish(new ClientError(err.code ?? 'ECONNRESET', err.message, reused))
      }
      socket.on('data', onData)
      socket.once('close', onClose)
      socket.once('error', onError)
    })
  }
}

/** A complete chunked body, or undefined while more is to come. */
function dechunk (data: Buffer): Buffer | undefined {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const eol = data.indexOf('\r\n', at)
    if (eol < 0) return undefined
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16)
    if (!Number.isFinite(size)) return undefined
    if (size === 0) return data.indexOf('\r\n', eol + 2) >= 0 ? Buffer.concat(parts) : undefined
    if (data.length < eol + 2 + size + 2) return undefined
    parts.push(data.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
}
