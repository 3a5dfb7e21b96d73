import { Agent, type AgentOptions } from 'node:https'
import type { ClientRequestArgs } from 'node:http'
import type { Duplex } from 'node:stream'
import { checkServerIdentity, connect as tlsConnect, type TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import type { Clock, ClockTimer } from '../../core/clock.js'
import type { Counters } from '../../core/counters.js'
import { decodeFrame, encodeFrame, type MtctiDecodeError } from './mtcti3/codec.js'
import type { MtctiMessage, MtctiOutgoing, Notify, RequestResponse, SubscribeTerminated } from './mtcti3/model.js'
import { MtctiLinkError } from './link-error.js'

/**
 * One MTCTI-3 connection: TLS (system CAs, a given CA, or a pinned certificate), the WebSocket upgrade to
 * /tpkt/openapi with subprotocol "openapi" and HTTP Basic credentials (research A.2 [C]), the 4-byte framing,
 * request/response correlation by requestid, a NotifyAck for every Notify (A.3 [I]), and WebSocket pings as
 * keepalive (A.7 [I]). No business logic; one instance per connection.
 */

export interface AvayaIpoDriverOptions {
  host: string
  port: number
  path: string
  username: string
  password: string
  /** PEM of the CA(s) to trust instead of the system ones. */
  caPem?: string
  /** Lower-case hex SHA-256 of the one certificate to accept. */
  pinnedSha256?: string
  serverName?: string
  requestTimeoutMs: number
  pingIntervalMs: number
  maxFrameBytes: number
}

export interface AvayaIpoDriverDeps {
  logger: Logger
  clock: Clock
  counters: Counters
}

export interface DriverClosed {
  code: 'SOCKET_CLOSED' | 'PING_TIMEOUT' | 'FRAME_TOO_LARGE'
  reason: string
}

export const SUBPROTOCOL = 'openapi'
const CLOSE_TIMEOUT_MS = 1000
const MAX_REQUEST_ID = 0x7fffffff

interface PendingRequest {
  request: string
  resolve: (response: RequestResponse) => void
  reject: (error: MtctiLinkError) => void
  timer: ClockTimer
}

type DriverState = 'idle' | 'connecting' | 'open' | 'closing' | 'closed'

/** Does the TLS handshake before any HTTP byte (the Basic credentials) is written, and checks trust itself. */
class VerifyingAgent extends Agent {
  readonly #verify: (socket: TLSSocket) => MtctiLinkError | undefined

  constructor(options: AgentOptions, verify: (socket: TLSSocket) => MtctiLinkError | undefined) {
    super(options)
    this.#verify = verify
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const socket = tlsConnect({
      ...(options as object),
      host: options.host ?? undefined,
      port: Number(options.port),
      // Verification happens in #verify, so a failure can say which certificate was presented.
      rejectUnauthorized: false,
    })
    let done = false
    const finish = (error: Error | null): void => {
      if (done) return
      done = true
      if (error !== null) socket.destroy()
      callback?.(error, socket)
    }
    socket.once('secureConnect', () => finish(this.#verify(socket) ?? null))
    socket.once('error', (error) => finish(error))
    return undefined
  }
}

export class AvayaIpoDriver {
  readonly #options: AvayaIpoDriverOptions
  readonly #deps: AvayaIpoDriverDeps
  #state: DriverState = 'idle'
  #ws: WebSocket | undefined
  readonly #pending = new Map<number, PendingRequest>()
  #nextRequestId = 1
  #openTimer: ClockTimer | undefined
  #pingTimer: ClockTimer | undefined
  #closeFallbackTimer: ClockTimer | undefined
  #awaitingPong = false
  #lastError: (Error & { code?: string }) | undefined
  #rejectOpen: ((error: MtctiLinkError) => void) | undefined
  #closing: Promise<void> | undefined
  #resolveClosing: (() => void) | undefined
  readonly #notifyListeners = new Set<(notify: Notify) => void>()
  readonly #terminatedListeners = new Set<(terminated: SubscribeTerminated) => void>()
  readonly #closeListeners = new Set<(closed: DriverClosed) => void>()

  constructor(options: AvayaIpoDriverOptions, deps: AvayaIpoDriverDeps) {
    this.#options = options
    this.#deps = deps
  }

  get isOpen(): boolean {
    return this.#state === 'open'
  }

  onNotify(listener: (notify: Notify) => void): () => void {
    this.#notifyListeners.add(listener)
    return () => this.#notifyListeners.delete(listener)
  }

  onSubscribeTerminated(listener: (terminated: SubscribeTerminated) => void): () => void {
    this.#terminatedListeners.add(listener)
    return () => this.#terminatedListeners.delete(listener)
  }

  /** Fires once when the open link is lost (not after close()). */
  onClose(listener: (closed: DriverClosed) => void): () => void {
    this.#closeListeners.add(listener)
    return () => this.#closeListeners.delete(listener)
  }

  /** TLS, upgrade, subprotocol. Rejects with MtctiLinkError; a driver opens at most once. */
  open(): Promise<void> {
    if (this.#state !== 'idle') return Promise.reject(new MtctiLinkError('NOT_OPEN', 'a driver opens only once'))
    this.#state = 'connecting'
    const { host, port, path, username, password, requestTimeoutMs, maxFrameBytes } = this.#options
    return new Promise<void>((resolve, reject) => {
      this.#rejectOpen = reject
      const authority = host.includes(':') ? `[${host}]` : host
      const agent = new VerifyingAgent({ keepAlive: false, ...(this.#options.caPem === undefined ? {} : { ca: this.#options.caPem }) }, (socket) => this.#verifyPeer(socket))
      let ws: WebSocket
      try {
        ws = new WebSocket(`wss://${authority}:${port}${path}`, SUBPROTOCOL, {
          agent,
          headers: { Authorization: `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}` },
          perMessageDeflate: false,
          maxPayload: maxFrameBytes,
          handshakeTimeout: requestTimeoutMs,
          ...(this.#options.serverName === undefined ? {} : { servername: this.#options.serverName }),
        })
      } catch (error) {
        this.#state = 'closed'
        reject(new MtctiLinkError('CONNECT_FAILED', `cannot connect to ${host}:${port}: ${error instanceof Error ? error.message : String(error)}`))
        return
      }
      this.#ws = ws
      this.#openTimer = this.#deps.clock.setTimeout(() => {
        this.#failOpen(new MtctiLinkError('CONNECT_TIMEOUT', `no WebSocket upgrade from ${host}:${port} within ${requestTimeoutMs} ms`))
      }, requestTimeoutMs)
      ws.on('unexpected-response', (_request, response) => {
        const status = response.statusCode ?? 0
        response.resume()
        this.#failOpen(status === 401 || status === 403
          ? new MtctiLinkError('AUTH_REJECTED', `${host}:${port} refused the credentials (HTTP ${status})`, { status })
          : new MtctiLinkError('HTTP_ERROR', `${host}:${port} answered HTTP ${status} instead of the WebSocket upgrade`, { status }))
      })
      ws.on('open', () => {
        if (this.#state !== 'connecting') return
        this.#deps.clock.clearTimeout(this.#openTimer)
        this.#state = 'open'
        this.#rejectOpen = undefined
        this.#schedulePing()
        resolve()
      })
      ws.on('message', (data, isBinary) => this.#onFrame(data, isBinary))
      ws.on('pong', () => {
        this.#awaitingPong = false
      })
      ws.on('error', (error: Error & { code?: string }) => {
        this.#lastError = error
        if (this.#state === 'connecting') this.#failOpen(this.#connectError(error))
      })
      ws.on('close', (code, reason) => this.#onClose(code, reason.toString('utf8')))
    })
  }

  /** Sends a request carrying a fresh requestid; resolves on RequestResponse result 0, rejects otherwise. */
  request(request: string, build: (requestId: number) => MtctiOutgoing): Promise<RequestResponse> {
    const ws = this.#ws
    if (this.#state !== 'open' || ws === undefined) {
      return Promise.reject(new MtctiLinkError('NOT_OPEN', `no open MTCTI-3 link for ${request}`, { request }))
    }
    const requestId = this.#allocateRequestId()
    const frame = encodeFrame(build(requestId))
    const timeoutMs = this.#options.requestTimeoutMs
    return new Promise<RequestResponse>((resolve, reject) => {
      const timer = this.#deps.clock.setTimeout(() => {
        if (this.#pending.get(requestId)?.timer !== timer) return
        this.#pending.delete(requestId)
        this.#deps.counters.inc('avaya-ipo.requests.timeout')
        reject(new MtctiLinkError('REQUEST_TIMEOUT', `no answer to ${request} within ${timeoutMs} ms`, { requestId, request }))
      }, timeoutMs)
      this.#pending.set(requestId, { request, resolve, reject, timer })
      ws.send(frame, { binary: true })
    })
  }

  /** Sends a message that has no answer (NotifyAck). Silently dropped when the link is not open. */
  send(message: MtctiOutgoing): void {
    if (this.#state === 'open') this.#ws?.send(encodeFrame(message), { binary: true })
  }

  close(): Promise<void> {
    switch (this.#state) {
      case 'idle':
        this.#state = 'closed'
        return Promise.resolve()
      case 'connecting':
        this.#failOpen(new MtctiLinkError('LINK_CLOSED', 'closed by the application before the link opened'))
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
    this.#rejectAll('the link was closed')
    const ws = this.#ws
    this.#deps.clock.clearTimeout(this.#pingTimer)
    ws?.close(1000, 'gateway stopping')
    this.#closeFallbackTimer = this.#deps.clock.setTimeout(() => ws?.terminate(), CLOSE_TIMEOUT_MS)
    return this.#closing
  }

  // --- TLS ----------------------------------------------------------------------------------------------

  #verifyPeer(socket: TLSSocket): MtctiLinkError | undefined {
    const { host, port, pinnedSha256, serverName } = this.#options
    const certificate = socket.getPeerCertificate()
    const fingerprint256 = certificate.fingerprint256?.replaceAll(':', '').toLowerCase()
    if (pinnedSha256 !== undefined) {
      if (fingerprint256 === pinnedSha256) return undefined
      return new MtctiLinkError('TLS_PIN_MISMATCH', `${host}:${port} presented certificate ${fingerprint256 ?? 'none'}, not the pinned ${pinnedSha256}`, fingerprint256 === undefined ? {} : { fingerprint256 })
    }
    const detail = fingerprint256 === undefined ? {} : { fingerprint256 }
    if (!socket.authorized) {
      const tlsError = String(socket.authorizationError ?? 'unknown')
      return new MtctiLinkError('TLS_UNTRUSTED', `the certificate of ${host}:${port} is not trusted (${tlsError})`, { ...detail, tlsError })
    }
    const identityError = checkServerIdentity(serverName ?? host, certificate)
    if (identityError !== undefined) {
      return new MtctiLinkError('TLS_UNTRUSTED', `the certificate of ${host}:${port} is not for ${serverName ?? host} (${identityError.message})`, { ...detail, tlsError: 'ERR_TLS_CERT_ALTNAME_INVALID' })
    }
    return undefined
  }

  #connectError(error: Error & { code?: string }): MtctiLinkError {
    const { host, port } = this.#options
    if (error instanceof MtctiLinkError) return error
    if (/subprotocol/i.test(error.message)) {
      return new MtctiLinkError('SUBPROTOCOL', `${host}:${port} did not accept the WebSocket subprotocol "${SUBPROTOCOL}" (${error.message})`)
    }
    const errno = error.code
    if (errno === 'ECONNREFUSED') return new MtctiLinkError('CONNECT_REFUSED', `connection refused by ${host}:${port}`, { errno })
    return new MtctiLinkError('CONNECT_FAILED', `cannot connect to ${host}:${port} (${errno ?? error.message})`, errno === undefined ? {} : { errno })
  }

  // --- Receiving ------------------------------------------------------------------------------------------

  #onFrame(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.#state !== 'open') return
    const frame = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
    if (!isBinary) {
      this.#dropped({ code: 'TEXT_FRAME', reason: 'a text frame; MTCTI-3 sends binary frames only', bytes: frame.byteLength })
      return
    }
    const decoded = decodeFrame(frame)
    if (!decoded.ok) {
      this.#dropped(decoded.error)
      return
    }
    this.#deps.counters.inc('avaya-ipo.frames.received')
    this.#dispatch(decoded.message)
  }

  #dropped(error: MtctiDecodeError): void {
    const counter = error.code === 'PROTOBUF_DECODE'
      ? 'avaya-ipo.messages.malformed'
      : error.code === 'UNKNOWN_PAYLOAD' ? 'avaya-ipo.messages.unknown' : 'avaya-ipo.frames.malformed'
    this.#deps.counters.inc(counter)
    this.#deps.logger.warn(
      { code: error.code, reason: error.reason, bytes: error.bytes, prefix: error.prefix, fields: error.fields },
      'malformed MTCTI-3 frame dropped',
    )
  }

  #dispatch(message: MtctiMessage): void {
    switch (message.payload) {
      case 'response': {
        const response = message.response ?? {}
        const requestId = response.requestid ?? 0
        const pending = this.#pending.get(requestId)
        if (pending === undefined) {
          this.#deps.counters.inc('avaya-ipo.responses.unmatched')
          this.#deps.logger.debug({ requestId, result: response.result }, 'RequestResponse without a pending request (late or duplicate)')
          return
        }
        this.#pending.delete(requestId)
        this.#deps.clock.clearTimeout(pending.timer)
        const result = response.result ?? 0
        if (result === 0) pending.resolve(response)
        else {
          const additional = response.additional ?? ''
          pending.reject(new MtctiLinkError('REQUEST_REFUSED', `${pending.request} refused: result ${result}${additional === '' ? '' : ` (${additional})`}`, { requestId, result, additional, request: pending.request }))
        }
        return
      }
      case 'notify': {
        const notify = message.notify ?? {}
        // Acknowledge first, whatever we make of it (A.3 [I]: the server may want acks; it does no harm).
        this.send({ notifyack: { subscribe_id: notify.subscribe_id ?? 0, notify_id: notify.notify_id ?? 0 } })
        for (const listener of this.#notifyListeners) this.#call(listener, notify)
        return
      }
      case 'subscribeterminated': {
        const terminated = message.subscribeterminated ?? {}
        for (const listener of this.#terminatedListeners) this.#call(listener, terminated)
        return
      }
      case 'generaldata':
        this.#deps.logger.debug({ responseId: message.generaldata?.responseid }, 'GeneralData ignored')
        return
      default:
        this.#deps.counters.inc('avaya-ipo.messages.unexpected')
        this.#deps.logger.warn({ payload: message.payload }, 'MTCTI-3 message not expected from the PBX ignored')
    }
  }

  #call<T>(listener: (value: T) => void, value: T): void {
    try {
      listener(value)
    } catch (error) {
      this.#deps.logger.error({ err: error }, 'MTCTI-3 listener threw')
    }
  }

  // --- Keepalive ----------------------------------------------------------------------------------------

  #schedulePing(): void {
    this.#pingTimer = this.#deps.clock.setTimeout(() => {
      if (this.#state !== 'open') return
      if (this.#awaitingPong) {
        this.#terminate({ code: 'PING_TIMEOUT', reason: `no WebSocket pong within ${this.#options.pingIntervalMs} ms` })
        return
      }
      this.#awaitingPong = true
      this.#ws?.ping()
      this.#schedulePing()
    }, this.#options.pingIntervalMs)
  }

  // --- Teardown -----------------------------------------------------------------------------------------

  #onClose(code: number, reason: string): void {
    switch (this.#state) {
      case 'connecting':
        this.#failOpen(this.#lastError === undefined
          ? new MtctiLinkError('CONNECT_FAILED', `${this.#options.host}:${this.#options.port} closed the connection during the upgrade`)
          : this.#connectError(this.#lastError))
        return
      case 'open': {
        const error = this.#lastError
        if (code === 1009 || error?.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
          this.#deps.counters.inc('avaya-ipo.frames.oversized')
          this.#terminate({ code: 'FRAME_TOO_LARGE', reason: `the PBX sent a frame larger than maxFrameBytes (${this.#options.maxFrameBytes} bytes)` })
          return
        }
        const why = error === undefined ? `close code ${code}${reason === '' ? '' : `: ${reason}`}` : error.message
        this.#terminate({ code: 'SOCKET_CLOSED', reason: `the connection closed (${why})` })
        return
      }
      case 'closing':
        this.#state = 'closed'
        this.#teardown()
        this.#resolveClosing?.()
        this.#resolveClosing = undefined
        return
      case 'idle':
      case 'closed':
        return
    }
  }

  #failOpen(error: MtctiLinkError): void {
    if (this.#state !== 'connecting') return
    this.#state = 'closed'
    this.#teardown()
    const reject = this.#rejectOpen
    this.#rejectOpen = undefined
    reject?.(error)
  }

  #terminate(closed: DriverClosed): void {
    if (this.#state !== 'open') return
    this.#state = 'closed'
    this.#teardown()
    this.#deps.logger.warn({ code: closed.code, reason: closed.reason }, 'MTCTI-3 link lost')
    for (const listener of this.#closeListeners) this.#call(listener, closed)
    this.#closeListeners.clear()
  }

  #rejectAll(why: string): void {
    for (const [requestId, pending] of this.#pending) {
      this.#deps.clock.clearTimeout(pending.timer)
      pending.reject(new MtctiLinkError('LINK_CLOSED', `${why} before ${pending.request} was answered`, { requestId, request: pending.request }))
    }
    this.#pending.clear()
  }

  #teardown(): void {
    this.#deps.clock.clearTimeout(this.#openTimer)
    this.#deps.clock.clearTimeout(this.#pingTimer)
    this.#deps.clock.clearTimeout(this.#closeFallbackTimer)
    this.#rejectAll('the link closed')
    this.#notifyListeners.clear()
    this.#terminatedListeners.clear()
    const ws = this.#ws
    if (ws !== undefined) {
      ws.removeAllListeners('message')
      ws.removeAllListeners('open')
      ws.removeAllListeners('unexpected-response')
      // Keep an error listener: a late socket error must never become an uncaught exception.
      ws.removeAllListeners('error')
      ws.on('error', () => undefined)
      if (ws.readyState !== WebSocket.CLOSED) {
        try {
          ws.terminate()
        } catch {
          // terminate() on a socket that never connected can throw in some ws versions; nothing to clean up then.
        }
      }
    }
  }

  #allocateRequestId(): number {
    for (;;) {
      const id = this.#nextRequestId
      this.#nextRequestId = id >= MAX_REQUEST_ID ? 1 : id + 1
      if (!this.#pending.has(id)) return id
    }
  }
}
