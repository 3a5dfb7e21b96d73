import type { Logger } from 'pino'
import type { Clock } from '../../../gateway/src/core/clock.js'
import { backoffDelay } from '../../../gateway/src/core/clock.js'
import { GraphApiError, type GraphPresenceApi, type PresenceReading } from '../graph/types.js'

/**
 * Reads Teams presence for a tenant's people with getPresencesByUserId (app-only; 650 ids per request).
 * Change notifications replace most of this later; polling stays as reconciliation and fallback.
 * Requests per 30 s stay far below Graph's 1,500: one request per 650 people per interval.
 */
export class TeamsPoller {
  readonly #tenantId: string
  readonly #graph: GraphPresenceApi
  readonly #intervalMs: number
  readonly #deps: { logger: Logger; clock: Clock; userIds: () => string[]; onReadings: (tenantId: string, readings: PresenceReading[]) => Promise<void> }
  #timer: ReturnType<Clock['setTimeout']> | undefined
  #running = false
  #failures = 0

  constructor(tenantId: string, graph: GraphPresenceApi, intervalMs: number, deps: { logger: Logger; clock: Clock; userIds: () => string[]; onReadings: (tenantId: string, readings: PresenceReading[]) => Promise<void> }) {
    this.#tenantId = tenantId
    this.#graph = graph
    this.#intervalMs = intervalMs
    this.#deps = deps
  }

  start(): void {
    if (this.#running) return
    this.#running = true
    this.#schedule(0)
  }

  stop(): void {
    this.#running = false
    this.#deps.clock.clearTimeout(this.#timer)
  }

  /** One poll now (also used by tests to avoid waiting for the interval). */
  async pollOnce(): Promise<void> {
    const ids = this.#deps.userIds()
    if (ids.length === 0) return
    const readings = await this.#graph.getPresences(ids)
    await this.#deps.onReadings(this.#tenantId, readings)
  }

  #schedule(delayMs: number): void {
    this.#timer = this.#deps.clock.setTimeout(() => void this.#tick(), delayMs)
  }

  async #tick(): Promise<void> {
    if (!this.#running) return
    let delay = this.#intervalMs
    try {
      await this.pollOnce()
      this.#failures = 0
    } catch (err) {
      this.#failures += 1
      delay = err instanceof GraphApiError && err.retryAfterMs !== undefined ? err.retryAfterMs : backoffDelay(this.#failures, this.#intervalMs, 60_000)
      if (this.#failures === 1 || this.#failures % 20 === 0) {
        this.#deps.logger.warn({ tenantId: this.#tenantId, code: err instanceof GraphApiError ? err.code : undefined, err: (err as Error).message, retryInMs: delay }, 'reading Teams presence failed')
      }
    }
    if (this.#running) this.#schedule(delay)
  }
}
