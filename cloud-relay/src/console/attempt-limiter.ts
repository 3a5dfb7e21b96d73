/**
 * Counts sign-in attempts per key (an address, an account) in a sliding window. An attempt is counted when it is
 * taken, before its password is checked: parallel guesses cannot all read a count of zero while the slow password
 * checks run (50 in one burst were all evaluated when the count was stored after the check). A success gives back
 * its own attempt and clears the keys it names (its account), never the whole address.
 *
 * The map is bounded: past maxKeys the oldest keys are dropped, so a flood of addresses costs memory up to a cap.
 */
export interface AttemptLimiterOptions {
  maxAttempts: number
  windowMs: number
  /** Keys kept at most; the least recently used go first. */
  maxKeys?: number
}

export class AttemptLimiter {
  readonly #options: Required<AttemptLimiterOptions>
  readonly #clock: { now(): number }
  readonly #attempts = new Map<string, number[]>()

  constructor(options: AttemptLimiterOptions, clock: { now(): number }) {
    this.#options = { maxKeys: 10_000, ...options }
    this.#clock = clock
  }

  get size(): number {
    return this.#attempts.size
  }

  /**
   * Takes one attempt for every key, or none: undefined when allowed, otherwise the seconds until the fullest key
   * has room again.
   */
  take(keys: readonly string[]): number | undefined {
    const now = this.#clock.now()
    let retryAfterMs = 0
    for (const key of keys) {
      const recent = this.#recent(key, now)
      if (recent.length >= this.#options.maxAttempts) retryAfterMs = Math.max(retryAfterMs, recent[0]! + this.#options.windowMs - now)
    }
    if (retryAfterMs > 0) return Math.max(1, Math.ceil(retryAfterMs / 1000))
    for (const key of keys) {
      const recent = this.#recent(key, now)
      recent.push(now)
      // Re-inserted so the map's order is least recently used first.
      this.#attempts.delete(key)
      this.#attempts.set(key, recent)
    }
    while (this.#attempts.size > this.#options.maxKeys) {
      const oldest = this.#attempts.keys().next().value
      if (oldest === undefined) break
      this.#attempts.delete(oldest)
    }
    return undefined
  }

  /** Attempts left for a key in the window. */
  left(key: string): number {
    return Math.max(0, this.#options.maxAttempts - this.#recent(key, this.#clock.now()).length)
  }

  /** A taken attempt succeeded: it no longer counts against `keys`, and the keys in `clear` start again from zero. */
  succeeded(keys: readonly string[], clear: readonly string[] = []): void {
    for (const key of keys) this.#attempts.get(key)?.pop()
    for (const key of clear) this.#attempts.delete(key)
  }

  #recent(key: string, now: number): number[] {
    return (this.#attempts.get(key) ?? []).filter((at) => at > now - this.#options.windowMs)
  }
}
