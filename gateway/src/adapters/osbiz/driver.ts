import { createConnection, type Socket } from 'node:net'
import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '../../core/clock.js'
import type { Counters } from '../../core/counters.js'
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
import { CstaLinkError } from './link-error.js'

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

export interface OsbizDriverDeps {
  logger: Logger
  clock: Clock
  counters: Counters
}

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

interface PendingRequest {
  request: CstaRequestKind
  expected: CstaMessage['kind']
  resolve: (message: CstaMessage) => void
  reject: (error: CstaLinkError) => void
  timer: ClockTimer
}

type DriverState = 'idle' | 'connecting' | 'open' | 'closing' | 'closed'

export class OsbizDriver {
  readonly #options: OsbizDriverOptions
  readonly #deps: OsbizDriverDeps
  #state: DriverState = 'idle'
  #socket: Socket | undefined
  #connected = false
  #socketError: NodeJS.ErrnoException | undefined
  #decoder: CstaFrameDecoder | undefined
  #session: OsbizSession | undefined
  readonly #pending = new Map<number, PendingRequest>()
  #nextInvokeId = 1
  #connectTimer: ClockTimer | undefined
  #resetTimer: ClockTimer | undefined
  #probeTimer: ClockTimer | undefined
  #closeFallbackTimer: ClockTimer | undefined
  /** Decoded frames not dispatched yet; see #drain. */
  readonly #inbox: CstaDecoded[] = []
  #drainHandle: NodeJS.Immediate | undefined
  #rejectOpen: ((error: CstaLinkError) => void) | undefined
  #closing: Promise<void> | undefined
  #resolveClosing: (() => void) | undefined
  readonly #eventListeners = new Set<(event: CstaEvent) => void>()
  readonly #closeListeners = new Set<(closed: DriverClosed) => void>()

  constructor(options: OsbizDriverOptions, deps: OsbizDriverDeps) {
    this.#options = options
    this.#deps = deps
  }

  get isOpen(): boolean {
    return this.#state === 'open'
  }

  get session(): OsbizSession | undefined {
    return this.#session
  }

  /** Events of every monitor on this association, in stream order. */
  onEvent(listener: (event: CstaEvent) => void): () => void {
    this.#eventListeners.add(listener)
    return () => this.#eventListeners.delete(listener)
  }

  /** Fires once when an open session is lost (not after close()). */
  onClose(listener: (closed: DriverClosed) => void): () => void {
    this.#closeListeners.add(listener)
    return () => this.#closeListeners.delete(listener)
  }

  /** Connects and starts the application session. Rejects with CstaLinkError; a driver opens at most once. */
  open(): Promise<OsbizSession> {
    if (this.#state !== 'idle') return Promise.reject(new CstaLinkError('NOT_OPEN', 'a driver opens only once'))
    this.#state = 'connecting'
    const { host, port, requestTimeoutMs } = this.#options
    return new Promise<OsbizSession>((resolve, reject) => {
      this.#rejectOpen = reject
      this.#decoder = this.#options.codec.createDecoder()
      const socket = createConnection({ host, port })
      this.#socket = socket
      socket.setNoDelay(true)
      this.#connectTimer = this.#deps.clock.setTimeout(() => {
        this.#failOpen(new CstaLinkError('CONNECT_TIMEOUT', `no TCP connection to ${host}:${port} within ${requestTimeoutMs} ms`))
      }, requestTimeoutMs)
      socket.once('connect', () => {
        this.#connected = true
        this.#deps.clock.clearTimeout(this.#connectTimer)
        socket.setKeepAlive(true, TCP_KEEPALIVE_MS)
        this.#startSession().then(resolve, (error: unknown) => this.#failOpen(asLinkError(error)))
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
    if (this.#state !== 'open') {
      return Promise.reject(new CstaLinkError('NOT_OPEN', `no open CSTA session for ${message.kind}`, { request: message.kind }))
    }
    return this.#send(message, this.#options.requestTimeoutMs)
  }

  /** Ends the session politely (StopApplicationSession, best effort) and closes the socket. Idempotent. */
  close(): Promise<void> {
    switch (this.#state) {
      case 'idle':
        this.#state = 'closed'
        return Promise.resolve()
      case 'connecting':
        this.#failOpen(new CstaLinkError('LINK_CLOSED', 'closed by the application before the session started'))
        return Promise.resolve()
      case 'closed':
        return Promise.resolve()
      case 'closing':
        return this.#closing ?? Promise.resolve()
      case 'open':
        break
    }
    this.#state = 'closing'
    this.#clearSessionTimers()
    this.#closing = new Promise<void>((resolve) => {
      this.#resolveClosing = resolve
    })
    const session = this.#session
    const stop = session === undefined
      ? Promise.resolve()
      : this.#send({ kind: 'StopApplicationSession', sessionId: session.sessionId, reason: 'normal' }, STOP_TIMEOUT_MS).then(
        () => undefined,
        (error: unknown) => this.#deps.logger.debug({ err: asLinkError(error).message }, 'StopApplicationSession not confirmed'),
      )
    void stop.then(() => {
      const socket = this.#socket
      if (socket === undefined || socket.destroyed) {
        this.#finishClosing()
        return
      }
      socket.end()
      this.#closeFallbackTimer = this.#deps.clock.setTimeout(() => socket.destroy(), STOP_TIMEOUT_MS)
    })
    return this.#closing
  }

  // --- Session --------------------------------------------------------------------------------------------

  async #startSession(): Promise<OsbizSession> {
    const { applicationId, username, password, sessionDurationS } = this.#options
    let response: CstaResponseMap['StartApplicationSession']
    try {
      response = await this.#send({
        kind: 'StartApplicationSession',
        applicationId,
        ...(username === undefined ? {} : { username }),
        ...(password === undefined ? {} : { password }),
        requestedSessionDurationS: sessionDurationS,
      }, this.#options.requestTimeoutMs)
    } catch (error) {
      const linkError = asLinkError(error)
      if (linkError.code === 'REQUEST_TIMEOUT') {
        throw new CstaLinkError('SESSION_TIMEOUT', `no answer to StartApplicationSession within ${this.#options.requestTimeoutMs} ms`)
      }
      if (linkError.code === 'CSTA_ERROR') {
        throw new CstaLinkError('SESSION_REJECTED', `session rejected: ${linkError.detail.value ?? 'no reason given'}`, linkError.detail)
      }
      throw linkError
    }
    if (this.#state !== 'connecting') throw new CstaLinkError('LINK_CLOSED', 'closed while the session started')
    const session: OsbizSession = {
      sessionId: response.sessionId,
      sessionDurationS: response.actualSessionDurationS ?? sessionDurationS,
      ...(response.protocolVersion === undefined ? {} : { protocolVersion: response.protocolVersion }),
    }
    this.#session = session
    this.#state = 'open'
    this.#rejectOpen = undefined
    this.#scheduleSessionReset()
    this.#scheduleProbe()
    this.#deps.logger.info({ sessionId: session.sessionId, sessionDurationS: session.sessionDurationS }, 'CSTA session started')
    return session
  }

  #scheduleSessionReset(): void {
    const session = this.#session
    if (session === undefined) return
    // A third of the duration leaves two more tries before the switch would drop us.
    const delayMs = Math.max(100, (session.sessionDurationS * 1000) / 3)
    this.#resetTimer = this.#deps.clock.setTimeout(() => void this.#resetSession(), delayMs)
  }

  async #resetSession(): Promise<void> {
    const session = this.#session
    if (this.#state !== 'open' || session === undefined) return
    try {
      const response = await this.#send(
        { kind: 'ResetApplicationSessionTimer', sessionId: session.sessionId, requestedSessionDurationS: this.#options.sessionDurationS },
        this.#options.requestTimeoutMs,
      )
      if (response.actualSessionDurationS !== undefined && response.actualSessionDurationS > 0) {
        session.sessionDurationS = response.actualSessionDurationS
      }
      if (this.#state === 'open') this.#scheduleSessionReset()
    } catch (error) {
      if (this.#state === 'open') {
        this.#terminate({ code: 'SESSION_RESET_FAILED', reason: `the PBX did not renew the CSTA session (${asLinkError(error).message})` })
      }
    }
  }

  #scheduleProbe(): void {
    this.#probeTimer = this.#deps.clock.setTimeout(() => void this.#probe(), this.#options.probeIntervalMs)
  }

  async #probe(): Promise<void> {
    if (this.#state !== 'open') return
    try {
      const response = await this.#send({ kind: 'RequestSystemStatus' }, this.#options.requestTimeoutMs)
      if (response.systemStatus !== 'normal') {
        this.#deps.logger.warn({ systemStatus: response.systemStatus }, 'PBX reports a system status other than normal')
      }
    } catch (error) {
      const linkError = asLinkError(error)
      // A CSTA error is still an answer: the link is alive.
      if (linkError.code === 'REQUEST_TIMEOUT' && this.#state === 'open') {
        this.#terminate({ code: 'PROBE_TIMEOUT', reason: `the PBX did not answer RequestSystemStatus within ${this.#options.requestTimeoutMs} ms` })
        return
      }
    }
    if (this.#state === 'open') this.#scheduleProbe()
  }

  // --- Requests -------------------------------------------------------------------------------------------

  #send<M extends CstaRequest>(message: M, timeoutMs: number): Promise<CstaResponseMap[M['kind']]> {
    const socket = this.#socket
    if (socket === undefined || socket.destroyed) {
      return Promise.reject(new CstaLinkError('NOT_OPEN', `socket closed, cannot send ${message.kind}`, { request: message.kind }))
    }
    const invokeId = this.#allocateInvokeId()
    if (invokeId === undefined) {
      return Promise.reject(new CstaLinkError('TOO_MANY_REQUESTS', `${MAX_CLIENT_INVOKE_ID} requests outstanding`, { request: message.kind }))
    }
    let frame: Buffer
    try {
      frame = this.#options.codec.encode(invokeId, message)
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      return Promise.reject(new CstaLinkError('ENCODE_FAILED', `cannot encode ${message.kind}: ${reason}`, { request: message.kind }))
    }
    const kind: CstaRequestKind = message.kind
    return new Promise<CstaResponseMap[M['kind']]>((resolve, reject) => {
      const timer = this.#deps.clock.setTimeout(() => {
        if (this.#pending.get(invokeId)?.timer !== timer) return
        this.#pending.delete(invokeId)
        this.#deps.counters.inc('osbiz.requests.timeout')
        reject(new CstaLinkError('REQUEST_TIMEOUT', `no answer to ${kind} within ${timeoutMs} ms`, { invokeId, request: kind }))
      }, timeoutMs)
      this.#pending.set(invokeId, {
        request: kind,
        expected: RESPONSE_KIND[kind],
        // The kind was checked against `expected` before resolve is called.
        resolve: (response) => resolve(response as CstaResponseMap[M['kind']]),
        reject,
        timer,
      })
      socket.write(frame)
    })
  }

  #allocateInvokeId(): number | undefined {
    for (let tries = 0; tries < MAX_CLIENT_INVOKE_ID; tries++) {
      const id = this.#nextInvokeId
      this.#nextInvokeId = id >= MAX_CLIENT_INVOKE_ID ? 1 : id + 1
      if (!this.#pending.has(id)) return id
    }
    return undefined
  }

  #settle(invokeId: number, settle: (pending: PendingRequest) => void): boolean {
    const pending = this.#pending.get(invokeId)
    if (pending === undefined) return false
    this.#pending.delete(invokeId)
    this.#deps.clock.clearTimeout(pending.timer)
    settle(pending)
    return true
  }

  // --- Receiving ------------------------------------------------------------------------------------------

  #onData(chunk: Buffer): void {
    const decoder = this.#decoder
    if (decoder === undefined || this.#state === 'closed') return
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
    while (this.#state !== 'closed') {
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
    this.#deps.counters.inc('osbiz.frames.received')
    if (message.kind === 'Unknown') {
      this.#deps.counters.inc('osbiz.messages.unknown')
      this.#deps.logger.warn({ element: message.element, invokeId }, 'unknown CSTA message ignored')
      return this.#settle(invokeId, (pending) => pending.reject(
        new CstaLinkError('UNEXPECTED_RESPONSE', `${pending.request} was answered with unknown ${message.element}`, { invokeId, request: pending.request }),
      ))
    }
    if (message.kind === 'SystemStatus') {
      this.#answerSystemStatus(invokeId, message.systemStatus)
      return false
    }
    if (isEvent(message)) {
      if (this.#state === 'open') this.#emitEvent(message)
      return false
    }
    if (isResponse(message)) {
      const settled = this.#settle(invokeId, (pending) => {
        if (isNegativeResponse(message)) {
          const detail = message.kind === 'CSTAErrorCode'
            ? { category: message.category, value: message.value }
            : { category: 'session', value: message.errorCode }
          pending.reject(new CstaLinkError('CSTA_ERROR', `${pending.request} failed: ${detail.category}/${detail.value}`, { ...detail, invokeId, request: pending.request }))
        } else if (message.kind === pending.expected) {
          pending.resolve(message)
        } else {
          pending.reject(new CstaLinkError('UNEXPECTED_RESPONSE', `${pending.request} was answered with ${message.kind}`, { invokeId, request: pending.request }))
        }
      })
      if (!settled) {
        this.#deps.counters.inc('osbiz.responses.unmatched')
        this.#deps.logger.debug({ kind: message.kind, invokeId }, 'CSTA response without a pending request (late or duplicate)')
      }
      return settled
    }
    this.#deps.counters.inc('osbiz.messages.unexpected')
    this.#deps.logger.warn({ kind: message.kind, invokeId }, 'CSTA request from the PBX not supported, ignored')
    return false
  }

  #onDecodeError(error: CstaDecodeError): boolean {
    this.#deps.counters.inc(error.code.startsWith('FRAME_') ? 'osbiz.frames.malformed' : 'osbiz.messages.malformed')
    this.#deps.logger.warn(
      { code: error.code, reason: error.reason, invokeId: error.invokeId, element: error.element, bytes: error.bytes, inSync: error.inSync },
      'malformed CSTA frame dropped',
    )
    if (!error.inSync) {
      this.#terminate({ code: 'OUT_OF_SYNC', reason: `CSTA stream out of sync (${error.code}: ${error.reason})` })
      return false
    }
    // A broken answer to one of our requests fails that request now rather than at its timeout.
    return error.invokeId !== undefined && this.#settle(error.invokeId, (pending) => pending.reject(
      new CstaLinkError('MALFORMED_RESPONSE', `${pending.request} was answered with a malformed message (${error.code})`, { invokeId: error.invokeId, request: pending.request }),
    ))
  }

  #answerSystemStatus(invokeId: number, systemStatus: string): void {
    if (systemStatus !== 'normal') this.#deps.logger.warn({ systemStatus }, 'PBX reports a system status other than normal')
    const socket = this.#socket
    if (socket === undefined || socket.destroyed) return
    try {
      socket.write(this.#options.codec.encode(invokeId, { kind: 'SystemStatusResponse' }))
    } catch (error) {
      this.#deps.logger.warn({ err: error instanceof Error ? error.message : String(error), invokeId }, 'cannot answer SystemStatus')
    }
  }

  #emitEvent(event: CstaEvent): void {
    for (const listener of this.#eventListeners) {
      try {
        listener(event)
      } catch (error) {
        this.#deps.logger.error({ err: error, kind: event.kind }, 'CSTA event listener threw')
      }
    }
  }

  // --- Teardown -------------------------------------------------------------------------------------------

  #onSocketClose(): void {
    const errno = this.#socketError?.code
    switch (this.#state) {
      case 'connecting': {
        const { host, port } = this.#options
        if (this.#connected) {
          this.#failOpen(new CstaLinkError('CLOSED_BEFORE_SESSION', `${host}:${port} closed the connection before the session started`, errnoDetail(errno)))
        } else if (errno === 'ECONNREFUSED') {
          this.#failOpen(new CstaLinkError('CONNECT_REFUSED', `connection refused by ${host}:${port}`, { errno }))
        } else {
          this.#failOpen(new CstaLinkError('CONNECT_FAILED', `cannot connect to ${host}:${port} (${errno ?? 'closed'})`, errnoDetail(errno)))
        }
        return
      }
      case 'open':
        this.#terminate(errno === undefined
          ? { code: 'SOCKET_CLOSED', reason: 'the PBX closed the connection' }
          : { code: 'SOCKET_ERROR', reason: `connection lost (${errno})` })
        return
      case 'closing':
        this.#finishClosing()
        return
      case 'idle':
      case 'closed':
        return
    }
  }

  #failOpen(error: CstaLinkError): void {
    if (this.#state !== 'connecting') return
    this.#state = 'closed'
    this.#teardown()
    const reject = this.#rejectOpen
    this.#rejectOpen = undefined
    reject?.(error)
  }

  /** The open session was lost: tear down and tell the listeners once. */
  #terminate(closed: DriverClosed): void {
    if (this.#state !== 'open') return
    this.#state = 'closed'
    this.#teardown()
    this.#deps.logger.warn({ code: closed.code, reason: closed.reason }, 'CSTA link lost')
    for (const listener of this.#closeListeners) {
      try {
        listener(closed)
      } catch (error) {
        this.#deps.logger.error({ err: error }, 'CSTA close listener threw')
      }
    }
    this.#closeListeners.clear()
    this.#eventListeners.clear()
  }

  #finishClosing(): void {
    if (this.#state !== 'closing') return
    this.#state = 'closed'
    this.#teardown()
    this.#closeListeners.clear()
    this.#eventListeners.clear()
    this.#resolveClosing?.()
    this.#resolveClosing = undefined
  }

  #clearSessionTimers(): void {
    this.#deps.clock.clearTimeout(this.#resetTimer)
    this.#deps.clock.clearTimeout(this.#probeTimer)
    this.#resetTimer = undefined
    this.#probeTimer = undefined
  }

  #teardown(): void {
    this.#clearSessionTimers()
    this.#deps.clock.clearTimeout(this.#connectTimer)
    this.#deps.clock.clearTimeout(this.#closeFallbackTimer)
    if (this.#drainHandle !== undefined) clearImmediate(this.#drainHandle)
    this.#drainHandle = undefined
    this.#inbox.length = 0
    for (const [invokeId, pending] of this.#pending) {
      this.#deps.clock.clearTimeout(pending.timer)
      pending.reject(new CstaLinkError('LINK_CLOSED', `the CSTA link closed before ${pending.request} was answered`, { invokeId, request: pending.request }))
    }
    this.#pending.clear()
    const socket = this.#socket
    if (socket !== undefined) {
      socket.removeAllListeners('data')
      socket.removeAllListeners('connect')
      // Keep a no-op error listener: a late socket error must never become an uncaught exception.
      socket.removeAllListeners('error')
      socket.on('error', () => undefined)
      socket.destroy()
    }
  }
}

function errnoDetail(errno: string | undefined): { errno?: string } {
  return errno === undefined ? {} : { errno }
}

function asLinkError(error: unknown): CstaLinkError {
  if (error instanceof CstaLinkError) return error
  return new CstaLinkError('LINK_CLOSED', error instanceof Error ? error.message : String(error))
}
