/**
 * Delegated sign-in on the simulated token service: the device code flow, refresh tokens and the user and
 * consent state that decide whether a refresh still works. Entra's behaviour as far as research §6 and
 * msal-node 7's DeviceCodeClient / RefreshTokenClient tell; error codes and their confidence: README.md.
 *
 * Refresh tokens are opaque, rotate on every use (the used one stops working), and die after a period of
 * inactivity on the simulator clock, after revokeSignInSessions(), while the user is disabled, or when the
 * app loses the delegated permission.
 */
import { randomBytes } from 'node:crypto'
import { DeviceCodeStore, type DeviceCodeGrant } from './device-code.js'
import type { SimulatedApp, SimulatedUser } from './simulator-types.js'
import { GRAPH_AUDIENCE, type TokenService } from './token-service.js'

export const DEVICE_CODE_GRANT_TYPES = new Set(['device_code', 'urn:ietf:params:oauth:grant-type:device_code'])
const OIDC_SCOPES = new Set(['openid', 'profile', 'offline_access', 'email'])
const DAY_MS = 86_400_000

export interface DelegatedDeps {
  tenantId: string
  /** Simulator clock (with advance()): device code expiry, refresh-token inactivity, revocation. */
  now(): number
  /** Token clock: iat/exp of issued tokens. */
  tokenNow(): number
  tokens: TokenService
  app(clientId: string): SimulatedApp | undefined
  user(userId: string): SimulatedUser | undefined
  verificationUri: () => string
  accessTokenLifetimeSeconds: number
  refreshTokenInactiveMs: number | undefined
  deviceCodeLifetimeSeconds: number | undefined
  deviceCodeIntervalSeconds: number | undefined
}

/** An OAuth error as Entra sends it; the simulator renders it with aadErrorBody. */
export interface OAuthFailure {
  ok: false
  status: number
  error: string
  code: number
  description: string
  suberror?: string
}

export type OAuthResult = { ok: true; body: Record<string, unknown>; userId?: string } | OAuthFailure

interface RefreshGrant {
  clientId: string
  userId: string
  scopes: readonly string[]
  /** When the person signed in (kept across rotations). */
  authTime: number
  lastUsedAt: number
  /** Set by revokeSignInSessions (a flag, not a time comparison: tests often freeze the clock). */
  revokedAt: number | undefined
}

interface UserSignInState {
  disabled: boolean
  tokensValidFrom: number
}

function fail(status: number, error: string, code: number, description: string, suberror?: string): OAuthFailure {
  return { ok: false, status, error, code, description, ...(suberror === undefined ? {} : { suberror }) }
}

/** 'https://graph.microsoft.com/Presence.Read.All' → 'Presence.Read.All'; OIDC scopes dropped. */
export function graphScopes(scopeParam: string | undefined): string[] {
  return (scopeParam ?? '')
    .split(' ')
    .filter((s) => s !== '' && !OIDC_SCOPES.has(s.toLowerCase()))
    .map((s) => (s.toLowerCase().startsWith(`${GRAPH_AUDIENCE}/`) ? s.slice(GRAPH_AUDIENCE.length + 1) : s))
}

export class DelegatedIdentity {
  readonly deviceCodes = new DeviceCodeStore()
  private readonly refreshTokens = new Map<string, RefreshGrant>()
  private readonly userState = new Map<string, UserSignInState>()

  constructor(private readonly deps: DelegatedDeps) {}

  // ----- admin and test actions -----------------------------------------------------------------------

  approve(userCode: string, user: SimulatedUser): DeviceCodeGrant {
    return this.deviceCodes.approve(userCode, user.id, this.deps.now())
  }

  decline(userCode: string): DeviceCodeGrant {
    return this.deviceCodes.decline(userCode, this.deps.now())
  }

  /** Like "Revoke sessions" in Entra: every refresh token issued before now stops working (AADSTS50173). */
  revokeSignInSessions(userId: string): void {
    const now = this.deps.now()
    this.state(userId).tokensValidFrom = now
    for (const grant of this.refreshTokens.values()) if (grant.userId === userId) grant.revokedAt = now
  }

  setDisabled(userId: string, disabled: boolean): void {
    this.state(userId).disabled = disabled
  }

  isDisabled(userId: string): boolean {
    return this.userState.get(userId)?.disabled ?? false
  }

  // ----- endpoints ------------------------------------------------------------------------------------

  /** POST /{tenant}/oauth2/v2.0/devicecode */
  deviceCode(form: Record<string, string | undefined>): OAuthResult {
    const clientId = form['client_id']?.toLowerCase()
    if (clientId === undefined) {
      return fail(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'client_id'.")
    }
    const app = this.deps.app(clientId)
    if (app === undefined) return this.unknownApp(clientId)
    const scopes = graphScopes(form['scope'])
    if (scopes.length === 0) {
      return fail(400, 'invalid_scope', 70011, 'The provided request must include a \'scope\' input parameter.')
    }
    const lifetimeSeconds = this.deps.deviceCodeLifetimeSeconds ?? 900
    const grant = this.deviceCodes.create(clientId, scopes, this.deps.now(), lifetimeSeconds * 1000)
    const verificationUri = this.deps.verificationUri()
    return {
      ok: true,
      body: {
        user_code: grant.userCode,
        device_code: grant.deviceCode,
        verification_uri: verificationUri,
        expires_in: lifetimeSeconds,
        interval: this.deps.deviceCodeIntervalSeconds ?? 5,
        message:
          `To sign in, use a web browser to open the page ${verificationUri} and enter the code ${grant.userCode} ` +
          'to authenticate.',
      },
    }
  }

  /** grant_type device_code on /token. */
  async redeemDeviceCode(form: Record<string, string | undefined>): Promise<OAuthResult> {
    const client = this.client(form)
    if (!client.ok) return client
    const deviceCode = form['device_code']
    if (deviceCode === undefined) {
      return fail(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'device_code'.")
    }
    const poll = this.deviceCodes.poll(deviceCode, client.app.clientId, this.deps.now())
    switch (poll.outcome) {
      case 'pending':
        return fail(400, 'authorization_pending', 70016, 'OAuth 2.0 device flow error. Authorization is pending. Continue polling.')
      case 'expired':
        return fail(400, 'expired_token', 70020, 'The provided value for the input parameter \'device_code\' is not valid. This device code has expired.')
      case 'declined':
        return fail(400, 'authorization_declined', 70000, 'The end user denied the authorization request.')
      case 'unknown':
      case 'wrong-client':
      case 'redeemed':
        return fail(400, 'invalid_grant', 70000, 'The provided value for the input parameter \'device_code\' is not valid.')
      case 'approved': {
        const userId = poll.grant.userId ?? ''
        return this.issue(client.app, userId, poll.grant.scopes, this.deps.now())
      }
    }
  }

  /** grant_type refresh_token on /token. */
  async redeemRefreshToken(form: Record<string, string | undefined>): Promise<OAuthResult> {
    const client = this.client(form)
    if (!client.ok) return client
    const token = form['refresh_token']
    if (token === undefined) {
      return fail(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'refresh_token'.")
    }
    const grant = this.refreshTokens.get(token)
    if (grant === undefined || grant.clientId !== client.app.clientId) {
      // Assumption: a malformed, unknown, already-rotated or other app's token is 9002313 ("Invalid request").
      return fail(400, 'invalid_grant', 9002313, 'Invalid request. Request is malformed or invalid: the refresh token is not valid.')
    }
    const now = this.deps.now()
    const inactiveMs = this.deps.refreshTokenInactiveMs ?? 90 * DAY_MS
    if (now - grant.lastUsedAt > inactiveMs) {
      this.refreshTokens.delete(token)
      return fail(
        400,
        'invalid_grant',
        700082,
        `The refresh token has expired due to inactivity. The token was issued on ${new Date(grant.lastUsedAt).toISOString()} ` +
          `and was inactive for ${Math.round(inactiveMs / DAY_MS)}.00:00:00.`,
      )
    }
    if (grant.revokedAt !== undefined) {
      this.refreshTokens.delete(token)
      return fail(
        400,
        'invalid_grant',
        50173,
        `The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have ` +
          `changed or reset their password. The grant was issued on '${new Date(grant.authTime).toISOString()}' and the ` +
          `TokensValidFrom date (before which tokens are not valid) for this user is '${new Date(grant.revokedAt).toISOString()}'.`,
      )
    }
    const requested = graphScopes(form['scope'])
    const result = await this.issue(client.app, grant.userId, requested.length > 0 ? requested : grant.scopes, grant.authTime)
    // Rotation: the used token stops working only once a new one was handed out.
    if (result.ok) this.refreshTokens.delete(token)
    return result
  }

  // ----- internals ------------------------------------------------------------------------------------

  /** The calling app; a public client sends no credential, a confidential one its secret. */
  private client(form: Record<string, string | undefined>): { ok: true; app: SimulatedApp } | OAuthFailure {
    const clientId = form['client_id']?.toLowerCase()
    if (clientId === undefined) {
      return fail(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'client_id'.")
    }
    const app = this.deps.app(clientId)
    if (app === undefined) return this.unknownApp(clientId)
    const secret = form['client_secret']
    if (secret !== undefined) {
      if (app.clientSecret === '' || secret !== app.clientSecret) {
        return fail(401, 'invalid_client', 7000215, `Invalid client secret provided for app '${clientId}'.`)
      }
      return { ok: true, app }
    }
    if (form['client_assertion'] !== undefined) {
      // Certificate credentials are checked for client_credentials only; delegated grants accept the app here.
      return { ok: true, app }
    }
    if (!app.allowPublicClient) {
      return fail(
        401,
        'invalid_client',
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      )
    }
    return { ok: true, app }
  }

  private async issue(app: SimulatedApp, userId: string, requested: readonly string[], authTime: number): Promise<OAuthResult> {
    const user = this.deps.user(userId)
    if (user === undefined || this.isDisabled(userId)) {
      return fail(400, 'invalid_grant', 50057, 'The user account is disabled.')
    }
    const consented = new Set(app.delegatedScopes.map((s) => s.toLowerCase()))
    const wantsDefault = requested.some((s) => s.toLowerCase() === '.default')
    const scopes = wantsDefault ? [...app.delegatedScopes] : [...requested]
    const missing = scopes.filter((s) => !consented.has(s.toLowerCase()))
    if (missing.length > 0 || scopes.length === 0) {
      return fail(
        400,
        'invalid_grant',
        65001,
        `The user or administrator has not consented to use the application with ID '${app.clientId}' named ` +
          `'${app.displayName}'. Send an interactive authorization request for this user and resource. ` +
          `(missing delegated permission: ${missing.join(', ') || '(none consented)'})`,
        'consent_required',
      )
    }
    const now = this.deps.now()
    const claims = {
      tenantId: this.deps.tenantId,
      appId: app.clientId,
      userId: user.id,
      userPrincipalName: user.userPrincipalName,
      displayName: user.displayName,
      scopes,
    }
    const lifetime = this.deps.accessTokenLifetimeSeconds
    const accessToken = await this.deps.tokens.issueDelegated(claims, this.deps.tokenNow(), lifetime)
    const idToken = await this.deps.tokens.issueIdToken(claims, this.deps.tokenNow(), 3600)
    const refreshToken = `sim-rt.${randomBytes(48).toString('base64url')}`
    this.refreshTokens.set(refreshToken, {
      clientId: app.clientId,
      userId: user.id,
      scopes,
      authTime,
      lastUsedAt: now,
      revokedAt: undefined,
    })
    return {
      ok: true,
      userId: user.id,
      body: {
        token_type: 'Bearer',
        // Entra names Graph scopes without the resource prefix in the response.
        scope: [...scopes, 'openid', 'profile', 'offline_access'].join(' '),
        expires_in: lifetime,
        ext_expires_in: lifetime,
        access_token: accessToken,
        refresh_token: refreshToken,
        id_token: idToken,
        client_info: Buffer.from(JSON.stringify({ uid: user.id, utid: this.deps.tenantId })).toString('base64url'),
      },
    }
  }

  private unknownApp(clientId: string): OAuthFailure {
    return fail(
      400,
      'unauthorized_client',
      700016,
      `Application with identifier '${clientId}' was not found in the directory '${this.deps.tenantId}'.`,
    )
  }

  private state(userId: string): UserSignInState {
    let state = this.userState.get(userId)
    if (state === undefined) {
      state = { disabled: false, tokensValidFrom: 0 }
      this.userState.set(userId, state)
    }
    return state
  }
}
