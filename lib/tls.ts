import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import path from 'node:path'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import { z } from 'zod'
import { FerryError } from './errors.js'
import { silentLogger, type Logger } from './log.js'

/** `tls:` of a listener (proxy, admin): PEM files; null serves plain HTTP. */
export const tlsSchema = z.object({
  cert: z.string().min(1).describe('PEM certificate chain file (the server certificate first)'),
  key: z.string().min(1).describe('PEM private key file of the certificate')
}).strict().nullable().default(null)

export type TlsFiles = NonNullable<z.infer<typeof tlsSchema>>

interface TlsPair { cert: Buffer, key: Buffer, subject: string, validTo: string }

function invalid (message: string): FerryError {
  return new FerryError('FERRY_TLS_INVALID', message, 400)
}

/**
 * Reads and checks a certificate and its key before a listener uses them: a listener must never
 * start, or switch, to a certificate every client would refuse (expired, not yet valid, another
 * key) — that is an outage the operator learns of from clients instead of from ferry.
 */
export function loadTlsPair (files: TlsFiles, now = Date.now()): TlsPair {
  const read = (file: string, what: string): Buffer => {
    try { return fs.readFileSync(file) } catch (err) { throw invalid(`cannot read the TLS ${what} ${file}: ${(err as Error).message}`) }
  }
  const cert = read(files.cert, 'certificate')
  const key = read(files.key, 'key')
  let x509: X509Certificate
  try { x509 = new X509Certificate(cert) } catch (err) { throw invalid(`${files.cert} is not a PEM certificate: ${(err as Error).message}`) }
  if (Date.parse(x509.validTo) <= now) throw invalid(`the certificate ${files.cert} (${x509.subject.replace(/\n/g, ', ')}) expired on ${x509.validTo}`)
  if (Date.parse(x509.validFrom) > now) throw invalid(`the certificate ${files.cert} is not valid before ${x509.validFrom}`)
  let keyObject
  try { keyObject = createPrivateKey(key) } catch (err) { throw invalid(`${files.key} is not a PEM private key: ${(err as Error).message}`) }
  if (!x509.checkPrivateKey(keyObject)) throw invalid(`the key ${files.key} does not belong to the certificate ${files.cert}`)
  try { createSecureContext({ cert, key }) } catch (err) { throw invalid(`the certificate and key cannot be used: ${(err as Error).message}`) }
  return { cert, key, subject: x509.subject.replace(/\n/g, ', '), validTo: x509.validTo }
}

/**
 * The HTTP(S) server of a listener. With `tls`, an https.Server — node:http's request handling on
 * TLS sockets, with every http.Server method, so callers keep one type — whose certificate is
 * reloaded when its files change (or `update` names others): new connections get the new one,
 * open connections keep theirs, none is dropped. A new certificate that does not load is refused
 * and logged; the current one keeps serving.
 */
export class HttpListener {
  readonly server: http.Server
  private tls: TlsFiles | null
  private readonly https: https.Server | null
  private watchers: fs.FSWatcher[] = []
  private timer: NodeJS.Timeout | null = null
  private readonly logger: Logger

  constructor (tls: TlsFiles | null, opts: http.ServerOptions, handler: http.RequestListener, private readonly name: string, logger?: Logger) {
    this.logger = logger ?? silentLogger
    this.tls = tls
    if (tls === null) {
      this.https = null
      this.server = http.createServer(opts, handler)
      return
    }
    const pair = loadTlsPair(tls)
    this.https = https.createServer({ ...opts, cert: pair.cert, key: pair.key }, handler)
    this.server = this.https as unknown as http.Server
    this.logger.info({ listener: name, subject: pair.subject, validTo: pair.validTo }, 'TLS certificate loaded')
    this.watch()
  }

  get secure (): boolean { return this.https !== null }

  /** New certificate paths from a config reload (turning TLS on or off needs a restart). */
  update (tls: TlsFiles | null): void {
    if (this.https === null || tls === null) {
      if ((tls === null) !== (this.https === null)) this.logger.warn({ listener: this.name }, `${this.name}.tls: turning TLS on or off takes effect on restart`)
      return
    }
    if (tls.cert === this.tls?.cert && tls.key === this.tls.key) return
    this.tls = tls
    this.close()
    this.watch()
    this.reload('config')
  }

  /** Loads the files again and switches new connections to them; false (logged) when refused. */
  reload (trigger: string): boolean {
    if (this.https === null || this.tls === null) return false
    try {
      const pair = loadTlsPair(this.tls)
      this.https.setSecureContext({ cert: pair.cert, key: pair.key })
      this.logger.info({ listener: this.name, trigger, subject: pair.subject, validTo: pair.validTo }, 'TLS certificate reloaded')
      return true
    } catch (err) {
      this.logger.error({ listener: this.name, trigger, err: (err as Error).message }, 'TLS certificate reload refused; the current certificate keeps serving')
      return false
    }
  }

  /**
   * Watches the directories, not the files: certificate tools (certbot, cert-manager) replace
   * files by rename or symlink swap, which a watch on the old inode would never report.
   */
  private watch (): void {
    if (this.tls === null) return
    const files = new Set([path.resolve(this.tls.cert), path.resolve(this.tls.key)])
    for (const dir of new Set([...files].map(f => path.dirname(f)))) {
      try {
        const w = fs.watch(dir, (_event, name) => {
          if (name !== null && ![...files].some(f => path.dirname(f) === dir && path.basename(f) === name)) return
          // Debounced: a cert and its key are usually written one after the other.
          if (this.timer !== null) clearTimeout(this.timer)
          this.timer = setTimeout(() => { this.timer = null; this.reload('file') }, 200)
          this.timer.unref()
        })
        w.on('error', err => { this.logger.warn({ dir, err: err.message }, 'cannot watch the TLS files; they reload with the config') })
        w.unref()
        this.watchers.push(w)
      } catch (err) {
        this.logger.warn({ dir, err: (err as Error).message }, 'cannot watch the TLS files; they reload with the config')
      }
    }
  }

  close (): void {
    for (const w of this.watchers) w.close()
    this.watchers = []
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }
}
