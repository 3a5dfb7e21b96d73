/** Time as a dependency, so timers and timestamps can be driven by tests. */
export interface Clock {
  now(): number
  setTimeout(fn: () => void, ms: number): ClockTimer
  clearTimeout(timer: ClockTimer | undefined): void
}

export type ClockTimer = { readonly __timer: unique symbol } | NodeJS.Timeout

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, ms)
    timer.unref?.()
    return timer
  },
  clearTimeout: (timer) => {
    if (timer !== undefined) clearTimeout(timer as NodeJS.Timeout)
  },
}

/** Exponential backoff with full jitter: attempt 0 → [0, base], capped at max. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20))
  return Math.round(ceiling / 2 + (random() * ceiling) / 2)
}

/**
 * A clock that runs `factor` times faster than real time, for time-compressed runs (an hour of subscription
 * lifecycle in seconds). now() starts at `startMs` (default: the real time) and advances factor × elapsed;
 * timers fire after ms / factor real milliseconds. It also satisfies the Graph simulator's clock, so a relay
 * and a simulator given the same instance agree on what time it is.
 */
export function createScaledClock(factor: number, startMs: number = Date.now()): Clock {
  if (!(factor > 0) || !Number.isFinite(factor)) throw new Error(`clock factor must be a positive number, got ${factor}`)
  const origin = performance.now()
  return {
    now: () => Math.floor(startMs + (performance.now() - origin) * factor),
    setTimeout: (fn, ms) => {
      const timer = setTimeout(fn, Math.max(0, ms) / factor)
      timer.unref?.()
      return timer
    },
    clearTimeout: (timer) => {
      if (timer !== undefined) clearTimeout(timer as NodeJS.Timeout)
    },
  }
}
