/**
 * Checks and dispatches what Graph POSTs to the webhook: change notifications (rich, encrypted presence) and
 * lifecycle notifications. The HTTP side (webhook-routes.ts) only answers and enqueues; this runs behind it.
 *
 * Every item must name a subscription we hold and carry its clientState (compared in constant time); a change
 * notification's content is decrypted only after its HMAC matches. Anything else is rejected and counted
 * (`notify.rejected.<reason>`); the other items of the same POST still count. A POST's rejections make ONE log line
 * with the counts per reason: a hostile batch of a thousand items must not write a thousand lines.
 *
 * Two steps: `screen` runs before the webhook answers (cheap: a map lookup and a hash per item) and keeps only the
 * items of subscriptions we hold; `handleNotifications`/`handleLifecycle` run behind the queue and do the expensive
 * part (validation tokens, RSA and AES per item) in slices of a few milliseconds, yielding to the event loop
 * between them, so /healthz and other requests are answered while a large batch is worked through.
 */
import { hash, timingSafeEqual, type KeyObject } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { Counters } from '#kernel/counters.js'
import type { PresenceReading } from '../graph/types.js'
import { DecryptError, decryptResourceData, type EncryptedContent } from './notification-crypto.js'

export type LifecycleEvent = 'reauthorizationRequired' | 'subscriptionRemoved' | 'missed'

/** What the inbox needs to know about a live subscription; the subscription manager registers it. */
export interface SubscriptionListener {
  tenantId: string
  clientState: string
  onLifecycle(event: LifecycleEvent, subscriptionId: string): void
}

export type RejectReason =
  | 'malformed'
  | 'unknown-subscription'
  | 'bad-client-state'
  | 'not-encrypted'
  | 'unknown-certificate'
  | 'bad-key'
  | 'bad-signature'
  | 'bad-data'
  | 'wrong-resource'
  | 'unknown-lifecycle-event'
  | 'bad-validation-token'

export interface NotificationInboxDeps {
  logger: Logger
  counters: Counters
  /** Private key of a notification certificate we hold, by its id. */
  certificateKey(certificateId: string): KeyObject | undefined
  onReadings(tenantId: string, readings: PresenceReading[]): Promise<void>
  /** Checks the POST's validationTokens for a tenant; undefined = genuine. Without it they are not checked. */
  validationTokens?: { check(tenantId: string, tokens: unknown): Promise<string | undefined> } | undefined
}

const LIFECYCLE_EVENTS = new Set<string>(['reauthorizationRequired', 'subscriptionRemoved', 'missed'])
/** Work on a batch yields to the event loop after this long (one RSA-2048 decryption takes about 1 ms). */
const SLICE_MS = 4
/** Graph's clientState is at most 128 characters; a longer one is wrong without hashing it. */
const MAX_CLIENT_STATE_LENGTH = 128

export type BatchKind = 'notification' | 'lifecycle'

/** What `screen` made of a POST's items. */
export type Screening =
  /** Items of subscriptions we hold (and the POST's validationTokens): queue them. */
  | { verdict: 'accepted'; body: { value: Record<string, unknown>[]; validationTokens?: unknown }; items: number }
  /** Only late items of subscriptions we dropped: answer 2xx, nothing to do. */
  | { verdict: 'ignored' }
  /** No item names a subscription we hold with its clientState. */
  | { verdict: 'unauthenticated'; items: number }

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** A batch's rejections, counted per item, logged once. */
class Rejections {
  readonly counts: Partial<Record<RejectReason, number>> = {}
  readonly examples: Partial<Record<RejectReason, string>> = {}
  readonly subscriptionIds = new Set<string>()
  total = 0

  add(reason: RejectReason, item: Record<string, unknown>, why: string): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1
    this.examples[reason] ??= why
    this.total++
    const id = item['subscriptionId']
    if (typeof id === 'string' && this.subscriptionIds.size < 5) this.subscriptionIds.add(id.slice(0, 64))
  }
}

// One-shot hash: a Hash object per item made screening a 600-item batch cost ~8 ms instead of ~1 ms.
const digest = (value: string): Buffer => hash('sha256', value, 'buffer')

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export class NotificationInbox {
  readonly #deps: NotificationInboxDeps
  readonly #log: Logger
  readonly #subscriptions = new Map<string, SubscriptionListener>()
  /** Subscriptions being created: Graph may notify before the create answer names the id. By clientState. */
  readonly #expected = new Map<string, SubscriptionListener>()
  /** Subscriptions we dropped lately: their late notifications are expected, not an attack. */
  readonly #retired = new Set<string>()
  readonly #digests = new WeakMap<SubscriptionListener, Buffer>()

  constructor(deps: NotificationInboxDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'notification-inbox' })
  }

  register(subscriptionId: string, listener: SubscriptionListener): void {
    this.#subscriptions.set(subscriptionId.toLowerCase(), listener)
  }

  unregister(subscriptionId: string): void {
    const id = subscriptionId.toLowerCase()
    if (!this.#subscriptions.delete(id)) return
    this.#retired.add(id)
    if (this.#retired.size > 1000) this.#retired.delete(this.#retired.values().next().value as string)
  }

  /** A create is on its way with this clientState (call before POST /subscriptions, forget after). */
  expect(clientState: string, listener: SubscriptionListener): void {
    this.#expected.set(clientState, listener)
  }

  forget(clientState: string): void {
    this.#expected.delete(clientState)
  }

  /** A subscription create is under way: Graph's validation request for it is expected now (and only now). */
  get validationPending(): boolean {
    return this.#expected.size > 0
  }

  /**
   * Before the webhook answers: which items name a subscription we hold (or one being created) with its
   * clientState. The rest is counted and logged in one line. Cheap: a map lookup and a SHA-256 per item.
   */
  screen(kind: BatchKind, items: readonly Record<string, unknown>[], validationTokens: unknown): Screening {
    const what = kind === 'notification' ? 'notification' : 'lifecycle notification'
    this.#deps.counters.inc(kind === 'notification' ? 'notify.received' : 'notify.lifecycle.received', items.length)
    const rejections = new Rejections()
    const accepted: Record<string, unknown>[] = []
    let retired = 0
    for (const item of items) {
      const outcome = this.#authenticate(item, rejections)
      if (outcome === 'retired') retired++
      else if (outcome !== undefined) accepted.push(item)
    }
    if (retired > 0) {
      this.#deps.counters.inc('notify.ignored.retired', retired)
      this.#log.debug({ what, retired }, 'Graph notifications for retired subscriptions ignored')
    }
    this.#report(what, rejections, items.length)
    if (accepted.length > 0) {
      return { verdict: 'accepted', body: { value: accepted, ...(validationTokens === undefined ? {} : { validationTokens }) }, items: accepted.length }
    }
    return retired > 0 ? { verdict: 'ignored' } : { verdict: 'unauthenticated', items: items.length }
  }

  /** Change notifications: `{ value: [...] }` as Graph POSTs it (after `screen`). */
  async handleNotifications(body: unknown): Promise<void> {
    const items = this.#items(body)
    const byTenant = new Map<string, PresenceReading[]>()
    const verdicts = new Map<string, string | undefined>()
    const tokens = isRecord(body) ? body['validationTokens'] : undefined
    const rejections = new Rejections()
    for await (const { item, listener } of this.#inSlices(items, rejections)) {
      const verifier = this.#deps.validationTokens
      if (verifier !== undefined) {
        if (!verdicts.has(listener.tenantId)) verdicts.set(listener.tenantId, await verifier.check(listener.tenantId, tokens))
        const problem = verdicts.get(listener.tenantId)
        if (problem !== undefined) {
          this.#reject(rejections, 'bad-validation-token', item, problem)
          continue
        }
      }
      const reading = this.#reading(item, rejections)
      if (reading === undefined) continue
      this.#deps.counters.inc('notify.accepted')
      const list = byTenant.get(listener.tenantId) ?? []
      list.push(reading)
      byTenant.set(listener.tenantId, list)
    }
    this.#report('notification', rejections, items.length)
    for (const [tenantId, readings] of byTenant) await this.#deps.onReadings(tenantId, readings)
  }

  /** Lifecycle notifications: reauthorizationRequired, subscriptionRemoved, missed (after `screen`). */
  async handleLifecycle(body: unknown): Promise<void> {
    const items = this.#items(body)
    const rejections = new Rejections()
    for await (const { item, listener } of this.#inSlices(items, rejections)) {
      const event = item['lifecycleEvent']
      if (typeof event !== 'string' || !LIFECYCLE_EVENTS.has(event)) {
        this.#reject(rejections, 'unknown-lifecycle-event', item, `lifecycleEvent "${String(event).slice(0, 64)}" is not one the relay handles`)
        continue
      }
      this.#deps.counters.inc(`notify.lifecycle.${event}`)
      this.#log.info({ subscriptionId: item['subscriptionId'], tenantId: listener.tenantId, lifecycleEvent: event }, 'lifecycle notification')
      listener.onLifecycle(event as LifecycleEvent, String(item['subscriptionId']))
    }
    this.#report('lifecycle notification', rejections, items.length)
  }

  /** The items still ours (re-checked: a subscription may have gone since `screen`), yielding every SLICE_MS. */
  async *#inSlices(items: readonly Record<string, unknown>[], rejections: Rejections): AsyncGenerator<{ item: Record<string, unknown>; listener: SubscriptionListener }> {
    let sliceStart = performance.now()
    for (const item of items) {
      if (performance.now() - sliceStart >= SLICE_MS) {
        await yieldToEventLoop()
        sliceStart = performance.now()
      }
      const listener = this.#authenticate(item, rejections)
      if (listener !== undefined && listener !== 'retired') yield { item, listener }
    }
  }

  /** The object items of a screened body (the webhook checked the shape). */
  #items(body: unknown): Record<string, unknown>[] {
    const value = isRecord(body) ? body['value'] : undefined
    return Array.isArray(value) ? value.filter(isRecord) : []
  }

  /** The listener of the item's subscription, 'retired' for a late item of a dropped one, undefined if rejected. */
  #authenticate(item: Record<string, unknown>, rejections: Rejections): SubscriptionListener | 'retired' | undefined {
    const id = item['subscriptionId']
    if (typeof id !== 'string' || id.length > 128) {
      this.#reject(rejections, 'malformed', item, 'no subscriptionId')
      return undefined
    }
    const given = item['clientState']
    const plausible = typeof given === 'string' && given.length <= MAX_CLIENT_STATE_LENGTH ? given : undefined
    const listener = this.#subscriptions.get(id.toLowerCase()) ?? this.#expectedFor(plausible)
    if (listener === undefined) {
      // Graph delivers late notifications of a subscription we replaced; the reconciliation after the
      // replacement read those people anyway.
      if (this.#retired.has(id.toLowerCase())) return 'retired'
      this.#reject(rejections, 'unknown-subscription', item, 'it names a subscription the relay does not hold')
      return undefined
    }
    // Both sides hashed first: neither the content nor the length of our clientState leaks through timing.
    if (plausible === undefined || !timingSafeEqual(digest(plausible), this.#stateDigest(listener))) {
      this.#reject(rejections, 'bad-client-state', item, 'its clientState does not match the subscription\'s')
      return undefined
    }
    return listener
  }

  /** The listener's clientState hashed once, not once per item. */
  #stateDigest(listener: SubscriptionListener): Buffer {
    let value = this.#digests.get(listener)
    if (value === undefined) {
      value = digest(listener.clientState)
      this.#digests.set(listener, value)
    }
    return value
  }

  /** A subscription whose create has not answered yet, found by its (secret, random) clientState. */
  #expectedFor(clientState: unknown): SubscriptionListener | undefined {
    if (typeof clientState !== 'string' || this.#expected.size === 0) return undefined
    const given = digest(clientState)
    for (const [state, listener] of this.#expected) if (timingSafeEqual(given, digest(state))) return listener
    return undefined
  }

  #reading(item: Record<string, unknown>, rejections: Rejections): PresenceReading | undefined {
    const content = item['encryptedContent']
    if (
      !isRecord(content) ||
      typeof content['data'] !== 'string' ||
      typeof content['dataSignature'] !== 'string' ||
      typeof content['dataKey'] !== 'string' ||
      typeof content['encryptionCertificateId'] !== 'string'
    ) {
      this.#reject(rejections, 'not-encrypted', item, 'it carries no encryptedContent (the relay subscribes with includeResourceData)')
      return undefined
    }
    let value: unknown
    try {
      value = decryptResourceData(content as unknown as EncryptedContent, (id) => this.#deps.certificateKey(id))
    } catch (err) {
      if (err instanceof DecryptError) this.#reject(rejections, err.reason, item, err.message)
      else this.#reject(rejections, 'bad-data', item, (err as Error).message)
      return undefined
    }
    if (!isRecord(value) || typeof value['id'] !== 'string' || typeof value['availability'] !== 'string' || typeof value['activity'] !== 'string') {
      this.#reject(rejections, 'bad-data', item, 'the decrypted content is not a presence')
      return undefined
    }
    // The resource in clear text must name the same user as the signed content.
    const resource = typeof item['resource'] === 'string' ? item['resource'].toLowerCase() : ''
    const userId = value['id'].toLowerCase()
    if (resource !== '' && !resource.includes(userId)) {
      this.#reject(rejections, 'wrong-resource', item, 'the decrypted presence is for another user than the resource it names')
      return undefined
    }
    return { userId, availability: value['availability'], activity: value['activity'] }
  }

  #reject(rejections: Rejections, reason: RejectReason, item: Record<string, unknown>, why: string): void {
    this.#deps.counters.inc(`notify.rejected.${reason}`)
    this.#deps.counters.inc('notify.rejected')
    rejections.add(reason, item, why)
  }

  /** One line for a batch's rejections: the counts per reason, one reason in words, a few subscription ids. */
  #report(what: string, rejections: Rejections, items: number): void {
    if (rejections.total === 0) return
    const first = Object.keys(rejections.counts)[0] as RejectReason
    this.#log.warn(
      { what, items, rejected: rejections.counts, why: `${first}: ${rejections.examples[first] ?? ''}`, subscriptionIds: [...rejections.subscriptionIds] },
      'Graph notification items rejected',
    )
  }
}
