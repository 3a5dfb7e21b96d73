interface Waiter<T> {
  predicate: (item: T) => boolean
  from: number
  resolve: (item: T) => void
}

/**
 * Collects items from a callback source (observations, log lines) and lets a test await the first item that
 * matches, already recorded or still to come, without polling.
 */
export class Recorder<T> {
  readonly items: T[] = []
  readonly #waiters = new Set<Waiter<T>>()

  /** Pass as the listener: `adapter.onObservation(recorder.push)`. */
  readonly push = (item: T): void => {
    this.items.push(item)
    const index = this.items.length - 1
    for (const waiter of this.#waiters) {
      if (index >= waiter.from && waiter.predicate(item)) {
        this.#waiters.delete(waiter)
        waiter.resolve(item)
      }
    }
  }

  /** The index the next item will get; pass it as `from` to wait only for what happens afterwards. */
  mark(): number {
    return this.items.length
  }

  since(from: number): T[] {
    return this.items.slice(from)
  }

  waitFor(predicate: (item: T) => boolean, options: { from?: number; timeoutMs?: number; what?: string } = {}): Promise<T> {
    const from = options.from ?? 0
    const found = this.items.slice(from).find(predicate)
    if (found !== undefined) return Promise.resolve(found)
    const timeoutMs = options.timeoutMs ?? 5000
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        predicate,
        from,
        resolve: (item) => {
          clearTimeout(timer)
          resolve(item)
        },
      }
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${options.what ?? 'a matching item'}; got ${JSON.stringify(this.items.slice(from))}`))
      }, timeoutMs)
      this.#waiters.add(waiter)
    })
  }
}
