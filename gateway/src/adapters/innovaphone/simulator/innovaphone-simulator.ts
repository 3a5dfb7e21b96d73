import { randomBytes, randomInt } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { Logger } from 'pino'
import { WebSocket, WebSocketServer } from 'ws'
import { appLoginDigest } from '../login.js'

/**
 * An innovaphone PBX's App Platform WebSocket as far as the public facts go (research Part B): the App-object
 * login with the SHA-256 digest (a wrong one gets ok:false and the connection closed), `src` echoed on every
 * result and indication, RCC (Initialize with UserInfo alert/channel counts, 50 users per 20 ms tick;
 * UserInitialize with PBX-centric CallInfo), PbxApi presence (SubscribePresence, SetPresence) and
 * PbxTableUsers replication with live add/update/delete. An API not enabled on the App object is silently
 * ignored, as the research expects of the PBX [I].
 */

export type SimApi = 'RCC' | 'PbxApi' | 'PbxTableUsers'

export interface SimUser {
  /** Hex id; made up when absent. */
  guid?: string
  /** Long Name (RCC UserInitialize takes it). */
  cn: string
  /** Extension: our endpoint id. */
  e164: string
  /** SIP/H.323 name; defaults to the cn in lower case. */
  h323?: string
  dn?: string
  emails?: string[]
  /** The h323 name is the e-mail address. */
  h323Email?: boolean
  /** PBX node the person is registered with (multi-node). Default: the simulator's pbxName. */
  pbx?: string
}

export interface InnovaphoneSimulatorOptions {
  host?: string
  /** 0 (default) picks a free port. */
  port?: number
  /** Serve wss:// with this certificate; ws:// without. */
  tls?: { cert: string; key: string }
  /** Default /PBX0/APPS/websocket. */
  path?: string
  appName: string
  appPassword: string
  users?: SimUser[]
  /** The APIs ticked on the App object; default all three. */
  apis?: SimApi[]
  /** This PBX's name, reported as UserInfo.pbx. Default "master". */
  pbxName?: string
  /** UserInfo messages per 20 ms tick during RCC Initialize [C: ≤50]. */
  usersPerTick?: number
  logger?: Logger
}

export interface SimulatorStats {
  connections: number
  loginsAccepted: number
  loginsRefused: number
  keepAlives: number
  /** Requests for an API that is not enabled: no answer. */
  ignoredDisabledApi: number
  /** Messages with an mt the simulator does not know. */
  ignoredUnknown: number
  setPresence: number
  /** Frames a frozen PBX received and ignored. */
  ignoredWhileFrozen: number
}

interface User {
  guid: string
  cn: string
  e164: string
  h323: string
  dn: string
  emails: string[]
  h323Email: boolean
  pbx: string
  /** contact → presence item; the newest first when sent. */
  presence: Map<string, { contact: string; status: string; activity: string; note: string; at: number }>
}

interface Leg {
  guid: string
  /** CallInfo.state: low nibble plus 0x80 (towards the phone), 0x100 (held by this side), 0x200 (held by the peer). */
  state: number
  msg: string
}

interface Call {
  id: number
  legs: Leg[]
  /** The outside party of an external call. */
  external: string | undefined
}

interface Session {
  socket: WebSocket
  challenge: string | undefined
  loggedIn: boolean
  frozen: boolean
  rccSrc: string | undefined
  /** RCC Initialize done: UserInfo updates flow. */
  rcc: boolean
  /** handle → { guid, src } */
  monitors: Map<number, { guid: string; src: string | undefined }>
  /** SubscribePresence: src → guid */
  presence: Map<string | undefined, string>
  replication: { src: string | undefined; queue: string[]; columns: string[]; live: boolean } | undefined
  pacing: Set<NodeJS.Timeout>
}

type Json = Record<string, unknown>

const DEFAULT_PATH = '/PBX0/APPS/websocket'
const DEFAULT_EXTERNAL = '+4989123456'

export class InnovaphoneSimulator {
  readonly #options: InnovaphoneSimulatorOptions
  readonly #users = new Map<string, User>()
  readonly #calls = new Map<number, Call>()
  readonly #sessions = new Set<Session>()
  readonly #apis: ReadonlySet<SimApi>
  readonly #stats: SimulatorStats = { connections: 0, loginsAccepted: 0, loginsRefused: 0, keepAlives: 0, ignoredDisabledApi: 0, ignoredUnknown: 0, setPresence: 0, ignoredWhileFrozen: 0 }
  #server: HttpServer | undefined
  #wss: WebSocketServer | undefined
  #stopping: Promise<void> | undefined
  #nextCallId = 1
  #nextHandle = 1
  #frozen = false

  constructor(options: InnovaphoneSimulatorOptions) {
    this.#options = options
    this.#apis = new Set(options.apis ?? ['RCC', 'PbxApi', 'PbxTableUsers'])
    for (const user of options.users ?? []) this.#addUser(user)
  }

  // --- Lifecycle ------------------------------------------------------------------------------------------

  async start(): Promise<{ host: string; port: number; url: string }> {
    if (this.#server === undefined) {
      const tls = this.#options.tls
      const server = tls === undefined ? createHttpServer() : createHttpsServer({ cert: tls.cert, key: tls.key })
      // autoPong off: a frozen PBX must not answer pings either (the silent-peer case).
      const wss = new WebSocketServer({ noServer: true, autoPong: false, perMessageDeflate: false })
      server.on('request', (_request, response) => {
        response.writeHead(404).end()
      })
      server.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => {
        if ((request.url ?? '').split('?')[0] !== (this.#options.path ?? DEFAULT_PATH)) {
          socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
          return
        }
        wss.handleUpgrade(request, socket, head, (ws) => this.#accept(ws))
      })
      this.#server = server
      this.#wss = wss
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(this.#options.port ?? 0, this.#options.host ?? '127.0.0.1', () => {
          server.off('error', reject)
          resolve()
        })
      })
    }
    return { host: this.host, port: this.port, url: this.url }
  }

  stop(): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping
    for (const session of this.#sessions) this.#end(session)
    const server = this.#server
    this.#wss?.close()
    this.#stopping = server === undefined ? Promise.resolve() : new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
    return this.#stopping
  }

  get host(): string {
    return this.#options.host ?? '127.0.0.1'
  }

  get port(): number {
    const address = this.#server?.address()
    return address !== null && typeof address === 'object' ? (address as AddressInfo).port : 0
  }

  get url(): string {
    return `${this.#options.tls === undefined ? 'ws' : 'wss'}://${this.host}:${this.port}${this.#options.path ?? DEFAULT_PATH}`
  }

  get stats(): Readonly<SimulatorStats> {
    return { ...this.#stats }
  }

  get connectionCount(): number {
    return this.#sessions.size
  }

  /** Sessions that have UserInitialize'd this extension (a test's "is it monitored?"). */
  monitorCount(e164?: string): number {
    let count = 0
    for (const session of this.#sessions) {
      for (const monitor of session.monitors.values()) if (e164 === undefined || this.#users.get(monitor.guid)?.e164 === e164) count++
    }
    return count
  }

  presenceSubscriptionCount(): number {
    let count = 0
    for (const session of this.#sessions) count += session.presence.size
    return count
  }

  getDnd(e164: string): boolean {
    return this.#user(e164).presence.get('tel:')?.activity === 'dnd'
  }

  /** The tel: presence item of a person (activity and note), as colleagues would see it. */
  getPresence(e164: string): { activity: string; note: string } | undefined {
    const item = this.#user(e164).presence.get('tel:')
    return item === undefined ? undefined : { activity: item.activity, note: item.note }
  }

  calls(): Array<{ callId: string; legs: Array<{ e164: string; state: number }> }> {
    return [...this.#calls.values()].map((call) => ({
      callId: String(call.id), legs: call.legs.map((leg) => ({ e164: this.#users.get(leg.guid)?.e164 ?? '?', state: leg.state })),
    }))
  }

  // --- Faults ---------------------------------------------------------------------------------------------

  /** Closes every client connection abruptly, as a PBX restart or network cut would. */
  dropAllConnections(): number {
    const count = this.#sessions.size
    for (const session of this.#sessions) session.socket.terminate()
    return count
  }

  /** While frozen the PBX keeps connections open but reads nothing, sends nothing and answers no ping. */
  freeze(frozen: boolean): void {
    this.#frozen = frozen
    for (const session of this.#sessions) session.frozen = frozen
  }

  /** Writes a text (or binary) frame as it is to every logged-in client. Returns the client count. */
  sendRaw(data: string | Buffer, binary = false): number {
    let sent = 0
    for (const session of this.#sessions) {
      if (!session.loggedIn || session.socket.readyState !== WebSocket.OPEN) continue
      session.socket.send(data, { binary })
      sent++
    }
    return sent
  }

  // --- Scripting: people --------------------------------------------------------------------------------

  /** A new person: a table row (ReplicateAdd) and an RCC UserInfo. */
  addUser(user: SimUser): void {
    const added = this.#addUser(user)
    for (const session of this.#sessions) {
      this.#replicate(session, 'ReplicateAdd', added)
      this.#sendUserInfo(session, added)
    }
  }

  /** Changes a person's name, e-mails, number or node. */
  updateUser(e164: string, patch: Partial<Omit<SimUser, 'guid'>>): void {
    const user = this.#user(e164)
    if (patch.cn !== undefined) user.cn = patch.cn
    if (patch.e164 !== undefined) user.e164 = patch.e164
    if (patch.h323 !== undefined) user.h323 = patch.h323
    if (patch.dn !== undefined) user.dn = patch.dn
    if (patch.emails !== undefined) user.emails = [...patch.emails]
    if (patch.h323Email !== undefined) user.h323Email = patch.h323Email
    if (patch.pbx !== undefined) user.pbx = patch.pbx
    for (const session of this.#sessions) {
      this.#replicate(session, 'ReplicateUpdate', user)
      this.#sendUserInfo(session, user)
    }
  }

  removeUser(e164: string): void {
    const user = this.#user(e164)
    this.#users.delete(user.guid)
    for (const session of this.#sessions) {
      this.#replicate(session, 'ReplicateDel', user)
      if (session.rcc) this.#send(session, { api: 'RCC', mt: 'UserInfo', src: session.rccSrc, guid: user.guid, cn: user.cn, update: 'del' })
      for (const [handle, monitor] of session.monitors) if (monitor.guid === user.guid) session.monitors.delete(handle)
      for (const [src, guid] of session.presence) if (guid === user.guid) session.presence.delete(src)
    }
  }

  // --- Scripting: calls ---------------------------------------------------------------------------------

  /** A call from outside (or from extension `from`) rings at `e164`; returns the call id. */
  incomingCall(e164: string, from: string = DEFAULT_EXTERNAL): string {
    const callee = this.#user(e164)
    const caller = [...this.#users.values()].find((user) => user.e164 === from)
    const call: Call = { id: this.#nextCallId++, legs: [], external: caller === undefined ? from : undefined }
    this.#calls.set(call.id, call)
    if (caller !== undefined) {
      // The caller's phone sent a setup to the PBX (no 0x80), then hears ringback.
      const out: Leg = { guid: caller.guid, state: 0x01, msg: 'r-setup' }
      call.legs.push(out)
      this.#callInfo(call, out)
      this.#setLeg(call, out, 0x03, 'x-call-proc')
    }
    // PBX-centric: a call from the PBX to the phone is outbound, so ringing here is 0x84 [C].
    const leg: Leg = { guid: callee.guid, state: 0x81, msg: 'x-setup' }
    call.legs.push(leg)
    this.#callInfo(call, leg)
    this.#setLeg(call, leg, 0x84, 'r-alert')
    if (caller !== undefined) this.#setLeg(call, call.legs[0]!, 0x04, 'x-alert')
    this.#userInfoUpdate(call)
    return String(call.id)
  }

  /** `e164` dials `to`: an internal number rings there; an external one rings at once far away. */
  outgoingCall(e164: string, to: string): string {
    if ([...this.#users.values()].some((user) => user.e164 === to)) return this.incomingCall(to, e164)
    const caller = this.#user(e164)
    const call: Call = { id: this.#nextCallId++, legs: [], external: to }
    this.#calls.set(call.id, call)
    const leg: Leg = { guid: caller.guid, state: 0x01, msg: 'r-setup' }
    call.legs.push(leg)
    this.#callInfo(call, leg)
    this.#setLeg(call, leg, 0x03, 'x-call-proc')
    this.#setLeg(call, leg, 0x04, 'x-alert')
    this.#userInfoUpdate(call)
    return String(call.id)
  }

  /** The ringing side answers (an outgoing external call: the far end answers). */
  answer(callId: string): void {
    const call = this.#call(callId)
    for (const leg of call.legs) {
      const towardsPhone = (leg.state & 0x80) !== 0
      this.#setLeg(call, leg, (leg.state & 0x380) | 0x05, towardsPhone ? 'r-conn' : 'x-conn')
    }
    this.#userInfoUpdate(call)
  }

  /** `e164` puts the call on hold; the other side is held by its peer. */
  hold(callId: string, e164: string): void {
    const call = this.#call(callId)
    const holder = this.#user(e164)
    for (const leg of call.legs) {
      if (leg.guid === holder.guid) this.#setLeg(call, leg, leg.state | 0x100, 'r-hold')
      else this.#setLeg(call, leg, leg.state | 0x200, 'x-hold')
    }
  }

  retrieve(callId: string, e164: string): void {
    const call = this.#call(callId)
    const holder = this.#user(e164)
    for (const leg of call.legs) {
      if (leg.guid === holder.guid) this.#setLeg(call, leg, leg.state & ~0x100, 'r-retrieve')
      else this.#setLeg(call, leg, leg.state & ~0x200, 'x-retrieve')
    }
  }

  /** Someone hangs up (default: whoever is first); every leg gets disc, rel and the final del [C]. */
  hangup(callId: string, e164?: string): void {
    const call = this.#call(callId)
    const by = e164 === undefined ? call.legs[0]?.guid : this.#user(e164).guid
    for (const leg of call.legs) {
      const direction = leg.state & 0x80
      if (leg.guid === by) this.#setLeg(call, leg, direction | 0x07, 'r-disc')
      else this.#setLeg(call, leg, direction | 0x06, 'x-disc')
      this.#setLeg(call, leg, direction | 0x07, leg.guid === by ? 'x-rel' : 'r-rel')
    }
    this.#calls.delete(call.id)
    for (const leg of call.legs) this.#callInfo(call, { ...leg, msg: 'del' })
    this.#userInfoUpdate(call)
  }

  // --- Scripting: presence ------------------------------------------------------------------------------

  /** The person sets or clears DND at the phone or in myApps (presence contact tel:, activity dnd). */
  setDndAtPhone(e164: string, on: boolean): void {
    const user = this.#user(e164)
    this.#setPresence(user, 'tel:', on ? 'dnd' : '', on ? 'do not disturb' : '')
  }

  /** Any other presence activity the person chooses ("away", "busy", ...). */
  setActivity(e164: string, activity: string, contact = 'tel:'): void {
    this.#setPresence(this.#user(e164), contact, activity, '')
  }

  // --- Connections ----------------------------------------------------------------------------------------

  #accept(socket: WebSocket): void {
    const session: Session = {
      socket, challenge: undefined, loggedIn: false, frozen: this.#frozen, rccSrc: undefined, rcc: false,
      monitors: new Map(), presence: new Map(), replication: undefined, pacing: new Set(),
    }
    this.#sessions.add(session)
    this.#stats.connections++
    socket.on('ping', (data: Buffer) => {
      if (!session.frozen) socket.pong(data)
    })
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (session.frozen) {
        this.#stats.ignoredWhileFrozen++
        return
      }
      if (isBinary) return
      let message: Json
      try {
        const parsed: unknown = JSON.parse(data.toString('utf8'))
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return
        message = parsed as Json
      } catch {
        return
      }
      try {
        this.#onMessage(session, message)
      } catch (error) {
        this.#options.logger?.error({ err: error, mt: message.mt }, 'simulator failed on a message')
      }
    })
    socket.on('error', () => undefined)
    socket.on('close', () => this.#end(session))
  }

  #end(session: Session): void {
    for (const timer of session.pacing) clearTimeout(timer)
    session.pacing.clear()
    this.#sessions.delete(session)
    if (session.socket.readyState !== WebSocket.CLOSED) session.socket.terminate()
  }

  #send(session: Session, message: Json): void {
    if (session.frozen || session.socket.readyState !== WebSocket.OPEN) return
    // src is echoed only when the request had one.
    if (message.src === undefined) delete message.src
    session.socket.send(JSON.stringify(message))
  }

  #onMessage(session: Session, message: Json): void {
    const mt = typeof message.mt === 'string' ? message.mt : ''
    const src = typeof message.src === 'string' ? message.src : undefined
    if (mt === 'AppChallenge') {
      // innovaphone uses digits only [C]; up to 16 characters.
      session.challenge = Array.from({ length: 16 }, () => String(randomInt(10))).join('')
      this.#send(session, { mt: 'AppChallengeResult', src, challenge: session.challenge })
      return
    }
    if (mt === 'AppLogin') return this.#login(session, message, src)
    if (!session.loggedIn) {
      this.#options.logger?.debug({ mt }, 'message before login ignored')
      return
    }
    if (mt === 'KeepAlive') {
      this.#stats.keepAlives++
      return
    }
    const api = typeof message.api === 'string' ? message.api : ''
    if ((api === 'RCC' || api === 'PbxApi' || api === 'PbxTableUsers') && !this.#apis.has(api)) {
      this.#stats.ignoredDisabledApi++
      return
    }
    switch (`${api}/${mt}`) {
      case 'RCC/Initialize': return this.#rccInitialize(session, src)
      case 'RCC/UserInitialize': return this.#userInitialize(session, message, src)
      case 'RCC/UserEnd': {
        session.monitors.delete(Number(message.user))
        this.#send(session, { api: 'RCC', mt: 'UserEndResult', src })
        return
      }
      case 'PbxApi/SubscribePresence': return this.#subscribePresence(session, message, src)
      case 'PbxApi/UnsubscribePresence': {
        session.presence.delete(src)
        this.#send(session, { api: 'PbxApi', mt: 'UnsubscribePresenceResult', src })
        return
      }
      case 'PbxApi/SetPresence': return this.#setPresenceRequest(session, message, src)
      case 'PbxTableUsers/ReplicateStart': return this.#replicateStart(session, message, src)
      case 'PbxTableUsers/ReplicateNext': return this.#replicateNext(session, src)
      default:
        this.#stats.ignoredUnknown++
        this.#options.logger?.debug({ api, mt }, 'unknown message ignored')
    }
  }

  #login(session: Session, message: Json, src: string | undefined): void {
    const text = (key: string): string => (typeof message[key] === 'string' ? message[key] : '')
    const info = typeof message.info === 'object' && message.info !== null && !Array.isArray(message.info) ? message.info as Record<string, unknown> : undefined
    const challenge = session.challenge
    session.challenge = undefined
    const expected = challenge === undefined ? undefined : appLoginDigest({
      app: text('app'), domain: text('domain'), sip: text('sip'), guid: text('guid'), dn: text('dn'), ...(info === undefined ? {} : { info }),
    }, challenge, this.#options.appPassword)
    if (expected === undefined || text('app') !== this.#options.appName || text('digest').toLowerCase() !== expected) {
      this.#stats.loginsRefused++
      // The PBX answers without ok (or ok:false) and the connection ends [C: B.2, B.9].
      this.#send(session, { mt: 'AppLoginResult', src, ok: false })
      setTimeout(() => session.socket.close(1000), 10).unref()
      return
    }
    session.loggedIn = true
    this.#stats.loginsAccepted++
    this.#send(session, { mt: 'AppLoginResult', src, ok: true })
  }

  // --- RCC ------------------------------------------------------------------------------------------------

  /** UserInfo for everyone, at most usersPerTick every 20 ms [C], then InitializeResult; updates from then on. */
  #rccInitialize(session: Session, src: string | undefined): void {
    session.rccSrc = src
    const queue = [...this.#users.values()]
    const perTick = this.#options.usersPerTick ?? 50
    const tick = (): void => {
      for (const user of queue.splice(0, perTick)) this.#send(session, this.#userInfoMessage(session, user))
      if (queue.length > 0) {
        const timer = setTimeout(() => {
          session.pacing.delete(timer)
          tick()
        }, 20)
        session.pacing.add(timer)
        return
      }
      session.rcc = true
      this.#send(session, { api: 'RCC', mt: 'InitializeResult', src })
    }
    tick()
  }

  #userInfoMessage(session: Session, user: User): Json {
    let channel = 0
    let alert = 0
    for (const call of this.#calls.values()) {
      for (const leg of call.legs) {
        if (leg.guid !== user.guid) continue
        channel++
        if ((leg.state & 0x0f) === 4 && (leg.state & 0x80) !== 0) alert++
      }
    }
    return {
      api: 'RCC', mt: 'UserInfo', src: session.rccSrc, guid: user.guid, cn: user.cn, dn: user.dn, h323: user.h323, e164: user.e164,
      node: 'root', pbx: user.pbx, alert, channel, regs: [{ hw: `IP222-${user.e164}`, soap: false }],
    }
  }

  #sendUserInfo(session: Session, user: User): void {
    if (session.rcc) this.#send(session, this.#userInfoMessage(session, user))
  }

  #userInfoUpdate(call: Call): void {
    for (const leg of call.legs) {
      const user = this.#users.get(leg.guid)
      if (user === undefined) continue
      for (const session of this.#sessions) this.#sendUserInfo(session, user)
    }
  }

  #userInitialize(session: Session, message: Json, src: string | undefined): void {
    const user = [...this.#users.values()].find((candidate) => candidate.cn === message.cn)
    if (user === undefined) {
      // What the PBX answers for an unknown cn is [U]: a result without a user handle, with an error.
      this.#send(session, { api: 'RCC', mt: 'UserInitializeResult', src, error: 'unknown user', errorText: `no user with cn ${String(message.cn)}` })
      return
    }
    const handle = this.#nextHandle++
    session.monitors.set(handle, { guid: user.guid, src })
    this.#send(session, { api: 'RCC', mt: 'UserInitializeResult', src, user: handle })
    // The calls the person is in right now [I: the PBX reports existing calls after UserInitialize].
    for (const call of this.#calls.values()) {
      for (const leg of call.legs) if (leg.guid === user.guid) this.#send(session, this.#callInfoMessage(call, leg, handle, src))
    }
  }

  #callInfoMessage(call: Call, leg: Leg, handle: number, src: string | undefined): Json {
    const other = call.legs.find((candidate) => candidate.guid !== leg.guid)
    const peer = other === undefined ? { e164: call.external ?? '', h323: '' } : { e164: this.#users.get(other.guid)?.e164 ?? '', h323: this.#users.get(other.guid)?.h323 ?? '' }
    const message: Json = { api: 'RCC', mt: 'CallInfo', src, user: handle, call: call.id, state: leg.state, peer, msg: leg.msg }
    if (leg.msg === 'del' || leg.msg.endsWith('-rel')) message.info = [{ type: 'cause', vali: 16, vals: 'Normal call clearing' }]
    return message
  }

  #callInfo(call: Call, leg: Leg): void {
    for (const session of this.#sessions) {
      for (const [handle, monitor] of session.monitors) {
        if (monitor.guid === leg.guid) this.#send(session, this.#callInfoMessage(call, leg, handle, monitor.src))
      }
    }
  }

  #setLeg(call: Call, leg: Leg, state: number, msg: string): void {
    leg.state = state
    leg.msg = msg
    this.#callInfo(call, leg)
  }

  // --- PbxApi ---------------------------------------------------------------------------------------------

  #subscribePresence(session: Session, message: Json, src: string | undefined): void {
    const user = [...this.#users.values()].find((candidate) => (typeof message.sip === 'string' && message.sip !== '' && candidate.h323 === message.sip)
      || (typeof message.num === 'string' && message.num !== '' && candidate.e164 === message.num))
    if (user === undefined) {
      this.#send(session, { api: 'PbxApi', mt: 'SubscribePresenceResult', src, error: 1, errorText: 'unknown user' })
      return
    }
    session.presence.set(src, user.guid)
    this.#send(session, { api: 'PbxApi', mt: 'SubscribePresenceResult', src })
    this.#send(session, { api: 'PbxApi', mt: 'PresenceState', src, up: true, sip: user.h323, num: user.e164, dn: user.dn, email: user.emails[0] ?? '' })
    this.#send(session, this.#presenceUpdate(user, src))
  }

  #presenceUpdate(user: User, src: string | undefined): Json {
    const presence = [...user.presence.values()].sort((a, b) => b.at - a.at).map(({ contact, status, activity, note }) => ({ contact, status, activity, note }))
    return { api: 'PbxApi', mt: 'PresenceUpdate', src, presence }
  }

  #setPresenceRequest(session: Session, message: Json, src: string | undefined): void {
    this.#stats.setPresence++
    const user = [...this.#users.values()].find((candidate) => (typeof message.sip === 'string' && message.sip !== '' && candidate.h323 === message.sip)
      || (typeof message.guid === 'string' && candidate.guid === message.guid))
    if (user === undefined) {
      this.#send(session, { api: 'PbxApi', mt: 'SetPresenceResult', src, error: 1, errorText: 'no such user' })
      return
    }
    const contact = typeof message.contact === 'string' ? message.contact : 'tel:'
    this.#send(session, { api: 'PbxApi', mt: 'SetPresenceResult', src })
    this.#setPresence(user, contact, typeof message.activity === 'string' ? message.activity : '', typeof message.note === 'string' ? message.note : '')
  }

  #setPresence(user: User, contact: string, activity: string, note: string): void {
    user.presence.set(contact, { contact, status: 'open', activity, note, at: performance.now() })
    for (const session of this.#sessions) {
      for (const [src, guid] of session.presence) if (guid === user.guid) this.#send(session, this.#presenceUpdate(user, src))
    }
  }

  // --- PbxTableUsers --------------------------------------------------------------------------------------

  #replicateStart(session: Session, message: Json, src: string | undefined): void {
    const requested = typeof message.columns === 'object' && message.columns !== null ? Object.keys(message.columns) : []
    const columns = requested.length > 0 ? requested : ['guid', 'h323', 'cn', 'dn', 'e164', 'h323-email', 'emails']
    session.replication = { src, queue: [...this.#users.keys()], columns, live: false }
    this.#send(session, { api: 'PbxTableUsers', mt: 'ReplicateStartResult', src, columns: Object.fromEntries(columns.map((column) => [column, {}])) })
  }

  #replicateNext(session: Session, src: string | undefined): void {
    const replication = session.replication
    if (replication === undefined) {
      this.#send(session, { api: 'PbxTableUsers', mt: 'ReplicateNextResult', src })
      return
    }
    for (;;) {
      const guid = replication.queue.shift()
      if (guid === undefined) {
        replication.live = true
        // End of table: a result without columns [I].
        this.#send(session, { api: 'PbxTableUsers', mt: 'ReplicateNextResult', src })
        return
      }
      const user = this.#users.get(guid)
      if (user === undefined) continue
      this.#send(session, { api: 'PbxTableUsers', mt: 'ReplicateNextResult', src, columns: this.#row(user, replication.columns) })
      return
    }
  }

  #row(user: User, columns: string[]): Json {
    const all: Json = {
      guid: user.guid, h323: user.h323, cn: user.cn, dn: user.dn, e164: user.e164, 'h323-email': user.h323Email,
      emails: user.emails.map((email) => ({ email })),
    }
    return Object.fromEntries(columns.filter((column) => column in all).map((column) => [column, all[column]]))
  }

  #replicate(session: Session, mt: 'ReplicateAdd' | 'ReplicateUpdate' | 'ReplicateDel', user: User): void {
    const replication = session.replication
    if (replication === undefined) return
    if (!replication.live) {
      // Still reading the table: a new row joins the queue, the others show when read.
      if (mt === 'ReplicateAdd') replication.queue.push(user.guid)
      return
    }
    const columns = mt === 'ReplicateDel' ? { guid: user.guid } : this.#row(user, replication.columns)
    this.#send(session, { api: 'PbxTableUsers', mt, src: replication.src, columns })
  }

  // --- Helpers --------------------------------------------------------------------------------------------

  #addUser(user: SimUser): User {
    const guid = user.guid ?? randomBytes(16).toString('hex')
    const added: User = {
      guid, cn: user.cn, e164: user.e164, h323: user.h323 ?? user.cn.toLowerCase().replace(/\s+/g, '.'), dn: user.dn ?? user.cn,
      emails: [...(user.emails ?? [])], h323Email: user.h323Email ?? false, pbx: user.pbx ?? this.#options.pbxName ?? 'master',
      presence: new Map([['im:', { contact: 'im:', status: 'open', activity: '', note: '', at: 0 }]]),
    }
    this.#users.set(guid, added)
    return added
  }

  #user(e164: string): User {
    for (const user of this.#users.values()) if (user.e164 === e164) return user
    throw new Error(`no user with extension ${e164}`)
  }

  #call(callId: string): Call {
    const call = this.#calls.get(Number(callId))
    if (call === undefined) throw new Error(`no call ${callId}`)
    return call
  }
}
