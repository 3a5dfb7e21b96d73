/** The box's setup API (gateway/src/web/schemas.ts is the contract; /api/openapi.json publishes it). */

export interface SessionState {
  passwordSet: boolean
  signedIn: boolean
  csrfToken?: string
  certificateFingerprint: string
  certificateNames: string[]
  version: string
  minPasswordLength: number
}

export interface JsonSchema {
  type?: string
  properties?: Record<string, JsonSchema>
  required?: string[]
  items?: JsonSchema
  anyOf?: JsonSchema[]
  const?: unknown
  default?: unknown
  description?: string
  minimum?: number
  maximum?: number
  pattern?: string
  /** A secret: accepted, never sent back. */
  writeOnly?: boolean
}

export interface ConnectorType { type: string; schema: JsonSchema; secretFields: string[] }
export interface ConnectorView { id: string; type: string; source: 'file' | 'setup-page'; config: Record<string, unknown>; secretsSet: string[] }
export interface ConnectionTest { ok: boolean; message: string; users: number; sampleExtensions: string[]; durationMs: number }
export interface EnrollmentState { enrolled: boolean; gatewayId?: string; tenantId?: string; relayUrl?: string; notAfter?: string; configuredRelayUrl?: string; configuredPin: boolean }
export interface LinkView { connectorId: string; pbxType: string; state: string; reason?: string; since: number; endpoints: number }
export interface EventView { connectorId: string; endpointId: string; state: string; dnd: boolean; cause: string; changedAt: number }
export interface Status { tunnel: { gatewayId: string; enrolled: boolean; connected: boolean; transportUrl?: string; lastError?: string }; links: LinkView[]; events: EventView[] }
export interface LogLine { seq: number; time: number; level: number; component?: string; msg: string; detail: string }
export interface NetworkSettings { mode: 'dhcp' | 'static'; address?: string; prefix?: number; gateway?: string; dns: string[]; ntp: string[]; httpProxy?: string }
export interface NetworkView { settings: NetworkSettings; trial?: { until: string; confirmUrl: string }; lastApply?: string }
export interface SshSettings { enabled: boolean; keys: string[] }
export interface UpdateProgress { updateId: string; version: string; state: 'queued' | 'downloading' | 'verifying' | 'installing' | 'rebooting' | 'healthy' | 'rolled-back' | 'failed'; bytes?: number; total?: number; reason?: string; runningVersion: string; slot: string; at: number }
export interface UpdateView { available: boolean; runningVersion: string; slot: string | null; latest: UpdateProgress | null }
export interface DiagnosticCheck { name: string; target: string; ok: boolean; message: string; durationMs: number }

/** An API refusal: `message` says what to do; `field` names the form field it is about. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly field?: string) {
    super(message)
  }
}

let csrfToken: string | undefined
export function setCsrfToken(token: string | undefined): void {
  csrfToken = token
}

/** The CSRF header for a change sent outside api() (the bundle upload). */
export function csrfHeader(): Record<string, string> {
  return csrfToken ? { 'x-csrf-token': csrfToken } : {}
}

/** Called when the server says the session ended, so the app shows the sign-in page. */
let onSignedOut: () => void = () => undefined
export function whenSignedOut(listener: () => void): void {
  onSignedOut = listener
}

export async function api<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken
  let res: Response
  try {
    res = await fetch(`/api${path}`, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  } catch {
    throw new ApiError(0, 'NETWORK', 'The box did not answer: check that this computer is still on the box\'s network, then try again.')
  }
  const text = await res.text()
  let json: unknown
  try {
    json = text ? JSON.parse(text) : {}
  } catch {
    throw new ApiError(res.status, 'BAD_ANSWER', `The box answered something unexpected (HTTP ${res.status}): reload the page.`)
  }
  if (!res.ok) {
    const error = (json as { error?: { code?: string; message?: string; field?: string } }).error
    if (res.status === 401 && error?.code === 'WEB_SIGNED_OUT') onSignedOut()
    throw new ApiError(res.status, error?.code ?? 'HTTP', error?.message ?? `The box refused (HTTP ${res.status}).`, error?.field)
  }
  return json as T
}

export function describeError(err: unknown): ApiError {
  return err instanceof ApiError ? err : new ApiError(0, 'CLIENT', (err as Error).message)
}
