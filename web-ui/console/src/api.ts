/** The relay's /api/v1 from the browser: the session cookie travels by itself, changes carry the CSRF token. */

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
    this.name = 'ApiError'
  }
}

let csrfToken: string | null = null

export function setCsrfToken(token: string | null): void {
  csrfToken = token
}

/** Called when a request finds the session gone (401): the app shows the sign-in page. */
let onSignedOut: (() => void) | undefined
export function whenSignedOut(handler: () => void): void {
  onSignedOut = handler
}

export async function api<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken
  let response: Response
  try {
    response = await fetch(`/api/v1${path}`, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  } catch {
    throw new ApiError(0, 'NETWORK', 'The relay did not answer: check your connection and try again.')
  }
  if (response.status === 204) return undefined as T
  const text = await response.text()
  let parsed: unknown = null
  try {
    parsed = text ? JSON.parse(text) : null
  } catch {
    parsed = null
  }
  if (!response.ok) {
    const error = (parsed as { error?: { code?: string; message?: string } } | null)?.error
    if (response.status === 401 && error?.code === 'CONSOLE_NOT_SIGNED_IN') onSignedOut?.()
    throw new ApiError(response.status, error?.code ?? 'HTTP', error?.message ?? `The relay answered ${response.status}: try again, or check the relay's log.`)
  }
  return parsed as T
}

/** The CSRF header for a change sent outside api() (a bundle upload). */
export function csrfHeaders(): Record<string, string> {
  return csrfToken ? { 'x-csrf-token': csrfToken } : {}
}

export const q = (params: Record<string, string | number | undefined | null>): string => {
  const entries = Object.entries(params).filter((e): e is [string, string | number] => e[1] !== undefined && e[1] !== null && e[1] !== '')
  return entries.length ? `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)])).toString()}` : ''
}

// ---- Wire types (as the relay's OpenAPI document describes them) ----

export type Role = 'operator' | 'tenant-admin'
export interface Account { id: number; username: string; role: Role; tenantId: string | null; disabled: boolean; createdAt: string }
export interface SessionInfo { firstRun: boolean; account: Account | null; csrfToken: string | null }
export interface Tenant {
  id: string
  name: string
  graph: { configured: boolean; clientId: string | null; credential: 'secret' | 'certificate' | null }
  seats: { limit: number | null; synced: number; people: number }
}
export interface Link { connectorId: string; pbxType: string; state: string; reason?: string; since: number; endpoints: number }
export interface Telemetry {
  uptimeS: number; rssBytes: number; eventsSent: number; invalidCommands: number
  cpuPercent?: number; load1?: number; memUsedBytes?: number; memTotalBytes?: number; temperatureC?: number
}
export interface Gateway {
  id: string; tenantId: string; state: 'online' | 'connected' | 'offline'; reason: string; since: string
  lastSeen: string | null; lastAnswered: string | null; roundTripMs: number | null; version: string | null
  /** The root file system slot the box booted (A or B); null when it has not said. */
  slot: string | null
  links: Link[]; telemetry: { at: string; data: Telemetry } | null
}
export interface GatewayIdentity { id: string; tenantId: string; name: string; state: 'created' | 'enrolled' | 'revoked'; revokedReason: string | null; enrolledAt: string | null }
export interface TelemetrySample { at: string; data: Telemetry }
export interface EventLine { id: number; at: string; tenantId: string | null; personId: number | null; gatewayId: string | null; kind: string; message: string }
export interface EventsPage { events: EventLine[]; nextBefore: number | null }
export type SyncMode = 'off' | 'telephony' | 'full'
export interface Person { id: number; tenantId: string; email: string; displayName: string; syncMode: SyncMode }
export interface Explanation {
  person: Person & { graphUserId: string | null }
  teams: {
    observed: { availability: string; activity: string; at: string } | null
    ourSession: { availability: string; activity: string; setAt: string; expiresAt: string; reason: string } | null
    wantsPbxDnd: boolean; reason: string | null; standingBack: boolean
  }
  endpoints: Array<{ gatewayId: string; connectorId: string; endpointId: string; name: string; state: string; dnd: boolean; dndOwner: string; cause: string; changedAt: string | null; stale: boolean }>
  summary: string[]
}
/** How an extension is mapped: manual, or automatically by one of the user's addresses, or by e-mail before the first import. */
export type MappingVia = 'manual' | 'mail' | 'userPrincipalName' | 'proxyAddress' | 'e-mail' | null
export interface MappedEndpoint { gatewayId: string; connectorId: string; endpointId: string; name: string; email: string | null; personId: number | null; via: MappingVia | string }
/** GET /api/v1/tenants/{tenant}/mapping; endpoint names are gatewayId/connectorId/endpointId. */
export interface MappingReport {
  tenantId: string
  imported: boolean
  directoryUsers: number
  endpoints: MappedEndpoint[]
  ambiguous: Array<{ email: string; graphUserIds: string[]; endpoints: string[] }>
  sharedUsers: Array<{ graphUserId: string; emails: string[]; endpoints: string[] }>
  unmatchedPbx: Array<{ endpoint: string; email: string; name: string }>
  withoutEmail: Array<{ endpoint: string; name: string }>
  unmatchedEntra: Array<{ graphUserId: string; userPrincipalName: string; displayName: string; personId: number | null; email: string | null }>
  manual: Array<{ endpoint: string; personId: number; setBy: string; setAt: string }>
}
export interface ServiceAccount { id: string; username: string; state: 'ok' | 'needs-sign-in'; reason: string | null; action: string | null }
export interface ServiceAccounts { accounts: ServiceAccount[]; shards: Array<{ accountId: string; subscriptionId: string | null; members: number; expiresAt: string | null }>; polled: number }
export interface SignIn { id: string; state: 'waiting' | 'signed-in' | 'failed' | 'cancelled'; userCode: string; verificationUri: string; message: string; expiresAt: string; error: string | null }
export interface Release { version: string; size: number; sha256: string; notes: string; createdBy: string; createdAt: string }
export interface Rollout {
  id: string; version: string; targetText: string; stages: number[]; failureThreshold: number; installAt: string
  state: 'running' | 'paused' | 'halted' | 'done'; stateText: string; currentStage: number; reason: string; createdBy: string; createdAt: string; updatedAt: string
  counts: Record<string, number>
}
export interface RolloutBox { gatewayId: string; stage: number; state: string; stateText: string; bytes: number | null; total: number | null; reason: string; updatedAt: string }
