import type { DirectoryEntry } from '../../../protocol/schemas.js'
import {
  AdapterError,
  type AdapterDeps,
  type PbxAdapter,
  type PbxObservation,
  type PbxObservationListener,
} from '../types.js'
import { describeConnectFailure, type LinkTarget } from './connect-failure.js'
import { DndCommands } from './dnd-commands.js'
import { LinkError } from './link-error.js'
import { LinkLifecycle } from './link-lifecycle.js'
import type { LinkClosed } from './link-session.js'
import { LinkTimers } from './link-timers.js'

/** What the adapter needs of its driver: one connection, opened once, that says when it is lost. */
export interface KitDriver {
  readonly isOpen: boolean
  open(): Promise<unknown>
  close(): Promise<void>
  onClose(listener: (closed: LinkClosed) => void): () => void
}

/** State that lives exactly as long as one connection; an adapter adds its own fields. */
export interface KitLink<Driver extends KitDriver = KitDriver> {
  readonly driver: Driver
  /** Cleared when the link is dropped. */
  readonly timers: LinkTimers
  /** Removes the adapter's driver listeners when the link is dropped. */
  readonly unsubscribe: Array<() => void>
}

export interface PbxLinkAdapterSpec extends LinkTarget {
  /** AdapterError codes start with it: OSBIZ → OSBIZ_NOT_CONNECTED, OSBIZ_TIMEOUT. */
  codePrefix: string
  /** The code (after the prefix) of a failure without a more specific one: ERROR, REFUSED, CSTA_ERROR. */
  otherCode: string
  /** Why a port may refuse, for "connection refused by …: <hint>". */
  refusedHint: string
  /** Reconnect backoff with full jitter: attempt 0 waits up to baseMs, later ones up to maxMs. */
  backoffBaseMs: number
  backoffMaxMs: number
}

/**
 * What every PBX adapter does the same way: the PbxAdapter surface, the link lifecycle (start, stop, connect
 * with backoff, report link states), dropping a link's timers and listeners, the DND command ledger, and the
 * installer's words for common failures. A subclass writes what is its PBX's: createLink (read files, make
 * the driver, subscribe to its events), linkOpened (synchronise), setDnd and the vendor's failure words.
 */
export abstract class PbxLinkAdapter<Config extends { id: string }, Link extends KitLink> implements PbxAdapter {
  readonly connectorId: string
  abstract readonly type: string
  protected readonly config: Config
  protected readonly deps: AdapterDeps
  protected readonly lifecycle: LinkLifecycle<Link>
  /** Our DND commands per endpoint, so the PBX's report of their effect is not taken for the person's. */
  protected readonly dndCommands: DndCommands
  protected readonly spec: PbxLinkAdapterSpec

  constructor(config: Config, deps: AdapterDeps, spec: PbxLinkAdapterSpec) {
    this.connectorId = config.id
    this.config = config
    this.deps = deps
    this.spec = spec
    this.dndCommands = new DndCommands(deps.clock)
    this.lifecycle = new LinkLifecycle<Link>({
      deps,
      backoffBaseMs: spec.backoffBaseMs,
      backoffMaxMs: spec.backoffMaxMs,
      connect: () => this.#connect(),
      drop: (link) => this.dropLink(link),
    })
  }

  start(): Promise<void> {
    return this.lifecycle.start()
  }

  stop(): Promise<void> {
    return this.lifecycle.stop()
  }

  onObservation(listener: PbxObservationListener): () => void {
    return this.lifecycle.onObservation(listener)
  }

  abstract setDnd(endpointId: string, dnd: boolean): Promise<{ dnd: boolean }>

  // --- For subclasses -----------------------------------------------------------------------------------

  /** The next connection's state, its driver made (not opened) and its events subscribed. Throw to fail. */
  protected abstract createLink(): Promise<Link>

  /** The link is open and reported connected: start synchronising. */
  protected abstract linkOpened(link: Link): void

  /** Forgets the subclass's own state of a dropped link (timers, listeners and DND commands are done). */
  protected forgetLink(_link: Link): void {}

  /** The vendor's words for a failure to open; undefined leaves it to the common wording. */
  protected describeFailure(_error: unknown): string | undefined {
    return undefined
  }

  /** The vendor's words for a lost link, after "lost <link> to <address>: <reason>" (e.g. a setting to raise). */
  protected lostHint(_closed: LinkClosed): string {
    return ''
  }

  /** A longer wait than the backoff after this failure (wrong credentials that may lock an account). */
  protected minimumRetryDelay(_error: unknown): number | undefined {
    return undefined
  }

  /** Errors that need the installer (a refused login, an untrusted certificate) are logged as errors. */
  protected failureIsError(_error: unknown): boolean {
    return false
  }

  /** The current link. */
  protected get link(): Link | undefined {
    return this.lifecycle.link
  }

  /** The open link a command can use, or AdapterError <PREFIX>_NOT_CONNECTED. */
  protected openLink(endpointId: string): Link {
    const link = this.link
    if (!this.lifecycle.running || link === undefined || !link.driver.isOpen) {
      throw new AdapterError(`${this.spec.codePrefix}_NOT_CONNECTED`, `${this.spec.linkName} to ${this.spec.address} is down`, { endpointId })
    }
    return link
  }

  protected emit(observation: PbxObservation): void {
    this.lifecycle.emit(observation)
  }

  protected emitDirectory(entries: DirectoryEntry[]): void {
    this.lifecycle.emit({ kind: 'directory', entries })
  }

  /** The link cannot do its job (its user list refused, an API not enabled): say why, close it, retry later. */
  protected failLink(link: Link, reason: string): void {
    if (this.link !== link) return
    this.dropLink(link)
    this.deps.logger.error({ reason }, 'PBX link unusable; closing it and retrying with backoff')
    void link.driver.close()
    this.lifecycle.reconnectLater(reason)
  }

  /** Forgets everything tied to the connection: ids and subscriptions are meaningless on the next one. */
  protected dropLink(link: Link): void {
    for (const unsubscribe of link.unsubscribe) unsubscribe()
    link.unsubscribe.length = 0
    link.timers.clear()
    this.dndCommands.clear()
    this.forgetLink(link)
    if (this.link === link) this.lifecycle.link = undefined
  }

  /**
   * A failed command as AdapterError: `specific` words the vendor's refusals; timeouts, a link gone and the
   * rest are worded here.
   */
  protected adapterError(error: unknown, endpointId: string, specific: (error: LinkError<string, object>, detail: Record<string, unknown>) => AdapterError | undefined = () => undefined): AdapterError {
    const { codePrefix, otherCode } = this.spec
    if (!(error instanceof LinkError)) {
      return new AdapterError(`${codePrefix}_${otherCode}`, error instanceof Error ? error.message : String(error), { endpointId })
    }
    const detail = { endpointId, linkCode: error.code, ...error.detail }
    const worded = specific(error, detail)
    if (worded !== undefined) return worded
    switch (error.code) {
      case 'REQUEST_TIMEOUT':
        return new AdapterError(`${codePrefix}_TIMEOUT`, `the PBX did not answer within ${this.spec.requestTimeoutMs} ms`, detail)
      case 'NOT_OPEN':
      case 'LINK_CLOSED':
        return new AdapterError(`${codePrefix}_NOT_CONNECTED`, `${this.spec.linkName} to ${this.spec.address} went down`, detail)
      default:
        return new AdapterError(`${codePrefix}_${otherCode}`, error.message, detail)
    }
  }

  // --- Connecting ---------------------------------------------------------------------------------------

  async #connect(): Promise<void> {
    let link: Link
    try {
      link = await this.createLink()
    } catch (error) {
      if (this.lifecycle.running) this.#failed(error)
      return
    }
    if (!this.lifecycle.running) return
    this.lifecycle.link = link
    link.unsubscribe.push(link.driver.onClose((closed) => this.#lost(link, closed)))
    try {
      await link.driver.open()
    } catch (error) {
      if (this.link !== link) return
      this.dropLink(link)
      this.#failed(error)
      return
    }
    if (this.link !== link) return
    this.deps.logger.info({ address: this.spec.address }, 'PBX link connected')
    this.lifecycle.emitLink('connected')
    this.linkOpened(link)
  }

  #failed(error: unknown): void {
    const reason = this.describeFailure(error) ?? describeConnectFailure(error, this.spec, this.spec.refusedHint)
    const code = error instanceof LinkError ? error.code : undefined
    this.deps.logger[this.failureIsError(error) ? 'error' : 'warn']({ code, reason, attempt: this.lifecycle.attempt }, 'PBX link failed')
    this.lifecycle.reconnectLater(reason, this.minimumRetryDelay(error))
  }

  #lost(link: Link, closed: LinkClosed): void {
    if (this.link !== link) return
    this.dropLink(link)
    this.lifecycle.reconnectLater(`lost ${this.spec.linkName} to ${this.spec.address}: ${closed.reason}${this.lostHint(closed)}`)
  }
}
