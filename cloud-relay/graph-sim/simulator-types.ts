/**
 * The public types of the Graph simulator: options, directory entries, events, fault knobs and the
 * Teams-client handle. Kept apart from graph-simulator.ts so the class file is about behaviour.
 */
import type { SimulatorPki } from './ca.js'
import type { PresenceValue } from './presence-model.js'
import type { PresenceChange } from './presence-store.js'
import type { Logger } from 'pino'

export interface SimulatedUser {
  /** Entra object id (GUID, lower case). */
  id: string
  displayName: string
  mail: string | null
  userPrincipalName: string
  /** Directory attributes used by user import (not returned unless $select names them, like Graph). */
  accountEnabled: boolean
  department: string | null
  jobTitle: string | null
  companyName: string | null
  officeLocation: string | null
  /** 'SMTP:primary@…' (upper-case prefix: primary) and 'smtp:alias@…' entries. */
  proxyAddresses: string[]
  otherMails: string[]
}

export interface SimulatedUserInput {
  id?: string
  displayName: string
  userPrincipalName: string
  /** Defaults to the UPN; pass null for a user without a mailbox. */
  mail?: string | null
  /** Default true. */
  accountEnabled?: boolean
  department?: string | null
  jobTitle?: string | null
  companyName?: string | null
  officeLocation?: string | null
  /** Default: ['SMTP:<mail>'] when the user has a mail, else []. */
  proxyAddresses?: readonly string[]
  otherMails?: readonly string[]
}

/** A security or Microsoft 365 group; members are user or group object ids (nested groups allowed). */
export interface SimulatedGroup {
  id: string
  displayName: string
  memberIds: string[]
}

export interface SimulatedGroupInput {
  id?: string
  displayName: string
  memberIds?: readonly string[]
}

export interface SimulatedApp {
  clientId: string
  /** '' for a certificate-only app (certificatePem given, clientSecret not): no secret is accepted then. */
  clientSecret: string
  /** The public certificate (PEM) uploaded to the app's "Certificates & secrets", if any. */
  certificatePem: string | undefined
  displayName: string
  /** Application permissions granted by admin consent; they end up in the token's `roles`. */
  roles: readonly string[]
  /** Models an expired secret (AADSTS7000222). */
  secretExpired: boolean
  /** Object id of the app's service principal (token `oid`). */
  servicePrincipalId: string
  /** Delegated permissions consented for the tenant (short names, e.g. 'Presence.Read.All'). */
  delegatedScopes: readonly string[]
  /** "Allow public client flows": device code and refresh without a client credential. */
  allowPublicClient: boolean
}

export interface SimulatedAppInput {
  clientId?: string
  /** Default: a random secret, unless certificatePem is given (then the app has no secret). */
  clientSecret?: string
  /** Public X.509 certificate (PEM) accepted for client assertions (private_key_jwt). */
  certificatePem?: string
  displayName?: string
  /** Default: the permissions the relay needs. Pass [] to model "admin consent not granted". */
  roles?: readonly string[]
  secretExpired?: boolean
  /** Default DEFAULT_DELEGATED_SCOPES. Pass [] to model "no delegated consent" (AADSTS65001). */
  delegatedScopes?: readonly string[]
  /** Default true (Entra's default is "No"; the relay's admin must switch it on for device code sign-in). */
  allowPublicClient?: boolean
}

export const DEFAULT_DELEGATED_SCOPES: readonly string[] = ['Presence.Read.All', 'User.Read']

export const DEFAULT_APP_ROLES: readonly string[] = ['Presence.ReadWrite.All', 'User.Read.All']

/**
 * Time source (epoch ms). With setTimeout/clearTimeout (e.g. createScaledClock) the simulator's own timers
 * (delivery retries, sweeps, lifecycle) run on it too; without them they fall back to real timers.
 */
export interface SimulatorClock {
  now(): number
  setTimeout?(fn: () => void, ms: number): unknown
  clearTimeout?(timer: never): void
}

export interface RateLimit {
  requests: number
  windowMs: number
}

export interface GraphSimulatorOptions {
  /** Listen port; 0 (default) picks a free one. */
  port?: number
  /** Listen address. Default 127.0.0.1: the simulator is never reachable from outside the machine. */
  host?: string
  /** Tenant id (GUID). Default: random. */
  tenantId?: string
  apps?: readonly SimulatedAppInput[]
  users?: readonly SimulatedUserInput[]
  /** expires_in of issued tokens. Default 3599 s, like Entra ID. */
  tokenLifetimeSeconds?: number
  /** getPresencesByUserId limit per app per tenant. Default 1500 requests / 30 s (research §2). */
  presenceRateLimit?: RateLimit
  /**
   * Presence writes (setPresence, clearPresence, set/clearUserPreferredPresence) per app per tenant, each inner
   * request of a $batch counted on its own. Default 10,000 requests / 30 s (research §4).
   */
  presenceWriteRateLimit?: RateLimit
  /** Time source (epoch ms). Default Date.now. advance() adds on top of it for presence, not for tokens. */
  clock?: SimulatorClock
  /**
   * Clock for access-token lifetimes (iat/exp and their checks). Default: `clock`. Give the real clock
   * when `clock` is compressed: msal caches tokens on the real clock.
   */
  tokenClock?: SimulatorClock
  /** expires_in of delegated (device code / refresh) access tokens. Default tokenLifetimeSeconds. */
  delegatedTokenLifetimeSeconds?: number
  /** Refresh tokens unused for longer than this (simulator clock) fail with AADSTS700082. Default 90 days. */
  refreshTokenInactiveMs?: number
  /** Device code lifetime (expires_in). Default 900 s. */
  deviceCodeLifetimeSeconds?: number
  /** Polling interval msal is told to use, in seconds (fractions allowed for tests). Default 5. */
  deviceCodeIntervalSeconds?: number
  /** Extra CA certificates (PEM) trusted for outbound webhook calls; the simulator's own CA is always trusted. */
  webhookCaPem?: string | readonly string[]
  /** Accept presence subscriptions from app-only tokens (Graph answers 403). Default false. */
  allowAppOnlyPresenceSubscriptions?: boolean
  /** Notification and lifecycle delivery tuning (see SubscriptionTuning). */
  subscriptions?: Partial<SubscriptionTuning>
  /** Reuse a CA (e.g. across a restart, so clients keep trusting it). Default: a fresh one per start(). */
  pki?: SimulatorPki
  logger?: Logger
}

export interface RequestEvent {
  method: string
  /** Path without the query string. */
  path: string
  /** Operation name, e.g. 'setPresence', 'getPresencesByUserId', 'token'; 'unknown' when no route matched. */
  operation: string
  status: number
  /** performance.now() when the request arrived. */
  at: number
  durationMs: number
  /** Calling app (token `appid`, or client_id on the token endpoint) when known. */
  appId: string | undefined
  /** True when a fault knob answered instead of the real handler. */
  injected: boolean
  /** True for a request inside a $batch (it is a Graph request, not an HTTP request of its own). */
  batchItem?: boolean
}

export interface SetPresenceEvent {
  userId: string
  appId: string
  availability: string
  activity: string
  expirationMs: number
  /** performance.now() when the request arrived. */
  at: number
}

export interface ClearPresenceEvent {
  userId: string
  appId: string
  /** 'cleared' (200) or 'absent' (404). */
  result: 'cleared' | 'absent'
  at: number
}

/**
 * The aggregate changed. Emitted at once for Graph calls and Teams actions; fading and expiry need no
 * timers, so they are noticed (and emitted) at the next read of that user's presence.
 */
export interface PresenceChangedEvent extends PresenceChange {
  /** performance.now() when the change was noticed. */
  at: number
}

export interface TokenEvent {
  appId: string
  outcome: 'issued' | 'rejected'
  error?: string
  at: number
}

export interface GraphSimulatorEvents {
  request: [RequestEvent]
  setPresence: [SetPresenceEvent]
  clearPresence: [ClearPresenceEvent]
  presenceChanged: [PresenceChangedEvent]
  token: [TokenEvent]
  notification: [NotificationEvent]
  subscription: [SubscriptionEvent]
}

/**
 * 'graph' and 'identity' match HTTP requests to those hosts' paths, 'any' both; 'batch-item' matches only
 * requests inside a $batch (the fault then shows as that item's inner status).
 */
export type FaultTarget = 'graph' | 'identity' | 'any' | 'batch-item'

export interface FaultKnobs {
  /** The next `count` matching requests get 429 with Retry-After (seconds, may be fractional). */
  throttleNext(count: number, retryAfterSeconds?: number, target?: FaultTarget): void
  /** The next `count` matching requests fail with `status` (default 503), optionally with Retry-After. */
  failNext(count: number, status?: number, options?: { retryAfterSeconds?: number; target?: FaultTarget }): void
  /** Removes all pending faults. */
  clear(): void
}

export interface RequestStats {
  /** HTTP requests (a $batch is one), token requests included. */
  total: number
  /** Per operation as Graph counts them: each inner request of a $batch under its own operation, the envelope as 'batch'. */
  byOperation: Readonly<Record<string, number>>
  /** Per HTTP status of HTTP requests. */
  byStatus: Readonly<Record<string, number>>
  /** Graph requests as Graph counts them for throttling: direct Graph calls plus every inner request (envelopes not counted). */
  graphRequests: number
  /** HTTP requests to Graph (/v1.0), a $batch counted once. */
  graphHttpRequests: number
  /** $batch envelopes, and how many had each number of inner requests. */
  batches: number
  batchSizes: Readonly<Record<string, number>>
  /** Per inner status of batch items. */
  byInnerStatus: Readonly<Record<string, number>>
  /** The most Graph requests, and presence writes, of one app in any 30 s window (simulator clock). */
  peak30s: { graphRequests: number; presenceWrites: number }
}

/** Acts as the person's own Teams client (one Teams session per user) and the status menu. */
export interface SimulatedTeamsClient {
  readonly userId: string
  /** Peer-to-peer call: Busy/InACall. */
  startCall(): void
  /** Group call or meeting joined in Teams: Busy/InAConferenceCall. */
  startConference(): void
  /** Sharing the screen in a meeting: DoNotDisturb/Presenting. */
  startPresenting(): void
  /** A calendar meeting in progress (not joined): Busy/InAMeeting. */
  joinCalendarMeeting(): void
  /** Viva Insights focus time: DoNotDisturb/Focusing. */
  setFocusing(): void
  /** The person picks "Do not disturb" in Teams: user-preferred DoNotDisturb/DoNotDisturb (default 1 day). */
  setDnd(durationMs?: number): void
  /** The person picks any status from the menu (user-preferred presence). */
  setPreferred(value: PresenceValue, durationMs?: number): void
  /** "Reset status": removes the user-preferred presence. */
  resetStatus(): void
  /** Signed in and idle, status reset: Available/Available. */
  setAvailable(): void
  /** Call/meeting/presentation/focus ended: back to Available/Available (a manual status stays). */
  endActivity(): void
  /** Closes Teams: the Teams session disappears. */
  signOut(): void
}

// ----- delegated sign-in, subscriptions and notifications ----------------------------------------------

export interface SubscriptionTuning {
  /** A delivery is good when a 2xx arrives within this (real ms; network time is never compressed). Default 3000. */
  deliveryTimeoutMs: number
  /** The validation handshake must answer within this (real ms). Default 10000. */
  validationTimeoutMs: number
  /** First retry delay after a failed delivery (simulator ms); doubles each attempt. Default 10000. */
  retryFirstDelayMs: number
  /** Longest retry delay (simulator ms). Default 30 min. */
  retryMaxDelayMs: number
  /** A notification not delivered within this (simulator ms) of its first attempt is dropped. Default 4 h. */
  retryWindowMs: number
  /** How often subscribed users' presence is re-read, expiry and reauthorization checked (simulator ms). Default 30 s. */
  sweepIntervalMs: number
  /** reauthorizationRequired is sent this long before the access token behind a subscription expires (token clock ms). Default 5 min. */
  reauthorizationLeadMs: number
  /** Several notifications for one URL noticed within this (real ms) share one POST. Default 10. */
  batchWindowMs: number
  /** Notifications in one POST at most; more are split over several POSTs. Default 1000 (Graph documents no figure). */
  maxBatchItems: number
  /** Bytes of one POST's body at most (Graph's batches are a few hundred KiB at most). Default 256 KiB. */
  maxBatchBytes: number
}

export interface SimulatedSubscription {
  id: string
  resource: string
  /** Lower-case user ids the resource covers. */
  userIds: readonly string[]
  applicationId: string
  /** Delegated user who created it, or undefined for an app-only subscription. */
  creatorUserId: string | undefined
  changeType: string
  clientState: string | null
  notificationUrl: string
  lifecycleNotificationUrl: string | null
  /** Epoch ms on the simulator clock. */
  expiresAt: number
  includeResourceData: boolean
  encryptionCertificate: string | null
  encryptionCertificateId: string | null
  latestSupportedTlsVersion: string
  /** exp of the access token that created or last reauthorized/renewed it (token clock, epoch ms). */
  authorizedUntil: number | undefined
}

export type LifecycleEventName = 'reauthorizationRequired' | 'subscriptionRemoved' | 'missed'

export interface NotificationEvent {
  kind: 'change' | 'lifecycle'
  /** delivered: 2xx in time; failed: one attempt failed (a retry follows); dropped: given up or lost on purpose. */
  outcome: 'delivered' | 'failed' | 'dropped'
  url: string
  subscriptionIds: readonly string[]
  /** User ids (change) or lifecycle event names (lifecycle) carried. */
  items: readonly string[]
  attempt: number
  /** Size of the POST's body (delivered and failed attempts). */
  bytes?: number
  status?: number
  reason?: string
  at: number
}

export interface SubscriptionEvent {
  action: 'created' | 'rejected' | 'renewed' | 'reauthorized' | 'deleted' | 'expired' | 'removed'
  subscriptionId: string | undefined
  status?: number
  reason?: string
  at: number
}

export interface NotificationStats {
  validations: number
  validationFailures: number
  delivered: number
  failedAttempts: number
  dropped: number
  lifecycleDelivered: number
  /** Notifications currently waiting for a (re)try. */
  pending: number
}

/** Which notification items a drop/miss knob takes: the next N, or those a predicate picks. */
export type NotificationSelector = number | ((item: { subscriptionId: string; userId: string }) => boolean)
