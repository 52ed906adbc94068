import net from 'node:net'
import { readdir } from 'node:fs/promises'
import path from 'node:path'

/** What came back on a raw connection before the server closed it (or the wait ran out). */
export interface RawReply {
  text: string
  status: number
  /** True when the server closed the connection; false when we stopped waiting. */
  closed: boolean
}

/**
 * Writes exact bytes on a fresh TCP connection and collects the reply until the server closes the
 * connection or `waitMs` passes. For requests a well-behaved client library would refuse to send.
 */
export async function raw (port: number, data: string | Buffer, waitMs = 3000): Promise<RawReply> {
  return await new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const done = (closed: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text)
      resolve({ text, status: m === null ? 0 : Number(m[1]), closed })
    }
    const timer = setTimeout(() => done(false), waitMs)
    socket.setEncoding('latin1')
    socket.on('data', (s: string) => { text += s })
    socket.on('close', () => done(true))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the reply arrived is still a reply.
      if (text !== '') return
      clearTimeout(timer)
      reject(err)
    })
    socket.write(data)
  })
}

/** The JSON error code in a raw reply's body. */
export function errorCode (reply: RawReply): string | undefined {
  const body = reply.text.slice(reply.text.indexOf('\r\n\r\n') + 4)
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code
  } catch {
    return undefined
  }
}

/** Names in the gateway's upload directory (uploads in progress or leaked). */
export async function tempFiles (dir: string): Promise<string[]> {
  return await readdir(path.join(dir, '.tmp'))
}

/** How many file descriptors this process holds (Linux), to catch leaks. */
export async function openFds (): Promise<number> {
  return (await readdir('/proc/self/fd')).length
}
