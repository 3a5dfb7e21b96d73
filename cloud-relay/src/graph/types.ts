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

export interface GraphPresenceApi {
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
