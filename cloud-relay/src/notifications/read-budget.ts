import type { Clock } from '#kernel/clock.js'

/**
 * A sliding-window limiter for one tenant's getPresencesByUserId calls (Graph: 1,500 per 30 s per app per
 * tenant, research §2). Reconciliation and fallback polling share one budget, kept below Graph's limit so a
 * burst of reconciliations can never earn a 429 for the polling.
 */
export class ReadBudget {
  readonly #clock: Clock
  readonly #limit: number
  readonly #windowMs: number
  readonly #stamps: number[] = []
  #blockedUntil = 0

  constructor(clock: Clock, limit = 1200, windowMs = 30_000) {
    this.#clock = clock
    this.#limit = limit
    this.#windowMs = windowMs
  }

  /** Takes one request slot now, or answers how long to wait (ms) before asking again. */
  take(): { ok: true } | { ok: false; waitMs: number } {
    const now = this.#clock.now()
    if (now < this.#blockedUntil) return { ok: false, waitMs: this.#blockedUntil - now }
    while (this.#stamps.length > 0 && this.#stamps[0]! <= now - this.#windowMs) this.#stamps.shift()
    if (this.#stamps.length >= this.#limit) return { ok: false, waitMs: this.#stamps[0]! + this.#windowMs - now }
    this.#stamps.push(now)
    return { ok: true }
  }

  /** Graph answered 429: nobody in this tenant reads before Retry-After has passed. */
  backOff(ms: number): void {
    this.#blockedUntil = Math.max(this.#blockedUntil, this.#clock.now() + ms)
  }

  /** Requests counted in the current window. */
  get used(): number {
    const now = this.#clock.now()
    return this.#stamps.filter((t) => t > now - this.#windowMs).length
  }
}
