/**
 * One tenant's presence subscriptions (DESIGN §7, research §3): people split into shards of ≤ 650, one shard
 * per usable service account, each shard one Graph subscription with includeResourceData, our encryption
 * certificate, a random clientState and a lifecycle URL.
 *
 * - renewed by PATCH well before the 60-minute expiry (renewBeforeMs + jitter, so many shards do not renew at
 *   the same second); a renewal answering 404 recreates;
 * - 409 on create (a subscription of ours survived a restart or a lost answer): find the account's stale
 *   presence subscription, delete it, create again;
 * - lifecycle: reauthorizationRequired → one PATCH (research: never reauthorize and PATCH within 10 min);
 *   subscriptionRemoved → recreate; missed → reconcile the shard;
 * - people changes re-plan the shards (debounced); an account that needs a sign-in loses its shard and its
 *   people are polled until another account takes them.
 *
 * Every gap (create, recreate, reauthorization, missed) asks the reconciler to read the shard's people at once.
 * All changes run one at a time per tenant (a promise chain), so timers, lifecycle events and re-plans never
 * interleave. Single instance: DESIGN §9's per-shard database lease is the scale-out step not built yet.
 */
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import { backoffDelay } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import type { DelegatedGraph, SubscriptionResource } from '../graph/service-accounts.js'
import { GraphApiError } from '../graph/types.js'
import type { Sealer } from '../secrets/sealer.js'
import type { EventLogEntry } from '../store/relay-store.js'
import type { SubscriptionStore } from '../store/subscription-store.js'
import type { LifecycleEvent, NotificationInbox } from './notification-inbox.js'
import { planShards, sameMembers } from './shard-planner.js'

const CLIENT_STATE_PURPOSE = 'subscription clientState'

export interface SubscriptionManagerOptions {
  tenantId: string
  notificationUrl: string
  lifecycleNotificationUrl: string
  /** Requested lifetime of a subscription. Graph's maximum for presence is 60 min. Default 55 min. */
  lifetimeMs?: number
  /** Renew when this much lifetime is left (plus up to renewJitterMs). Default 15 min. */
  renewBeforeMs?: number
  renewJitterMs?: number
  /** People changes are collected this long before shards are re-planned. Default 2 s. */
  replanDebounceMs?: number
  /** Base of the retry backoff after a failed create/renew. Default 30 s. */
  retryBaseMs?: number
  maxShardSize?: number
}

/** What the manager needs from the service accounts. */
export interface AccountSource {
  usable(tenantId: string): string[]
  graph(accountId: string): DelegatedGraph
  onChange(listener: (tenantId: string) => void): () => void
}

export interface SubscriptionManagerDeps {
  accounts: AccountSource
  store: SubscriptionStore
  sealer: Sealer
  inbox: NotificationInbox
  certificate(): Promise<{ id: string; base64: string }>
  clock: Clock
  logger: Logger
  counters: Counters
  /** The tenant's people (Graph user ids) who should be observed. */
  people(): string[]
  /** Read these people's presence now (a gap in notifications). */
  reconcile(userIds: readonly string[], why: string): void
  appendEvent(entry: EventLogEntry): Promise<void>
  random?: () => number
}

interface Shard {
  accountId: string
  members: string[]
  subscription: { id: string; clientState: string; expiresAt: number; certificateId: string } | undefined
  timer: ClockTimer | undefined
  failures: number
}

export class SubscriptionManager {
  readonly #o: Required<Omit<SubscriptionManagerOptions, 'tenantId' | 'notificationUrl' | 'lifecycleNotificationUrl'>> & SubscriptionManagerOptions
  readonly #deps: SubscriptionManagerDeps
  readonly #log: Logger
  readonly #shards = new Map<string, Shard>()
  readonly #random: () => number
  #chain: Promise<void> = Promise.resolve()
  #replanTimer: ClockTimer | undefined
  #unsubscribe: (() => void) | undefined
  #running = false
  #lastPeople = ''

  constructor(options: SubscriptionManagerOptions, deps: SubscriptionManagerDeps) {
    this.#o = {
      lifetimeMs: 55 * 60_000,
      renewBeforeMs: 15 * 60_000,
      renewJitterMs: 5 * 60_000,
      replanDebounceMs: 2_000,
      retryBaseMs: 30_000,
      maxShardSize: 650,
      ...options,
    }
    this.#deps = deps
    this.#random = deps.random ?? Math.random
    this.#log = deps.logger.child({ component: 'subscriptions', tenantId: options.tenantId })
  }

  get tenantId(): string {
    return this.#o.tenantId
  }

  /** Resumes persisted subscriptions, then plans the shards. */
  async start(): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#unsubscribe = this.#deps.accounts.onChange((tenantId) => {
      if (tenantId === this.#o.tenantId) this.replanSoon()
    })
    const now = this.#deps.clock.now()
    for (const row of await this.#deps.store.listSubscriptions(this.#o.tenantId)) {
      const shard: Shard = {
        accountId: row.accountId,
        members: row.members,
        subscription: { id: row.id, clientState: this.#deps.sealer.openText(row.clientState, CLIENT_STATE_PURPOSE), expiresAt: row.expiresAt.getTime(), certificateId: row.certificateId },
        timer: undefined,
        failures: 0,
      }
      this.#shards.set(row.accountId, shard)
      this.#register(shard)
      this.#scheduleRenewal(shard, row.expiresAt.getTime() <= now ? 0 : undefined)
    }
    // Notifications may have been missed while the relay was down.
    const resumed = [...this.#shards.values()].flatMap((s) => s.members)
    if (resumed.length > 0) this.#deps.reconcile(resumed, 'relay restarted')
    this.#lastPeople = this.#peopleKey()
    await this.#enqueue(() => this.#replan())
  }

  /** Stops timers. Subscriptions stay at Graph and in the store, so the next start resumes them. */
  async stop(): Promise<void> {
    if (!this.#running) return
    this.#running = false
    this.#unsubscribe?.()
    this.#deps.clock.clearTimeout(this.#replanTimer)
    for (const shard of this.#shards.values()) {
      this.#deps.clock.clearTimeout(shard.timer)
      if (shard.subscription) this.#deps.inbox.unregister(shard.subscription.id)
    }
    await this.#chain
  }

  /** Resolves when every queued change has run (tests). */
  async idle(): Promise<void> {
    for (;;) {
      const chain = this.#chain
      await chain
      if (chain === this.#chain) return
    }
  }

  /** People covered by a live subscription; everyone else of the tenant is polled. */
  subscribedPeople(): Set<string> {
    const now = this.#deps.clock.now()
    const ids = new Set<string>()
    for (const shard of this.#shards.values()) {
      if (shard.subscription !== undefined && shard.subscription.expiresAt > now) for (const id of shard.members) ids.add(id)
    }
    return ids
  }

  /** For the admin API and tests. */
  describe(): Array<{ accountId: string; subscriptionId: string | null; members: number; expiresAt: string | null }> {
    return [...this.#shards.values()].map((s) => ({
      accountId: s.accountId,
      subscriptionId: s.subscription?.id ?? null,
      members: s.members.length,
      expiresAt: s.subscription ? new Date(s.subscription.expiresAt).toISOString() : null,
    }))
  }

  /** Call when the tenant's people may have changed; cheap when they did not. */
  peopleChanged(): void {
    const key = this.#peopleKey()
    if (key === this.#lastPeople) return
    this.#lastPeople = key
    this.replanSoon()
  }

  replanSoon(): void {
    if (!this.#running) return
    this.#deps.clock.clearTimeout(this.#replanTimer)
    this.#replanTimer = this.#deps.clock.setTimeout(() => void this.#enqueue(() => this.#replan()), this.#o.replanDebounceMs)
  }

  // ---- the work ----

  #peopleKey(): string {
    return this.#deps.people().map((p) => p.toLowerCase()).sort().join(',')
  }

  #enqueue(work: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(async () => {
      if (!this.#running) return
      try {
        await work()
      } catch (err) {
        this.#log.error({ err }, 'subscription work failed')
      }
    })
    this.#chain = next
    return next
  }

  async #replan(): Promise<void> {
    const accounts = this.#deps.accounts.usable(this.#o.tenantId)
    const current = new Map([...this.#shards].map(([id, s]) => [id, s.members]))
    const plan = planShards(this.#deps.people(), accounts, current, this.#o.maxShardSize)
    // Shards whose account is gone or has nobody left.
    for (const [accountId, shard] of this.#shards) {
      if (!plan.shards.has(accountId)) await this.#drop(shard, accounts.includes(accountId), 'its account has no people to watch or cannot sign in')
    }
    for (const [accountId, members] of plan.shards) {
      let shard = this.#shards.get(accountId)
      if (shard !== undefined && shard.subscription !== undefined && sameMembers(shard.members, members)) continue
      if (shard === undefined) {
        shard = { accountId, members, subscription: undefined, timer: undefined, failures: 0 }
        this.#shards.set(accountId, shard)
      }
      // Graph cannot change a subscription's resource: a changed shard is a new subscription.
      if (shard.subscription !== undefined) await this.#drop(shard, true, 'its people changed', false)
      shard.members = members
      await this.#create(shard, 'shard planned')
    }
    if (plan.unsubscribed.length > 0) {
      this.#log.info({ polled: plan.unsubscribed.length, accounts: accounts.length }, 'people without a subscription shard are polled')
    }
  }

  /** Deletes the shard's subscription at Graph (best effort) and forgets it. */
  async #drop(shard: Shard, deleteAtGraph: boolean, why: string, forget = true): Promise<void> {
    this.#deps.clock.clearTimeout(shard.timer)
    const sub = shard.subscription
    if (sub !== undefined) {
      this.#deps.inbox.unregister(sub.id)
      shard.subscription = undefined
      await this.#deps.store.deleteSubscription(sub.id)
      if (deleteAtGraph) {
        try {
          await this.#deps.accounts.graph(shard.accountId).remove(sub.id)
        } catch (err) {
          // It expires by itself within the hour; its notifications are then rejected as unknown.
          this.#log.info({ subscriptionId: sub.id, err: (err as Error).message }, 'deleting a subscription at Graph failed; it will expire')
        }
      }
      this.#log.info({ subscriptionId: sub.id, accountId: shard.accountId, why }, 'subscription dropped')
    }
    if (forget) this.#shards.delete(shard.accountId)
  }

  async #create(shard: Shard, why: string, conflictRetried = false): Promise<void> {
    const graph = this.#deps.accounts.graph(shard.accountId)
    const certificate = await this.#deps.certificate()
    const clientState = randomBytes(32).toString('base64url')
    const expiresAt = this.#deps.clock.now() + this.#o.lifetimeMs
    const body = {
      changeType: 'updated',
      notificationUrl: this.#o.notificationUrl,
      lifecycleNotificationUrl: this.#o.lifecycleNotificationUrl,
      resource: `/communications/presences?$filter=id in (${shard.members.map((id) => `'${id}'`).join(',')})`,
      expirationDateTime: new Date(expiresAt).toISOString(),
      clientState,
      includeResourceData: true,
      encryptionCertificate: certificate.base64,
      encryptionCertificateId: certificate.id,
      latestSupportedTlsVersion: 'v1_2',
    }
    let created: SubscriptionResource
    // Graph may notify (and validate) before its answer names the subscription: the inbox knows it by clientState.
    const expected = { tenantId: this.#o.tenantId, clientState, onLifecycle: () => undefined }
    this.#deps.inbox.expect(clientState, expected)
    try {
      created = await graph.create(body)
    } catch (err) {
      this.#deps.inbox.forget(clientState)
      if (err instanceof GraphApiError && err.status === 409 && !conflictRetried) {
        this.#deps.counters.inc('subscriptions.conflicts')
        await this.#deleteStale(graph)
        return this.#create(shard, why, true)
      }
      this.#failed(shard, 'create', err)
      return
    }
    const confirmed = Date.parse(created.expirationDateTime)
    shard.subscription = { id: created.id, clientState, expiresAt: Number.isNaN(confirmed) ? expiresAt : confirmed, certificateId: certificate.id }
    shard.failures = 0
    await this.#deps.store.upsertSubscription({
      id: created.id,
      tenantId: this.#o.tenantId,
      accountId: shard.accountId,
      members: shard.members,
      clientState: this.#deps.sealer.seal(clientState, CLIENT_STATE_PURPOSE),
      certificateId: certificate.id,
      expiresAt: new Date(shard.subscription.expiresAt),
    }, new Date(this.#deps.clock.now()))
    this.#register(shard)
    this.#deps.inbox.forget(clientState)
    this.#scheduleRenewal(shard)
    this.#deps.counters.inc('subscriptions.created')
    this.#log.info({ subscriptionId: created.id, accountId: shard.accountId, members: shard.members.length, why }, 'presence subscription created')
    this.#deps.reconcile(shard.members, `subscription created (${why})`)
  }

  /** After a 409: the account's own presence subscription from before (one per app per user) goes. */
  async #deleteStale(graph: DelegatedGraph): Promise<void> {
    const known = new Set([...this.#shards.values()].flatMap((s) => (s.subscription ? [s.subscription.id] : [])))
    for (const sub of await graph.list()) {
      if (/communications\/presences/i.test(sub.resource) && !known.has(sub.id)) {
        await graph.remove(sub.id)
        this.#log.info({ subscriptionId: sub.id }, 'stale presence subscription deleted after 409 Conflict')
      }
    }
  }

  async #renew(shard: Shard, why: string): Promise<void> {
    const sub = shard.subscription
    if (sub === undefined) return this.#create(shard, why)
    const now = this.#deps.clock.now()
    if (sub.expiresAt <= now) {
      // Too late to renew: Graph has removed it. Its people were polled since it expired.
      this.#deps.counters.inc('subscriptions.expired')
      await this.#drop(shard, false, 'it expired before it could be renewed', false)
      return this.#create(shard, 'expired before renewal')
    }
    const expiresAt = now + this.#o.lifetimeMs
    let renewed: SubscriptionResource
    try {
      renewed = await this.#deps.accounts.graph(shard.accountId).renew(sub.id, new Date(expiresAt).toISOString())
    } catch (err) {
      if (err instanceof GraphApiError && err.status === 404) {
        this.#deps.counters.inc('subscriptions.gone')
        await this.#drop(shard, false, 'Graph no longer knows it (404 on renewal)', false)
        return this.#create(shard, 'renewal answered 404')
      }
      this.#failed(shard, 'renew', err)
      return
    }
    const confirmed = Date.parse(renewed.expirationDateTime)
    sub.expiresAt = Number.isNaN(confirmed) ? expiresAt : confirmed
    shard.failures = 0
    await this.#deps.store.renewSubscription(sub.id, new Date(sub.expiresAt), new Date(now))
    this.#deps.counters.inc(why === 'reauthorizationRequired' ? 'subscriptions.reauthorized' : 'subscriptions.renewed')
    this.#log.debug({ subscriptionId: sub.id, expiresAt: new Date(sub.expiresAt).toISOString(), why }, 'presence subscription renewed')
    this.#scheduleRenewal(shard)
  }

  #failed(shard: Shard, what: 'create' | 'renew', err: unknown): void {
    shard.failures += 1
    const error = err instanceof GraphApiError ? err : undefined
    this.#deps.counters.inc(`subscriptions.${what}Failed`)
    if (error?.code === 'GRAPH_SIGN_IN_REQUIRED') {
      // The account is now needs-sign-in and told us: the re-plan moves its people to polling.
      this.#log.warn({ accountId: shard.accountId, reason: error.message }, `subscription ${what} failed: the service account needs a new sign-in`)
      return
    }
    const delay = error?.retryAfterMs ?? backoffDelay(shard.failures - 1, this.#o.retryBaseMs, 10 * 60_000, this.#random)
    this.#log.warn({ accountId: shard.accountId, code: error?.code, status: error?.status, reason: (err as Error).message, retryInMs: delay }, `subscription ${what} failed`)
    if (shard.failures === 3) {
      void this.#deps.appendEvent({
        tenantId: this.#o.tenantId,
        kind: 'subscription.failing',
        message: `The presence subscription of ${shard.members.length} people keeps failing (${(err as Error).message}); they are polled meanwhile`,
      }).catch(() => undefined)
    }
    this.#deps.clock.clearTimeout(shard.timer)
    shard.timer = this.#deps.clock.setTimeout(() => void this.#enqueue(() => (this.#shards.get(shard.accountId) === shard ? this.#renew(shard, 'retry') : Promise.resolve())), delay)
  }

  #scheduleRenewal(shard: Shard, atMs?: number): void {
    const sub = shard.subscription
    if (sub === undefined) return
    this.#deps.clock.clearTimeout(shard.timer)
    const now = this.#deps.clock.now()
    const delay = atMs ?? Math.max(0, sub.expiresAt - this.#o.renewBeforeMs - this.#random() * this.#o.renewJitterMs - now)
    shard.timer = this.#deps.clock.setTimeout(() => void this.#enqueue(() => (this.#shards.get(shard.accountId) === shard ? this.#renew(shard, 'renewal due') : Promise.resolve())), delay)
  }

  #register(shard: Shard): void {
    const sub = shard.subscription
    if (sub === undefined) return
    this.#deps.inbox.register(sub.id, {
      tenantId: this.#o.tenantId,
      clientState: sub.clientState,
      onLifecycle: (event, subscriptionId) => this.#onLifecycle(shard, event, subscriptionId),
    })
  }

  #onLifecycle(shard: Shard, event: LifecycleEvent, subscriptionId: string): void {
    void this.#enqueue(async () => {
      if (this.#shards.get(shard.accountId) !== shard || shard.subscription?.id.toLowerCase() !== subscriptionId.toLowerCase()) return
      switch (event) {
        case 'reauthorizationRequired':
          // One PATCH renews and reauthorizes (research §3: no reauthorize + PATCH within 10 minutes).
          await this.#renew(shard, 'reauthorizationRequired')
          this.#deps.reconcile(shard.members, 'reauthorization')
          return
        case 'subscriptionRemoved':
          this.#deps.counters.inc('subscriptions.removed')
          await this.#drop(shard, false, 'Graph removed it (subscriptionRemoved)', false)
          await this.#create(shard, 'subscriptionRemoved')
          return
        case 'missed':
          this.#deps.reconcile(shard.members, 'Graph missed notifications')
          return
      }
    })
  }
}
