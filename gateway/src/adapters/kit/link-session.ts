import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import type { AdapterDeps } from '../types.js'
import type { SessionErrorCode } from './link-error.js'
import { Listeners } from './listeners.js'

/**
 * The life of one PBX connection inside a driver, the same for every wire protocol: opened at most once,
 * open, closing on request, closed. It owns what has to be undone when the connection ends, whichever way it
 * ends: the pending requests (each with its timeout), the driver's timers and listener sets. The driver keeps
 * the wire: how to connect, frame, correlate and keep the link alive.
 */

export type SessionState = 'idle' | 'connecting' | 'open' | 'closing' | 'closed'

/** Why an open link ended without close() being called. */
export interface LinkClosed {
  code: string
  reason: string
}

/** What one outstanding request is, for its error messages (`request`) and error details. */
export interface RequestInfo<Detail> {
  request: string
  detail: Detail
}

/** The types one driver plugs in. */
export interface SessionTypes {
  /** How answers find their request: an invoke id, a request id, a src. */
  key: unknown
  answer: unknown
  error: Error
  /** The driver's error details (all fields optional). */
  detail: object
  closed: LinkClosed
  /** Per-request facts beyond name and detail (e.g. the response kind expected). */
  request: RequestInfo<SessionTypes['detail']>
}

export interface PendingRequest<T extends SessionTypes> {
  info: T['request']
  resolve: (answer: T['answer']) => void
  reject: (error: T['error']) => void
  timer: ClockTimer
}

export interface LinkSessionOptions<T extends SessionTypes> {
  clock: Clock
  logger: Logger
  counters: Counters
  /** Counter names start with it, e.g. 'osbiz' → osbiz.requests.timeout. */
  counterPrefix: string
  /** Names the link in log lines: 'CSTA' → "CSTA link lost", "CSTA close listener threw". */
  label: string
  /** The driver's error for the codes the session raises itself. */
  error: (code: SessionErrorCode, message: string, detail?: T['detail']) => T['error']
  /** Lets go of the wire: removes the socket's listeners (keeping a no-op error listener) and destroys it. */
  release: () => void
}

export class LinkSession<T extends SessionTypes> {
  /** Fires once when an open link is lost (not after close()). */
  readonly closeListeners: Listeners<T['closed']>
  readonly #options: LinkSessionOptions<T>
  #state: SessionState = 'idle'
  readonly #pending = new Map<T['key'], PendingRequest<T>>()
  readonly #timers = new Map<string, ClockTimer>()
  readonly #listenerSets: Array<{ clear(): void }> = []
  #rejectOpen: ((error: T['error']) => void) | undefined
  #closing: Promise<void> | undefined
  #resolveClosing: (() => void) | undefined

  constructor(options: LinkSessionOptions<T>) {
    this.#options = options
    this.closeListeners = new Listeners(options.logger, `${options.label} close listener threw`)
  }

  get state(): SessionState {
    return this.#state
  }

  get isOpen(): boolean {
    return this.#state === 'open'
  }

  /** A listener set that is emptied when the link ends; `threw` is the log message for a listener that throws. */
  listeners<V>(threw: string, fields?: (value: V) => Record<string, unknown>): Listeners<V> {
    const listeners = new Listeners<V>(this.#options.logger, threw, fields)
    this.#listenerSets.push(listeners)
    return listeners
  }

  // --- Opening ------------------------------------------------------------------------------------------

  /**
   * Starts opening: `connect` begins the wire work and calls `opened` once the link is usable. Fails with
   * `timeout()` when that takes longer than `timeoutMs` (the 'open' timer; clear it earlier with
   * clearTimer('open') when a later step has its own timeout). Rejects at once when called twice.
   */
  open<V>(timeoutMs: number, timeout: () => T['error'], connect: (opened: (value: V) => boolean) => void): Promise<V> {
    if (this.#state !== 'idle') return Promise.reject(this.#options.error('NOT_OPEN', 'a driver opens only once'))
    this.#state = 'connecting'
    return new Promise<V>((resolve, reject) => {
      this.#rejectOpen = reject
      this.setTimer('open', timeoutMs, () => this.failOpen(timeout()))
      connect((value) => {
        if (this.#state !== 'connecting') return false
        this.clearTimer('open')
        this.#state = 'open'
        this.#rejectOpen = undefined
        resolve(value)
        return true
      })
    })
  }

  /** Opening failed: everything is released and open() rejects with `error`. No-op unless connecting. */
  failOpen(error: T['error']): void {
    if (this.#state !== 'connecting') return
    this.#state = 'closed'
    this.#teardown('the connection failed')
    const reject = this.#rejectOpen
    this.#rejectOpen = undefined
    reject?.(error)
  }

  // --- Ending -------------------------------------------------------------------------------------------

  /** The open link was lost: release everything, log, and tell the close listeners once. No-op unless open. */
  terminate(closed: T['closed']): void {
    if (this.#state !== 'open') return
    this.#state = 'closed'
    this.#teardown(closed.reason)
    this.#options.logger.warn({ code: closed.code, reason: closed.reason }, `${this.#options.label} link lost`)
    this.closeListeners.emit(closed)
    this.closeListeners.clear()
  }

  /**
   * close() for the driver: idempotent; while connecting, open() fails with LINK_CLOSED (`abandoned` says so);
   * while open, the state becomes 'closing' and `begin` starts the polite close, which ends in finishClosing().
   */
  close(abandoned: string, begin: () => void): Promise<void> {
    switch (this.#state) {
      case 'idle':
        this.#state = 'closed'
        return Promise.resolve()
      case 'connecting':
        this.failOpen(this.#options.error('LINK_CLOSED', abandoned))
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
    begin()
    return this.#closing
  }

  /** The polite close is done (or the socket ended while closing). No-op unless closing. */
  finishClosing(): void {
    if (this.#state !== 'closing') return
    this.#state = 'closed'
    this.#teardown('the link was closed')
    this.closeListeners.clear()
    this.#resolveClosing?.()
    this.#resolveClosing = undefined
  }

  /** The socket ended: what that means depends on the state (failed open, lost link, finished close). */
  socketEnded(whileConnecting: () => T['error'], whileOpen: () => T['closed']): void {
    switch (this.#state) {
      case 'connecting':
        this.failOpen(whileConnecting())
        return
      case 'open':
        this.terminate(whileOpen())
        return
      case 'closing':
        this.finishClosing()
        return
      case 'idle':
      case 'closed':
        return
    }
  }

  // --- Requests -----------------------------------------------------------------------------------------

  /**
   * Registers a request under `key`, then `send`s it. Rejects with REQUEST_TIMEOUT (and counts
   * <prefix>.requests.timeout) when settle(key) does not take it within `timeoutMs`.
   */
  request(key: T['key'], info: T['request'], timeoutMs: number, send: () => void): Promise<T['answer']> {
    return new Promise<T['answer']>((resolve, reject) => {
      const timer = this.#options.clock.setTimeout(() => {
        if (this.#pending.get(key)?.timer !== timer) return
        this.#pending.delete(key)
        this.#options.counters.inc(`${this.#options.counterPrefix}.requests.timeout`)
        reject(this.#options.error('REQUEST_TIMEOUT', `no answer to ${info.request} within ${timeoutMs} ms`, info.detail))
      }, timeoutMs)
      this.#pending.set(key, { info, resolve, reject, timer })
      send()
    })
  }

  isPending(key: T['key']): boolean {
    return this.#pending.has(key)
  }

  /** Takes the request an answer belongs to (its timeout stops); undefined for a late or unknown answer. */
  settle(key: T['key']): PendingRequest<T> | undefined {
    const pending = this.#pending.get(key)
    if (pending === undefined) return undefined
    this.#pending.delete(key)
    this.#options.clock.clearTimeout(pending.timer)
    return pending
  }

  /** Fails every outstanding request with LINK_CLOSED: "<why> before <request> was answered". */
  rejectAll(why: string): void {
    for (const { info, reject, timer } of this.#pending.values()) {
      this.#options.clock.clearTimeout(timer)
      reject(this.#options.error('LINK_CLOSED', `${why} before ${info.request} was answered`, info.detail))
    }
    this.#pending.clear()
  }

  // --- Timers -------------------------------------------------------------------------------------------

  /** A named timer of this link (replacing one of the same name); every one is cleared when the link ends. */
  setTimer(name: string, ms: number, fn: () => void): void {
    this.clearTimer(name)
    const timer = this.#options.clock.setTimeout(() => {
      if (this.#timers.get(name) === timer) this.#timers.delete(name)
      fn()
    }, ms)
    this.#timers.set(name, timer)
  }

  clearTimer(name: string): void {
    this.#options.clock.clearTimeout(this.#timers.get(name))
    this.#timers.delete(name)
  }

  #teardown(why: string): void {
    for (const timer of this.#timers.values()) this.#options.clock.clearTimeout(timer)
    this.#timers.clear()
    this.rejectAll(why)
    for (const listeners of this.#listenerSets) listeners.clear()
    this.#options.release()
  }
}

/** Request ids 1..max, wrapping around and skipping ids still in use; undefined when all are. */
export class RequestIds {
  #next = 1

  constructor(readonly max: number) {}

  allocate(inUse: (id: number) => boolean): number | undefined {
    for (let tries = 0; tries < this.max; tries++) {
      const id = this.#next
      this.#next = id >= this.max ? 1 : id + 1
      if (!inUse(id)) return id
    }
    return undefined
  }
}

/** What a driver needs around it: a logger of its own, the clock and the counters. */
export type DriverDeps = AdapterDeps

/**
 * The frame of a driver: its options, deps and link session, the isOpen/onClose surface the adapter kit uses,
 * and `release()` to write (let go of the socket). The subclass is the wire: open(), request(), close().
 */
export abstract class LinkDriver<T extends SessionTypes, Options> {
  protected readonly options: Options
  protected readonly deps: DriverDeps
  protected readonly link: LinkSession<T>

  constructor(options: Options, deps: DriverDeps, session: {
    counterPrefix: string
    label: string
    /** The driver's LinkError subclass. */
    error: new (code: SessionErrorCode, message: string, detail?: T['detail']) => T['error']
  }) {
    this.options = options
    this.deps = deps
    const ErrorClass = session.error
    this.link = new LinkSession<T>({
      ...deps,
      counterPrefix: session.counterPrefix,
      label: session.label,
      error: (code, message, detail) => new ErrorClass(code, message, detail),
      release: () => this.release(),
    })
  }

  get isOpen(): boolean {
    return this.link.isOpen
  }

  /** Fires once when an open link is lost (not after close()). */
  onClose(listener: (closed: T['closed']) => void): () => void {
    return this.link.closeListeners.add(listener)
  }

  /** Lets go of the wire: removes the socket's listeners (keeping a no-op error listener) and destroys it. */
  protected abstract release(): void
}

/**
 * Lets go of a socket (net, TLS or WebSocket): removes the listeners of `events`, keeps a no-op 'error'
 * listener (a late socket error must never become an uncaught exception), then runs `destroy`.
 */
export function releaseSocket(socket: NodeJS.EventEmitter, events: readonly string[], destroy: () => void): void {
  for (const event of events) socket.removeAllListeners(event)
  socket.removeAllListeners('error')
  socket.on('error', () => undefined)
  destroy()
}
