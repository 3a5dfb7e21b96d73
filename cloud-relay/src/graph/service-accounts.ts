/**
 * Delegated sync service accounts (DESIGN §7): presence change notifications need a delegated token
 * (app-only presence subscriptions are "Not supported", research §0.1). An admin signs an account in once with
 * the device code flow; msal-node's token cache (refresh token inside) is kept sealed in the store, one cache
 * per account, and every later token comes from acquireTokenSilent.
 *
 * A refresh that Entra refuses (expired or revoked refresh token, disabled account, missing consent) moves the
 * account to `needs-sign-in` with the reason and what to do, writes an event-log entry and tells the
 * listeners, so the subscription manager hands its people to polling. Transient failures (network, 5xx, 429)
 * change nothing.
 */
import { randomUUID } from 'node:crypto'
import {
  PublicClientApplication,
  type AccountInfo,
  type AuthenticationResult,
  type DeviceCodeRequest,
  type ICachePlugin,
  type TokenCacheContext,
} from '@azure/msal-node'
import { AuthenticationHandlerOptions, Client, RetryHandlerOptions, type AuthenticationProvider, type GraphRequest } from '@microsoft/microsoft-graph-client'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import type { Clock } from '#kernel/clock.js'
import type { Sealer } from '../secrets/sealer.js'
import type { EventLogEntry } from '../store/relay-store.js'
import type { ServiceAccountRow, ServiceAccountState, SubscriptionStore } from '../store/subscription-store.js'
import { createFetchNetworkClient, type FetchNetworkClient } from './fetch-network-client.js'
import { fromGraphError } from './graph-errors.js'
import { createGraphDispatcher, msalAuthority, msalLoggerOptions } from './graph-transport.js'
import { GraphApiError } from './types.js'

/** Delegated scopes: reading presence (subscriptions) is all a service account needs. */
// Short names: Entra answers Graph scopes without the resource prefix, and msal only reuses a cached token
// whose scopes match the request's (with the full URI every call was a refresh).
export const SERVICE_ACCOUNT_SCOPES = ['Presence.Read.All']
const CACHE_PURPOSE = 'msal token cache'

export interface ServiceAccountTenant {
  /** The relay's tenant id (config tenants[].id). */
  id: string
  /** Entra directory id. */
  entraTenantId: string
  /** The app registration's client id (with "Allow public client flows" on). */
  clientId: string
}

export interface ServiceAccountsOptions {
  tenants: readonly ServiceAccountTenant[]
  authorityHost: string
  graphBaseUrl: string
  knownAuthority: boolean
  caPem?: string | undefined
  /** OpenID configuration JSON per Entra tenant id (spares msal the discovery request); optional. */
  authorityMetadata?: (entraTenantId: string) => string | undefined
  requestTimeoutMs?: number
}

export interface ServiceAccountsDeps {
  store: SubscriptionStore
  sealer: Sealer
  clock: Clock
  logger: Logger
  appendEvent(entry: EventLogEntry): Promise<void>
}

export interface ServiceAccountView {
  id: string
  tenantId: string
  username: string
  state: ServiceAccountState
  reason: string | null
  action: string | null
  createdAt: string
  updatedAt: string
}

export interface SignInView {
  id: string
  tenantId: string
  state: 'waiting' | 'signed-in' | 'failed' | 'cancelled'
  userCode: string
  verificationUri: string
  message: string
  expiresAt: string
  accountId: string | null
  error: string | null
}

/** A refused refresh: the account cannot get tokens until an admin acts. */
export class SignInRequiredError extends GraphApiError {
  constructor(readonly accountId: string, message: string) {
    super('GRAPH_SIGN_IN_REQUIRED', message, 400)
    this.name = 'SignInRequiredError'
  }
}

interface LoadedAccount {
  row: ServiceAccountRow
  app: PublicClientApplication
  network: FetchNetworkClient
  account: AccountInfo | undefined
}

interface PendingSignIn {
  view: SignInView
  request: DeviceCodeRequest
}

export class ServiceAccounts {
  readonly #options: ServiceAccountsOptions
  readonly #deps: ServiceAccountsDeps
  readonly #log: Logger
  readonly #dispatcher: Dispatcher | undefined
  readonly #accounts = new Map<string, LoadedAccount>()
  readonly #signIns = new Map<string, PendingSignIn>()
  readonly #listeners = new Set<(tenantId: string) => void>()
  readonly #timeoutMs: number

  constructor(options: ServiceAccountsOptions, deps: ServiceAccountsDeps) {
    this.#options = options
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'service-accounts' })
    this.#dispatcher = createGraphDispatcher(options.caPem)
    this.#timeoutMs = options.requestTimeoutMs ?? 15_000
  }

  /** Loads the accounts from the store. */
  async load(): Promise<void> {
    for (const row of await this.#deps.store.listAccounts()) {
      if (this.#tenant(row.tenantId) === undefined) continue
      this.#accounts.set(row.id, this.#build(row))
    }
  }

  async stop(): Promise<void> {
    for (const pending of this.#signIns.values()) {
      pending.request.cancel = true
      if (pending.view.state === 'waiting') pending.view.state = 'cancelled'
    }
    this.#listeners.clear()
    await this.#dispatcher?.close()
  }

  /** Called with the tenant id whenever an account is added, removed, or changes state. */
  onChange(listener: (tenantId: string) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  list(tenantId: string): ServiceAccountView[] {
    return [...this.#accounts.values()].filter((a) => a.row.tenantId === tenantId).map((a) => toView(a.row))
  }

  /** Accounts of a tenant that can get tokens, oldest first (shards are planned in this order). */
  usable(tenantId: string): string[] {
    return [...this.#accounts.values()].filter((a) => a.row.tenantId === tenantId && a.row.state === 'ok').map((a) => a.row.id)
  }

  get(accountId: string): ServiceAccountView | undefined {
    const a = this.#accounts.get(accountId)
    return a === undefined ? undefined : toView(a.row)
  }

  signIn(tenantId: string, signInId: string): SignInView | undefined {
    const pending = this.#signIns.get(signInId)
    return pending?.view.tenantId === tenantId ? pending.view : undefined
  }

  /**
   * Starts a device code sign-in; resolves with the code to show the admin once Entra has issued it. msal polls
   * in the background; a successful sign-in adds (or renews) the account.
   */
  async startSignIn(tenantId: string): Promise<SignInView> {
    const tenant = this.#tenant(tenantId)
    if (tenant === undefined) throw new GraphApiError('GRAPH_REQUEST', `tenant ${tenantId} has no Graph app configured: add tenants[].graph to the relay config`, 404)
    const network = createFetchNetworkClient(this.#dispatcher, this.#timeoutMs, this.#log)
    const app = this.#app(tenant, network, undefined)
    const id = randomUUID()
    let resolveCode!: (view: SignInView) => void
    const codeIssued = new Promise<SignInView>((resolve) => { resolveCode = resolve })
    const request: DeviceCodeRequest = {
      scopes: SERVICE_ACCOUNT_SCOPES,
      deviceCodeCallback: (response) => {
        const view: SignInView = {
          id,
          tenantId,
          state: 'waiting',
          userCode: response.userCode,
          verificationUri: response.verificationUri,
          message: response.message,
          expiresAt: new Date(this.#deps.clock.now() + response.expiresIn * 1000).toISOString(),
          accountId: null,
          error: null,
        }
        this.#signIns.set(id, { view, request })
        resolveCode(view)
      },
    }
    const done = app.acquireTokenByDeviceCode(request)
    void done.then(
      (result) => this.#signedIn(tenant, id, app, result),
      (err: unknown) => {
        const pending = this.#signIns.get(id)
        const message = describeSignInFailure(err, tenant, network)
        if (pending && pending.view.state === 'waiting') {
          pending.view.state = 'failed'
          pending.view.error = message
        }
        this.#log.warn({ tenantId, signInId: id, reason: message }, 'service account sign-in failed')
      },
    )
    // The device code request itself may fail (public client flows off, wrong tenant): report that at once.
    return Promise.race([
      codeIssued,
      done.then(
        () => codeIssued,
        (err: unknown) => { throw new GraphApiError('GRAPH_AUTH', describeSignInFailure(err, tenant, network), 502) },
      ),
    ])
  }

  async remove(tenantId: string, accountId: string): Promise<boolean> {
    const loaded = this.#accounts.get(accountId)
    if (loaded === undefined || loaded.row.tenantId !== tenantId) return false
    this.#accounts.delete(accountId)
    await this.#deps.store.deleteAccount(accountId)
    await this.#deps.appendEvent({ tenantId, kind: 'service-account.removed', message: `Service account ${loaded.row.username} was removed by an admin; its people are polled until another account takes them` })
    this.#notify(tenantId)
    return true
  }

  /**
   * An access token for the account (msal's cache, refreshed with the refresh token when needed).
   * Throws SignInRequiredError (and marks the account) when Entra refuses the refresh.
   */
  async token(accountId: string): Promise<string> {
    const loaded = this.#accounts.get(accountId)
    if (loaded === undefined) throw new GraphApiError('GRAPH_REQUEST', `service account ${accountId} is not known`, 404)
    if (loaded.row.state !== 'ok') throw new SignInRequiredError(accountId, loaded.row.reason ?? 'the account needs a new sign-in')
    const tenant = this.#tenant(loaded.row.tenantId)!
    let result: AuthenticationResult | null
    try {
      loaded.account ??= await this.#findAccount(loaded)
      if (loaded.account === undefined) throw Object.assign(new Error('no account in the token cache'), { errorCode: 'no_account_in_silent_request', errorMessage: 'no account in the token cache' })
      result = await loaded.app.acquireTokenSilent({ account: loaded.account, scopes: SERVICE_ACCOUNT_SCOPES })
    } catch (err) {
      const refusal = classifyRefresh(err, loaded.network)
      if (refusal === undefined) {
        throw new GraphApiError('GRAPH_UNAVAILABLE', `service account ${loaded.row.username}: getting a token failed: ${(err as Error).message}`)
      }
      const { reason, action } = explainRefusal(refusal, loaded.row, tenant)
      this.#log.debug({ accountId, errorCode: (err as MsalLike).errorCode, detail: refusal.text.split('\n')[0] }, 'token refresh refused')
      await this.#markNeedsSignIn(loaded, reason, action)
      throw new SignInRequiredError(accountId, `${reason}: ${action}`)
    }
    if (result === null || result.accessToken === '') throw new GraphApiError('GRAPH_AUTH', 'Microsoft Entra ID returned no access token')
    return result.accessToken
  }

  /** Graph calls on behalf of the account (subscriptions). */
  graph(accountId: string): DelegatedGraph {
    return new DelegatedGraph(this.#options.graphBaseUrl, this.#dispatcher, this.#timeoutMs, () => this.token(accountId), this.#deps.clock)
  }

  // ---- internals ----

  #tenant(tenantId: string): ServiceAccountTenant | undefined {
    return this.#options.tenants.find((t) => t.id === tenantId)
  }

  #notify(tenantId: string): void {
    for (const listener of this.#listeners) {
      try {
        listener(tenantId)
      } catch (err) {
        this.#log.error({ err }, 'service account listener failed')
      }
    }
  }

  #app(tenant: ServiceAccountTenant, network: FetchNetworkClient, cachePlugin: ICachePlugin | undefined): PublicClientApplication {
    return new PublicClientApplication({
      auth: {
        clientId: tenant.clientId,
        ...msalAuthority({
          authorityHost: this.#options.authorityHost,
          tenantId: tenant.entraTenantId,
          knownAuthority: this.#options.knownAuthority,
          authorityMetadata: this.#options.authorityMetadata?.(tenant.entraTenantId),
        }),
      },
      system: { networkClient: network, loggerOptions: msalLoggerOptions(this.#log) },
      ...(cachePlugin === undefined ? {} : { cache: { cachePlugin } }),
    })
  }

  /** One msal application per account, its cache loaded from and saved to the store (sealed). */
  #build(row: ServiceAccountRow): LoadedAccount {
    const tenant = this.#tenant(row.tenantId)!
    const network = createFetchNetworkClient(this.#dispatcher, this.#timeoutMs, this.#log)
    const entry: LoadedAccount = { row, network, account: undefined, app: undefined as unknown as PublicClientApplication }
    // msal-node expects the plugin to load the cache before every access (it does not keep it between calls
    // when a plugin is set: skipping the load made it refresh with an already-rotated refresh token).
    const plugin: ICachePlugin = {
      beforeCacheAccess: async (context: TokenCacheContext) => {
        // Throws SealError when the key changed: the message says what to do.
        context.tokenCache.deserialize(this.#deps.sealer.openText(entry.row.tokenCache, CACHE_PURPOSE))
      },
      afterCacheAccess: async (context: TokenCacheContext) => {
        if (!context.cacheHasChanged) return
        const sealed = this.#deps.sealer.seal(context.tokenCache.serialize(), CACHE_PURPOSE)
        entry.row = { ...entry.row, tokenCache: sealed }
        await this.#deps.store.saveTokenCache(entry.row.id, sealed, new Date(this.#deps.clock.now()))
      },
    }
    entry.app = this.#app(tenant, network, plugin)
    return entry
  }

  async #findAccount(loaded: LoadedAccount): Promise<AccountInfo | undefined> {
    const accounts = await loaded.app.getTokenCache().getAllAccounts()
    return accounts.find((a) => a.homeAccountId === loaded.row.homeAccountId) ?? accounts[0]
  }

  async #signedIn(tenant: ServiceAccountTenant, signInId: string, app: PublicClientApplication, result: AuthenticationResult | null): Promise<void> {
    const pending = this.#signIns.get(signInId)
    const account = result?.account ?? undefined
    if (!account) {
      if (pending) Object.assign(pending.view, { state: 'failed', error: 'Entra ID returned no account for the sign-in: try again' })
      return
    }
    try {
      const existing = [...this.#accounts.values()].find((a) => a.row.tenantId === tenant.id && a.row.homeAccountId === account.homeAccountId)
      const now = new Date(this.#deps.clock.now())
      const row = await this.#deps.store.upsertAccount({
        id: existing?.row.id ?? randomUUID(),
        tenantId: tenant.id,
        username: account.username,
        homeAccountId: account.homeAccountId,
        state: 'ok',
        reason: null,
        action: null,
        tokenCache: this.#deps.sealer.seal(app.getTokenCache().serialize(), CACHE_PURPOSE),
      }, now)
      this.#accounts.set(row.id, this.#build(row))
      if (pending) Object.assign(pending.view, { state: 'signed-in', accountId: row.id })
      await this.#deps.appendEvent({ tenantId: tenant.id, kind: 'service-account.signed-in', message: `Service account ${row.username} signed in; it now holds a presence subscription`, data: { accountId: row.id } })
      this.#log.info({ tenantId: tenant.id, accountId: row.id, username: row.username }, 'service account signed in')
      this.#notify(tenant.id)
    } catch (err) {
      if (pending) Object.assign(pending.view, { state: 'failed', error: `saving the account failed: ${(err as Error).message}` })
      this.#log.error({ err }, 'saving a signed-in service account failed')
    }
  }

  async #markNeedsSignIn(loaded: LoadedAccount, reason: string, action: string): Promise<void> {
    if (loaded.row.state === 'needs-sign-in' && loaded.row.reason === reason) return
    const now = new Date(this.#deps.clock.now())
    loaded.row = { ...loaded.row, state: 'needs-sign-in', reason, action }
    await this.#deps.store.setAccountState(loaded.row.id, 'needs-sign-in', reason, action, now)
    await this.#deps.appendEvent({
      tenantId: loaded.row.tenantId,
      kind: 'service-account.needs-sign-in',
      message: `Service account ${loaded.row.username} needs a new sign-in (${reason}); its people are polled meanwhile. ${action}`,
      data: { accountId: loaded.row.id },
    })
    this.#log.warn({ tenantId: loaded.row.tenantId, accountId: loaded.row.id, reason, action }, 'service account needs a new sign-in')
    this.#notify(loaded.row.tenantId)
  }
}

function toView(row: ServiceAccountRow): ServiceAccountView {
  return {
    id: row.id,
    tenantId: row.tenantId,
    username: row.username,
    state: row.state,
    reason: row.reason,
    action: row.action,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  }
}

type Refusal = { kind: 'expired' | 'revoked' | 'disabled' | 'consent' | 'mfa' | 'no-account' | 'other'; aadsts: string | undefined; text: string }

interface MsalLike { errorCode?: unknown; errorMessage?: unknown; subError?: unknown; status?: unknown }

/** undefined: a transient failure (network, 5xx, throttling) that must not cost the account its sign-in. */
function classifyRefresh(err: unknown, network: FetchNetworkClient): Refusal | undefined {
  const e = (err ?? {}) as MsalLike
  const code = typeof e.errorCode === 'string' ? e.errorCode : ''
  const text = typeof e.errorMessage === 'string' ? e.errorMessage : err instanceof Error ? err.message : String(err)
  const hint = network.lastFailure()
  const aadsts = /AADSTS(\d+)/.exec(text)?.[1] ?? hint?.aadsts
  if (code === 'no_account_in_silent_request' || code === 'no_tokens_found') return { kind: 'no-account', aadsts, text }
  if (hint !== undefined && hint.status === undefined) return undefined
  if (hint?.status !== undefined && (hint.status >= 500 || hint.status === 429)) return undefined
  if (code === 'network_error' || code === 'endpoints_resolution_error') return undefined
  switch (aadsts) {
    case '700082': case '70008': case '70043': case '700084': return { kind: 'expired', aadsts, text }
    case '50173': case '50133': case '50089': case '70000': return { kind: 'revoked', aadsts, text }
    case '50057': case '50053': case '50034': return { kind: 'disabled', aadsts, text }
    case '65001': case '65004': return { kind: 'consent', aadsts, text }
    case '50076': case '50079': case '50158': return { kind: 'mfa', aadsts, text }
    default: break
  }
  if (code === 'invalid_grant' || code === 'interaction_required' || code === 'consent_required' || code === 'login_required') return { kind: 'other', aadsts, text }
  return undefined
}

function explainRefusal(r: Refusal, row: ServiceAccountRow, tenant: ServiceAccountTenant): { reason: string; action: string } {
  const again = `sign in again: POST /api/v1/tenants/${tenant.id}/service-accounts/sign-in and enter the code as ${row.username}`
  const code = r.aadsts === undefined ? '' : ` (AADSTS${r.aadsts})`
  switch (r.kind) {
    case 'expired':
      return { reason: `the refresh token of ${row.username} has expired${code}`, action: again }
    case 'revoked':
      return { reason: `the refresh token of ${row.username} was revoked (password change or sessions revoked by an admin)${code}`, action: again }
    case 'disabled':
      return { reason: `the account ${row.username} is disabled or locked in Entra ID${code}`, action: `enable it (Entra ID → Users → ${row.username} → Account status), then ${again}; or sign in another account` }
    case 'consent':
      return { reason: `the app ${tenant.clientId} lacks consent for the delegated permission Presence.Read.All${code}`, action: `in Entra ID → App registrations → ${tenant.clientId} → API permissions, add Presence.Read.All (Delegated) and grant admin consent, then ${again}` }
    case 'mfa':
      return { reason: `Entra ID requires multi-factor authentication for ${row.username}${code}`, action: `exclude the service account from the MFA policy for this app or ${again}` }
    case 'no-account':
      return { reason: `the token cache of ${row.username} holds no account`, action: again }
    default:
      return { reason: `Entra ID refused to refresh the token of ${row.username}${code}: ${r.text.split('\n')[0] ?? ''}`, action: again }
  }
}

function describeSignInFailure(err: unknown, tenant: ServiceAccountTenant, network: FetchNetworkClient): string {
  const e = (err ?? {}) as MsalLike
  const text = typeof e.errorMessage === 'string' && e.errorMessage !== '' ? e.errorMessage : err instanceof Error ? err.message : String(err)
  const aadsts = /AADSTS(\d+)/.exec(text)?.[1] ?? network.lastFailure()?.aadsts
  switch (aadsts) {
    case '7000218': case '70002':
      return `the app ${tenant.clientId} does not allow public client flows: in Entra ID → App registrations → ${tenant.clientId} → Authentication, set "Allow public client flows" to Yes, then start the sign-in again`
    case '65001':
      return `the app ${tenant.clientId} lacks consent for the delegated permission Presence.Read.All: add it in API permissions and grant admin consent, then start the sign-in again`
    case '70020': case '70019':
      return 'the code expired before anyone entered it: start the sign-in again and enter the code within its lifetime'
    case '70016':
      return 'the sign-in is still waiting for the code to be entered'
    default:
      break
  }
  if (typeof e.errorCode === 'string' && /declin|access_denied|authorization_declined/i.test(`${e.errorCode} ${text}`)) {
    return 'the person declined the sign-in: start it again and accept the permissions'
  }
  if (typeof e.errorCode === 'string' && /expired_token|device_code_expired|code_expired/i.test(`${e.errorCode} ${text}`)) {
    return 'the code expired before anyone entered it: start the sign-in again and enter the code within its lifetime'
  }
  return `Entra ID refused the sign-in${aadsts === undefined ? '' : ` (AADSTS${aadsts})`}: ${text.split('\n')[0] ?? ''}`
}

// ---- delegated Graph calls ----

export interface SubscriptionResource {
  id: string
  resource: string
  expirationDateTime: string
  notificationUrl?: string
  applicationId?: string
}

/** The subscription calls the manager needs, with a service account's token. No hidden retries (see graph-presence-client). */
export class DelegatedGraph {
  readonly #client: Client
  readonly #timeoutMs: number
  readonly #clock: Clock
  readonly #token: () => Promise<string>

  constructor(baseUrl: string, dispatcher: Dispatcher | undefined, timeoutMs: number, token: () => Promise<string>, clock: Clock) {
    this.#timeoutMs = timeoutMs
    this.#clock = clock
    this.#token = token
    this.#client = Client.initWithMiddleware({
      authProvider: { getAccessToken: token },
      baseUrl,
      customHosts: new Set([new URL(baseUrl).hostname]),
      fetchOptions: dispatcher === undefined ? {} : ({ dispatcher } as { dispatcher: Dispatcher }),
    })
  }

  async create(body: Record<string, unknown>): Promise<SubscriptionResource> {
    return this.#run('createSubscription', '/subscriptions', (r) => r.post(body)) as Promise<SubscriptionResource>
  }

  async renew(id: string, expirationDateTime: string): Promise<SubscriptionResource> {
    return this.#run('renewSubscription', `/subscriptions/${encodeURIComponent(id)}`, (r) => r.patch({ expirationDateTime })) as Promise<SubscriptionResource>
  }

  /** 'absent' on 404. */
  async remove(id: string): Promise<'deleted' | 'absent'> {
    try {
      await this.#run('deleteSubscription', `/subscriptions/${encodeURIComponent(id)}`, async (r) => {
        const body: unknown = await r.delete()
        if (body instanceof ReadableStream) await body.cancel()
      })
      return 'deleted'
    } catch (err) {
      if (err instanceof GraphApiError && err.status === 404) return 'absent'
      throw err
    }
  }

  /** The subscriptions this app holds for the signed-in account. */
  async list(): Promise<SubscriptionResource[]> {
    const body = await this.#run('listSubscriptions', '/subscriptions', (r) => r.get())
    const value = typeof body === 'object' && body !== null ? (body as { value?: unknown }).value : undefined
    return Array.isArray(value) ? (value as SubscriptionResource[]) : []
  }

  async #run(operation: string, path: string, call: (request: GraphRequest) => Promise<unknown>): Promise<unknown> {
    // A request-scoped provider keeps a token failure's meaning (graph-client would wrap it in a GraphError).
    let tokenError: unknown
    const provider: AuthenticationProvider = {
      getAccessToken: async () => {
        try {
          return await this.#token()
        } catch (err) {
          tokenError = err
          throw err
        }
      },
    }
    const request = this.#client
      .api(path)
      .middlewareOptions([new RetryHandlerOptions(0, 0), new AuthenticationHandlerOptions(provider)])
      .option('signal', AbortSignal.timeout(this.#timeoutMs))
    try {
      return await call(request)
    } catch (err) {
      if (tokenError !== undefined) throw tokenError
      if (err instanceof GraphApiError) throw err
      const mapped = fromGraphError(err, operation, { tenantId: '', clientId: '', defaultRetryAfterMs: 5_000, nowMs: this.#clock.now() })
      if (mapped.status === 403) {
        throw new GraphApiError('GRAPH_AUTH', `${operation}: Microsoft Graph denied the service account (${mapped.message.split(': ')[1] ?? mapped.message}); grant the delegated permission Presence.Read.All with admin consent`, 403)
      }
      if (mapped.status === 401) throw new GraphApiError('GRAPH_AUTH', `${operation}: Microsoft Graph rejected the service account's token`, 401)
      throw mapped
    }
  }
}

