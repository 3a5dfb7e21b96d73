import type { Clock } from '#kernel/clock.js'

/** Keys a limiter remembers at most (an attacker spraying addresses cannot grow it further). */
const MAX_TRACKED_KEYS = 10_000

/**
 * A sliding-window count of attempts per key (an address, a gateway). An attempt is taken BEFORE the work it
 * guards is awaited, so parallel requests cannot all pass a check that has not seen the others yet; the caller
 * gives it back when the attempt should not count (a success, where only failures are limited).
 */
export class AttemptLimiter {
  readonly #attempts = new Map<string, number[]>()
  readonly #limit: number
  readonly #windowMs: number
  readonly #clock: Clock

  constructor(options: { limit: number; windowMs: number }, clock: Clock) {
    this.#limit = options.limit
    this.#windowMs = options.windowMs
    this.#clock = clock
  }

  /** Takes one attempt for the key: a token to give back, or the seconds to wait when the key is at its limit. */
  take(key: string): { ok: true; token: number } | { ok: false; retryAfterS: number; attempts: number } {
    const now = this.#clock.now()
    const recent = (this.#attempts.get(key) ?? []).filter((at) => at > now - this.#windowMs)
    if (recent.length >= this.#limit) {
      this.#attempts.set(key, recent)
      return { ok: false, retryAfterS: Math.max(1, Math.ceil(((recent[0] ?? now) + this.#windowMs - now) / 1000)), attempts: recent.length }
    }
    recent.push(now)
    this.#remember(key, recent)
    return { ok: true, token: now }
  }

  /** The attempt taken with this token does not count after all. */
  giveBack(key: string, token: number): void {
    const recent = this.#attempts.get(key)
    if (recent === undefined) return
    const index = recent.lastIndexOf(token)
    if (index >= 0) recent.splice(index, 1)
    if (recent.length === 0) this.#attempts.delete(key)
  }

  #remember(key: string, recent: number[]): void {
    this.#attempts.delete(key)
    this.#attempts.set(key, recent)
    if (this.#attempts.size <= MAX_TRACKED_KEYS) return
    const cutoff = this.#clock.now() - this.#windowMs
    for (const [k, times] of this.#attempts) if ((times[times.length - 1] ?? 0) <= cutoff) this.#attempts.delete(k)
    // Still full (a spray of fresh keys): forget the least recently used rather than grow without bound.
    for (const k of this.#attempts.keys()) {
      if (this.#attempts.size <= MAX_TRACKED_KEYS) break
      this.#attempts.delete(k)
    }
  }
}
