/**
 * Rich notifications carry `validationTokens`: one JWT per app and tenant in the POST, issued by Entra ID for
 * Graph's change-notification publisher (research §3). A POST counts as Graph's only if one of its tokens has
 * a valid signature (the authority's JWKS), has not expired, has `aud` = our app's client id, `tid` = the
 * tenant, and `azp` (v2) or `appid` (v1) = Graph's publisher app id. Verified tokens are cached until they
 * expire, so a busy webhook verifies each token once.
 */
import { createRemoteJWKSet, customFetch, jwtVerify, type JWTVerifyGetKey } from 'jose'
import type { Dispatcher } from 'undici'

export const GRAPH_NOTIFICATION_PUBLISHER = '0bf30f3b-4a52-48df-9a82-234910c4a086'

export interface VerifierTenant {
  /** The relay's tenant id. */
  id: string
  entraTenantId: string
  clientId: string
}

export class ValidationTokenVerifier {
  readonly #tenants: Map<string, VerifierTenant & { jwks: JWTVerifyGetKey; issuers: string[] }>
  readonly #good = new Map<string, number>()

  constructor(options: { authorityHost: string; tenants: readonly VerifierTenant[]; dispatcher?: Dispatcher | undefined }) {
    const host = options.authorityHost.replace(/\/+$/, '')
    const dispatcher = options.dispatcher
    this.#tenants = new Map(options.tenants.map((t) => [t.id, {
      ...t,
      jwks: createRemoteJWKSet(new URL(`${host}/${t.entraTenantId}/discovery/v2.0/keys`), {
        ...(dispatcher === undefined ? {} : { [customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, dispatcher } as RequestInit) }),
      }),
      // v2 tokens name the authority; v1 tokens the STS.
      issuers: [`${host}/${t.entraTenantId}/v2.0`, `https://sts.windows.net/${t.entraTenantId}/`],
    }]))
  }

  /** undefined when the tokens prove the POST comes from Graph for this tenant; else why not. */
  async check(tenantId: string, tokens: unknown): Promise<string | undefined> {
    const tenant = this.#tenants.get(tenantId)
    if (tenant === undefined) return 'the tenant has no Graph app'
    if (!Array.isArray(tokens) || tokens.length === 0) return 'it carries no validationTokens (Graph sends them with every rich notification)'
    const now = Date.now()
    let last = 'no validation token is for this app'
    for (const token of tokens) {
      if (typeof token !== 'string') continue
      const cacheKey = `${tenantId}\0${token}`
      const until = this.#good.get(cacheKey)
      if (until !== undefined && until > now) return undefined
      try {
        const { payload } = await jwtVerify(token, tenant.jwks, { audience: tenant.clientId, issuer: tenant.issuers, clockTolerance: 300 })
        const caller = payload['azp'] ?? payload['appid']
        if (caller !== GRAPH_NOTIFICATION_PUBLISHER) {
          last = `a validation token was issued to ${String(caller)}, not to Graph's notification publisher`
          continue
        }
        if (payload['tid'] !== undefined && String(payload['tid']).toLowerCase() !== tenant.entraTenantId.toLowerCase()) {
          last = 'a validation token is for another tenant'
          continue
        }
        if (this.#good.size > 1000) this.#good.clear()
        this.#good.set(cacheKey, (payload.exp ?? 0) * 1000)
        return undefined
      } catch (err) {
        last = `a validation token failed verification (${(err as Error).message})`
      }
    }
    return last
  }
}
