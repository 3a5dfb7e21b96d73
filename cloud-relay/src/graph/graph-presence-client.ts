/**
 * GraphPresenceApi over the real @azure/msal-node (client credentials, its token cache and renewal) and the
 * real @microsoft/microsoft-graph-client. Pointing authorityHost/graphBaseUrl at the Graph simulator and
 * passing its CA is all a test needs; nothing below knows it might be talking to a simulator.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { createSecureContext, rootCertificates } from 'node:tls'
import { ConfidentialClientApplication, LogLevel, type Configuration } from '@azure/msal-node'
import {
  AuthenticationHandlerOptions,
  BatchRequestContent,
  Client,
  RetryHandlerOptions,
  type AuthenticationProvider,
  type GraphRequest,
} from '@microsoft/microsoft-graph-client'
import type { Logger } from 'pino'
import { Agent, type Dispatcher } from 'undici'
import { createFetchNetworkClient } from './fetch-network-client.js'
import { fromGraphError, fromTokenError, type ErrorContext } from './graph-errors.js'
import {
  GraphApiError,
  type DirectoryUser,
  type GraphDirectoryApi,
  type UserListProgress,
  type UserListQuery,
  type GraphPresenceApi,
  type GraphUser,
  type PresenceReading,
  type PresenceWrite,
  type PresenceWriteResult,
  type SettablePresence,
} from './types.js'

export interface GraphPresenceClientOptions {
  /** Directory (tenant) id. */
  tenantId: string
  /** Application (client) id of the relay's app registration. */
  clientId: string
  /** The app's client secret. Exactly one of clientSecret and clientCertificate. */
  clientSecret?: string | undefined
  /**
   * A certificate credential (private_key_jwt): the public certificate uploaded to the app registration and
   * its private key, both PEM. Exactly one of clientSecret and clientCertificate.
   */
  clientCertificate?: ClientCertificate | undefined
  /** Default https://login.microsoftonline.com. */
  authorityHost?: string
  /** Default https://graph.microsoft.com. Must be https: graph-client only sends the token over https. */
  graphBaseUrl?: string
  /** Extra CA (PEM) trusted in addition to the system CAs, for both the token endpoint and Graph. */
  caPem?: string
  /**
   * Put the authority's host:port into msal's knownAuthorities, so msal skips Microsoft's instance
   * discovery (needed for any authority host that is not a Microsoft cloud, such as the simulator).
   */
  knownAuthority?: boolean
  /** The authority's OpenID configuration as JSON; spares msal the discovery request. */
  authorityMetadata?: string
  /** Default https://graph.microsoft.com/.default. */
  scope?: string
  /** Per-request timeout for token and Graph calls. Default 15 s. */
  requestTimeoutMs?: number
  /** Used when a 429 has no Retry-After. Default 5 s. */
  defaultRetryAfterMs?: number
}

export interface ClientCertificate {
  /** PKCS#8 (BEGIN PRIVATE KEY) or PKCS#1 (BEGIN RSA PRIVATE KEY) PEM. */
  privateKeyPem: string
  /** The X.509 certificate, PEM. */
  certificatePem: string
}

export interface GraphPresenceClientDeps {
  logger: Logger
}

export interface GraphPresenceClient extends GraphPresenceApi, GraphDirectoryApi {
  /** Releases the HTTP connection pool. Idempotent; calls after close() fail with GRAPH_UNAVAILABLE. */
  close(): Promise<void>
}

/** getPresencesByUserId accepts at most 650 ids per request (research §2). */
export const PRESENCE_IDS_PER_REQUEST = 650

const USER_FIELDS = ['id', 'displayName', 'mail', 'userPrincipalName']
const DIRECTORY_PAGE_RETRIES = 3
const DIRECTORY_USER_FIELDS = ['id', 'displayName', 'mail', 'userPrincipalName', 'accountEnabled', 'department', 'proxyAddresses']

export function createGraphPresenceClient(
  options: GraphPresenceClientOptions,
  deps: GraphPresenceClientDeps,
): GraphPresenceClient {
  const config = validateOptions(options)
  const log = deps.logger.child({ component: 'graph-client', tenantId: config.tenantId, clientId: config.clientId })

  // An extra CA must not replace the public roots (real Graph still needs them), hence the concatenation.
  const dispatcher: Agent | undefined =
    // One secure context for every connection: building it parses ~150 root certificates, which cost
    // milliseconds of CPU per new TLS connection when left to each connect (measured with bench/latency.ts).
    config.caPem === undefined ? undefined : new Agent({ connect: { secureContext: createSecureContext({ ca: [...rootCertificates, config.caPem] }) } })

  const network = createFetchNetworkClient(dispatcher, config.requestTimeoutMs, log)
  const msalConfig: Configuration = {
    auth: {
      clientId: config.clientId,
      ...(config.credential.kind === 'secret'
        ? { clientSecret: config.credential.secret }
        : {
            // SHA-256 thumbprint: msal signs with PS256 and sends x5t#S256; x5c lets the server see the cert.
            clientCertificate: {
              thumbprintSha256: config.credential.thumbprintSha256,
              privateKey: config.credential.privateKeyPem,
              x5c: config.credential.certificatePem,
            },
          }),
      authority: `${config.authorityHost}/${config.tenantId}`,
      ...(config.knownAuthority ? { knownAuthorities: [new URL(config.authorityHost).host] } : {}),
      ...(config.authorityMetadata === undefined ? {} : { authorityMetadata: config.authorityMetadata }),
    },
    system: {
      networkClient: network,
      loggerOptions: {
        piiLoggingEnabled: false,
        logLevel: LogLevel.Warning,
        // msal warns on every client-credentials token ("No client info in response"), so its warnings are
        // debug noise; real failures reach us as exceptions and are logged with their mapped code.
        loggerCallback: (level, message) => {
          if (level === LogLevel.Error) log.warn({ msal: message }, 'msal error')
          else log.debug({ msal: message }, 'msal message')
        },
      },
    },
  }
  const msal = new ConfidentialClientApplication(msalConfig)
  if (config.credential.kind === 'certificate' && !config.credential.keyMatches) {
    log.warn(
      { thumbprint: config.credential.thumbprintSha1 },
      'the configured private key does not belong to the configured certificate: Entra ID will reject the token request',
    )
  }

  const errorContext = (): ErrorContext => ({
    tenantId: config.tenantId,
    clientId: config.clientId,
    defaultRetryAfterMs: config.defaultRetryAfterMs,
    nowMs: Date.now(),
    ...(config.credential.kind === 'certificate'
      ? { certificate: { thumbprintSha1: config.credential.thumbprintSha1, thumbprintSha256: config.credential.thumbprintSha256 } }
      : {}),
  })

  /**
   * msal keeps the token in memory and renews it 5 min before expiry, so this is normally a cache lookup.
   * `fresh` bypasses the cache (after Graph refused a cached token).
   */
  async function acquireToken(fresh = false): Promise<string> {
    let result
    try {
      result = await msal.acquireTokenByClientCredential({ scopes: [config.scope], skipCache: fresh })
    } catch (err) {
      throw fromTokenError(err, errorContext(), network.lastFailure())
    }
    if (result === null || result.accessToken === '') {
      throw new GraphApiError('GRAPH_AUTH', 'Microsoft Entra ID returned no access token')
    }
    return result.accessToken
  }

  const graph = Client.initWithMiddleware({
    authProvider: { getAccessToken: () => acquireToken() },
    baseUrl: config.graphBaseUrl,
    // graph-client only attaches the token to Microsoft's Graph hosts and these (port ignored).
    customHosts: new Set([new URL(config.graphBaseUrl).hostname]),
    fetchOptions: dispatcher === undefined ? {} : ({ dispatcher } as { dispatcher: Dispatcher }),
  })

  /*
   * graph-client's RetryHandler would retry 429/503/504 up to 3 times, sleeping Retry-After or 3 s+ each
   * time, inside one call. For the relay that hides throttling from the code that can act on it (the
   * reconcilers coalesce to the latest desired state and honour Retry-After per tenant) and adds seconds of
   * latency to a presence change that may be stale by then. So no retries here: every 429/5xx surfaces at
   * once as GRAPH_THROTTLED/GRAPH_UNAVAILABLE with retryAfterMs.
   */
  const noRetries = new RetryHandlerOptions(0, 0)
  let closed = false

  /**
   * Runs one Graph request. The token is fetched through a request-scoped auth provider so that an msal
   * failure keeps its meaning: graph-client would otherwise wrap it in a GraphError with statusCode -1.
   * A 401 from Graph itself gets exactly one retry with a token fetched past msal's cache: Graph can
   * refuse a token msal still considers valid (revoked, clock skew), and waiting for msal's own renewal
   * would mean up to an hour of failed writes.
   */
  async function execute<T>(operation: string, path: string, run: (request: GraphRequest) => Promise<T>): Promise<T> {
    if (closed) throw new GraphApiError('GRAPH_UNAVAILABLE', `${operation}: the Graph client is closed`)
    const started = performance.now()
    let mapped: GraphApiError | undefined
    for (const fresh of [false, true]) {
      let tokenError: GraphApiError | undefined
      const provider: AuthenticationProvider = {
        getAccessToken: async () => {
          try {
            return await acquireToken(fresh)
          } catch (err) {
            tokenError = fromTokenError(err, errorContext(), network.lastFailure())
            throw tokenError
          }
        },
      }
      const request = graph
        .api(path)
        .middlewareOptions([noRetries, new AuthenticationHandlerOptions(provider)])
        .option('signal', AbortSignal.timeout(config.requestTimeoutMs))
      try {
        const result = await run(request)
        log.debug({ operation, ms: Math.round(performance.now() - started) }, 'graph call done')
        return result
      } catch (err) {
        mapped = tokenError ?? fromGraphError(err, operation, errorContext())
        if (tokenError !== undefined || mapped.status !== 401 || fresh) break
        log.info({ operation, reason: mapped.message }, 'graph refused the cached token; retrying with a new one')
      }
    }
    const failure = mapped ?? new GraphApiError('GRAPH_UNAVAILABLE', `${operation}: failed`)
    const fields = { operation, code: failure.code, status: failure.status, retryAfterMs: failure.retryAfterMs, reason: failure.message }
    // A 404 is an answer (nothing to clear, no such user), not a failure worth a warning.
    if (failure.status === 404) log.debug(fields, 'graph call answered 404')
    else log.warn(fields, 'graph call failed')
    throw failure
  }

  function setPresenceBody(presence: SettablePresence, expirationMinutes: number): Record<string, string> {
    if (!Number.isInteger(expirationMinutes) || expirationMinutes < 5 || expirationMinutes > 240) {
      throw new GraphApiError('GRAPH_REQUEST', `setPresence: expirationMinutes must be an integer 5..240, got ${expirationMinutes}`)
    }
    return {
      // Graph wants the calling app's id as the session id: one session per app per user.
      sessionId: config.clientId,
      availability: presence.availability,
      activity: presence.activity,
      expirationDuration: `PT${expirationMinutes}M`,
    }
  }

  /**
   * A long listing (thousands of users) should not fail as a whole for one throttled or failed page: the page is
   * asked again after Retry-After (capped), a few times. Unlike presence writes, nothing newer replaces a page.
   */
  async function pageWithRetry<T>(operation: string, run: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run()
      } catch (err) {
        const retryable = err instanceof GraphApiError && (err.code === 'GRAPH_THROTTLED' || (err.code === 'GRAPH_UNAVAILABLE' && err.status !== undefined))
        if (!retryable || closed || attempt > DIRECTORY_PAGE_RETRIES) throw err
        const waitMs = Math.min(err.retryAfterMs ?? config.defaultRetryAfterMs, 30_000)
        log.info({ operation, attempt, waitMs, code: err.code }, 'directory page refused; asking again after Retry-After')
        await new Promise((resolve) => setTimeout(resolve, waitMs))
      }
    }
  }

  return {
    async writePresenceBatch(writes: readonly PresenceWrite[]): Promise<PresenceWriteResult[]> {
      if (writes.length === 0) return []
      // BatchRequestContent enforces Graph's limits (20 requests, unique ids, Content-Type with a body).
      const content = new BatchRequestContent(
        writes.map((write, index) => {
          const action = write.kind === 'set' ? 'setPresence' : 'clearPresence'
          const body = write.kind === 'set' ? setPresenceBody(write.presence, write.expirationMinutes) : { sessionId: config.clientId }
          // Only the path survives into the batch (BatchRequestContent strips scheme and host).
          const request = new Request(`https://graph.microsoft.com/users/${encodeURIComponent(write.userId)}/presence/${action}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
          })
          return { id: String(index + 1), request }
        }),
      )
      const payload = await content.getContent()
      const response: unknown = await execute(`$batch of ${writes.length} presence writes`, '/$batch', (r) => r.post(payload))
      return parseBatchResults(writes, response, errorContext())
    },

    async setPresence(userId: string, presence: SettablePresence, expirationMinutes: number): Promise<void> {
      const body = setPresenceBody(presence, expirationMinutes)
      await execute('setPresence', `/users/${encodeURIComponent(userId)}/presence/setPresence`, async (r) =>
        discardBody(await r.post(body)),
      )
    },

    async clearPresence(userId: string): Promise<'cleared' | 'absent'> {
      try {
        await execute('clearPresence', `/users/${encodeURIComponent(userId)}/presence/clearPresence`, async (r) =>
          discardBody(await r.post({ sessionId: config.clientId })),
        )
        return 'cleared'
      } catch (err) {
        // 404: our session does not exist (expired, never set, or the user is gone): nothing to clear.
        if (err instanceof GraphApiError && err.status === 404) return 'absent'
        throw err
      }
    },

    async getPresences(userIds: readonly string[]): Promise<PresenceReading[]> {
      const unique = [...new Set(userIds)]
      const readings: PresenceReading[] = []
      // Sequential on purpose: chunks share the tenant's 1,500 requests / 30 s budget.
      for (let i = 0; i < unique.length; i += PRESENCE_IDS_PER_REQUEST) {
        const ids = unique.slice(i, i + PRESENCE_IDS_PER_REQUEST)
        const response: unknown = await execute('getPresencesByUserId', '/communications/getPresencesByUserId', (r) =>
          r.post({ ids }),
        )
        readings.push(...parsePresences(response, log))
      }
      return readings
    },

    async findUser(idOrUpn: string): Promise<GraphUser | undefined> {
      try {
        const response: unknown = await execute('findUser', `/users/${encodeURIComponent(idOrUpn)}`, (r) =>
          r.select(USER_FIELDS).get(),
        )
        const user = parseUser(response)
        if (user === undefined) throw new GraphApiError('GRAPH_REQUEST', 'findUser: Microsoft Graph sent an unexpected user shape')
        return user
      } catch (err) {
        if (err instanceof GraphApiError && err.status === 404) return undefined
        throw err
      }
    },

    async listUsers(query: UserListQuery, onPage?: (progress: UserListProgress) => void): Promise<DirectoryUser[]> {
      const pageSize = query.pageSize ?? 999
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 999) {
        throw new GraphApiError('GRAPH_REQUEST', `listUsers: pageSize must be an integer 1..999, got ${pageSize}`)
      }
      const users: DirectoryUser[] = []
      let total: number | undefined
      let pages = 0
      // Always an advanced query: endsWith (domains) needs it, and it brings @odata.count for progress.
      let path: string | undefined = '/users'
      while (path !== undefined) {
        const first = pages === 0
        const pagePath: string = path
        const response: unknown = await pageWithRetry('listUsers', () => execute('listUsers', pagePath, (r) => {
          const request = r.header('ConsistencyLevel', 'eventual')
          if (!first) return request.get()
          // graph-client puts query values into the URL as they are, so the filter is encoded here.
          const withQuery = request.query({ $count: 'true' }).select(DIRECTORY_USER_FIELDS).top(pageSize)
          return (query.filter ? withQuery.filter(encodeURIComponent(query.filter)) : withQuery).get()
        }))
        if (!isRecord(response) || !Array.isArray(response['value'])) {
          throw new GraphApiError('GRAPH_REQUEST', 'listUsers: Microsoft Graph sent a page without a value array')
        }
        for (const item of response['value']) {
          const user = parseDirectoryUser(item)
          if (user) users.push(user)
          else log.warn({ item }, 'directory user with unexpected shape dropped')
        }
        const count = response['@odata.count']
        if (typeof count === 'number') total = count
        pages++
        onPage?.({ pages, fetched: users.length, total })
        const next = response['@odata.nextLink']
        path = typeof next === 'string' ? next : undefined
      }
      return users
    },

    async listGroupUserIds(groupId: string): Promise<string[]> {
      const ids: string[] = []
      let path: string | undefined = `/groups/${encodeURIComponent(groupId)}/transitiveMembers?$select=id&$top=999`
      try {
        while (path !== undefined) {
          const pagePath: string = path
          const response: unknown = await pageWithRetry('listGroupMembers', () => execute('listGroupMembers', pagePath, (r) => r.get()))
          const value = isRecord(response) ? response['value'] : undefined
          if (!Array.isArray(value)) throw new GraphApiError('GRAPH_REQUEST', 'listGroupMembers: Microsoft Graph sent a page without a value array')
          for (const item of value) {
            // Nested groups, devices and contacts appear too; only users can be people.
            if (isRecord(item) && item['@odata.type'] === '#microsoft.graph.user' && typeof item['id'] === 'string') ids.push(item['id'])
          }
          const next = isRecord(response) ? response['@odata.nextLink'] : undefined
          path = typeof next === 'string' ? next : undefined
        }
      } catch (err) {
        if (err instanceof GraphApiError && err.status === 404) {
          throw new GraphApiError('GRAPH_REQUEST', `the group ${groupId} does not exist in tenant ${config.tenantId}: check the group's Object ID in Entra ID → Groups and correct the import filter`, 404)
        }
        if (err instanceof GraphApiError && err.status === 403) {
          throw new GraphApiError(
            'GRAPH_AUTH',
            `reading the members of group ${groupId} was denied: in Entra ID → App registrations → the app with client id ${config.clientId} → API permissions, ` +
              'add GroupMember.Read.All (type: Application) and click "Grant admin consent"',
            403,
          )
        }
        throw err
      }
      return ids
    },

    async close(): Promise<void> {
      if (closed) return
      closed = true
      await dispatcher?.close()
    },
  }
}

type ResolvedCredential =
  | { kind: 'secret'; secret: string }
  | {
      kind: 'certificate'
      privateKeyPem: string
      certificatePem: string
      /** Hex, no colons (msal's format; Entra's portal shows the SHA-1 one). */
      thumbprintSha256: string
      thumbprintSha1: string
      keyMatches: boolean
    }

interface ResolvedOptions {
  tenantId: string
  clientId: string
  credential: ResolvedCredential
  authorityHost: string
  graphBaseUrl: string
  caPem: string | undefined
  knownAuthority: boolean
  authorityMetadata: string | undefined
  scope: string
  requestTimeoutMs: number
  defaultRetryAfterMs: number
}

/** Refuses bad options up front and lists every problem at once. */
function validateOptions(o: GraphPresenceClientOptions): ResolvedOptions {
  const problems: string[] = []
  const required = (name: string, value: string): void => {
    if (typeof value !== 'string' || value.trim() === '') problems.push(`${name} is required`)
  }
  required('tenantId', o.tenantId)
  required('clientId', o.clientId)
  const credential = resolveCredential(o, problems)
  const httpsUrl = (name: string, value: string): string => {
    try {
      const url = new URL(value)
      if (url.protocol !== 'https:') problems.push(`${name} must be an https URL (got ${value})`)
    } catch {
      problems.push(`${name} is not a URL (got ${value})`)
    }
    return value.replace(/\/+$/, '')
  }
  const authorityHost = httpsUrl('authorityHost', o.authorityHost ?? 'https://login.microsoftonline.com')
  const graphBaseUrl = httpsUrl('graphBaseUrl', o.graphBaseUrl ?? 'https://graph.microsoft.com')
  if (o.caPem !== undefined && !o.caPem.includes('BEGIN CERTIFICATE')) problems.push('caPem is not a PEM certificate')
  if (o.authorityMetadata !== undefined) {
    try {
      JSON.parse(o.authorityMetadata)
    } catch {
      problems.push('authorityMetadata is not JSON')
    }
  }
  if (problems.length > 0) throw new Error(`invalid Graph client options: ${problems.join('; ')}`)
  return {
    tenantId: o.tenantId.trim(),
    clientId: o.clientId.trim(),
    // Only undefined when a problem was recorded, and then we threw above.
    credential: credential as ResolvedCredential,
    authorityHost,
    graphBaseUrl,
    caPem: o.caPem,
    knownAuthority: o.knownAuthority ?? false,
    authorityMetadata: o.authorityMetadata,
    scope: o.scope ?? 'https://graph.microsoft.com/.default',
    requestTimeoutMs: o.requestTimeoutMs ?? 15_000,
    defaultRetryAfterMs: o.defaultRetryAfterMs ?? 5_000,
  }
}

/** Exactly one credential; the certificate and key must parse (whether they match is Entra's call). */
function resolveCredential(o: GraphPresenceClientOptions, problems: string[]): ResolvedCredential | undefined {
  const hasSecret = o.clientSecret !== undefined
  const cert = o.clientCertificate
  if (hasSecret && cert !== undefined) {
    problems.push('give either clientSecret or clientCertificate, not both')
    return undefined
  }
  if (!hasSecret && cert === undefined) {
    problems.push('a credential is required: clientSecret or clientCertificate')
    return undefined
  }
  if (cert === undefined) {
    if (typeof o.clientSecret !== 'string' || o.clientSecret.trim() === '') {
      problems.push('clientSecret is required')
      return undefined
    }
    return { kind: 'secret', secret: o.clientSecret }
  }
  let x509: X509Certificate | undefined
  try {
    x509 = new X509Certificate(cert.certificatePem)
  } catch (err) {
    problems.push(`clientCertificate.certificatePem is not a PEM X.509 certificate (${(err as Error).message})`)
  }
  let keyMatches = false
  try {
    const key = createPrivateKey(cert.privateKeyPem)
    if (key.asymmetricKeyType !== 'rsa') problems.push(`clientCertificate.privateKeyPem must be an RSA key (got ${String(key.asymmetricKeyType)})`)
    keyMatches = x509?.checkPrivateKey(key) ?? false
  } catch (err) {
    problems.push(`clientCertificate.privateKeyPem is not a PEM private key (${(err as Error).message})`)
  }
  if (x509 === undefined) return undefined
  return {
    kind: 'certificate',
    privateKeyPem: cert.privateKeyPem,
    certificatePem: cert.certificatePem,
    // fingerprint256 is colon-separated upper-case hex; msal decodes plain hex.
    thumbprintSha256: x509.fingerprint256.replaceAll(':', ''),
    thumbprintSha1: x509.fingerprint.replaceAll(':', ''),
    keyMatches,
  }
}

/**
 * graph-client returns the raw body stream when a 2xx has no Content-Type (setPresence/clearPresence answer
 * 200 with no body); cancel it so the connection goes back to the pool.
 */
async function discardBody(body: unknown): Promise<void> {
  if (body instanceof ReadableStream) await body.cancel()
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Values are PascalCase strings today but not enums in Graph's metadata: keep whatever comes. */
function parsePresences(response: unknown, log: Logger): PresenceReading[] {
  const value = isRecord(response) ? response['value'] : undefined
  if (!Array.isArray(value)) throw new GraphApiError('GRAPH_REQUEST', 'getPresencesByUserId: response has no value array')
  const readings: PresenceReading[] = []
  for (const item of value) {
    if (
      isRecord(item) &&
      typeof item['id'] === 'string' &&
      typeof item['availability'] === 'string' &&
      typeof item['activity'] === 'string'
    ) {
      readings.push({ userId: item['id'], availability: item['availability'], activity: item['activity'] })
    } else {
      log.warn({ item }, 'presence entry with unexpected shape dropped')
    }
  }
  return readings
}

/** One result per write from `{responses:[{id,status,headers,body}]}` (any order; ids are the writes' positions + 1). */
function parseBatchResults(writes: readonly PresenceWrite[], response: unknown, ctx: ErrorContext): PresenceWriteResult[] {
  const list = isRecord(response) ? response['responses'] : undefined
  if (!Array.isArray(list)) throw new GraphApiError('GRAPH_REQUEST', '$batch: Microsoft Graph sent no responses array')
  const byId = new Map<string, Record<string, unknown>>()
  for (const item of list) if (isRecord(item) && typeof item['id'] === 'string') byId.set(item['id'], item)
  return writes.map((write, index): PresenceWriteResult => {
    const operation = write.kind === 'set' ? 'setPresence' : 'clearPresence'
    const item = byId.get(String(index + 1))
    const status = typeof item?.['status'] === 'number' ? item['status'] : undefined
    if (item === undefined || status === undefined) {
      return { ok: false, error: new GraphApiError('GRAPH_UNAVAILABLE', `${operation}: the $batch response has no answer for this write`) }
    }
    if (status >= 200 && status < 300) return { ok: true, outcome: write.kind === 'set' ? 'set' : 'cleared' }
    // 404 on clearPresence: our session does not exist, nothing to clear.
    if (status === 404 && write.kind === 'clear') return { ok: true, outcome: 'absent' }
    const headers = new Headers()
    if (isRecord(item['headers'])) {
      for (const [name, value] of Object.entries(item['headers'])) if (typeof value === 'string') headers.set(name, value)
    }
    const error = isRecord(item['body']) && isRecord(item['body']['error']) ? item['body']['error'] : {}
    const code = typeof error['code'] === 'string' ? error['code'] : undefined
    const message = typeof error['message'] === 'string' ? error['message'] : `HTTP ${status}`
    const like = Object.assign(new Error(message), { statusCode: status, code, headers })
    return { ok: false, error: fromGraphError(like, operation, ctx) }
  })
}

function parseUser(response: unknown): GraphUser | undefined {
  if (!isRecord(response)) return undefined
  const { id, displayName, mail, userPrincipalName } = response
  if (typeof id !== 'string' || typeof userPrincipalName !== 'string') return undefined
  return {
    id,
    displayName: typeof displayName === 'string' ? displayName : '',
    mail: typeof mail === 'string' ? mail : null,
    userPrincipalName,
  }
}

function parseDirectoryUser(item: unknown): DirectoryUser | undefined {
  const base = parseUser(item)
  if (base === undefined || !isRecord(item)) return undefined
  const proxies = item['proxyAddresses']
  return {
    ...base,
    // Absent when not selected; a user Graph returns is enabled unless it says otherwise.
    accountEnabled: item['accountEnabled'] !== false,
    department: typeof item['department'] === 'string' ? item['department'] : null,
    proxyAddresses: Array.isArray(proxies) ? proxies.filter((p): p is string => typeof p === 'string') : [],
  }
}
