import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import type { Clock, ClockTimer } from '../../core/clock.js'
import type { Counters } from '../../core/counters.js'
import { appLoginDigest } from './login.js'
import { InnoLinkError } from './link-error.js'
import {
  AppChallengeResultSchema,
  AppLoginResultSchema,
  decodeFrame,
  MAX_FRAME_BYTES,
  readAs,
  type InnoMessage,
} from './messages.js'

/**
 * One AppWebsocket connection to a PBX App object: WebSocket (TLS with a CA or a pinned certificate), the
 * AppChallenge/AppLogin handshake, request/result correlation by `src` and mt, KeepAlive and the silent-peer
 * check. No business logic; one instance per connection (make a new one after it closes).
 */

export interface InnovaphoneDriverOptions {
  url: string
  appName: string
  appPassword: string
  /** PEM of a CA to trust instead of the system's. */
  ca?: string
  /** SHA-256 of the PBX certificate, lower-case hex without colons. */
  pinSha256?: string
  requestTimeoutMs: number
  keepAliveIntervalMs: number
  answerTimeoutMs: number
}

export interface InnovaphoneDriverDeps {
  logger: Logger
  clock: Clock
  counters: Counters
}

export type DriverCloseCode = 'SOCKET_CLOSED' | 'SOCKET_ERROR' | 'PEER_SILENT'

export interface DriverClosed {
  code: DriverCloseCode
  reason: string
}

interface PendingRequest {
  request: string
  resolve: (message: InnoMessage) => void
  reject: (error: InnoLinkError) => void
  timer: ClockTimer
}

type DriverState = 'idle' | 'connecting' | 'open' | 'closing' | 'closed'

const TLS_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED',
])
const CLOSE_TIMEOUT_MS = 1000

export class InnovaphoneDriver {
  readonly #options: InnovaphoneDriverOptions
  readonly #deps: InnovaphoneDriverDeps
  #state: DriverState = 'idle'
  #socket: WebSocket | undefined
  /** Messages before the login finished go here (AppChallengeResult, AppLoginResult). */
  #loginWaiter: { mt: string; resolve: (message: InnoMessage) => void } | undefined
  #rejectOpen: ((error: InnoLinkError) => void) | undefined
  readonly #pending = new Map<string, PendingRequest>()
  #nextSrc = 1
  #lastReceivedAt = 0
  #lastSentAt = 0
  #probeSentAt: number | undefined
  #tickTimer: ClockTimer | undefined
  #openTimer: ClockTimer | undefined
  #closeTimer: ClockTimer | undefined
  #closing: Promise<void> | undefined
  #resolveClosing: (() => void) | undefined
  #socketError: (Error & { code?: string }) | undefined
  #upgradeStatus: number | undefined
  #pinProblem: string | undefined
  readonly #messageListeners = new Set<(message: InnoMessage) => void>()
  readonly #closeListeners = new Set<(closed: DriverClosed) => void>()

  constructor(options: InnovaphoneDriverOptions, deps: InnovaphoneDriverDeps) {
    this.#options = options
    this.#deps = deps
  }

  get isOpen(): boolean {
    return this.#state === 'open'
  }

  /** Every message that is not the result of one of our requests, in stream order. */
  onMessage(listener: (message: InnoMessage) => void): () => void {
    this.#messageListeners.add(listener)
    return () => this.#messageListeners.delete(listener)
  }

  /** Fires once when an open link is lost (not after close()). */
  onClose(listener: (closed: DriverClosed) => void): () => void {
    this.#closeListeners.add(listener)
    return () => this.#closeListeners.delete(listener)
  }

  /** Connects and logs in. Rejects with InnoLinkError; a driver opens at most once. */
  open(): Promise<void> {
    if (this.#state !== 'idle') return Promise.reject(new InnoLinkError('NOT_OPEN', 'a driver opens only once'))
    this.#state = 'connecting'
    const { url, requestTimeoutMs, ca, pinSha256 } = this.#options
    return new Promise<void>((resolve, reject) => {
      this.#rejectOpen = reject
      const socket = new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: MAX_FRAME_BYTES,
        handshakeTimeout: requestTimeoutMs,
        // A pin replaces CA verification (self-signed PBX certificates); it is checked before anything is sent.
        ...(pinSha256 !== undefined ? { rejectUnauthorized: false } : ca !== undefined ? { ca } : {}),
      })
      this.#socket = socket
      this.#openTimer = this.#deps.clock.setTimeout(() => {
        this.#failOpen(new InnoLinkError('CONNECT_TIMEOUT', `no WebSocket connection to ${url} within ${requestTimeoutMs} ms`))
      }, requestTimeoutMs)
      socket.on('upgrade', (response: IncomingMessage) => {
        if (pinSha256 === undefined) return
        const certificate = (response.socket as TLSSocket).getPeerCertificate?.()
        const seen = certificate?.fingerprint256?.replaceAll(':', '').toLowerCase()
        if (seen !== pinSha256) this.#pinProblem = seen === undefined ? 'no certificate (is it wss://?)' : seen
      })
      socket.on('unexpected-response', (_request, response: IncomingMessage) => {
        this.#upgradeStatus = response.statusCode
        response.resume()
        this.#failOpen(new InnoLinkError('UPGRADE_REJECTED', `${url} answered the WebSocket upgrade with HTTP ${response.statusCode ?? '?'}`, { status: response.statusCode ?? 0 }))
      })
      socket.on('open', () => {
        if (this.#pinProblem !== undefined) {
          this.#failOpen(new InnoLinkError('CERTIFICATE_MISMATCH', `the PBX certificate is not the pinned one (it has SHA-256 ${this.#pinProblem})`))
          return
        }
        this.#lastReceivedAt = this.#deps.clock.now()
        this.#login().then(() => {
          if (this.#state !== 'connecting') return
          this.#deps.clock.clearTimeout(this.#openTimer)
          this.#state = 'open'
          this.#rejectOpen = undefined
          this.#scheduleTick()
          resolve()
        }, (error: unknown) => this.#failOpen(asLinkError(error)))
      })
      socket.on('message', (data: WebSocket.RawData, isBinary: boolean) => this.#onFrame(data, isBinary))
      socket.on('pong', () => {
        this.#lastReceivedAt = this.#deps.clock.now()
      })
      socket.on('error', (error: Error & { code?: string }) => {
        this.#socketError = error
        if (this.#state === 'connecting') this.#failOpen(this.#connectError(error))
      })
      socket.on('close', (code: number, reason: Buffer) => this.#onSocketClose(code, reason.toString('utf8')))
    })
  }

  /**
   * Sends a request and resolves with its `<mt>Result`. `src` is set here; results are matched by src and mt.
   * A result with a non-zero `error` rejects with REQUEST_FAILED.
   */
  request(message: InnoMessage, options: { src?: string; timeoutMs?: number; resultMt?: string } = {}): Promise<InnoMessage> {
    if (this.#state !== 'open') return Promise.reject(new InnoLinkError('NOT_OPEN', `no open PBX link for ${message.mt}`, { request: message.mt }))
    const src = options.src ?? `q${this.#nextSrc++}`
    const resultMt = options.resultMt ?? `${message.mt}Result`
    const key = `${src}\u0000${resultMt}`
    if (this.#pending.has(key)) return Promise.reject(new InnoLinkError('REQUEST_FAILED', `a ${message.mt} with src ${src} is already outstanding`, { request: message.mt }))
    const timeoutMs = options.timeoutMs ?? this.#options.requestTimeoutMs
    const request = message.api === undefined ? message.mt : `${message.api} ${message.mt}`
    return new Promise<InnoMessage>((resolve, reject) => {
      const timer = this.#deps.clock.setTimeout(() => {
        if (this.#pending.get(key)?.timer !== timer) return
        this.#pending.delete(key)
        this.#deps.counters.inc('innovaphone.requests.timeout')
        reject(new InnoLinkError('REQUEST_TIMEOUT', `no answer to ${request} within ${timeoutMs} ms`, { request, ...(message.api === undefined ? {} : { api: message.api }) }))
      }, timeoutMs)
      this.#pending.set(key, { request, resolve, reject, timer })
      this.#write({ ...message, src })
    })
  }

  /** Sends a message that has no result (UserEnd, UnsubscribePresence). */
  send(message: InnoMessage): boolean {
    if (this.#state !== 'open') return false
    return this.#write(message)
  }

  /** Closes the WebSocket (close frame, then destroy after 1 s). Idempotent. */
  close(): Promise<void> {
    switch (this.#state) {
      case 'idle':
        this.#state = 'closed'
        return Promise.resolve()
      case 'connecting':
        this.#failOpen(new InnoLinkError('LINK_CLOSED', 'closed by the application before the login finished'))
        return Promise.resolve()
      case 'closed':
        return Promise.resolve()
      case 'closing':
        return this.#closing ?? Promise.resolve()
      case 'open':
        break
    }
    this.#state = 'closing'
    this.#closing = new Promise<void>((resolve) => {
      this.#resolveClosing = resolve
    })
    this.#rejectAll('the connector is stopping')
    const socket = this.#socket
    if (socket === undefined || socket.readyState === WebSocket.CLOSED) {
      this.#finishClosing()
    } else {
      socket.close(1000, 'gateway stopping')
      this.#closeTimer = this.#deps.clock.setTimeout(() => socket.terminate(), CLOSE_TIMEOUT_MS)
    }
    return this.#closing
  }

  // --- Login ----------------------------------------------------------------------------------------------

  async #login(): Promise<void> {
    const { appName, appPassword } = this.#options
    const challengeMessage = await this.#loginStep({ mt: 'AppChallenge' }, 'AppChallengeResult')
    const challenge = readAs(AppChallengeResultSchema, challengeMessage)
    if (!challenge.ok) throw new InnoLinkError('LOGIN_REFUSED', `AppChallengeResult without a challenge (${challenge.reason})`)
    // An App-object login: domain, sip, guid and dn stay empty [C: AppWebsocket.htm]; no info, so no info segment.
    const fields = { app: appName, domain: '', sip: '', guid: '', dn: '' }
    const digest = appLoginDigest(fields, challenge.value.challenge, appPassword)
    const result = await this.#loginStep({ mt: 'AppLogin', ...fields, digest }, 'AppLoginResult')
    const login = readAs(AppLoginResultSchema, result)
    if (!login.ok || login.value.ok !== true) {
      const errorText = login.ok ? login.value.errorText : undefined
      throw new InnoLinkError('LOGIN_REFUSED', `AppLogin refused${errorText === undefined ? '' : `: ${errorText}`}`, {
        ...(errorText === undefined ? {} : { errorText }),
        ...(login.ok && login.value.error !== undefined ? { error: login.value.error } : {}),
      })
    }
    this.#deps.logger.info({ app: appName }, 'logged in to the PBX App object')
  }

  #loginStep(message: InnoMessage, resultMt: string): Promise<InnoMessage> {
    return new Promise<InnoMessage>((resolve, reject) => {
      const timer = this.#deps.clock.setTimeout(() => {
        this.#loginWaiter = undefined
        reject(new InnoLinkError('LOGIN_TIMEOUT', `no ${resultMt} within ${this.#options.requestTimeoutMs} ms`))
      }, this.#options.requestTimeoutMs)
      this.#loginWaiter = {
        mt: resultMt,
        resolve: (answer) => {
          this.#deps.clock.clearTimeout(timer)
          this.#loginWaiter = undefined
          resolve(answer)
        },
      }
      this.#write(message)
    })
  }

  // --- Liveness -------------------------------------------------------------------------------------------

  #scheduleTick(): void {
    const periodMs = Math.max(50, Math.min(this.#options.keepAliveIntervalMs, this.#options.answerTimeoutMs) / 2)
    this.#tickTimer = this.#deps.clock.setTimeout(() => this.#tick(), periodMs)
  }

  /**
   * KeepAlive after keepAliveIntervalMs without sending (the PBX's idle timeout is unknown [U]; the SDK uses
   * 60 s [C]) or without receiving; a WebSocket ping goes with it because any RFC 6455 peer must answer it,
   * while whether the PBX answers KeepAlive is [U]. No frame and no pong within answerTimeoutMs of that probe:
   * the connection is open but the PBX no longer answers.
   */
  #tick(): void {
    if (this.#state !== 'open') return
    const now = this.#deps.clock.now()
    const { keepAliveIntervalMs, answerTimeoutMs } = this.#options
    if (this.#probeSentAt !== undefined) {
      if (this.#lastReceivedAt >= this.#probeSentAt) {
        this.#probeSentAt = undefined
      } else if (now - this.#probeSentAt >= answerTimeoutMs) {
        this.#deps.counters.inc('innovaphone.link.silent')
        this.#terminate({
          code: 'PEER_SILENT',
          reason: `the PBX stopped answering: no frame and no pong within ${answerTimeoutMs} ms of a KeepAlive, although the connection is open`,
        })
        return
      }
    }
    if (this.#probeSentAt === undefined && (now - this.#lastReceivedAt >= keepAliveIntervalMs || now - this.#lastSentAt >= keepAliveIntervalMs)) {
      this.#probeSentAt = now
      this.#write({ mt: 'KeepAlive' })
      try {
        this.#socket?.ping()
      } catch {
        // The close event follows.
      }
    }
    this.#scheduleTick()
  }

  // --- Receiving ------------------------------------------------------------------------------------------

  #write(message: InnoMessage): boolean {
    const socket = this.#socket
    if (socket === undefined || socket.readyState !== WebSocket.OPEN) return false
    socket.send(JSON.stringify(message))
    this.#lastSentAt = this.#deps.clock.now()
    return true
  }

  #onFrame(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.#state !== 'connecting' && this.#state !== 'open') return
    this.#lastReceivedAt = this.#deps.clock.now()
    const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
    const decoded = decodeFrame(buffer, isBinary)
    this.#deps.counters.inc('innovaphone.frames.received')
    if (!decoded.ok) {
      this.#deps.counters.inc('innovaphone.frames.malformed')
      this.#deps.logger.warn(
        { code: decoded.code, reason: decoded.reason },
        'malformed frame from the PBX dropped; the link stays up (if this repeats, check that the address is the PBX App Platform WebSocket)',
      )
      return
    }
    const message = decoded.message
    if (this.#state === 'connecting') {
      if (this.#loginWaiter?.mt === message.mt) this.#loginWaiter.resolve(message)
      else this.#deps.logger.debug({ mt: message.mt }, 'message before the login finished ignored')
      return
    }
    if (message.mt.endsWith('Result') && message.src !== undefined) {
      const key = `${message.src}\u0000${message.mt}`
      const pending = this.#pending.get(key)
      if (pending !== undefined) {
        this.#pending.delete(key)
        this.#deps.clock.clearTimeout(pending.timer)
        const failure = resultError(message)
        if (failure === undefined) pending.resolve(message)
        else {
          pending.reject(new InnoLinkError('REQUEST_FAILED', `${pending.request} failed: ${failure.text}`, {
            request: pending.request, error: failure.error, ...(failure.errorText === undefined ? {} : { errorText: failure.errorText }),
          }))
        }
        return
      }
    }
    for (const listener of this.#messageListeners) {
      try {
        listener(message)
      } catch (error) {
        this.#deps.logger.error({ err: error, mt: message.mt }, 'PBX message listener threw')
      }
    }
  }

  // --- Teardown -------------------------------------------------------------------------------------------

  #connectError(error: Error & { code?: string }): InnoLinkError {
    const { url } = this.#options
    const errno = error.code
    if (errno === 'ECONNREFUSED') return new InnoLinkError('CONNECT_REFUSED', `connection refused by ${url}`, { errno })
    if (errno !== undefined && TLS_ERRORS.has(errno)) return new InnoLinkError('TLS_UNTRUSTED', `the PBX certificate is not trusted (${errno}: ${error.message})`, { errno })
    return new InnoLinkError('CONNECT_FAILED', `cannot connect to ${url} (${errno ?? error.message})`, errno === undefined ? {} : { errno })
  }

  #onSocketClose(code: number, reason: string): void {
    switch (this.#state) {
      case 'connecting':
        if (this.#socketError !== undefined) this.#failOpen(this.#connectError(this.#socketError))
        else if (this.#upgradeStatus === undefined) {
          this.#failOpen(new InnoLinkError('CLOSED_DURING_LOGIN', `the PBX closed the connection during the login (close code ${code}${reason === '' ? '' : `, ${reason}`})`))
        }
        return
      case 'open':
        this.#terminate(this.#socketError === undefined
          ? { code: 'SOCKET_CLOSED', reason: `the PBX closed the connection (close code ${code}${reason === '' ? '' : `, ${reason}`})` }
          : { code: 'SOCKET_ERROR', reason: `connection lost (${this.#socketError.code ?? this.#socketError.message})` })
        return
      case 'closing':
        this.#finishClosing()
        return
      case 'idle':
      case 'closed':
        return
    }
  }

  #failOpen(error: InnoLinkError): void {
    if (this.#state !== 'connecting') return
    this.#state = 'closed'
    this.#teardown('the connection failed')
    const reject = this.#rejectOpen
    this.#rejectOpen = undefined
    reject?.(error)
  }

  #terminate(closed: DriverClosed): void {
    if (this.#state !== 'open') return
    this.#state = 'closed'
    this.#teardown(closed.reason)
    this.#deps.logger.warn({ code: closed.code, reason: closed.reason }, 'PBX link lost')
    for (const listener of this.#closeListeners) {
      try {
        listener(closed)
      } catch (error) {
        this.#deps.logger.error({ err: error }, 'PBX close listener threw')
      }
    }
    this.#closeListeners.clear()
    this.#messageListeners.clear()
  }

  #finishClosing(): void {
    if (this.#state !== 'closing') return
    this.#state = 'closed'
    this.#teardown('the connector stopped')
    this.#closeListeners.clear()
    this.#messageListeners.clear()
    this.#resolveClosing?.()
    this.#resolveClosing = undefined
  }

  #rejectAll(why: string): void {
    for (const pending of this.#pending.values()) {
      this.#deps.clock.clearTimeout(pending.timer)
      pending.reject(new InnoLinkError('LINK_CLOSED', `${pending.request} not answered: ${why}`, { request: pending.request }))
    }
    this.#pending.clear()
  }

  #teardown(why: string): void {
    this.#deps.clock.clearTimeout(this.#tickTimer)
    this.#deps.clock.clearTimeout(this.#openTimer)
    this.#deps.clock.clearTimeout(this.#closeTimer)
    this.#tickTimer = undefined
    this.#loginWaiter = undefined
    this.#rejectAll(why)
    const socket = this.#socket
    if (socket !== undefined) {
      socket.removeAllListeners('message')
      socket.removeAllListeners('open')
      socket.removeAllListeners('upgrade')
      socket.removeAllListeners('unexpected-response')
      socket.removeAllListeners('pong')
      // A late socket error must never become an uncaught exception.
      socket.removeAllListeners('error')
      socket.on('error', () => undefined)
      if (socket.readyState !== WebSocket.CLOSED) socket.terminate()
    }
  }
}

/** A result reports failure by a non-zero/true `error` or, for AppLogin-style results, ok:false [C: B.7]. */
function resultError(message: InnoMessage): { text: string; error: unknown; errorText?: string } | undefined {
  const { error, errorText } = message
  const failed = error !== undefined && error !== 0 && error !== false && error !== '' && error !== null
  if (!failed) return undefined
  const text = typeof errorText === 'string' && errorText !== '' ? errorText : `error ${JSON.stringify(error)}`
  return typeof errorText === 'string' ? { text, error, errorText } : { text, error }
}

function asLinkError(error: unknown): InnoLinkError {
  if (error instanceof InnoLinkError) return error
  return new InnoLinkError('LINK_CLOSED', error instanceof Error ? error.message : String(error))
}
