import type { ClockTimer } from '../../core/clock.js'
import { LinkLifecycle } from '../kit/link-lifecycle.js'
import {
  AdapterError,
  type AdapterDeps,
  type PbxAdapter,
  type PbxObservation,
  type PbxObservationListener,
} from '../types.js'
import { DndCommands } from '../kit/dnd-commands.js'
import type { OsbizConfig } from './config.js'
import { createCstaCodec } from './csta/codec-registry.js'
import type { CstaEvent } from './csta/model.js'
import { OsbizDriver, type DriverClosed } from './driver.js'
import { CstaLinkError } from './link-error.js'
import { normaliseEvent, normaliseSnapshot } from './normalise.js'

const BACKOFF_BASE_MS = 1000
const BACKOFF_MAX_MS = 30000
/**
 * How long after our SetDoNotDisturb was answered a DoNotDisturbEvent with the same value still counts as
 * ours. Switches may send the event before or after the response; a DND caused by our own command must never
 * be taken for the person's.
 */
const DND_ATTRIBUTION_WINDOW_MS = 2000
const MONITOR_LIMIT_ERRORS = new Set(['overallMonitorLimitExceeded'])
const UNKNOWN_DEVICE_ERRORS = new Set(['invalidDeviceID', 'invalidDeviceId'])

/** State that lives exactly as long as one CSTA association. */
interface Link {
  driver: OsbizDriver
  /** monitorCrossRefID → extension. */
  monitors: Map<string, string>
  /** Extensions whose state is being read; their events wait here and are applied after the snapshot. */
  syncing: Map<string, CstaEvent[]>
  timers: Set<ClockTimer>
  unsubscribe: Array<() => void>
}

/**
 * OpenScape Business over CSTA: keeps one association up (with backoff), monitors every configured extension,
 * reads their state after each (re)connect and turns events into observations.
 */
export class OsbizAdapter implements PbxAdapter {
  readonly connectorId: string
  readonly type = 'osbiz'
  readonly #config: OsbizConfig
  readonly #deps: AdapterDeps
  readonly #lifecycle: LinkLifecycle<Link>
  readonly #dndCommands: DndCommands
  /** Last DND state the PBX reported per endpoint, to know whether a command will cause an event. */
  readonly #knownDnd = new Map<string, boolean>()

  constructor(config: OsbizConfig, deps: AdapterDeps) {
    this.connectorId = config.id
    this.#config = config
    this.#deps = deps
    this.#dndCommands = new DndCommands(deps.clock)
    this.#lifecycle = new LinkLifecycle<Link>({
      deps,
      backoffBaseMs: BACKOFF_BASE_MS,
      backoffMaxMs: BACKOFF_MAX_MS,
      connect: () => this.#connect(),
      drop: (link) => this.#dropLink(link),
    })
  }

  start(): Promise<void> {
    return this.#lifecycle.start()
  }

  stop(): Promise<void> {
    return this.#lifecycle.stop()
  }

  onObservation(listener: PbxObservationListener): () => void {
    return this.#lifecycle.onObservation(listener)
  }

  async setDnd(endpointId: string, dnd: boolean): Promise<{ dnd: boolean }> {
    const link = this.#link
    if (!this.#lifecycle.running || link === undefined || !link.driver.isOpen) {
      throw new AdapterError('OSBIZ_NOT_CONNECTED', `the CSTA link to ${this.#address} is down`, { endpointId })
    }
    if (!this.#config.users.some((user) => user.extension === endpointId)) {
      throw new AdapterError('OSBIZ_UNKNOWN_DEVICE', `${endpointId} is not a configured extension of connector ${this.connectorId}`, { endpointId })
    }
    // Registered before sending: the switch may send the DoNotDisturbEvent before its response.
    const command = this.#dndCommands.add(endpointId, dnd)
    const changes = this.#knownDnd.get(endpointId) !== dnd
    try {
      await link.driver.request({ kind: 'SetDoNotDisturb', device: endpointId, doNotDisturbOn: dnd })
    } catch (error) {
      this.#dndCommands.forget(endpointId, command)
      throw this.#toAdapterError(error, endpointId)
    }
    // Setting DND to its current value is answered positively with no event (ECMA-269 §9.5.1): the confirmed
    // state comes from the response, and no later event can be ours, so the window closes at once.
    if (changes) command.until = this.#deps.clock.now() + DND_ATTRIBUTION_WINDOW_MS
    else this.#dndCommands.forget(endpointId, command)
    if (this.#link === link) this.#emit({ kind: 'dnd', endpointId, dnd, at: this.#deps.clock.now(), byCommand: true })
    return { dnd }
  }

  // --- Connection lifecycle -------------------------------------------------------------------------------

  get #link(): Link | undefined {
    return this.#lifecycle.link
  }

  get #address(): string {
    return `${this.#config.host}:${this.#config.port}`
  }

  async #connect(): Promise<void> {
    const config = this.#config
    const codec = createCstaCodec(config.codec, config.devicePrefix === undefined ? {} : { devicePrefix: config.devicePrefix })
    const driver = new OsbizDriver({
      host: config.host,
      port: config.port,
      codec,
      applicationId: config.applicationId,
      ...(config.username === undefined ? {} : { username: config.username }),
      ...(config.password === undefined ? {} : { password: config.password }),
      sessionDurationS: config.sessionDurationS,
      requestTimeoutMs: config.requestTimeoutMs,
      probeIntervalMs: config.probeIntervalS * 1000,
    }, { logger: this.#deps.logger.child({ component: 'csta-driver' }), clock: this.#deps.clock, counters: this.#deps.counters })
    const link: Link = { driver, monitors: new Map(), syncing: new Map(), timers: new Set(), unsubscribe: [] }
    this.#lifecycle.link = link
    link.unsubscribe.push(
      driver.onEvent((event) => this.#onEvent(link, event)),
      driver.onClose((closed) => this.#onLinkLost(link, closed)),
    )
    try {
      await driver.open()
    } catch (error) {
      if (this.#link !== link) return
      this.#dropLink(link)
      const reason = this.#describeConnectFailure(error)
      this.#deps.logger.warn({ code: error instanceof CstaLinkError ? error.code : undefined, reason, attempt: this.#lifecycle.attempt }, 'PBX link failed')
      this.#lifecycle.reconnectLater(reason)
      return
    }
    if (this.#link !== link) return
    this.#deps.logger.info({ address: this.#address, extensions: config.users.length }, 'PBX link connected')
    this.#lifecycle.emitLink('connected')
    this.#emit({
      kind: 'directory',
      entries: config.users.map((user) => (user.email === undefined
        ? { endpointId: user.extension, name: user.name }
        : { endpointId: user.extension, name: user.name, email: user.email })),
    })
    void this.#synchronise(link)
  }

  #onLinkLost(link: Link, closed: DriverClosed): void {
    if (this.#link !== link) return
    this.#dropLink(link)
    this.#lifecycle.reconnectLater(`lost the CSTA link to ${this.#address}: ${closed.reason}`)
  }

  /** Forgets everything tied to the association: monitorCrossRefIDs are meaningless on the next one. */
  #dropLink(link: Link): void {
    for (const unsubscribe of link.unsubscribe) unsubscribe()
    for (const timer of link.timers) this.#deps.clock.clearTimeout(timer)
    link.timers.clear()
    link.monitors.clear()
    link.syncing.clear()
    this.#dndCommands.clear()
    this.#knownDnd.clear()
    if (this.#link === link) this.#lifecycle.link = undefined
  }

  #describeConnectFailure(error: unknown): string {
    const address = this.#address
    if (!(error instanceof CstaLinkError)) return `cannot connect to ${address}: ${String(error)}`
    switch (error.code) {
      case 'CONNECT_REFUSED':
        return `connection refused by ${address}: is the CSTA link enabled and is one of the 4 links free?`
      case 'CONNECT_TIMEOUT':
        return `no answer from ${address} within ${this.#config.requestTimeoutMs / 1000} s: check the PBX address and any firewall in between`
      case 'CLOSED_BEFORE_SESSION':
        return `${address} accepted the connection but closed it before the session started: all 4 CSTA links may be in use, or the PBX does not accept this client`
      case 'SESSION_REJECTED': {
        const code = error.detail.value ?? 'no reason given'
        return /protocol|version/i.test(code)
          ? `session rejected: the PBX does not accept the requested CSTA protocol version (${code})`
          : `session rejected: wrong application credentials (${code}); check the application ID, user name and password`
      }
      case 'SESSION_TIMEOUT':
        return `${address} did not answer the session request: is it the CSTA port, and does it accept CSTA XML? (OSBiz documents ASN.1 on this port)`
      case 'CONNECT_FAILED': {
        const errno = error.detail.errno
        if (errno === 'ENOTFOUND' || errno === 'EAI_AGAIN') return `cannot resolve ${this.#config.host}: check the PBX address`
        if (errno === 'EHOSTUNREACH' || errno === 'ENETUNREACH') return `${this.#config.host} is unreachable from the gateway: check the address and the network`
        return `cannot connect to ${address} (${errno ?? 'connection closed'})`
      }
      default:
        return `cannot start the CSTA session with ${address}: ${error.message}`
    }
  }

  // --- Monitoring and state reads -------------------------------------------------------------------------

  async #synchronise(link: Link): Promise<void> {
    const intervalMs = 1000 / this.#config.monitorsPerSecond
    let lastStart = Number.NEGATIVE_INFINITY
    const reads: Array<Promise<void>> = []
    const unmonitored: string[] = []
    let limitReached = false
    for (const { extension } of this.#config.users) {
      if (this.#link !== link) return
      if (limitReached) {
        unmonitored.push(extension)
        continue
      }
      const waitMs = lastStart + intervalMs - this.#deps.clock.now()
      if (waitMs > 0) {
        await this.#delay(link, waitMs)
        if (this.#link !== link) return
      }
      lastStart = this.#deps.clock.now()
      const result = await this.#monitor(link, extension)
      if (result === 'monitored') reads.push(this.#readEndpoint(link, extension))
      if (result === 'limit') {
        limitReached = true
        unmonitored.push(extension)
      }
    }
    if (unmonitored.length > 0) {
      this.#deps.logger.error(
        { monitored: link.monitors.size, unmonitored },
        'PBX monitor limit reached: the listed extensions are not monitored; raise the limit or monitor fewer users',
      )
    }
    await Promise.all(reads)
    this.#lifecycle.markHealthy(link)
  }

  async #monitor(link: Link, extension: string): Promise<'monitored' | 'skipped' | 'limit'> {
    try {
      const response = await link.driver.request({ kind: 'MonitorStart', device: extension })
      if (this.#link !== link) return 'skipped'
      link.monitors.set(response.monitorCrossRefId, extension)
      // Hold its events from this moment until its state has been read (see #readEndpoint).
      link.syncing.set(extension, [])
      return 'monitored'
    } catch (error) {
      if (this.#link !== link) return 'skipped'
      this.#deps.counters.inc('osbiz.monitors.failed')
      const detail = error instanceof CstaLinkError ? error.detail : {}
      if (detail.value !== undefined && UNKNOWN_DEVICE_ERRORS.has(detail.value)) {
        this.#deps.logger.warn({ extension }, 'extension unknown to the PBX: not monitored; check the users list')
        return 'skipped'
      }
      if (detail.value !== undefined && MONITOR_LIMIT_ERRORS.has(detail.value)) return 'limit'
      if (detail.value === 'objectMonitorLimitExceeded') {
        this.#deps.logger.error({ extension }, 'PBX refuses another monitor on this extension (objectMonitorLimitExceeded): another application may hold its monitors')
        return 'skipped'
      }
      this.#deps.logger.warn({ extension, err: error instanceof Error ? error.message : String(error) }, 'MonitorStart failed: extension not monitored on this link')
      return 'skipped'
    }
  }

  /**
   * Reads DND and calls of one endpoint and emits one snapshot. Events that arrive meanwhile are held and
   * applied afterwards in order: they are state assertions, so replaying ones the snapshot already contains
   * ends in the same state, while ones it missed are not lost.
   */
  async #readEndpoint(link: Link, extension: string): Promise<void> {
    if (!link.syncing.has(extension)) link.syncing.set(extension, [])
    try {
      const [dnd, snapshot] = await Promise.all([
        link.driver.request({ kind: 'GetDoNotDisturb', device: extension }),
        link.driver.request({ kind: 'SnapshotDevice', device: extension }),
      ])
      if (this.#link !== link) return
      this.#emit(normaliseSnapshot(extension, snapshot, dnd.doNotDisturbOn, this.#deps.clock.now()))
    } catch (error) {
      if (this.#link !== link) return
      this.#deps.counters.inc('osbiz.snapshots.failed')
      this.#deps.logger.warn({ extension, err: error instanceof Error ? error.message : String(error) }, 'cannot read endpoint state; events still apply')
    } finally {
      const held = link.syncing.get(extension)
      link.syncing.delete(extension)
      if (this.#link === link && held !== undefined) for (const event of held) this.#applyEvent(link, extension, event)
    }
  }

  #delay(link: Link, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.#deps.clock.setTimeout(() => {
        link.timers.delete(timer)
        resolve()
      }, ms)
      link.timers.add(timer)
    })
  }

  // --- Events ---------------------------------------------------------------------------------------------

  #onEvent(link: Link, event: CstaEvent): void {
    if (this.#link !== link) return
    this.#deps.counters.inc('osbiz.events.received')
    const extension = link.monitors.get(event.monitorCrossRefId)
    if (extension === undefined) {
      this.#deps.counters.inc('osbiz.events.unmatched')
      this.#deps.logger.debug({ kind: event.kind, monitorCrossRefId: event.monitorCrossRefId }, 'CSTA event for an unknown monitor ignored')
      return
    }
    const held = link.syncing.get(extension)
    if (held !== undefined) {
      held.push(event)
      return
    }
    this.#applyEvent(link, extension, event)
  }

  #applyEvent(link: Link, extension: string, event: CstaEvent): void {
    const outcome = normaliseEvent(event, link.monitors, this.#deps.clock.now())
    switch (outcome.action) {
      case 'observe': {
        const { observation } = outcome
        if (observation.kind === 'dnd') observation.byCommand = this.#dndCommands.take(extension, observation.dnd)
        this.#emit(observation)
        return
      }
      case 'ignore':
        this.#deps.logger.debug({ kind: event.kind, extension, reason: outcome.reason }, 'CSTA event without effect')
        return
      case 'resnapshot':
        this.#deps.logger.debug({ kind: event.kind, extension, reason: outcome.reason }, 'reading endpoint state again')
        if (!link.syncing.has(extension)) void this.#readEndpoint(link, extension)
        return
    }
  }

  #toAdapterError(error: unknown, endpointId: string): AdapterError {
    if (!(error instanceof CstaLinkError)) {
      return new AdapterError('OSBIZ_CSTA_ERROR', error instanceof Error ? error.message : String(error), { endpointId })
    }
    const detail = { endpointId, linkCode: error.code, ...error.detail }
    switch (error.code) {
      case 'CSTA_ERROR':
        if (error.detail.value !== undefined && UNKNOWN_DEVICE_ERRORS.has(error.detail.value)) {
          return new AdapterError('OSBIZ_UNKNOWN_DEVICE', `the PBX does not know device ${endpointId}`, detail)
        }
        return new AdapterError('OSBIZ_CSTA_ERROR', `the PBX refused: ${error.detail.category ?? 'error'}/${error.detail.value ?? 'unspecified'}`, detail)
      case 'REQUEST_TIMEOUT':
        return new AdapterError('OSBIZ_TIMEOUT', `the PBX did not answer within ${this.#config.requestTimeoutMs} ms`, detail)
      case 'NOT_OPEN':
      case 'LINK_CLOSED':
        return new AdapterError('OSBIZ_NOT_CONNECTED', `the CSTA link to ${this.#address} went down`, detail)
      default:
        return new AdapterError('OSBIZ_CSTA_ERROR', error.message, detail)
    }
  }

  // --- Output ---------------------------------------------------------------------------------------------

  #emit(observation: PbxObservation): void {
    if (observation.kind === 'dnd' || observation.kind === 'snapshot') this.#knownDnd.set(observation.endpointId, observation.dnd)
    this.#lifecycle.emit(observation)
  }
}
