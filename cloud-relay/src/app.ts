import { isIP } from 'node:net'
import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Clock } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import { EmbeddedBroker, type AuthorizeCertificate, type BrokerTlsOptions } from './broker/embedded-broker.js'
import { applyMosquittoRevocations, retainedGuardCommonName, writeMosquittoConfig } from './broker/mosquitto-config.js'
import { MosquittoCrlRefresh } from './broker/crl-refresh.js'
import { MosquittoRetainedGuard } from './broker/mosquitto-retained-guard.js'
import { RelayCertificates } from './broker/relay-certificates.js'
import { RELAY_CN_PREFIX } from './broker/peer-identity.js'
import { commonNameOf } from './pki/relay-pki.js'
import { X509Certificate } from 'node:crypto'
// fleet liveness and telemetry
import { GatewayLiveness } from './fleet/gateway-liveness.js'
import { fleetRoutes } from './fleet/fleet-routes.js'
import { TelemetryStore } from './fleet/telemetry-store.js'
import { dirname, join } from 'node:path'
import { hashSecret, sameSecret } from './broker/secrets.js'
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
import type { IngestLimits } from './ingest/ingest-guard.js'
import { openSqlClient, type SqlClient } from './store/sql-client.js'
import { effectiveSettings, type SyncSettings } from './sync/mapping.js'
import { SyncEngine } from './sync/sync-engine.js'
import { PresenceObservation } from './notifications/presence-observation.js'
import { loadOrCreateRelayCa } from './enrollment/ca-store.js'
import { EnrollmentService } from './enrollment/enrollment-service.js'
import { enrollmentAdminRoutes, enrollmentPublicRoutes } from './enrollment/enrollment-routes.js'
import { relayHttpsMaterial } from './enrollment/https-material.js'
import type { RelayPki } from './pki/relay-pki.js'
import { loadSealer } from './secrets/sealer.js'
import { EnrollmentStore } from './store/enrollment-store.js'
import { createConsoleAccess } from './console/console-access.js'
import { ConsoleAuth } from './console/console-auth.js'
import { ConsoleLive } from './console/console-live.js'
import { consoleApiRoutes, consolePublicRoutes } from './console/console-routes.js'
import { ConsoleStore } from './console/console-store.js'
import { toApi as toApiGateway } from './fleet/fleet-routes.js'
import { toApiEvent } from './http/server.js'
// image updates: releases, bundle download, rollouts
import { bundleRoutes, BUNDLE_PATH_PREFIX } from './updates/bundle-routes.js'
import { DownloadTokens } from './updates/download-tokens.js'
import { ReleaseLibrary } from './updates/release-library.js'
import { describeTarget, RolloutEngine } from './updates/rollout-engine.js'
import { updateRoutes } from './updates/update-routes.js'
import { UpdateStore } from './updates/update-store.js'

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
  /** The relay CA (loaded by the enrollment service): the embedded broker's TLS listeners need it. */
  relayPki?: RelayPki | undefined
  /** Decides on a gateway certificate at connect (enrollment service: enrolled, not revoked, serial current). */
  authorizeCertificate?: AuthorizeCertificate | undefined
  /** The built console (index.html, app.js, app.css); default dist/web/console under the working directory. */
  consoleDir?: string | undefined
  /** What one gateway may send (IngestGuard); the defaults suit production, tests lower them. */
  ingestLimits?: Partial<IngestLimits> | undefined
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
  /** Password-listener gateways from the config: their passwords, compared in constant time at connect. */
  readonly #gatewayPassword = new Map<string, string>()
  /** The stored scrypt hashes of those passwords, written in the background (a third of a second each). */
  #hashing: Promise<void> = Promise.resolve()
  readonly #graph = new Map<string, GraphClient>()
  readonly #commandSeq = new Map<string, { next: number; end: number }>()
  readonly #commandSeqLock = new Map<string, Promise<number>>()
  readonly #unsubscribe: Array<() => void> = []
  #observation: PresenceObservation | undefined
  #db: SqlClient | undefined
  #store: RelayStore | undefined
  #engine: SyncEngine | undefined
  #syncStore: WriteBehindSyncStore | undefined
  #broker: EmbeddedBroker | undefined
  #link: RelayLink | undefined
  #http: HttpServer | undefined
  #retention: EventRetention | undefined
  #liveness: GatewayLiveness | undefined
  #telemetryRetention: EventRetention | undefined
  #directory: DirectoryService | undefined
  #enrollment: EnrollmentService | undefined
  #pki: RelayPki | undefined
  #consoleLive: ConsoleLive | undefined
  #consoleAuth: ConsoleAuth | undefined
  #relayCertificates: RelayCertificates | undefined
  #crlRefresh: MosquittoCrlRefresh | undefined
  #retainedGuard: MosquittoRetainedGuard | undefined
  #rollouts: RolloutEngine | undefined
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

  /** Gateway enrollment: codes, certificates, renewal, revocation, the broker's connect check. */
  get enrollment(): EnrollmentService {
    if (!this.#enrollment) throw new Error('relay not started')
    return this.#enrollment
  }

  /** The relay CA: broker server certificates, the relay's own client certificate, CRLs. */
  get pki(): RelayPki {
    if (!this.#pki) throw new Error('relay not started')
    return this.#pki
  }

  /** The relay's own client certificates (CN relay:<name>): issue one for a monitor, revoke one. */
  get relayCertificates(): RelayCertificates {
    if (!this.#relayCertificates) throw new Error('relay not started')
    return this.#relayCertificates
  }

  /** Image update rollouts (cloud-relay/src/updates). */
  get rollouts(): RolloutEngine {
    if (!this.#rollouts) throw new Error('relay not started')
    return this.#rollouts
  }

  get store(): RelayStore {
    if (!this.#store) throw new Error('relay not started')
    return this.#store
  }

  /** The embedded broker (disconnectGateway on revocation); undefined with an external broker. */
  get broker(): EmbeddedBroker | undefined {
    return this.#broker
  }

  /** Each gateway's liveness (online / connected / offline) and latest telemetry. */
  get liveness(): GatewayLiveness {
    if (!this.#liveness) throw new Error('relay not started')
    return this.#liveness
  }

  /** The embedded broker's port (when embedded). */
  get brokerPort(): number | undefined {
    return this.#broker?.port
  }

  /** The admin API's port once listening (http.port 0 picks a free one). */
  /** The console's first-run setup secret while no console account exists (also in the relay's log and its file). */
  get consoleSetupSecret(): string | undefined {
    return this.#consoleAuth?.setupSecret
  }

  get httpPort(): number | undefined {
    const address = this.#http?.server.address()
    return address && typeof address === 'object' ? address.port : undefined
  }

  /** The HTTP server once started, for requests without a socket (fastify inject). */
  get httpServer(): HttpServer | undefined {
    return this.#http
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

    const storedHashes = new Map((await store.listGateways()).map((g) => [g.id, g.secretHash]))
    for (const tenant of config.tenants) {
      await store.upsertTenant(tenant.id, tenant.name || tenant.id)
      for (const gateway of tenant.gateways) {
        const row = { id: gateway.id, tenantId: tenant.id, name: gateway.name }
        await store.upsertGateway({ ...row, secretHash: storedHashes.get(gateway.id) ?? null })
        this.#gatewayPassword.set(gateway.id, gateway.password)
        this.#hashing = this.#hashing
          .then(async () => store.upsertGateway({ ...row, secretHash: await hashSecret(gateway.password) }))
          .catch((err: unknown) => this.#log.warn({ gatewayId: gateway.id, err: (err as Error).message }, 'could not store the gateway password hash'))
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

    // Enrollment: the relay CA (its key sealed in the store), one-time codes, gateway certificates.
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
      maxPeoplePerTenant: config.sync.maxPeoplePerTenant,
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
    const relayPki = this.#deps.relayPki ?? pki
    // Relay certificates (full access) are checked like gateways': the current one per name, not revoked.
    const relayCertificates = new RelayCertificates({ pki: relayPki, clock })
    this.#relayCertificates = relayCertificates
    const passwordListener = config.broker.passwordListener
    if (config.broker.mode === 'embedded') {
      if (passwordListener === false && !config.broker.tls) {
        throw new Error('the embedded broker has no listener: add broker.tls (gateways with certificates from the relay CA), or set broker.passwordListener: true for plain MQTT on 127.0.0.1 (tests, the demo)')
      }
      // mutual-TLS listeners when configured and the relay CA is available
      const tls = config.broker.tls ? await brokerTls(config.broker.tls, relayPki) : undefined
      const broker = new EmbeddedBroker({ host: config.broker.host, port: config.broker.port, passwordListener, tls }, {
        // The tenant comes from the enrollment record of the certificate's gateway id, never from the box.
        authorizeCertificate: this.#deps.authorizeCertificate ?? ((identity) => enrollment.decideCertificate(identity.gatewayId, identity.serial)),
        authorizeRelayCertificate: (identity) => relayCertificates.decide(identity),
        relayUsername: config.broker.relayUsername,
        relayPassword: config.broker.relayPassword,
        // The config holds these passwords in clear anyway: a constant-time compare, no scrypt per attempt.
        verifyGateway: (gatewayId, password) => {
          const expected = this.#gatewayPassword.get(gatewayId)
          return expected !== undefined && sameSecret(password, expected)
        },
      }, { logger: logger.child({ component: 'broker' }), counters, clock })
      await broker.start()
      this.#broker = broker
      if (passwordListener !== false) {
        const host = typeof passwordListener === 'object' ? passwordListener.host : '127.0.0.1'
        brokerUrl = `mqtt://${host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host}:${broker.port}`
      } else if (broker.tlsPort !== undefined) {
        // no password listener: the relay's own client uses a relay:<name> certificate on mqtts
        brokerUrl = `mqtts://127.0.0.1:${broker.tlsPort}`
      }
    }

    // liveness: birth, last will, pings, telemetry kept like the event log
    const telemetryStore = new TelemetryStore(db)
    const liveness = new GatewayLiveness({}, {
      clock,
      logger,
      counters,
      gateways: () => [...this.#gatewayTenant].map(([id, tenantId]) => ({ id, tenantId })),
      ping: (gatewayId) => this.#requireLink().sendPing(gatewayId),
      saveTelemetry: (gatewayId, at, data) => telemetryStore.append(gatewayId, at, data),
    })
    liveness.restoreTelemetry(await telemetryStore.latest())
    this.#liveness = liveness
    // Image updates: bundles in updates.dir, download tokens signed with a key sealed in the store, rollouts.
    const updateStore = new UpdateStore(db)
    liveness.restoreSlots(await updateStore.gatewaySlots())
    const releases = new ReleaseLibrary({ dir: config.updates.dir ?? join(dirname(config.secrets.sealKeyFile), 'bundles') }, { store: updateStore, clock })
    const downloadTokens = new DownloadTokens(await updateStore.tokenKey(sealer), Math.round(config.updates.tokenTtlHours * 3_600_000))
    const gatewayAllowed = (gatewayId: string): { ok: true; tenantId: string } | { ok: false; reason: string } => {
      if (enrollment.isRevoked(gatewayId)) return { ok: false, reason: 'the gateway is revoked' }
      const tenantId = this.#gatewayTenant.get(gatewayId)
      return tenantId === undefined ? { ok: false, reason: 'unknown gateway: create it in the console first' } : { ok: true, tenantId }
    }
    const rollouts = new RolloutEngine({
      store: updateStore,
      clock,
      logger,
      counters,
      release: (version) => releases.get(version),
      gateways: () => [...this.#gatewayTenant].filter(([id]) => !enrollment.isRevoked(id)).map(([id, tenantId]) => ({ id, tenantId })),
      download: (gatewayId, version) => ({
        url: `${config.updates.publicUrl ?? `https://${config.enrollment.publicHostnames[0] ?? 'localhost'}:${this.httpPort ?? config.http.port}`}${BUNDLE_PATH_PREFIX}/${encodeURIComponent(version)}`,
        token: downloadTokens.issue(gatewayId, version, clock.now()),
      }),
      sendUpdate: (gatewayId, data) => this.#requireLink().sendUpdate(gatewayId, data),
    })
    this.#rollouts = rollouts
    const telemetryRetention = new EventRetention({ retentionDays: config.eventLog.retentionDays }, { store: telemetryStore, clock, logger: logger.child({ table: 'gateway_telemetry' }) })
    telemetryRetention.start()
    this.#telemetryRetention = telemetryRetention
    const mosquitto = config.broker.mode === 'external' ? config.broker.mosquitto : undefined
    if (mosquitto?.write) {
      // The relay generates Mosquitto's configuration from its own CA: mTLS listener, identity as username, ACL
      // patterns, CRL, its own client certificate. Mosquitto is started (or SIGHUPed) with configDir/mosquitto.conf.
      const files = await writeMosquittoConfig({
        configDir: mosquitto.configDir,
        port: mosquitto.port,
        ...(mosquitto.wsPort !== undefined ? { websockets: { port: mosquitto.wsPort } } : {}),
        serverDnsNames: mosquitto.dnsNames,
        serverIpAddresses: mosquitto.ipAddresses,
        pidFile: mosquitto.pidFile,
        user: mosquitto.user,
      }, { pki: relayPki, revoked: { certificates: [...enrollment.revokedCertificates(), ...relayCertificates.revokedCertificates()], gateways: enrollment.revokedGatewayIds() }, now: clock.now() })
      this.#log.info({ conf: files.confFile }, 'Mosquitto configuration written: start Mosquitto with it (or SIGHUP it)')
    }
    const relayClient = await relayClientCredentials(config, relayPki, relayCertificates, this.#log)
    const crlCertificates = () => [...enrollment.revokedCertificates(), ...relayCertificates.revokedCertificates()]
    if (config.broker.mode === 'external' && config.broker.mosquitto) {
      const configDir = config.broker.mosquitto.configDir
      // Mosquitto refuses every handshake once its CRL is past nextUpdate: rewrite it now and daily, 30 days ahead.
      const crlRefresh = new MosquittoCrlRefresh({ configDir, pidFile: config.broker.mosquitto.pidFile }, { pki: relayPki, clock, logger, counters, revokedCertificates: crlCertificates })
      await crlRefresh.start()
      this.#crlRefresh = crlRefresh
      // Mosquitto's ACL cannot limit retain: this client clears retained messages a box may not keep.
      if (relayClient.clientId !== undefined) {
        const guardName = retainedGuardCommonName(relayClient.clientId).slice(RELAY_CN_PREFIX.length)
        const guardCert = await relayCertificates.issue(guardName)
        const guard = new MosquittoRetainedGuard({ url: brokerUrl, caPem: relayClient.caPem ?? relayPki.caCertPem, certPem: guardCert.certPem, keyPem: guardCert.keyPem }, { logger, counters })
        this.#retainedGuard = guard
        guard.start().catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'retained-message guard not connected yet; it keeps trying'))
      }
    }

    const link = new RelayLink({
      url: brokerUrl,
      username: config.broker.relayUsername,
      password: config.broker.relayPassword,
      commandTimeoutMs: config.sync.commandTimeoutMs,
      ...relayClient, // client certificate and persistent session
      limits: this.#deps.ingestLimits,
    }, {
      knowsGateway: (gatewayId) => this.#gatewayTenant.has(gatewayId),
      // A revoked gateway's messages (already on the broker, or from a connection not yet cut) never reach a handler.
      gatewayAllowed,
      onStatus: async (gatewayId, data, retained, seq) => {
        const online = data.state === 'online'
        liveness.onStatus(gatewayId, data)
        await store.setGatewayStatus(gatewayId, data.state, data.reason ?? null, data.version, new Date(clock.now()))
        if (online && !retained) await engine.resetGatewaySeq(gatewayId, seq)
        engine.onGatewayStatus(gatewayId, online, data.reason)
        this.#log.info({ gatewayId, state: data.state, reason: data.reason, retained }, 'gateway status')
        if (data.slot !== undefined) await updateStore.setGatewaySlot(gatewayId, data.slot)
        if (online) rollouts.onGatewayOnline(gatewayId)
        if (online && retained) {
          // We (re)started while the gateway stayed connected: ask for a fresh snapshot.
          link.sendResync(gatewayId, 'relay started').catch((err: unknown) => this.#log.warn({ gatewayId, err: (err as Error).message }, 'resync request not answered'))
        }
      },
      onLink: async (gatewayId, data) => {
        liveness.onLink(gatewayId, data)
        await store.upsertLink(gatewayId, data)
      },
      // liveness hooks
      onActivity: (gatewayId) => liveness.onActivity(gatewayId),
      onCommandAnswered: (gatewayId, _command, _ok, roundTripMs) => liveness.onCommandAnswered(gatewayId, roundTripMs),
      onTelemetry: (gatewayId, data) => liveness.onTelemetry(gatewayId, data),
      onClockSkew: (gatewayId, skewMs) => liveness.onClockSkew(gatewayId, skewMs),
      onUpdateProgress: async (gatewayId, data) => {
        liveness.onRunning(gatewayId, data.runningVersion, data.slot)
        await updateStore.setGatewaySlot(gatewayId, data.slot)
        await rollouts.onProgress(gatewayId, data)
      },
      onEndpoint: (gatewayId, data, seq) => engine.onEndpoint(gatewayId, data, seq),
      onDirectory: (gatewayId, data) => engine.onDirectory(gatewayId, data),
      onDirectoryPart: async (gatewayId) => {
        // People a PBX directory adds count against the tenant's seats like imported ones.
        const tenantId = this.#gatewayTenant.get(gatewayId)
        if (tenantId !== undefined && directory.seatLimit(tenantId) !== undefined) await directory.enforceSeats(tenantId)
      },
      nextCommandSeq: (gatewayId) => this.#nextCommandSeq(gatewayId),
    }, { logger: logger.child({ component: 'relay-link' }), counters })
    this.#link = link
    // Revocation cuts the gateway off at once: its broker connection, its messages, commands to it.
    this.#unsubscribe.push(enrollment.onRevoked((revoked) => {
      const reason = `revoked by ${revoked.actor}: ${revoked.reason}`
      this.#broker?.disconnectGateway(revoked.gatewayId, reason)
      liveness.onRevoked(revoked.gatewayId, reason)
      engine.onGatewayStatus(revoked.gatewayId, false, reason)
      if (config.broker.mosquitto) {
        applyMosquittoRevocations({
          configDir: config.broker.mosquitto.configDir,
          pidFile: config.broker.mosquitto.pidFile,
          pki: relayPki,
          revoked: { certificates: crlCertificates(), gateways: enrollment.revokedGatewayIds() },
          gatewayId: revoked.gatewayId,
          kick: { url: brokerUrl, caPem: relayClient.caPem ?? relayPki.caCertPem },
        }).catch((err: unknown) => this.#log.error({ gatewayId: revoked.gatewayId, err: (err as Error).message }, 'Mosquitto was not told about the revocation: run mosquitto-cli revoke, then SIGHUP Mosquitto'))
      }
    }))
    await link.start()
    engine.start()
    await rollouts.start()
    liveness.start()

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

    // The console: local accounts, sessions, role checks, live updates, the app at /console/.
    // The first-run setup secret lives next to the seal key, in the relay's data folder.
    const consoleAuth = new ConsoleAuth({ setupSecretFile: join(dirname(config.secrets.sealKeyFile), 'console-setup-secret'), apiToken: config.http.apiToken }, { store: new ConsoleStore(db), clock, logger, tenants: () => config.tenants.map((t) => t.id) })
    this.#consoleAuth = consoleAuth
    const explainer = this.#deps.explainer ?? engine
    const consoleLive = new ConsoleLive({}, {
      auth: consoleAuth,
      gateways: () => liveness.list().map(toApiGateway),
      latestEvents: async (limit) => (await store.queryEvents({ limit })).map(toApiEvent),
      logger,
    })
    this.#consoleLive = consoleLive
    const consoleRoutes = consoleApiRoutes({
      auth: consoleAuth,
      tenants: () => config.tenants.map((t) => ({
        id: t.id,
        name: t.name || t.id,
        graph: { configured: t.graph !== undefined, clientId: t.graph?.clientId ?? null, credential: t.graph ? (t.graph.certificateFile !== undefined ? 'certificate' as const : 'secret' as const) : null },
      })),
      people: async (tenantId) => explainer.listPeople(tenantId),
      seatLimit: (tenantId) => directory.seatLimit(tenantId),
      caPin: () => pki.caFingerprint256,
      onLogout: (tokenHash) => consoleLive.closeSession(tokenHash),
      onAccountSessionsEnded: (accountId, except) => consoleLive.closeAccount(accountId, except),
    })
    const consoleAccess = createConsoleAccess({
      tenantOfGateway: (gatewayId) => this.#gatewayTenant.get(gatewayId),
      tenantOfPerson: async (personId) => (await store.getPerson(personId))?.tenantId,
    })

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
      publicRoutes: [observation.publicRoutes, enrollmentPublicRoutes(enrollment, clock), consolePublicRoutes({ dir: this.#deps.consoleDir ?? join(process.cwd(), 'dist', 'web', 'console') }),
        bundleRoutes({ tokens: downloadTokens, release: (version) => releases.get(version), gatewayAllowed, now: () => clock.now() })],
      apiRoutes: [...observation.apiRoutes, enrollmentAdminRoutes(enrollment), fleetRoutes({ liveness, telemetry: telemetryStore }), consoleRoutes,
        updateRoutes({ releases, rollouts, describeTarget, maxBundleBytes: config.updates.maxBundleBytes })],
      console: { authenticate: (cookie) => consoleAuth.authenticate(cookie), authorize: consoleAccess },
      https: await relayHttpsMaterial(config.http.tls, pki, config.enrollment.publicHostnames, clock.now()),
      trustProxy: config.http.trustProxy,
    })
    this.#http = http
    await http.listen({ host: config.http.host, port: config.http.port })
    await consoleLive.start(http.server)
    await consoleAuth.prepareFirstRun(`${config.http.tls ? 'https' : 'http'}://${config.http.host === '0.0.0.0' ? 'localhost' : config.http.host}:${this.httpPort}/console/`)
    // After listen: creating a subscription makes Graph call the webhook (validation handshake).
    await observation.start()
    if (!config.http.apiToken) this.#log.info('http.apiToken is not set: the admin API answers 503 until it is')
    this.#log.info({ broker: brokerUrl, store: db.kind, tenants: config.tenants.length, http: `${config.http.host}:${this.httpPort}` }, 'relay started')
  }

  async stop(): Promise<void> {
    if (!this.#started) return
    this.#started = false
    this.#consoleLive?.stop()
    this.#consoleLive = undefined
    this.#crlRefresh?.stop()
    this.#crlRefresh = undefined
    await this.#retainedGuard?.stop()
    this.#retainedGuard = undefined
    await this.#http?.close()
    this.#http = undefined
    await this.#directory?.stop()
    await this.#observation?.stop()
    this.#rollouts?.stop()
    await this.#rollouts?.idle()
    this.#engine?.stop()
    await this.#engine?.idle()
    await this.#link?.stop()
    // Waits out a database that is briefly away; a refused row never holds the rest back.
    await this.#syncStore?.drain(10_000)
    await this.#broker?.stop()
    for (const graph of this.#graph.values()) await graph.close()
    this.#graph.clear()
    await this.#retention?.stop()
    this.#retention = undefined
    for (const off of this.#unsubscribe.splice(0)) off()
    this.#liveness?.stop()
    await this.#telemetryRetention?.stop()
    this.#telemetryRetention = undefined
    await this.#hashing
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

/** The embedded broker's TLS listeners: the server certificate from files, or issued from the relay CA. */
async function brokerTls(tls: NonNullable<RelayConfig['broker']['tls']>, pki: RelayPki): Promise<BrokerTlsOptions> {
  if (tls.certFile !== undefined && tls.keyFile !== undefined) {
    const read = async (what: string, file: string): Promise<string> => {
      try {
        return await readFile(file, 'utf8')
      } catch (err) {
        throw new Error(`cannot read broker.tls.${what} ${file}: ${(err as Error).message}`)
      }
    }
    return { port: tls.port, wsPort: tls.wsPort, caPem: pki.caCertPem, certPem: await read('certFile', tls.certFile), keyPem: await read('keyFile', tls.keyFile) }
  }
  const notIp = tls.ipAddresses.filter((address) => isIP(address) === 0)
  if (notIp.length > 0) throw new Error(`broker.tls.ipAddresses holds ${notIp.map((a) => `"${a}"`).join(', ')}, which is not an IP address: list addresses such as 203.0.113.7 or 2001:db8::7 there, and names in broker.tls.dnsNames.`)
  // Loopback always: the relay's own client dials its embedded broker at 127.0.0.1.
  const issued = await pki.issueServerCertificate({ dnsNames: tls.dnsNames, ipAddresses: [...new Set(['127.0.0.1', '::1', ...tls.ipAddresses])] })
  return { port: tls.port, wsPort: tls.wsPort, caPem: pki.caCertPem, certPem: issued.certPem, keyPem: issued.keyPem }
}

/**
 * The relay's own MQTT identity: with broker.mosquitto, the certificate mosquitto-cli wrote (relay.pem,
 * relay.key, ca.pem); embedded without a password listener, a relay:<name> certificate issued from the relay CA.
 * With a certificate the client id is its CN on both brokers (Mosquitto: use_username_as_clientid), so the
 * relay's persistent session is keyed by that CN.
 */
async function relayClientCredentials(config: Readonly<RelayConfig>, pki: RelayPki, relayCertificates: RelayCertificates, log: Logger): Promise<{ caPem?: string; certPem?: string; keyPem?: string; clientId?: string }> {
  const configured = config.broker.relayClientId
  const certificateClientId = (commonName: string): string => {
    if (configured !== undefined && configured !== commonName) {
      log.warn({ relayClientId: configured, commonName }, 'broker.relayClientId is ignored: with a certificate the relay\'s client id is the certificate\'s CN (its persistent session is kept under that name)')
    }
    return commonName
  }
  if (config.broker.mode === 'external' && config.broker.mosquitto) {
    const dir = config.broker.mosquitto.configDir
    const read = async (name: string): Promise<string> => {
      try {
        return await readFile(join(dir, name), 'utf8')
      } catch (err) {
        throw new Error(`cannot read ${name} in broker.mosquitto.configDir ${dir}: run cloud-relay/src/broker/mosquitto-cli.ts --out ${dir} first (${(err as Error).message})`)
      }
    }
    const certPem = await read('relay.pem')
    relayCertificates.adopt(certPem)
    return { caPem: await read('ca.pem'), certPem, keyPem: await read('relay.key'), clientId: certificateClientId(commonNameOf(new X509Certificate(certPem).subject)) }
  }
  if (config.broker.mode === 'embedded' && config.broker.passwordListener === false) {
    const name = configured?.startsWith(RELAY_CN_PREFIX) ? configured.slice(RELAY_CN_PREFIX.length) : 'main'
    const issued = await relayCertificates.issue(name)
    return { caPem: pki.caCertPem, certPem: issued.certPem, keyPem: issued.keyPem, clientId: certificateClientId(issued.commonName) }
  }
  return configured ? { clientId: configured } : {}
}
