import type { TLSSocket } from 'node:tls'
import WebSocket from 'ws'
import { LinkDriver, releaseSocket, RequestIds, type DriverDeps } from '../kit/link-session.js'
import { checkPeer } from '../kit/tls-pinning.js'
import { VerifyingAgent } from '../kit/verifying-agent.js'
import { decodeFrame, encodeFrame, type MtctiDecodeError } from './mtcti3/codec.js'
import type { MtctiMessage, MtctiOutgoing, Notify, RequestResponse, SubscribeTerminated } from './mtcti3/model.js'
import { MtctiLinkError, type MtctiLinkErrorDetail } from './link-error.js'

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

export type AvayaIpoDriverDeps = DriverDeps

export interface DriverClosed {
  code: 'SOCKET_CLOSED' | 'PING_TIMEOUT' | 'FRAME_TOO_LARGE'
  reason: string
}

export const SUBPROTOCOL = 'openapi'
const CLOSE_TIMEOUT_MS = 1000

interface MtctiSessionTypes {
  key: number
  answer: RequestResponse
  error: MtctiLinkError
  detail: MtctiLinkErrorDetail
  closed: DriverClosed
  request: { request: string; detail: MtctiLinkErrorDetail }
}

export class AvayaIpoDriver extends LinkDriver<MtctiSessionTypes, AvayaIpoDriverOptions> {
  readonly #requestIds = new RequestIds(0x7fffffff)
  #ws: WebSocket | undefined
  #awaitingPong = false
  #lastError: (Error & { code?: string }) | undefined
  readonly #notifyListeners = this.link.listeners<Notify>('MTCTI-3 listener threw')
  readonly #terminatedListeners = this.link.listeners<SubscribeTerminated>('MTCTI-3 listener threw')

  constructor(options: AvayaIpoDriverOptions, deps: DriverDeps) {
    super(options, deps, { counterPrefix: 'avaya-ipo', label: 'MTCTI-3', error: MtctiLinkError })
  }

  onNotify(listener: (notify: Notify) => void): () => void {
    return this.#notifyListeners.add(listener)
  }

  onSubscribeTerminated(listener: (terminated: SubscribeTerminated) => void): () => void {
    return this.#terminatedListeners.add(listener)
  }


  /** TLS, upgrade, subprotocol. Rejects with MtctiLinkError; a driver opens at most once. */
  open(): Promise<void> {
    const { host, port, path, username, password, requestTimeoutMs, maxFrameBytes } = this.options
    const timeout = (): MtctiLinkError => new MtctiLinkError('CONNECT_TIMEOUT', `no WebSocket upgrade from ${host}:${port} within ${requestTimeoutMs} ms`)
    return this.link.open<void>(requestTimeoutMs, timeout, (opened) => {
      const authority = host.includes(':') ? `[${host}]` : host
      const agent = new VerifyingAgent(this.options.caPem === undefined ? {} : { ca: this.options.caPem }, (socket) => this.#verifyPeer(socket))
      let ws: WebSocket
      try {
        ws = new WebSocket(`wss://${authority}:${port}${path}`, SUBPROTOCOL, {
          agent,
          headers: { Authorization: `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}` },
          perMessageDeflate: false,
          maxPayload: maxFrameBytes,
          handshakeTimeout: requestTimeoutMs,
          ...(this.options.serverName === undefined ? {} : { servername: this.options.serverName }),
        })
      } catch (error) {
        this.link.failOpen(new MtctiLinkError('CONNECT_FAILED', `cannot connect to ${host}:${port}: ${error instanceof Error ? error.message : String(error)}`))
        return
      }
      this.#ws = ws
      ws.on('unexpected-response', (_request, response) => {
        const status = response.statusCode ?? 0
        response.resume()
        this.link.failOpen(status === 401 || status === 403
          ? new MtctiLinkError('AUTH_REJECTED', `${host}:${port} refused the credentials (HTTP ${status})`, { status })
          : new MtctiLinkError('HTTP_ERROR', `${host}:${port} answered HTTP ${status} instead of the WebSocket upgrade`, { status }))
      })
      ws.on('open', () => {
        if (opened()) this.#schedulePing()
      })
      ws.on('message', (data, isBinary) => this.#onFrame(data, isBinary))
      ws.on('pong', () => {
        this.#awaitingPong = false
      })
      ws.on('error', (error: Error & { code?: string }) => {
        this.#lastError = error
        if (this.link.state === 'connecting') this.link.failOpen(this.#connectError(error))
      })
      ws.on('close', (code, reason) => this.#onClose(code, reason.toString('utf8')))
    })
  }

  /** Sends a request carrying a fresh requestid; resolves on RequestResponse result 0, rejects otherwise. */
  request(request: string, build: (requestId: number) => MtctiOutgoing): Promise<RequestResponse> {
    const ws = this.#ws
    if (!this.link.isOpen || ws === undefined) {
      return Promise.reject(new MtctiLinkError('NOT_OPEN', `no open MTCTI-3 link for ${request}`, { request }))
    }
    // 2^31 ids cannot all be outstanding: allocate() always finds one.
    const requestId = this.#requestIds.allocate((id) => this.link.isPending(id)) ?? 0
    const frame = encodeFrame(build(requestId))
    return this.link.request(requestId, { request, detail: { requestId, request } }, this.options.requestTimeoutMs, () => ws.send(frame, { binary: true }))
  }

  /** Sends a message that has no answer (NotifyAck). Silently dropped when the link is not open. */
  send(message: MtctiOutgoing): void {
    if (this.link.isOpen) this.#ws?.send(encodeFrame(message), { binary: true })
  }

  close(): Promise<void> {
    return this.link.close('closed by the application before the link opened', () => {
      this.link.rejectAll('the link was closed')
      this.link.clearTimer('ping')
      const ws = this.#ws
      ws?.close(1000, 'gateway stopping')
      this.link.setTimer('close', CLOSE_TIMEOUT_MS, () => ws?.terminate())
    })
  }

  // --- TLS ----------------------------------------------------------------------------------------------

  #verifyPeer(socket: TLSSocket): MtctiLinkError | undefined {
    const { host, port, pinnedSha256, serverName } = this.options
    const problem = checkPeer(socket, { pin: pinnedSha256, serverName: serverName ?? host })
    if (problem === undefined) return undefined
    const { fingerprint256 } = problem
    const detail = fingerprint256 === undefined ? {} : { fingerprint256 }
    switch (problem.code) {
      case 'PIN_MISMATCH':
        return new MtctiLinkError('TLS_PIN_MISMATCH', `${host}:${port} presented certificate ${fingerprint256 ?? 'none'}, not the pinned ${pinnedSha256 ?? ''}`, detail)
      case 'UNTRUSTED':
        return new MtctiLinkError('TLS_UNTRUSTED', `the certificate of ${host}:${port} is not trusted (${problem.tlsError})`, { ...detail, tlsError: problem.tlsError })
      case 'WRONG_NAME':
        return new MtctiLinkError('TLS_UNTRUSTED', `the certificate of ${host}:${port} is not for ${serverName ?? host} (${problem.reason})`, { ...detail, tlsError: problem.tlsError })
    }
  }

  #connectError(error: Error & { code?: string }): MtctiLinkError {
    const { host, port } = this.options
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
    if (!this.link.isOpen) return
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
    this.deps.counters.inc('avaya-ipo.frames.received')
    this.#dispatch(decoded.message)
  }

  #dropped(error: MtctiDecodeError): void {
    const counter = error.code === 'PROTOBUF_DECODE'
      ? 'avaya-ipo.messages.malformed'
      : error.code === 'UNKNOWN_PAYLOAD' ? 'avaya-ipo.messages.unknown' : 'avaya-ipo.frames.malformed'
    this.deps.counters.inc(counter)
    this.deps.logger.warn(
      { code: error.code, reason: error.reason, bytes: error.bytes, prefix: error.prefix, fields: error.fields },
      'malformed MTCTI-3 frame dropped',
    )
  }

  #dispatch(message: MtctiMessage): void {
    switch (message.payload) {
      case 'response': {
        const response = message.response ?? {}
        const requestId = response.requestid ?? 0
        const pending = this.link.settle(requestId)
        if (pending === undefined) {
          this.deps.counters.inc('avaya-ipo.responses.unmatched')
          this.deps.logger.debug({ requestId, result: response.result }, 'RequestResponse without a pending request (late or duplicate)')
          return
        }
        const result = response.result ?? 0
        if (result === 0) pending.resolve(response)
        else {
          const additional = response.additional ?? ''
          const { request } = pending.info
          pending.reject(new MtctiLinkError('REQUEST_REFUSED', `${request} refused: result ${result}${additional === '' ? '' : ` (${additional})`}`, { requestId, result, additional, request }))
        }
        return
      }
      case 'notify': {
        const notify = message.notify ?? {}
        // Acknowledge first, whatever we make of it (A.3 [I]: the server may want acks; it does no harm).
        this.send({ notifyack: { subscribe_id: notify.subscribe_id ?? 0, notify_id: notify.notify_id ?? 0 } })
        this.#notifyListeners.emit(notify)
        return
      }
      case 'subscribeterminated':
        this.#terminatedListeners.emit(message.subscribeterminated ?? {})
        return
      case 'generaldata':
        this.deps.logger.debug({ responseId: message.generaldata?.responseid }, 'GeneralData ignored')
        return
      default:
        this.deps.counters.inc('avaya-ipo.messages.unexpected')
        this.deps.logger.warn({ payload: message.payload }, 'MTCTI-3 message not expected from the PBX ignored')
    }
  }

  // --- Keepalive ----------------------------------------------------------------------------------------

  #schedulePing(): void {
    this.link.setTimer('ping', this.options.pingIntervalMs, () => {
      if (!this.link.isOpen) return
      if (this.#awaitingPong) {
        this.link.terminate({ code: 'PING_TIMEOUT', reason: `no WebSocket pong within ${this.options.pingIntervalMs} ms` })
        return
      }
      this.#awaitingPong = true
      this.#ws?.ping()
      this.#schedulePing()
    })
  }

  // --- Teardown -----------------------------------------------------------------------------------------

  #onClose(code: number, reason: string): void {
    const { host, port, maxFrameBytes } = this.options
    const error = this.#lastError
    this.link.socketEnded(
      () => error === undefined ? new MtctiLinkError('CONNECT_FAILED', `${host}:${port} closed the connection during the upgrade`) : this.#connectError(error),
      () => {
        if (code === 1009 || error?.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
          this.deps.counters.inc('avaya-ipo.frames.oversized')
          return { code: 'FRAME_TOO_LARGE', reason: `the PBX sent a frame larger than maxFrameBytes (${maxFrameBytes} bytes)` }
        }
        const why = error === undefined ? `close code ${code}${reason === '' ? '' : `: ${reason}`}` : error.message
        return { code: 'SOCKET_CLOSED', reason: `the connection closed (${why})` }
      },
    )
  }

  protected release(): void {
    const ws = this.#ws
    if (ws === undefined) return
    releaseSocket(ws, ['message', 'open', 'unexpected-response'], () => {
      if (ws.readyState === WebSocket.CLOSED) return
      try {
        ws.terminate()
      } catch {
        // terminate() on a socket that never connected can throw in some ws versions; nothing to clean up then.
      }
    })
  }
}
