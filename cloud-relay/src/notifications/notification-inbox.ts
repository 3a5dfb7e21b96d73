/**
 * Checks and dispatches what Graph POSTs to the webhook: change notifications (rich, encrypted presence) and
 * lifecycle notifications. The HTTP side (webhook-routes.ts) only answers and enqueues; this runs behind it.
 *
 * Every item must name a subscription we hold and carry its clientState (compared in constant time); a change
 * notification's content is decrypted only after its HMAC matches. Anything else is rejected, counted
 * (`notify.rejected.<reason>`) and logged once with the reason; the other items of the same POST still count.
 */
import { createHash, timingSafeEqual, type KeyObject } from 'node:crypto'
import type { Logger } from 'pino'
import type { Counters } from '../../../gateway/src/core/counters.js'
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

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest()

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

  /** Change notifications: `{ value: [...] }` as Graph POSTs it. */
  async handleNotifications(body: unknown): Promise<void> {
    const items = this.#items(body, 'notification')
    const byTenant = new Map<string, PresenceReading[]>()
    const verdicts = new Map<string, string | undefined>()
    const tokens = isRecord(body) ? body['validationTokens'] : undefined
    for (const item of items) {
      this.#deps.counters.inc('notify.received')
      const listener = this.#check(item, 'notification')
      if (listener === undefined) continue
      const verifier = this.#deps.validationTokens
      if (verifier !== undefined) {
        if (!verdicts.has(listener.tenantId)) verdicts.set(listener.tenantId, await verifier.check(listener.tenantId, tokens))
        const problem = verdicts.get(listener.tenantId)
        if (problem !== undefined) {
          this.#reject('bad-validation-token', 'notification', item, problem)
          continue
        }
      }
      const reading = this.#reading(item)
      if (reading === undefined) continue
      this.#deps.counters.inc('notify.accepted')
      const list = byTenant.get(listener.tenantId) ?? []
      list.push(reading)
      byTenant.set(listener.tenantId, list)
    }
    for (const [tenantId, readings] of byTenant) await this.#deps.onReadings(tenantId, readings)
  }

  /** Lifecycle notifications: reauthorizationRequired, subscriptionRemoved, missed. */
  async handleLifecycle(body: unknown): Promise<void> {
    for (const item of this.#items(body, 'lifecycle notification')) {
      this.#deps.counters.inc('notify.lifecycle.received')
      const listener = this.#check(item, 'lifecycle notification')
      if (listener === undefined) continue
      const event = item['lifecycleEvent']
      if (typeof event !== 'string' || !LIFECYCLE_EVENTS.has(event)) {
        this.#reject('unknown-lifecycle-event', 'lifecycle notification', item, `lifecycleEvent "${String(event)}" is not one the relay handles`)
        continue
      }
      this.#deps.counters.inc(`notify.lifecycle.${event}`)
      this.#log.info({ subscriptionId: item['subscriptionId'], tenantId: listener.tenantId, lifecycleEvent: event }, 'lifecycle notification')
      listener.onLifecycle(event as LifecycleEvent, String(item['subscriptionId']))
    }
  }

  #items(body: unknown, what: string): Record<string, unknown>[] {
    const value = isRecord(body) ? body['value'] : undefined
    if (!Array.isArray(value)) {
      this.#deps.counters.inc('notify.rejected.malformed')
      this.#log.warn({ reason: 'malformed' }, `${what} rejected: the body has no "value" array`)
      return []
    }
    const items: Record<string, unknown>[] = []
    for (const item of value) {
      if (isRecord(item)) items.push(item)
      else this.#reject('malformed', what, {}, 'an item is not an object')
    }
    return items
  }

  #check(item: Record<string, unknown>, what: string): SubscriptionListener | undefined {
    const id = item['subscriptionId']
    if (typeof id !== 'string') {
      this.#reject('malformed', what, item, 'no subscriptionId')
      return undefined
    }
    const listener = this.#subscriptions.get(id.toLowerCase()) ?? this.#expectedFor(item['clientState'])
    if (listener === undefined) {
      if (this.#retired.has(id.toLowerCase())) {
        // Graph delivers late notifications of a subscription we replaced; the reconciliation after the
        // replacement read those people anyway.
        this.#deps.counters.inc('notify.ignored.retired')
        this.#log.debug({ subscriptionId: id }, `${what} for a retired subscription ignored`)
        return undefined
      }
      this.#reject('unknown-subscription', what, item, 'it names a subscription the relay does not hold')
      return undefined
    }
    const given = item['clientState']
    // Both sides hashed first: neither the content nor the length of our clientState leaks through timing.
    if (typeof given !== 'string' || !timingSafeEqual(digest(given), digest(listener.clientState))) {
      this.#reject('bad-client-state', what, item, 'its clientState does not match the subscription\'s')
      return undefined
    }
    return listener
  }

  /** A subscription whose create has not answered yet, found by its (secret, random) clientState. */
  #expectedFor(clientState: unknown): SubscriptionListener | undefined {
    if (typeof clientState !== 'string' || this.#expected.size === 0) return undefined
    const given = digest(clientState)
    for (const [state, listener] of this.#expected) if (timingSafeEqual(given, digest(state))) return listener
    return undefined
  }

  #reading(item: Record<string, unknown>): PresenceReading | undefined {
    const content = item['encryptedContent']
    if (
      !isRecord(content) ||
      typeof content['data'] !== 'string' ||
      typeof content['dataSignature'] !== 'string' ||
      typeof content['dataKey'] !== 'string' ||
      typeof content['encryptionCertificateId'] !== 'string'
    ) {
      this.#reject('not-encrypted', 'notification', item, 'it carries no encryptedContent (the relay subscribes with includeResourceData)')
      return undefined
    }
    let value: unknown
    try {
      value = decryptResourceData(content as unknown as EncryptedContent, (id) => this.#deps.certificateKey(id))
    } catch (err) {
      if (err instanceof DecryptError) this.#reject(err.reason, 'notification', item, err.message)
      else this.#reject('bad-data', 'notification', item, (err as Error).message)
      return undefined
    }
    if (!isRecord(value) || typeof value['id'] !== 'string' || typeof value['availability'] !== 'string' || typeof value['activity'] !== 'string') {
      this.#reject('bad-data', 'notification', item, 'the decrypted content is not a presence')
      return undefined
    }
    // The resource in clear text must name the same user as the signed content.
    const resource = typeof item['resource'] === 'string' ? item['resource'].toLowerCase() : ''
    const userId = value['id'].toLowerCase()
    if (resource !== '' && !resource.includes(userId)) {
      this.#reject('wrong-resource', 'notification', item, 'the decrypted presence is for another user than the resource it names')
      return undefined
    }
    return { userId, availability: value['availability'], activity: value['activity'] }
  }

  #reject(reason: RejectReason, what: string, item: Record<string, unknown>, why: string): void {
    this.#deps.counters.inc(`notify.rejected.${reason}`)
    this.#deps.counters.inc('notify.rejected')
    this.#log.warn({ reason, subscriptionId: item['subscriptionId'], resource: item['resource'] }, `${what} rejected: ${why}`)
  }
}
