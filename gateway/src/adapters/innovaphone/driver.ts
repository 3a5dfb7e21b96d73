import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import WebSocket from 'ws'
import { LinkDriver, releaseSocket, type DriverDeps } from '../kit/link-session.js'
import { checkPeer } from '../kit/tls-pinning.js'
import { VerifyingAgent } from '../kit/verifying-agent.js'
import { appLoginDigest } from './login.js'
import { InnoLinkError, type InnoLinkErrorDetail } from './link-error.js'
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

export type InnovaphoneDriverDeps = DriverDeps

export type DriverCloseCode = 'SOCKET_CLOSED' | 'SOCKET_ERROR' | 'PEER_SILENT'

export interface DriverClosed {
  code: DriverCloseCode
  reason: string
}

const CLOSE_TIMEOUT_MS = 1000

interface AppWebsocketSessionTypes {
  key: string
  answer: InnoMessage
  error: InnoLinkError
  detail: InnoLinkErrorDetail
  closed: DriverClosed
  request: { request: string; detail: InnoLinkErrorDetail }
}

export class InnovaphoneDriver extends LinkDriver<AppWebsocketSessionTypes, InnovaphoneDriverOptions> {
  #socket: WebSocket | undefined
  /** Messages before the login finished go here (AppChallengeResult, AppLoginResult). */
  #loginWaiter: { mt: string; resolve: (message: InnoMessage) => void } | undefined
  #nextSrc = 1
  #lastReceivedAt = 0
  #lastSentAt = 0
  #probeSentAt: number | undefined
  #socketError: (Error & { code?: string }) | undefined
  readonly #messageListeners = this.link.listeners<InnoMessage>('PBX message listener threw', (message) => ({ mt: message.mt }))

  constructor(options: InnovaphoneDriverOptions, deps: DriverDeps) {
    super(options, deps, { counterPrefix: 'innovaphone', label: 'PBX', error: InnoLinkError })
  }

  /** Every message that is not the result of one of our requests, in stream order. */
  onMessage(listener: (message: InnoMessage) => void): () => void {
    return this.#messageListeners.add(listener)
  }


  /** Connects and logs in. Rejects with InnoLinkError; a driver opens at most once. */
  open(): Promise<void> {
    const { url, requestTimeoutMs, ca } = this.options
    const timeout = (): InnoLinkError => new InnoLinkError('CONNECT_TIMEOUT', `no WebSocket connection to ${url} within ${requestTimeoutMs} ms`)
    return this.link.open<void>(requestTimeoutMs, timeout, (opened) => {
      // wss: the certificate (a pin, or the CA) is checked before the upgrade request is written.
      const agent = url.startsWith('wss:') ? new VerifyingAgent(ca === undefined ? {} : { ca }, (socket) => this.#verifyPeer(socket)) : undefined
      const socket = new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: MAX_FRAME_BYTES,
        handshakeTimeout: requestTimeoutMs,
        ...(agent === undefined ? {} : { agent }),
      })
      this.#socket = socket
      socket.on('unexpected-response', (_request, response: IncomingMessage) => {
        response.resume()
        this.link.failOpen(new InnoLinkError('UPGRADE_REJECTED', `${url} answered the WebSocket upgrade with HTTP ${response.statusCode ?? '?'}`, { status: response.statusCode ?? 0 }))
      })
      socket.on('open', () => {
        this.#lastReceivedAt = this.deps.clock.now()
        this.#login().then(() => {
          if (opened()) this.#scheduleTick()
        }, (error: unknown) => this.link.failOpen(asLinkError(error)))
      })
      socket.on('message', (data: WebSocket.RawData, isBinary: boolean) => this.#onFrame(data, isBinary))
      socket.on('pong', () => {
        this.#lastReceivedAt = this.deps.clock.now()
      })
      socket.on('error', (error: Error & { code?: string }) => {
        this.#socketError = error
        if (this.link.state === 'connecting') this.link.failOpen(this.#connectError(error))
      })
      socket.on('close', (code: number, reason: Buffer) => this.#onSocketClose(code, reason.toString('utf8')))
    })
  }

  /**
   * Sends a request and resolves with its `<mt>Result`. `src` is set here; results are matched by src and mt.
   * A result with a non-zero `error` rejects with REQUEST_FAILED.
   */
  request(message: InnoMessage, options: { src?: string; timeoutMs?: number; resultMt?: string } = {}): Promise<InnoMessage> {
    if (!this.link.isOpen) return Promise.reject(new InnoLinkError('NOT_OPEN', `no open PBX link for ${message.mt}`, { request: message.mt }))
    const src = options.src ?? `q${this.#nextSrc++}`
    const resultMt = options.resultMt ?? `${message.mt}Result`
    const key = `${src}\u0000${resultMt}`
    if (this.link.isPending(key)) return Promise.reject(new InnoLinkError('REQUEST_FAILED', `a ${message.mt} with src ${src} is already outstanding`, { request: message.mt }))
    const request = message.api === undefined ? message.mt : `${message.api} ${message.mt}`
    const detail = { request, ...(message.api === undefined ? {} : { api: message.api }) }
    return this.link.request(key, { request, detail }, options.timeoutMs ?? this.options.requestTimeoutMs, () => this.#write({ ...message, src }))
  }

  /** Sends a message that has no result (UserEnd, UnsubscribePresence). */
  send(message: InnoMessage): boolean {
    if (!this.link.isOpen) return false
    return this.#write(message)
  }

  /** Closes the WebSocket (close frame, then destroy after 1 s). Idempotent. */
  close(): Promise<void> {
    return this.link.close('closed by the application before the login finished', () => {
      this.link.rejectAll('the connector is stopping')
      const socket = this.#socket
      if (socket === undefined || socket.readyState === WebSocket.CLOSED) {
        this.link.finishClosing()
      } else {
        socket.close(1000, 'gateway stopping')
        this.link.setTimer('close', CLOSE_TIMEOUT_MS, () => socket.terminate())
      }
    })
  }

  // --- TLS ------------------------------------------------------------------------------------------------

  #verifyPeer(socket: TLSSocket): InnoLinkError | undefined {
    const problem = checkPeer(socket, { pin: this.options.pinSha256, serverName: new URL(this.options.url).hostname.replace(/^\[|\]$/g, '') })
    switch (problem?.code) {
      case undefined:
        return undefined
      case 'PIN_MISMATCH':
        return new InnoLinkError('CERTIFICATE_MISMATCH', `the PBX certificate is not the pinned one (it has SHA-256 ${problem.fingerprint256 ?? 'none'})`)
      case 'UNTRUSTED':
        return new InnoLinkError('TLS_UNTRUSTED', `the PBX certificate is not trusted (${problem.tlsError})`, { errno: problem.tlsError })
      case 'WRONG_NAME':
        return new InnoLinkError('TLS_UNTRUSTED', `the PBX certificate is not trusted (${problem.tlsError}: ${problem.reason})`, { errno: problem.tlsError })
    }
  }

  // --- Login ----------------------------------------------------------------------------------------------

  async #login(): Promise<void> {
    const { appName, appPassword } = this.options
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
    this.deps.logger.info({ app: appName }, 'logged in to the PBX App object')
  }

  #loginStep(message: InnoMessage, resultMt: string): Promise<InnoMessage> {
    return new Promise<InnoMessage>((resolve, reject) => {
      this.link.setTimer('login', this.options.requestTimeoutMs, () => {
        this.#loginWaiter = undefined
        reject(new InnoLinkError('LOGIN_TIMEOUT', `no ${resultMt} within ${this.options.requestTimeoutMs} ms`))
      })
      this.#loginWaiter = {
        mt: resultMt,
        resolve: (answer) => {
          this.link.clearTimer('login')
          this.#loginWaiter = undefined
          resolve(answer)
        },
      }
      this.#write(message)
    })
  }

  // --- Liveness -------------------------------------------------------------------------------------------

  #scheduleTick(): void {
    const periodMs = Math.max(50, Math.min(this.options.keepAliveIntervalMs, this.options.answerTimeoutMs) / 2)
    this.link.setTimer('tick', periodMs, () => this.#tick())
  }

  /**
   * KeepAlive after keepAliveIntervalMs without sending (the PBX's idle timeout is unknown [U]; the SDK uses
   * 60 s [C]) or without receiving; a WebSocket ping goes with it because any RFC 6455 peer must answer it,
   * while whether the PBX answers KeepAlive is [U]. No frame and no pong within answerTimeoutMs of that probe:
   * the connection is open but the PBX no longer answers.
   */
  #tick(): void {
    if (!this.link.isOpen) return
    const now = this.deps.clock.now()
    const { keepAliveIntervalMs, answerTimeoutMs } = this.options
    if (this.#probeSentAt !== undefined) {
      if (this.#lastReceivedAt >= this.#probeSentAt) {
        this.#probeSentAt = undefined
      } else if (now - this.#probeSentAt >= answerTimeoutMs) {
        this.deps.counters.inc('innovaphone.link.silent')
        this.link.terminate({
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
    this.#lastSentAt = this.deps.clock.now()
    return true
  }

  #onFrame(data: WebSocket.RawData, isBinary: boolean): void {
    const state = this.link.state
    if (state !== 'connecting' && state !== 'open') return
    this.#lastReceivedAt = this.deps.clock.now()
    const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
    const decoded = decodeFrame(buffer, isBinary)
    this.deps.counters.inc('innovaphone.frames.received')
    if (!decoded.ok) {
      this.deps.counters.inc('innovaphone.frames.malformed')
      this.deps.logger.warn(
        { code: decoded.code, reason: decoded.reason },
        'malformed frame from the PBX dropped; the link stays up (if this repeats, check that the address is the PBX App Platform WebSocket)',
      )
      return
    }
    const message = decoded.message
    if (state === 'connecting') {
      if (this.#loginWaiter?.mt === message.mt) this.#loginWaiter.resolve(message)
      else this.deps.logger.debug({ mt: message.mt }, 'message before the login finished ignored')
      return
    }
    const pending = message.mt.endsWith('Result') && message.src !== undefined ? this.link.settle(`${message.src}\u0000${message.mt}`) : undefined
    if (pending === undefined) {
      this.#messageListeners.emit(message)
      return
    }
    const failure = resultError(message)
    if (failure === undefined) pending.resolve(message)
    else {
      const { request } = pending.info
      pending.reject(new InnoLinkError('REQUEST_FAILED', `${request} failed: ${failure.text}`, {
        request, error: failure.error, ...(failure.errorText === undefined ? {} : { errorText: failure.errorText }),
      }))
    }
  }

  // --- Teardown -------------------------------------------------------------------------------------------

  #connectError(error: Error & { code?: string }): InnoLinkError {
    if (error instanceof InnoLinkError) return error
    const { url } = this.options
    const errno = error.code
    if (errno === 'ECONNREFUSED') return new InnoLinkError('CONNECT_REFUSED', `connection refused by ${url}`, { errno })
    return new InnoLinkError('CONNECT_FAILED', `cannot connect to ${url} (${errno ?? error.message})`, errno === undefined ? {} : { errno })
  }

  #onSocketClose(code: number, reason: string): void {
    const error = this.#socketError
    const why = `close code ${code}${reason === '' ? '' : `, ${reason}`}`
    this.link.socketEnded(
      () => error === undefined ? new InnoLinkError('CLOSED_DURING_LOGIN', `the PBX closed the connection during the login (${why})`) : this.#connectError(error),
      () => error === undefined
        ? { code: 'SOCKET_CLOSED', reason: `the PBX closed the connection (${why})` }
        : { code: 'SOCKET_ERROR', reason: `connection lost (${error.code ?? error.message})` },
    )
  }

  protected release(): void {
    this.#loginWaiter = undefined
    const socket = this.#socket
    if (socket === undefined) return
    releaseSocket(socket, ['message', 'open', 'upgrade', 'unexpected-response', 'pong'], () => {
      if (socket.readyState !== WebSocket.CLOSED) socket.terminate()
    })
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
