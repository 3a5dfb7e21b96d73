import { join } from 'node:path'
import type { Logger } from 'pino'
import type { DirectoryData, DirectoryEntry, EndpointData, LinkData, ResultData, UpdateCommandData, UpdateProgressData } from '../protocol/schemas.js'
import { splitDirectory } from '../protocol/directory-parts.js'
import { DIRECTORY_MAX_ENTRIES, DIRECTORY_MAX_PARTS } from '../protocol/limits.js'
import { topics } from '../protocol/topics.js'
import { AdapterError, type AdapterDefinition, type PbxAdapter, type PbxObservation } from './adapters/types.js'
import { UNENROLLED_GATEWAY_ID, type LoadedGatewayConfig } from './config/load.js'
import type { Clock } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import { CutoffGuard, type OwnedDndEndpoint } from './core/cutoff-guard.js'
import { EndpointTracker } from './core/endpoint-tracker.js'
import { GatewayStore } from './core/gateway-store.js'
// the box's health in telemetry
import { TelemetryCollector, type SystemProbe } from './core/telemetry.js'
import type { AnyEnvelope } from '../protocol/schemas.js'
import { MqttUplink, type ClientTls, type CommandEnvelope } from './mqtt/uplink.js'
import { OutboxStore, outboxKeys } from './outbox/outbox-store.js'
import { EnrollmentClient } from './identity/enrollment-client.js'
import { IdentityStore, loadUplinkIdentity, toUplinkIdentity } from './identity/identity-store.js'
import { CertificateRenewal } from './identity/renewal.js'

declare const __PBXGW_VERSION__: string | undefined
/** The box's software version: the bundle's build sets it (scripts/build.ts, from the image build's --version); 0.1.0 when run from source. */
export const GATEWAY_VERSION: string = typeof __PBXGW_VERSION__ === 'string' ? __PBXGW_VERSION__ : '0.1.0'

/** How many endpoint changes the box's status page can show. */
export const RECENT_EVENTS = 50

export type ConnectorConfig = LoadedGatewayConfig['connectors'][number]

/** The tunnel as the box's status page shows it. */
export interface TunnelStatus {
  gatewayId: string
  enrolled: boolean
  connected: boolean
  transportUrl: string | undefined
}

export interface GatewayDeps {
  logger: Logger
  clock: Clock
  counters: Counters
  registry: ReadonlyMap<string, AdapterDefinition>
  /** Extra CA (PEM) for the relay link, read by the composition root from relay.caFile. */
  relayCaPem?: string
  /** The box's client certificate for mutual TLS (mqtts/wss), from enrollment; read by the composition root. */
  relayTls?: ClientTls
  /** Stands in for the OS readings (tests of a board with a temperature sensor). */
  systemProbe?: SystemProbe
  /** Records waiting in the outbox, reported in telemetry (the outbox owner wires it). */
  outboxRecords?: () => number
  /**
   * The box's update agent (gateway/src/update): takes cmd/update, reports on the update topic. Without it (a
   * container, a development install) the box refuses cmd/update in words.
   */
  updates?: UpdateCommandSink
  /** The root file system slot this box booted ("A"/"B"), for its status; absent without A/B slots. */
  bootedSlot?: string
}

/** What the gateway needs from an update agent: take a command, and get a way to publish progress. */
export interface UpdateCommandSink {
  accept(command: UpdateCommandData): Promise<Omit<ResultData, 'correlationId' | 'command'>>
  /** Called once the uplink exists: how the agent sends progress, and a listener for every (re)connect. */
  attach(publish: (progress: UpdateProgressData) => void): void
  /** After every (re)connect: the agent re-sends its latest progress (the relay may have missed it). */
  onConnect(): void
}

type CommandResult = Omit<ResultData, 'correlationId' | 'command'>

/**
 * The gateway service: PBX adapters → endpoint tracker → MQTT uplink, and relay commands → adapters.
 * Built from a validated config and explicit deps; nothing happens until start().
 */
export class Gateway {
  readonly #config: Readonly<LoadedGatewayConfig>
  readonly #deps: GatewayDeps
  #log: Logger
  readonly #store: GatewayStore
  readonly #adapters = new Map<string, PbxAdapter>()
  readonly #links = new Map<string, LinkData>()
  readonly #directories = new Map<string, DirectoryEntry[]>()
  readonly #lastCommandSeq = new Map<string, number>()
  readonly #unsubscribe: Array<() => void> = []
  #tracker: EndpointTracker | undefined
  #uplink: MqttUplink | undefined
  #renewal: CertificateRenewal | undefined
  readonly #outbox: OutboxStore // H2
  #cutoffGuard: CutoffGuard | undefined
  #telemetryTimer: ReturnType<Clock['setTimeout']> | undefined
  #started = false
  /**
   * start, stop, restart and connector changes run one after another: a connector saved in the setup page while
   * the gateway restarts after an enrollment would otherwise get a second adapter (two PBX sessions, every
   * extension monitored twice, one of them never stopped).
   */
  #lifecycle: Promise<unknown> = Promise.resolve()
  #enrolled = false
  readonly #startedAt: number
  readonly #telemetry: TelemetryCollector
  /** From the config, or from the enrolled identity when the config leaves it at UNENROLLED_GATEWAY_ID. */
  #gatewayId: string
  /** Every connector this gateway runs: the file config's, then those added in the box's UI. */
  readonly #connectorConfigs = new Map<string, ConnectorConfig>()
  readonly #adapterUnsubscribe = new Map<string, () => void>()
  readonly #recentEvents: EndpointData[] = []
  readonly #endpointListeners = new Set<(endpoint: EndpointData) => void>()

  constructor(config: Readonly<LoadedGatewayConfig>, deps: GatewayDeps) {
    this.#config = config
    this.#deps = deps
    this.#gatewayId = config.gatewayId
    for (const connector of config.connectors) this.#connectorConfigs.set(connector.id, connector)
    this.#log = deps.logger.child({ component: 'gateway', gatewayId: config.gatewayId })
    this.#store = new GatewayStore(join(config.dataDir, 'state.json'))
    this.#outbox = new OutboxStore({
      dir: join(config.dataDir, 'outbox'),
      maxBytes: config.outbox.maxBytes,
      maxRecords: config.outbox.maxRecords,
      maxAgeMs: Math.round(config.outbox.maxAgeDays * 24 * 3600_000),
    }, { logger: deps.logger.child({ component: 'outbox', gatewayId: config.gatewayId }), clock: deps.clock, counters: deps.counters })
    this.#startedAt = deps.clock.now()
    // cached for half an interval, so a tick never probes twice
    this.#telemetry = new TelemetryCollector({ dataPath: config.dataDir, maxAgeMs: (config.telemetryIntervalS * 1000) / 2 }, {
      clock: deps.clock,
      logger: this.#log,
      ...(deps.systemProbe ? { probe: deps.systemProbe } : {}),
    })
  }

  get gatewayId(): string {
    return this.#gatewayId
  }

  /** Current state of every endpoint (for the local UI and tests). */
  endpoints(): EndpointData[] {
    return this.#tracker?.all() ?? []
  }

  links(): LinkData[] {
    return [...this.#links.values()]
  }

  get relayConnected(): boolean {
    return this.#uplink?.connected ?? false
  }

  get dataDir(): string {
    return this.#config.dataDir
  }

  get running(): boolean {
    return this.#started
  }

  tunnel(): TunnelStatus {
    return { gatewayId: this.#gatewayId, enrolled: this.#enrolled, connected: this.relayConnected, transportUrl: this.#uplink?.transportUrl }
  }

  /** The connectors running now (file config and UI), secrets included: callers must not send them anywhere. */
  connectorConfigs(): ConnectorConfig[] {
    return [...this.#connectorConfigs.values()]
  }

  /** The latest endpoint changes, oldest first. */
  recentEvents(): EndpointData[] {
    return [...this.#recentEvents]
  }

  onEndpointChange(listener: (endpoint: EndpointData) => void): () => void {
    this.#endpointListeners.add(listener)
    return () => this.#endpointListeners.delete(listener)
  }

  /** Adds or replaces a connector at run time (config already validated against its adapter's schema). */
  putConnector(connector: ConnectorConfig): Promise<void> {
    return this.#inTurn(() => this.#putConnector(connector))
  }

  async #putConnector(connector: ConnectorConfig): Promise<void> {
    await this.#stopAdapter(connector.id)
    this.#connectorConfigs.set(connector.id, connector)
    if (!this.#started) return
    const adapter = this.#createAdapter(connector)
    await adapter.start().catch((err: unknown) => this.#log.error({ connector: connector.id, err: (err as Error).message }, 'connector failed to start'))
  }

  /** Stops and forgets a connector; its link is reported offline to the relay. */
  removeConnector(id: string): Promise<boolean> {
    return this.#inTurn(() => this.#removeConnector(id))
  }

  async #removeConnector(id: string): Promise<boolean> {
    if (!this.#connectorConfigs.has(id)) return false
    await this.#stopAdapter(id)
    this.#connectorConfigs.delete(id)
    this.#links.delete(id)
    this.#directories.delete(id)
    return true
  }

  /** After an enrollment in the box's UI: start again with the new identity (gateway id, certificate, broker URLs). */
  restart(reason: string): Promise<void> {
    return this.#inTurn(async () => {
      await this.#stop(reason)
      await this.#start()
    })
  }

  /** Runs one lifecycle step after the ones before it have finished (failed ones included). */
  #inTurn<T>(step: () => Promise<T>): Promise<T> {
    const result = this.#lifecycle.then(step, step)
    this.#lifecycle = result.catch(() => undefined)
    return result
  }

  #createAdapter(connector: ConnectorConfig): PbxAdapter {
    const { logger, clock, counters, registry } = this.#deps
    const definition = registry.get(connector.type)
    if (!definition) throw new Error(`no adapter registered for ${connector.type}`) // config validation prevents this
    const adapter = definition.create(connector, {
      logger: logger.child({ component: 'adapter', connector: connector.id, pbx: connector.type }),
      clock,
      counters,
    })
    this.#adapters.set(connector.id, adapter)
    this.#links.set(connector.id, { connectorId: connector.id, pbxType: connector.type, state: 'connecting', since: clock.now(), endpoints: 0 })
    this.#adapterUnsubscribe.set(connector.id, adapter.onObservation((observation) => this.#onObservation(connector.id, observation)))
    return adapter
  }

  async #stopAdapter(id: string): Promise<void> {
    this.#adapterUnsubscribe.get(id)?.()
    this.#adapterUnsubscribe.delete(id)
    const adapter = this.#adapters.get(id)
    this.#adapters.delete(id)
    await adapter?.stop().catch(() => undefined)
    const link = this.#links.get(id)
    if (link && this.#uplink) {
      const offline: LinkData = { ...link, state: 'offline', since: this.#deps.clock.now(), reason: 'connector removed or changed in the box\'s setup page' }
      this.#links.set(id, offline)
      void this.#uplink.publishDurable(outboxKeys.link(id), 'link', offline, topics.link(this.#gatewayId, id), true)
    }
  }

  start(): Promise<void> {
    return this.#inTurn(() => this.#start())
  }

  async #start(): Promise<void> {
    if (this.#started) return
    this.#started = true
    await this.#store.open()
    await this.#outbox.open()
    this.#seqAboveOutbox()
    this.#tracker = new EndpointTracker(this.#store.ownedDnd)
    const { logger, clock, counters, registry } = this.#deps

    // The identity from enrollment, when the box has one: client certificate, CA and the broker URLs the relay gave.
    const identity = this.#deps.relayTls ? undefined : await loadUplinkIdentity(this.#config.dataDir)
    // A box set up in its own UI has no gatewayId in its config: enrollment gives it.
    this.#gatewayId = identity && this.#config.gatewayId === UNENROLLED_GATEWAY_ID ? identity.gatewayId : this.#config.gatewayId
    this.#enrolled = identity !== undefined || this.#deps.relayTls !== undefined
    this.#log = this.#deps.logger.child({ component: 'gateway', gatewayId: this.#gatewayId })
    if (identity && identity.gatewayId !== this.#gatewayId) {
      throw new Error(`this box is enrolled as gateway "${identity.gatewayId}" but the config says gatewayId "${this.#gatewayId}": ` +
        'set gatewayId to the enrolled id, or run factory-reset and enrol again')
    }
    const tls = this.#deps.relayTls ?? identity?.tls
    const brokerUrls = identity && identity.brokerUrls.length > 0 ? identity.brokerUrls : [this.#config.relay.url]
    const uplink = new MqttUplink({
      urls: [...brokerUrls, ...(this.#config.relay.fallbackUrls ?? []).filter((url) => !brokerUrls.includes(url))],
      gatewayId: this.#gatewayId,
      // With a certificate the broker takes the identity from it; the username must equal the gateway id.
      username: tls ? this.#gatewayId : this.#config.relay.username,
      password: tls ? undefined : this.#config.relay.password,
      caPem: this.#deps.relayCaPem,
      tls,
      proxyUrl: this.#config.relay.proxyUrl,
      attemptsPerUrl: this.#config.relay.attemptsPerUrl,
      version: GATEWAY_VERSION,
      slot: this.#deps.bootedSlot,
      startedAt: this.#startedAt,
    }, { logger: logger.child({ component: 'uplink' }), clock, counters, nextSeq: () => this.#store.nextSeq(), outbox: this.#outbox })
    this.#uplink = uplink
    // A box enrolled in its setup page renews at the relay it enrolled with (relay.enrollUrl may be unset).
    if (identity) this.#startRenewal(uplink)
    uplink.onCommand((command) => this.#onCommand(command))
    this.#unsubscribe.push(uplink.onConnect(() => this.#publishSnapshot('connect')))
    const updates = this.#deps.updates
    if (updates) {
      updates.attach((progress) => uplink.publish('update', progress, topics.update(this.#gatewayId)))
      this.#unsubscribe.push(uplink.onConnect(() => updates.onConnect()))
    }

    for (const connector of this.#connectorConfigs.values()) this.#createAdapter(connector)

    const cutoffGuard = new CutoffGuard({ graceMs: this.#config.ownedDndGraceS * 1000 }, {
      logger: logger.child({ component: 'cutoff-guard', gatewayId: this.#gatewayId }),
      clock,
      counters,
      link: uplink,
      ownedDnd: () => (this.#tracker?.all() ?? []).filter((e) => e.dnd && e.dndOwner === 'gateway'),
      release: (endpoint) => this.#releaseOwnedDnd(endpoint),
    })
    this.#cutoffGuard = cutoffGuard
    cutoffGuard.start()

    uplink.start()
    for (const [id, adapter] of this.#adapters) {
      // One failing driver must not take the gateway down.
      await adapter.start().catch((err: unknown) => this.#log.error({ connector: id, err: (err as Error).message }, 'connector failed to start'))
    }
    this.#scheduleTelemetry()
    this.#log.info({ connectors: this.#adapters.size, relay: this.#config.relay.url }, 'gateway started')
  }

  /** Certificate renewal at 2/3 of its lifetime; the renewed certificate is used from the next connection. */
  #startRenewal(uplink: MqttUplink): void {
    const { logger, clock } = this.#deps
    const relay = this.#config.relay
    const store = new IdentityStore(this.#config.dataDir)
    const client = new EnrollmentClient({ store, clock, logger: logger.child({ component: 'enrollment' }) }, {
      ...(relay.enrollUrl !== undefined ? { relayUrl: relay.enrollUrl } : {}),
      ...(relay.caFile !== undefined ? { caFile: relay.caFile } : {}),
      ...(relay.caFingerprint !== undefined ? { caFingerprint: relay.caFingerprint } : {}),
      ...(relay.proxyUrl !== undefined ? { proxyUrl: relay.proxyUrl } : {}),
    })
    const renewal = new CertificateRenewal({ store, client, clock, logger })
    this.#unsubscribe.push(renewal.onRenewed((renewed) => uplink.renewTls(toUplinkIdentity(renewed).tls)))
    this.#unsubscribe.push(renewal.onNeedsEnrollment((reason) => this.#log.error({ reason }, 'the box needs a new enrollment: create a code in the cloud console and enter it in the box\'s setup page')))
    this.#renewal = renewal
    void renewal.start().catch((err: unknown) => this.#log.error({ err: (err as Error).message }, 'certificate renewal did not start'))
  }

  stop(reason = 'shutdown'): Promise<void> {
    return this.#inTurn(() => this.#stop(reason))
  }

  async #stop(reason: string): Promise<void> {
    if (!this.#started) return
    this.#started = false
    this.#renewal?.stop()
    this.#renewal = undefined
    this.#deps.clock.clearTimeout(this.#telemetryTimer)
    this.#cutoffGuard?.stop()
    this.#cutoffGuard = undefined
    for (const off of this.#unsubscribe.splice(0)) off()
    for (const off of this.#adapterUnsubscribe.values()) off()
    this.#adapterUnsubscribe.clear()
    await Promise.all([...this.#adapters.values()].map((adapter) => adapter.stop().catch(() => undefined)))
    this.#adapters.clear()
    await this.#uplink?.stop(reason)
    this.#uplink = undefined
    await this.#outbox.close() // H2: after the uplink, so nothing is put or acked on a closed outbox
    await this.#store.flush()
    this.#log.info({ reason }, 'gateway stopped')
  }

  #onObservation(connectorId: string, observation: PbxObservation): void {
    const uplink = this.#uplink
    const tracker = this.#tracker
    if (!uplink || !tracker) return
    if (observation.kind === 'link') {
      const previous = this.#links.get(connectorId)
      const link: LinkData = {
        connectorId,
        pbxType: previous?.pbxType ?? 'unknown',
        state: observation.state,
        since: observation.at,
        endpoints: previous?.endpoints ?? 0,
        ...(observation.reason ? { reason: observation.reason.slice(0, 512) } : {}),
      }
      this.#links.set(connectorId, link)
      // H2: through the outbox, retained, one record per connector.
      void uplink.publishDurable(outboxKeys.link(connectorId), 'link', link, topics.link(this.#gatewayId, connectorId), true)
      return
    }
    if (observation.kind === 'directory') {
      this.#directories.set(connectorId, observation.entries)
      const link = this.#links.get(connectorId)
      if (link) link.endpoints = observation.entries.length
      // H2: through the outbox, the latest directory per connector, in parts the relay accepts (one record per part).
      for (const part of this.#directoryParts(connectorId, observation.entries)) {
        const key = part.part === 1 ? outboxKeys.directory(connectorId) : `${outboxKeys.directory(connectorId)}/${part.part}`
        void uplink.publishDurable(key, 'directory', part, topics.directory(this.#gatewayId))
      }
      return
    }
    const changed = tracker.apply(connectorId, observation)
    if (!changed) return
    void this.#store.setOwnedDnd(tracker.ownedDnd())
    this.#recentEvents.push(changed)
    if (this.#recentEvents.length > RECENT_EVENTS) this.#recentEvents.shift()
    for (const listener of this.#endpointListeners) listener(changed)
    this.#log.debug({ endpoint: changed.endpointId, state: changed.state, dnd: changed.dnd, owner: changed.dndOwner, cause: changed.cause }, 'endpoint changed')
    // H2: through the outbox, coalesced per endpoint (latest state wins), replayed in seq order after a reconnect.
    void uplink.publishDurable(outboxKeys.endpoint(connectorId, changed.endpointId), 'endpoint', changed, topics.endpoint(this.#gatewayId))
  }

  /** A directory in parts within the contract's limits (IP Office's 3,000 users: 6 parts of 500). */
  #directoryParts(connectorId: string, entries: readonly DirectoryEntry[]): DirectoryData[] {
    const { parts, omitted } = splitDirectory(connectorId, entries)
    if (omitted) this.#log.warn({ connector: connectorId, entries: entries.length, omitted }, `the PBX directory has more extensions than the relay accepts (${DIRECTORY_MAX_PARTS * DIRECTORY_MAX_ENTRIES}); the rest are not sent`)
    return parts
  }

  /**
   * After every relay (re)connect: links, directories and every endpoint, so the relay can resync. Not
   * stored in the outbox: the uplink queues these behind the outbox replay while connected and drops them while
   * not (the next connect sends a new snapshot).
   */
  #publishSnapshot(reason: string): void {
    const uplink = this.#uplink
    if (!uplink || !this.#tracker) return
    for (const link of this.#links.values()) uplink.publishRetained('link', link, link.connectorId)
    for (const [connectorId, entries] of this.#directories) {
      for (const part of this.#directoryParts(connectorId, entries)) uplink.publish('directory', part, topics.directory(this.#gatewayId))
    }
    for (const endpoint of this.#tracker.all()) {
      uplink.publish('endpoint', { ...endpoint, cause: 'snapshot' }, topics.endpoint(this.#gatewayId))
    }
    this.#log.info({ reason, endpoints: this.#tracker.all().length }, 'snapshot sent to relay')
  }

  async #onCommand(command: CommandEnvelope): Promise<CommandResult> {
    // cmd/ping proves the path both ways; answered at once.
    if ((command as AnyEnvelope).type === 'cmd.ping') return { ok: true }
    if (command.type === 'cmd.resync') {
      this.#publishSnapshot(`relay asked: ${command.data.reason}`)
      return { ok: true }
    }
    if (command.type === 'cmd.update') {
      if (!this.#deps.updates) return { ok: false, error: { code: 'GW_NO_UPDATES', message: 'this gateway has no A/B update agent (a container or a development install): update it with its own package or image' } }
      return this.#deps.updates.accept(command.data)
    }
    const { connectorId, endpointId, dnd, reason } = command.data
    const key = EndpointTracker.key(connectorId, endpointId)
    // Commands for one endpoint are applied in the relay's order; an older one arriving late is refused.
    const last = this.#lastCommandSeq.get(key) ?? -1
    if (command.seq <= last) return { ok: false, error: { code: 'GW_STALE_COMMAND', message: `command seq ${command.seq} is older than ${last}` } }
    this.#lastCommandSeq.set(key, command.seq)

    const adapter = this.#adapters.get(connectorId)
    if (!adapter) return { ok: false, error: { code: 'GW_UNKNOWN_CONNECTOR', message: `no connector "${connectorId}" on this gateway` } }
    const current = this.#tracker?.get(connectorId, endpointId)
    if (!dnd && current?.dnd && current.dndOwner === 'user') {
      // Never clear a DND the person set.
      this.#log.info({ endpoint: endpointId, reason }, 'kept DND: the person set it, not us')
      return { ok: false, error: { code: 'GW_DND_OWNED_BY_USER', message: `DND on ${endpointId} was set by the person; not clearing it` }, endpoint: current }
    }
    const tracker = this.#tracker
    if (!tracker) return { ok: false, error: { code: 'GW_NOT_READY', message: 'gateway is starting' } }
    if (dnd && tracker.claimDnd(connectorId, endpointId)) await this.#store.setOwnedDnd(tracker.ownedDnd())
    try {
      this.#log.info({ endpoint: endpointId, dnd, reason }, dnd ? 'setting DND on the PBX' : 'releasing DND on the PBX')
      await adapter.setDnd(endpointId, dnd)
      const after = tracker.get(connectorId, endpointId)
      await this.#store.setOwnedDnd(tracker.ownedDnd())
      return after ? { ok: true, endpoint: after } : { ok: true }
    } catch (err) {
      if (dnd) {
        tracker.releaseClaim(connectorId, endpointId)
        await this.#store.setOwnedDnd(tracker.ownedDnd())
      }
      const code = err instanceof AdapterError ? err.code : 'GW_ADAPTER_FAILED'
      this.#deps.counters.inc('commands.failed')
      this.#log.warn({ endpoint: endpointId, dnd, code, err: (err as Error).message }, 'setting DND failed')
      return { ok: false, error: { code, message: (err as Error).message.slice(0, 1000) } }
    }
  }

  /**
   * The store reserves seq numbers on disk in blocks, written after the fact; after a crash in a burst, the outbox
   * can hold records whose seq is above the last reservation written. New envelopes must come after them, or the
   * relay would take fresh states for stale ones.
   */
  #seqAboveOutbox(): void {
    const floor = this.#outbox.stats().maxSeq
    let next = this.#store.nextSeq()
    if (next > floor) return
    if (floor - next > 10_000_000) {
      this.#log.error({ outboxMaxSeq: floor, storeSeq: next }, 'outbox holds seq numbers far above the gateway state: is dataDir shared with another gateway? Not adjusting')
      return
    }
    while (next <= floor) next = this.#store.nextSeq()
    this.#log.warn({ outboxMaxSeq: floor, nowAt: next }, 'seq moved above the outbox records left by a crash')
  }

  /** For the cut-off guard: switches off a DND we own, if it is still on and still ours. */
  async #releaseOwnedDnd({ connectorId, endpointId }: OwnedDndEndpoint): Promise<boolean> {
    const tracker = this.#tracker
    const current = tracker?.get(connectorId, endpointId)
    if (!tracker || !current?.dnd || current.dndOwner !== 'gateway') return false
    const adapter = this.#adapters.get(connectorId)
    if (!adapter) throw new AdapterError('GW_UNKNOWN_CONNECTOR', `no connector "${connectorId}" on this gateway`)
    await adapter.setDnd(endpointId, false)
    await this.#store.setOwnedDnd(tracker.ownedDnd())
    return true
  }

  #scheduleTelemetry(): void {
    const { clock, counters } = this.#deps
    this.#telemetryTimer = clock.setTimeout(() => {
      // machine health from the OS (cached), process counters, version, outbox depth
      void this.#telemetry.sample().then((health) => {
        if (!this.#started) return
        const processUptimeS = Math.round((clock.now() - this.#startedAt) / 1000)
        const outboxRecords = this.#deps.outboxRecords?.() ?? this.#outbox.size
        this.#uplink?.publish('telemetry', {
          uptimeS: processUptimeS,
          rssBytes: process.memoryUsage().rss,
          eventsSent: counters.get('uplink.sent'),
          invalidCommands: counters.get('uplink.invalid_commands'),
          ...health,
          processUptimeS,
          version: GATEWAY_VERSION,
          ...(outboxRecords !== undefined ? { outboxRecords } : {}),
        }, topics.telemetry(this.#gatewayId))
      })
      if (this.#started) this.#scheduleTelemetry()
    }, this.#config.telemetryIntervalS * 1000)
  }
}
