/**
 * Reads Teams presence with getPresencesByUserId (app-only, 650 ids per request) for one tenant:
 * - people without a working subscription every `pollIntervalMs` (the fallback, and all of polling when no
 *   service account is set up);
 * - subscribed people every `reconcileIntervalMs` (a subscription can go quiet without telling, research §9);
 * - on demand, at once, after a gap (subscription created or recreated, reauthorization, `missed`, restart).
 * All reads share the tenant's ReadBudget (below Graph's 1,500 / 30 s), and honour 429 Retry-After.
 * One read runs at a time per tenant; what became due meanwhile is merged into the next one.
 */
import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import { backoffDelay } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import { GraphApiError, type GraphPresenceApi, type PresenceReading } from '../graph/types.js'
import type { ReadBudget } from './read-budget.js'

const IDS_PER_REQUEST = 650

export interface PresenceReconcilerOptions {
  tenantId: string
  pollIntervalMs: number
  reconcileIntervalMs: number
}

export interface PresenceReconcilerDeps {
  graph: GraphPresenceApi
  budget: ReadBudget
  clock: Clock
  logger: Logger
  counters: Counters
  /** All of the tenant's people (Graph user ids). */
  people(): string[]
  /** People covered by a live subscription. */
  subscribed(): ReadonlySet<string>
  /** `readStartedAt`: when the request went out; a notification received after it is newer than the reading. */
  onReadings(tenantId: string, readings: PresenceReading[], readStartedAt: number): Promise<void>
}

export class PresenceReconciler {
  readonly #o: PresenceReconcilerOptions
  readonly #deps: PresenceReconcilerDeps
  readonly #urgent = new Set<string>()
  /** When each person was last read (request start); a person is due when their interval has passed. */
  readonly #lastRead = new Map<string, number>()
  #nextDueAt = 0
  #timer: ClockTimer | undefined
  #timerAt = Infinity
  #running = false
  #reading: Promise<void> | undefined
  #failures = 0
  #blockedUntil = 0

  constructor(options: PresenceReconcilerOptions, deps: PresenceReconcilerDeps) {
    this.#o = options
    this.#deps = deps
  }

  start(): void {
    if (this.#running) return
    this.#running = true
    this.#nextDueAt = 0
    this.#arm(0)
  }

  async stop(): Promise<void> {
    this.#running = false
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timerAt = Infinity
    await this.#reading
  }

  /** Read these people as soon as the budget allows. */
  reconcileNow(userIds: readonly string[], why: string): void {
    if (userIds.length === 0) return
    for (const id of userIds) this.#urgent.add(id.toLowerCase())
    this.#deps.counters.inc('presence.reconcile.requested')
    this.#deps.logger.debug({ people: userIds.length, why }, 'presence reconciliation requested')
    this.#arm(0)
  }

  /** Resolves when no read is running and nothing urgent waits (tests). */
  async idle(): Promise<void> {
    while (this.#reading !== undefined || (this.#urgent.size > 0 && this.#running)) {
      if (this.#reading !== undefined) await this.#reading
      else await new Promise((resolve) => setImmediate(resolve))
    }
  }

  #arm(delayMs: number): void {
    if (!this.#running) return
    const now = this.#deps.clock.now()
    const at = Math.max(now + delayMs, this.#blockedUntil)
    if (at >= this.#timerAt) return
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timerAt = at
    this.#timer = this.#deps.clock.setTimeout(() => {
      this.#timerAt = Infinity
      this.#tick()
    }, at - now)
  }

  #tick(): void {
    if (!this.#running) return
    if (this.#reading !== undefined) return // the running read re-arms when it ends
    this.#reading = this.#read().finally(() => {
      this.#reading = undefined
      this.#armNext()
    })
  }

  #armNext(): void {
    if (!this.#running) return
    if (this.#urgent.size > 0) return this.#arm(0)
    const now = this.#deps.clock.now()
    this.#arm(Math.max(0, this.#nextDueAt - now))
  }

  async #read(): Promise<void> {
    const now = this.#deps.clock.now()
    const people = this.#deps.people().map((p) => p.toLowerCase())
    const subscribed = this.#deps.subscribed()
    const ids = new Set<string>()
    const known = new Set(people)
    for (const id of this.#urgent) if (known.has(id)) ids.add(id)
    for (const id of this.#lastRead.keys()) if (!known.has(id)) this.#lastRead.delete(id)
    // Per person, so someone moving between subscribed and polled is never between two schedules. People due
    // within the next fifth of their interval come along, so reads stay in large batches.
    let nextDue = Infinity
    let reconciling = false
    for (const id of people) {
      const interval = subscribed.has(id) ? this.#o.reconcileIntervalMs : this.#o.pollIntervalMs
      const last = this.#lastRead.get(id) ?? -Infinity
      if (last + interval * 0.8 <= now) {
        ids.add(id)
        if (subscribed.has(id) && last + interval <= now) reconciling = true
        nextDue = Math.min(nextDue, now + interval)
      } else {
        nextDue = Math.min(nextDue, last + interval)
      }
    }
    // Look again within a poll interval whatever is due: people move to polling when their subscription goes.
    this.#nextDueAt = Math.min(nextDue, now + this.#o.pollIntervalMs)
    if (reconciling) this.#deps.counters.inc('presence.reconcile.periodic')
    const list = [...ids]
    for (let i = 0; i < list.length; i += IDS_PER_REQUEST) {
      if (!this.#running) return
      const chunk = list.slice(i, i + IDS_PER_REQUEST)
      const slot = this.#deps.budget.take()
      if (!slot.ok) {
        // Out of budget: keep the rest for the next read.
        for (const id of list.slice(i)) this.#urgent.add(id)
        this.#deps.counters.inc('presence.read.deferred')
        this.#blockedUntil = this.#deps.clock.now() + slot.waitMs
        return
      }
      try {
        const startedAt = this.#deps.clock.now()
        const readings = await this.#deps.graph.getPresences(chunk)
        this.#failures = 0
        for (const id of chunk) {
          this.#urgent.delete(id)
          this.#lastRead.set(id, startedAt)
        }
        this.#deps.counters.inc('presence.read.requests')
        this.#deps.counters.inc('presence.read.people', chunk.length)
        const reconciled = chunk.filter((id) => subscribed.has(id)).length
        this.#deps.counters.inc('presence.read.reconciled', reconciled)
        this.#deps.counters.inc('presence.read.polled', chunk.length - reconciled)
        await this.#deps.onReadings(this.#o.tenantId, readings, startedAt)
      } catch (err) {
        this.#failures += 1
        for (const id of list.slice(i)) this.#urgent.add(id)
        const retryAfter = err instanceof GraphApiError ? err.retryAfterMs : undefined
        if (err instanceof GraphApiError && err.code === 'GRAPH_THROTTLED') this.#deps.budget.backOff(retryAfter ?? 5_000)
        const delay = retryAfter ?? backoffDelay(this.#failures, Math.min(this.#o.pollIntervalMs, 5_000), 60_000)
        this.#blockedUntil = this.#deps.clock.now() + delay
        if (this.#failures === 1 || this.#failures % 20 === 0) {
          this.#deps.logger.warn({ tenantId: this.#o.tenantId, code: err instanceof GraphApiError ? err.code : undefined, err: (err as Error).message, retryInMs: delay }, 'reading Teams presence failed')
        }
        return
      }
    }
  }
}
