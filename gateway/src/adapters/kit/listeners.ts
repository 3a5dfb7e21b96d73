import type { Logger } from 'pino'

/** A set of listeners whose exceptions are logged, never passed to the code that emitted. */
export class Listeners<T> {
  readonly #set = new Set<(value: T) => void>()
  readonly #logger: Logger
  readonly #threw: string
  readonly #fields: ((value: T) => Record<string, unknown>) | undefined

  /** `threw` is the log message when a listener throws; `fields` adds what identifies the value in that line. */
  constructor(logger: Logger, threw: string, fields?: (value: T) => Record<string, unknown>) {
    this.#logger = logger
    this.#threw = threw
    this.#fields = fields
  }

  /** Returns the function that removes the listener. */
  add(listener: (value: T) => void): () => void {
    this.#set.add(listener)
    return () => this.#set.delete(listener)
  }

  emit(value: T): void {
    for (const listener of this.#set) {
      try {
        listener(value)
      } catch (error) {
        this.#logger.error({ err: error, ...this.#fields?.(value) }, this.#threw)
      }
    }
  }

  clear(): void {
    this.#set.clear()
  }
}
