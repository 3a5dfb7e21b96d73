import type { AdapterDeps, CallLegState } from '../types.js'
import { AdapterError } from '../types.js'
import { readCaFile } from '../kit/connect-failure.js'
import type { LinkClosed } from '../kit/link-session.js'
import { LinkTimers } from '../kit/link-timers.js'
import { PbxLinkAdapter, type KitLink } from '../kit/pbx-link-adapter.js'
import { RequestThrottle } from '../kit/request-throttle.js'
import { normaliseFingerprint } from '../kit/tls-pinning.js'
import type { AvayaIpoConfig } from './config.js'
import { AvayaIpoDriver } from './driver.js'
import { MtctiLinkError } from './link-error.js'
import { formatGuid } from './mtcti3/codec.js'
import type { LinesUser, Notify, NotifyCallControl, NotifyLines, NotifyUser, SubscribeTerminated } from './mtcti3/model.js'
import { applyNotifyUser, directoryEntry, legStateOf, lostCall, type UserData } from './normalise.js'

const BACKOFF_BASE_MS = 1000
/** After wrong credentials, wait long: repeated failed logins may lock the service user [I]. */
const AUTH_RETRY_MS = 60000
/** A subscription that dies sooner than this after it started counts as a failure and backs off. */
const SHORT_LIVED_SUBSCRIPTION_MS = 10000
const SUBSCRIPTION_RETRY_MAX_MS = 60000
const DIRECTORY_DEBOUNCE_MS = 200
const LINES_SUBSCRIPTION_ID = 1
const FIRST_USER_SUBSCRIPTION_ID = 1000

type LiveLegState = Exclude<CallLegState, 'cleared'>

/** One IP Office user as this link knows it. */
interface UserSub {
  guid: Uint8Array
  guidText: string
  extension: string
  linesName: string | undefined
  subId: number | undefined
  removed: boolean
  data: UserData | undefined
  calls: Map<string, LiveLegState>
  gotUser: boolean
  gotCalls: boolean
  snapshotDone: boolean
  subscribedAt: number
  failures: number
  /** This user's retry and renewal timers (a group of the link's). */
  timers: LinkTimers
}

/** State that lives exactly as long as one MTCTI-3 connection. */
interface Link extends KitLink<AvayaIpoDriver> {
  users: Map<string, UserSub>
  byExtension: Map<string, UserSub>
  bySubId: Map<number, UserSub | 'lines'>
  nextSubId: number
  linesSubscribedAt: number
  linesFailures: number
  /** Users whose first state is awaited before the first directory goes out; undefined once it has. */
  initialPending: Set<string> | undefined
  sawLines: boolean
  /** Subscribe, renew and end requests go out at most subscriptionsPerSecond. */
  throttle: RequestThrottle
}

interface DndWaiter {
  dnd: boolean
  resolve: () => void
}

/**
 * Avaya IP Office over MTCTI-3: one WebSocket per PBX (with backoff), the Lines subscription for the user
 * list, one User subscription per user for e-mail, DND and call control (throttled, renewed, resubscribed
 * after termination or reconnect), and DND set through Send All Calls behind an experimental option.
 * About 600 lines in one file on purpose: everything here is the one subscription state machine (Lines, User,
 * renewal, termination, snapshot gating, the first directory), whose steps share the Link's maps; the link
 * lifecycle, throttle and failure words common to every PBX are the kit's.
 */
export class AvayaIpoAdapter extends PbxLinkAdapter<AvayaIpoConfig, Link> {
  readonly type = 'avaya-ipo'
  readonly #dndWaiters = new Map<string, DndWaiter[]>()

  constructor(config: AvayaIpoConfig, deps: AdapterDeps) {
    super(config, deps, {
      codePrefix: 'AVAYA_IPO', otherCode: 'ERROR', linkName: 'the MTCTI-3 link', address: `${config.host}:${config.port}`, host: config.host,
      requestTimeoutMs: config.requestTimeoutMs, refusedHint: 'check the address and port (IP Office web services, usually 443)',
      backoffBaseMs: BACKOFF_BASE_MS, backoffMaxMs: 30000,
    })
  }

  async setDnd(endpointId: string, dnd: boolean): Promise<{ dnd: boolean }> {
    if (!this.config.experimentalSetDnd) {
      throw new AdapterError(
        'AVAYA_IPO_SETDND_DISABLED',
        `setting DND on IP Office is experimental and off for connector ${this.connectorId}: set "experimentalSetDnd": true in its config to use Send All Calls as DND (not yet confirmed on a real IP Office)`,
        { endpointId },
      )
    }
    const link = this.openLink(endpointId)
    const user = link.byExtension.get(endpointId)
    if (user === undefined) {
      throw new AdapterError('AVAYA_IPO_UNKNOWN_DEVICE', `${endpointId} is not an extension IP Office reported on connector ${this.connectorId}`, { endpointId })
    }
    const subId = user.subId
    if (subId === undefined || !user.snapshotDone || user.data === undefined) {
      throw new AdapterError('AVAYA_IPO_NOT_SUBSCRIBED', `${endpointId} is not monitored yet (its user subscription is being set up); try again shortly`, { endpointId })
    }
    const changes = user.data.dnd !== dnd
    // Registered before sending: the NotifyUser may arrive before the RequestResponse.
    const command = this.dndCommands.add(endpointId, dnd)
    const confirmed = changes ? this.#waitForDnd(endpointId, dnd) : undefined
    try {
      await link.driver.request('Send All Calls update', (requestid) => ({
        subscribecmd: { requestid, subscribe_id: subId, user: { sac: { set: dnd ? 1 : 0 } } },
      }))
    } catch (error) {
      confirmed?.cancel()
      this.dndCommands.forget(endpointId, command)
      throw this.adapterError(error, endpointId, (failure, detail) => failure instanceof MtctiLinkError && failure.code === 'REQUEST_REFUSED'
        ? new AdapterError('AVAYA_IPO_REFUSED', `IP Office refused the Send All Calls update for ${endpointId}: result ${failure.detail.result ?? '?'}${failure.detail.additional ? ` (${failure.detail.additional})` : ''}`, detail)
        : undefined)
    }
    if (confirmed === undefined) {
      // Same value: nothing will change, so the PBX's positive answer is the confirmation.
      this.dndCommands.forget(endpointId, command)
      if (this.link === link) this.emit({ kind: 'dnd', endpointId, dnd, at: this.deps.clock.now(), byCommand: true })
      return { dnd }
    }
    const timeoutMs = this.config.dndConfirmTimeoutMs
    const outcome = await confirmed.wait(timeoutMs)
    // A late flip (or a late duplicate of the confirming NotifyUser) stays ours for a while: our doing, not the person's.
    command.until = this.deps.clock.now() + timeoutMs
    if (outcome === 'confirmed') return { dnd }
    this.deps.counters.inc('avaya-ipo.dnd.unconfirmed')
    throw new AdapterError(
      'AVAYA_IPO_DND_UNCONFIRMED',
      `IP Office accepted the Send All Calls update for ${endpointId} but did not report DND ${dnd ? 'on' : 'off'} within ${timeoutMs} ms; Send All Calls may not be DND on this system (experimental): check the user's DND in IP Office`,
      { endpointId, dnd },
    )
  }

  // --- Connection lifecycle -------------------------------------------------------------------------------

  protected async createLink(): Promise<Link> {
    const config = this.config
    const caPem = config.tls.caFile === undefined ? undefined : await readCaFile('tls.caFile', config.tls.caFile)
    const pinnedSha256 = config.tls.pinnedSha256 === undefined ? undefined : normaliseFingerprint(config.tls.pinnedSha256)
    const driver = new AvayaIpoDriver({
      host: config.host,
      port: config.port,
      path: config.path,
      username: config.username,
      password: config.password,
      ...(caPem === undefined ? {} : { caPem }),
      ...(pinnedSha256 === undefined ? {} : { pinnedSha256 }),
      ...(config.tls.serverName === undefined ? {} : { serverName: config.tls.serverName }),
      requestTimeoutMs: config.requestTimeoutMs,
      pingIntervalMs: config.pingIntervalS * 1000,
      maxFrameBytes: config.maxFrameBytes,
    }, { ...this.deps, logger: this.deps.logger.child({ component: 'mtcti3-driver' }) })
    const link: Link = {
      driver, users: new Map(), byExtension: new Map(), bySubId: new Map(), nextSubId: FIRST_USER_SUBSCRIPTION_ID,
      linesSubscribedAt: 0, linesFailures: 0, initialPending: undefined, sawLines: false,
      throttle: new RequestThrottle(this.deps.clock, this.deps.logger, config.subscriptionsPerSecond),
      timers: new LinkTimers(this.deps.clock), unsubscribe: [],
    }
    link.unsubscribe.push(
      driver.onNotify((notify) => this.#onNotify(link, notify)),
      driver.onSubscribeTerminated((terminated) => this.#onTerminated(link, terminated)),
    )
    return link
  }

  protected linkOpened(link: Link): void {
    this.#subscribeLines(link)
  }

  protected override lostHint(closed: LinkClosed): string {
    return closed.code === 'FRAME_TOO_LARGE' ? '; raise maxFrameBytes if this PBX has very many users' : ''
  }

  protected override minimumRetryDelay(error: unknown): number | undefined {
    return error instanceof MtctiLinkError && error.code === 'AUTH_REJECTED' ? AUTH_RETRY_MS : undefined
  }

  protected override forgetLink(link: Link): void {
    link.throttle.clear()
    link.bySubId.clear()
    for (const waiters of this.#dndWaiters.values()) for (const waiter of waiters) waiter.resolve()
    this.#dndWaiters.clear()
  }

  protected override describeFailure(error: unknown): string | undefined {
    if (!(error instanceof MtctiLinkError)) return undefined
    const { detail } = error
    const address = this.spec.address
    switch (error.code) {
      case 'AUTH_REJECTED':
        return `IP Office refused the service user "${this.config.username}" (HTTP ${detail.status ?? 401}): check its user name and password, and that its rights group allows the MTCTI-3 API; retrying in ${AUTH_RETRY_MS / 1000} s`
      case 'HTTP_ERROR':
        if (detail.status === 404) return `${address} answered HTTP 404 for ${this.config.path}: is this an IP Office (11.1 or later) with MTCTI-3, and is the path right?`
        if (detail.status === 503) return `${address} answered HTTP 503: no free MTCTI-3 connection (other applications may hold them)`
        return `${address} answered HTTP ${detail.status ?? '?'} instead of the WebSocket upgrade: is this the IP Office web services port?`
      case 'SUBPROTOCOL':
        return `${address} did not accept the WebSocket subprotocol "openapi": is ${this.config.path} the IP Office MTCTI-3 endpoint? (${error.message})`
      case 'TLS_UNTRUSTED':
        return `the certificate of ${address} is not trusted (${detail.tlsError ?? 'unknown'}): IP Office usually has a self-signed certificate; set tls.caFile to its CA, or tls.pinnedSha256 to ${detail.fingerprint256 ?? 'its SHA-256 fingerprint'} after checking that fingerprint on the IP Office`
      case 'TLS_PIN_MISMATCH':
        return `${address} presented certificate ${detail.fingerprint256 ?? 'none'}, not the pinned one: if IP Office's certificate was renewed, check the new fingerprint and update tls.pinnedSha256`
      default:
        return undefined
    }
  }

  /** Runs `fn` after `ms` on this link; a user's timers go in its group, cleared when it is resubscribed or removed. */
  #later(link: Link, ms: number, fn: () => void, owner?: UserSub): void {
    const timers = owner?.timers ?? link.timers
    timers.later(ms, () => {
      if (this.link === link) fn()
    })
  }

  // --- Lines: the user list -------------------------------------------------------------------------------

  #subscribeLines(link: Link): void {
    link.throttle.enqueue(async () => {
      if (this.link !== link) return
      link.bySubId.set(LINES_SUBSCRIPTION_ID, 'lines')
      link.linesSubscribedAt = this.deps.clock.now()
      try {
        await link.driver.request('Lines subscription', (requestid) => ({
          subscribe: { requestid, subscribe_id: LINES_SUBSCRIPTION_ID, timeout: this.config.subscriptionTimeoutS, lines: { flags: this.config.linesFlags } },
        }))
      } catch (error) {
        if (this.link !== link) return
        link.bySubId.delete(LINES_SUBSCRIPTION_ID)
        this.deps.counters.inc('avaya-ipo.subscriptions.failed')
        const reason = error instanceof MtctiLinkError && error.code === 'REQUEST_REFUSED'
          ? `IP Office refused the user list (Lines subscription, ${error.message}): check that the service user's rights group allows MTCTI-3`
          : `no user list from IP Office (${error instanceof Error ? error.message : String(error)})`
        this.deps.logger.error({ err: error instanceof Error ? error.message : String(error) }, 'Lines subscription failed')
        // Without the user list nothing works: start over on a fresh connection, with backoff.
        this.failLink(link, reason)
        return
      }
      if (this.link !== link) return
      this.#scheduleRenewal(link, LINES_SUBSCRIPTION_ID)
    })
  }

  #onLines(link: Link, lines: NotifyLines): void {
    const first = !link.sawLines
    link.sawLines = true
    const added: UserSub[] = []
    for (const entry of lines.adduser ?? []) {
      const user = this.#addUser(link, entry)
      if (user !== undefined) added.push(user)
    }
    for (const entry of lines.changeuser ?? []) {
      const guidText = formatGuid(entry.guid)
      const existing = guidText === undefined ? undefined : link.users.get(guidText)
      if (existing !== undefined && (entry.extn ?? '') === existing.extension) {
        existing.linesName = entry.name
        continue
      }
      if (existing !== undefined) this.#removeUser(link, existing)
      const user = this.#addUser(link, entry)
      if (user !== undefined) added.push(user)
    }
    for (const entry of lines.deleteuser ?? []) {
      const guidText = formatGuid(entry.guid)
      const existing = guidText === undefined ? undefined : link.users.get(guidText)
      if (existing !== undefined) this.#removeUser(link, existing)
    }
    if (first || link.initialPending !== undefined) {
      link.initialPending ??= new Set()
      for (const user of added) link.initialPending.add(user.guidText)
      this.#settleInitial(link)
    } else {
      this.#scheduleDirectory(link)
    }
    for (const user of added) this.#subscribeUser(link, user)
  }

  #addUser(link: Link, entry: LinesUser): UserSub | undefined {
    const guidText = formatGuid(entry.guid)
    const extension = entry.extn ?? ''
    if (guidText === undefined) {
      this.deps.counters.inc('avaya-ipo.users.skipped')
      this.deps.logger.warn({ extension, name: entry.name }, 'IP Office user without a 16-byte GUID: not monitored')
      return undefined
    }
    if (extension === '' || extension.length > 64) {
      this.deps.counters.inc('avaya-ipo.users.skipped')
      this.deps.logger.info({ guid: guidText, name: entry.name }, 'IP Office user without a usable extension: not monitored')
      return undefined
    }
    const existing = link.users.get(guidText)
    if (existing !== undefined) {
      existing.linesName = entry.name
      return undefined
    }
    const clash = link.byExtension.get(extension)
    if (clash !== undefined) {
      this.deps.counters.inc('avaya-ipo.users.skipped')
      this.deps.logger.warn({ extension, guid: guidText, monitored: clash.guidText }, 'two IP Office users with one extension: only the first is monitored')
      return undefined
    }
    const user: UserSub = {
      guid: entry.guid ?? new Uint8Array(), guidText, extension, linesName: entry.name, subId: undefined, removed: false,
      data: undefined, calls: new Map(), gotUser: false, gotCalls: false, snapshotDone: false, subscribedAt: 0, failures: 0, timers: link.timers.group(),
    }
    link.users.set(guidText, user)
    link.byExtension.set(extension, user)
    return user
  }

  #removeUser(link: Link, user: UserSub): void {
    user.removed = true
    user.timers.clear()
    link.users.delete(user.guidText)
    if (link.byExtension.get(user.extension) === user) link.byExtension.delete(user.extension)
    link.initialPending?.delete(user.guidText)
    const subId = user.subId
    user.subId = undefined
    if (subId !== undefined) {
      link.bySubId.delete(subId)
      link.throttle.enqueue(async () => {
        await link.driver.request('SubscribeEnd', (requestid) => ({ subscribeend: { requestid, subscribe_id: subId, reason: 'user deleted' } })).catch(() => undefined)
      })
    }
    // The person's calls end with the user: the core must not keep showing them busy.
    for (const callId of user.calls.keys()) this.emit({ kind: 'call', endpointId: user.extension, callId, state: 'cleared', at: this.deps.clock.now(), cause: 'user deleted in IP Office' })
    user.calls.clear()
  }

  // --- Users: e-mail, DND, calls --------------------------------------------------------------------------

  #subscribeUser(link: Link, user: UserSub, delayMs = 0): void {
    if (delayMs > 0) {
      this.#later(link, delayMs, () => this.#subscribeUser(link, user), user)
      return
    }
    link.throttle.enqueue(async () => {
      if (this.link !== link || user.removed) return
      const subId = link.nextSubId++
      link.bySubId.set(subId, user)
      user.subId = subId
      user.data = undefined
      user.calls.clear()
      user.gotUser = false
      user.gotCalls = false
      user.snapshotDone = false
      user.subscribedAt = this.deps.clock.now()
      try {
        await link.driver.request('User subscription', (requestid) => ({
          subscribe: {
            requestid, subscribe_id: subId, timeout: this.config.subscriptionTimeoutS,
            user: { guid: user.guid, flags: this.config.userFlags, ccflags: this.config.userCcFlags },
          },
        }))
      } catch (error) {
        if (this.link !== link || user.subId !== subId) return
        link.bySubId.delete(subId)
        user.subId = undefined
        this.deps.counters.inc('avaya-ipo.subscriptions.failed')
        const retryMs = this.#retryDelay(user.failures++)
        this.deps.logger.warn({ extension: user.extension, err: error instanceof Error ? error.message : String(error), retryMs }, 'user subscription failed: extension not monitored until it succeeds')
        link.initialPending?.delete(user.guidText)
        this.#settleInitial(link)
        this.#subscribeUser(link, user, retryMs)
        return
      }
      if (this.link !== link || user.subId !== subId) return
      this.#scheduleRenewal(link, subId, user)
    })
  }

  #retryDelay(failures: number): number {
    return Math.min(SUBSCRIPTION_RETRY_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures, 10))
  }

  /** Renews at half the lifetime, so one lost renewal still leaves time for another [I]. */
  #scheduleRenewal(link: Link, subId: number, user?: UserSub): void {
    const timeoutS = this.config.subscriptionTimeoutS
    this.#later(link, (timeoutS * 1000) / 2, () => {
      link.throttle.enqueue(async () => {
        if (this.link !== link || link.bySubId.get(subId) === undefined) return
        try {
          await link.driver.request('subscription renewal', (requestid) => ({ subscribecmd: { requestid, subscribe_id: subId, timeout: timeoutS } }))
          this.deps.counters.inc('avaya-ipo.subscriptions.renewed')
        } catch (error) {
          if (this.link !== link || link.bySubId.get(subId) === undefined) return
          this.deps.logger.warn({ subscribeId: subId, extension: user?.extension, err: error instanceof Error ? error.message : String(error) }, 'subscription renewal failed: subscribing again')
          this.#onTerminated(link, { subscribe_id: subId, reason: 'renewal failed' })
          return
        }
        if (this.link === link && link.bySubId.get(subId) !== undefined) this.#scheduleRenewal(link, subId, user)
      })
    }, user)
  }

  #onTerminated(link: Link, terminated: SubscribeTerminated): void {
    if (this.link !== link) return
    const subId = terminated.subscribe_id ?? 0
    const target = link.bySubId.get(subId)
    if (target === undefined) {
      this.deps.logger.debug({ subscribeId: subId, reason: terminated.reason }, 'SubscribeTerminated for an unknown subscription')
      return
    }
    this.deps.counters.inc('avaya-ipo.subscriptions.terminated')
    link.bySubId.delete(subId)
    const now = this.deps.clock.now()
    if (target === 'lines') {
      link.linesFailures = now - link.linesSubscribedAt < SHORT_LIVED_SUBSCRIPTION_MS ? link.linesFailures + 1 : 0
      const retryMs = link.linesFailures === 0 ? 0 : this.#retryDelay(link.linesFailures - 1)
      this.deps.logger.info({ reason: terminated.reason, retryMs }, 'IP Office ended the user list subscription: subscribing again')
      if (retryMs > 0) this.#later(link, retryMs, () => this.#subscribeLines(link))
      else this.#subscribeLines(link)
      return
    }
    const user = target
    user.timers.clear()
    user.subId = undefined
    user.failures = now - user.subscribedAt < SHORT_LIVED_SUBSCRIPTION_MS ? user.failures + 1 : 0
    const retryMs = user.failures === 0 ? 0 : this.#retryDelay(user.failures - 1)
    this.deps.logger.info({ extension: user.extension, reason: terminated.reason, retryMs }, 'IP Office ended a user subscription: subscribing again')
    this.#subscribeUser(link, user, retryMs)
  }

  #onNotify(link: Link, notify: Notify): void {
    if (this.link !== link) return
    this.deps.counters.inc('avaya-ipo.notifies.received')
    const target = link.bySubId.get(notify.subscribe_id ?? 0)
    if (target === undefined) {
      this.deps.counters.inc('avaya-ipo.notifies.unmatched')
      this.deps.logger.debug({ subscribeId: notify.subscribe_id, payload: notify.payload }, 'Notify for an unknown subscription ignored')
      return
    }
    if (notify.payload === undefined) {
      this.deps.counters.inc('avaya-ipo.messages.unknown')
      this.deps.logger.warn({ subscribeId: notify.subscribe_id, notifyId: notify.notify_id }, 'Notify with an unknown payload ignored')
      return
    }
    if (target === 'lines') {
      if (notify.payload === 'lines') this.#onLines(link, notify.lines ?? {})
      else this.#unhandled(notify)
      return
    }
    if (notify.payload === 'user') this.#onUserData(link, target, notify.user ?? {})
    else if (notify.payload === 'callcontrol') this.#onCallControl(link, target, notify.callcontrol ?? {})
    else this.#unhandled(notify)
  }

  #unhandled(notify: Notify): void {
    this.deps.counters.inc('avaya-ipo.notifies.unhandled')
    this.deps.logger.debug({ subscribeId: notify.subscribe_id, payload: notify.payload }, 'Notify of a kind this subscription does not use ignored')
  }

  #onUserData(link: Link, user: UserSub, notify: NotifyUser): void {
    const previous = user.data
    const { data } = applyNotifyUser(previous, notify)
    user.data = data
    if (data.extension !== undefined && data.extension !== user.extension) {
      this.deps.logger.debug({ extension: user.extension, reported: data.extension }, 'NotifyUser names another extension than the user list; keeping the list\'s')
    }
    this.#resolveDndWaiters(user.extension, data.dnd)
    if (!user.gotUser) {
      user.gotUser = true
      this.#maybeSnapshot(link, user)
      return
    }
    if (!user.snapshotDone) return
    if (previous?.dnd !== data.dnd) {
      this.emit({ kind: 'dnd', endpointId: user.extension, dnd: data.dnd, at: this.deps.clock.now(), byCommand: this.dndCommands.take(user.extension, data.dnd) })
    }
    if (previous?.email !== data.email || previous?.fullName !== data.fullName || previous?.name !== data.name) this.#scheduleDirectory(link)
  }

  #onCallControl(link: Link, user: UserSub, control: NotifyCallControl): void {
    const at = this.deps.clock.now()
    for (const info of control.callinfo ?? []) {
      const outcome = legStateOf(info)
      if (outcome.action === 'ignore') {
        this.deps.counters.inc('avaya-ipo.calls.ignored')
        this.deps.logger.debug({ extension: user.extension, callId: outcome.callId, reason: outcome.reason }, 'CallInfo without effect')
        continue
      }
      const { callId, state } = outcome
      const known = user.calls.get(callId)
      if (state === 'cleared') {
        if (known === undefined) continue
        user.calls.delete(callId)
      } else {
        if (known === state) continue
        user.calls.set(callId, state)
      }
      if (user.snapshotDone) this.emit({ kind: 'call', endpointId: user.extension, callId, state, at })
    }
    for (const lost of control.calllost ?? []) {
      const { callId, cause } = lostCall(lost)
      if (!user.calls.delete(callId)) continue
      if (!user.snapshotDone) continue
      this.emit(cause === undefined
        ? { kind: 'call', endpointId: user.extension, callId, state: 'cleared', at }
        : { kind: 'call', endpointId: user.extension, callId, state: 'cleared', at, cause })
    }
    if (!user.gotCalls) {
      user.gotCalls = true
      this.#maybeSnapshot(link, user)
    }
  }

  /**
   * One snapshot per (re)subscription, once the first NotifyUser (DND) and the first call-control Notify
   * (current calls) are in. [U] whether IP Office sends a call-control Notify for an idle user: if none comes
   * within initialCallStateWaitMs of the NotifyUser, the snapshot says "no calls" and later Notifys still apply.
   */
  #maybeSnapshot(link: Link, user: UserSub): void {
    if (user.snapshotDone || !user.gotUser) return
    if (!user.gotCalls) {
      const subId = user.subId
      this.#later(link, this.config.initialCallStateWaitMs, () => {
        if (user.subId === subId && !user.snapshotDone) this.#snapshot(link, user)
      }, user)
      return
    }
    this.#snapshot(link, user)
  }

  #snapshot(link: Link, user: UserSub): void {
    user.snapshotDone = true
    user.failures = 0
    this.emit({
      kind: 'snapshot',
      endpointId: user.extension,
      calls: [...user.calls].map(([callId, state]) => ({ callId, state })),
      dnd: user.data?.dnd ?? false,
      at: this.deps.clock.now(),
    })
    if (link.initialPending?.delete(user.guidText) === true) this.#settleInitial(link)
    else if (link.initialPending === undefined) this.#scheduleDirectory(link)
  }

  // --- Directory ------------------------------------------------------------------------------------------

  /** The first directory goes out once every listed user has its state (or failed), so it carries e-mails. */
  #settleInitial(link: Link): void {
    if (link.initialPending === undefined || link.initialPending.size > 0) return
    link.initialPending = undefined
    this.lifecycle.markHealthy(link)
    this.#emitDirectory(link)
  }

  #scheduleDirectory(link: Link): void {
    if (link.initialPending === undefined) link.timers.once('directory', DIRECTORY_DEBOUNCE_MS, () => this.#emitDirectory(link))
  }

  #emitDirectory(link: Link): void {
    this.emitDirectory([...link.byExtension.values()].map((user) => directoryEntry(user.extension, user.linesName, user.data)))
  }

  // --- DND commands ---------------------------------------------------------------------------------------

  #waitForDnd(endpointId: string, dnd: boolean): { wait(timeoutMs: number): Promise<'confirmed' | 'timeout'>; cancel(): void } {
    let settle: (outcome: 'confirmed' | 'timeout') => void = () => undefined
    const result = new Promise<'confirmed' | 'timeout'>((resolve) => {
      settle = resolve
    })
    const waiter: DndWaiter = { dnd, resolve: () => settle('confirmed') }
    const waiters = this.#dndWaiters.get(endpointId) ?? []
    waiters.push(waiter)
    this.#dndWaiters.set(endpointId, waiters)
    const remove = (): void => {
      const rest = (this.#dndWaiters.get(endpointId) ?? []).filter((entry) => entry !== waiter)
      if (rest.length === 0) this.#dndWaiters.delete(endpointId)
      else this.#dndWaiters.set(endpointId, rest)
    }
    return {
      wait: async (timeoutMs) => {
        const timer = this.deps.clock.setTimeout(() => settle('timeout'), timeoutMs)
        const outcome = await result
        this.deps.clock.clearTimeout(timer)
        remove()
        return outcome
      },
      cancel: () => {
        remove()
        settle('timeout')
      },
    }
  }

  #resolveDndWaiters(endpointId: string, dnd: boolean): void {
    const waiters = this.#dndWaiters.get(endpointId)
    if (waiters === undefined) return
    for (const waiter of waiters) if (waiter.dnd === dnd) waiter.resolve()
  }
}
