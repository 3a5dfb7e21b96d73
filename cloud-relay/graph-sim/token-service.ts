/**
 * Signs and verifies the simulator's app-only access tokens (RS256, like Entra ID).
 * The caller passes the time, so tests can age tokens through the simulator's injected clock.
 */
import { randomUUID } from 'node:crypto'
import { SignJWT, errors, exportJWK, generateKeyPair, jwtVerify, type JWK, type JWTPayload } from 'jose'

export interface AppTokenClaims {
  tenantId: string
  appId: string
  /** Object id of the app's service principal in the tenant. */
  servicePrincipalId: string
  roles: readonly string[]
}

export interface VerifiedAppToken {
  appId: string
  tenantId: string
  roles: readonly string[]
  /** Delegated scopes (`scp`); empty for app-only tokens. */
  scopes: readonly string[]
  /** The signed-in user (`oid`) of a delegated token; undefined for app-only tokens. */
  userId: string | undefined
  /** Token expiry, epoch ms. */
  expiresAt: number
}

export interface DelegatedTokenClaims {
  tenantId: string
  appId: string
  userId: string
  userPrincipalName: string
  displayName: string
  scopes: readonly string[]
}

/** Why a token was rejected, phrased like Graph's InvalidAuthenticationToken messages. */
export class TokenRejected extends Error {
  override readonly name = 'TokenRejected'
}

type SigningKeys = Awaited<ReturnType<typeof generateKeyPair>>

export const GRAPH_AUDIENCE = 'https://graph.microsoft.com'

export class TokenService {
  private keys: SigningKeys | undefined
  private jwk: JWK | undefined
  private readonly kid = randomUUID()

  constructor(private readonly issuer: () => string) {}

  /** Generates the signing key (idempotent). Native RSA keygen: tens of milliseconds. */
  async init(): Promise<void> {
    if (this.keys !== undefined) return
    const keys = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true })
    this.jwk = { ...(await exportJWK(keys.publicKey)), kid: this.kid, use: 'sig', alg: 'RS256' }
    this.keys = keys
  }

  jwks(): { keys: JWK[] } {
    return { keys: this.jwk === undefined ? [] : [this.jwk] }
  }

  async issue(claims: AppTokenClaims, nowMs: number, lifetimeSeconds: number): Promise<string> {
    const keys = this.requireKeys()
    const iat = Math.floor(nowMs / 1000)
    const payload: JWTPayload & Record<string, unknown> = {
      // Graph app tokens carry both spellings of the caller: `appid` (v1) and `azp` (v2).
      appid: claims.appId,
      azp: claims.appId,
      appidacr: '1',
      idtyp: 'app',
      oid: claims.servicePrincipalId,
      sub: claims.servicePrincipalId,
      tid: claims.tenantId,
      ver: '1.0',
      uti: randomUUID(),
      ...(claims.roles.length > 0 ? { roles: [...claims.roles] } : {}),
    }
    return new SignJWT(payload)
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: this.kid })
      .setIssuer(this.issuer())
      .setAudience(GRAPH_AUDIENCE)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + lifetimeSeconds)
      .setJti(randomUUID())
      .sign(keys.privateKey)
  }

  /** A delegated Graph access token: `scp`, the user's `oid`, no `roles`. */
  async issueDelegated(claims: DelegatedTokenClaims, nowMs: number, lifetimeSeconds: number): Promise<string> {
    const iat = Math.floor(nowMs / 1000)
    const payload: JWTPayload & Record<string, unknown> = {
      appid: claims.appId,
      azp: claims.appId,
      appidacr: '0',
      idtyp: 'user',
      oid: claims.userId,
      sub: claims.userId,
      tid: claims.tenantId,
      upn: claims.userPrincipalName,
      unique_name: claims.userPrincipalName,
      name: claims.displayName,
      scp: claims.scopes.join(' '),
      ver: '1.0',
      uti: randomUUID(),
    }
    return this.sign(payload, GRAPH_AUDIENCE, iat, iat + lifetimeSeconds)
  }

  /** The OpenID id_token msal needs to build an account (it does not verify it). */
  async issueIdToken(claims: DelegatedTokenClaims, nowMs: number, lifetimeSeconds: number): Promise<string> {
    const iat = Math.floor(nowMs / 1000)
    return this.sign(
      {
        oid: claims.userId,
        sub: claims.userId,
        tid: claims.tenantId,
        preferred_username: claims.userPrincipalName,
        name: claims.displayName,
        ver: '2.0',
      },
      claims.appId,
      iat,
      iat + lifetimeSeconds,
    )
  }

  /** Any claims with this key (validation tokens of rich notifications). */
  async sign(payload: JWTPayload & Record<string, unknown>, audience: string, iat: number, exp: number): Promise<string> {
    const keys = this.requireKeys()
    return new SignJWT(payload)
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: this.kid })
      .setIssuer(this.issuer())
      .setAudience(audience)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(keys.privateKey)
  }

  async verify(token: string, nowMs: number, tenantId: string): Promise<VerifiedAppToken> {
    const keys = this.requireKeys()
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, keys.publicKey, {
        algorithms: ['RS256'],
        issuer: this.issuer(),
        audience: GRAPH_AUDIENCE,
        currentDate: new Date(nowMs),
      }))
    } catch (err) {
      if (err instanceof errors.JWTExpired) throw new TokenRejected('Lifetime validation failed, the token is expired.')
      if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'aud') {
        throw new TokenRejected('Access token validation failure. Invalid audience.')
      }
      if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) {
        throw new TokenRejected('IDX14100: JWT is not well formed.')
      }
      throw new TokenRejected('Access token validation failure.')
    }
    if (payload['tid'] !== tenantId) throw new TokenRejected('Access token validation failure. Invalid tenant.')
    const appId = payload['appid']
    if (typeof appId !== 'string') throw new TokenRejected('Access token validation failure.')
    const roles = Array.isArray(payload['roles'])
      ? payload['roles'].filter((r): r is string => typeof r === 'string')
      : []
    const scp = payload['scp']
    const scopes = typeof scp === 'string' ? scp.split(' ').filter((x) => x !== '') : []
    const oid = payload['oid']
    const userId = payload['idtyp'] === 'user' && typeof oid === 'string' ? oid : undefined
    return { appId, tenantId, roles, scopes, userId, expiresAt: (payload.exp ?? 0) * 1000 }
  }

  private requireKeys(): SigningKeys {
    if (this.keys === undefined) throw new Error('TokenService.init() was not called')
    return this.keys
  }
}
