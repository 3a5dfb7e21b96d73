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

/** A scaled clock whose speed can be changed while it runs. */
export interface ScaledClock extends Clock {
  /**
   * Runs at `factor` × real time from now on; timers already set fire at the same clock time as before. Tests
   * slow the clock to 1× around a restart that must not cost simulated hours on a loaded machine.
   */
  setFactor(factor: number): void
}

/**
 * A clock that runs `factor` times faster than real time, for time-compressed runs (an hour of subscription
 * lifecycle in seconds). now() starts at `startMs` (default: the real time) and advances factor × elapsed;
 * timers fire after ms / factor real milliseconds. It also satisfies the Graph simulator's clock, so a relay
 * and a simulator given the same instance agree on what time it is.
 */
export function createScaledClock(factor: number, startMs: number = Date.now()): ScaledClock {
  const checked = (f: number): number => {
    if (!(f > 0) || !Number.isFinite(f)) throw new Error(`clock factor must be a positive number, got ${f}`)
    return f
  }
  let rate = checked(factor)
  let originClock = startMs
  let originReal = performance.now()
  const exactNow = (): number => originClock + (performance.now() - originReal) * rate
  interface Pending { fn: () => void; due: number; timer: NodeJS.Timeout }
  const pending = new Set<Pending>()
  const arm = (entry: Pending): void => {
    entry.timer = setTimeout(() => {
      pending.delete(entry)
      entry.fn()
    }, Math.max(0, entry.due - exactNow()) / rate)
    entry.timer.unref?.()
  }
  return {
    now: () => Math.floor(exactNow()),
    setTimeout: (fn, ms) => {
      const entry = { fn, due: exactNow() + Math.max(0, ms) } as Pending
      arm(entry)
      pending.add(entry)
      return entry as unknown as ClockTimer
    },
    clearTimeout: (timer) => {
      const entry = timer as unknown as Pending | undefined
      if (entry === undefined || !pending.has(entry)) return
      clearTimeout(entry.timer)
      pending.delete(entry)
    },
    setFactor: (next) => {
      const at = exactNow()
      rate = checked(next)
      originClock = at
      originReal = performance.now()
      for (const entry of pending) {
        clearTimeout(entry.timer)
        arm(entry)
      }
    },
  }
}
