import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import type { RelayStore } from './relay-store.js'

export interface EventRetentionOptions {
  /** Rows older than this many days are deleted. */
  retentionDays: number
  /** Rows per DELETE statement, so a large backlog never locks the table for long. */
  batchSize?: number
  /** Time between sweeps. */
  intervalMs?: number
}

export interface EventRetentionDeps {
  store: Pick<RelayStore, 'deleteEventsOlderThan'>
  clock: Clock
  logger: Logger
}

const DAY_MS = 86_400_000

/**
 * Keeps the event log to `retentionDays`: a sweep at start, then one every hour. Each sweep deletes in batches
 * until nothing older than the cutoff is left. A failed sweep is logged and retried at the next one.
 */
export class EventRetention {
  readonly #options: Required<EventRetentionOptions>
  readonly #deps: EventRetentionDeps
  readonly #log: Logger
  #timer: ClockTimer | undefined
  #running: Promise<number> | undefined
  #started = false
  /** Bumped by every start() and stop(), so a sweep from an earlier run never schedules the next one. */
  #generation = 0

  constructor(options: EventRetentionOptions, deps: EventRetentionDeps) {
    this.#options = { batchSize: 5000, intervalMs: 3_600_000, ...options }
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'event-retention' })
  }

  start(): void {
    if (this.#started) return
    this.#started = true
    this.#generation++
    this.#sweepThenSchedule(this.#generation)
  }

  /** Stops the timer and waits for a sweep in progress to finish its current batch. */
  async stop(): Promise<void> {
    if (!this.#started) return
    this.#started = false
    this.#generation++
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#running
  }

  /** Resolves when no sweep is running (tests). */
  async idle(): Promise<void> {
    await this.#running
  }

  /** Deletes everything older than the cutoff, batch by batch; returns how many rows went. */
  async sweep(): Promise<number> {
    const { retentionDays, batchSize } = this.#options
    const generation = this.#generation
    const cutoff = new Date(this.#deps.clock.now() - retentionDays * DAY_MS)
    let removed = 0
    let batches = 0
    for (;;) {
      const n = await this.#deps.store.deleteEventsOlderThan(cutoff, batchSize)
      removed += n
      batches++
      // Between batches other queries get their turn; a stop() ends the sweep here, the next start resumes it.
      if (n < batchSize || this.#generation !== generation) break
    }
    if (removed > 0) this.#log.info({ removed, batches, cutoff: cutoff.toISOString(), retentionDays }, 'old events removed')
    else this.#log.debug({ cutoff: cutoff.toISOString(), retentionDays }, 'no events old enough to remove')
    return removed
  }

  #sweepThenSchedule(generation: number): void {
    const running = this.sweep().catch((err: unknown) => {
      this.#log.warn({ err: (err as Error).message }, 'removing old events failed; retrying at the next sweep')
      return 0
    })
    this.#running = running
    void running.then(() => {
      if (this.#running === running) this.#running = undefined
      if (this.#generation === generation) this.#timer = this.#deps.clock.setTimeout(() => this.#sweepThenSchedule(generation), this.#options.intervalMs)
    })
  }
}
