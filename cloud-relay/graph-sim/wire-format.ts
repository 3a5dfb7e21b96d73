/**
 * Wire shapes of the simulated services, as pure functions: Graph and Entra ID error bodies, the presence
 * and user JSON, paging tokens. Sources: research/graph-presence.md §2, §4, §5, §7.
 */
import type { PresenceSnapshot } from './presence-store.js'
import type { SimulatedUser } from './simulator-types.js'

export interface RequestIds {
  requestId: string
  clientRequestId: string
}

/** Graph's error body (§7: graph-client's GraphErrorHandler reads code, message, innerError.request-id). */
export function graphErrorBody(code: string, message: string, ids: RequestIds, nowMs: number): unknown {
  return {
    error: {
      code,
      message,
      innerError: {
        date: new Date(nowMs).toISOString().slice(0, 19),
        'request-id': ids.requestId,
        'client-request-id': ids.clientRequestId,
      },
    },
  }
}

/** The 429 body exactly as in Graph's throttling docs (§4). */
export function throttledBody(ids: RequestIds, nowMs: number): unknown {
  return {
    error: {
      code: 'TooManyRequests',
      innerError: {
        code: '429',
        date: new Date(nowMs).toISOString().slice(0, 19),
        message: 'Please retry after',
        'request-id': ids.requestId,
        'client-request-id': ids.clientRequestId,
        status: '429',
      },
      message: 'Please retry again later.',
    },
  }
}

/** Entra ID's OAuth error body; msal-node turns error_codes[0] into ServerError.errorNo. */
export function aadErrorBody(
  error: string,
  code: number,
  description: string,
  ids: RequestIds,
  nowMs: number,
  baseUrl: string,
): unknown {
  const timestamp = new Date(nowMs).toISOString().replace('T', ' ').slice(0, 19) + 'Z'
  return {
    error,
    error_description:
      `AADSTS${code}: ${description} Trace ID: ${ids.requestId} Correlation ID: ${ids.clientRequestId} ` +
      `Timestamp: ${timestamp}`,
    error_codes: [code],
    timestamp,
    trace_id: ids.requestId,
    correlation_id: ids.clientRequestId,
    error_uri: `${baseUrl}/error?code=${code}`,
  }
}

const USER_DEFAULT_PROPERTIES = [
  'businessPhones',
  'displayName',
  'givenName',
  'jobTitle',
  'mail',
  'mobilePhone',
  'officeLocation',
  'preferredLanguage',
  'surname',
  'userPrincipalName',
  'id',
]

/** 'microsoft.graph.setPresence' and 'setpresence' both name setPresence. */
export function normaliseAction(raw: string | undefined): string {
  const name = (raw ?? '').replace(/^microsoft\.graph\./i, '')
  const known = ['setPresence', 'clearPresence', 'setUserPreferredPresence', 'clearUserPreferredPresence', 'getPresencesByUserId']
  return known.find((k) => k.toLowerCase() === name.toLowerCase()) ?? name
}

export function presenceJson(id: string, p: PresenceSnapshot): Record<string, unknown> {
  return {
    id,
    availability: p.availability,
    activity: p.activity,
    statusMessage: null,
    outOfOfficeSettings: { message: null, isOutOfOffice: false },
    sequenceNumber: p.sequenceNumber,
  }
}

export function parseSelect(text: string | undefined): readonly string[] | undefined {
  if (text === undefined) return undefined
  const fields = text.split(',').map((f) => f.trim()).filter((f) => f !== '')
  return fields.length === 0 ? undefined : fields
}

export function projectUser(user: SimulatedUser, select: readonly string[] | undefined): Record<string, unknown> {
  const full: Record<string, unknown> = {
    businessPhones: [],
    displayName: user.displayName,
    givenName: null,
    jobTitle: null,
    mail: user.mail,
    mobilePhone: null,
    officeLocation: null,
    preferredLanguage: null,
    surname: null,
    userPrincipalName: user.userPrincipalName,
    id: user.id,
    // Not default properties: returned only when $select names them (research §5).
    accountEnabled: user.accountEnabled,
    department: user.department,
    companyName: user.companyName,
    proxyAddresses: [...user.proxyAddresses],
    otherMails: [...user.otherMails],
  }
  full['jobTitle'] = user.jobTitle
  full['officeLocation'] = user.officeLocation
  const fields = select ?? USER_DEFAULT_PROPERTIES
  const out: Record<string, unknown> = {}
  for (const field of fields) {
    const key = Object.keys(full).find((k) => k.toLowerCase() === field.toLowerCase())
    // Properties the simulator does not model come back as null rather than being dropped.
    out[key ?? field] = key === undefined ? null : full[key]
  }
  return out
}

export function encodeSkipToken(offset: number): string {
  return Buffer.from(JSON.stringify({ o: offset })).toString('base64url')
}

export function decodeSkipToken(token: string): number | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'))
    const offset = isRecord(parsed) ? parsed['o'] : undefined
    return typeof offset === 'number' && Number.isInteger(offset) && offset >= 0 ? offset : undefined
  } catch {
    return undefined
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
