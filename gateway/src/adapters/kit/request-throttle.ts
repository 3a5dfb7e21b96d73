import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'

/**
 * Requests to a PBX at most `perSecond` (a token bucket holding a tenth of a second's worth, at least one), so a
 * large site does not flood the PBX after a reconnect. One per link: clear() drops what is still queued.
 */
export class RequestThrottle {
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #perSecond: number
  readonly #burst: number
  readonly #queue: Array<() => Promise<void>> = []
  #tokens: number
  #lastRefill: number
  #timer: ClockTimer | undefined
  #cleared = false

  constructor(clock: Clock, logger: Logger, perSecond: number) {
    this.#clock = clock
    this.#logger = logger
    this.#perSecond = perSecond
    this.#burst = Math.max(1, Math.floor(perSecond / 10))
    this.#tokens = this.#burst
    this.#lastRefill = clock.now()
  }

  /** Runs `task` when a token is free; a task that throws is logged, not passed on. */
  enqueue(task: () => Promise<void>): void {
    if (this.#cleared) return
    this.#queue.push(task)
    this.#pump()
  }

  clear(): void {
    this.#cleared = true
    this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#queue.length = 0
  }

  #pump(): void {
    if (this.#cleared || this.#timer !== undefined) return
    const now = this.#clock.now()
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#lastRefill) * this.#perSecond) / 1000)
    this.#lastRefill = now
    while (this.#tokens >= 1 && this.#queue.length > 0) {
      this.#tokens -= 1
      const task = this.#queue.shift()
      if (task !== undefined) void task().catch((error: unknown) => this.#logger.error({ err: error }, 'throttled PBX request failed'))
    }
    if (this.#queue.length > 0) {
      const waitMs = Math.max(5, Math.ceil(((1 - this.#tokens) * 1000) / this.#perSecond))
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = undefined
        this.#pump()
      }, waitMs)
    }
  }
}
