import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Clock } from '../../gateway/src/core/clock.js'
import type { Counters } from '../../gateway/src/core/counters.js'
import { EmbeddedBroker } from './broker/embedded-broker.js'
import { hashSecret, verifySecret } from './broker/secrets.js'
import type { RelayConfig } from './config/schema.js'
import { DirectoryService } from './directory/directory-service.js'
import { createGraphPresenceClient, type ClientCertificate } from './graph/graph-presence-client.js'
import { isMicrosoftAuthority } from './graph/graph-transport.js'
import type { GraphDirectoryApi, GraphPresenceApi, PresenceReading } from './graph/types.js'
import { buildServer, type ExplanationSource, type HttpServer } from './http/server.js'
import { RelayLink } from './ingest/relay-link.js'
import { EventRetention } from './store/event-retention.js'
import { migrate } from './store/migrate.js'
import { DirectoryStore } from './store/directory-store.js'
import { RelayStore } from './store/relay-store.js'
import { WriteBehindSyncStore } from './store/write-behind-store.js'
import { openSqlClient, type SqlClient } from './store/sql-client.js'
import { effectiveSettings, type SyncSettings } from './sync/mapping.js'
import { SyncEngine } from './sync/sync-engine.js'
import { PresenceObservation } from './notifications/presence-observation.js'
// --- enrollment (issue 5, H1) ---
import { loadOrCreateRelayCa } from './enrollment/ca-store.js'
import { EnrollmentService } from './enrollment/enrollment-service.js'
import { enrollmentAdminRoutes, enrollmentPublicRoutes } from './enrollment/enrollment-routes.js'
import { relayHttpsMaterial } from './enrollment/https-material.js'
import type { RelayPki } from './pki/relay-pki.js'
import { loadSealer } from './secrets/sealer.js'
import { EnrollmentStore } from './store/enrollment-store.js'
// --- end enrollment ---

export const RELAY_VERSION = '0.1.0'

export interface RelayDeps {
  logger: Logger
  clock: Clock
  counters: Counters
  /** Extra CA (PEM) trusted for Graph and the token endpoint (the Graph simulator's). */
  graphCaPem?: string | undefined
  /** DATABASE_URL from the environment; overrides the config. */
  databaseUrl?: string | undefined
  /** The admin API's "why" view; by default the sync engine's live model (StoreExplainer reads the store instead). */
  explainer?: ExplanationSource | undefined
  /** RELAY_SEAL_KEY from the environment; overrides secrets.sealKeyFile. */
  sealKey?: string | undefined
  /** Subscription timings for tests (shorter debounce, fixed jitter). */
  subscriptionTuning?: { replanDebounceMs?: number; renewJitterMs?: number; retryBaseMs?: number; maxShardSize?: number; peopleCheckMs?: number } | undefined
  /** Sees every Teams presence reading with its source (tests and benchmarks). */
  observePresence?: ((source: 'notification' | 'read' | 'superseded', tenantId: string, readings: readonly PresenceReading[]) => void) | undefined
}

type GraphClient = GraphPresenceApi & GraphDirectoryApi & { close(): Promise<void> | void }

const COMMAND_SEQ_BLOCK = 1000

type TenantGraphConfig = NonNullable<RelayConfig['tenants'][number]['graph']>

/** The tenant's Graph credential: the secret, or the certificate and key read from their PEM files. */
async function graphCredential(
  tenantId: string,
  graph: TenantGraphConfig,
): Promise<{ clientSecret: string } | { clientCertificate: ClientCertificate }> {
  if (graph.certificateFile === undefined || graph.privateKeyFile === undefined) {
    return { clientSecret: graph.clientSecret ?? '' }
  }
  const read = async (what: string, file: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8')
    } catch (err) {
      throw new Error(`tenant ${tenantId}: cannot read the Graph ${what} file ${file}: ${(err as Error).message}`)
    }
  }
  return {
    clientCertificate: {
      certificatePem: await read('certificateFile', graph.certificateFile),
      privateKeyPem: await read('privateKeyFile', graph.privateKeyFile),
    },
  }
}

/**
 * The cloud relay: broker (embedded or external) → validated gateway messages → sync engine → Graph and
 * gateway commands. Built from a validated config and explicit deps; nothing happens until start().
 */
export class Relay {
  readonly #config: Readonly<RelayConfig>
  readonly #deps: RelayDeps
  readonly #log: Logger
  readonly #gatewayTenant = new Map<string, string>()
  readonly #gatewaySecret = new Map<string, string>()
  readonly #graph = new Map<string, GraphClient>()
  readonly #commandSeq = new Map<string, { next: number; end: number }>()
  readonly #commandSeqLock = new Map<string, Promise<number>>()
  #observation: PresenceObservation | undefined
  #db: SqlClient | undefined
  #store: RelayStore | undefined
  #engine: SyncEngine | undefined
  #syncStore: WriteBehindSyncStore | undefined
  #broker: EmbeddedBroker | undefined
  #link: RelayLink | undefined
  #http: HttpServer | undefined
  #retention: EventRetention | undefined
  #directory: DirectoryService | undefined
  #enrollment: EnrollmentService | undefined // enrollment (issue 5, H1)
  #pki: RelayPki | undefined // enrollment (issue 5, H1)
  #started = false

  constructor(config: Readonly<RelayConfig>, deps: RelayDeps) {
    this.#config = config
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'relay' })
  }

  get engine(): SyncEngine {
    if (!this.#engine) throw new Error('relay not started')
    return this.#engine
  }

  /** User import, mapping and seats. */
  get directory(): DirectoryService {
    if (!this.#directory) throw new Error('relay not started')
    return this.#directory
  }

  /** Teams presence observation: notifications, subscriptions, service accounts, reconciliation. */
  get observation(): PresenceObservation {
    if (!this.#observation) throw new Error('relay not started')
    return this.#observation
  }

  /** Gateway enrollment: codes, certificates, renewal, revocation, the broker's connect check (issue 5, H1). */
  get enrollment(): EnrollmentService {
    if (!this.#enrollment) throw new Error('relay not started')
    return this.#enrollment
  }

  /** The relay CA: broker server certificates, the relay's own client certificate, CRLs (issue 5, H1). */
  get pki(): RelayPki {
    if (!this.#pki) throw new Error('relay not started')
    return this.#pki
  }

  get store(): RelayStore {
    if (!this.#store) throw new Error('relay not started')
    return this.#store
  }

  /** The embedded broker's port (when embedded). */
  get brokerPort(): number | undefined {
    return this.#broker?.port
  }

  /** The admin API's port once listening (http.port 0 picks a free one). */
  get httpPort(): number | undefined {
    const address = this.#http?.server.address()
    return address && typeof address === 'object' ? address.port : undefined
  }

  async start(): Promise<void> {
    if (this.#started) return
    this.#started = true
    const { logger, clock, counters } = this.#deps
    const config = this.#config
    const db = await openSqlClient({ databaseUrl: this.#deps.databaseUrl ?? config.database.url, dataDir: config.database.pgliteDir }, logger.child({ component: 'store' }))
    this.#db = db
    await migrate(db, logger.child({ component: 'store' }))
    const store = new RelayStore(db)
    this.#store = store
    const retention = new EventRetention({ retentionDays: config.eventLog.retentionDays }, { store, clock, logger })
    retention.start()
    this.#retention = retention

    for (const tenant of config.tenants) {
      await store.upsertTenant(tenant.id, tenant.name || tenant.id)
      for (const gateway of tenant.gateways) {
        const hash = hashSecret(gateway.password)
        await store.upsertGateway({ id: gateway.id, tenantId: tenant.id, name: gateway.name, secretHash: hash })
        this.#gatewaySecret.set(gateway.id, hash)
      }
      if (tenant.graph) {
        this.#graph.set(tenant.id, createGraphPresenceClient({
          tenantId: tenant.graph.tenantId,
          clientId: tenant.graph.clientId,
          ...(await graphCredential(tenant.id, tenant.graph)),
          authorityHost: config.graph.authorityHost,
          graphBaseUrl: config.graph.graphBaseUrl,
          // Any authority that is not a Microsoft cloud (the simulator, a proxy) must skip instance discovery.
          knownAuthority: !isMicrosoftAuthority(config.graph.authorityHost),
          ...(this.#deps.graphCaPem ? { caPem: this.#deps.graphCaPem } : {}),
        }, { logger: logger.child({ component: 'graph', tenant: tenant.id }) }))
      } else {
        this.#log.warn({ tenant: tenant.id }, 'tenant has no Graph credentials: Teams presence is not synced for it')
      }
    }
    for (const gateway of await store.listGateways()) this.#gatewayTenant.set(gateway.id, gateway.tenantId)

    // --- enrollment (issue 5, H1): the CA (key sealed in the store), codes and certificates ---
    const sealer = await loadSealer({ envKey: this.#deps.sealKey, keyFile: config.secrets.sealKeyFile })
    const enrollmentStore = new EnrollmentStore(db)
    const pki = await loadOrCreateRelayCa({ store: enrollmentStore, sealer, clock, logger })
    this.#pki = pki
    const enrollment = new EnrollmentService({
      store: enrollmentStore,
      pki,
      clock,
      logger,
      counters,
      settings: config.enrollment,
      appendEvent: (entry) => store.appendEvent({ at: new Date(clock.now()), ...entry }),
    })
    await enrollment.load()
    enrollment.onGatewayCreated((gateway) => this.#gatewayTenant.set(gateway.id, gateway.tenantId))
    this.#enrollment = enrollment
    if (config.enrollment.brokerUrls.length === 0) {
      this.#log.warn('enrollment.brokerUrls is empty: enrolled boxes learn no broker URL and need relay.url in their own config')
    }
    // --- end enrollment ---

    const relayWide: SyncSettings = {
      busyPresence: config.sync.busyPresence,
      meetingSetsDnd: config.sync.meetingSetsDnd,
      ringingIsBusy: config.sync.ringingIsBusy,
      dndOnOtherEndpointsDuringCall: config.sync.dndOnOtherEndpointsDuringCall,
      reflectDndOnBusyEndpoint: config.sync.reflectDndOnBusyEndpoint,
    }
    // The engine's hot-path writes are batched (see WriteBehindSyncStore): several round trips per decision
    // capped a relay on PGlite at ~850 decisions/s.
    const syncStore = new WriteBehindSyncStore(store, { flushMs: 20 }, logger.child({ component: 'store' }))
    this.#syncStore = syncStore
    const engine: SyncEngine = new SyncEngine({
      store: syncStore,
      logger,
      clock,
      counters,
      settings: relayWide,
      timings: {
        sessionExpirationMinutes: config.sync.sessionExpirationMinutes,
        sessionRefreshMs: config.sync.sessionRefreshMs,
        echoHoldMs: config.sync.echoHoldMs,
        gatewayOfflineGraceMs: config.sync.gatewayOfflineGraceMs,
        retryBaseMs: 1000,
      },
      settingsFor: (tenantId) => {
        const tenant = config.tenants.find((t) => t.id === tenantId)
        return effectiveSettings(relayWide, tenant?.settings ?? null)
      },
      graphFor: (tenantId) => this.#graph.get(tenantId),
      presenceWriter: { rateLimit: config.graph.writeRateLimit, maxConcurrentRequests: config.graph.maxConcurrentWrites },
      sendSetDnd: (gatewayId, data) => this.#requireLink().sendSetDnd(gatewayId, data),
      tenantOf: (gatewayId) => this.#gatewayTenant.get(gatewayId),
      resolveDirectoryEntry: (tenantId, gatewayId, connectorId, entry) => directory.resolveDirectoryEntry(tenantId, gatewayId, connectorId, entry),
    })
    this.#engine = engine
    const directory: DirectoryService = new DirectoryService({
      store: new DirectoryStore(db),
      relayStore: syncStore,
      people: engine,
      graphFor: (tenantId) => this.#graph.get(tenantId),
      settingsFor: (tenantId) => {
        const tenant = config.tenants.find((t) => t.id === tenantId)
        if (!tenant) return undefined
        const d = tenant.directory
        return { enabledOnly: d?.enabledOnly ?? true, domains: d?.domains ?? [], departments: d?.departments ?? [], groups: d?.groups ?? [], onNoLongerMatching: d?.onNoLongerMatching ?? 'deactivate', dailyAt: d?.dailyAt, seats: d?.seats }
      },
      gatewaysOf: (tenantId) => [...this.#gatewayTenant].filter(([, t]) => t === tenantId).map(([g]) => g),
      logger,
      clock,
    })
    this.#directory = directory
    await engine.load()
    await directory.start(config.tenants.map((t) => t.id))

    let brokerUrl = config.broker.url ?? ''
    if (config.broker.mode === 'embedded') {
      const broker = new EmbeddedBroker({ host: config.broker.host, port: config.broker.port }, {
        relayUsername: config.broker.relayUsername,
        relayPassword: config.broker.relayPassword,
        verifyGateway: (gatewayId, password) => {
          const hash = this.#gatewaySecret.get(gatewayId)
          return hash !== undefined && verifySecret(password, hash)
        },
      }, { logger: logger.child({ component: 'broker' }), counters })
      await broker.start()
      this.#broker = broker
      brokerUrl = `mqtt://127.0.0.1:${broker.port}`
    }

    const link = new RelayLink({
      url: brokerUrl,
      username: config.broker.relayUsername,
      password: config.broker.relayPassword,
      commandTimeoutMs: config.sync.commandTimeoutMs,
    }, {
      knowsGateway: (gatewayId) => this.#gatewayTenant.has(gatewayId),
      onStatus: async (gatewayId, data, retained, seq) => {
        const online = data.state === 'online'
        await store.setGatewayStatus(gatewayId, data.state, data.reason ?? null, data.version, new Date(clock.now()))
        if (online && !retained) await engine.resetGatewaySeq(gatewayId, seq)
        engine.onGatewayStatus(gatewayId, online, data.reason)
        this.#log.info({ gatewayId, state: data.state, reason: data.reason, retained }, 'gateway status')
        if (online && retained) {
          // We (re)started while the gateway stayed connected: ask for a fresh snapshot.
          link.sendResync(gatewayId, 'relay started').catch((err: unknown) => this.#log.warn({ gatewayId, err: (err as Error).message }, 'resync request not answered'))
        }
      },
      onLink: (gatewayId, data) => store.upsertLink(gatewayId, data),
      onEndpoint: (gatewayId, data, seq) => engine.onEndpoint(gatewayId, data, seq),
      onDirectory: async (gatewayId, data) => {
        await engine.onDirectory(gatewayId, data)
        // People a PBX directory adds count against the tenant's seats like imported ones.
        const tenantId = this.#gatewayTenant.get(gatewayId)
        if (tenantId !== undefined && directory.seatLimit(tenantId) !== undefined) await directory.enforceSeats(tenantId)
      },
      nextCommandSeq: (gatewayId) => this.#nextCommandSeq(gatewayId),
    }, { logger: logger.child({ component: 'relay-link' }), counters })
    this.#link = link
    await link.start()
    engine.start()

    const observation = new PresenceObservation(config, {
      db,
      logger,
      clock,
      counters,
      graphFor: (tenantId) => this.#graph.get(tenantId),
      people: (tenantId) => engine.graphUserIds(tenantId),
      onReadings: (tenantId, readings) => engine.onTeamsPresence(tenantId, readings),
      appendEvent: (entry) => store.appendEvent({ at: new Date(clock.now()), ...entry }),
      graphCaPem: this.#deps.graphCaPem,
      sealKey: this.#deps.sealKey,
      subscriptionTuning: this.#deps.subscriptionTuning,
      observe: this.#deps.observePresence,
    })
    this.#observation = observation
    await observation.prepare()

    const http = buildServer({
      store,
      // The engine's live model is exact (current decision, stand-back, staleness); the store is its persisted shadow.
      explainer: this.#deps.explainer ?? engine,
      people: engine,
      directory,
      logger,
      apiToken: config.http.apiToken,
      version: RELAY_VERSION,
      health: () => ({ broker: link.connected, store: db.kind }),
      publicRoutes: [observation.publicRoutes, enrollmentPublicRoutes(enrollment, clock)], // enrollment (issue 5, H1)
      apiRoutes: [...observation.apiRoutes, enrollmentAdminRoutes(enrollment)], // enrollment (issue 5, H1)
      https: await relayHttpsMaterial(config.http.tls, pki, config.enrollment.publicHostnames, clock.now()), // enrollment (issue 5, H1)
    })
    this.#http = http
    await http.listen({ host: config.http.host, port: config.http.port })
    // After listen: creating a subscription makes Graph call the webhook (validation handshake).
    await observation.start()
    if (!config.http.apiToken) this.#log.info('http.apiToken is not set: the admin API answers 503 until it is')
    this.#log.info({ broker: brokerUrl, store: db.kind, tenants: config.tenants.length, http: `${config.http.host}:${this.httpPort}` }, 'relay started')
  }

  async stop(): Promise<void> {
    if (!this.#started) return
    this.#started = false
    await this.#http?.close()
    this.#http = undefined
    await this.#directory?.stop()
    await this.#observation?.stop()
    this.#engine?.stop()
    await this.#engine?.idle()
    await this.#link?.stop()
    await this.#syncStore?.flush()
    await this.#broker?.stop()
    for (const graph of this.#graph.values()) await graph.close()
    this.#graph.clear()
    await this.#retention?.stop()
    this.#retention = undefined
    await this.#db?.close()
    this.#log.info('relay stopped')
  }

  #requireLink(): RelayLink {
    if (!this.#link) throw new Error('relay link not started')
    return this.#link
  }

  /** Command sequence numbers are reserved in the store in blocks, one reservation at a time per gateway. */
  #nextCommandSeq(gatewayId: string): Promise<number> {
    const previous = this.#commandSeqLock.get(gatewayId) ?? Promise.resolve(0)
    const next = previous.catch(() => 0).then(async () => {
      let block = this.#commandSeq.get(gatewayId)
      if (!block || block.next > block.end) {
        const first = await this.store.reserveCommandSeq(gatewayId, COMMAND_SEQ_BLOCK)
        block = { next: first, end: first + COMMAND_SEQ_BLOCK - 1 }
        this.#commandSeq.set(gatewayId, block)
      }
      return block.next++
    })
    this.#commandSeqLock.set(gatewayId, next)
    return next
  }
}
