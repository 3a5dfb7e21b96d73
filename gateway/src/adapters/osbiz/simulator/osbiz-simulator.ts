import { randomBytes } from 'node:crypto'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
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

/**
 * An OpenScape Business CSTA link as far as the public facts go (research §1.2-1.12): ECMA-323 XML in the
 * 8-byte framing, ECMA-354 sessions that die at 2× their duration without a reset, SystemStatus heartbeats,
 * at most 4 links, device monitors with limits, SnapshotDevice, DND with the "same value, no event" rule.
 * Responses carry xmlns, events do not (as some switches do), so clients must parse tolerantly.
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

interface SimDevice {
  user: SimulatorUser
  dnd: boolean
}

interface SimLeg {
  device: string
  state: LocalConnectionState
}

interface SimCall {
  id: string
  calling: string
  called: string
  legs: SimLeg[]
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

const DEFAULT_EXTERNAL_CALLER = '+4989123456'
/** The switch's own invoke ids; clients use 1..8999 and 9999 marks events. */
const FIRST_SWITCH_INVOKE_ID = 9000
const LAST_SWITCH_INVOKE_ID = 9998

export class OsbizSimulator {
  readonly #options: OsbizSimulatorOptions
  readonly #devices = new Map<string, SimDevice>()
  readonly #calls = new Map<string, SimCall>()
  readonly #links = new Set<SimLink>()
  readonly #eventListeners = new Set<(record: SimulatorEventRecord) => void>()
  readonly #stats: SimulatorStats = {
    sessionsStarted: 0, sessionsRejected: 0, sessionResets: 0, systemStatusSent: 0, systemStatusAnswered: 0, linksRefused: 0,
  }
  #server: Server | undefined
  #stopping: Promise<void> | undefined
  #nextCallId = 1
  #nextCrossRefId = 1
  #nextSwitchInvokeId = FIRST_SWITCH_INVOKE_ID
  readonly #responseCodec: XmlCstaCodec
  /** Events go out without xmlns, as some switches send them. */
  readonly #eventCodec: XmlCstaCodec

  constructor(options: OsbizSimulatorOptions = {}) {
    this.#options = options
    const prefix = options.devicePrefix === undefined ? {} : { devicePrefix: options.devicePrefix }
    this.#responseCodec = new XmlCstaCodec(prefix)
    this.#eventCodec = new XmlCstaCodec({ ...prefix, includeNamespace: false })
    for (const user of options.users ?? []) this.#devices.set(user.extension, { user: { ...user }, dnd: false })
  }

  // --- Lifecycle ------------------------------------------------------------------------------------------

  /** Listens and resolves with the bound address. Idempotent. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.#server === undefined) {
      const server = createServer((socket) => this.#accept(socket))
      this.#server = server
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(this.#options.port ?? 0, this.#options.host ?? '127.0.0.1', () => {
          server.off('error', reject)
          resolve()
        })
      })
    }
    return { host: this.host, port: this.port }
  }

  /** Closes every link and the listener, and clears every timer. Idempotent. */
  stop(): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping
    const server = this.#server
    for (const link of this.#links) link.socket.destroy()
    this.#stopping = server === undefined
      ? Promise.resolve()
      : new Promise<void>((resolve) => server.close(() => resolve()))
    return this.#stopping
  }

  get host(): string {
    return this.#options.host ?? '127.0.0.1'
  }

  get port(): number {
    const address = this.#server?.address()
    return address !== null && typeof address === 'object' ? (address as AddressInfo).port : 0
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

  getDnd(extension: string): boolean {
    return this.#device(extension).dnd
  }

  calls(): SimulatorCall[] {
    return [...this.#calls.values()].map((call) => ({
      callId: call.id, calling: call.calling, called: call.called, legs: call.legs.map((leg) => ({ ...leg })),
    }))
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

  // --- Scripting: what people do at their phones -----------------------------------------------------------

  /** An external (or, if `from` is an extension, internal) call rings at `extension`. */
  incomingCall(extension: string, from: string = DEFAULT_EXTERNAL_CALLER): string {
    this.#device(extension)
    if (this.#devices.has(from)) return this.outgoingCall(from, extension)
    const call = this.#newCall(from, extension, [{ device: from, state: 'connected' }, { device: extension, state: 'alerting' }])
    this.#sendCallEvent(call, {
      kind: 'DeliveredEvent',
      connection: { callId: call.id, deviceId: extension },
      alertingDevice: extension,
      callingDevice: from,
      calledDevice: extension,
      cause: 'newCall',
    })
    return call.id
  }

  /** `extension` lifts the handset and dials `to`; an internal `to` starts ringing. */
  outgoingCall(extension: string, to: string): string {
    this.#device(extension)
    const call = this.#newCall(extension, to, [{ device: extension, state: 'initiated' }])
    const caller = { callId: call.id, deviceId: extension }
    this.#sendCallEvent(call, { kind: 'ServiceInitiatedEvent', connection: caller, initiatingDevice: extension, cause: 'newCall' })
    this.#setLeg(call, extension, 'connected')
    this.#sendCallEvent(call, { kind: 'OriginatedEvent', connection: caller, callingDevice: extension, calledDevice: to, cause: 'newCall' })
    call.legs.push({ device: to, state: 'alerting' })
    this.#sendCallEvent(call, {
      kind: 'DeliveredEvent',
      connection: { callId: call.id, deviceId: to },
      alertingDevice: to,
      callingDevice: extension,
      calledDevice: to,
      cause: 'newCall',
    })
    return call.id
  }

  /** The ringing party answers. */
  answer(callId: string): void {
    const call = this.#call(callId)
    const leg = call.legs.find((candidate) => candidate.state === 'alerting')
    if (leg === undefined) throw new Error(`call ${callId} is not ringing`)
    leg.state = 'connected'
    this.#sendCallEvent(call, {
      kind: 'EstablishedEvent',
      connection: { callId, deviceId: leg.device },
      answeringDevice: leg.device,
      callingDevice: call.calling,
      calledDevice: call.called,
      cause: 'newCall',
    })
  }

  hold(callId: string, extension: string): void {
    const call = this.#call(callId)
    const leg = this.#leg(call, extension)
    if (leg.state !== 'connected') throw new Error(`${extension} is not connected in call ${callId}`)
    leg.state = 'hold'
    this.#sendCallEvent(call, { kind: 'HeldEvent', connection: { callId, deviceId: extension }, holdingDevice: extension })
  }

  retrieve(callId: string, extension: string): void {
    const call = this.#call(callId)
    const leg = this.#leg(call, extension)
    if (leg.state !== 'hold') throw new Error(`${extension} does not hold call ${callId}`)
    leg.state = 'connected'
    this.#sendCallEvent(call, { kind: 'RetrievedEvent', connection: { callId, deviceId: extension }, retrievingDevice: extension })
  }

  /**
   * Ends the call: `releasing` (default: the caller) hangs up first, then the switch clears every other
   * connection, one ConnectionClearedEvent per leg, as a two-party call ends.
   */
  hangup(callId: string, releasing?: string): void {
    const call = this.#call(callId)
    const first = releasing === undefined ? call.legs[0] : this.#leg(call, releasing)
    const order = [...call.legs].sort((a, b) => (a === first ? -1 : b === first ? 1 : 0))
    for (const leg of order) {
      const recipients = call.legs.map((candidate) => candidate.device)
      call.legs = call.legs.filter((candidate) => candidate !== leg)
      this.#sendCallEvent(call, {
        kind: 'ConnectionClearedEvent',
        connection: { callId, deviceId: leg.device },
        releasingDevice: leg.device,
        cause: 'normalClearing',
      }, recipients)
    }
    this.#calls.delete(callId)
  }

  /** The person presses the DND key. No event when it is already in that state. */
  setDndAtPhone(extension: string, on: boolean): void {
    this.#setDnd(extension, on)
  }

  // --- Connections ----------------------------------------------------------------------------------------

  #accept(socket: Socket): void {
    if (this.#stopping !== undefined || this.#links.size >= (this.#options.maxLinks ?? 4)) {
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
        if (!this.#devices.has(message.device)) {
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
        if (!this.#devices.has(message.device)) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' })
          return
        }
        const calls: SnapshotCall[] = []
        for (const call of this.#calls.values()) {
          const leg = call.legs.find((candidate) => candidate.device === message.device)
          if (leg !== undefined) calls.push({ callId: call.id, deviceId: message.device, localConnectionState: leg.state })
        }
        this.#respond(link, invokeId, { kind: 'SnapshotDeviceResponse', calls })
        return
      }
      case 'GetDoNotDisturb': {
        const device = this.#devices.get(message.device)
        if (device === undefined) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' })
          return
        }
        this.#respond(link, invokeId, { kind: 'GetDoNotDisturbResponse', doNotDisturbOn: device.dnd })
        return
      }
      case 'SetDoNotDisturb': {
        if (!this.#devices.has(message.device)) {
          this.#respond(link, invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' })
          return
        }
        // ECMA-269 §9.5.1: the positive answer comes first; an event follows only on a real change.
        this.#respond(link, invokeId, { kind: 'SetDoNotDisturbResponse' })
        this.#setDnd(message.device, message.doNotDisturbOn)
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

  #setDnd(extension: string, on: boolean): void {
    const device = this.#device(extension)
    if (device.dnd === on) return
    device.dnd = on
    for (const link of this.#links) {
      for (const [monitorCrossRefId, monitored] of link.monitors) {
        if (monitored !== extension) continue
        this.#sendEvent(link, extension, { kind: 'DoNotDisturbEvent', monitorCrossRefId, device: extension, doNotDisturbOn: on })
      }
    }
  }

  /**
   * Sends the event to every monitor of every device in the call (or in `recipients`), each with its own
   * cross reference and its own device's connection state.
   */
  #sendCallEvent(call: SimCall, body: CallEventBody, recipients: string[] = call.legs.map((leg) => leg.device)): void {
    for (const link of this.#links) {
      for (const [monitorCrossRefId, monitored] of link.monitors) {
        if (!recipients.includes(monitored)) continue
        const localConnectionInfo = call.legs.find((leg) => leg.device === monitored)?.state ?? 'null'
        this.#sendEvent(link, monitored, { ...body, monitorCrossRefId, localConnectionInfo })
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

  #newCall(calling: string, called: string, legs: SimLeg[]): SimCall {
    const call: SimCall = { id: String(this.#nextCallId++), calling, called, legs }
    this.#calls.set(call.id, call)
    return call
  }

  #setLeg(call: SimCall, device: string, state: LocalConnectionState): void {
    this.#leg(call, device).state = state
  }

  #device(extension: string): SimDevice {
    const device = this.#devices.get(extension)
    if (device === undefined) throw new Error(`unknown extension ${extension}`)
    return device
  }

  #call(callId: string): SimCall {
    const call = this.#calls.get(callId)
    if (call === undefined) throw new Error(`unknown call ${callId}`)
    return call
  }

  #leg(call: SimCall, device: string): SimLeg {
    const leg = call.legs.find((candidate) => candidate.device === device)
    if (leg === undefined) throw new Error(`${device} is not in call ${call.id}`)
    return leg
  }
}
