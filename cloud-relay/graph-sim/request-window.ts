/**
 * Sliding-window bookkeeping for the simulator: a limiter (Graph's per app per tenant request budgets) and a
 * recorder that can say afterwards how many requests fell into the busiest window (benchmarks prove with it
 * that a client stayed below the documented limits).
 */
import type { RateLimit } from './simulator-types.js'

/** Admits a request when fewer than `limit.requests` were admitted in the last `limit.windowMs`. */
export class SlidingWindowLimiter {
  readonly #hits = new Map<string, number[]>()

  constructor(private readonly limit: RateLimit) {}

  /** undefined when admitted (and counted), else ms until the oldest hit leaves the window. */
  take(key: string, now: number): number | undefined {
    const windowStart = now - this.limit.windowMs
    const hits = this.#hits.get(key) ?? []
    let drop = 0
    while (drop < hits.length && (hits[drop] ?? now) <= windowStart) drop++
    if (drop > 0) hits.splice(0, drop)
    this.#hits.set(key, hits)
    if (hits.length >= this.limit.requests) return Math.max(1, (hits[0] ?? now) + this.limit.windowMs - now)
    hits.push(now)
    return undefined
  }

  clear(): void {
    this.#hits.clear()
  }
}

/** Timestamps of requests per key; peak() is the most that fell into any window of the given length. */
export class RequestWindowRecorder {
  readonly #times = new Map<string, number[]>()

  record(key: string, at: number): void {
    const list = this.#times.get(key)
    if (list === undefined) this.#times.set(key, [at])
    else list.push(at)
  }

  /** The highest count in any window [t, t + windowMs) over all keys (each key on its own). */
  peak(windowMs: number): number {
    let best = 0
    for (const list of this.#times.values()) {
      const sorted = [...list].sort((a, b) => a - b)
      let start = 0
      for (let end = 0; end < sorted.length; end++) {
        while ((sorted[end] ?? 0) - (sorted[start] ?? 0) >= windowMs) start++
        best = Math.max(best, end - start + 1)
      }
    }
    return best
  }

  clear(): void {
    this.#times.clear()
  }
}
