import type { Logger } from 'pino'
import { backoffDelay, type Clock, type ClockTimer } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'

/** The relay link as the guard sees it; MqttUplink fits. */
export interface RelayLinkState {
  readonly connected: boolean
  /** Called after every (re)connect; returns the function that removes the listener. */
  onConnect(listener: () => void): () => void
  /** Called when an established link is lost; returns the function that removes the listener. */
  onDisconnect(listener: () => void): () => void
}

export interface OwnedDndEndpoint {
  connectorId: string
  endpointId: string
}

export interface CutoffGuardOptions {
  /** How long the link may be down before the DND we own is released. */
  graceMs: number
  /** A failed release is retried (while still cut off) after jittered backoff from here… */
  retryBaseMs?: number
  /** …up to this. */
  retryMaxMs?: number
  /** After a clean pass, still cut off: look again this often (a PBX reconnecting may show DND we own). */
  recheckMs?: number
}

export interface CutoffGuardDeps {
  logger: Logger
  clock: Clock
  counters: Counters
  link: RelayLinkState
  /** Endpoints whose DND is on and owned by the gateway, now. */
  ownedDnd(): OwnedDndEndpoint[]
  /**
   * Switches one DND off at the PBX if it is still on and still ours. Resolves false when there was nothing to
   * do any more; rejects when the PBX refused or could not be reached.
   */
  release(endpoint: OwnedDndEndpoint): Promise<boolean>
}

/**
 * DESIGN §6: a gateway cut off from the relay releases the PBX DND it owns after its own grace period. The relay
 * is what follows the Teams activity that asked for the DND; without it nobody would ever switch it off, and a
 * person must not sit in DND for hours because a link broke. A DND the person set is never touched.
 *
 * When the link comes back, nothing extra is needed: the snapshot on connect shows the relay the DND is off,
 * and the relay decides again.
 */
export class CutoffGuard {
  readonly #options: Required<CutoffGuardOptions>
  readonly #deps: CutoffGuardDeps
  readonly #unsubscribe: Array<() => void> = []
  #running = false
  #timer: ClockTimer | undefined
  #cutOffSince: number | undefined
  /** Bumped on every reconnect and on stop, so a pass still awaiting the PBX knows its outage is over. */
  #epoch = 0
  #failedPasses = 0

  constructor(options: CutoffGuardOptions, deps: CutoffGuardDeps) {
    this.#options = { retryBaseMs: 5_000, retryMaxMs: 5 * 60_000, recheckMs: 60_000, ...options }
    this.#deps = deps
  }

  start(): void {
    if (this.#running) return
    this.#running = true
    const { link } = this.#deps
    this.#unsubscribe.push(link.onConnect(() => this.#onConnect()), link.onDisconnect(() => this.#onDisconnect()))
    // A box that boots without reaching the relay is cut off too; DND it owned before the restart is on disk.
    if (!link.connected) this.#onDisconnect()
  }

  stop(): void {
    if (!this.#running) return
    this.#running = false
    this.#epoch++
    for (const off of this.#unsubscribe.splice(0)) off()
    this.#clearTimer()
    this.#cutOffSince = undefined
    this.#failedPasses = 0
  }

  #onConnect(): void {
    this.#epoch++
    this.#clearTimer()
    this.#cutOffSince = undefined
    this.#failedPasses = 0
  }

  #onDisconnect(): void {
    if (!this.#running || this.#cutOffSince !== undefined) return
    this.#cutOffSince = this.#deps.clock.now()
    this.#arm(this.#options.graceMs)
  }

  #arm(ms: number): void {
    this.#clearTimer()
    this.#timer = this.#deps.clock.setTimeout(() => {
      this.#timer = undefined
      void this.#releaseAll()
    }, ms)
  }

  #clearTimer(): void {
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  async #releaseAll(): Promise<void> {
    const { clock, counters, logger, link } = this.#deps
    const epoch = this.#epoch
    const since = this.#cutOffSince
    if (since === undefined) return
    let failed = 0
    for (const endpoint of this.#deps.ownedDnd()) {
      // The relay is back (or we are stopping): it decides from our snapshot, we leave the rest alone.
      if (epoch !== this.#epoch || link.connected) return
      const { connectorId, endpointId } = endpoint
      try {
        if (!(await this.#deps.release(endpoint))) continue
        const cutOffMs = clock.now() - since
        counters.inc('gateway.cutoff_releases')
        // Constant message; the sentence an installer reads is in `reason`.
        logger.warn(
          {
            connector: connectorId,
            endpoint: endpointId,
            cutOffS: Math.round(cutOffMs / 1000),
            reason: `released DND on ${endpointId}: cut off from the relay for ${formatDuration(cutOffMs)}; the Teams activity that set it can no longer be followed`,
          },
          'released DND owned by the gateway while cut off from the relay',
        )
      } catch (err) {
        failed++
        counters.inc('gateway.cutoff_release_failures')
        const code = (err as { code?: unknown }).code
        logger.warn({ connector: connectorId, endpoint: endpointId, code: typeof code === 'string' ? code : undefined, err: (err as Error).message }, 'releasing DND while cut off from the relay failed; will retry')
      }
    }
    if (epoch !== this.#epoch || !this.#running || link.connected) return
    // Still cut off: retry failures with backoff; after a clean pass keep looking, slowly.
    this.#failedPasses = failed > 0 ? this.#failedPasses + 1 : 0
    this.#arm(failed > 0 ? backoffDelay(this.#failedPasses - 1, this.#options.retryBaseMs, this.#options.retryMaxMs) : this.#options.recheckMs)
  }
}

/** "45 s", "10 min", "2 h 5 min": for the log line an installer reads. */
function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000)
  if (seconds < 60) return `${seconds} s`
  const minutes = Math.round(seconds / 60)
  if (minutes < 60) return `${minutes} min`
  const hours = Math.floor(minutes / 60)
  const rest = minutes % 60
  return rest ? `${hours} h ${rest} min` : `${hours} h`
}
