/**
 * Failed password logins per client address in a sliding window. An attempt counts from the moment it starts,
 * so a burst of parallel guesses is limited too, not only guesses one after another. The map of addresses is
 * bounded: when full, addresses with nothing in the window go first, then the oldest.
 */
export class LoginThrottle {
  readonly #limit: number
  readonly #windowMs: number
  readonly #maxAddresses: number
  readonly #now: () => number
  readonly #failures = new Map<string, number[]>()
  readonly #inFlight = new Map<string, number>()

  constructor(options: { limit: number; windowMs: number; maxAddresses: number }, now: () => number) {
    this.#limit = options.limit
    this.#windowMs = options.windowMs
    this.#maxAddresses = options.maxAddresses
    this.#now = now
  }

  /** Starts an attempt from `address`; undefined when it must be refused without checking the password. */
  begin(address: string): { end(ok: boolean): void } | undefined {
    const recent = this.#recent(address)
    const inFlight = this.#inFlight.get(address) ?? 0
    if (recent.length + inFlight >= this.#limit) return undefined
    this.#inFlight.set(address, inFlight + 1)
    let ended = false
    return {
      end: (ok) => {
        if (ended) return
        ended = true
        const left = (this.#inFlight.get(address) ?? 1) - 1
        if (left <= 0) this.#inFlight.delete(address)
        else this.#inFlight.set(address, left)
        if (!ok) this.#remember(address, [...this.#recent(address), this.#now()])
      },
    }
  }

  /** Seconds until `address` may try again. */
  retryAfterSeconds(address: string): number {
    const first = this.#recent(address)[0]
    return first === undefined ? 0 : Math.max(1, Math.ceil((first + this.#windowMs - this.#now()) / 1000))
  }

  #recent(address: string): number[] {
    const cutoff = this.#now() - this.#windowMs
    return (this.#failures.get(address) ?? []).filter((at) => at > cutoff)
  }

  #remember(address: string, times: number[]): void {
    this.#failures.delete(address)
    this.#failures.set(address, times)
    if (this.#failures.size <= this.#maxAddresses) return
    const cutoff = this.#now() - this.#windowMs
    for (const [key, list] of this.#failures) if ((list[list.length - 1] ?? 0) <= cutoff) this.#failures.delete(key)
    for (const key of this.#failures.keys()) {
      if (this.#failures.size <= this.#maxAddresses) break
      this.#failures.delete(key)
    }
  }
}
