import type { Clock, ClockTimer } from '#kernel/clock.js'

/**
 * The timers of one PBX link (retries, renewals, delays, the directory's debounce): clear() when the link is
 * dropped stops them all, so nothing of an old connection runs on the next one. group() makes a subset that
 * can be cleared on its own (one user's timers) and is still cleared with the link.
 */
export class LinkTimers {
  readonly #clock: Clock
  readonly #timers = new Set<ClockTimer>()
  readonly #named = new Map<string, ClockTimer>()
  readonly #groups = new Set<LinkTimers>()

  constructor(clock: Clock) {
    this.#clock = clock
  }

  /** Runs `fn` after `ms`, unless the link is dropped first. */
  later(ms: number, fn: () => void): void {
    const timer = this.#clock.setTimeout(() => {
      this.#timers.delete(timer)
      fn()
    }, ms)
    this.#timers.add(timer)
  }

  /** Resolves after `ms`; never, if the link is dropped first (the waiting code belongs to a dead link). */
  delay(ms: number): Promise<void> {
    return new Promise((resolve) => this.later(ms, resolve))
  }

  /** Runs `fn` once after `ms` however often it is asked for meanwhile (a debounce keyed by `name`). */
  once(name: string, ms: number, fn: () => void): void {
    if (this.#named.has(name)) return
    this.#named.set(name, this.#clock.setTimeout(() => {
      this.#named.delete(name)
      fn()
    }, ms))
  }

  /** A subset of these timers that can be cleared on its own. */
  group(): LinkTimers {
    const group = new LinkTimers(this.#clock)
    this.#groups.add(group)
    return group
  }

  clear(): void {
    for (const timer of [...this.#timers, ...this.#named.values()]) this.#clock.clearTimeout(timer)
    this.#timers.clear()
    this.#named.clear()
    for (const group of this.#groups) group.clear()
  }
}
