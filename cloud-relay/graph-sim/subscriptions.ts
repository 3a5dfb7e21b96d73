/**
 * Presence change-notification subscriptions of the simulated Graph (research §0.1–0.2, §3, §9):
 * POST/GET/PATCH/DELETE /subscriptions and /subscriptions/{id}/reauthorize, with the validation handshake,
 * delegated-only presence (403 for app tokens unless allowed), one presence subscription per app per
 * delegated user (409), 45–60 minute expiry, ≤ 650 ids, and the notifications and lifecycle events that
 * follow. What is assumed rather than documented is listed in README.md.
 */
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { encryptResourceData, parseEncryptionCertificate, type EncryptionCertificate } from './notification-crypto.js'
import { NotificationDelivery, type OutboundItem, type SimTimers, type WebhookClient } from './notification-delivery.js'
import type { PresenceValue } from './presence-model.js'
import type {
  LifecycleEventName,
  NotificationEvent,
  NotificationSelector,
  NotificationStats,
  SimulatedSubscription,
  SubscriptionEvent,
  SubscriptionTuning,
} from './simulator-types.js'
import type { VerifiedAppToken } from './token-service.js'
import { isRecord } from './wire-format.js'

export const DEFAULT_SUBSCRIPTION_TUNING: SubscriptionTuning = {
  deliveryTimeoutMs: 3_000,
  validationTimeoutMs: 10_000,
  retryFirstDelayMs: 10_000,
  retryMaxDelayMs: 30 * 60_000,
  retryWindowMs: 4 * 3_600_000,
  sweepIntervalMs: 30_000,
  reauthorizationLeadMs: 5 * 60_000,
  batchWindowMs: 10,
  maxBatchItems: 1000,
  maxBatchBytes: 256 * 1024,
}

export const MAX_PRESENCE_SUBSCRIPTION_MS = 60 * 60_000
export const MIN_PRESENCE_SUBSCRIPTION_MS = 45 * 60_000
export const MAX_SUBSCRIPTION_PRESENCE_IDS = 650
/** The Graph change-notification publisher's app id: `azp` of validation tokens (research §3). */
export const GRAPH_NOTIFICATION_PUBLISHER = '0bf30f3b-4a52-48df-9a82-234910c4a086'

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const PRESENCE_SCOPES = ['presence.read.all', 'presence.readwrite.all']
const PATCHABLE = new Set(['expirationDateTime', 'encryptionCertificate', 'encryptionCertificateId', '@odata.type'])

/** A Graph error for the simulator to render. */
export interface SubscriptionFailure {
  status: number
  code: string
  message: string
}

export type SubscriptionResult = { status: number; body?: unknown } | SubscriptionFailure

export interface SubscriptionDeps {
  tenantId: string
  /** Simulator clock (with advance()). */
  now(): number
  /** Token clock (access-token lifetimes). */
  tokenNow(): number
  timers: SimTimers
  client: WebhookClient
  tuning: SubscriptionTuning
  allowAppOnlyPresence: boolean
  /** Reads the user's aggregate presence now (this is also what notices fading and expiry). */
  readPresence(userId: string): PresenceValue
  /** Signs a validation token (aud = app id, azp = Graph's publisher). */
  validationToken(appId: string): Promise<string>
  emitNotification(event: NotificationEvent): void
  emitSubscription(event: SubscriptionEvent): void
}

interface SubscriptionRecord extends SimulatedSubscription {
  certificate: EncryptionCertificate | undefined
  /** reauthorizationRequired already sent for the current authorization. */
  reauthorizationSent: boolean
}

interface FaultRule {
  mode: 'drop' | 'miss'
  remaining: number | undefined
  predicate: ((item: { subscriptionId: string; userId: string }) => boolean) | undefined
}

const fail = (status: number, code: string, message: string): SubscriptionFailure => ({ status, code, message })

export function isFailure(result: object): result is SubscriptionFailure {
  return 'code' in result && 'message' in result
}

export class SubscriptionService {
  private readonly subs = new Map<string, SubscriptionRecord>()
  private readonly delivery: NotificationDelivery
  private readonly faults: FaultRule[] = []
  private sweepTimer: unknown
  private running = false
  private validations = 0
  private validationFailures = 0

  constructor(private readonly deps: SubscriptionDeps) {
    this.delivery = new NotificationDelivery({
      now: deps.now,
      timers: deps.timers,
      client: deps.client,
      tuning: deps.tuning,
      emit: deps.emitNotification,
      decorate: async (items) => {
        const apps = [...new Set(items.filter((i) => i.rich).map((i) => i.appId))]
        if (apps.length === 0) return {}
        return { validationTokens: await Promise.all(apps.map((app) => deps.validationToken(app))) }
      },
    })
  }

  // ----- lifecycle ------------------------------------------------------------------------------------

  start(): void {
    if (this.running) return
    this.running = true
    this.scheduleSweep()
  }

  stop(): void {
    this.running = false
    if (this.sweepTimer !== undefined) this.deps.timers.clear(this.sweepTimer)
    this.sweepTimer = undefined
    this.delivery.stop()
    this.deps.client.close()
  }

  private scheduleSweep(): void {
    if (!this.running) return
    this.sweepTimer = this.deps.timers.set(() => {
      this.sweep()
      this.scheduleSweep()
    }, this.deps.tuning.sweepIntervalMs)
  }

  /**
   * Removes expired subscriptions, sends reauthorizationRequired when the access token behind a subscription
   * is about to expire, and re-reads subscribed users so fading and expiry (lazy in the presence store) turn
   * into notifications.
   */
  sweep(): void {
    const now = this.deps.now()
    const tokenNow = this.deps.tokenNow()
    const users = new Set<string>()
    for (const sub of [...this.subs.values()]) {
      if (now >= sub.expiresAt) {
        this.subs.delete(sub.id)
        this.deps.emitSubscription({ action: 'expired', subscriptionId: sub.id, at: performance.now() })
        continue
      }
      if (
        !sub.reauthorizationSent &&
        sub.authorizedUntil !== undefined &&
        tokenNow >= sub.authorizedUntil - this.deps.tuning.reauthorizationLeadMs
      ) {
        sub.reauthorizationSent = true
        this.sendLifecycle(sub, 'reauthorizationRequired')
      }
      for (const id of sub.userIds) users.add(id)
    }
    for (const id of users) this.deps.readPresence(id)
  }

  // ----- observation and knobs ------------------------------------------------------------------------

  list(): SimulatedSubscription[] {
    return [...this.subs.values()].map((s) => this.publicView(s))
  }

  get(id: string): SimulatedSubscription | undefined {
    const sub = this.subs.get(id)
    return sub === undefined ? undefined : this.publicView(sub)
  }

  stats(): NotificationStats {
    return {
      validations: this.validations,
      validationFailures: this.validationFailures,
      ...this.delivery.counters,
      pending: this.delivery.pending(),
    }
  }

  requestReauthorization(id: string): void {
    this.sendLifecycle(this.require(id), 'reauthorizationRequired')
  }

  /** Graph drops the subscription; with notify, a subscriptionRemoved lifecycle event goes out first. */
  removeSubscription(id: string, notify: boolean): void {
    const sub = this.require(id)
    if (notify) this.sendLifecycle(sub, 'subscriptionRemoved')
    this.subs.delete(id)
    this.deps.emitSubscription({ action: 'removed', subscriptionId: id, at: performance.now() })
  }

  addFault(mode: 'drop' | 'miss', selector: NotificationSelector): void {
    this.faults.push(
      typeof selector === 'number'
        ? { mode, remaining: selector, predicate: undefined }
        : { mode, remaining: undefined, predicate: selector },
    )
  }

  clearFaults(): void {
    this.faults.length = 0
  }

  /** A user's aggregate presence changed: notify every live subscription that covers the user. */
  onPresenceChanged(userId: string, current: PresenceValue): void {
    const id = userId.toLowerCase()
    const now = this.deps.now()
    const tokenNow = this.deps.tokenNow()
    for (const sub of this.subs.values()) {
      if (now >= sub.expiresAt || !sub.userIds.includes(id)) continue
      const item = this.changeItem(sub, id, current)
      if (sub.authorizedUntil !== undefined && tokenNow >= sub.authorizedUntil) {
        // Graph pauses delivery while a subscription waits for reauthorization; what happens meanwhile is lost.
        this.delivery.drop(sub.notificationUrl, [item], 'subscription needs reauthorization')
        continue
      }
      const fault = this.takeFault(sub.id, id)
      if (fault !== undefined) {
        this.delivery.drop(sub.notificationUrl, [item], fault === 'miss' ? 'missed (fault knob)' : 'dropped (fault knob)')
        if (fault === 'miss') this.sendLifecycle(sub, 'missed')
        continue
      }
      this.delivery.enqueue(sub.notificationUrl, item)
    }
  }

  // ----- HTTP operations ------------------------------------------------------------------------------

  async create(caller: VerifiedAppToken, body: unknown): Promise<SubscriptionResult> {
    const result = await this.createChecked(caller, body)
    if (isFailure(result)) {
      this.deps.emitSubscription({
        action: 'rejected',
        subscriptionId: undefined,
        status: result.status,
        reason: result.message,
        at: performance.now(),
      })
    }
    return result
  }

  listFor(caller: VerifiedAppToken, baseUrl: string): SubscriptionResult {
    const mine = [...this.subs.values()].filter((s) => this.visibleTo(s, caller))
    return {
      status: 200,
      body: { '@odata.context': `${baseUrl}/v1.0/$metadata#subscriptions`, value: mine.map((s) => this.json(s)) },
    }
  }

  getFor(caller: VerifiedAppToken, id: string, baseUrl: string): SubscriptionResult {
    const sub = this.owned(caller, id)
    if (isFailure(sub)) return sub
    return { status: 200, body: { '@odata.context': `${baseUrl}/v1.0/$metadata#subscriptions/$entity`, ...this.json(sub) } }
  }

  update(caller: VerifiedAppToken, id: string, body: unknown, baseUrl: string): SubscriptionResult {
    const sub = this.owned(caller, id)
    if (isFailure(sub)) return sub
    if (!isRecord(body)) return fail(400, 'BadRequest', 'The request body must be a subscription object.')
    const unknown = Object.keys(body).filter((k) => !PATCHABLE.has(k))
    if (unknown.length > 0) {
      return fail(
        400,
        'BadRequest',
        `Only expirationDateTime, encryptionCertificate and encryptionCertificateId can be updated; got ${unknown.join(', ')}. ` +
          'To change the notification or lifecycle URL, delete the subscription and create a new one.',
      )
    }
    let expiresAt = sub.expiresAt
    if (body['expirationDateTime'] !== undefined) {
      const parsed = this.expiry(body['expirationDateTime'])
      if (typeof parsed !== 'number') return parsed
      expiresAt = parsed
    }
    let certificate = sub.certificate
    let certificateText = sub.encryptionCertificate
    let certificateId = sub.encryptionCertificateId
    if (body['encryptionCertificate'] !== undefined || body['encryptionCertificateId'] !== undefined) {
      const text = body['encryptionCertificate'] ?? sub.encryptionCertificate
      const certId = body['encryptionCertificateId'] ?? sub.encryptionCertificateId
      const parsed = this.certificate(text, certId)
      if (!('publicKey' in parsed)) return parsed
      certificate = parsed
      certificateText = text as string
      certificateId = certId as string
    }
    sub.expiresAt = expiresAt
    sub.certificate = certificate
    sub.encryptionCertificate = certificateText
    sub.encryptionCertificateId = certificateId
    // A renewal with a fresh token also reauthorizes (research §3: one PATCH does both).
    this.authorize(sub, caller)
    this.deps.emitSubscription({ action: 'renewed', subscriptionId: id, at: performance.now() })
    return { status: 200, body: { '@odata.context': `${baseUrl}/v1.0/$metadata#subscriptions/$entity`, ...this.json(sub) } }
  }

  remove(caller: VerifiedAppToken, id: string): SubscriptionResult {
    const sub = this.owned(caller, id)
    if (isFailure(sub)) return sub
    this.subs.delete(id)
    this.deps.emitSubscription({ action: 'deleted', subscriptionId: id, at: performance.now() })
    return { status: 204 }
  }

  reauthorize(caller: VerifiedAppToken, id: string): SubscriptionResult {
    const sub = this.owned(caller, id)
    if (isFailure(sub)) return sub
    this.authorize(sub, caller)
    this.deps.emitSubscription({ action: 'reauthorized', subscriptionId: id, at: performance.now() })
    return { status: 204 }
  }

  // ----- internals ------------------------------------------------------------------------------------

  private async createChecked(caller: VerifiedAppToken, body: unknown): Promise<SubscriptionResult> {
    if (!isRecord(body)) return fail(400, 'BadRequest', 'The request body must be a subscription object.')
    const str = (name: string): string | undefined => (typeof body[name] === 'string' ? body[name] : undefined)
    const changeType = str('changeType')
    const notificationUrl = str('notificationUrl')
    const resourceText = str('resource')
    const expiration = body['expirationDateTime']
    for (const [name, value] of [
      ['changeType', changeType],
      ['notificationUrl', notificationUrl],
      ['resource', resourceText],
      ['expirationDateTime', expiration],
    ] as const) {
      if (value === undefined) return fail(400, 'BadRequest', `The subscription property '${name}' is required.`)
    }
    const resource = parsePresenceResource(resourceText ?? '')
    if (typeof resource === 'string') return fail(400, 'BadRequest', resource)
    const changeTypes = (changeType ?? '').split(',').map((c) => c.trim())
    if (changeTypes.length !== 1 || changeTypes[0] !== 'updated') {
      return fail(400, 'BadRequest', `changeType '${changeType ?? ''}' is not supported for presence: use 'updated'.`)
    }
    const lifecycleUrl = str('lifecycleNotificationUrl')
    for (const [name, url] of [
      ['notificationUrl', notificationUrl],
      ['lifecycleNotificationUrl', lifecycleUrl],
    ] as const) {
      if (url !== undefined && !isHttpsUrl(url)) {
        return fail(400, 'BadRequest', `Subscription ${name} must be an absolute https URL; got '${url}'.`)
      }
    }
    const clientState = str('clientState')
    if (clientState !== undefined && clientState.length > 128) {
      return fail(400, 'BadRequest', 'clientState must be at most 128 characters.')
    }
    const includeResourceData = body['includeResourceData'] === true
    let certificate: EncryptionCertificate | undefined
    if (includeResourceData) {
      const parsed = this.certificate(body['encryptionCertificate'], body['encryptionCertificateId'])
      if (!('publicKey' in parsed)) return parsed
      certificate = parsed
    }
    const expiresAt = this.expiry(expiration)
    if (typeof expiresAt !== 'number') return expiresAt
    const denied = this.permission(caller)
    if (denied !== undefined) return denied
    const conflict = [...this.subs.values()].find(
      (s) =>
        s.applicationId === caller.appId &&
        this.deps.now() < s.expiresAt &&
        (caller.userId === undefined ? s.resource === resourceText : s.creatorUserId === caller.userId),
    )
    if (conflict !== undefined) {
      return fail(409, 'Conflict', `Subscription Id ${conflict.id} already exists for the requested combination`)
    }
    // The handshake comes last: Graph only calls the endpoint for a request it would accept.
    for (const url of [notificationUrl, lifecycleUrl]) {
      if (url === undefined) continue
      const problem = await this.validateEndpoint(url)
      if (problem !== undefined) {
        return fail(
          400,
          'ValidationError',
          `Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request. (${url}: ${problem})`,
        )
      }
    }
    const sub: SubscriptionRecord = {
      id: randomUUID(),
      resource: resourceText ?? '',
      userIds: resource,
      applicationId: caller.appId,
      creatorUserId: caller.userId,
      changeType: 'updated',
      clientState: clientState ?? null,
      notificationUrl: notificationUrl ?? '',
      lifecycleNotificationUrl: lifecycleUrl ?? null,
      expiresAt,
      includeResourceData,
      encryptionCertificate: includeResourceData ? (str('encryptionCertificate') ?? null) : null,
      encryptionCertificateId: includeResourceData ? (str('encryptionCertificateId') ?? null) : null,
      latestSupportedTlsVersion: str('latestSupportedTlsVersion') ?? 'v1_2',
      authorizedUntil: caller.userId === undefined ? undefined : caller.expiresAt,
      certificate,
      reauthorizationSent: false,
    }
    this.subs.set(sub.id, sub)
    // Reading sets the baseline, so the very first change of a never-read user is noticed as a change.
    for (const id of resource) this.deps.readPresence(id)
    this.deps.emitSubscription({ action: 'created', subscriptionId: sub.id, status: 201, at: performance.now() })
    return { status: 201, body: this.json(sub) }
  }

  private permission(caller: VerifiedAppToken): SubscriptionFailure | undefined {
    if (caller.userId === undefined) {
      if (!this.deps.allowAppOnlyPresence) {
        // research §0.1 / §9: presence subscriptions are delegated-only.
        return fail(
          403,
          'Forbidden',
          'The request is not authorized for this user or application. Presence subscriptions need a delegated ' +
            'token (Presence.Read.All); application permissions are not supported.',
        )
      }
      const roles = caller.roles.map((r) => r.toLowerCase())
      if (PRESENCE_SCOPES.some((p) => roles.includes(p))) return undefined
    } else {
      const scopes = caller.scopes.map((s) => s.toLowerCase())
      if (PRESENCE_SCOPES.some((p) => scopes.includes(p))) return undefined
    }
    return fail(403, 'Forbidden', 'Insufficient privileges: the token needs Presence.Read.All to subscribe to presence.')
  }

  private expiry(value: unknown): number | SubscriptionFailure {
    const parsed = typeof value === 'string' ? Date.parse(value) : Number.NaN
    if (Number.isNaN(parsed)) {
      return fail(400, 'BadRequest', `expirationDateTime '${String(value)}' is not an ISO 8601 date and time.`)
    }
    const now = this.deps.now()
    if (parsed > now + MAX_PRESENCE_SUBSCRIPTION_MS) {
      return fail(400, 'BadRequest', 'Subscription expiration can only be 60 minutes in the future.')
    }
    return Math.max(parsed, now + MIN_PRESENCE_SUBSCRIPTION_MS)
  }

  private certificate(text: unknown, id: unknown): EncryptionCertificate | SubscriptionFailure {
    if (typeof text !== 'string' || text === '' || typeof id !== 'string' || id === '') {
      return fail(
        400,
        'BadRequest',
        'includeResourceData requires encryptionCertificate (base64 X.509, public key) and encryptionCertificateId.',
      )
    }
    if (id.length > 128) return fail(400, 'BadRequest', 'encryptionCertificateId must be at most 128 characters.')
    const parsed = parseEncryptionCertificate(text, id)
    return typeof parsed === 'string' ? fail(400, 'BadRequest', parsed) : parsed
  }

  /** undefined when the endpoint echoed the token correctly, else why not. */
  private async validateEndpoint(url: string): Promise<string | undefined> {
    this.validations++
    const token = `Validation: Testing client application reachability for subscription Request-Id: ${randomUUID()}`
    const target = `${url}${url.includes('?') ? '&' : '?'}validationToken=${encodeURIComponent(token)}`
    const response = await this.deps.client.post(target, '', 'text/plain; charset=utf-8', this.deps.tuning.validationTimeoutMs)
    let problem: string | undefined
    if (response.status === undefined) problem = response.error ?? 'no answer'
    else if (response.status !== 200) problem = `HTTP ${response.status}`
    else if (!(response.contentType ?? '').toLowerCase().startsWith('text/plain')) problem = 'the answer is not text/plain'
    else if (response.body !== token) problem = 'the answer is not the URL-decoded validationToken'
    if (problem !== undefined) this.validationFailures++
    return problem
  }

  private authorize(sub: SubscriptionRecord, caller: VerifiedAppToken): void {
    if (caller.userId === undefined) return
    sub.authorizedUntil = caller.expiresAt
    sub.reauthorizationSent = false
  }

  private owned(caller: VerifiedAppToken, id: string): SubscriptionRecord | SubscriptionFailure {
    const sub = this.subs.get(id)
    if (sub === undefined || this.deps.now() >= sub.expiresAt) {
      return fail(404, 'ResourceNotFound', `The object was not found: subscription '${id}' does not exist or has expired.`)
    }
    if (!this.visibleTo(sub, caller)) {
      return fail(403, 'Forbidden', `Subscription '${id}' belongs to another application or user.`)
    }
    return sub
  }

  /** Delegated callers see what they created with this app; app-only callers see all of the app's. */
  private visibleTo(sub: SubscriptionRecord, caller: VerifiedAppToken): boolean {
    if (sub.applicationId !== caller.appId) return false
    return caller.userId === undefined || sub.creatorUserId === caller.userId
  }

  private require(id: string): SubscriptionRecord {
    const sub = this.subs.get(id)
    if (sub === undefined) throw new Error(`unknown subscription ${id}`)
    return sub
  }

  private takeFault(subscriptionId: string, userId: string): 'drop' | 'miss' | undefined {
    for (const rule of this.faults) {
      if (rule.predicate !== undefined) {
        if (rule.predicate({ subscriptionId, userId })) return rule.mode
        continue
      }
      if ((rule.remaining ?? 0) > 0) {
        rule.remaining = (rule.remaining ?? 0) - 1
        if (rule.remaining === 0) this.faults.splice(this.faults.indexOf(rule), 1)
        return rule.mode
      }
    }
    return undefined
  }

  /**
   * The change notification Graph would send for this subscription and presence, without sending it: for tests
   * and benchmarks that POST batches of their own (floods, replays, tampering). Undefined for an unknown id.
   */
  changeNotification(subscriptionId: string, userId: string, presence: PresenceValue): Record<string, unknown> | undefined {
    const sub = this.subs.get(subscriptionId)
    return sub === undefined ? undefined : this.changeItem(sub, userId.toLowerCase(), presence).payload
  }

  private changeItem(sub: SubscriptionRecord, userId: string, current: PresenceValue): OutboundItem {
    const resourceData = {
      '@odata.id': `users/${userId}/presence`,
      '@odata.type': '#microsoft.graph.presence',
      id: userId,
    }
    const payload: Record<string, unknown> = {
      subscriptionId: sub.id,
      clientState: sub.clientState,
      changeType: 'updated',
      tenantId: this.deps.tenantId,
      organizationId: this.deps.tenantId,
      resource: `communications/presences/${userId}`,
      subscriptionExpirationDateTime: new Date(sub.expiresAt).toISOString(),
      resourceData,
    }
    if (sub.includeResourceData && sub.certificate !== undefined) {
      payload['encryptedContent'] = encryptResourceData(
        { ...resourceData, availability: current.availability, activity: current.activity },
        sub.certificate,
      )
    }
    return { kind: 'change', subscriptionId: sub.id, label: userId, appId: sub.applicationId, rich: sub.includeResourceData, payload }
  }

  private sendLifecycle(sub: SubscriptionRecord, event: LifecycleEventName): void {
    const item: OutboundItem = {
      kind: 'lifecycle',
      subscriptionId: sub.id,
      label: event,
      appId: sub.applicationId,
      rich: false,
      payload: {
        subscriptionId: sub.id,
        subscriptionExpirationDateTime: new Date(sub.expiresAt).toISOString(),
        tenantId: this.deps.tenantId,
        organizationId: this.deps.tenantId,
        clientState: sub.clientState,
        lifecycleEvent: event,
      },
    }
    if (sub.lifecycleNotificationUrl === null) {
      this.delivery.drop(sub.notificationUrl, [item], 'the subscription has no lifecycleNotificationUrl')
      return
    }
    this.delivery.enqueue(sub.lifecycleNotificationUrl, item)
  }

  private publicView(sub: SubscriptionRecord): SimulatedSubscription {
    const { certificate: _c, reauthorizationSent: _r, ...view } = sub
    return { ...view, userIds: [...sub.userIds] }
  }

  /** The subscription resource as Graph returns it. */
  private json(sub: SubscriptionRecord): Record<string, unknown> {
    return {
      id: sub.id,
      resource: sub.resource,
      applicationId: sub.applicationId,
      changeType: sub.changeType,
      clientState: sub.clientState,
      notificationUrl: sub.notificationUrl,
      notificationQueryOptions: null,
      lifecycleNotificationUrl: sub.lifecycleNotificationUrl,
      expirationDateTime: new Date(sub.expiresAt).toISOString(),
      creatorId: sub.creatorUserId ?? sub.applicationId,
      includeResourceData: sub.includeResourceData,
      latestSupportedTlsVersion: sub.latestSupportedTlsVersion,
      encryptionCertificate: sub.encryptionCertificate,
      encryptionCertificateId: sub.encryptionCertificateId,
      notificationUrlAppId: null,
    }
  }
}

/**
 * `/communications/presences/{id}` or `/communications/presences?$filter=id in ('a','b')` (leading slash
 * optional) → lower-case user ids; a string says what is wrong.
 */
export function parsePresenceResource(resource: string): string[] | string {
  const text = resource.trim().replace(/^\//, '')
  const single = /^communications\/presences\/([^/?]+)$/i.exec(text)
  let ids: string[]
  if (single !== null) {
    ids = [(single[1] ?? '').replace(/^\('?|'?\)$/g, '')]
  } else {
    const filter = /^communications\/presences\?\$filter=id\s+in\s+\((.*)\)$/i.exec(text)
    if (filter === null) {
      return (
        `Resource '${resource}' is not supported: use /communications/presences/{id} or ` +
        "/communications/presences?$filter=id in ('{id}',...)."
      )
    }
    ids = (filter[1] ?? '').split(',').map((s) => s.trim().replace(/^'|'$/g, ''))
  }
  const unique = [...new Set(ids.map((id) => id.toLowerCase()))]
  const bad = unique.find((id) => !GUID.test(id))
  if (bad !== undefined) return `Invalid user id '${bad}' in resource: presence subscriptions take Entra object ids (GUIDs).`
  if (unique.length > MAX_SUBSCRIPTION_PRESENCE_IDS) {
    return `Too many ids in the presence filter: ${unique.length}. A presence subscription covers at most ${MAX_SUBSCRIPTION_PRESENCE_IDS} users.`
  }
  return unique
}

function isHttpsUrl(text: string): boolean {
  try {
    return new URL(text).protocol === 'https:'
  } catch {
    return false
  }
}
