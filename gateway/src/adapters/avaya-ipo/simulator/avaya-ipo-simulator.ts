import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { WebSocketServer, type WebSocket, type RawData } from 'ws'
import { decodeFrame, encodeFrame, formatGuid, parseGuid, type MtctiDecodeErrorCode } from '../mtcti3/codec.js'
import { CallDirection, CallState, type CallInfo, type MtctiOutgoing, type Notify, type Subscribe, type SubscribeCmd } from '../mtcti3/model.js'

/**
 * The server side of IP Office MTCTI-3 as far as the public facts go (research A.2-A.6, A.10): HTTPS with
 * the WebSocket upgrade at /tpkt/openapi, HTTP Basic (401 on bad credentials), subprotocol "openapi", binary
 * frames with the 00 00 00 01 prefix, RequestResponse per request, Lines and User subscriptions with a
 * lifetime (SubscribeTerminated at expiry, renewed by SubscribeCmd{timeout}), a monotonic notify_id per
 * subscription, NotifyAck accepted but not required, scripted users and calls, and Send All Calls toggling DND.
 * Choices where the facts end are marked [I]; result codes other than 0 are ours.
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

interface SimUser {
  user: AvayaSimUser
  guid: Buffer
  guidText: string
  dnd: boolean
}

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

interface SimLeg { state: number; direction: number }

/** Result codes other than 0 are [U]; these are the simulator's own, with text in `additional`. */
export const SIM_RESULT = { DUPLICATE_ID: 1, UNKNOWN_USER: 2, UNSUPPORTED: 3, UNKNOWN_SUBSCRIPTION: 4, NOT_A_USER_SUBSCRIPTION: 5 } as const

export const OPENAPI_PATH = '/tpkt/openapi'
const DEFAULT_EXTERNAL = '+4989123456'

export class AvayaIpoSimulator {
  readonly #options: AvayaIpoSimulatorOptions
  readonly #users = new Map<string, SimUser>()
  readonly #calls = new Map<number, Map<string, SimLeg>>()
  readonly #links = new Set<SimLink>()
  readonly #rejections: MtctiDecodeErrorCode[] = []
  readonly #subscribeTimes: number[] = []
  readonly #stats: AvayaSimStats = {
    upgrades: 0, authFailures: 0, subprotocolRejects: 0, linksRefused: 0, subscribes: 0, renewals: 0,
    subscribeEnds: 0, terminations: 0, acks: 0, sacUpdates: 0, framesRejected: 0,
  }
  #server: Server | undefined
  #wss: WebSocketServer | undefined
  #nextCallId = 1

  constructor(options: AvayaIpoSimulatorOptions) {
    this.#options = options
    for (const user of options.users ?? []) this.#addUserRecord(user)
  }

  // --- Lifecycle ----------------------------------------------------------------------------------------

  async start(): Promise<{ host: string; port: number }> {
    if (this.#server !== undefined) return { host: this.host, port: this.port }
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
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#options.port ?? 0, this.#options.host ?? '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    return { host: this.host, port: this.port }
  }

  async stop(): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    this.#server = undefined
    this.dropAllConnections()
    this.#wss?.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  get host(): string {
    return this.#options.host ?? '127.0.0.1'
  }

  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? 0
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

  // --- Scripting: people and the network ----------------------------------------------------------------

  guidOf(extension: string): string {
    return this.#byExtension(extension).guidText
  }

  /** An external caller rings the extension; returns the call id. */
  incomingCall(extension: string): string {
    this.#byExtension(extension)
    const callId = this.#nextCallId++
    this.#calls.set(callId, new Map([[extension, { state: CallState.RINGING, direction: CallDirection.INBOUND }]]))
    this.#sendCallInfo(extension, callId)
    return String(callId)
  }

  /** The extension dials `to`; an internal `to` rings there. Returns the call id. */
  outgoingCall(extension: string, to: string = DEFAULT_EXTERNAL): string {
    this.#byExtension(extension)
    const callId = this.#nextCallId++
    const legs = new Map<string, SimLeg>([[extension, { state: CallState.RINGBACK, direction: CallDirection.OUTBOUND }]])
    if (this.#findByExtension(to) !== undefined && to !== extension) legs.set(to, { state: CallState.RINGING, direction: CallDirection.INBOUND })
    this.#calls.set(callId, legs)
    for (const leg of legs.keys()) this.#sendCallInfo(leg, callId)
    return String(callId)
  }

  /** Every ringing leg answers; the caller's ringback becomes connected too. */
  answer(callId: string): void {
    const legs = this.#call(callId)
    for (const [extension, leg] of legs) {
      if (leg.state === CallState.RINGING || leg.state === CallState.RINGBACK || leg.state === CallState.RINGINGDIVERT) {
        leg.state = CallState.CONNECTED
        this.#sendCallInfo(extension, Number(callId))
      }
    }
  }

  hold(callId: string, extension: string): void {
    this.setCallState(callId, extension, CallState.ONHOLD)
  }

  retrieve(callId: string, extension: string): void {
    this.setCallState(callId, extension, CallState.CONNECTED)
  }

  /** Sets one leg to any CallInfo state number (known or not), creating the call or leg as needed. */
  setCallState(callId: string, extension: string, state: number, direction: number = CallDirection.INBOUND): void {
    this.#byExtension(extension)
    const id = Number(callId)
    if (!Number.isInteger(id) || id <= 0) throw new Error(`bad call id ${callId}`)
    const legs = this.#calls.get(id) ?? new Map<string, SimLeg>()
    this.#calls.set(id, legs)
    if (id >= this.#nextCallId) this.#nextCallId = id + 1
    const leg = legs.get(extension)
    if (leg === undefined) legs.set(extension, { state, direction })
    else leg.state = state
    this.#sendCallInfo(extension, id)
  }

  /** The call ends for everyone: CallLost on each leg. */
  hangup(callId: string, description = 'normal clearing'): void {
    const legs = this.#call(callId)
    this.#calls.delete(Number(callId))
    for (const extension of legs.keys()) {
      this.#notifyUser(extension, { callcontrol: { calllost: [{ callid: Number(callId), reason: 1, thisenddropped: false, description }] } })
    }
  }

  /** The person presses the DND key (IP Office: Send All Calls). */
  setDndAtPhone(extension: string, on: boolean): void {
    this.#setDnd(this.#byExtension(extension), on)
  }

  getDnd(extension: string): boolean {
    return this.#byExtension(extension).dnd
  }

  setEmail(extension: string, email: string | undefined): void {
    const user = this.#byExtension(extension)
    if (email === undefined) delete user.user.email
    else user.user.email = email
    this.#notifyUser(extension, { user: this.#notifyUserBody(user) })
  }

  addUser(user: AvayaSimUser): void {
    const record = this.#addUserRecord(user)
    this.#notifyLines({ adduser: [{ guid: record.guid, extn: user.extension, name: user.name }] })
  }

  removeUser(extension: string): void {
    const user = this.#byExtension(extension)
    this.#users.delete(user.guidText)
    for (const link of this.#links) {
      for (const sub of [...link.subs.values()]) if (sub.guidText === user.guidText) this.#terminate(link, sub, 'user deleted')
    }
    this.#notifyLines({ deleteuser: [{ guid: user.guid, extn: user.user.extension, name: user.user.name }] })
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
    return [...this.#calls].map(([callId, legs]) => ({
      callId: String(callId),
      legs: [...legs].map(([extension, leg]) => ({ extension, state: leg.state, direction: leg.direction })),
    }))
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
      if (guidText === undefined || !this.#users.has(guidText)) return this.#respond(link, request.requestid, SIM_RESULT.UNKNOWN_USER, 'unknown user guid')
      sub = { id, kind: 'user', guidText, timer: undefined, nextNotifyId: 1 }
    } else {
      return this.#respond(link, request.requestid, SIM_RESULT.UNSUPPORTED, `subscription type ${request.payload ?? 'none'} not supported by the simulator`)
    }
    link.subs.set(id, sub)
    this.#arm(link, sub, request.timeout ?? 0)
    this.#respond(link, request.requestid, 0)
    // The initial state follows the answer (A.10 [I]).
    if (sub.kind === 'lines') {
      this.#notify(link, sub, { lines: { flags: request.lines?.flags ?? 0, adduser: [...this.#users.values()].map((u) => ({ guid: u.guid, extn: u.user.extension, name: u.user.name })) } })
      return
    }
    const user = this.#users.get(sub.guidText ?? '')
    if (user === undefined) return
    this.#notify(link, sub, { user: this.#notifyUserBody(user) })
    // [I] the current calls follow as one call-control Notify, empty when idle.
    this.#notify(link, sub, { callcontrol: { callinfo: this.#callInfosOf(user.user.extension) } })
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
      const user = this.#users.get(sub.guidText ?? '')
      if (user === undefined) return this.#respond(link, command.requestid, SIM_RESULT.UNKNOWN_USER, 'user deleted')
      this.#respond(link, command.requestid, 0)
      if (this.#options.sacTogglesDnd !== false) this.#setDnd(user, (command.user.sac.set ?? 0) !== 0)
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

  #setDnd(user: SimUser, on: boolean): void {
    // [I] no NotifyUser when nothing changed.
    if (user.dnd === on) return
    user.dnd = on
    this.#notifyUser(user.user.extension, { user: this.#notifyUserBody(user) })
  }

  #notifyUserBody(user: SimUser): NonNullable<Notify['user']> {
    return {
      extn: user.user.extension,
      name: user.user.name,
      ...(user.user.fullName === undefined ? {} : { fullname: user.user.fullName }),
      ...(user.user.email === undefined ? {} : { email: user.user.email }),
      dnd: user.dnd,
    }
  }

  #sendCallInfo(extension: string, callId: number): void {
    const leg = this.#calls.get(callId)?.get(extension)
    if (leg === undefined) return
    this.#notifyUser(extension, { callcontrol: { callinfo: [{ callid: callId, state: leg.state, direction: leg.direction }] } })
  }

  #callInfosOf(extension: string): CallInfo[] {
    const infos: CallInfo[] = []
    for (const [callId, legs] of this.#calls) {
      const leg = legs.get(extension)
      if (leg !== undefined) infos.push({ callid: callId, state: leg.state, direction: leg.direction })
    }
    return infos
  }

  /** Sends a Notify on every user subscription of this extension, on every link. */
  #notifyUser(extension: string, body: Pick<Notify, 'user' | 'callcontrol'>): void {
    const user = this.#findByExtension(extension)
    if (user === undefined) return
    for (const link of this.#links) {
      for (const sub of link.subs.values()) if (sub.kind === 'user' && sub.guidText === user.guidText) this.#notify(link, sub, body)
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

  // --- Users --------------------------------------------------------------------------------------------

  #addUserRecord(user: AvayaSimUser): SimUser {
    if (this.#findByExtension(user.extension) !== undefined) throw new Error(`extension ${user.extension} exists`)
    const guid = user.guid === undefined ? guidFor(user.extension) : parseGuid(user.guid)
    const guidText = formatGuid(guid) ?? ''
    const record: SimUser = { user: { ...user }, guid, guidText, dnd: false }
    this.#users.set(guidText, record)
    return record
  }

  #findByExtension(extension: string): SimUser | undefined {
    for (const user of this.#users.values()) if (user.user.extension === extension) return user
    return undefined
  }

  #byExtension(extension: string): SimUser {
    const user = this.#findByExtension(extension)
    if (user === undefined) throw new Error(`no user with extension ${extension}`)
    return user
  }

  #call(callId: string): Map<string, SimLeg> {
    const legs = this.#calls.get(Number(callId))
    if (legs === undefined) throw new Error(`no call ${callId}`)
    return legs
  }
}

/** A stable GUID per extension, so restarts of the simulator keep user identities. */
function guidFor(extension: string): Buffer {
  return createHash('sha256').update(`ipo-user:${extension}`).digest().subarray(0, 16)
}

function reject(socket: Duplex, status: number, text: string, headers = ''): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\n${headers}Connection: close\r\nContent-Length: 0\r\n\r\n`)
  setTimeout(() => socket.destroy(), 100).unref()
}

