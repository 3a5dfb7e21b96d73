/**
 * One tenant's presence writes to Microsoft Graph, between the sync engine and the Graph client (DESIGN §7):
 *
 * - only the latest desired state per person is sent: a queued write is replaced by a newer one for the same
 *   person, and a write equal to what Graph already has from us is dropped (keep-alive refreshes excepted);
 * - never two requests for one person at once, so Graph cannot apply them out of order;
 * - a sliding-window budget below Graph's 10,000 presence requests / 30 s per app per tenant (each inner
 *   request of a $batch counts, research §4) and a bounded number of concurrent HTTP requests;
 * - a lone waiting write goes as a direct request (latency); several go as `$batch` of up to 20;
 * - 429 (outer, or inner in a batch) pauses the tenant for Retry-After and requeues exactly the throttled
 *   writes; 5xx and network failures back off and requeue a few times; other failures are reported per write.
 *
 * Outcomes go to `onOutcome`, one per submitted write (its ticket), including superseded and unchanged ones.
 */
import type { Logger } from 'pino'
import { backoffDelay, type Clock, type ClockTimer } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import {
  GraphApiError,
  type GraphPresenceApi,
  type PresenceWrite,
  type PresenceWriteResult,
  type SettablePresence,
} from './types.js'

/** What we want our session for a user to be. */
export type DesiredSession =
  | { kind: 'set'; presence: SettablePresence; expirationMinutes: number }
  | { kind: 'clear' }

export type WriteResult = 'set' | 'cleared' | 'absent' | 'unchanged' | 'superseded' | 'failed'

export interface WriteOutcome {
  ticket: number
  userId: string
  write: DesiredSession
  result: WriteResult
  /** For 'failed'. */
  error?: Error
}

export interface PresenceWriterOptions {
  /** Requests (as Graph counts them) per window. Default 8,000 / 30 s: below Graph's 10,000 (research §4). */
  rateLimit: { requests: number; windowMs: number }
  /** HTTP requests in flight at once. Default 4. */
  maxConcurrentRequests: number
  /** Writes per $batch, at most 20 (Graph's limit). Default 20. */
  maxBatchSize: number
  /** Back-off after a 5xx or network failure starts here (doubling, jittered). Default 1 s. */
  retryBaseMs: number
  /** Attempts of one write against 5xx/network failures before it is reported failed. Default 3. */
  maxAttempts: number
  /** Used when a 429 carries no Retry-After. Default 5 s. */
  defaultRetryAfterMs: number
}

export const DEFAULT_PRESENCE_WRITER_OPTIONS: PresenceWriterOptions = {
  rateLimit: { requests: 8000, windowMs: 30_000 },
  maxConcurrentRequests: 4,
  maxBatchSize: 20,
  retryBaseMs: 1000,
  maxAttempts: 3,
  defaultRetryAfterMs: 5000,
}

export interface PresenceWriterDeps {
  graph: GraphPresenceApi
  clock: Clock
  logger: Logger
  counters?: Counters
  onOutcome(outcome: WriteOutcome): void
}

export interface SubmitOptions {
  /** Send even if Graph already has this state from us (keep-alive before the 5-minute fade). */
  refresh?: boolean
  /** What the caller believes Graph has from us, used while the writer has no knowledge of its own. */
  believed?: DesiredSession
}

export interface PresenceWriterStats {
  /** Requests as Graph counts them (each write in a batch is one). */
  graphRequests: number
  httpRequests: number
  batches: number
  direct: number
  superseded: number
  unchanged: number
  throttled: number
  failed: number
  /** How many batches had each size. */
  batchSizes: Record<string, number>
}

interface Entry {
  ticket: number
  userId: string
  write: DesiredSession
  refresh: boolean
  attempts: number
}

/** What Graph has from us for a user: a state key, or unknown (after a failure whose effect we cannot tell). */
type Known = string | 'unknown'

const keyOf = (write: DesiredSession): string => (write.kind === 'clear' ? 'none' : `${write.presence.availability}/${write.presence.activity}`)

export class PresenceWriter {
  readonly #options: PresenceWriterOptions
  readonly #deps: PresenceWriterDeps
  readonly #log: Logger
  /** Waiting writes, one per user; Map order is the send order. */
  readonly #queue = new Map<string, Entry>()
  readonly #inFlight = new Set<string>()
  readonly #graphHas = new Map<string, Known>()
  /** Clock times of requests sent, as Graph counts them, within the rate window. */
  readonly #sentAt: number[] = []
  readonly #idleWaiters = new Set<() => void>()
  #active = 0
  #undelivered = 0
  #pausedUntil = 0
  #failures = 0
  #timer: ClockTimer | undefined
  #flushScheduled = false
  #nextTicket = 1
  #stopped = false
  readonly stats: PresenceWriterStats = { graphRequests: 0, httpRequests: 0, batches: 0, direct: 0, superseded: 0, unchanged: 0, throttled: 0, failed: 0, batchSizes: {} }

  constructor(options: Partial<PresenceWriterOptions>, deps: PresenceWriterDeps) {
    const merged = { ...DEFAULT_PRESENCE_WRITER_OPTIONS, ...options }
    if (!(merged.maxBatchSize >= 1 && merged.maxBatchSize <= 20)) throw new Error('maxBatchSize must be 1..20 (Graph allows 20 requests per $batch)')
    if (!(merged.maxConcurrentRequests >= 1)) throw new Error('maxConcurrentRequests must be at least 1')
    if (!(merged.rateLimit.requests >= 1 && merged.rateLimit.windowMs > 0)) throw new Error('rateLimit needs requests >= 1 and windowMs > 0')
    this.#options = merged
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'presence-writer' })
  }

  /** Queues the desired session for a user, replacing a queued one; returns the write's ticket. */
  submit(userId: string, write: DesiredSession, options: SubmitOptions = {}): number {
    const ticket = this.#nextTicket++
    if (this.#stopped) return ticket
    if (!this.#graphHas.has(userId) && options.believed !== undefined) this.#graphHas.set(userId, keyOf(options.believed))
    const replaced = this.#queue.get(userId)
    if (replaced !== undefined) {
      this.stats.superseded++
      this.#deps.counters?.inc('graph.writes_superseded')
      this.#deliverLater({ ticket: replaced.ticket, userId, write: replaced.write, result: 'superseded' })
    }
    const entry: Entry = { ticket, userId, write, refresh: options.refresh ?? false, attempts: 0 }
    if (!this.#inFlight.has(userId) && this.#isUnchanged(entry)) {
      this.#queue.delete(userId)
      this.#dropUnchanged(entry)
      return ticket
    }
    // Replacing keeps the older entry's place, so a person who changes often is not pushed back for ever.
    this.#queue.set(userId, entry)
    this.#scheduleFlush()
    return ticket
  }

  /** Nothing in flight and nothing sendable waiting (writes held back by a pause or the rate limit do not count). */
  get isIdle(): boolean {
    return this.#active === 0 && this.#undelivered === 0 && (this.#queue.size === 0 || this.#timer !== undefined || this.#stopped)
  }

  /** Waiting plus in-flight writes. */
  get backlog(): number {
    return this.#queue.size + this.#inFlight.size
  }

  idle(): Promise<void> {
    if (this.isIdle) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.add(resolve))
  }

  /** Drops what is waiting (no outcomes for it); requests in flight finish. Idempotent. */
  stop(): void {
    this.#stopped = true
    this.#queue.clear()
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#checkIdle()
  }

  // ---- sending -----------------------------------------------------------------------------------------------

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#stopped) return
    this.#flushScheduled = true
    // After the current turn, so writes submitted together (a burst, the keep-alive tick) leave together.
    setImmediate(() => {
      this.#flushScheduled = false
      this.#flush()
    })
  }

  #flush(): void {
    while (!this.#stopped && this.#queue.size > 0 && this.#active < this.#options.maxConcurrentRequests && this.#timer === undefined) {
      const now = this.#deps.clock.now()
      if (now < this.#pausedUntil) {
        this.#wakeAt(this.#pausedUntil - now)
        return
      }
      const budget = this.#budget(now)
      if (budget <= 0) {
        const oldest = this.#sentAt[0] ?? now
        this.#wakeAt(oldest + this.#options.rateLimit.windowMs - now)
        return
      }
      const batch = this.#deps.graph.writePresenceBatch
      // Without $batch support (an API that only has the single calls) writes go one per request.
      const take = batch === undefined ? 1 : Math.min(budget, this.#options.maxBatchSize)
      const entries: Entry[] = []
      for (const entry of this.#queue.values()) {
        if (entries.length >= take) break
        if (this.#inFlight.has(entry.userId)) continue
        this.#queue.delete(entry.userId)
        if (this.#isUnchanged(entry)) {
          this.#dropUnchanged(entry)
          continue
        }
        entries.push(entry)
      }
      if (entries.length === 0) break
      for (const entry of entries) {
        this.#inFlight.add(entry.userId)
        this.#sentAt.push(now)
      }
      this.#active++
      this.stats.httpRequests++
      this.stats.graphRequests += entries.length
      const [first] = entries
      if (entries.length === 1 && first !== undefined) {
        // A lone write goes direct: no batch envelope to build and parse on the latency path.
        this.stats.direct++
        void this.#sendOne(first)
      } else if (batch !== undefined) {
        this.stats.batches++
        this.stats.batchSizes[String(entries.length)] = (this.stats.batchSizes[String(entries.length)] ?? 0) + 1
        void this.#sendBatch(entries, batch.bind(this.#deps.graph))
      }
    }
    this.#checkIdle()
  }

  #budget(now: number): number {
    const windowStart = now - this.#options.rateLimit.windowMs
    let drop = 0
    while (drop < this.#sentAt.length && (this.#sentAt[drop] ?? now) <= windowStart) drop++
    if (drop > 0) this.#sentAt.splice(0, drop)
    return this.#options.rateLimit.requests - this.#sentAt.length
  }

  #wakeAt(ms: number): void {
    if (this.#timer !== undefined) return
    this.#timer = this.#deps.clock.setTimeout(() => {
      this.#timer = undefined
      this.#flush()
    }, Math.max(1, ms))
    this.#checkIdle()
  }

  async #sendOne(entry: Entry): Promise<void> {
    const { graph } = this.#deps
    let result: PresenceWriteResult
    try {
      if (entry.write.kind === 'set') {
        await graph.setPresence(entry.userId, entry.write.presence, entry.write.expirationMinutes)
        result = { ok: true, outcome: 'set' }
      } else {
        result = { ok: true, outcome: await graph.clearPresence(entry.userId) }
      }
    } catch (err) {
      result = { ok: false, error: asGraphError(err) }
    }
    this.#settle(entry, result)
    this.#requestDone()
  }

  async #sendBatch(entries: Entry[], send: (writes: readonly PresenceWrite[]) => Promise<PresenceWriteResult[]>): Promise<void> {
    const writes: PresenceWrite[] = entries.map((e) =>
      e.write.kind === 'set'
        ? { kind: 'set', userId: e.userId, presence: e.write.presence, expirationMinutes: e.write.expirationMinutes }
        : { kind: 'clear', userId: e.userId },
    )
    let results: PresenceWriteResult[]
    try {
      results = await send(writes)
    } catch (err) {
      // The batch as a whole failed (outer 429, 5xx, network, token): every write shares that fate.
      const error = asGraphError(err)
      results = entries.map(() => ({ ok: false, error }))
    }
    entries.forEach((entry, i) => this.#settle(entry, results[i] ?? { ok: false, error: new GraphApiError('GRAPH_UNAVAILABLE', 'no result for this write') }))
    this.#requestDone()
  }

  #requestDone(): void {
    this.#active--
    this.#scheduleFlush()
    this.#checkIdle()
  }

  #settle(entry: Entry, result: PresenceWriteResult): void {
    this.#inFlight.delete(entry.userId)
    if (result.ok) {
      this.#failures = 0
      this.#graphHas.set(entry.userId, keyOf(entry.write))
      this.#deliver({ ticket: entry.ticket, userId: entry.userId, write: entry.write, result: result.outcome })
      return
    }
    const error = result.error
    const now = this.#deps.clock.now()
    if (error.code === 'GRAPH_THROTTLED' || error.status === 429) {
      this.stats.throttled++
      this.#deps.counters?.inc('graph.writes_throttled')
      const pause = error.retryAfterMs ?? this.#options.defaultRetryAfterMs
      if (now + pause > this.#pausedUntil) {
        this.#pausedUntil = now + pause
        this.#log.warn({ retryAfterMs: pause }, 'Microsoft Graph throttled presence writes; pausing this tenant\'s writes for Retry-After')
      }
      this.#requeue(entry)
      return
    }
    const transient = error.code === 'GRAPH_UNAVAILABLE' || (error.status !== undefined && error.status >= 500)
    if (transient) {
      // The write may or may not have landed.
      this.#graphHas.set(entry.userId, 'unknown')
      entry.attempts++
      if (entry.attempts < this.#options.maxAttempts) {
        this.#failures++
        const pause = error.retryAfterMs ?? backoffDelay(this.#failures, this.#options.retryBaseMs, 60_000)
        this.#pausedUntil = Math.max(this.#pausedUntil, now + pause)
        this.#log.warn({ retryInMs: pause, err: error.message }, 'presence write failed; backing off')
        this.#requeue(entry)
        return
      }
    }
    this.stats.failed++
    this.#deps.counters?.inc('graph.writes_failed')
    this.#deliver({ ticket: entry.ticket, userId: entry.userId, write: entry.write, result: 'failed', error })
  }

  /** Back in the queue, unless a newer write for the user arrived meanwhile (then this one is superseded). */
  #requeue(entry: Entry): void {
    if (this.#stopped) return
    if (this.#queue.has(entry.userId)) {
      this.stats.superseded++
      this.#deliver({ ticket: entry.ticket, userId: entry.userId, write: entry.write, result: 'superseded' })
      return
    }
    this.#queue.set(entry.userId, entry)
  }

  #isUnchanged(entry: Entry): boolean {
    return !entry.refresh && this.#graphHas.get(entry.userId) === keyOf(entry.write)
  }

  #dropUnchanged(entry: Entry): void {
    this.stats.unchanged++
    this.#deliverLater({ ticket: entry.ticket, userId: entry.userId, write: entry.write, result: 'unchanged' })
  }

  #deliver(outcome: WriteOutcome): void {
    try {
      this.#deps.onOutcome(outcome)
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'presence write outcome handler failed')
    }
  }

  /** Outcomes decided inside submit() are delivered after it returns, so the caller can record its ticket first. */
  #deliverLater(outcome: WriteOutcome): void {
    this.#undelivered++
    queueMicrotask(() => {
      this.#undelivered--
      this.#deliver(outcome)
      this.#checkIdle()
    })
  }

  #checkIdle(): void {
    if (!this.isIdle) return
    for (const resolve of this.#idleWaiters) resolve()
    this.#idleWaiters.clear()
  }
}

function asGraphError(err: unknown): GraphApiError {
  if (err instanceof GraphApiError) return err
  return new GraphApiError('GRAPH_UNAVAILABLE', `presence write failed: ${(err as Error).message ?? String(err)}`)
}
