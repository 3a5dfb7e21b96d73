import type { Clock } from '#kernel/clock.js'

export interface AttemptLimits {
  /** Attempts per key (client address) within the window. */
  perKey: number
  /** Attempts from all keys together within the window: an attacker on the LAN can rotate addresses. */
  total: number
  windowMs: number
  /** Keys remembered at most; the oldest is forgotten first, so a flood of addresses cannot grow memory. */
  maxKeys?: number
}

export type AttemptVerdict =
  | { allowed: true; /** Takes this attempt back out of the count (it succeeded). */ release(): void }
  | { allowed: false; scope: 'key' | 'total'; retryAfterS: number }

/**
 * Counts attempts (sign-ins, setup codes) per key and in total over a sliding window. An attempt is counted when
 * it is taken, before the slow check runs: reading the count before an await and writing it after let 50
 * parallel guesses all through. A success releases only its own attempt, never another key's count.
 */
export class AttemptLimiter {
  readonly #limits: Required<AttemptLimits>
  readonly #clock: Clock
  readonly #byKey = new Map<string, number[]>()
  readonly #all: number[] = []

  constructor(limits: AttemptLimits, deps: { clock: Clock }) {
    this.#limits = { maxKeys: 10_000, ...limits }
    this.#clock = deps.clock
  }

  take(key: string): AttemptVerdict {
    const now = this.#clock.now()
    const { windowMs, perKey, total, maxKeys } = this.#limits
    const fresh = (at: number) => now - at < windowMs
    // Oldest first: drop the expired head only (a filter of the whole list per attempt would be quadratic).
    const firstFresh = this.#all.findIndex(fresh)
    if (firstFresh !== 0) this.#all.splice(0, firstFresh < 0 ? this.#all.length : firstFresh)
    const mine = (this.#byKey.get(key) ?? []).filter(fresh)
    // Re-inserted so the map's order is "least recently seen first", the order eviction follows.
    this.#byKey.delete(key)
    if (mine.length > 0) this.#byKey.set(key, mine)
    const retryAfter = (oldest: number | undefined) => Math.max(1, Math.ceil(((oldest ?? now) + windowMs - now) / 1000))
    if (mine.length >= perKey) return { allowed: false, scope: 'key', retryAfterS: retryAfter(mine[0]) }
    if (this.#all.length >= total) return { allowed: false, scope: 'total', retryAfterS: retryAfter(this.#all[0]) }
    mine.push(now)
    this.#all.push(now)
    this.#byKey.set(key, mine)
    while (this.#byKey.size > maxKeys) {
      const oldest = this.#byKey.keys().next().value
      if (oldest === undefined) break
      this.#byKey.delete(oldest)
    }
    return {
      allowed: true,
      release: () => {
        remove(this.#byKey.get(key), now)
        remove(this.#all, now)
      },
    }
  }

  /** Keys currently remembered (bounded by maxKeys). */
  get size(): number {
    return this.#byKey.size
  }

  clear(): void {
    this.#byKey.clear()
    this.#all.length = 0
  }
}

function remove(list: number[] | undefined, at: number): void {
  const index = list?.lastIndexOf(at) ?? -1
  if (list && index >= 0) list.splice(index, 1)
}
