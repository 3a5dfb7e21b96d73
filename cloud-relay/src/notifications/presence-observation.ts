/**
 * How the relay observes Teams presence, per tenant: change notifications through subscriptions held by
 * sync service accounts (when graph.notifications is configured), reconciliation and fallback polling within
 * one read budget. The composition root (app.ts) builds one of these; it only needs the engine's
 * `graphUserIds` and `onTeamsPresence`.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Logger } from 'pino'
import type { Agent } from 'undici'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import type { RelayConfig } from '../config/schema.js'
import { createGraphDispatcher, isMicrosoftAuthority } from '../graph/graph-transport.js'
import { ServiceAccounts } from '../graph/service-accounts.js'
import type { GraphPresenceApi, PresenceReading } from '../graph/types.js'
import { loadSealer, SealError, type Sealer } from '../secrets/sealer.js'
import type { EventLogEntry } from '../store/relay-store.js'
import type { SqlClient } from '../store/sql-client.js'
import { SubscriptionStore } from '../store/subscription-store.js'
import { CertificateKeeper } from './certificate-keeper.js'
import { NotificationInbox } from './notification-inbox.js'
import { PresenceReconciler } from './presence-reconciler.js'
import { ReadBudget } from './read-budget.js'
import { serviceAccountRoutes } from './service-account-routes.js'
import { SubscriptionManager } from './subscription-manager.js'
import { ValidationTokenVerifier } from './validation-tokens.js'
import { LIFECYCLE_PATH, NOTIFICATION_PATH, registerWebhookRoutes, WebhookQueue } from './webhook-routes.js'

const SEAL_CHECK = 'pbx-presence-relay seal check'
const PEOPLE_CHECK_MS = 10_000

export interface PresenceObservationDeps {
  db: SqlClient
  logger: Logger
  clock: Clock
  counters: Counters
  graphFor(tenantId: string): GraphPresenceApi | undefined
  people(tenantId: string): string[]
  onReadings(tenantId: string, readings: PresenceReading[]): Promise<void>
  appendEvent(entry: EventLogEntry): Promise<void>
  graphCaPem?: string | undefined
  /** Sees every reading with where it came from, after filtering (tests and benchmarks). */
  observe?: ((source: 'notification' | 'read' | 'superseded', tenantId: string, readings: readonly PresenceReading[]) => void) | undefined
  /** RELAY_SEAL_KEY. */
  sealKey?: string | undefined
  /** Timings for tests (e.g. a short debounce); merged into each manager's options. */
  subscriptionTuning?: { replanDebounceMs?: number; renewJitterMs?: number; retryBaseMs?: number; maxShardSize?: number; peopleCheckMs?: number }
}

interface TenantObservation {
  reconciler: PresenceReconciler
  manager: SubscriptionManager | undefined
}

export class PresenceObservation {
  readonly #config: Readonly<RelayConfig>
  readonly #deps: PresenceObservationDeps
  readonly #log: Logger
  readonly #tenants = new Map<string, TenantObservation>()
  /** When the last notification for a user (tenant\0userId) was received, on the relay clock. */
  readonly #notifiedAt = new Map<string, number>()
  readonly store: SubscriptionStore
  #accounts: ServiceAccounts | undefined
  #inbox: NotificationInbox | undefined
  #queue: WebhookQueue | undefined
  #peopleTimer: ClockTimer | undefined
  #jwksDispatcher: Agent | undefined
  #running = false

  constructor(config: Readonly<RelayConfig>, deps: PresenceObservationDeps) {
    this.#config = config
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'presence-observation' })
    this.store = new SubscriptionStore(deps.db)
  }

  get accounts(): ServiceAccounts | undefined {
    return this.#accounts
  }

  get inbox(): NotificationInbox | undefined {
    return this.#inbox
  }

  manager(tenantId: string): SubscriptionManager | undefined {
    return this.#tenants.get(tenantId)?.manager
  }

  reconciler(tenantId: string): PresenceReconciler | undefined {
    return this.#tenants.get(tenantId)?.reconciler
  }

  /** Everything queued, planned and read so far is done (tests). */
  async idle(): Promise<void> {
    await this.#queue?.idle()
    for (const t of this.#tenants.values()) {
      await t.manager?.idle()
      await t.reconciler.idle()
    }
  }

  /** The webhook (outside /api/v1). Undefined without graph.notifications. */
  get publicRoutes(): FastifyPluginAsyncTypebox | undefined {
    const queue = this.#queue
    const inbox = this.#inbox
    if (queue === undefined || inbox === undefined) return undefined
    const logger = this.#deps.logger
    return async (app) => registerWebhookRoutes(app, { queue, inbox, logger })
  }

  /** The service account admin routes (inside /api/v1). */
  get apiRoutes(): FastifyPluginAsyncTypebox[] {
    const accounts = this.#accounts
    if (accounts === undefined) return []
    return [async (app) => {
      await app.register(serviceAccountRoutes, {
        deps: {
          accounts,
          shards: (tenantId) => {
            const t = this.#tenants.get(tenantId)
            if (t === undefined) return undefined
            const subscribed = t.manager?.subscribedPeople() ?? new Set<string>()
            const polled = this.#deps.people(tenantId).filter((id) => !subscribed.has(id.toLowerCase())).length
            return { shards: t.manager?.describe() ?? [], polled }
          },
        },
      })
    }]
  }

  /** Builds what the config asks for. Call before the HTTP server is built (it needs the routes). */
  async prepare(): Promise<void> {
    const { config } = { config: this.#config }
    const { logger, clock, counters } = this.#deps
    const notifications = config.graph.notifications
    let sealer: Sealer | undefined
    let certificates: CertificateKeeper | undefined
    if (notifications !== undefined) {
      sealer = await loadSealer({ envKey: this.#deps.sealKey, keyFile: config.secrets.sealKeyFile })
      await this.#checkSeal(sealer)
      certificates = new CertificateKeeper({ store: this.store, sealer, clock, logger: this.#log })
      await certificates.load()
      const keeper = certificates
      const tenants = config.tenants.flatMap((t) => (t.graph ? [{ id: t.id, entraTenantId: t.graph.tenantId, clientId: t.graph.clientId }] : []))
      this.#jwksDispatcher = createGraphDispatcher(this.#deps.graphCaPem)
      const verifier = notifications.verifyValidationTokens
        ? new ValidationTokenVerifier({ authorityHost: config.graph.authorityHost, tenants, dispatcher: this.#jwksDispatcher })
        : undefined
      this.#inbox = new NotificationInbox({
        logger,
        counters,
        certificateKey: (id) => keeper.keyFor(id),
        onReadings: (tenantId, readings) => this.#notified(tenantId, readings),
        validationTokens: verifier,
      })
      this.#queue = new WebhookQueue(this.#inbox, { logger, counters })
      this.#accounts = new ServiceAccounts({
        tenants,
        authorityHost: config.graph.authorityHost,
        graphBaseUrl: config.graph.graphBaseUrl,
        knownAuthority: !isMicrosoftAuthority(config.graph.authorityHost),
        caPem: this.#deps.graphCaPem,
      }, { store: this.store, sealer, clock, logger, appendEvent: (e) => this.#deps.appendEvent(e) })
      await this.#accounts.load()
    }
    const base = notifications?.publicUrl.replace(/\/+$/, '')
    for (const tenant of config.tenants) {
      const graph = this.#deps.graphFor(tenant.id)
      if (graph === undefined) continue
      const budget = new ReadBudget(clock, notifications?.readBudgetPer30s ?? 1200)
      let manager: SubscriptionManager | undefined
      const reconciler = new PresenceReconciler({
        tenantId: tenant.id,
        pollIntervalMs: config.sync.pollIntervalMs,
        reconcileIntervalMs: notifications?.reconcileIntervalMs ?? config.sync.pollIntervalMs,
      }, {
        graph,
        budget,
        clock,
        counters,
        logger: logger.child({ component: 'presence-reconciler', tenant: tenant.id }),
        people: () => this.#deps.people(tenant.id),
        subscribed: () => manager?.subscribedPeople() ?? new Set<string>(),
        onReadings: (tenantId, readings, startedAt) => this.#read(tenantId, readings, startedAt),
      })
      if (notifications !== undefined && base !== undefined && this.#accounts && this.#inbox && sealer && certificates) {
        const keeper = certificates
        manager = new SubscriptionManager({
          tenantId: tenant.id,
          notificationUrl: `${base}${NOTIFICATION_PATH}`,
          lifecycleNotificationUrl: `${base}${LIFECYCLE_PATH}`,
          lifetimeMs: notifications.subscriptionLifetimeMinutes * 60_000,
          renewBeforeMs: notifications.renewBeforeMinutes * 60_000,
          ...subscriptionOptions(this.#deps.subscriptionTuning),
        }, {
          accounts: this.#accounts,
          store: this.store,
          sealer,
          inbox: this.#inbox,
          certificate: () => keeper.current(),
          clock,
          logger,
          counters,
          people: () => this.#deps.people(tenant.id),
          reconcile: (ids, why) => reconciler.reconcileNow(ids, why),
          appendEvent: (e) => this.#deps.appendEvent(e),
        })
      }
      this.#tenants.set(tenant.id, { reconciler, manager })
    }
  }

  async start(): Promise<void> {
    if (this.#running) return
    this.#running = true
    for (const t of this.#tenants.values()) {
      t.reconciler.start()
      await t.manager?.start()
    }
    this.#schedulePeopleCheck()
  }

  async stop(): Promise<void> {
    if (!this.#running) return
    this.#running = false
    this.#deps.clock.clearTimeout(this.#peopleTimer)
    for (const t of this.#tenants.values()) {
      await t.manager?.stop()
      await t.reconciler.stop()
    }
    await this.#queue?.idle()
    await this.#accounts?.stop()
    await this.#jwksDispatcher?.close()
  }

  #notified(tenantId: string, readings: PresenceReading[]): Promise<void> {
    const now = this.#deps.clock.now()
    for (const r of readings) this.#notifiedAt.set(`${tenantId}\0${r.userId.toLowerCase()}`, now)
    this.#deps.observe?.('notification', tenantId, readings)
    return this.#deps.onReadings(tenantId, readings)
  }

  /**
   * A read answers with the state at some moment after it went out; a notification received meanwhile may be
   * newer, and a later change would bring its own notification. So a reading loses against such a notification
   * (found by the compressed day run: reads applied after newer notifications left stale states for minutes).
   */
  #read(tenantId: string, readings: PresenceReading[], startedAt: number): Promise<void> {
    const fresh = readings.filter((r) => (this.#notifiedAt.get(`${tenantId}\0${r.userId.toLowerCase()}`) ?? -Infinity) < startedAt)
    if (fresh.length < readings.length) {
      this.#deps.counters.inc('presence.read.superseded', readings.length - fresh.length)
      this.#deps.observe?.('superseded', tenantId, readings.filter((r) => !fresh.includes(r)))
    }
    this.#deps.observe?.('read', tenantId, fresh)
    return this.#deps.onReadings(tenantId, fresh)
  }

  #schedulePeopleCheck(): void {
    this.#peopleTimer = this.#deps.clock.setTimeout(() => {
      if (!this.#running) return
      for (const t of this.#tenants.values()) t.manager?.peopleChanged()
      this.#schedulePeopleCheck()
    }, this.#deps.subscriptionTuning?.peopleCheckMs ?? PEOPLE_CHECK_MS)
  }

  /** A different seal key is found at start, with what to do, rather than at the first token refresh. */
  async #checkSeal(sealer: Sealer): Promise<void> {
    const sealed = await this.store.readSealCheck()
    if (sealed === undefined) {
      await this.store.writeSealCheck(sealer.seal(SEAL_CHECK, 'seal check'))
      return
    }
    try {
      if (sealer.openText(sealed, 'seal check') !== SEAL_CHECK) throw new SealError('seal check mismatch')
    } catch (err) {
      if (err instanceof SealError) {
        throw new Error(
          `the seal key (${sealer.source}) is not the one this store's secrets were sealed with: start the relay with the original key ` +
            '(RELAY_SEAL_KEY or secrets.sealKeyFile). If it is lost, delete the rows of service_accounts, presence_subscriptions, ' +
            'notification_certificates and seal_check, start the relay, and sign the service accounts in again.',
        )
      }
      throw err
    }
  }
}

function subscriptionOptions(tuning: PresenceObservationDeps['subscriptionTuning']): Omit<NonNullable<PresenceObservationDeps['subscriptionTuning']>, 'peopleCheckMs'> {
  if (tuning === undefined) return {}
  const { peopleCheckMs: _ignored, ...rest } = tuning
  return rest
}
