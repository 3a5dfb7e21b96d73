/**
 * Turns msal-node and graph-client failures into GraphApiError with a stable code and, for anything the
 * tenant admin must fix, a message that says what to do and where in the Entra admin center.
 * Pure functions: no I/O, so the wording can be checked without a network.
 */
import { GraphApiError } from './types.js'

export interface ErrorContext {
  tenantId: string
  clientId: string
  /** Used when a 429 carries no Retry-After. */
  defaultRetryAfterMs: number
  nowMs: number
  /** Thumbprints (hex) of the certificate credential, when the client uses one. */
  certificate?: { thumbprintSha1: string; thumbprintSha256: string } | undefined
}

const APP = (ctx: ErrorContext): string => `Entra ID → App registrations → the app with client id ${ctx.clientId}`
const PERMISSIONS = 'Presence.ReadWrite.All and User.Read.All (type: Application)'

/**
 * AADSTS codes we can explain. Source: the error_codes Entra returns (our simulator emits the same ones).
 * Anything else stays GRAPH_AUTH with Entra's own description.
 */
function explainAadsts(code: string, ctx: ErrorContext): string | undefined {
  switch (code) {
    case '7000215':
      return (
        `the client secret was rejected: create a new secret in ${APP(ctx)} → Certificates & secrets and update ` +
        'the relay config (paste the secret Value, not the Secret ID)'
      )
    case '7000222':
      return `the client secret has expired: create a new secret in ${APP(ctx)} → Certificates & secrets and update the relay config`
    case '700027':
      return ctx.certificate === undefined
        ? `the client assertion was rejected: check the certificate credential of ${APP(ctx)}`
        : `the certificate was rejected: upload the certificate with thumbprint ${ctx.certificate.thumbprintSha1} ` +
            `(SHA-256 ${ctx.certificate.thumbprintSha256}) to the app registration's Certificates & secrets ` +
            `(${APP(ctx)} → Certificates & secrets → Certificates), or check the private key matches the certificate`
    case '700024':
      return 'the client assertion was outside its valid time range: check the relay host\'s clock (NTP)'
    case '7000216':
      return 'no client secret is configured: add the app\'s client secret to the relay config'
    case '700016':
      return (
        `the app ${ctx.clientId} does not exist in tenant ${ctx.tenantId}: check the tenant id and client id in the ` +
        'relay config against Entra ID → App registrations → Overview'
      )
    case '90002':
      return `tenant ${ctx.tenantId} was not found: check the tenant id (Directory ID) in the relay config`
    case '65001':
      return `the app has no admin consent: in ${APP(ctx)} → API permissions, add ${PERMISSIONS} and click "Grant admin consent"`
    case '1002012':
    case '70011':
      return 'the token request used an invalid scope: the relay must request https://graph.microsoft.com/.default'
    default:
      return undefined
  }
}

interface MsalLikeError {
  name: string
  errorCode: string
  errorMessage: string
  errorNo?: string | number
  status?: number
}

function isMsalError(err: unknown): err is MsalLikeError {
  return (
    err instanceof Error &&
    typeof (err as Partial<MsalLikeError>).errorCode === 'string' &&
    typeof (err as Partial<MsalLikeError>).errorMessage === 'string'
  )
}

/** What the network layer saw when msal only reports a bare code (see fetch-network-client.ts). */
export interface IdentityFailureHint {
  url: string
  status: number | undefined
  aadsts: string | undefined
  cause: string | undefined
}

/** A failure while acquiring the app token (msal-node). */
export function fromTokenError(err: unknown, ctx: ErrorContext, hint?: IdentityFailureHint): GraphApiError {
  if (err instanceof GraphApiError) return err
  if (!isMsalError(err)) {
    return new GraphApiError('GRAPH_UNAVAILABLE', `getting a Graph token failed: ${errorText(err)}`)
  }
  const status = err.status ?? hint?.status
  const aadsts =
    err.errorNo !== undefined ? String(err.errorNo) : (/AADSTS(\d+)/.exec(err.errorMessage)?.[1] ?? hint?.aadsts)
  const explained = aadsts === undefined ? undefined : explainAadsts(aadsts, ctx)
  if (explained !== undefined) return new GraphApiError('GRAPH_AUTH', `Microsoft Entra ID: ${explained}`, status)
  if (err.errorCode === 'network_error' || err.errorCode === 'endpoints_resolution_error') {
    // Discovery answered 4xx: the authority (host or tenant) is wrong, which waiting will not fix.
    if (hint?.status !== undefined && hint.status >= 400 && hint.status < 500) {
      return new GraphApiError(
        'GRAPH_AUTH',
        `Microsoft Entra ID rejected ${hint.url} with HTTP ${hint.status}: check the tenant id and authority host in the relay config`,
        hint.status,
      )
    }
    const detail = hint === undefined ? err.errorCode : `${hint.url}: ${hint.cause ?? `HTTP ${String(hint.status)}`}`
    return new GraphApiError('GRAPH_UNAVAILABLE', `the Entra ID token endpoint is unreachable (${detail})`, status)
  }
  if (status === 429) {
    return new GraphApiError('GRAPH_THROTTLED', 'Entra ID throttled the token request', 429, ctx.defaultRetryAfterMs)
  }
  if (status !== undefined && status >= 500) {
    return new GraphApiError('GRAPH_UNAVAILABLE', `the Entra ID token endpoint failed with HTTP ${status}`, status)
  }
  if (err.errorCode === 'consent_required' || err.errorCode === 'invalid_grant') {
    return new GraphApiError(
      'GRAPH_AUTH',
      `Microsoft Entra ID: the app has no admin consent: in ${APP(ctx)} → API permissions, add ${PERMISSIONS} and click "Grant admin consent"`,
      status,
    )
  }
  return new GraphApiError('GRAPH_AUTH', `Microsoft Entra ID refused the token request (${err.errorCode}): ${firstLine(err.errorMessage)}`, status)
}

interface GraphErrorLike {
  statusCode: number
  code: string | null
  message: string
  headers?: { get(name: string): string | null }
}

function isGraphError(err: unknown): err is GraphErrorLike {
  return err instanceof Error && typeof (err as Partial<GraphErrorLike>).statusCode === 'number'
}

/** A failure of a Graph call (graph-client's GraphError, or anything thrown underneath it). */
export function fromGraphError(err: unknown, operation: string, ctx: ErrorContext): GraphApiError {
  if (err instanceof GraphApiError) return err
  if (!isGraphError(err)) {
    return new GraphApiError('GRAPH_UNAVAILABLE', `${operation}: Microsoft Graph is unreachable: ${errorText(err)}`)
  }
  const status = err.statusCode
  const code = err.code ?? 'unknown'
  const retryAfterMs = parseRetryAfter(err.headers?.get('retry-after') ?? null, ctx.nowMs)
  // graph-client reports transport failures (DNS, TLS, refused, timeout) with statusCode -1.
  if (status <= 0) {
    return new GraphApiError('GRAPH_UNAVAILABLE', `${operation}: Microsoft Graph is unreachable: ${err.message}`)
  }
  if (status === 401) {
    return new GraphApiError(
      'GRAPH_AUTH',
      `${operation}: Microsoft Graph rejected the app token (${code}: ${err.message}); check the tenant id and client id in the relay config`,
      status,
    )
  }
  if (status === 403) {
    return new GraphApiError(
      'GRAPH_AUTH',
      `${operation}: Microsoft Graph denied access (${code}): in ${APP(ctx)} → API permissions, add ${PERMISSIONS} ` +
        'and click "Grant admin consent"',
      status,
    )
  }
  if (status === 429) {
    return new GraphApiError(
      'GRAPH_THROTTLED',
      `${operation}: Microsoft Graph throttled the request`,
      status,
      retryAfterMs ?? ctx.defaultRetryAfterMs,
    )
  }
  if (status >= 500) {
    return new GraphApiError('GRAPH_UNAVAILABLE', `${operation}: Microsoft Graph failed with HTTP ${status} (${code})`, status, retryAfterMs)
  }
  return new GraphApiError('GRAPH_REQUEST', `${operation}: Microsoft Graph answered HTTP ${status} (${code}): ${err.message}`, status)
}

/** Retry-After is seconds (possibly fractional, e.g. "2.128") or an HTTP date. */
export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null || value.trim() === '') return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds * 1000))
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs)
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text
}
