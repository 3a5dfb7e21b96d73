/**
 * What the relay needs from Microsoft Graph. The implementation uses the real @azure/msal-node
 * (client credentials) and @microsoft/microsoft-graph-client; tests point both at the Graph simulator.
 */

export interface PresenceReading {
  userId: string
  availability: string
  activity: string
}

/** The five pairs Graph accepts in setPresence. */
export type SettablePresence =
  | { availability: 'Available'; activity: 'Available' }
  | { availability: 'Busy'; activity: 'InACall' }
  | { availability: 'Busy'; activity: 'InAConferenceCall' }
  | { availability: 'Away'; activity: 'Away' }
  | { availability: 'DoNotDisturb'; activity: 'Presenting' }

export interface GraphUser {
  id: string
  displayName: string
  mail: string | null
  userPrincipalName: string
}

/** One presence write of our app's session: set (or refresh) it, or clear it. */
export type PresenceWrite =
  | { kind: 'set'; userId: string; presence: SettablePresence; expirationMinutes: number }
  | { kind: 'clear'; userId: string }

/** What Graph answered to one write of a batch. */
export type PresenceWriteResult =
  | { ok: true; outcome: 'set' | 'cleared' | 'absent' }
  | { ok: false; error: GraphApiError }

export interface GraphPresenceApi {
  /**
   * Sends up to 20 writes as one JSON batch (`POST /$batch`); one result per write, in the writes' order.
   * Rejects only when the batch as a whole failed (throttled, unavailable, token); each inner failure,
   * including an inner 429 with its Retry-After, comes back as that write's result. Optional: without it a
   * caller sends the writes one by one.
   */
  writePresenceBatch?(writes: readonly PresenceWrite[]): Promise<PresenceWriteResult[]>

  /** Sets (or refreshes) our app's presence session for the user. `expirationMinutes` in 5..240. */
  setPresence(userId: string, presence: SettablePresence, expirationMinutes: number): Promise<void>
  /** Clears our app's session. 'absent' when Graph answered 404 (nothing to clear). */
  clearPresence(userId: string): Promise<'cleared' | 'absent'>
  /** Reads presence for any number of users (chunked at 650 ids per request). */
  getPresences(userIds: readonly string[]): Promise<PresenceReading[]>
  /** Looks a user up by object id, UPN or e-mail; undefined when Graph answers 404. */
  findUser(idOrUpn: string): Promise<GraphUser | undefined>
}

export class GraphApiError extends Error {
  constructor(
    /** Stable code: GRAPH_AUTH (token/consent/credentials), GRAPH_THROTTLED, GRAPH_REQUEST, GRAPH_UNAVAILABLE. */
    readonly code: string,
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message)
    this.name = 'GraphApiError'
  }
}

/** An Entra user as the import reads it ($select of the attributes the relay maps and filters on). */
export interface DirectoryUser {
  id: string
  displayName: string
  mail: string | null
  userPrincipalName: string
  accountEnabled: boolean
  department: string | null
  /** 'SMTP:primary@…' / 'smtp:alias@…' and other address types, as Graph returns them. */
  proxyAddresses: string[]
}

export interface UserListQuery {
  /** A Graph $filter expression (sent as an advanced query: ConsistencyLevel: eventual + $count=true). */
  filter?: string | undefined
  /** $top, 1..999. Default 999: fewest round trips. */
  pageSize?: number | undefined
}

export interface UserListProgress {
  pages: number
  fetched: number
  /** @odata.count of the whole result, when Graph sent it. */
  total: number | undefined
}

/** Directory reads for user import (app-only: User.Read.All, GroupMember.Read.All). */
export interface GraphDirectoryApi {
  /** Every user matching the query, following @odata.nextLink; onPage is called after each page. */
  listUsers(query: UserListQuery, onPage?: (progress: UserListProgress) => void): Promise<DirectoryUser[]>
  /** Object ids of the users in a group, nested groups included (transitive). */
  listGroupUserIds(groupId: string): Promise<string[]>
}
