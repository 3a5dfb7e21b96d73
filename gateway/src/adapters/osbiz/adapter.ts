import type { AdapterDeps, PbxObservation } from '../types.js'
import { AdapterError } from '../types.js'
import { PbxLinkAdapter, type KitLink } from '../kit/pbx-link-adapter.js'
import { LinkTimers } from '../kit/link-timers.js'
import type { OsbizConfig } from './config.js'
import { createCstaCodec } from './csta/codec-registry.js'
import type { CstaEvent } from './csta/model.js'
import { OsbizDriver } from './driver.js'
import { CstaLinkError } from './link-error.js'
import { normaliseEvent, normaliseSnapshot } from './normalise.js'

/**
 * How long after our SetDoNotDisturb was answered a DoNotDisturbEvent with the same value still counts as
 * ours. Switches may send the event before or after the response; a DND caused by our own command must never
 * be taken for the person's.
 */
const DND_ATTRIBUTION_WINDOW_MS = 2000
const MONITOR_LIMIT_ERRORS = new Set(['overallMonitorLimitExceeded'])
const UNKNOWN_DEVICE_ERRORS = new Set(['invalidDeviceID', 'invalidDeviceId'])

/** State that lives exactly as long as one CSTA association. */
interface Link extends KitLink<OsbizDriver> {
  /** monitorCrossRefID → extension. */
  monitors: Map<string, string>
  /** Extensions whose state is being read; their events wait here and are applied after the snapshot. */
  syncing: Map<string, CstaEvent[]>
}

/**
 * OpenScape Business over CSTA: keeps one association up (with backoff), monitors every configured extension,
 * reads their state after each (re)connect and turns events into observations.
 */
export class OsbizAdapter extends PbxLinkAdapter<OsbizConfig, Link> {
  readonly type = 'osbiz'
  /** Last DND state the PBX reported per endpoint, to know whether a command will cause an event. */
  readonly #knownDnd = new Map<string, boolean>()

  constructor(config: OsbizConfig, deps: AdapterDeps) {
    super(config, deps, {
      codePrefix: 'OSBIZ', otherCode: 'CSTA_ERROR', linkName: 'the CSTA link', address: `${config.host}:${config.port}`, host: config.host,
      requestTimeoutMs: config.requestTimeoutMs, refusedHint: 'is the CSTA link enabled and is one of the 4 links free?',
      backoffBaseMs: 1000, backoffMaxMs: 30000,
    })
  }

  async setDnd(endpointId: string, dnd: boolean): Promise<{ dnd: boolean }> {
    const link = this.openLink(endpointId)
    if (!this.config.users.some((user) => user.extension === endpointId)) {
      throw new AdapterError('OSBIZ_UNKNOWN_DEVICE', `${endpointId} is not a configured extension of connector ${this.connectorId}`, { endpointId })
    }
    // Registered before sending: the switch may send the DoNotDisturbEvent before its response.
    const command = this.dndCommands.add(endpointId, dnd)
    const changes = this.#knownDnd.get(endpointId) !== dnd
    try {
      await link.driver.request({ kind: 'SetDoNotDisturb', device: endpointId, doNotDisturbOn: dnd })
    } catch (error) {
      this.dndCommands.forget(endpointId, command)
      throw this.adapterError(error, endpointId, (failure, detail) => {
        if (failure.code !== 'CSTA_ERROR' || !(failure instanceof CstaLinkError)) return undefined
        const { category, value } = failure.detail
        if (value !== undefined && UNKNOWN_DEVICE_ERRORS.has(value)) return new AdapterError('OSBIZ_UNKNOWN_DEVICE', `the PBX does not know device ${endpointId}`, detail)
        return new AdapterError('OSBIZ_CSTA_ERROR', `the PBX refused: ${category ?? 'error'}/${value ?? 'unspecified'}`, detail)
      })
    }
    // Setting DND to its current value is answered positively with no event (ECMA-269 §9.5.1): the confirmed
    // state comes from the response, and no later event can be ours, so the window closes at once.
    if (changes) command.until = this.deps.clock.now() + DND_ATTRIBUTION_WINDOW_MS
    else this.dndCommands.forget(endpointId, command)
    if (this.link === link) this.emit({ kind: 'dnd', endpointId, dnd, at: this.deps.clock.now(), byCommand: true })
    return { dnd }
  }

  // --- Connection lifecycle -------------------------------------------------------------------------------

  protected async createLink(): Promise<Link> {
    const config = this.config
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
    }, { ...this.deps, logger: this.deps.logger.child({ component: 'csta-driver' }) })
    const link: Link = { driver, monitors: new Map(), syncing: new Map(), timers: new LinkTimers(this.deps.clock), unsubscribe: [] }
    link.unsubscribe.push(driver.onEvent((event) => this.#onEvent(link, event)))
    return link
  }

  protected linkOpened(link: Link): void {
    this.emitDirectory(this.config.users.map((user) => (user.email === undefined
      ? { endpointId: user.extension, name: user.name }
      : { endpointId: user.extension, name: user.name, email: user.email })))
    void this.#synchronise(link)
  }

  protected override forgetLink(link: Link): void {
    link.monitors.clear()
    link.syncing.clear()
    this.#knownDnd.clear()
  }

  protected override describeFailure(error: unknown): string | undefined {
    if (!(error instanceof CstaLinkError)) return undefined
    const address = this.spec.address
    switch (error.code) {
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
      default:
        return undefined
    }
  }

  // --- Monitoring and state reads -------------------------------------------------------------------------

  async #synchronise(link: Link): Promise<void> {
    const intervalMs = 1000 / this.config.monitorsPerSecond
    let lastStart = Number.NEGATIVE_INFINITY
    const reads: Array<Promise<void>> = []
    const unmonitored: string[] = []
    let limitReached = false
    for (const { extension } of this.config.users) {
      if (this.link !== link) return
      if (limitReached) {
        unmonitored.push(extension)
        continue
      }
      const waitMs = lastStart + intervalMs - this.deps.clock.now()
      if (waitMs > 0) {
        await link.timers.delay(waitMs)
        if (this.link !== link) return
      }
      lastStart = this.deps.clock.now()
      const result = await this.#monitor(link, extension)
      if (result === 'monitored') reads.push(this.#readEndpoint(link, extension))
      if (result === 'limit') {
        limitReached = true
        unmonitored.push(extension)
      }
    }
    if (unmonitored.length > 0) {
      this.deps.logger.error(
        { monitored: link.monitors.size, unmonitored },
        'PBX monitor limit reached: the listed extensions are not monitored; raise the limit or monitor fewer users',
      )
    }
    await Promise.all(reads)
    this.lifecycle.markHealthy(link)
  }

  async #monitor(link: Link, extension: string): Promise<'monitored' | 'skipped' | 'limit'> {
    try {
      const response = await link.driver.request({ kind: 'MonitorStart', device: extension })
      if (this.link !== link) return 'skipped'
      link.monitors.set(response.monitorCrossRefId, extension)
      // Hold its events from this moment until its state has been read (see #readEndpoint).
      link.syncing.set(extension, [])
      return 'monitored'
    } catch (error) {
      if (this.link !== link) return 'skipped'
      this.deps.counters.inc('osbiz.monitors.failed')
      const detail = error instanceof CstaLinkError ? error.detail : {}
      if (detail.value !== undefined && UNKNOWN_DEVICE_ERRORS.has(detail.value)) {
        this.deps.logger.warn({ extension }, 'extension unknown to the PBX: not monitored; check the users list')
        return 'skipped'
      }
      if (detail.value !== undefined && MONITOR_LIMIT_ERRORS.has(detail.value)) return 'limit'
      if (detail.value === 'objectMonitorLimitExceeded') {
        this.deps.logger.error({ extension }, 'PBX refuses another monitor on this extension (objectMonitorLimitExceeded): another application may hold its monitors')
        return 'skipped'
      }
      this.deps.logger.warn({ extension, err: error instanceof Error ? error.message : String(error) }, 'MonitorStart failed: extension not monitored on this link')
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
      if (this.link !== link) return
      this.emit(normaliseSnapshot(extension, snapshot, dnd.doNotDisturbOn, this.deps.clock.now()))
    } catch (error) {
      if (this.link !== link) return
      this.deps.counters.inc('osbiz.snapshots.failed')
      this.deps.logger.warn({ extension, err: error instanceof Error ? error.message : String(error) }, 'cannot read endpoint state; events still apply')
    } finally {
      const held = link.syncing.get(extension)
      link.syncing.delete(extension)
      if (this.link === link && held !== undefined) for (const event of held) this.#applyEvent(link, extension, event)
    }
  }

  // --- Events ---------------------------------------------------------------------------------------------

  #onEvent(link: Link, event: CstaEvent): void {
    if (this.link !== link) return
    this.deps.counters.inc('osbiz.events.received')
    const extension = link.monitors.get(event.monitorCrossRefId)
    if (extension === undefined) {
      this.deps.counters.inc('osbiz.events.unmatched')
      this.deps.logger.debug({ kind: event.kind, monitorCrossRefId: event.monitorCrossRefId }, 'CSTA event for an unknown monitor ignored')
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
    const outcome = normaliseEvent(event, link.monitors, this.deps.clock.now())
    switch (outcome.action) {
      case 'observe': {
        const { observation } = outcome
        if (observation.kind === 'dnd') observation.byCommand = this.dndCommands.take(extension, observation.dnd)
        this.emit(observation)
        return
      }
      case 'ignore':
        this.deps.logger.debug({ kind: event.kind, extension, reason: outcome.reason }, 'CSTA event without effect')
        return
      case 'resnapshot':
        this.deps.logger.debug({ kind: event.kind, extension, reason: outcome.reason }, 'reading endpoint state again')
        if (!link.syncing.has(extension)) void this.#readEndpoint(link, extension)
        return
    }
  }

  // --- Output ---------------------------------------------------------------------------------------------

  protected override emit(observation: PbxObservation): void {
    if (observation.kind === 'dnd' || observation.kind === 'snapshot') this.#knownDnd.set(observation.endpointId, observation.dnd)
    super.emit(observation)
  }
}
