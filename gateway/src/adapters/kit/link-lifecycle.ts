import type { LinkState } from '../../../protocol/schemas.js'
import { backoffDelay, type ClockTimer } from '#kernel/clock.js'
import type { AdapterDeps, PbxObservation, PbxObservationListener } from '../types.js'
import { Listeners } from './listeners.js'

/** What the lifecycle needs of an adapter's link: a driver it can close when the connector stops. */
export interface ClosableLink {
  readonly driver: { close(): Promise<void> }
}

export interface LinkLifecycleOptions<Link extends ClosableLink> {
  deps: AdapterDeps
  /** Reconnect backoff with full jitter (see backoffDelay): attempt 0 waits up to baseMs, later ones up to maxMs. */
  backoffBaseMs: number
  backoffMaxMs: number
  /** Opens a new link and sets `link`; called on start and after each backoff delay while running. */
  connect: () => Promise<void>
  /** Forgets everything tied to a link and clears `link` if it is the current one. */
  drop: (link: Link) => void
}

/**
 * The life of one connector's PBX link, the same for every PBX type: started and stopped by the core, opened
 * again with backoff after each failure, and reported to the observation listeners as link states. The adapter
 * keeps everything PBX-specific (how to connect, what a link holds, how to describe a failure).
 */
export class LinkLifecycle<Link extends ClosableLink> {
  /** The current link: set by the adapter when it connects, cleared by its drop function. */
  link: Link | undefined
  readonly #options: LinkLifecycleOptions<Link>
  readonly #listeners: Listeners<PbxObservation>
  #running = false
  #attempt = 0
  #retryTimer: ClockTimer | undefined
  #lastLink: { state: LinkState; reason: string | undefined } | undefined
  #stopping: Promise<void> | undefined

  constructor(options: LinkLifecycleOptions<Link>) {
    this.#options = options
    this.#listeners = new Listeners(options.deps.logger, 'observation listener threw', (observation) => ({ kind: observation.kind }))
  }

  /** True between start() and stop(). */
  get running(): boolean {
    return this.#running
  }

  /** Reconnect attempts since the last healthy link. */
  get attempt(): number {
    return this.#attempt
  }

  async start(): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#stopping = undefined
    this.#attempt = 0
    this.emitLink('connecting')
    this.#connect()
  }

  async stop(): Promise<void> {
    if (!this.#running) return this.#stopping
    this.#running = false
    this.#options.deps.clock.clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    const link = this.link
    if (link !== undefined) this.#options.drop(link)
    this.emitLink('offline', 'connector stopped')
    this.#stopping = link?.driver.close()
    await this.#stopping
  }

  onObservation(listener: PbxObservationListener): () => void {
    return this.#listeners.add(listener)
  }

  /**
   * Reports the link offline with `reason` and, while running, connects again after the backoff delay (at
   * least `minimumDelayMs` when given).
   */
  reconnectLater(reason: string, minimumDelayMs?: number): void {
    this.emitLink('offline', reason)
    if (!this.#running) return
    const backoffMs = backoffDelay(this.#attempt, this.#options.backoffBaseMs, this.#options.backoffMaxMs)
    const delayMs = minimumDelayMs === undefined ? backoffMs : Math.max(minimumDelayMs, backoffMs)
    this.#attempt += 1
    this.#options.deps.logger.info({ delayMs, attempt: this.#attempt }, 'reconnecting to the PBX')
    this.#retryTimer = this.#options.deps.clock.setTimeout(() => this.#connect(), delayMs)
  }

  /** A link that carried a full synchronisation is healthy: the next failure starts the backoff afresh. */
  markHealthy(link: Link): void {
    if (this.link === link) this.#attempt = 0
  }

  emitLink(state: LinkState, reason?: string): void {
    // Repeated failures with the same cause are one state, not a stream of identical reports.
    if (this.#lastLink?.state === state && this.#lastLink.reason === reason) return
    this.#lastLink = { state, reason }
    const observation: PbxObservation = { kind: 'link', state, at: this.#options.deps.clock.now() }
    if (reason !== undefined) observation.reason = reason
    this.emit(observation)
  }

  emit(observation: PbxObservation): void {
    this.#listeners.emit(observation)
  }

  #connect(): void {
    this.#retryTimer = undefined
    if (!this.#running) return
    void this.#options.connect()
  }
}
