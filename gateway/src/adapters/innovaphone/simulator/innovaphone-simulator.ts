import { randomBytes, randomInt } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { Server, Socket } from 'node:net'
import type { Logger } from 'pino'
import { WebSocket, WebSocketServer } from 'ws'
import { appLoginDigest } from '../login.js'
import { PhoneSystem, type Call, type Leg, type LegState, type Person, type PersonFields, type PersonPatch, type PhoneEvent } from '../../sim-kit/phone-system.js'
import { SimListener } from '../../sim-kit/listener.js'

/**
 * An innovaphone PBX's App Platform WebSocket as far as the public facts go (research Part B): the App-object
 * login with the SHA-256 digest (a wrong one gets ok:false and the connection closed), `src` echoed on every
 * result and indication, RCC (Initialize with UserInfo alert/channel counts, 50 users per 20 ms tick;
 * UserInitialize with PBX-centric CallInfo), PbxApi presence (SubscribePresence, SetPresence) and
 * PbxTableUsers replication with live add/update/delete. An API not enabled on the App object is silently
 * ignored, as the research expects of the PBX [I]. People and calls are the shared phone-system model
 * (sim-kit); this file is the wire side and the innovaphone extras (presence per contact, frozen PBX).
 * Over 500 lines because three APIs share one session's state (monitors, presence subscriptions,
 * replication cursor); split it by API if one of them grows.
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

/** The innovaphone fields of a person beside the model's extension (e164), name (cn), e-mail and DND. */
interface InnoPersonData {
  guid: string
  h323: string
  dn: string
  emails: string[]
  h323Email: boolean
  pbx: string
  /** contact → presence item; the newest first when sent. */
  presence: Map<string, { contact: string; status: string; activity: string; note: string; at: number }>
}

type InnoPerson = Person<InnoPersonData>

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

/** CallInfo.state: the low nibble per model state; 0x80 (towards the phone), 0x100 (held here), 0x200 (held by the peer) added. */
const STATE_NIBBLE: Record<LegState, number> = { dialing: 0x03, ringback: 0x04, ringing: 0x04, connected: 0x05 }

export class InnovaphoneSimulator extends PhoneSystem<InnoPersonData> {
  readonly #options: InnovaphoneSimulatorOptions
  readonly #listener: SimListener
  readonly #sessions = new Set<Session>()
  readonly #apis: ReadonlySet<SimApi>
  readonly #stats: SimulatorStats = { connections: 0, loginsAccepted: 0, loginsRefused: 0, keepAlives: 0, ignoredDisabledApi: 0, ignoredUnknown: 0, setPresence: 0, ignoredWhileFrozen: 0 }
  #nextHandle = 1
  #frozen = false

  constructor(options: InnovaphoneSimulatorOptions) {
    super()
    this.#options = options
    this.#apis = new Set(options.apis ?? ['RCC', 'PbxApi', 'PbxTableUsers'])
    this.#listener = new SimListener({ host: options.host, port: options.port, create: () => this.#createServer() })
    for (const user of options.users ?? []) this.addPerson(...this.#person(user), true)
  }

  // --- Lifecycle ------------------------------------------------------------------------------------------

  async start(): Promise<{ host: string; port: number; url: string }> {
    await this.#listener.start()
    return { host: this.host, port: this.port, url: this.url }
  }

  stop(): Promise<void> {
    return this.#listener.stop(() => {
      for (const session of this.#sessions) this.#end(session)
    })
  }

  get host(): string {
    return this.#listener.host
  }

  get port(): number {
    return this.#listener.port
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
    const guid = e164 === undefined ? undefined : this.findPerson(e164)?.data.guid
    let count = 0
    for (const session of this.#sessions) {
      for (const monitor of session.monitors.values()) if (e164 === undefined || monitor.guid === guid) count++
    }
    return count
  }

  presenceSubscriptionCount(): number {
    let count = 0
    for (const session of this.#sessions) count += session.presence.size
    return count
  }

  /** The tel: presence item of a person (activity and note), as colleagues would see it. */
  getPresence(e164: string): { activity: string; note: string } | undefined {
    const item = this.person(e164).data.presence.get('tel:')
    return item === undefined ? undefined : { activity: item.activity, note: item.note }
  }

  calls(): Array<{ callId: string; legs: Array<{ e164: string; state: number }> }> {
    return this.liveCalls().map((call) => ({
      callId: call.id, legs: call.legs.filter((leg) => leg.internal).map((leg) => ({ e164: leg.party, state: wireState(call, leg) })),
    }))
  }

  override legLabel(call: Call, leg: Leg): string {
    return `0x${wireState(call, leg).toString(16)}`
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

  // --- Scripting beyond the shared model ------------------------------------------------------------------

  /** A new person: a table row (ReplicateAdd) and an RCC UserInfo. */
  addUser(user: SimUser): void {
    this.addPerson(...this.#person(user))
  }

  /** Changes a person's name, e-mails, number or node. */
  updateUser(e164: string, patch: Partial<Omit<SimUser, 'guid'>>): void {
    const data: Partial<InnoPersonData> = {}
    if (patch.h323 !== undefined) data.h323 = patch.h323
    if (patch.dn !== undefined) data.dn = patch.dn
    if (patch.emails !== undefined) data.emails = [...patch.emails]
    if (patch.h323Email !== undefined) data.h323Email = patch.h323Email
    if (patch.pbx !== undefined) data.pbx = patch.pbx
    this.updatePerson(e164, {
      ...(patch.e164 === undefined ? {} : { extension: patch.e164 }),
      ...(patch.cn === undefined ? {} : { name: patch.cn }),
      ...(patch.emails === undefined ? {} : { email: patch.emails[0] }),
      data,
    })
  }

  /** The model's e-mail is the first of the person's e-mails here: setting it alone replaces the list. */
  override updatePerson(e164: string, patch: PersonPatch<InnoPersonData>): void {
    const emails = patch.data?.emails ?? ('email' in patch ? (patch.email === undefined ? [] : [patch.email]) : undefined)
    super.updatePerson(e164, { ...patch, data: { ...patch.data, ...(emails === undefined ? {} : { emails }) } })
  }

  removeUser(e164: string): void {
    this.removePerson(e164)
  }

  /** Any other presence activity the person chooses ("away", "busy", ...). */
  setActivity(e164: string, activity: string, contact = 'tel:'): void {
    this.#setPresence(this.person(e164), contact, activity, '')
  }

  protected defaultData(fields: PersonFields): InnoPersonData {
    return this.#person({ cn: fields.name, e164: fields.extension, ...(fields.email === undefined ? {} : { emails: [fields.email] }) })[1]
  }

  // --- The model's events on the wire ---------------------------------------------------------------------

  protected announce(event: PhoneEvent<InnoPersonData>): void {
    switch (event.kind) {
      case 'placed': {
        const { call } = event
        const [caller, callee] = call.legs
        // The caller's phone sends a setup (no 0x80) and hears ringback; a call from the PBX to the
        // callee's phone is outbound from the PBX's view, so ringing there is 0x84 [C].
        if (caller?.internal === true) {
          this.#callInfo(call, caller, 0x01, 'r-setup')
          this.#callInfo(call, caller, 0x03, 'x-call-proc')
        }
        if (callee?.internal === true) {
          this.#callInfo(call, callee, 0x81, 'x-setup')
          this.#callInfo(call, callee, 0x84, 'r-alert')
        }
        if (caller?.internal === true) this.#callInfo(call, caller, 0x04, 'x-alert')
        return this.#userInfoUpdate(call)
      }
      case 'answered':
        for (const leg of event.changed) this.#callInfo(event.call, leg, wireState(event.call, leg), leg.direction === 'in' ? 'r-conn' : 'x-conn')
        return this.#userInfoUpdate(event.call)
      case 'held':
      case 'retrieved': {
        const suffix = event.kind === 'held' ? 'hold' : 'retrieve'
        for (const leg of event.call.legs) this.#callInfo(event.call, leg, wireState(event.call, leg), `${leg === event.leg ? 'r' : 'x'}-${suffix}`)
        return
      }
      case 'leg':
        return this.#callInfo(event.call, event.leg, wireState(event.call, event.leg), msgOf(event.call, event.leg))
      case 'cleared': {
        // Every leg gets disc and rel, then the final del [C].
        const { call, releasing } = event
        for (const leg of call.legs) {
          const direction = leg.direction === 'in' ? 0x80 : 0
          const first = leg === releasing
          this.#callInfo(call, leg, direction | (first ? 0x07 : 0x06), first ? 'r-disc' : 'x-disc')
          this.#callInfo(call, leg, direction | 0x07, first ? 'x-rel' : 'r-rel')
        }
        for (const leg of call.legs) this.#callInfo(call, leg, (leg.direction === 'in' ? 0x80 : 0) | 0x07, 'del')
        return this.#userInfoUpdate(call)
      }
      case 'dnd': {
        const { person } = event
        if ((person.data.presence.get('tel:')?.activity === 'dnd') === person.dnd) return
        return this.#setPresence(person, 'tel:', person.dnd ? 'dnd' : '', person.dnd ? 'do not disturb' : '')
      }
      case 'person-added':
      case 'person-changed':
        for (const session of this.#sessions) {
          this.#replicate(session, event.kind === 'person-added' ? 'ReplicateAdd' : 'ReplicateUpdate', event.person)
          this.#sendUserInfo(session, event.person)
        }
        return
      case 'person-removed': {
        const { guid } = event.person.data
        for (const session of this.#sessions) {
          this.#replicate(session, 'ReplicateDel', event.person)
          if (session.rcc) this.#send(session, { api: 'RCC', mt: 'UserInfo', src: session.rccSrc, guid, cn: event.person.name, update: 'del' })
          for (const [handle, monitor] of session.monitors) if (monitor.guid === guid) session.monitors.delete(handle)
          for (const [src, monitored] of session.presence) if (monitored === guid) session.presence.delete(src)
        }
        return
      }
    }
  }

  #createServer(): Server {
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
    server.on('close', () => wss.close())
    return server
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
    const queue = this.people()
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

  #userInfoMessage(session: Session, user: InnoPerson): Json {
    const legs = this.legsOf(user.extension)
    const alert = legs.filter(({ leg }) => leg.state === 'ringing').length
    const { guid, dn, h323, pbx } = user.data
    return {
      api: 'RCC', mt: 'UserInfo', src: session.rccSrc, guid, cn: user.name, dn, h323, e164: user.extension,
      node: 'root', pbx, alert, channel: legs.length, regs: [{ hw: `IP222-${user.extension}`, soap: false }],
    }
  }

  #sendUserInfo(session: Session, user: InnoPerson): void {
    if (session.rcc) this.#send(session, this.#userInfoMessage(session, user))
  }

  #userInfoUpdate(call: Call): void {
    for (const leg of call.legs) {
      const user = leg.internal ? this.findPerson(leg.party) : undefined
      if (user === undefined) continue
      for (const session of this.#sessions) this.#sendUserInfo(session, user)
    }
  }

  #userInitialize(session: Session, message: Json, src: string | undefined): void {
    const user = this.people().find((candidate) => candidate.name === message.cn)
    if (user === undefined) {
      // What the PBX answers for an unknown cn is [U]: a result without a user handle, with an error.
      this.#send(session, { api: 'RCC', mt: 'UserInitializeResult', src, error: 'unknown user', errorText: `no user with cn ${String(message.cn)}` })
      return
    }
    const handle = this.#nextHandle++
    session.monitors.set(handle, { guid: user.data.guid, src })
    this.#send(session, { api: 'RCC', mt: 'UserInitializeResult', src, user: handle })
    // The calls the person is in right now [I: the PBX reports existing calls after UserInitialize].
    for (const { call, leg } of this.legsOf(user.extension)) this.#send(session, this.#callInfoMessage(call, leg, handle, src, wireState(call, leg), msgOf(call, leg)))
  }

  #callInfoMessage(call: Call, leg: Leg, handle: number, src: string | undefined, state: number, msg: string): Json {
    const other = call.legs.find((candidate) => candidate !== leg)
    const peerUser = other?.internal === true ? this.findPerson(other.party) : undefined
    const peer = peerUser === undefined ? { e164: other?.party ?? '', h323: '' } : { e164: peerUser.extension, h323: peerUser.data.h323 }
    const message: Json = { api: 'RCC', mt: 'CallInfo', src, user: handle, call: Number(call.id), state, peer, msg }
    if (msg === 'del' || msg.endsWith('-rel')) message.info = [{ type: 'cause', vali: 16, vals: 'Normal call clearing' }]
    return message
  }

  /** A CallInfo with this state and msg to every monitor of the leg's person. */
  #callInfo(call: Call, leg: Leg, state: number, msg: string): void {
    const guid = leg.internal ? this.findPerson(leg.party)?.data.guid : undefined
    if (guid === undefined) return
    for (const session of this.#sessions) {
      for (const [handle, monitor] of session.monitors) {
        if (monitor.guid === guid) this.#send(session, this.#callInfoMessage(call, leg, handle, monitor.src, state, msg))
      }
    }
  }

  // --- PbxApi ---------------------------------------------------------------------------------------------

  #subscribePresence(session: Session, message: Json, src: string | undefined): void {
    const user = this.people().find((candidate) => (typeof message.sip === 'string' && message.sip !== '' && candidate.data.h323 === message.sip)
      || (typeof message.num === 'string' && message.num !== '' && candidate.extension === message.num))
    if (user === undefined) {
      this.#send(session, { api: 'PbxApi', mt: 'SubscribePresenceResult', src, error: 1, errorText: 'unknown user' })
      return
    }
    session.presence.set(src, user.data.guid)
    this.#send(session, { api: 'PbxApi', mt: 'SubscribePresenceResult', src })
    this.#send(session, { api: 'PbxApi', mt: 'PresenceState', src, up: true, sip: user.data.h323, num: user.extension, dn: user.data.dn, email: user.data.emails[0] ?? '' })
    this.#send(session, this.#presenceUpdate(user, src))
  }

  #presenceUpdate(user: InnoPerson, src: string | undefined): Json {
    const presence = [...user.data.presence.values()].sort((a, b) => b.at - a.at).map(({ contact, status, activity, note }) => ({ contact, status, activity, note }))
    return { api: 'PbxApi', mt: 'PresenceUpdate', src, presence }
  }

  #setPresenceRequest(session: Session, message: Json, src: string | undefined): void {
    this.#stats.setPresence++
    const user = this.people().find((candidate) => (typeof message.sip === 'string' && message.sip !== '' && candidate.data.h323 === message.sip)
      || (typeof message.guid === 'string' && candidate.data.guid === message.guid))
    if (user === undefined) {
      this.#send(session, { api: 'PbxApi', mt: 'SetPresenceResult', src, error: 1, errorText: 'no such user' })
      return
    }
    const contact = typeof message.contact === 'string' ? message.contact : 'tel:'
    this.#send(session, { api: 'PbxApi', mt: 'SetPresenceResult', src })
    this.#setPresence(user, contact, typeof message.activity === 'string' ? message.activity : '', typeof message.note === 'string' ? message.note : '')
  }

  /** Presence is the source of DND here: the tel: contact's activity "dnd" is the phone's DND [C]. */
  #setPresence(user: InnoPerson, contact: string, activity: string, note: string): void {
    user.data.presence.set(contact, { contact, status: 'open', activity, note, at: performance.now() })
    for (const session of this.#sessions) {
      for (const [src, guid] of session.presence) if (guid === user.data.guid) this.#send(session, this.#presenceUpdate(user, src))
    }
    if (contact === 'tel:') this.setDnd(user.extension, activity === 'dnd')
  }

  // --- PbxTableUsers --------------------------------------------------------------------------------------

  #replicateStart(session: Session, message: Json, src: string | undefined): void {
    const requested = typeof message.columns === 'object' && message.columns !== null ? Object.keys(message.columns) : []
    const columns = requested.length > 0 ? requested : ['guid', 'h323', 'cn', 'dn', 'e164', 'h323-email', 'emails']
    session.replication = { src, queue: this.people().map((user) => user.data.guid), columns, live: false }
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
      const user = this.#byGuid(guid)
      if (user === undefined) continue
      this.#send(session, { api: 'PbxTableUsers', mt: 'ReplicateNextResult', src, columns: this.#row(user, replication.columns) })
      return
    }
  }

  #row(user: InnoPerson, columns: string[]): Json {
    const { guid, h323, dn, h323Email, emails } = user.data
    const all: Json = { guid, h323, cn: user.name, dn, e164: user.extension, 'h323-email': h323Email, emails: emails.map((email) => ({ email })) }
    return Object.fromEntries(columns.filter((column) => column in all).map((column) => [column, all[column]]))
  }

  #replicate(session: Session, mt: 'ReplicateAdd' | 'ReplicateUpdate' | 'ReplicateDel', user: InnoPerson): void {
    const replication = session.replication
    if (replication === undefined) return
    if (!replication.live) {
      // Still reading the table: a new row joins the queue, the others show when read.
      if (mt === 'ReplicateAdd') replication.queue.push(user.data.guid)
      return
    }
    const columns = mt === 'ReplicateDel' ? { guid: user.data.guid } : this.#row(user, replication.columns)
    this.#send(session, { api: 'PbxTableUsers', mt, src: replication.src, columns })
  }

  // --- Helpers --------------------------------------------------------------------------------------------

  #person(user: SimUser): [PersonFields, InnoPersonData] {
    const data: InnoPersonData = {
      guid: user.guid ?? randomBytes(16).toString('hex'), h323: user.h323 ?? user.cn.toLowerCase().replace(/\s+/g, '.'), dn: user.dn ?? user.cn,
      emails: [...(user.emails ?? [])], h323Email: user.h323Email ?? false, pbx: user.pbx ?? this.#options.pbxName ?? 'master',
      presence: new Map([['im:', { contact: 'im:', status: 'open', activity: '', note: '', at: 0 }]]),
    }
    return [{ extension: user.e164, name: user.cn, email: data.emails[0] }, data]
  }

  #byGuid(guid: string): InnoPerson | undefined {
    return this.people().find((user) => user.data.guid === guid)
  }
}

function wireState(call: Call, leg: Leg): number {
  if (leg.wire !== undefined) return leg.wire
  return (leg.direction === 'in' ? 0x80 : 0) | STATE_NIBBLE[leg.state] | (leg.held ? 0x100 : 0) | (call.legs.some((other) => other !== leg && other.held) ? 0x200 : 0)
}

/** The last message a leg in this state has had, for calls reported after UserInitialize. */
function msgOf(call: Call, leg: Leg): string {
  if (leg.held) return 'r-hold'
  if (call.legs.some((other) => other !== leg && other.held)) return 'x-hold'
  switch (leg.state) {
    case 'connected': return leg.direction === 'in' ? 'r-conn' : 'x-conn'
    case 'ringing': return 'r-alert'
    case 'ringback': return 'x-alert'
    case 'dialing': return 'x-call-proc'
  }
}
