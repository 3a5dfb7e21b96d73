import { createHash } from 'node:crypto'
import { createServer } from 'node:https'
import type { Server } from 'node:net'
import type { IncomingMessage } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { WebSocketServer, type WebSocket, type RawData } from 'ws'
import { decodeFrame, encodeFrame, formatGuid, parseGuid, type MtctiDecodeErrorCode } from '../mtcti3/codec.js'
import { CALL_STATE_NAMES, CallDirection, CallState, type CallInfo, type LinesUser, type MtctiOutgoing, type Notify, type Subscribe, type SubscribeCmd } from '../mtcti3/model.js'
import { PhoneSystem, type Call, type Leg, type LegState, type Person, type PersonFields, type PhoneEvent } from '../../sim-kit/phone-system.js'
import { SimListener } from '../../sim-kit/listener.js'

/**
 * The server side of IP Office MTCTI-3 as far as the public facts go (research A.2-A.6, A.10): HTTPS with
 * the WebSocket upgrade at /tpkt/openapi, HTTP Basic (401 on bad credentials), subprotocol "openapi", binary
 * frames with the 00 00 00 01 prefix, RequestResponse per request, Lines and User subscriptions with a
 * lifetime (SubscribeTerminated at expiry, renewed by SubscribeCmd{timeout}), a monotonic notify_id per
 * subscription, NotifyAck accepted but not required, and Send All Calls toggling DND. People and calls are
 * the shared phone-system model (sim-kit); this file is the wire side: it encodes each model event as
 * MTCTI-3 Notify messages. Choices where the facts end are marked [I]; result codes other than 0 are ours.
 */

export interface AvayaSimUser {
  extension: string
  name: string
  fullName?: string
  email?: string
  /** 8-4-4-4-12 hex; derived from the extension when absent. */
  guid?: string
}

export interface AvayaIpoSimulatorOptions {
  host?: string
  /** 0 (default) picks a free port. */
  port?: number
  tls: { certPem: string; keyPem: string }
  users?: AvayaSimUser[]
  /** The service user; without it any Basic credentials pass (a missing header still gets 401). */
  credentials?: { username: string; password: string }
  /** Concurrent WebSocket links; more get HTTP 503 [I: DevLink3 allows 3]. Default 3. */
  maxLinks?: number
  /** Test hook: answer the upgrade with this subprotocol (null: none) instead of "openapi". */
  subprotocolAnswer?: string | null
  /**
   * Whether a Send All Calls update switches DND (default true, the research's best candidate [I]). false
   * models an IP Office where it does not: the update is accepted and nothing changes.
   */
  sacTogglesDnd?: boolean
  /** Largest frame accepted from a client. Default 1 MiB. */
  maxPayload?: number
  logger?: Logger
}

export interface AvayaSimStats {
  upgrades: number
  authFailures: number
  subprotocolRejects: number
  linksRefused: number
  subscribes: number
  renewals: number
  subscribeEnds: number
  terminations: number
  acks: number
  sacUpdates: number
  framesRejected: number
}

export interface AvayaSimCall {
  callId: string
  legs: Array<{ extension: string; state: number; direction: number }>
}

/** The IP Office fields of a person beside the model's extension, name, e-mail and DND. */
interface AvayaPersonData {
  guid: Buffer
  guidText: string
  fullName: string | undefined
}

type AvayaPerson = Person<AvayaPersonData>

interface SimSub {
  id: number
  kind: 'lines' | 'user'
  guidText?: string
  timer: NodeJS.Timeout | undefined
  nextNotifyId: number
}

interface SimLink {
  ws: WebSocket
  subs: Map<number, SimSub>
}

/** Result codes other than 0 are [U]; these are the simulator's own, with text in `additional`. */
export const SIM_RESULT = { DUPLICATE_ID: 1, UNKNOWN_USER: 2, UNSUPPORTED: 3, UNKNOWN_SUBSCRIPTION: 4, NOT_A_USER_SUBSCRIPTION: 5 } as const

export const OPENAPI_PATH = '/tpkt/openapi'

const WIRE_STATE: Record<LegState, number> = {
  dialing: CallState.DIALLING, ringback: CallState.RINGBACK, ringing: CallState.RINGING, connected: CallState.CONNECTED,
}

export class AvayaIpoSimulator extends PhoneSystem<AvayaPersonData> {
  readonly #options: AvayaIpoSimulatorOptions
  readonly #listener: SimListener
  readonly #links = new Set<SimLink>()
  readonly #rejections: MtctiDecodeErrorCode[] = []
  readonly #subscribeTimes: number[] = []
  readonly #stats: AvayaSimStats = {
    upgrades: 0, authFailures: 0, subprotocolRejects: 0, linksRefused: 0, subscribes: 0, renewals: 0,
    subscribeEnds: 0, terminations: 0, acks: 0, sacUpdates: 0, framesRejected: 0,
  }
  #wss: WebSocketServer | undefined

  constructor(options: AvayaIpoSimulatorOptions) {
    super()
    this.#options = options
    this.#listener = new SimListener({ host: options.host, port: options.port, create: () => this.#createServer() })
    for (const user of options.users ?? []) this.addPerson(user, personData(user), true)
  }

  // --- Lifecycle ----------------------------------------------------------------------------------------

  async start(): Promise<{ host: string; port: number }> {
    await this.#listener.start()
    return { host: this.host, port: this.port }
  }

  stop(): Promise<void> {
    return this.#listener.stop(() => {
      this.dropAllConnections()
      this.#wss?.close()
    })
  }

  get host(): string {
    return this.#listener.host
  }

  get port(): number {
    return this.#listener.port
  }

  get stats(): Readonly<AvayaSimStats> {
    return { ...this.#stats }
  }

  get connectionCount(): number {
    return this.#links.size
  }

  /** Live subscriptions over all links, by kind. */
  subscriptionCount(kind?: 'lines' | 'user'): number {
    let count = 0
    for (const link of this.#links) for (const sub of link.subs.values()) if (kind === undefined || sub.kind === kind) count++
    return count
  }

  /** Codes of the frames the simulator dropped, in order. */
  get rejections(): readonly MtctiDecodeErrorCode[] {
    return this.#rejections
  }

  /** The most Subscribe requests seen within any window of `windowMs` (performance.now() on arrival). */
  peakSubscribeRate(windowMs = 1000): number {
    let peak = 0
    let start = 0
    const times = this.#subscribeTimes
    for (let end = 0; end < times.length; end++) {
      while ((times[end] ?? 0) - (times[start] ?? 0) > windowMs) start++
      peak = Math.max(peak, end - start + 1)
    }
    return peak
  }

  // --- Scripting beyond the shared model ----------------------------------------------------------------

  guidOf(extension: string): string {
    return this.person(extension).data.guidText
  }

  /** Sets one leg to any CallInfo state number (known or not), creating the call or leg as needed. */
  setCallState(callId: string, extension: string, state: number, direction: number = CallDirection.INBOUND): void {
    this.setLeg(callId, extension, { ...legStateOf(state), direction: direction === CallDirection.OUTBOUND ? 'out' : 'in', wire: state })
  }

  setEmail(extension: string, email: string | undefined): void {
    this.updatePerson(extension, { email })
  }

  addUser(user: AvayaSimUser): void {
    this.addPerson(user, personData(user))
  }

  removeUser(extension: string): void {
    this.removePerson(extension)
  }

  /** Ends subscriptions as the PBX would (e.g. after a configuration merge); returns how many. */
  terminateSubscriptions(kind: 'lines' | 'user' | 'all' = 'all', reason = 'terminated by the PBX'): number {
    let count = 0
    for (const link of this.#links) {
      for (const sub of [...link.subs.values()]) {
        if (kind === 'all' || sub.kind === kind) {
          this.#terminate(link, sub, reason)
          count++
        }
      }
    }
    return count
  }

  /** Cuts every client connection without a close handshake, as a restart or network loss would. */
  dropAllConnections(): number {
    const count = this.#links.size
    for (const link of [...this.#links]) {
      this.#closeLink(link)
      link.ws.terminate()
    }
    return count
  }

  /** Writes bytes as one frame to every client (binary unless told otherwise), for malformed-input tests. */
  sendRaw(bytes: Buffer, options: { binary?: boolean } = {}): void {
    for (const link of this.#links) link.ws.send(bytes, { binary: options.binary ?? true })
  }

  calls(): AvayaSimCall[] {
    return this.liveCalls().map((call) => ({
      callId: call.id,
      legs: call.legs.filter((leg) => leg.internal).map((leg) => {
        const info = callInfo(call, leg)
        return { extension: leg.party, state: info.state ?? 0, direction: info.direction ?? 0 }
      }),
    }))
  }

  override legLabel(call: Call, leg: Leg): string {
    const state = callInfo(call, leg).state ?? 0
    return CALL_STATE_NAMES.get(state) ?? String(state)
  }

  protected defaultData(fields: PersonFields): AvayaPersonData {
    return personData(fields)
  }

  // --- The model's events on the wire -------------------------------------------------------------------

  protected announce(event: PhoneEvent<AvayaPersonData>): void {
    switch (event.kind) {
      case 'placed':
        for (const leg of event.call.legs) this.#sendCallInfo(event.call, leg)
        return
      case 'answered':
        for (const leg of event.changed) this.#sendCallInfo(event.call, leg)
        return
      case 'held':
      case 'retrieved':
      case 'leg':
        return this.#sendCallInfo(event.call, event.leg)
      case 'cleared':
        for (const leg of event.call.legs) {
          if (leg.internal) this.#notifyUser(leg.party, { callcontrol: { calllost: [{ callid: Number(event.call.id), reason: 1, thisenddropped: false, description: 'normal clearing' }] } })
        }
        return
      case 'dnd':
      case 'person-changed':
        // [I] a NotifyUser on every change of the user record (DND included).
        return this.#notifyUser(event.person.extension, { user: notifyUserBody(event.person) })
      case 'person-added':
        return this.#notifyLines({ adduser: [linesUser(event.person)] })
      case 'person-removed':
        for (const link of this.#links) {
          for (const sub of [...link.subs.values()]) if (sub.guidText === event.person.data.guidText) this.#terminate(link, sub, 'user deleted')
        }
        return this.#notifyLines({ deleteuser: [linesUser(event.person)] })
    }
  }

  #createServer(): Server {
    const answer = this.#options.subprotocolAnswer
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: this.#options.maxPayload ?? 1024 * 1024,
      handleProtocols: () => (answer === undefined ? 'openapi' : answer === null ? false : answer),
    })
    const server = createServer({ cert: this.#options.tls.certPem, key: this.#options.tls.keyPem }, (_request, response) => {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    })
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(request, socket, head))
    server.on('tlsClientError', () => undefined)
    return server
  }

  // --- Upgrade ------------------------------------------------------------------------------------------

  #upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined)
    const path = (request.url ?? '').split('?')[0]
    if (path !== OPENAPI_PATH) return reject(socket, 404, 'Not Found')
    if (!this.#authorised(request.headers.authorization)) {
      this.#stats.authFailures++
      return reject(socket, 401, 'Unauthorized', 'WWW-Authenticate: Basic realm="IP Office"\r\n')
    }
    const offered = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
    if (!offered.includes('openapi')) {
      // [U] what IP Office answers; a 400 is what a server that requires one subprotocol commonly sends.
      this.#stats.subprotocolRejects++
      return reject(socket, 400, 'Bad Request')
    }
    if (this.#links.size >= (this.#options.maxLinks ?? 3)) {
      this.#stats.linksRefused++
      return reject(socket, 503, 'Service Unavailable')
    }
    const wss = this.#wss
    if (wss === undefined) return reject(socket, 503, 'Service Unavailable')
    wss.handleUpgrade(request, socket, head, (ws) => this.#accept(ws))
  }

  #authorised(header: string | undefined): boolean {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? '')
    if (match === null) return false
    const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return false
    const credentials = this.#options.credentials
    if (credentials === undefined) return true
    // Compare digests so the comparison takes the same time whatever the input.
    const given = createHash('sha256').update(decoded).digest()
    const expected = createHash('sha256').update(`${credentials.username}:${credentials.password}`).digest()
    return given.equals(expected)
  }

  #accept(ws: WebSocket): void {
    this.#stats.upgrades++
    const link: SimLink = { ws, subs: new Map() }
    this.#links.add(link)
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onFrame(link, data, isBinary))
    ws.on('close', () => this.#closeLink(link))
    ws.on('error', () => undefined)
  }

  #closeLink(link: SimLink): void {
    for (const sub of link.subs.values()) clearTimeout(sub.timer)
    link.subs.clear()
    this.#links.delete(link)
  }

  // --- Requests -----------------------------------------------------------------------------------------

  #onFrame(link: SimLink, data: RawData, isBinary: boolean): void {
    if (!this.#links.has(link)) return
    const frame = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
    if (!isBinary) return this.#reject('TEXT_FRAME', frame.byteLength)
    const decoded = decodeFrame(frame)
    if (!decoded.ok) return this.#reject(decoded.error.code, frame.byteLength, decoded.error.reason)
    const message = decoded.message
    switch (message.payload) {
      case 'subscribe': return this.#subscribe(link, message.subscribe ?? {})
      case 'subscribecmd': return this.#subscribeCmd(link, message.subscribecmd ?? {})
      case 'subscribeend': {
        const end = message.subscribeend ?? {}
        const sub = link.subs.get(end.subscribe_id ?? 0)
        if (sub === undefined) return this.#respond(link, end.requestid, SIM_RESULT.UNKNOWN_SUBSCRIPTION, 'unknown subscribe_id')
        clearTimeout(sub.timer)
        link.subs.delete(sub.id)
        this.#stats.subscribeEnds++
        return this.#respond(link, end.requestid, 0)
      }
      case 'notifyack':
        this.#stats.acks++
        return
      case 'generalcmd': {
        const command = message.generalcmd ?? {}
        if (command.payload === 'getversioninfo') return this.#send(link, { generaldata: { responseid: command.requestid ?? 0, versioninfo: '11.1.3.0 build 1 (simulator)' } })
        return this.#respond(link, command.requestid, SIM_RESULT.UNSUPPORTED, 'unsupported GeneralCmd')
      }
      default:
        this.#reject('UNKNOWN_PAYLOAD', frame.byteLength, `${message.payload ?? 'none'} is not a client request`)
    }
  }

  #reject(code: MtctiDecodeErrorCode, bytes: number, reason?: string): void {
    this.#stats.framesRejected++
    this.#rejections.push(code)
    this.#options.logger?.warn({ code, bytes, reason }, 'simulator dropped a client frame')
  }

  #subscribe(link: SimLink, request: Subscribe): void {
    this.#stats.subscribes++
    this.#subscribeTimes.push(performance.now())
    const id = request.subscribe_id ?? 0
    if (link.subs.has(id)) return this.#respond(link, request.requestid, SIM_RESULT.DUPLICATE_ID, `subscribe_id ${id} already in use`)
    let sub: SimSub
    if (request.payload === 'lines') {
      sub = { id, kind: 'lines', timer: undefined, nextNotifyId: 1 }
    } else if (request.payload === 'user') {
      const guidText = formatGuid(request.user?.guid)
      if (guidText === undefined || this.#byGuid(guidText) === undefined) return this.#respond(link, request.requestid, SIM_RESULT.UNKNOWN_USER, 'unknown user guid')
      sub = { id, kind: 'user', guidText, timer: undefined, nextNotifyId: 1 }
    } else {
      return this.#respond(link, request.requestid, SIM_RESULT.UNSUPPORTED, `subscription type ${request.payload ?? 'none'} not supported by the simulator`)
    }
    link.subs.set(id, sub)
    this.#arm(link, sub, request.timeout ?? 0)
    this.#respond(link, request.requestid, 0)
    // The initial state follows the answer (A.10 [I]).
    if (sub.kind === 'lines') {
      this.#notify(link, sub, { lines: { flags: request.lines?.flags ?? 0, adduser: this.people().map((person) => linesUser(person)) } })
      return
    }
    const person = this.#byGuid(sub.guidText ?? '')
    if (person === undefined) return
    this.#notify(link, sub, { user: notifyUserBody(person) })
    // [I] the current calls follow as one call-control Notify, empty when idle.
    this.#notify(link, sub, { callcontrol: { callinfo: this.legsOf(person.extension).map(({ call, leg }) => callInfo(call, leg)) } })
  }

  #subscribeCmd(link: SimLink, command: SubscribeCmd): void {
    const sub = link.subs.get(command.subscribe_id ?? 0)
    if (sub === undefined) return this.#respond(link, command.requestid, SIM_RESULT.UNKNOWN_SUBSCRIPTION, 'unknown subscribe_id')
    if (command.payload === 'timeout') {
      this.#stats.renewals++
      this.#arm(link, sub, command.timeout ?? 0)
      return this.#respond(link, command.requestid, 0)
    }
    if (command.payload === 'user' && command.user?.sac !== undefined) {
      if (sub.kind !== 'user') return this.#respond(link, command.requestid, SIM_RESULT.NOT_A_USER_SUBSCRIPTION, 'not a user subscription')
      this.#stats.sacUpdates++
      const person = this.#byGuid(sub.guidText ?? '')
      if (person === undefined) return this.#respond(link, command.requestid, SIM_RESULT.UNKNOWN_USER, 'user deleted')
      this.#respond(link, command.requestid, 0)
      if (this.#options.sacTogglesDnd !== false) this.setDnd(person.extension, (command.user.sac.set ?? 0) !== 0)
      return
    }
    this.#respond(link, command.requestid, SIM_RESULT.UNSUPPORTED, 'unsupported SubscribeCmd')
  }

  /** (Re)starts the lifetime; 0 means no expiry [I]. */
  #arm(link: SimLink, sub: SimSub, timeoutS: number): void {
    clearTimeout(sub.timer)
    sub.timer = timeoutS > 0 ? setTimeout(() => this.#terminate(link, sub, 'timeout'), timeoutS * 1000) : undefined
    sub.timer?.unref()
  }

  #terminate(link: SimLink, sub: SimSub, reason: string): void {
    if (link.subs.get(sub.id) !== sub) return
    clearTimeout(sub.timer)
    link.subs.delete(sub.id)
    this.#stats.terminations++
    this.#send(link, { subscribeterminated: { subscribe_id: sub.id, reason } })
  }

  // --- Notifications ------------------------------------------------------------------------------------

  #sendCallInfo(call: Call, leg: Leg): void {
    if (leg.internal) this.#notifyUser(leg.party, { callcontrol: { callinfo: [callInfo(call, leg)] } })
  }

  /** Sends a Notify on every user subscription of this extension, on every link. */
  #notifyUser(extension: string, body: Pick<Notify, 'user' | 'callcontrol'>): void {
    const person = this.findPerson(extension)
    if (person === undefined) return
    for (const link of this.#links) {
      for (const sub of link.subs.values()) if (sub.kind === 'user' && sub.guidText === person.data.guidText) this.#notify(link, sub, body)
    }
  }

  #notifyLines(lines: NonNullable<Notify['lines']>): void {
    for (const link of this.#links) for (const sub of link.subs.values()) if (sub.kind === 'lines') this.#notify(link, sub, { lines })
  }

  #notify(link: SimLink, sub: SimSub, body: Pick<Notify, 'user' | 'callcontrol' | 'lines'>): void {
    this.#send(link, { notify: { subscribe_id: sub.id, notify_id: sub.nextNotifyId++, ...body } })
  }

  #respond(link: SimLink, requestId: number | undefined, result: number, additional?: string): void {
    this.#send(link, { response: { requestid: requestId ?? 0, result, ...(additional === undefined ? {} : { additional }) } })
  }

  #send(link: SimLink, message: MtctiOutgoing): void {
    if (link.ws.readyState === link.ws.OPEN) link.ws.send(encodeFrame(message), { binary: true })
  }

  #byGuid(guidText: string): AvayaPerson | undefined {
    return this.people().find((person) => person.data.guidText === guidText)
  }
}

function personData(user: AvayaSimUser | PersonFields): AvayaPersonData {
  const guid = 'guid' in user && user.guid !== undefined ? parseGuid(user.guid) : guidFor(user.extension)
  return { guid, guidText: formatGuid(guid) ?? '', fullName: 'fullName' in user ? user.fullName : undefined }
}

/** A stable GUID per extension, so restarts of the simulator keep user identities. */
function guidFor(extension: string): Buffer {
  return createHash('sha256').update(`ipo-user:${extension}`).digest().subarray(0, 16)
}

/** The model's neutral view of a CallInfo state a script sets; the number itself goes on the wire. */
function legStateOf(state: number): { state: LegState; held: boolean } {
  switch (state) {
    case CallState.RINGING:
    case CallState.RINGINGDIVERT: return { state: 'ringing', held: false }
    case CallState.RINGBACK: return { state: 'ringback', held: false }
    case CallState.ONHOLD: return { state: 'connected', held: true }
    case CallState.DIALTONE:
    case CallState.DIALLING:
    case CallState.DIALLED: return { state: 'dialing', held: false }
    default: return { state: 'connected', held: false }
  }
}

function callInfo(call: Call, leg: Leg): CallInfo {
  const state = leg.wire ?? (leg.held ? CallState.ONHOLD : WIRE_STATE[leg.state])
  return { callid: Number(call.id), state, direction: leg.direction === 'out' ? CallDirection.OUTBOUND : CallDirection.INBOUND }
}

function linesUser(person: AvayaPerson): LinesUser {
  return { guid: person.data.guid, extn: person.extension, name: person.name }
}

function notifyUserBody(person: AvayaPerson): NonNullable<Notify['user']> {
  return {
    extn: person.extension,
    name: person.name,
    ...(person.data.fullName === undefined ? {} : { fullname: person.data.fullName }),
    ...(person.email === undefined ? {} : { email: person.email }),
    dnd: person.dnd,
  }
}

function reject(socket: Duplex, status: number, text: string, headers = ''): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\n${headers}Connection: close\r\nContent-Length: 0\r\n\r\n`)
  setTimeout(() => socket.destroy(), 100).unref()
}
