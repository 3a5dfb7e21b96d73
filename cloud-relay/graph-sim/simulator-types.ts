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
}

export interface SimulatedUserInput {
  id?: string
  displayName: string
  userPrincipalName: string
  /** Defaults to the UPN; pass null for a user without a mailbox. */
  mail?: string | null
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
}

export const DEFAULT_APP_ROLES: readonly string[] = ['Presence.ReadWrite.All', 'User.Read.All']

export interface SimulatorClock {
  now(): number
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
  /** Time source (epoch ms). Default Date.now. advance() adds on top of it for presence, not for tokens. */
  clock?: SimulatorClock
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
}

export type FaultTarget = 'graph' | 'identity' | 'any'

export interface FaultKnobs {
  /** The next `count` matching requests get 429 with Retry-After (seconds, may be fractional). */
  throttleNext(count: number, retryAfterSeconds?: number, target?: FaultTarget): void
  /** The next `count` matching requests fail with `status` (default 503), optionally with Retry-After. */
  failNext(count: number, status?: number, options?: { retryAfterSeconds?: number; target?: FaultTarget }): void
  /** Removes all pending faults. */
  clear(): void
}

export interface RequestStats {
  total: number
  byOperation: Readonly<Record<string, number>>
  byStatus: Readonly<Record<string, number>>
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
