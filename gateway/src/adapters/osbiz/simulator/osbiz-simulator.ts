import { randomBytes } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { CstaDecoded, CstaFrameDecoder } from '../csta/codec.js'
import type {
  CstaCallEvent,
  CstaMessage,
  LocalConnectionState,
  SnapshotCall,
} from '../csta/model.js'
import { CSTA_ED3_NAMESPACE, XmlCstaCodec } from '../csta/xml-codec.js'
import { EVENT_INVOKE_ID } from '../csta/xml-framing.js'
import { PhoneSystem, type Leg, type PhoneEvent } from '../../sim-kit/phone-system.js'
import { SimListener } from '../../sim-kit/listener.js'

/**
 * An OpenScape Business CSTA link as far as the public facts go (research §1.2-1.12): ECMA-323 XML in the
 * 8-byte framing, ECMA-354 sessions that die at 2× their duration without a reset, SystemStatus heartbeats,
 * at most 4 links, device monitors with limits, SnapshotDevice, DND with the "same value, no event" rule.
 * Responses carry xmlns, events do not (as some switches do), so clients must parse tolerantly. People and
 * calls are the shared phone-system model (sim-kit); this file is the wire side: sessions, monitor points and
 * each model event as CSTA events to the monitors of the devices in the call.
 */

export interface SimulatorUser {
  extension: string
  name: string
  email?: string
}

export interface OsbizSimulatorOptions {
  /** Default 127.0.0.1. */
  host?: string
  /** 0 (default) picks a free port. */
  port?: number
  users?: SimulatorUser[]
  /** Without credentials any application may start a session. */
  credentials?: { applicationId: string; username?: string; password?: string }
  /** The longest session duration granted (default 150 s, as one known CSTA server answers). */
  sessionDurationS?: number
  /** Send SystemStatus this often after the first one (which follows session start). Default: never. */
  systemStatusIntervalS?: number
  /** Drop the link when this many SystemStatus requests in a row stay unanswered. Default 2. */
  systemStatusMaxMissed?: number
  /** Total monitors over all links; above it MonitorStart fails with overallMonitorLimitExceeded. */
  maxMonitors?: number
  /** Concurrent TCP links; further connections are closed at once. Default 4. */
  maxLinks?: number
  /** Public number prefix; device ids in requests may carry it (e.g. "+49301234201"). */
  devicePrefix?: string
  logger?: Logger
}

export interface SimulatorEventRecord {
  /** performance.now() when the event was written to the client socket. */
  at: number
  /** CSTA event name, e.g. DeliveredEvent. */
  type: string
  /** The monitored extension the event was sent for. */
  extension: string
}

export interface SimulatorCall {
  callId: string
  calling: string
  called: string
  legs: Array<{ device: string; state: LocalConnectionState }>
}

export interface SimulatorStats {
  sessionsStarted: number
  sessionsRejected: number
  sessionResets: number
  systemStatusSent: number
  systemStatusAnswered: number
  linksRefused: number
}

interface SimLink {
  socket: Socket
  decoder: CstaFrameDecoder
  session: { id: string; durationS: number } | undefined
  expiryTimer: NodeJS.Timeout | undefined
  statusTimer: NodeJS.Timeout | undefined
  /** invokeID of our SystemStatus still waiting for its answer. */
  statusOutstanding: number | undefined
  statusMissed: number
  /** monitorCrossRefID → extension. */
  monitors: Map<string, string>
}

/** A call event before the per-recipient fields are filled in (Omit applied to each member of the union). */
type CallEventBody = CstaCallEvent extends infer E ? E extends CstaCallEvent ? Omit<E, 'monitorCrossRefId' | 'localConnectionInfo'> : never : never

/** The switch's own invoke ids; clients use 1..8999 and 9999 marks events. */
const FIRST_SWITCH_INVOKE_ID = 9000
const LAST_SWITCH_INVOKE_ID = 9998

/** CSTA has no user list: a device is a person with no data beyond the model's. */
type NoData = Record<never, never>

export class OsbizSimulator extends PhoneSystem<NoData> {
  readonly #options: OsbizSimulatorOptions
  readonly #listener: SimListener
  readonly #links = new Set<SimLink>()
  readonly #eventListeners = new Set<(record: SimulatorEventRecord) => void>()
  readonly #stats: SimulatorStats = {
    sessionsStarted: 0, sessionsRejected: 0, sessionResets: 0, systemStatusSent: 0, systemStatusAnswered: 0, linksRefused: 0,
  }
  #nextCrossRefId = 1
  #nextSwitchInvokeId = FIRST_SWITCH_INVOKE_ID
  readonly #responseCodec: XmlCstaCodec
  /** Events go out without xmlns, as some switches send them. */
  readonly #eventCodec: XmlCstaCodec

  constructor(options: OsbizSimulatorOptions = {}) {
    super()
    this.#options = options
    this.#listener = new SimListener({ host: options.host, port: options.port, create: () => createServer((socket) => this.#accept(socket)) })
    const prefix = options.devicePrefix === undefined ? {} : { devicePrefix: options.devicePrefix }
    this.#responseCodec = new XmlCstaCodec(prefix)
    this.#eventCodec = new XmlCstaCodec({ ...prefix, includeNamespace: false })
    for (const user of options.users ?? []) this.addPerson(user, {}, true)
  }

  // --- Lifecycle ------------------------------------------------------------------------------------------

  /** Listens and resolves with the bound address. Idempotent. */
  async start(): Promise<{ host: string; port: number }> {
    await this.#listener.start()
    return { host: this.host, port: this.port }
  }

  /** Closes every link and the listener, and clears every timer. Idempotent. */
  stop(): Promise<void> {
    return this.#listener.stop(() => {
      for (const link of this.#links) link.socket.destroy()
    })
  }

  get host(): string {
    return this.#listener.host
  }

  get port(): number {
    return this.#listener.port
  }

  get connectionCount(): number {
    return this.#links.size
  }

  get monitorCount(): number {
    let count = 0
    for (const link of this.#links) count += link.monitors.size
    return count
  }

  get stats(): Readonly<SimulatorStats> {
    return { ...this.#stats }
  }

  calls(): SimulatorCall[] {
    return this.liveCalls().map((call) => ({
      callId: call.id, calling: call.calling, called: call.called, legs: call.legs.map((leg) => ({ device: leg.party, state: localState(leg) })),
    }))
  }

  override legLabel(_call: unknown, leg: Leg): string {
    return localState(leg)
  }

  /** Called for every CSTA event written to a client, e.g. to measure latency. */
  onEventSent(listener: (record: SimulatorEventRecord) => void): () => void {
    this.#eventListeners.add(listener)
    return () => this.#eventListeners.delete(listener)
  }

  /** Writes bytes as they are to every connected client (malformed-input tests). Returns the client count. */
  sendRaw(bytes: Buffer): number {
    let sent = 0
    for (const link of this.#links) {
      if (this.#write(link, bytes)) sent++
    }
    return sent
  }

  /** Closes every client connection abruptly, as a switch restart or network cut would. */
  dropAllConnections(): number {
    const count = this.#links.size
    for (const link of this.#links) link.socket.destroy()
    return count
  }

  protected defaultData(): NoData {
    return {}
  }

  // --- The model's events on the wire ---------------------------------------------------------------------

  /** Each event goes to every monitor of every device in the call, with that device's own connection state. */
  protected announce(event: PhoneEvent<NoData>): void {
    switch (event.kind) {
      case 'placed': {
        const { call } = event
        const [caller, callee] = call.legs
        if (caller === undefined || callee === undefined) return
        if (caller.internal) {
          // The caller lifts the handset (initiated), then dials (connected) before the callee is reached.
          const connection = { callId: call.id, deviceId: caller.party }
          this.#sendCallEvent({ kind: 'ServiceInitiatedEvent', connection, initiatingDevice: caller.party, cause: 'newCall' }, [caller], () => 'initiated')
          this.#sendCallEvent({ kind: 'OriginatedEvent', connection, callingDevice: caller.party, calledDevice: callee.party, cause: 'newCall' }, [caller])
        }
        this.#sendCallEvent({
          kind: 'DeliveredEvent',
          connection: { callId: call.id, deviceId: callee.party },
          alertingDevice: callee.party,
          callingDevice: call.calling,
          calledDevice: call.called,
          cause: 'newCall',
        }, call.legs)
        return
      }
      case 'answered': {
        const { call, answering } = event
        this.#sendCallEvent({
          kind: 'EstablishedEvent',
          connection: { callId: call.id, deviceId: answering.party },
          answeringDevice: answering.party,
          callingDevice: call.calling,
          calledDevice: call.called,
          cause: 'newCall',
        }, call.legs)
        return
      }
      case 'held':
      case 'retrieved': {
        const { call, leg } = event
        const connection = { callId: call.id, deviceId: leg.party }
        this.#sendCallEvent(event.kind === 'held'
          ? { kind: 'HeldEvent', connection, holdingDevice: leg.party }
          : { kind: 'RetrievedEvent', connection, retrievingDevice: leg.party }, call.legs)
        return
      }
      case 'cleared': {
        // The releasing party first, then the switch clears every other connection, one event per leg.
        const { call, releasing } = event
        let remaining = [...call.legs]
        for (const leg of [releasing, ...call.legs.filter((other) => other !== releasing)]) {
          const recipients = remaining
          remaining = remaining.filter((other) => other !== leg)
          this.#sendCallEvent({
            kind: 'ConnectionClearedEvent',
            connection: { callId: call.id, deviceId: leg.party },
            releasingDevice: leg.party,
            cause: 'normalClearing',
          }, recipients, (recipient) => (recipient === leg ? 'null' : localState(recipient)))
        }
        return
      }
      case 'dnd': {
        const { extension } = event.person
        for (const link of this.#links) {
          for (const [monitorCrossRefId, monitored] of link.monitors) {
            if (monitored === extension) this.#sendEvent(link, extension, { kind: 'DoNotDisturbEvent', monitorCrossRefId, device: extension, doNotDisturbOn: event.person.dnd })
          }
        }
        return
      }
      default:
        // A scripted leg state, and changes to the people: CSTA has no event for them.
    }
  }

  // --- Connections ----------------------------------------------------------------------------------------

  #accept(socket: Socket): void {
    if (this.#listener.stopping || this.#links.size >= (this.#options.maxLinks ?? 4)) {
      this.#stats.linksRefused++
      socket.destroy()
      return
    }
    const link: SimLink = {
      socket,
      decoder: this.#responseCodec.createDecoder(),
      session: undefined,
      expiryTimer: undefined,
      statusTimer: undefined,
      statusOutstanding: undefined,
      statusMissed: 0,
      monitors: new Map(),
    }
    this.#links.add(link)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      for (const decoded of link.decoder.push(chunk)) this.#receive(link, decoded)
    })
    socket.on('error', () => undefined)
    socket.on('close', () => {
      clearTimeout(link.expiryTimer)
      clearInterval(link.statusTimer)
      link.monitors.clear()
      this.#links.delete(link)
    })
  }

  #receive(link: SimLink, decoded: CstaDecoded): void {
    if (!decoded.ok) {
      this.#options.logger?.debug({ code: decoded.error.code, reason: decoded.error.reason }, 'simulator received a malformed frame')
      if (!decoded.error.inSync) link.socket.destroy()
      return
    }
    const { invokeId, message } = decoded
    if (message.kind === 'SystemStatusResponse') {
      if (invokeId === link.statusOutstanding) {
        link.statusOutstanding = undefined
        link.statusMissed = 0
        this.#stats.systemStatusAnswered++
      }
      return
    }
    if (link.session === undefined && message.kind !== 'StartApplicationSession') {
      this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'securityViolation' })
      return
    }
    this.#handleRequest(link, invokeId, message)
  }

  #handleRequest(link: SimLink, invokeId: number, message: CstaMessage): void {
    switch (message.kind) {
      case 'StartApplicationSession':
        this.#startSession(link, invokeId, message)
        return
      case 'ResetApplicationSessionTimer': {
        const session = link.session
        if (session === undefined || message.sessionId !== session.id) {
          this.#respond(link, invokeId, { kind: 'ResetApplicationSessionTimerNegResponse', errorCode: 'invalidSessionID' })
          return
        }
        session.durationS = this.#grantedDuration(message.requestedSessionDurationS)
        this.#stats.sessionResets++
        this.#armSessionExpiry(link)
        this.#respond(link, invokeId, { kind: 'ResetApplicationSessionTimerPosResponse', actualSessionDurationS: session.durationS })
        return
      }
      case 'StopApplicationSession':
        this.#respond(link, invokeId, { kind: 'StopApplicationSessionPosResponse' })
        link.socket.end()
        return
      case 'RequestSystemStatus':
        this.#respond(link, invokeId, { kind: 'RequestSystemStatusResponse', systemStatus: 'normal' })
        return
      case 'MonitorStart': {
        if (this.findPerson(message.device) === undefined) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' })
          return
        }
        if (this.monitorCount >= (this.#options.maxMonitors ?? Number.POSITIVE_INFINITY)) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'systemResourceAvailability', value: 'overallMonitorLimitExceeded' })
          return
        }
        const monitorCrossRefId = String(this.#nextCrossRefId++)
        link.monitors.set(monitorCrossRefId, message.device)
        this.#respond(link, invokeId, { kind: 'MonitorStartResponse', monitorCrossRefId })
        return
      }
      case 'MonitorStop':
        if (!link.monitors.delete(message.monitorCrossRefId)) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidCrossReferenceID' })
          return
        }
        this.#respond(link, invokeId, { kind: 'MonitorStopResponse' })
        return
      case 'SnapshotDevice': {
        if (this.findPerson(message.device) === undefined) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' })
          return
        }
        const calls: SnapshotCall[] = this.legsOf(message.device)
          .map(({ call, leg }) => ({ callId: call.id, deviceId: message.device, localConnectionState: localState(leg) }))
        this.#respond(link, invokeId, { kind: 'SnapshotDeviceResponse', calls })
        return
      }
      case 'GetDoNotDisturb': {
        const device = this.findPerson(message.device)
        if (device === undefined) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' })
          return
        }
        this.#respond(link, invokeId, { kind: 'GetDoNotDisturbResponse', doNotDisturbOn: device.dnd })
        return
      }
      case 'SetDoNotDisturb': {
        if (this.findPerson(message.device) === undefined) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' })
          return
        }
        // ECMA-269 §9.5.1: the positive answer comes first; an event follows only on a real change.
        this.#respond(link, invokeId, { kind: 'SetDoNotDisturbResponse' })
        this.setDnd(message.device, message.doNotDisturbOn)
        return
      }
      default:
        // Anything else a client may send (unknown services, stray responses or events) is refused.
        this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'generic' })
    }
  }

  #startSession(link: SimLink, invokeId: number, request: Extract<CstaMessage, { kind: 'StartApplicationSession' }>): void {
    if (link.session !== undefined) {
      this.#respond(link, invokeId, { kind: 'StartApplicationSessionNegResponse', errorCode: 'sessionAlreadyStarted' })
      return
    }
    const expected = this.#options.credentials
    const accepted = expected === undefined || (
      request.applicationId === expected.applicationId
      && (expected.username === undefined || request.username === expected.username)
      && (expected.password === undefined || request.password === expected.password)
    )
    if (!accepted) {
      this.#stats.sessionsRejected++
      this.#respond(link, invokeId, { kind: 'StartApplicationSessionNegResponse', errorCode: 'invalidApplicationInfo' })
      link.socket.end()
      return
    }
    const session = { id: randomBytes(8).toString('hex'), durationS: this.#grantedDuration(request.requestedSessionDurationS) }
    link.session = session
    this.#stats.sessionsStarted++
    this.#respond(link, invokeId, {
      kind: 'StartApplicationSessionPosResponse',
      sessionId: session.id,
      protocolVersion: request.protocolVersion ?? CSTA_ED3_NAMESPACE,
      actualSessionDurationS: session.durationS,
    })
    this.#armSessionExpiry(link)
    // The switch announces its status right after the association (research §1.4) and expects an answer.
    this.#sendSystemStatus(link)
    const intervalS = this.#options.systemStatusIntervalS
    if (intervalS !== undefined && intervalS > 0) {
      link.statusTimer = setInterval(() => this.#sendSystemStatus(link), intervalS * 1000)
      link.statusTimer.unref()
    }
  }

  #grantedDuration(requested: number | undefined): number {
    const max = this.#options.sessionDurationS ?? 150
    return requested === undefined || requested <= 0 ? max : Math.min(requested, max)
  }

  /** As a known CSTA XML server does: without a reset, the link is closed at twice the session duration. */
  #armSessionExpiry(link: SimLink): void {
    clearTimeout(link.expiryTimer)
    const session = link.session
    if (session === undefined) return
    link.expiryTimer = setTimeout(() => {
      this.#options.logger?.info({ sessionId: session.id }, 'simulator: session expired, closing the link')
      link.socket.destroy()
    }, session.durationS * 2000)
    link.expiryTimer.unref()
  }

  #sendSystemStatus(link: SimLink): void {
    if (link.statusOutstanding !== undefined) {
      link.statusMissed++
      if (link.statusMissed >= (this.#options.systemStatusMaxMissed ?? 2)) {
        this.#options.logger?.info({ missed: link.statusMissed }, 'simulator: SystemStatus unanswered, closing the link')
        link.socket.destroy()
        return
      }
    }
    const invokeId = this.#nextSwitchInvokeId
    this.#nextSwitchInvokeId = invokeId >= LAST_SWITCH_INVOKE_ID ? FIRST_SWITCH_INVOKE_ID : invokeId + 1
    link.statusOutstanding = invokeId
    this.#stats.systemStatusSent++
    this.#respond(link, invokeId, { kind: 'SystemStatus', systemStatus: 'normal' })
  }

  // --- State and events -----------------------------------------------------------------------------------

  #sendCallEvent(body: CallEventBody, legs: readonly Leg[], local: (leg: Leg) => LocalConnectionState = localState): void {
    for (const link of this.#links) {
      for (const [monitorCrossRefId, monitored] of link.monitors) {
        const leg = legs.find((candidate) => candidate.party === monitored)
        if (leg !== undefined) this.#sendEvent(link, monitored, { ...body, monitorCrossRefId, localConnectionInfo: local(leg) })
      }
    }
  }

  #sendEvent(link: SimLink, extension: string, event: CstaMessage): void {
    if (!this.#write(link, this.#eventCodec.encode(EVENT_INVOKE_ID, event))) return
    const record: SimulatorEventRecord = { at: performance.now(), type: event.kind, extension }
    for (const listener of this.#eventListeners) {
      try {
        listener(record)
      } catch (error) {
        this.#options.logger?.error({ err: error }, 'simulator event listener threw')
      }
    }
  }

  #respond(link: SimLink, invokeId: number, message: CstaMessage): void {
    this.#write(link, this.#responseCodec.encode(invokeId, message))
  }

  #write(link: SimLink, bytes: Buffer): boolean {
    if (link.socket.destroyed || !link.socket.writable) return false
    link.socket.write(bytes)
    return true
  }

}

/** The model's leg as CSTA's LocalConnectionState: the caller is connected while the callee is alerted. */
function localState(leg: Leg): LocalConnectionState {
  if (leg.held) return 'hold'
  switch (leg.state) {
    case 'dialing': return 'initiated'
    case 'ringing': return 'alerting'
    case 'ringback':
    case 'connected': return 'connected'
  }
}
