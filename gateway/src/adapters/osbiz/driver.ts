import { createConnection, type Socket } from 'node:net'
import { LinkDriver, releaseSocket, RequestIds, type DriverDeps, type PendingRequest } from '../kit/link-session.js'
import type { CstaDecodeError, CstaDecoded, CstaFrameDecoder, CstaWireCodec } from './csta/codec.js'
import {
  isEvent,
  isNegativeResponse,
  isResponse,
  RESPONSE_KIND,
  type CstaEvent,
  type CstaMessage,
  type CstaRequest,
  type CstaRequestKind,
  type CstaResponseMap,
} from './csta/model.js'
import { CstaLinkError, type CstaLinkErrorDetail } from './link-error.js'

/**
 * One CSTA association over TCP: connect, ECMA-354 session, keepalive, request/response correlation by
 * invokeID, and events out. No business logic, and one instance per connection: after the link ends, make a
 * new driver (monitorCrossRefIDs die with the association anyway).
 */

export interface OsbizDriverOptions {
  host: string
  port: number
  codec: CstaWireCodec
  applicationId: string
  username?: string
  password?: string
  /** Requested session duration; the switch's actualSessionDuration wins. */
  sessionDurationS: number
  requestTimeoutMs: number
  /** Interval of the RequestSystemStatus liveness probe. */
  probeIntervalMs: number
}

export type OsbizDriverDeps = DriverDeps

export interface OsbizSession {
  sessionId: string
  sessionDurationS: number
  protocolVersion?: string
}

export type DriverCloseCode = 'SOCKET_CLOSED' | 'SOCKET_ERROR' | 'PROBE_TIMEOUT' | 'SESSION_RESET_FAILED' | 'OUT_OF_SYNC'

/** Why an open session ended without close() being called. */
export interface DriverClosed {
  code: DriverCloseCode
  reason: string
}

/** Client invoke ids 1..8999; the XML framing reserves 9999 for events and switches use 9000+ for their own. */
const MAX_CLIENT_INVOKE_ID = 8999
/** A StopApplicationSession must not hold up shutdown. */
const STOP_TIMEOUT_MS = 1000
const TCP_KEEPALIVE_MS = 15000

interface OsbizSessionTypes {
  key: number
  answer: CstaMessage
  error: CstaLinkError
  detail: CstaLinkErrorDetail
  closed: DriverClosed
  request: RequestInfo
}

type Pending = PendingRequest<OsbizSessionTypes>

interface RequestInfo {
  request: CstaRequestKind
  expected: CstaMessage['kind']
  detail: CstaLinkErrorDetail
}

export class OsbizDriver extends LinkDriver<OsbizSessionTypes, OsbizDriverOptions> {
  readonly #invokeIds = new RequestIds(MAX_CLIENT_INVOKE_ID)
  #socket: Socket | undefined
  #connected = false
  #socketError: NodeJS.ErrnoException | undefined
  #decoder: CstaFrameDecoder | undefined
  #session: OsbizSession | undefined
  /** Decoded frames not dispatched yet; see #drain. */
  readonly #inbox: CstaDecoded[] = []
  #drainHandle: NodeJS.Immediate | undefined
  readonly #eventListeners = this.link.listeners<CstaEvent>('CSTA event listener threw', (event) => ({ kind: event.kind }))

  constructor(options: OsbizDriverOptions, deps: DriverDeps) {
    super(options, deps, { counterPrefix: 'osbiz', label: 'CSTA', error: CstaLinkError })
  }

  get session(): OsbizSession | undefined {
    return this.#session
  }

  /** Events of every monitor on this association, in stream order. */
  onEvent(listener: (event: CstaEvent) => void): () => void {
    return this.#eventListeners.add(listener)
  }

  /** Connects and starts the application session. Rejects with CstaLinkError; a driver opens at most once. */
  open(): Promise<OsbizSession> {
    const { host, port, requestTimeoutMs } = this.options
    const timeout = (): CstaLinkError => new CstaLinkError('CONNECT_TIMEOUT', `no TCP connection to ${host}:${port} within ${requestTimeoutMs} ms`)
    return this.link.open<OsbizSession>(requestTimeoutMs, timeout, (opened) => {
      this.#decoder = this.options.codec.createDecoder()
      const socket = createConnection({ host, port })
      this.#socket = socket
      socket.setNoDelay(true)
      socket.once('connect', () => {
        this.#connected = true
        // StartApplicationSession has its own timeout from here.
        this.link.clearTimer('open')
        socket.setKeepAlive(true, TCP_KEEPALIVE_MS)
        this.#startSession().then((session) => {
          if (!opened(session)) return
          this.#scheduleSessionReset()
          this.#scheduleProbe()
          this.deps.logger.info({ sessionId: session.sessionId, sessionDurationS: session.sessionDurationS }, 'CSTA session started')
        }, (error: unknown) => this.link.failOpen(asLinkError(error)))
      })
      socket.on('data', (chunk: Buffer) => this.#onData(chunk))
      socket.on('error', (error: NodeJS.ErrnoException) => {
        this.#socketError = error
      })
      socket.on('close', () => this.#onSocketClose())
    })
  }

  /** Sends a request and resolves with its positive response. Rejects with CstaLinkError. */
  request<M extends CstaRequest>(message: M): Promise<CstaResponseMap[M['kind']]> {
    if (!this.link.isOpen) {
      return Promise.reject(new CstaLinkError('NOT_OPEN', `no open CSTA session for ${message.kind}`, { request: message.kind }))
    }
    return this.#send(message, this.options.requestTimeoutMs)
  }

  /** Ends the session politely (StopApplicationSession, best effort) and closes the socket. Idempotent. */
  close(): Promise<void> {
    return this.link.close('closed by the application before the session started', () => {
      this.link.clearTimer('reset')
      this.link.clearTimer('probe')
      const session = this.#session
      const stop = session === undefined
        ? Promise.resolve()
        : this.#send({ kind: 'StopApplicationSession', sessionId: session.sessionId, reason: 'normal' }, STOP_TIMEOUT_MS).then(
          () => undefined,
          (error: unknown) => this.deps.logger.debug({ err: asLinkError(error).message }, 'StopApplicationSession not confirmed'),
        )
      void stop.then(() => {
        const socket = this.#socket
        if (socket === undefined || socket.destroyed) {
          this.link.finishClosing()
          return
        }
        socket.end()
        this.link.setTimer('close', STOP_TIMEOUT_MS, () => socket.destroy())
      })
    })
  }

  // --- Session --------------------------------------------------------------------------------------------

  async #startSession(): Promise<OsbizSession> {
    const { applicationId, username, password, sessionDurationS } = this.options
    let response: CstaResponseMap['StartApplicationSession']
    try {
      response = await this.#send({
        kind: 'StartApplicationSession',
        applicationId,
        ...(username === undefined ? {} : { username }),
        ...(password === undefined ? {} : { password }),
        requestedSessionDurationS: sessionDurationS,
      }, this.options.requestTimeoutMs)
    } catch (error) {
      const linkError = asLinkError(error)
      if (linkError.code === 'REQUEST_TIMEOUT') {
        throw new CstaLinkError('SESSION_TIMEOUT', `no answer to StartApplicationSession within ${this.options.requestTimeoutMs} ms`)
      }
      if (linkError.code === 'CSTA_ERROR') {
        throw new CstaLinkError('SESSION_REJECTED', `session rejected: ${linkError.detail.value ?? 'no reason given'}`, linkError.detail)
      }
      throw linkError
    }
    const session: OsbizSession = {
      sessionId: response.sessionId,
      sessionDurationS: response.actualSessionDurationS ?? sessionDurationS,
      ...(response.protocolVersion === undefined ? {} : { protocolVersion: response.protocolVersion }),
    }
    this.#session = session
    return session
  }

  #scheduleSessionReset(): void {
    const session = this.#session
    if (session === undefined) return
    // A third of the duration leaves two more tries before the switch would drop us.
    const delayMs = Math.max(100, (session.sessionDurationS * 1000) / 3)
    this.link.setTimer('reset', delayMs, () => void this.#resetSession())
  }

  async #resetSession(): Promise<void> {
    const session = this.#session
    if (!this.link.isOpen || session === undefined) return
    try {
      const response = await this.#send(
        { kind: 'ResetApplicationSessionTimer', sessionId: session.sessionId, requestedSessionDurationS: this.options.sessionDurationS },
        this.options.requestTimeoutMs,
      )
      if (response.actualSessionDurationS !== undefined && response.actualSessionDurationS > 0) {
        session.sessionDurationS = response.actualSessionDurationS
      }
      if (this.link.isOpen) this.#scheduleSessionReset()
    } catch (error) {
      if (this.link.isOpen) {
        this.link.terminate({ code: 'SESSION_RESET_FAILED', reason: `the PBX did not renew the CSTA session (${asLinkError(error).message})` })
      }
    }
  }

  #scheduleProbe(): void {
    this.link.setTimer('probe', this.options.probeIntervalMs, () => void this.#probe())
  }

  async #probe(): Promise<void> {
    if (!this.link.isOpen) return
    try {
      const response = await this.#send({ kind: 'RequestSystemStatus' }, this.options.requestTimeoutMs)
      if (response.systemStatus !== 'normal') {
        this.deps.logger.warn({ systemStatus: response.systemStatus }, 'PBX reports a system status other than normal')
      }
    } catch (error) {
      const linkError = asLinkError(error)
      // A CSTA error is still an answer: the link is alive.
      if (linkError.code === 'REQUEST_TIMEOUT' && this.link.isOpen) {
        this.link.terminate({ code: 'PROBE_TIMEOUT', reason: `the PBX did not answer RequestSystemStatus within ${this.options.requestTimeoutMs} ms` })
        return
      }
    }
    if (this.link.isOpen) this.#scheduleProbe()
  }

  // --- Requests -------------------------------------------------------------------------------------------

  #send<M extends CstaRequest>(message: M, timeoutMs: number): Promise<CstaResponseMap[M['kind']]> {
    const socket = this.#socket
    if (socket === undefined || socket.destroyed) {
      return Promise.reject(new CstaLinkError('NOT_OPEN', `socket closed, cannot send ${message.kind}`, { request: message.kind }))
    }
    const invokeId = this.#invokeIds.allocate((id) => this.link.isPending(id))
    if (invokeId === undefined) {
      return Promise.reject(new CstaLinkError('TOO_MANY_REQUESTS', `${MAX_CLIENT_INVOKE_ID} requests outstanding`, { request: message.kind }))
    }
    let frame: Buffer
    try {
      frame = this.options.codec.encode(invokeId, message)
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      return Promise.reject(new CstaLinkError('ENCODE_FAILED', `cannot encode ${message.kind}: ${reason}`, { request: message.kind }))
    }
    const kind: CstaRequestKind = message.kind
    const info = { request: kind, expected: RESPONSE_KIND[kind], detail: { invokeId, request: kind } }
    // The answer's kind is checked against `expected` before the request is resolved.
    return this.link.request(invokeId, info, timeoutMs, () => socket.write(frame)) as Promise<CstaResponseMap[M['kind']]>
  }

  #settle(invokeId: number, settle: (pending: Pending) => void): boolean {
    const pending = this.link.settle(invokeId)
    if (pending === undefined) return false
    settle(pending)
    return true
  }

  // --- Receiving ------------------------------------------------------------------------------------------

  #onData(chunk: Buffer): void {
    const decoder = this.#decoder
    if (decoder === undefined || this.link.state === 'closed') return
    this.#inbox.push(...decoder.push(chunk))
    if (this.#drainHandle === undefined) this.#drain()
  }

  /**
   * Dispatches frames in stream order. After a frame settles a request, the rest waits for the next macrotask
   * so the requester's continuation (e.g. registering a monitorCrossRefID) runs before later frames, such as
   * the first event of that new monitor, arrive in the same chunk.
   */
  #drain(): void {
    this.#drainHandle = undefined
    while (this.link.state !== 'closed') {
      const item = this.#inbox.shift()
      if (item === undefined) return
      const settled = this.#dispatch(item)
      if (settled && this.#inbox.length > 0) {
        this.#drainHandle = setImmediate(() => this.#drain())
        return
      }
    }
  }

  /** Returns true when the frame settled a pending request. */
  #dispatch(item: CstaDecoded): boolean {
    if (!item.ok) return this.#onDecodeError(item.error)
    const { invokeId, message } = item
    this.deps.counters.inc('osbiz.frames.received')
    if (message.kind === 'Unknown') {
      this.deps.counters.inc('osbiz.messages.unknown')
      this.deps.logger.warn({ element: message.element, invokeId }, 'unknown CSTA message ignored')
      return this.#settle(invokeId, (pending) => pending.reject(
        new CstaLinkError('UNEXPECTED_RESPONSE', `${pending.info.request} was answered with unknown ${message.element}`, { invokeId, request: pending.info.request }),
      ))
    }
    if (message.kind === 'SystemStatus') {
      this.#answerSystemStatus(invokeId, message.systemStatus)
      return false
    }
    if (isEvent(message)) {
      if (this.link.isOpen) this.#eventListeners.emit(message)
      return false
    }
    if (isResponse(message)) {
      const settled = this.#settle(invokeId, (pending) => {
        if (isNegativeResponse(message)) {
          const detail = message.kind === 'CSTAErrorCode'
            ? { category: message.category, value: message.value }
            : { category: 'session', value: message.errorCode }
          pending.reject(new CstaLinkError('CSTA_ERROR', `${pending.info.request} failed: ${detail.category}/${detail.value}`, { ...detail, invokeId, request: pending.info.request }))
        } else if (message.kind === pending.info.expected) {
          pending.resolve(message)
        } else {
          pending.reject(new CstaLinkError('UNEXPECTED_RESPONSE', `${pending.info.request} was answered with ${message.kind}`, { invokeId, request: pending.info.request }))
        }
      })
      if (!settled) {
        this.deps.counters.inc('osbiz.responses.unmatched')
        this.deps.logger.debug({ kind: message.kind, invokeId }, 'CSTA response without a pending request (late or duplicate)')
      }
      return settled
    }
    this.deps.counters.inc('osbiz.messages.unexpected')
    this.deps.logger.warn({ kind: message.kind, invokeId }, 'CSTA request from the PBX not supported, ignored')
    return false
  }

  #onDecodeError(error: CstaDecodeError): boolean {
    this.deps.counters.inc(error.code.startsWith('FRAME_') ? 'osbiz.frames.malformed' : 'osbiz.messages.malformed')
    this.deps.logger.warn(
      { code: error.code, reason: error.reason, invokeId: error.invokeId, element: error.element, bytes: error.bytes, inSync: error.inSync },
      'malformed CSTA frame dropped',
    )
    if (!error.inSync) {
      this.link.terminate({ code: 'OUT_OF_SYNC', reason: `CSTA stream out of sync (${error.code}: ${error.reason})` })
      return false
    }
    // A broken answer to one of our requests fails that request now rather than at its timeout.
    return error.invokeId !== undefined && this.#settle(error.invokeId, (pending) => pending.reject(
      new CstaLinkError('MALFORMED_RESPONSE', `${pending.info.request} was answered with a malformed message (${error.code})`, { invokeId: error.invokeId, request: pending.info.request }),
    ))
  }

  #answerSystemStatus(invokeId: number, systemStatus: string): void {
    if (systemStatus !== 'normal') this.deps.logger.warn({ systemStatus }, 'PBX reports a system status other than normal')
    const socket = this.#socket
    if (socket === undefined || socket.destroyed) return
    try {
      socket.write(this.options.codec.encode(invokeId, { kind: 'SystemStatusResponse' }))
    } catch (error) {
      this.deps.logger.warn({ err: error instanceof Error ? error.message : String(error), invokeId }, 'cannot answer SystemStatus')
    }
  }

  // --- Teardown -------------------------------------------------------------------------------------------

  #onSocketClose(): void {
    const errno = this.#socketError?.code
    const { host, port } = this.options
    this.link.socketEnded(
      () => this.#connected
        ? new CstaLinkError('CLOSED_BEFORE_SESSION', `${host}:${port} closed the connection before the session started`, errnoDetail(errno))
        : errno === 'ECONNREFUSED'
          ? new CstaLinkError('CONNECT_REFUSED', `connection refused by ${host}:${port}`, { errno })
          : new CstaLinkError('CONNECT_FAILED', `cannot connect to ${host}:${port} (${errno ?? 'closed'})`, errnoDetail(errno)),
      () => errno === undefined
        ? { code: 'SOCKET_CLOSED', reason: 'the PBX closed the connection' }
        : { code: 'SOCKET_ERROR', reason: `connection lost (${errno})` },
    )
  }

  protected release(): void {
    if (this.#drainHandle !== undefined) clearImmediate(this.#drainHandle)
    this.#drainHandle = undefined
    this.#inbox.length = 0
    const socket = this.#socket
    if (socket === undefined) return
    releaseSocket(socket, ['data', 'connect'], () => socket.destroy())
  }
}

function errnoDetail(errno: string | undefined): { errno?: string } {
  return errno === undefined ? {} : { errno }
}

function asLinkError(error: unknown): CstaLinkError {
  if (error instanceof CstaLinkError) return error
  return new CstaLinkError('LINK_CLOSED', error instanceof Error ? error.message : String(error))
}
