import type { DirectoryEntry } from '../../../protocol/schemas.js'
import type { AdapterDeps, CallLegState } from '../types.js'
import { AdapterError } from '../types.js'
import { readCaFile } from '../kit/connect-failure.js'
import { LinkTimers } from '../kit/link-timers.js'
import { PbxLinkAdapter, type KitLink } from '../kit/pbx-link-adapter.js'
import { normaliseFingerprint } from '../kit/tls-pinning.js'
import { innovaphoneUrl, type InnovaphoneConfig } from './config.js'
import { InnovaphoneDriver } from './driver.js'
import { InnoLinkError } from './link-error.js'
import {
  CallInfoSchema,
  KNOWN_INDICATIONS,
  PresenceUpdateSchema,
  readAs,
  ReplicateRowMessageSchema,
  UserInfoSchema,
  UserInitializeResultSchema,
  UserRowSchema,
  type CallInfo,
  type InnoMessage,
  type UserInfo,
  type UserRow,
} from './messages.js'
import { callInfoOutcome, displayName, dndFromPresence, primaryEmail, USER_CONTACT } from './normalise.js'

/** A PresenceUpdate with our value within this long of our SetPresence is ours (update/result order is [U]). */
const DND_ATTRIBUTION_WINDOW_MS = 2000
/** Whether SubscribePresence always yields a PresenceUpdate for someone without presence is [U]: wait this long. */
const PRESENCE_GRACE_MS = 1000
const DIRECTORY_COALESCE_MS = 20
const RCC_SRC = 'rcc'
const TABLE_SRC = 'users'
/** The tick names on the App object that enable each API [C names]. */
const API_TICK: Record<string, string> = { RCC: 'RCC', PbxTableUsers: 'TableUsers', PbxApi: 'PbxApi' }
const TABLE_COLUMNS = { guid: {}, h323: {}, cn: {}, dn: {}, e164: {}, 'h323-email': {}, emails: {} }

type LiveCallState = Exclude<CallLegState, 'cleared'>

/** One person the App object can see through RCC, and their monitoring on the current link. */
interface Person {
  guid: string
  cn: string
  e164: string
  h323: string | undefined
  pbx: string | undefined
  /** src of the current UserInitialize/SubscribePresence; messages with another src are stale. */
  src: string | undefined
  handle: number | string | undefined
  phase: 'idle' | 'syncing' | 'live'
  calls: Map<string, LiveCallState>
  dnd: boolean
}

/** State that lives exactly as long as one WebSocket. */
interface Link extends KitLink<InnovaphoneDriver> {
  /** guid → person, everyone RCC shows us. */
  people: Map<string, Person>
  bySrc: Map<string, Person>
  /** Monitored people by endpoint id (e164). */
  byEndpoint: Map<string, Person>
  /** guid → PbxTableUsers row. */
  rows: Map<string, UserRow>
  /** True once the initial RCC list, the table and the first monitoring pass have started. */
  live: boolean
  nextSrc: number
  unknownMts: Set<string>
}

/** A failure of the first synchronisation that makes the link useless (an API not enabled, ...). */
class SyncFailure extends Error {}

/**
 * innovaphone over the App Platform WebSocket: one App-object connection per connector; people from RCC
 * (who the App object may see) joined with PbxTableUsers (e-mails); calls from RCC UserInitialize; DND as
 * PbxApi presence with activity "dnd". A little over 500 lines in one file on purpose: the synchronisation and
 * the live updates (UserInfo, CallInfo, PresenceUpdate, table rows) are one state machine over the Link's maps;
 * what every PBX shares is the kit's.
 */
export class InnovaphoneAdapter extends PbxLinkAdapter<InnovaphoneConfig, Link> {
  readonly type = 'innovaphone'
  readonly #pbxNames: ReadonlySet<string> | undefined

  constructor(config: InnovaphoneConfig, deps: AdapterDeps) {
    const url = innovaphoneUrl(config)
    super(config, deps, {
      codePrefix: 'INNOVAPHONE', otherCode: 'REFUSED', linkName: 'the link', address: url, host: config.host,
      requestTimeoutMs: config.requestTimeoutMs, refusedHint: 'check the host and port (443 for wss, 80 for ws) and that the PBX web server is on',
      // 1 s doubling to 32 s, as the official JS client [C], with jitter (DESIGN §5).
      backoffBaseMs: 1000, backoffMaxMs: 32000,
    })
    this.#pbxNames = config.pbxNames === undefined ? undefined : new Set(config.pbxNames)
  }

  async setDnd(endpointId: string, dnd: boolean): Promise<{ dnd: boolean }> {
    const link = this.openLink(endpointId)
    const person = link.byEndpoint.get(endpointId)
    if (person === undefined) {
      throw new AdapterError('INNOVAPHONE_UNKNOWN_DEVICE', `${endpointId} is not a monitored person of connector ${this.connectorId}`, { endpointId })
    }
    const command = this.dndCommands.add(endpointId, dnd)
    try {
      // Addressed by SIP name when there is one, else by guid [C: SetPresence takes sip or guid].
      await link.driver.request({
        api: 'PbxApi',
        mt: 'SetPresence',
        ...(person.h323 !== undefined && person.h323 !== '' ? { sip: person.h323 } : { guid: person.guid }),
        contact: USER_CONTACT,
        activity: dnd ? 'dnd' : '',
        note: dnd ? this.config.dndNote : '',
      })
    } catch (error) {
      this.dndCommands.forget(endpointId, command)
      throw this.adapterError(error, endpointId, (failure, detail) => {
        if (!(failure instanceof InnoLinkError)) return undefined
        if (failure.code === 'REQUEST_FAILED') return new AdapterError('INNOVAPHONE_REFUSED', `the PBX refused SetPresence: ${failure.detail.errorText ?? JSON.stringify(failure.detail.error)}`, detail)
        if (failure.code === 'REQUEST_TIMEOUT') return new AdapterError('INNOVAPHONE_TIMEOUT', `the PBX did not answer SetPresence within ${this.config.requestTimeoutMs} ms: is the PbxApi API enabled for the App object?`, detail)
        return undefined
      })
    }
    // Whether the PBX sends a PresenceUpdate for an unchanged value is [U]: keep the window open either way.
    command.until = this.deps.clock.now() + DND_ATTRIBUTION_WINDOW_MS
    if (this.link === link) {
      person.dnd = dnd
      this.emit({ kind: 'dnd', endpointId, dnd, at: this.deps.clock.now(), byCommand: true })
    }
    return { dnd }
  }

  // --- Connection lifecycle -------------------------------------------------------------------------------

  protected async createLink(): Promise<Link> {
    const config = this.config
    const pin = config.certificateSha256 === undefined ? undefined : normaliseFingerprint(config.certificateSha256)
    // A pin replaces CA verification (self-signed PBX certificates).
    const ca = config.caFile === undefined || pin !== undefined ? undefined : await readCaFile('caFile', config.caFile)
    const driver = new InnovaphoneDriver({
      url: this.spec.address,
      appName: config.appName,
      appPassword: config.appPassword,
      ...(ca === undefined ? {} : { ca }),
      ...(pin === undefined ? {} : { pinSha256: pin }),
      requestTimeoutMs: config.requestTimeoutMs,
      keepAliveIntervalMs: config.keepAliveIntervalS * 1000,
      answerTimeoutMs: config.answerTimeoutMs,
    }, { ...this.deps, logger: this.deps.logger.child({ component: 'appws-driver' }) })
    const link: Link = {
      driver, people: new Map(), bySrc: new Map(), byEndpoint: new Map(), rows: new Map(), live: false, nextSrc: 1,
      timers: new LinkTimers(this.deps.clock), unsubscribe: [], unknownMts: new Set(),
    }
    link.unsubscribe.push(driver.onMessage((message) => this.#onMessage(link, message)))
    return link
  }

  protected linkOpened(link: Link): void {
    void this.#synchronise(link)
  }

  protected override forgetLink(link: Link): void {
    link.bySrc.clear()
  }

  protected override failureIsError(error: unknown): boolean {
    return error instanceof InnoLinkError && (error.code === 'LOGIN_REFUSED' || error.code === 'TLS_UNTRUSTED' || error.code === 'CERTIFICATE_MISMATCH')
  }

  protected override describeFailure(error: unknown): string | undefined {
    if (!(error instanceof InnoLinkError)) return undefined
    const url = this.spec.address
    switch (error.code) {
      case 'LOGIN_REFUSED':
        return `the PBX refused the login of App object "${this.config.appName}"${error.detail.errorText === undefined ? '' : ` (${error.detail.errorText})`}: check the App object's Name and Password in the PBX and appName/appPassword here`
      case 'LOGIN_TIMEOUT':
        return `${url} accepted the WebSocket but did not answer the login (${error.message}): is this the PBX App Platform WebSocket (${this.config.path})?`
      case 'CLOSED_DURING_LOGIN':
        return `${error.message}: check appName and appPassword, and that the App object exists`
      case 'UPGRADE_REJECTED':
        return error.detail.status === 404
          ? `${url} answered HTTP 404: wrong path? The App Platform WebSocket is /PBX0/APPS/websocket (a dynamic PBX: /PBX-<id>/APPS/websocket)`
          : `${error.message}: is this the PBX (and not a proxy or another web server)?`
      case 'TLS_UNTRUSTED':
        return `${error.message}: set caFile to the CA that signed the PBX certificate, or certificateSha256 to pin the PBX's own certificate`
      case 'CERTIFICATE_MISMATCH':
        return `${error.message}: if the PBX certificate was renewed, update certificateSha256; otherwise something else answers at ${url}`
      default:
        return undefined
    }
  }

  /** Plain words for a request that failed during synchronisation; timeouts usually mean an API is not enabled. */
  #describeSyncFailure(error: unknown, api: string): string {
    if (error instanceof InnoLinkError && error.code === 'REQUEST_TIMEOUT') {
      return `the PBX did not answer ${error.detail.request ?? api} within ${this.config.requestTimeoutMs / 1000} s: is the ${api} API enabled for App object "${this.config.appName}" (tick "${API_TICK[api] ?? api}" under "Grant access to APIs")?`
    }
    return `${api}: ${error instanceof Error ? error.message : String(error)}`
  }

  // --- Synchronisation ------------------------------------------------------------------------------------

  async #synchronise(link: Link): Promise<void> {
    try {
      await this.#syncStep(link, 'RCC', () => link.driver.request({ api: 'RCC', mt: 'Initialize' }, { src: RCC_SRC }))
      await this.#syncStep(link, 'PbxTableUsers', () => this.#replicateUsers(link))
    } catch (error) {
      if (error instanceof SyncFailure) this.failLink(link, error.message)
      return
    }
    if (this.link !== link) return
    link.live = true
    this.#emitDirectory(link)
    const wanted = [...link.people.values()].filter((person) => this.#wanted(person))
    const elsewhere = [...link.people.values()].filter((person) => person.e164 !== '' && !this.#wanted(person))
    if (elsewhere.length > 0) {
      this.deps.logger.info(
        { count: elsewhere.length, pbxNames: this.config.pbxNames, examples: elsewhere.slice(0, 5).map((person) => `${person.e164}@${person.pbx ?? '?'}`) },
        'people registered on other PBX nodes are not monitored by this connector; add a connector for their node',
      )
    }
    // A pool of maxInFlight monitor starts: paced by the PBX's answers instead of a fixed rate.
    let next = 0
    const worker = async (): Promise<void> => {
      while (this.link === link) {
        const person = wanted[next++]
        if (person === undefined) return
        await this.#monitor(link, person)
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.config.maxInFlight, wanted.length) }, worker))
    if (this.link === link) {
      this.lifecycle.markHealthy(link)
      this.deps.logger.info({ people: link.byEndpoint.size }, 'PBX state synchronised')
    }
  }

  async #syncStep<T>(link: Link, api: string, step: () => Promise<T>): Promise<T> {
    try {
      return await step()
    } catch (error) {
      if (this.link !== link) throw new SyncFailure('link replaced')
      throw new SyncFailure(this.#describeSyncFailure(error, api))
    }
  }

  /** PbxTableUsers: ReplicateStart, then ReplicateNext until a result without a row [I]. Live changes follow. */
  async #replicateUsers(link: Link): Promise<void> {
    await link.driver.request({ api: 'PbxTableUsers', mt: 'ReplicateStart', add: false, del: false, columns: TABLE_COLUMNS }, { src: TABLE_SRC })
    for (;;) {
      if (this.link !== link) return
      const result = await link.driver.request({ api: 'PbxTableUsers', mt: 'ReplicateNext' }, { src: TABLE_SRC })
      const columns = readAs(ReplicateRowMessageSchema, result)
      if (!columns.ok || columns.value.columns === undefined) return
      this.#applyRow(link, 'ReplicateNextResult', columns.value.columns)
    }
  }

  #wanted(person: Person): boolean {
    if (person.e164 === '') return false
    return this.#pbxNames === undefined || (person.pbx !== undefined && this.#pbxNames.has(person.pbx))
  }

  /** UserInitialize (calls) and SubscribePresence (DND) for one person; the snapshot follows their first presence. */
  async #monitor(link: Link, person: Person): Promise<void> {
    if (link.byEndpoint.has(person.e164) && link.byEndpoint.get(person.e164) !== person) {
      this.deps.logger.warn({ e164: person.e164, cn: person.cn }, 'two people share this number; only the first is monitored')
      return
    }
    const src = `m${link.nextSrc++}`
    if (person.src !== undefined) link.bySrc.delete(person.src)
    person.src = src
    person.phase = 'syncing'
    person.calls.clear()
    person.dnd = false
    link.bySrc.set(src, person)
    link.byEndpoint.set(person.e164, person)
    const calls = link.driver.request({ api: 'RCC', mt: 'UserInitialize', cn: person.cn, xfer: true, disc: false }, { src })
    const presence = link.driver.request({
      api: 'PbxApi', mt: 'SubscribePresence', ...(person.h323 === undefined ? {} : { sip: person.h323 }), num: person.e164,
    }, { src })
    const [callsResult, presenceResult] = await Promise.allSettled([calls, presence])
    if (this.link !== link || person.src !== src) return
    for (const [api, result] of [['RCC', callsResult], ['PbxApi', presenceResult]] as const) {
      if (result.status === 'fulfilled') continue
      const error: unknown = result.reason
      if (error instanceof InnoLinkError && error.code === 'REQUEST_TIMEOUT') {
        this.failLink(link, this.#describeSyncFailure(error, api))
        return
      }
      this.deps.counters.inc('innovaphone.monitors.failed')
      this.deps.logger.warn(
        { endpointId: person.e164, cn: person.cn, api, err: error instanceof Error ? error.message : String(error) },
        api === 'RCC' ? 'cannot monitor the calls of this person; DND still applies' : 'cannot subscribe to the presence of this person; DND is not seen',
      )
    }
    if (callsResult.status === 'fulfilled') {
      const handle = readAs(UserInitializeResultSchema, callsResult.value)
      if (handle.ok) person.handle = handle.value.user
    }
    if (person.phase !== 'syncing') return
    if (presenceResult.status === 'rejected') {
      this.#goLive(person)
      return
    }
    // The PresenceUpdate usually follows in the same breath, but a TCP chunk boundary can put it after this
    // continuation: wait for it without holding up the next person's monitor start.
    void link.timers.delay(PRESENCE_GRACE_MS).then(() => {
      if (this.link === link && person.src === src && person.phase === 'syncing') {
        this.deps.logger.debug({ endpointId: person.e164 }, 'no PresenceUpdate after SubscribePresence; DND taken as off')
        this.#goLive(person)
      }
    })
  }

  #goLive(person: Person): void {
    person.phase = 'live'
    this.emit({
      kind: 'snapshot',
      endpointId: person.e164,
      calls: [...person.calls].map(([callId, state]) => ({ callId, state })),
      dnd: person.dnd,
      at: this.deps.clock.now(),
    })
  }

  /** Ends one person's monitoring on this link (deleted, renumbered, or moved to another node). */
  #unmonitor(link: Link, person: Person): void {
    if (person.src !== undefined) {
      link.bySrc.delete(person.src)
      if (person.handle !== undefined) link.driver.send({ api: 'RCC', mt: 'UserEnd', user: person.handle })
      link.driver.send({ api: 'PbxApi', mt: 'UnsubscribePresence', src: person.src })
    }
    if (link.byEndpoint.get(person.e164) === person) link.byEndpoint.delete(person.e164)
    person.src = undefined
    person.handle = undefined
    person.phase = 'idle'
    person.calls.clear()
  }

  // --- Messages -------------------------------------------------------------------------------------------

  #onMessage(link: Link, message: InnoMessage): void {
    if (this.link !== link) return
    switch (message.mt) {
      case 'UserInfo': {
        const info = readAs(UserInfoSchema, message)
        if (!info.ok) return this.#malformed(message, info.reason)
        this.#onUserInfo(link, info.value)
        return
      }
      case 'CallInfo': {
        const info = readAs(CallInfoSchema, message)
        if (!info.ok) return this.#malformed(message, info.reason)
        const person = this.#monitoredBy(link, message, { call: info.value.call })
        if (person !== undefined) this.#onCallInfo(person, info.value)
        return
      }
      case 'PresenceUpdate': {
        const update = readAs(PresenceUpdateSchema, message)
        if (!update.ok) return this.#malformed(message, update.reason)
        const person = this.#monitoredBy(link, message, {})
        if (person !== undefined) this.#onPresence(person, dndFromPresence(update.value.presence))
        return
      }
      case 'ReplicateAdd':
      case 'ReplicateUpdate':
      case 'ReplicateDel': {
        const row = readAs(ReplicateRowMessageSchema, message)
        if (!row.ok || row.value.columns === undefined) return this.#malformed(message, row.ok ? 'no columns' : row.reason)
        this.#applyRow(link, message.mt, row.value.columns)
        return
      }
      default:
        if (KNOWN_INDICATIONS.has(message.mt)) return
        if (message.mt.endsWith('Result')) {
          this.deps.counters.inc('innovaphone.responses.unmatched')
          this.deps.logger.debug({ mt: message.mt, src: message.src }, 'result without a pending request (late or duplicate)')
          return
        }
        this.deps.counters.inc('innovaphone.messages.unknown')
        // One warning per message type and link: a chatty new PBX version must not flood the log.
        if (!link.unknownMts.has(message.mt)) {
          link.unknownMts.add(message.mt)
          this.deps.logger.warn({ mt: message.mt, api: message.api }, 'unknown message type from the PBX ignored (newer PBX firmware?); further ones of this type are counted only')
        }
    }
  }

  /** The person whose monitor (by src) an event belongs to; undefined (counted, logged) for nobody we monitor. */
  #monitoredBy(link: Link, message: InnoMessage, fields: Record<string, unknown>): Person | undefined {
    const person = message.src === undefined ? undefined : link.bySrc.get(message.src)
    if (person === undefined) {
      this.deps.counters.inc('innovaphone.events.unmatched')
      this.deps.logger.debug({ mt: message.mt, src: message.src, ...fields }, 'event for nobody we monitor ignored')
    }
    return person
  }

  #malformed(message: InnoMessage, reason: string): void {
    this.deps.counters.inc('innovaphone.messages.malformed')
    this.deps.logger.warn({ mt: message.mt, api: message.api, reason }, 'PBX message with missing or wrong fields dropped')
  }

  #onUserInfo(link: Link, info: UserInfo): void {
    const guid = info.guid
    if (guid === undefined || guid === '') {
      this.deps.logger.debug({ cn: info.cn }, 'UserInfo without guid ignored')
      return
    }
    const known = link.people.get(guid)
    if (info.update === 'del') {
      if (known === undefined) return
      this.#unmonitor(link, known)
      link.people.delete(guid)
      if (link.live) this.#scheduleDirectory(link)
      return
    }
    if (known === undefined) {
      const person: Person = {
        guid, cn: info.cn ?? '', e164: info.e164 ?? '', h323: info.h323, pbx: info.pbx,
        src: undefined, handle: undefined, phase: 'idle', calls: new Map(), dnd: false,
      }
      link.people.set(guid, person)
      if (link.live) {
        this.#scheduleDirectory(link)
        if (this.#wanted(person)) void this.#monitor(link, person)
      }
      return
    }
    const identityChanged = (info.cn !== undefined && info.cn !== known.cn) || (info.e164 !== undefined && info.e164 !== known.e164)
      || (info.h323 !== undefined && info.h323 !== known.h323) || (info.pbx !== undefined && info.pbx !== known.pbx)
    if (identityChanged) {
      const wasWanted = known.src !== undefined
      this.#unmonitor(link, known)
      known.cn = info.cn ?? known.cn
      known.e164 = info.e164 ?? known.e164
      known.h323 = info.h323 ?? known.h323
      known.pbx = info.pbx ?? known.pbx
      if (link.live) {
        this.#scheduleDirectory(link)
        if (this.#wanted(known)) void this.#monitor(link, known)
        else if (wasWanted) this.deps.logger.info({ cn: known.cn, pbx: known.pbx }, 'person moved to a PBX node this connector does not monitor')
      }
      return
    }
    // Safety net: RCC says the person has no calls at all, so any call we still hold lost its `del` [I].
    if (known.phase === 'live' && info.channel === 0 && (info.alert ?? 0) === 0 && known.calls.size > 0) {
      for (const callId of [...known.calls.keys()]) {
        known.calls.delete(callId)
        this.emit({ kind: 'call', endpointId: known.e164, callId, state: 'cleared', at: this.deps.clock.now(), cause: 'UserInfo shows no calls' })
      }
    }
  }

  #onCallInfo(person: Person, info: CallInfo): void {
    const callId = String(info.call)
    const outcome = callInfoOutcome(info.state, info.msg)
    if (outcome.action === 'ignore') {
      this.deps.logger.debug({ endpointId: person.e164, callId, msg: info.msg, reason: outcome.reason }, 'CallInfo without effect')
      return
    }
    const live = person.phase === 'live'
    if (outcome.state === 'cleared') {
      if (!person.calls.delete(callId) || !live) return
      const cause = info.info?.find((entry) => entry.type === 'cause')?.vals
      this.emit({ kind: 'call', endpointId: person.e164, callId, state: 'cleared', at: this.deps.clock.now(), ...(cause === undefined ? {} : { cause }) })
      return
    }
    if (person.calls.get(callId) === outcome.state) return
    person.calls.set(callId, outcome.state)
    if (live) this.emit({ kind: 'call', endpointId: person.e164, callId, state: outcome.state, at: this.deps.clock.now() })
  }

  #onPresence(person: Person, dnd: boolean): void {
    if (person.phase === 'syncing') {
      person.dnd = dnd
      this.#goLive(person)
      return
    }
    if (person.phase !== 'live' || person.dnd === dnd) return
    person.dnd = dnd
    this.emit({ kind: 'dnd', endpointId: person.e164, dnd, at: this.deps.clock.now(), byCommand: this.dndCommands.take(person.e164, dnd) })
  }

  #applyRow(link: Link, mt: string, columns: unknown): void {
    if (mt === 'ReplicateDel') {
      const guid = typeof columns === 'object' && columns !== null ? (columns as { guid?: unknown }).guid : undefined
      if (typeof guid !== 'string') return this.#malformed({ mt }, 'ReplicateDel without columns.guid')
      if (link.rows.delete(guid) && link.live) this.#scheduleDirectory(link)
      return
    }
    const check = readAs(UserRowSchema, columns)
    if (!check.ok) return this.#malformed({ mt }, `user row: ${check.reason}`)
    const row = check.value
    if (mt === 'ReplicateUpdate') link.rows.set(row.guid, { ...link.rows.get(row.guid), ...row })
    else link.rows.set(row.guid, row)
    if (link.live) this.#scheduleDirectory(link)
  }

  // --- Directory ------------------------------------------------------------------------------------------

  #scheduleDirectory(link: Link): void {
    link.timers.once('directory', DIRECTORY_COALESCE_MS, () => this.#emitDirectory(link))
  }

  /** Everyone this connector monitors, with name and e-mail from the user table. */
  #emitDirectory(link: Link): void {
    const entries: DirectoryEntry[] = []
    const seen = new Set<string>()
    for (const person of link.people.values()) {
      if (!this.#wanted(person) || seen.has(person.e164) || person.e164.length > 64) continue
      seen.add(person.e164)
      const row = link.rows.get(person.guid)
      const email = row === undefined ? undefined : primaryEmail(row)
      const name = displayName(row ?? { cn: person.cn, ...(person.h323 === undefined ? {} : { h323: person.h323 }) })
      entries.push(email === undefined ? { endpointId: person.e164, name } : { endpointId: person.e164, name, email })
    }
    this.emitDirectory(entries)
  }
}
