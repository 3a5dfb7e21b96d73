/**
 * A local, HTTPS-only stand-in for Entra ID's token endpoint and the Microsoft Graph presence and user APIs,
 * faithful enough that the real @azure/msal-node and @microsoft/microsoft-graph-client talk to it unchanged.
 * Facts and their confidence: research/graph-presence.md; what is assumed here: README.md.
 *
 * Lifecycle: the constructor only assigns; start() creates the CA, the signing key and the listener;
 * stop() closes everything and is idempotent. Presence time is an injectable clock plus advance(), so
 * tests can fade and expire sessions without sleeping. Token lifetimes follow the injected clock only:
 * msal caches tokens on the real clock, so if advance() aged tokens too, every jump past an hour would
 * leave clients holding tokens the simulator calls expired, which cannot happen against the real service.
 */
import { EventEmitter } from 'node:events'
import { randomUUID } from 'node:crypto'
import type { Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { pino, type Logger } from 'pino'
import { createSimulatorPki, issueServerCertificate, type SimulatorPki, type SimulatorPkiOptions } from './ca.js'
import { WebhookClient, type SimTimers } from './notification-delivery.js'
import {
  DEFAULT_SUBSCRIPTION_TUNING,
  GRAPH_NOTIFICATION_PUBLISHER,
  SubscriptionService,
  isFailure,
  type SubscriptionResult,
} from './subscriptions.js'
import {
  DEFAULT_SESSION_MS,
  MAX_SESSION_MS,
  MIN_SESSION_MS,
  PREFERRED_PAIRS,
  SETTABLE_PAIRS,
  UNKNOWN,
  defaultPreferredMs,
  isPair,
  parseIsoDuration,
  type PresenceValue,
} from './presence-model.js'
import { PresenceStore, type PresenceSnapshot, type SessionView } from './presence-store.js'
import {
  DEFAULT_APP_ROLES,
  DEFAULT_DELEGATED_SCOPES,
  type FaultKnobs,
  type FaultTarget,
  type GraphSimulatorEvents,
  type GraphSimulatorOptions,
  type NotificationSelector,
  type NotificationStats,
  type RequestEvent,
  type RequestStats,
  type SimulatedApp,
  type SimulatedSubscription,
  type SimulatedAppInput,
  type SimulatedTeamsClient,
  type SimulatedUser,
  type SimulatedUserInput,
  type SimulatorClock,
  type SimulatedGroup,
  type SimulatedGroupInput,
} from './simulator-types.js'
import {
  DirectoryQueryError,
  directMembers,
  filterUsers,
  hasAdvancedParameters,
  transitiveMembers,
  type MemberObject,
} from './directory.js'
import {
  JWT_BEARER_ASSERTION_TYPE,
  uploadCertificate,
  verifyClientAssertion,
  type UploadedCertificate,
} from './client-assertion.js'
import { parseBatch, runBatch, type BatchItem, type InnerResponse } from './batch.js'
import { RequestWindowRecorder, SlidingWindowLimiter } from './request-window.js'
import { GRAPH_AUDIENCE, TokenRejected, TokenService, type VerifiedAppToken } from './token-service.js'
import { DEVICE_CODE_GRANT_TYPES, DelegatedIdentity, type OAuthResult } from './delegated-identity.js'
import type { DeviceCodeGrant } from './device-code.js'
import {
  aadErrorBody,
  decodeSkipToken,
  encodeSkipToken,
  graphErrorBody,
  isRecord,
  normaliseAction,
  parseSelect,
  presenceJson,
  projectUser,
  throttledBody,
} from './wire-format.js'

export {
  DEFAULT_APP_ROLES,
  DEFAULT_DELEGATED_SCOPES,
  type LifecycleEventName,
  type NotificationEvent,
  type NotificationSelector,
  type NotificationStats,
  type SimulatedSubscription,
  type SubscriptionEvent,
  type SubscriptionTuning,
  type ClearPresenceEvent,
  type FaultKnobs,
  type FaultTarget,
  type GraphSimulatorEvents,
  type GraphSimulatorOptions,
  type PresenceChangedEvent,
  type RateLimit,
  type RequestEvent,
  type RequestStats,
  type SetPresenceEvent,
  type SimulatedApp,
  type SimulatedAppInput,
  type SimulatedTeamsClient,
  type SimulatedUser,
  type SimulatedUserInput,
  type SimulatorClock,
  type TokenEvent,
  type SimulatedGroup,
  type SimulatedGroupInput,
} from './simulator-types.js'
export type { PresenceSnapshot, SessionView } from './presence-store.js'
export type { PresenceValue } from './presence-model.js'
export type { DeviceCodeGrant } from './device-code.js'

// ---------------------------------------------------------------------------------------------------------
// Internals

interface SimResponse {
  status: number
  body?: unknown
  headers?: Record<string, string>
}

interface RequestMeta {
  operation: string
  at: number
  requestId: string
  clientRequestId: string
  appId: string | undefined
  caller: VerifiedAppToken | undefined
  injected: boolean
  /** An inner request of a $batch, dispatched by the simulator itself. */
  batchItem: boolean
}

interface FaultRule {
  remaining: number
  status: number
  retryAfterSeconds: number | undefined
  target: FaultTarget
}

type Params = Record<string, string | undefined>
type Query = Record<string, string | undefined>

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const MAX_PRESENCE_IDS = 650
const PRESENCE_WRITE = ['Presence.ReadWrite.All']
const PRESENCE_READ = ['Presence.Read.All', 'Presence.ReadWrite.All']
const USER_READ = ['User.Read.All', 'User.ReadWrite.All', 'User.ReadBasic.All', 'Directory.Read.All', 'Directory.ReadWrite.All']
const GROUP_MEMBER_READ = ['GroupMember.Read.All', 'Group.Read.All', 'Group.ReadWrite.All', 'Directory.Read.All', 'Directory.ReadWrite.All']
const OIDC_SCOPES = new Set(['openid', 'profile', 'offline_access', 'email'])
const PRESENCE_WRITE_OPERATIONS = new Set(['setPresence', 'clearPresence', 'setUserPreferredPresence', 'clearUserPreferredPresence'])
/** Marks the simulator's own dispatch of a $batch item; the value is a per-instance secret, so callers cannot forge it. */
const BATCH_ITEM_HEADER = 'x-graph-sim-batch-item'
const GRAPH_DEFAULT_SCOPES = new Set([`${GRAPH_AUDIENCE}/.default`, '00000003-0000-0000-c000-000000000000/.default'])

export class GraphSimulator extends EventEmitter<GraphSimulatorEvents> {
  readonly tenantId: string
  private readonly appsById = new Map<string, SimulatedApp>()
  private readonly certificates = new Map<string, UploadedCertificate>()
  private readonly usersById = new Map<string, SimulatedUser>()
  private readonly groupsById = new Map<string, SimulatedGroup>()
  private readonly log: Logger
  private readonly clock: SimulatorClock
  private readonly store: PresenceStore
  private readonly tokens: TokenService
  private readonly identity: DelegatedIdentity
  private readonly subscriptions: SubscriptionService
  private readonly rateHits = new Map<string, number[]>()
  private readonly meta = new WeakMap<FastifyRequest, RequestMeta>()
  private readonly faultRules: FaultRule[] = []
  private stats = { total: 0, byOperation: {} as Record<string, number>, byStatus: {} as Record<string, number> }
  private batchStats = newBatchStats()
  private readonly batchSecret = randomUUID()
  private readonly writeLimiter: SlidingWindowLimiter
  private readonly graphWindow = new RequestWindowRecorder()
  private readonly writeWindow = new RequestWindowRecorder()
  private offsetMs = 0
  private server: FastifyInstance<Server> | undefined
  private pki: SimulatorPki | undefined
  private boundPort: number | undefined
  private starting: Promise<void> | undefined

  constructor(private readonly options: GraphSimulatorOptions = {}) {
    super()
    this.tenantId = (options.tenantId ?? randomUUID()).toLowerCase()
    this.clock = options.clock ?? { now: () => Date.now() }
    this.log = (options.logger ?? pino({ enabled: false })).child({ component: 'graph-sim' })
    this.store = new PresenceStore(
      () => this.now(),
      (change) => {
        this.emit('presenceChanged', { ...change, at: performance.now() })
        this.subscriptions.onPresenceChanged(change.userId, change.current)
      },
    )
    this.tokens = new TokenService(() => this.issuer)
    this.writeLimiter = new SlidingWindowLimiter(options.presenceWriteRateLimit ?? { requests: 10_000, windowMs: 30_000 })
    this.identity = new DelegatedIdentity({
      tenantId: this.tenantId,
      now: () => this.now(),
      tokenNow: () => this.tokenNow(),
      tokens: this.tokens,
      app: (clientId) => this.appsById.get(clientId),
      user: (userId) => this.usersById.get(userId),
      verificationUri: () => `${this.url}/devicelogin`,
      accessTokenLifetimeSeconds: options.delegatedTokenLifetimeSeconds ?? options.tokenLifetimeSeconds ?? 3599,
      refreshTokenInactiveMs: options.refreshTokenInactiveMs,
      deviceCodeLifetimeSeconds: options.deviceCodeLifetimeSeconds,
      deviceCodeIntervalSeconds: options.deviceCodeIntervalSeconds,
    })
    const extraCa = options.webhookCaPem === undefined ? [] : [options.webhookCaPem].flat()
    this.subscriptions = new SubscriptionService({
      tenantId: this.tenantId,
      now: () => this.now(),
      tokenNow: () => this.tokenNow(),
      timers: this.timers(),
      client: new WebhookClient(() => [...(this.pki === undefined ? [] : [this.pki.caPem]), ...extraCa]),
      tuning: { ...DEFAULT_SUBSCRIPTION_TUNING, ...options.subscriptions },
      allowAppOnlyPresence: options.allowAppOnlyPresenceSubscriptions ?? false,
      readPresence: (userId) => this.store.read(userId),
      validationToken: async (appId) => {
        const iat = Math.floor(this.tokenNow() / 1000)
        return this.tokens.sign(
          { azp: GRAPH_NOTIFICATION_PUBLISHER, appid: GRAPH_NOTIFICATION_PUBLISHER, tid: this.tenantId, ver: '2.0' },
          appId,
          iat,
          iat + 3600,
        )
      },
      emitNotification: (event) => this.emit('notification', event),
      emitSubscription: (event) => this.emit('subscription', event),
    })
    for (const app of options.apps ?? []) this.addApp(app)
    for (const user of options.users ?? []) this.addUser(user)
  }

  // ----- addresses and metadata ---------------------------------------------------------------------

  /** https://localhost:PORT (no trailing slash). Throws before start(). */
  get url(): string {
    if (this.boundPort === undefined) throw new Error('GraphSimulator is not started')
    return `https://localhost:${this.boundPort}`
  }

  get port(): number {
    if (this.boundPort === undefined) throw new Error('GraphSimulator is not started')
    return this.boundPort
  }

  /** host:port, the entry msal-node needs in `knownAuthorities`. */
  get authorityHost(): string {
    return `localhost:${this.port}`
  }

  /** PEM of the CA that signed the server certificate. */
  get caPem(): string {
    if (this.pki === undefined) throw new Error('GraphSimulator is not started')
    return this.pki.caPem
  }

  /** https://localhost:PORT/{tenantId}/ — msal-node's `authority`. */
  get authority(): string {
    return `${this.url}/${this.tenantId}/`
  }

  get issuer(): string {
    return `${this.url}/${this.tenantId}/v2.0`
  }

  get tokenEndpoint(): string {
    return `${this.url}/${this.tenantId}/oauth2/v2.0/token`
  }

  /** The OpenID configuration document as a JSON string: msal-node's `authorityMetadata`. */
  get authorityMetadata(): string {
    return JSON.stringify(this.openIdConfiguration())
  }

  get apps(): readonly SimulatedApp[] {
    return [...this.appsById.values()]
  }

  get users(): readonly SimulatedUser[] {
    return [...this.usersById.values()]
  }

  // ----- lifecycle ------------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.server !== undefined) return
    this.starting ??= this.doStart().finally(() => {
      this.starting = undefined
    })
    return this.starting
  }

  async stop(): Promise<void> {
    await this.starting?.catch(() => undefined)
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    this.boundPort = undefined
    this.subscriptions.stop()
    await server.close()
    this.log.info('graph simulator stopped')
  }

  private async doStart(): Promise<void> {
    this.pki = this.options.pki ?? (await createSimulatorPki())
    await this.tokens.init()
    const server = this.buildServer(this.pki)
    await server.listen({ port: this.options.port ?? 0, host: this.options.host ?? '127.0.0.1' })
    this.boundPort = (server.server.address() as AddressInfo).port
    this.server = server
    this.subscriptions.start()
    this.log.info({ url: this.url, tenantId: this.tenantId }, 'graph simulator listening')
  }

  // ----- directory ------------------------------------------------------------------------------------

  addUser(input: SimulatedUserInput): SimulatedUser {
    const id = (input.id ?? randomUUID()).toLowerCase()
    if (!GUID.test(id)) throw new Error(`user id must be a GUID: ${id}`)
    if (this.usersById.has(id)) throw new Error(`duplicate user id ${id}`)
    const upn = input.userPrincipalName
    if (this.findUser(upn) !== undefined) throw new Error(`duplicate userPrincipalName ${upn}`)
    const mail = input.mail === undefined ? upn : input.mail
    const user: SimulatedUser = {
      id,
      displayName: input.displayName,
      mail,
      userPrincipalName: upn,
      accountEnabled: input.accountEnabled ?? true,
      department: input.department ?? null,
      jobTitle: input.jobTitle ?? null,
      companyName: input.companyName ?? null,
      officeLocation: input.officeLocation ?? null,
      proxyAddresses: [...(input.proxyAddresses ?? (mail === null ? [] : [`SMTP:${mail}`]))],
      otherMails: [...(input.otherMails ?? [])],
    }
    this.usersById.set(id, user)
    return user
  }

  /** Adds a group; members may be added later with addGroupMembers (users or groups, by object id). */
  addGroup(input: SimulatedGroupInput): SimulatedGroup {
    const id = (input.id ?? randomUUID()).toLowerCase()
    if (!GUID.test(id)) throw new Error(`group id must be a GUID: ${id}`)
    if (this.groupsById.has(id) || this.usersById.has(id)) throw new Error(`duplicate object id ${id}`)
    const group: SimulatedGroup = { id, displayName: input.displayName, memberIds: [] }
    this.groupsById.set(id, group)
    this.addGroupMembers(id, input.memberIds ?? [])
    return group
  }

  addGroupMembers(groupId: string, memberIds: readonly string[]): void {
    const group = this.groupsById.get(groupId.toLowerCase())
    if (group === undefined) throw new Error(`unknown group ${groupId}`)
    for (const raw of memberIds) {
      const id = raw.toLowerCase()
      if (!this.usersById.has(id) && !this.groupsById.has(id)) throw new Error(`unknown member ${raw}`)
      if (!group.memberIds.includes(id)) group.memberIds.push(id)
    }
  }

  /** Changes a user's directory attributes (e.g. disables the account), as an admin would in Entra. */
  updateUser(idOrUpn: string, change: Partial<Omit<SimulatedUser, 'id'>>): SimulatedUser {
    const user = this.findUser(idOrUpn)
    if (user === undefined) throw new Error(`unknown user ${idOrUpn}`)
    Object.assign(user, change)
    return user
  }

  /** Deletes a user (and its group memberships). */
  removeUser(idOrUpn: string): void {
    const user = this.findUser(idOrUpn)
    if (user === undefined) return
    this.usersById.delete(user.id)
    for (const group of this.groupsById.values()) group.memberIds = group.memberIds.filter((m) => m !== user.id)
  }

  addApp(input: SimulatedAppInput = {}): SimulatedApp {
    const clientId = (input.clientId ?? randomUUID()).toLowerCase()
    if (this.appsById.has(clientId)) throw new Error(`duplicate app ${clientId}`)
    const app: SimulatedApp = {
      clientId,
      // Entra secrets are 40 characters from a URL-safe alphabet; the exact shape does not matter here.
      clientSecret:
        input.clientSecret ?? (input.certificatePem === undefined ? `sim~${randomUUID().replaceAll('-', '')}` : ''),
      certificatePem: input.certificatePem,
      displayName: input.displayName ?? 'PBX presence relay',
      roles: [...(input.roles ?? DEFAULT_APP_ROLES)],
      secretExpired: input.secretExpired ?? false,
      servicePrincipalId: randomUUID(),
      delegatedScopes: [...(input.delegatedScopes ?? DEFAULT_DELEGATED_SCOPES)],
      allowPublicClient: input.allowPublicClient ?? true,
    }
    // Parsed now so a malformed certificate fails at set-up, not as a puzzling token error later.
    if (input.certificatePem !== undefined) this.certificates.set(clientId, uploadCertificate(input.certificatePem))
    this.appsById.set(clientId, app)
    return app
  }

  /** Like Graph's /users/{id|userPrincipalName}: object id or UPN, case-insensitive; never by mail. */
  findUser(idOrUpn: string): SimulatedUser | undefined {
    const key = idOrUpn.toLowerCase()
    const byId = this.usersById.get(key)
    if (byId !== undefined) return byId
    for (const user of this.usersById.values()) if (user.userPrincipalName.toLowerCase() === key) return user
    return undefined
  }

  // ----- delegated sign-in (device code, refresh tokens): logic in delegated-identity.ts -------------------

  /** The person enters `userCode` at the verification page and signs in as `userIdOrUpn`. */
  approveDeviceCode(userCode: string, userIdOrUpn: string): void {
    const user = this.findUser(userIdOrUpn)
    if (user === undefined) throw new Error(`unknown user ${userIdOrUpn}`)
    this.identity.approve(userCode, user)
  }

  /** The person refuses the sign-in request. */
  declineDeviceCode(userCode: string): void {
    this.identity.decline(userCode)
  }

  /** Device codes waiting for a person (what an admin would see on the verification page). */
  pendingDeviceCodes(): readonly DeviceCodeGrant[] {
    return this.identity.deviceCodes.pending(this.now())
  }

  /** Entra "Revoke sessions": refresh tokens issued before now fail with AADSTS50173. */
  revokeSignInSessions(userIdOrUpn: string): void {
    this.identity.revokeSignInSessions(this.requireUser(userIdOrUpn).id)
  }

  /** Blocks sign-in: refreshes and device code redemptions fail with AADSTS50057 until enableUser(). */
  disableUser(userIdOrUpn: string): void {
    this.identity.setDisabled(this.requireUser(userIdOrUpn).id, true)
  }

  enableUser(userIdOrUpn: string): void {
    this.identity.setDisabled(this.requireUser(userIdOrUpn).id, false)
  }

  /** Changes the delegated permissions consented for an app (e.g. [] to model revoked consent: AADSTS65001). */
  setDelegatedScopes(clientId: string, scopes: readonly string[]): void {
    const app = this.appsById.get(clientId.toLowerCase())
    if (app === undefined) throw new Error(`unknown app ${clientId}`)
    app.delegatedScopes = [...scopes]
  }

  private requireUser(userIdOrUpn: string): SimulatedUser {
    const user = this.findUser(userIdOrUpn)
    if (user === undefined) throw new Error(`unknown user ${userIdOrUpn}`)
    return user
  }

  // ----- time -----------------------------------------------------------------------------------------

  now(): number {
    return this.clock.now() + this.offsetMs
  }

  /** Time for access-token lifetimes: `tokenClock` (default `clock`), never advance(). */
  tokenNow(): number {
    return (this.options.tokenClock ?? this.clock).now()
  }

  /** Moves presence time forward: sessions fade and expire, rate windows slide (tokens do not age). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError('advance() needs a non-negative number of ms')
    this.offsetMs += ms
    // Fading, expiry and lifecycle are lazy; a jump in time must still produce their notifications.
    this.subscriptions.sweep()
  }

  /** Timers on the simulator clock when it has them (e.g. createScaledClock), else real timers. */
  private timers(): SimTimers {
    const clock = this.clock
    if (clock.setTimeout !== undefined && clock.clearTimeout !== undefined) {
      const clear = clock.clearTimeout.bind(clock) as (handle: unknown) => void
      return { set: (fn, ms) => clock.setTimeout?.(fn, ms), clear: (handle) => clear(handle) }
    }
    return {
      set: (fn, ms) => {
        const timer = setTimeout(fn, ms)
        timer.unref()
        return timer
      },
      clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
    }
  }

  // ----- subscriptions and notifications: logic in subscriptions.ts --------------------------------------

  /** Live subscriptions (all apps). */
  getSubscriptions(): readonly SimulatedSubscription[] {
    return this.subscriptions.list()
  }

  getSubscription(id: string): SimulatedSubscription | undefined {
    return this.subscriptions.get(id)
  }

  /** A change notification item exactly as delivery would POST it (encrypted for rich subscriptions), not sent. */
  changeNotification(subscriptionId: string, userId: string, presence: PresenceValue): Record<string, unknown> {
    const item = this.subscriptions.changeNotification(subscriptionId, userId, presence)
    if (item === undefined) throw new Error(`no subscription ${subscriptionId}`)
    return item
  }

  /** Sends reauthorizationRequired to the subscription's lifecycle URL now. */
  requestReauthorization(subscriptionId: string): void {
    this.subscriptions.requestReauthorization(subscriptionId)
  }

  /** Graph drops a subscription; with notify a subscriptionRemoved lifecycle event goes out first. */
  removeSubscription(subscriptionId: string, options: { notify?: boolean } = {}): void {
    this.subscriptions.removeSubscription(subscriptionId, options.notify ?? false)
  }

  /** The next N (or every matching) change notifications are lost without a trace. */
  dropNotifications(selector: NotificationSelector): void {
    this.subscriptions.addFault('drop', selector)
  }

  /** The next N (or every matching) change notifications are lost, each followed by a `missed` lifecycle event. */
  missNotifications(selector: NotificationSelector): void {
    this.subscriptions.addFault('miss', selector)
  }

  clearNotificationFaults(): void {
    this.subscriptions.clearFaults()
  }

  notificationStats(): NotificationStats {
    return this.subscriptions.stats()
  }

  /** Runs the periodic subscription sweep now (expiry, reauthorization, fading of subscribed users). */
  sweepSubscriptions(): void {
    this.subscriptions.sweep()
  }

  /**
   * A server certificate for a webhook receiver (default SAN localhost, 127.0.0.1, ::1) from the simulator's
   * own CA, which its outbound calls trust. Needs start() (or a `pki` option made by createSimulatorPki).
   */
  async issueWebhookCertificate(options: SimulatorPkiOptions = {}): Promise<{ certPem: string; keyPem: string; caPem: string }> {
    if (this.pki === undefined) throw new Error('GraphSimulator is not started')
    return issueServerCertificate(this.pki, options)
  }

  // ----- observation ----------------------------------------------------------------------------------

  /** The aggregate presence Graph would report now (PresenceUnknown for an unknown user). */
  getPresence(userIdOrUpn: string): PresenceSnapshot & { id: string } {
    const user = this.findUser(userIdOrUpn)
    if (user === undefined) return { id: userIdOrUpn, ...UNKNOWN, sequenceNumber: '' }
    return { id: user.id, ...this.store.read(user.id) }
  }

  /** The app's live session for the user, with its faded state; undefined when none. */
  getSession(userIdOrUpn: string, appId: string): SessionView | undefined {
    const user = this.findUser(userIdOrUpn)
    return user === undefined ? undefined : this.store.getSession(user.id, appId)
  }

  getTeamsSession(userIdOrUpn: string): SessionView | undefined {
    const user = this.findUser(userIdOrUpn)
    return user === undefined ? undefined : this.store.getTeamsSession(user.id)
  }

  requestStats(): RequestStats {
    const b = this.batchStats
    return {
      total: this.stats.total,
      byOperation: { ...this.stats.byOperation },
      byStatus: { ...this.stats.byStatus },
      graphRequests: b.graphRequests,
      graphHttpRequests: b.graphHttpRequests,
      batches: b.batches,
      batchSizes: { ...b.batchSizes },
      byInnerStatus: { ...b.byInnerStatus },
      peak30s: { graphRequests: this.graphWindow.peak(30_000), presenceWrites: this.writeWindow.peak(30_000) },
    }
  }

  /** Number of requests seen for one operation (e.g. 'getPresencesByUserId'), or in total. */
  requestCount(operation?: string): number {
    return operation === undefined ? this.stats.total : (this.stats.byOperation[operation] ?? 0)
  }

  resetStats(): void {
    this.stats = { total: 0, byOperation: {}, byStatus: {} }
    this.batchStats = newBatchStats()
    this.graphWindow.clear()
    this.writeWindow.clear()
  }

  // ----- fault knobs ----------------------------------------------------------------------------------

  readonly faults: FaultKnobs = {
    throttleNext: (count, retryAfterSeconds = 1, target = 'graph') => {
      this.faultRules.push({ remaining: count, status: 429, retryAfterSeconds, target })
    },
    failNext: (count, status = 503, options = {}) => {
      this.faultRules.push({
        remaining: count,
        status,
        retryAfterSeconds: options.retryAfterSeconds,
        target: options.target ?? 'graph',
      })
    },
    clear: () => {
      this.faultRules.length = 0
    },
  }

  // ----- acting as Teams ------------------------------------------------------------------------------

  teams(userIdOrUpn: string): SimulatedTeamsClient {
    const user = this.findUser(userIdOrUpn)
    if (user === undefined) throw new Error(`unknown user ${userIdOrUpn}`)
    const userId = user.id
    const session = (availability: string, activity: string) => (): void =>
      this.store.setTeamsSession(userId, { availability, activity })
    const ensureSignedIn = (): void => {
      if (this.store.getTeamsSession(userId) === undefined) {
        this.store.setTeamsSession(userId, { availability: 'Available', activity: 'Available' })
      }
    }
    const setPreferred = (value: PresenceValue, durationMs?: number): void => {
      // The status menu is part of a running Teams client, so choosing a status also signs in.
      ensureSignedIn()
      this.store.setPreferred(userId, value, durationMs ?? defaultPreferredMs(value.availability))
    }
    return {
      userId,
      startCall: session('Busy', 'InACall'),
      startConference: session('Busy', 'InAConferenceCall'),
      startPresenting: session('DoNotDisturb', 'Presenting'),
      joinCalendarMeeting: session('Busy', 'InAMeeting'),
      setFocusing: session('DoNotDisturb', 'Focusing'),
      endActivity: session('Available', 'Available'),
      setDnd: (durationMs) => setPreferred({ availability: 'DoNotDisturb', activity: 'DoNotDisturb' }, durationMs),
      setPreferred,
      resetStatus: () => this.store.clearPreferred(userId),
      setAvailable: () => {
        this.store.clearPreferred(userId)
        this.store.setTeamsSession(userId, { availability: 'Available', activity: 'Available' })
      },
      signOut: () => this.store.clearTeamsSession(userId),
    }
  }

  // ----- HTTP server ----------------------------------------------------------------------------------

  private buildServer(pki: SimulatorPki): FastifyInstance<Server> {
    const app = Fastify({
      https: { key: pki.keyPem, cert: pki.certPem },
      // Keep-alive sockets from clients must not hold stop() open.
      forceCloseConnections: true,
      logger: false,
      // Graph URLs are case-insensitive (…/presence/setpresence works too).
      routerOptions: { caseSensitive: false },
    }) as unknown as FastifyInstance<Server>

    // Entra's token endpoint takes a form body.
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)))
    })

    app.addHook('onRequest', async (req, reply) => {
      const clientRequestId = headerValue(req, 'client-request-id') ?? randomUUID()
      const batchItem = headerValue(req, BATCH_ITEM_HEADER) === this.batchSecret
      const meta: RequestMeta = {
        operation: operationOf(req),
        at: performance.now(),
        requestId: randomUUID(),
        clientRequestId,
        appId: undefined,
        caller: undefined,
        injected: false,
        batchItem,
      }
      this.meta.set(req, meta)
      void reply.header('request-id', meta.requestId).header('client-request-id', clientRequestId)
      const fault = this.takeFault(pathOf(req), batchItem)
      if (fault !== undefined) {
        meta.injected = true
        return this.send(reply, this.faultResponse(req, fault))
      }
      return undefined
    })

    app.addHook('onResponse', async (req, reply) => {
      const meta = this.meta.get(req)
      if (meta === undefined) return
      const status = reply.statusCode
      this.countRequest(req, meta, status)
      const event: RequestEvent = {
        method: req.method,
        path: pathOf(req),
        operation: meta.operation,
        status,
        at: meta.at,
        durationMs: performance.now() - meta.at,
        appId: meta.appId,
        injected: meta.injected,
        ...(meta.batchItem ? { batchItem: true } : {}),
      }
      this.log.debug(event, 'request')
      this.emit('request', event)
    })

    app.setNotFoundHandler(async (req, reply) => {
      const path = pathOf(req)
      const segment = path.split('/').filter((s) => s !== '').pop() ?? ''
      if (path.toLowerCase().startsWith('/v1.0/')) {
        return this.send(reply, this.graphError(req, 400, 'BadRequest', `Resource not found for the segment '${segment}'.`))
      }
      return this.send(reply, { status: 404, body: { error: 'not_found', error_description: `No route for ${path}` } })
    })

    app.setErrorHandler(async (error, req, reply) => {
      // Body parser and other framework errors, rendered in the shape the caller expects.
      const status = typeof (error as { statusCode?: unknown }).statusCode === 'number'
        ? (error as { statusCode: number }).statusCode
        : 500
      const message = error instanceof Error ? error.message : 'Unexpected error'
      if (status >= 500) this.log.error({ err: error }, 'simulator handler failed')
      if (pathOf(req).toLowerCase().startsWith('/v1.0/')) {
        const code = status === 415 ? 'UnsupportedMediaType' : status >= 500 ? 'InternalServerError' : 'BadRequest'
        return this.send(reply, this.graphError(req, status, code, message))
      }
      return this.send(reply, this.aadError(req, status, 'invalid_request', 900144, message))
    })

    // Identity (Entra ID) endpoints.
    app.get(ROUTES.openIdConfiguration, async (req, reply) => this.send(reply, this.handleOpenIdConfiguration(req)))
    app.get(ROUTES.jwks, async (req, reply) => this.send(reply, this.handleJwks(req)))
    app.post(ROUTES.token, async (req, reply) => this.send(reply, await this.handleToken(req)))
    app.post(ROUTES.deviceCode, async (req, reply) => this.send(reply, this.handleDeviceCode(req)))

    // Graph endpoints. Every one needs a valid app token first.
    const graph = async (
      req: FastifyRequest,
      reply: FastifyReply,
      handler: () => SimResponse | Promise<SimResponse>,
    ): Promise<FastifyReply> => {
      const denied = await this.authenticate(req)
      return this.send(reply, denied ?? (await handler()))
    }
    app.get(ROUTES.listUsers, async (req, reply) => graph(req, reply, () => this.handleListUsers(req)))
    app.get(ROUTES.getUser, async (req, reply) => graph(req, reply, () => this.handleGetUser(req)))
    app.get(ROUTES.getGroup, async (req, reply) => graph(req, reply, () => this.handleGetGroup(req)))
    app.get(ROUTES.groupMembers, async (req, reply) => graph(req, reply, () => this.handleGroupMembers(req)))
    app.get(ROUTES.groupMembersCast, async (req, reply) => graph(req, reply, () => this.handleGroupMembers(req)))
    app.get(ROUTES.getPresence, async (req, reply) => graph(req, reply, () => this.handleGetPresence(req)))
    app.get(ROUTES.getPresenceAlt, async (req, reply) => graph(req, reply, () => this.handleGetPresence(req)))
    for (const path of [ROUTES.presenceAction, ROUTES.presenceActionAlt]) {
      app.post(path, async (req, reply) => {
        const action = normaliseAction((req.params as Params)['action'])
        return graph(req, reply, () => this.handlePresenceAction(req, action))
      })
    }
    app.post(ROUTES.batch, async (req, reply) => graph(req, reply, () => this.handleBatch(req)))
    app.post(ROUTES.subscriptions, async (req, reply) => graph(req, reply, () => this.handleSubscriptions(req, 'create')))
    app.get(ROUTES.subscriptions, async (req, reply) => graph(req, reply, () => this.handleSubscriptions(req, 'list')))
    app.get(ROUTES.subscription, async (req, reply) => graph(req, reply, () => this.handleSubscriptions(req, 'get')))
    app.patch(ROUTES.subscription, async (req, reply) => graph(req, reply, () => this.handleSubscriptions(req, 'update')))
    app.delete(ROUTES.subscription, async (req, reply) => graph(req, reply, () => this.handleSubscriptions(req, 'delete')))
    app.post(ROUTES.reauthorizeSubscription, async (req, reply) =>
      graph(req, reply, () => this.handleSubscriptions(req, 'reauthorize')),
    )
    app.post(ROUTES.communicationsAction, async (req, reply) => {
      const action = normaliseAction((req.params as Params)['action'])
      return graph(req, reply, () =>
        action === 'getPresencesByUserId'
          ? this.handleGetPresencesByUserId(req)
          : this.graphError(req, 400, 'BadRequest', `Resource not found for the segment '${action}'.`),
      )
    })
    return app
  }

  private send(reply: FastifyReply, response: SimResponse): FastifyReply {
    void reply.code(response.status)
    for (const [name, value] of Object.entries(response.headers ?? {})) void reply.header(name, value)
    // Graph answers setPresence/clearPresence with 200 and no body at all.
    return response.body === undefined ? reply.send() : reply.send(response.body)
  }

  private metaOf(req: FastifyRequest): RequestMeta {
    const meta = this.meta.get(req)
    if (meta === undefined) throw new Error('request without metadata')
    return meta
  }

  // ----- faults ---------------------------------------------------------------------------------------

  private takeFault(path: string, batchItem = false): FaultRule | undefined {
    const target: FaultTarget = batchItem ? 'batch-item' : path.toLowerCase().startsWith('/v1.0/') ? 'graph' : 'identity'
    const rule = this.faultRules.find((r) => (r.target === 'any' && !batchItem) || r.target === target)
    if (rule === undefined) return undefined
    rule.remaining--
    if (rule.remaining <= 0) this.faultRules.splice(this.faultRules.indexOf(rule), 1)
    return rule
  }

  private faultResponse(req: FastifyRequest, fault: FaultRule): SimResponse {
    const headers: Record<string, string> =
      fault.retryAfterSeconds === undefined ? {} : { 'retry-after': String(fault.retryAfterSeconds) }
    const isGraph = pathOf(req).toLowerCase().startsWith('/v1.0/')
    if (!isGraph) {
      const error = fault.status === 429 ? 'temporarily_unavailable' : 'service_unavailable'
      const response = this.aadError(req, fault.status, error, 50196, 'The server is temporarily unavailable (injected fault).')
      return { ...response, headers: { ...response.headers, ...headers } }
    }
    if (fault.status === 429) return this.throttled(req, fault.retryAfterSeconds ?? 1)
    const code = fault.status === 503 ? 'ServiceUnavailable' : fault.status === 504 ? 'GatewayTimeout' : 'UnknownError'
    const response = this.graphError(req, fault.status, code, 'The service is temporarily unavailable (injected fault).')
    return { ...response, headers: { ...response.headers, ...headers } }
  }

  // ----- identity handlers ----------------------------------------------------------------------------

  private openIdConfiguration(): Record<string, unknown> {
    const base = `${this.url}/${this.tenantId}`
    return {
      issuer: this.issuer,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      token_endpoint: `${base}/oauth2/v2.0/token`,
      device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      jwks_uri: `${base}/discovery/v2.0/keys`,
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      tenant_region_scope: null,
      cloud_instance_name: 'localhost',
    }
  }

  private handleOpenIdConfiguration(req: FastifyRequest): SimResponse {
    return this.knownTenant(req) ?? { status: 200, body: this.openIdConfiguration() }
  }

  private handleJwks(req: FastifyRequest): SimResponse {
    return this.knownTenant(req) ?? { status: 200, body: this.tokens.jwks() }
  }

  private knownTenant(req: FastifyRequest): SimResponse | undefined {
    const tenant = ((req.params as Params)['tenant'] ?? '').toLowerCase()
    if (tenant === this.tenantId) return undefined
    return this.aadError(
      req,
      400,
      'invalid_request',
      90002,
      `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`,
    )
  }

  private async handleToken(req: FastifyRequest): Promise<SimResponse> {
    const meta = this.metaOf(req)
    const wrongTenant = this.knownTenant(req)
    if (wrongTenant !== undefined) return wrongTenant
    const form = isRecord(req.body) ? req.body : {}
    const field = (name: string): string | undefined => (typeof form[name] === 'string' ? form[name] : undefined)
    const reject = (status: number, error: string, code: number, description: string, appId = ''): SimResponse => {
      this.emit('token', { appId, outcome: 'rejected', error: `AADSTS${code}`, at: performance.now() })
      return this.aadError(req, status, error, code, description)
    }

    const grantType = field('grant_type')
    if (grantType === undefined) {
      return reject(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'grant_type'.")
    }
    if (DEVICE_CODE_GRANT_TYPES.has(grantType) || grantType === 'refresh_token') {
      const delegatedForm = stringForm(form)
      meta.appId = delegatedForm['client_id']?.toLowerCase()
      const result = DEVICE_CODE_GRANT_TYPES.has(grantType)
        ? await this.identity.redeemDeviceCode(delegatedForm)
        : await this.identity.redeemRefreshToken(delegatedForm)
      return this.oauthResponse(req, result, meta.appId ?? '')
    }
    if (grantType !== 'client_credentials') {
      return reject(400, 'unsupported_grant_type', 70003, `The app requested an unsupported grant type '${grantType}'.`)
    }
    const clientId = field('client_id')?.toLowerCase()
    if (clientId === undefined) {
      return reject(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'client_id'.")
    }
    meta.appId = clientId
    const app = this.appsById.get(clientId)
    if (app === undefined) {
      return reject(
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId}' was not found in the directory '${this.tenantId}'. This can happen ` +
          'if the application has not been installed by the administrator of the tenant or consented to by any user ' +
          'in the tenant. You may have sent your authentication request to the wrong tenant.',
        clientId,
      )
    }
    const assertion = field('client_assertion')
    const secret = field('client_secret')
    if (assertion !== undefined) {
      const assertionType = field('client_assertion_type')
      if (assertionType !== JWT_BEARER_ASSERTION_TYPE) {
        return reject(
          400,
          'invalid_request',
          50027,
          `Invalid client_assertion_type '${assertionType ?? ''}': expected '${JWT_BEARER_ASSERTION_TYPE}'.`,
          clientId,
        )
      }
      const rejection = await verifyClientAssertion(assertion, {
        clientId,
        audience: `${this.url}/${this.tenantId}/oauth2/v2.0/token`,
        certificate: this.certificates.get(clientId),
        nowMs: this.tokenNow(),
      })
      if (rejection !== undefined) return reject(401, 'invalid_client', rejection.code, rejection.description, clientId)
    } else if (secret === undefined) {
      return reject(
        401,
        'invalid_client',
        7000216,
        "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        clientId,
      )
    } else if (app.clientSecret === '' || secret !== app.clientSecret) {
      return reject(
        401,
        'invalid_client',
        7000215,
        'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, ' +
          `not the client secret ID, for a secret added to app '${clientId}'.`,
        clientId,
      )
    } else if (app.secretExpired) {
      return reject(401, 'invalid_client', 7000222, `The provided client secret keys for app '${clientId}' are expired.`, clientId)
    }
    const scopes = (field('scope') ?? '').split(' ').filter((s) => s !== '' && !OIDC_SCOPES.has(s.toLowerCase()))
    if (scopes.length !== 1 || !GRAPH_DEFAULT_SCOPES.has(scopes[0] ?? '')) {
      return reject(
        400,
        'invalid_scope',
        1002012,
        `The provided value for scope ${scopes.join(' ') || '(none)'} is not valid. Client credential flows must have ` +
          `a scope value with /.default suffixed to the resource identifier (application ID URI); this simulator ` +
          `only knows ${GRAPH_AUDIENCE}/.default.`,
        clientId,
      )
    }
    const lifetime = this.options.tokenLifetimeSeconds ?? 3599
    const accessToken = await this.tokens.issue(
      { tenantId: this.tenantId, appId: clientId, servicePrincipalId: app.servicePrincipalId, roles: app.roles },
      this.tokenNow(),
      lifetime,
    )
    this.emit('token', { appId: clientId, outcome: 'issued', at: performance.now() })
    return {
      status: 200,
      headers: { 'cache-control': 'no-store, no-cache', pragma: 'no-cache' },
      body: { token_type: 'Bearer', expires_in: lifetime, ext_expires_in: lifetime, access_token: accessToken },
    }
  }

  private handleDeviceCode(req: FastifyRequest): SimResponse {
    const wrongTenant = this.knownTenant(req)
    if (wrongTenant !== undefined) return wrongTenant
    const form = stringForm(isRecord(req.body) ? req.body : {})
    this.metaOf(req).appId = form['client_id']?.toLowerCase()
    return this.oauthResponse(req, this.identity.deviceCode(form), form['client_id'] ?? '')
  }

  private oauthResponse(req: FastifyRequest, result: OAuthResult, appId: string): SimResponse {
    if (result.ok) {
      if (result.body['access_token'] !== undefined) {
        this.emit('token', { appId, outcome: 'issued', at: performance.now() })
      }
      return { status: 200, headers: { 'cache-control': 'no-store, no-cache', pragma: 'no-cache' }, body: result.body }
    }
    // Polling while the person has not signed in yet is the normal case, not a rejection.
    if (result.error !== 'authorization_pending') {
      this.emit('token', { appId, outcome: 'rejected', error: `AADSTS${result.code}`, at: performance.now() })
    }
    const response = this.aadError(req, result.status, result.error, result.code, result.description)
    if (result.suberror === undefined || !isRecord(response.body)) return response
    return { ...response, body: { ...response.body, suberror: result.suberror } }
  }

  // ----- Graph: subscriptions --------------------------------------------------------------------------

  private subscriptionResponse(req: FastifyRequest, result: SubscriptionResult): SimResponse {
    return isFailure(result) ? this.graphError(req, result.status, result.code, result.message) : result
  }

  private async handleSubscriptions(req: FastifyRequest, action: 'create' | 'list' | 'get' | 'update' | 'delete' | 'reauthorize'): Promise<SimResponse> {
    const caller = this.metaOf(req).caller
    if (caller === undefined) return this.graphError(req, 401, 'InvalidAuthenticationToken', 'Access token is empty.')
    const id = (req.params as Params)['id'] ?? ''
    const s = this.subscriptions
    switch (action) {
      case 'create':
        return this.subscriptionResponse(req, await s.create(caller, req.body))
      case 'list':
        return this.subscriptionResponse(req, s.listFor(caller, this.url))
      case 'get':
        return this.subscriptionResponse(req, s.getFor(caller, id, this.url))
      case 'update':
        return this.subscriptionResponse(req, s.update(caller, id, req.body, this.url))
      case 'delete':
        return this.subscriptionResponse(req, s.remove(caller, id))
      case 'reauthorize':
        return this.subscriptionResponse(req, s.reauthorize(caller, id))
    }
  }

  // ----- Graph: auth ----------------------------------------------------------------------------------

  /** undefined when the bearer token is valid (caller recorded in the request meta), else the 401. */
  private async authenticate(req: FastifyRequest): Promise<SimResponse | undefined> {
    const meta = this.metaOf(req)
    const header = headerValue(req, 'authorization') ?? ''
    const match = /^Bearer\s+(\S+)$/i.exec(header)
    const token = match?.[1]
    const unauthorized = (message: string): SimResponse => {
      const response = this.graphError(req, 401, 'InvalidAuthenticationToken', message)
      return {
        ...response,
        headers: {
          ...response.headers,
          'www-authenticate': `Bearer realm="", authorization_uri="${this.url}/${this.tenantId}/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`,
        },
      }
    }
    if (token === undefined) return unauthorized('Access token is empty.')
    try {
      meta.caller = await this.tokens.verify(token, this.tokenNow(), this.tenantId)
      meta.appId = meta.caller.appId
      return undefined
    } catch (err) {
      if (err instanceof TokenRejected) return unauthorized(err.message)
      throw err
    }
  }

  private requireRole(req: FastifyRequest, accepted: readonly string[], usersApi: boolean): SimResponse | undefined {
    const caller = this.metaOf(req).caller
    // A delegated token's scp names the same permissions as an app token's roles.
    const roles = [...(caller?.roles ?? []), ...(caller?.scopes ?? [])]
    if (roles.some((r) => accepted.includes(r))) return undefined
    // Directory APIs answer with the AAD-style code; the presence service's code is an assumption.
    return usersApi
      ? this.graphError(req, 403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.')
      : this.graphError(
          req,
          403,
          'Forbidden',
          `Missing application permission: one of ${accepted.join(', ')} is required (admin consent).`,
        )
  }

  // ----- Graph: users ---------------------------------------------------------------------------------

  private handleGetUser(req: FastifyRequest): SimResponse {
    const key = (req.params as Params)['user'] ?? ''
    if (key === '$count') return this.handleCountUsers(req)
    const denied = this.requireRole(req, USER_READ, true)
    if (denied !== undefined) return denied
    const user = this.findUser(key)
    if (user === undefined) return this.userNotFound(req, key)
    const select = parseSelect((req.query as Query)['$select'])
    return {
      status: 200,
      body: { '@odata.context': `${this.url}/v1.0/$metadata#users/$entity`, ...projectUser(user, select) },
    }
  }

  private handleListUsers(req: FastifyRequest): SimResponse {
    const denied = this.requireRole(req, USER_READ, true)
    if (denied !== undefined) return denied
    const query = req.query as Query
    const advanced = hasAdvancedParameters(headerValue(req, 'consistencylevel'), query['$count'])
    let users: SimulatedUser[]
    try {
      users = filterUsers([...this.usersById.values()], query['$filter'], advanced)
    } catch (err) {
      if (err instanceof DirectoryQueryError) return this.graphError(req, err.status, err.code, err.message)
      throw err
    }
    const select = parseSelect(query['$select'])
    return this.page(req, 'users', users, (u) => projectUser(u, select), advanced)
  }

  /** GET /users/$count: text/plain; advanced query parameters only (the $count segment needs the header). */
  private handleCountUsers(req: FastifyRequest): SimResponse {
    const denied = this.requireRole(req, USER_READ, true)
    if (denied !== undefined) return denied
    const query = req.query as Query
    if (headerValue(req, 'consistencylevel')?.trim().toLowerCase() !== 'eventual') {
      return this.graphError(req, 400, 'Request_BadRequest', '$count is not currently supported.')
    }
    try {
      const users = filterUsers([...this.usersById.values()], query['$filter'], true)
      return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: String(users.length) }
    } catch (err) {
      if (err instanceof DirectoryQueryError) return this.graphError(req, err.status, err.code, err.message)
      throw err
    }
  }

  private handleGetGroup(req: FastifyRequest): SimResponse {
    const denied = this.requireRole(req, GROUP_MEMBER_READ, true)
    if (denied !== undefined) return denied
    const key = (req.params as Params)['group'] ?? ''
    const group = this.groupsById.get(key.toLowerCase())
    if (group === undefined) return this.userNotFound(req, key)
    return { status: 200, body: { '@odata.context': `${this.url}/v1.0/$metadata#groups/$entity`, id: group.id, displayName: group.displayName } }
  }

  /** /groups/{id}/members and /transitiveMembers, optionally cast to /microsoft.graph.user or .group. */
  private handleGroupMembers(req: FastifyRequest): SimResponse {
    const denied = this.requireRole(req, GROUP_MEMBER_READ, true)
    if (denied !== undefined) return denied
    const params = req.params as Params
    const relation = (params['relation'] ?? '').toLowerCase()
    const cast = params['cast']?.toLowerCase()
    if (relation !== 'members' && relation !== 'transitivemembers') {
      return this.graphError(req, 400, 'BadRequest', `Resource not found for the segment '${params['relation'] ?? ''}'.`)
    }
    if (cast !== undefined && cast !== 'microsoft.graph.user' && cast !== 'microsoft.graph.group') {
      return this.graphError(req, 400, 'BadRequest', `Resource not found for the segment '${params['cast'] ?? ''}'.`)
    }
    const key = params['group'] ?? ''
    const group = this.groupsById.get(key.toLowerCase())
    if (group === undefined) return this.userNotFound(req, key)
    const query = req.query as Query
    const advanced = hasAdvancedParameters(headerValue(req, 'consistencylevel'), query['$count'])
    // The docs list "OData cast with transitive members list" among the advanced-only queries.
    if (relation === 'transitivemembers' && cast !== undefined && !advanced) {
      return this.graphError(req, 400, 'Request_UnsupportedQuery', `OData cast on transitiveMembers is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header.`)
    }
    let members: MemberObject[] = relation === 'members'
      ? directMembers(group, this.usersById, this.groupsById)
      : transitiveMembers(group, this.usersById, this.groupsById)
    if (cast !== undefined) members = members.filter((m) => (cast === 'microsoft.graph.user' ? m.kind === 'user' : m.kind === 'group'))
    const select = parseSelect(query['$select'])
    return this.page(req, `directoryObjects`, members, (m) =>
      m.kind === 'user'
        ? { '@odata.type': '#microsoft.graph.user', ...projectUser(m.user, select) }
        : { '@odata.type': '#microsoft.graph.group', id: m.group.id, displayName: m.group.displayName }, advanced)
  }

  /** One page of a collection: $top 1..999 (default 100), $skiptoken, https nextLink keeping the query. */
  private page<T>(req: FastifyRequest, context: string, all: readonly T[], render: (item: T) => Record<string, unknown>, withCount: boolean): SimResponse {
    const query = req.query as Query
    const topText = query['$top']
    const top = topText === undefined ? 100 : Number(topText)
    if (!Number.isInteger(top) || top < 1 || top > 999) {
      return this.graphError(
        req,
        400,
        'Request_UnsupportedQuery',
        `Invalid page size specified: '${topText ?? ''}'. Must be between 1 and 999 inclusive.`,
      )
    }
    let offset = 0
    const skipToken = query['$skiptoken']
    if (skipToken !== undefined) {
      const decoded = decodeSkipToken(skipToken)
      if (decoded === undefined) return this.graphError(req, 400, 'Directory_InvalidSkipToken', 'Invalid skip token.')
      offset = decoded
    }
    const body: Record<string, unknown> = { '@odata.context': `${this.url}/v1.0/$metadata#${context}` }
    // $count=true without ConsistencyLevel is silently ignored by Graph (no @odata.count), per the docs.
    if (withCount) body['@odata.count'] = all.length
    body['value'] = all.slice(offset, offset + top).map(render)
    if (offset + top < all.length) {
      const params = new URLSearchParams()
      for (const [name, value] of Object.entries(query)) if (name !== '$skiptoken' && value !== undefined) params.set(name, value)
      params.set('$top', String(top))
      params.set('$skiptoken', encodeSkipToken(offset + top))
      // Absolute https link on our own origin: graph-client only follows https nextLinks (research §7).
      body['@odata.nextLink'] = `${this.url}${pathOf(req)}?${params.toString()}`
    }
    return { status: 200, body }
  }

  private userNotFound(req: FastifyRequest, key: string): SimResponse {
    return this.graphError(
      req,
      404,
      'Request_ResourceNotFound',
      `Resource '${key}' does not exist or one of its queried reference-property objects are not present.`,
    )
  }

  // ----- Graph: presence ------------------------------------------------------------------------------

  private handleGetPresence(req: FastifyRequest): SimResponse {
    const denied = this.requireRole(req, PRESENCE_READ, false)
    if (denied !== undefined) return denied
    const key = (req.params as Params)['user'] ?? ''
    const user = this.findUser(key)
    if (user === undefined) return this.userNotFound(req, key)
    return {
      status: 200,
      body: {
        '@odata.context': `${this.url}/v1.0/$metadata#users('${user.id}')/presence/$entity`,
        ...presenceJson(user.id, this.store.read(user.id)),
      },
    }
  }

  private handlePresenceAction(req: FastifyRequest, action: string): SimResponse {
    const denied = this.requireRole(req, PRESENCE_WRITE, false)
    if (denied !== undefined) return denied
    // Presence writes share one budget per app per tenant; each inner request of a $batch takes its own slot.
    const retryAfterMs = this.writeLimiter.take(this.metaOf(req).appId ?? '', this.now())
    if (retryAfterMs !== undefined) return this.throttled(req, Number((retryAfterMs / 1000).toFixed(3)))
    const key = (req.params as Params)['user'] ?? ''
    const user = this.findUser(key)
    if (user === undefined) return this.userNotFound(req, key)
    const body = isRecord(req.body) ? req.body : {}
    switch (action) {
      case 'setPresence':
        return this.setPresence(req, user, body)
      case 'clearPresence':
        return this.clearPresence(req, user, body)
      case 'setUserPreferredPresence':
        return this.setUserPreferredPresence(req, user, body)
      case 'clearUserPreferredPresence':
        this.store.clearPreferred(user.id)
        return { status: 200 }
      default:
        return this.graphError(req, 400, 'BadRequest', `Resource not found for the segment '${action}'.`)
    }
  }

  private setPresence(req: FastifyRequest, user: SimulatedUser, body: Record<string, unknown>): SimResponse {
    const meta = this.metaOf(req)
    const appId = meta.appId ?? ''
    const { sessionId, availability, activity, expirationDuration } = body
    if (typeof sessionId !== 'string' || sessionId.toLowerCase() !== appId) {
      return this.graphError(
        req,
        400,
        'BadRequest',
        `sessionId must be the calling application's id (${appId}); got '${String(sessionId)}'.`,
      )
    }
    if (!isPair(SETTABLE_PAIRS, availability, activity)) {
      return this.graphError(
        req,
        400,
        'BadRequest',
        `The availability/activity pair '${String(availability)}/${String(activity)}' is not supported by setPresence. ` +
          `Supported: ${SETTABLE_PAIRS.map((p) => `${p.availability}/${p.activity}`).join(', ')}.`,
      )
    }
    let durationMs = DEFAULT_SESSION_MS
    if (expirationDuration !== undefined && expirationDuration !== null) {
      const parsed = typeof expirationDuration === 'string' ? parseIsoDuration(expirationDuration) : undefined
      if (parsed === undefined || parsed < MIN_SESSION_MS || parsed > MAX_SESSION_MS) {
        return this.graphError(
          req,
          400,
          'BadRequest',
          `expirationDuration '${String(expirationDuration)}' is invalid: use an ISO-8601 duration from PT5M to PT4H.`,
        )
      }
      durationMs = parsed
    }
    const value = { availability: availability as string, activity: activity as string }
    this.store.setAppSession(user.id, appId, value, durationMs)
    this.emit('setPresence', { userId: user.id, appId, ...value, expirationMs: durationMs, at: meta.at })
    return { status: 200 }
  }

  private clearPresence(req: FastifyRequest, user: SimulatedUser, body: Record<string, unknown>): SimResponse {
    const meta = this.metaOf(req)
    const appId = meta.appId ?? ''
    const sessionId = body['sessionId']
    if (typeof sessionId !== 'string' || sessionId.toLowerCase() !== appId) {
      // Assumption: an app may only clear its own session.
      return this.graphError(
        req,
        400,
        'BadRequest',
        `sessionId must be the calling application's id (${appId}); got '${String(sessionId)}'.`,
      )
    }
    const cleared = this.store.clearAppSession(user.id, appId)
    this.emit('clearPresence', { userId: user.id, appId, result: cleared ? 'cleared' : 'absent', at: meta.at })
    if (!cleared) {
      return this.graphError(req, 404, 'NotFound', `No presence session for application '${appId}' and user '${user.id}'.`)
    }
    return { status: 200 }
  }

  private setUserPreferredPresence(req: FastifyRequest, user: SimulatedUser, body: Record<string, unknown>): SimResponse {
    const { availability, activity, expirationDuration } = body
    if (!isPair(PREFERRED_PAIRS, availability, activity)) {
      return this.graphError(
        req,
        400,
        'BadRequest',
        `The availability/activity pair '${String(availability)}/${String(activity)}' is not supported by setUserPreferredPresence.`,
      )
    }
    const value = { availability: availability as string, activity: activity as string }
    let durationMs = defaultPreferredMs(value.availability)
    if (expirationDuration !== undefined && expirationDuration !== null) {
      const parsed = typeof expirationDuration === 'string' ? parseIsoDuration(expirationDuration) : undefined
      if (parsed === undefined || parsed <= 0) {
        return this.graphError(req, 400, 'BadRequest', `expirationDuration '${String(expirationDuration)}' is invalid.`)
      }
      durationMs = parsed
    }
    this.store.setPreferred(user.id, value, durationMs)
    return { status: 200 }
  }

  private handleGetPresencesByUserId(req: FastifyRequest): SimResponse {
    const denied = this.requireRole(req, PRESENCE_READ, false)
    if (denied !== undefined) return denied
    const meta = this.metaOf(req)
    // Throttling is per app per tenant (research §2); checked before the body, as a gateway would.
    const retryAfterMs = this.takeRateSlot(meta.appId ?? '')
    if (retryAfterMs !== undefined) return this.throttled(req, Math.max(1, Math.ceil(retryAfterMs / 1000)))
    const body = isRecord(req.body) ? req.body : {}
    const ids = body['ids']
    if (!Array.isArray(ids) || ids.length === 0 || !ids.every((id): id is string => typeof id === 'string')) {
      return this.graphError(req, 400, 'BadRequest', "The 'ids' parameter must be a non-empty array of user ids.")
    }
    if (ids.length > MAX_PRESENCE_IDS) {
      return this.graphError(
        req,
        400,
        'BadRequest',
        `Too many ids: ${ids.length}. getPresencesByUserId accepts at most ${MAX_PRESENCE_IDS} ids per request.`,
      )
    }
    const malformed = ids.find((id) => !GUID.test(id))
    if (malformed !== undefined) {
      // Assumption: object ids only (the API is "ByUserId"); a UPN or garbage is a bad request.
      return this.graphError(req, 400, 'BadRequest', `Invalid user id '${malformed}': expected an Entra object id (GUID).`)
    }
    const unique = [...new Set(ids.map((id) => id.toLowerCase()))]
    const value = unique.map((id) => {
      const user = this.usersById.get(id)
      // Assumption: an id of no user in the tenant yields PresenceUnknown instead of failing the whole batch.
      return user === undefined
        ? presenceJson(id, { ...UNKNOWN, sequenceNumber: '' })
        : presenceJson(user.id, this.store.read(user.id))
    })
    return {
      status: 200,
      body: { '@odata.context': `${this.url}/v1.0/$metadata#Collection(microsoft.graph.presence)`, value },
    }
  }

  /** Sliding window on the simulator clock; returns ms until a slot frees when the limit is reached. */
  private takeRateSlot(appId: string): number | undefined {
    const limit = this.options.presenceRateLimit ?? { requests: 1500, windowMs: 30_000 }
    const now = this.now()
    const hits = (this.rateHits.get(appId) ?? []).filter((t) => t > now - limit.windowMs)
    this.rateHits.set(appId, hits)
    if (hits.length >= limit.requests) return (hits[0] ?? now) + limit.windowMs - now
    hits.push(now)
    return undefined
  }

  // ----- Graph: $batch (rules in batch.ts) --------------------------------------------------------------

  private async handleBatch(req: FastifyRequest): Promise<SimResponse> {
    const parsed = parseBatch(req.body)
    if (!parsed.ok) return this.graphError(req, 400, 'BadRequest', parsed.message)
    this.batchStats.batches++
    const size = String(parsed.items.length)
    this.batchStats.batchSizes[size] = (this.batchStats.batchSizes[size] ?? 0) + 1
    const authorization = headerValue(req, 'authorization') ?? ''
    const meta = this.metaOf(req)
    const responses = await runBatch(parsed.items, {
      dispatch: (item) => this.dispatchBatchItem(req, item, authorization),
      errorBody: (code, message) => graphErrorBody(code, message, meta, this.now()),
    })
    return { status: 200, body: { responses } }
  }

  /** Through the simulator's own routes with the batch's token, so the item is checked like a direct request. */
  private async dispatchBatchItem(req: FastifyRequest, item: BatchItem, authorization: string): Promise<InnerResponse> {
    const headers: Record<string, string> = { ...item.headers, [BATCH_ITEM_HEADER]: this.batchSecret }
    if (authorization !== '') headers['authorization'] = authorization
    const payload = item.body === undefined ? undefined : typeof item.body === 'string' ? item.body : JSON.stringify(item.body)
    const res = await req.server.inject({
      method: item.method as 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
      url: `/v1.0${item.url}`,
      headers,
      ...(payload === undefined ? {} : { payload }),
    })
    const out: Record<string, string> = {}
    for (const name of ['content-type', 'retry-after', 'location']) {
      const value = res.headers[name]
      if (typeof value === 'string') out[name] = value
    }
    const text = res.body
    let body: unknown
    if (text !== '') {
      try {
        body = JSON.parse(text) as unknown
      } catch {
        body = text
      }
    }
    return { status: res.statusCode, headers: out, ...(body === undefined ? {} : { body }) } as InnerResponse
  }

  private countRequest(req: FastifyRequest, meta: RequestMeta, status: number): void {
    const b = this.batchStats
    this.stats.byOperation[meta.operation] = (this.stats.byOperation[meta.operation] ?? 0) + 1
    const isGraph = pathOf(req).toLowerCase().startsWith('/v1.0/')
    if (meta.batchItem) b.byInnerStatus[String(status)] = (b.byInnerStatus[String(status)] ?? 0) + 1
    else {
      this.stats.total++
      this.stats.byStatus[String(status)] = (this.stats.byStatus[String(status)] ?? 0) + 1
      if (isGraph) b.graphHttpRequests++
    }
    if (isGraph && meta.operation !== 'batch') {
      b.graphRequests++
      const key = meta.appId ?? ''
      const at = this.now()
      this.graphWindow.record(key, at)
      if (PRESENCE_WRITE_OPERATIONS.has(meta.operation)) this.writeWindow.record(key, at)
    }
  }

  // ----- error shapes (bodies in wire-format.ts) -------------------------------------------------------

  private graphError(req: FastifyRequest, status: number, code: string, message: string): SimResponse {
    return { status, body: graphErrorBody(code, message, this.metaOf(req), this.now()) }
  }

  private throttled(req: FastifyRequest, retryAfterSeconds: number): SimResponse {
    return {
      status: 429,
      headers: { 'retry-after': String(retryAfterSeconds) },
      body: throttledBody(this.metaOf(req), this.now()),
    }
  }

  private aadError(req: FastifyRequest, status: number, error: string, code: number, description: string): SimResponse {
    return { status, body: aadErrorBody(error, code, description, this.metaOf(req), this.now(), this.url) }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

const ROUTES = {
  openIdConfiguration: '/:tenant/v2.0/.well-known/openid-configuration',
  jwks: '/:tenant/discovery/v2.0/keys',
  token: '/:tenant/oauth2/v2.0/token',
  deviceCode: '/:tenant/oauth2/v2.0/devicecode',
  listUsers: '/v1.0/users',
  getUser: '/v1.0/users/:user',
  getGroup: '/v1.0/groups/:group',
  groupMembers: '/v1.0/groups/:group/:relation',
  groupMembersCast: '/v1.0/groups/:group/:relation/:cast',
  getPresence: '/v1.0/users/:user/presence',
  getPresenceAlt: '/v1.0/communications/presences/:user',
  presenceAction: '/v1.0/users/:user/presence/:action',
  presenceActionAlt: '/v1.0/communications/presences/:user/:action',
  communicationsAction: '/v1.0/communications/:action',
  batch: '/v1.0/$batch',
  subscriptions: '/v1.0/subscriptions',
  subscription: '/v1.0/subscriptions/:id',
  reauthorizeSubscription: '/v1.0/subscriptions/:id/reauthorize',
} as const

/** Operation name for stats and events, known as soon as the route matched (before any fault or auth). */
function operationOf(req: FastifyRequest): string {
  const route = req.routeOptions.url
  if (route === undefined) return 'unknown'
  if (route === ROUTES.presenceAction || route === ROUTES.presenceActionAlt || route === ROUTES.communicationsAction) {
    return normaliseAction((req.params as Params)['action'])
  }
  if (route === ROUTES.getPresenceAlt) return 'getPresence'
  const entry = Object.entries(ROUTES).find(([, url]) => url === route)
  return entry?.[0] ?? 'unknown'
}

function newBatchStats() {
  return {
    graphRequests: 0,
    graphHttpRequests: 0,
    batches: 0,
    batchSizes: {} as Record<string, number>,
    byInnerStatus: {} as Record<string, number>,
  }
}

function pathOf(req: FastifyRequest): string {
  const q = req.url.indexOf('?')
  return q === -1 ? req.url : req.url.slice(0, q)
}

function stringForm(form: Record<string, unknown>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {}
  for (const [key, value] of Object.entries(form)) if (typeof value === 'string') out[key] = value
  return out
}

function headerValue(req: FastifyRequest, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}

