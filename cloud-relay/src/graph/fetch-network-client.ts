/**
 * msal-node network module over fetch with our own undici dispatcher.
 *
 * Why: msal-node 7's built-in HttpClient calls the global fetch with no dispatcher and has no
 * `customAgentOptions` any more (its NodeSystemOptions only has loggerOptions, networkClient,
 * disableInternalRetries, protocolMode), so an extra trusted CA (the Graph simulator's, or a TLS-inspecting
 * proxy's) could otherwise only come from NODE_EXTRA_CA_CERTS. This mirrors msal's own HttpClient
 * (JSON body, lower-case header dictionary, abort on timeout) and adds the dispatcher.
 */
import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'

/** The last identity request that failed, so a bare msal error can be explained. */
export interface IdentityFailure {
  url: string
  /** HTTP status, or undefined when no response arrived. */
  status: number | undefined
  /** First AADSTS code of an Entra error body. */
  aadsts: string | undefined
  /** Transport error text when no response arrived. */
  cause: string | undefined
}

export interface FetchNetworkClient extends INetworkModule {
  /**
   * msal reduces some failures to a bare code (a failed metadata discovery becomes
   * `endpoints_resolution_error`, a transport error `network_error`); this keeps what really happened.
   * Cleared by the next successful request.
   */
  lastFailure(): IdentityFailure | undefined
}

export function createFetchNetworkClient(
  dispatcher: Dispatcher | undefined,
  timeoutMs: number,
  logger: Logger,
): FetchNetworkClient {
  let lastFailure: IdentityFailure | undefined
  async function send<T>(method: 'GET' | 'POST', url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    const init: RequestInit & { dispatcher?: Dispatcher } = {
      method,
      headers: options?.headers ?? {},
      signal: AbortSignal.timeout(timeoutMs),
      ...(method === 'POST' ? { body: options?.body ?? '' } : {}),
      ...(dispatcher === undefined ? {} : { dispatcher }),
    }
    let response: Response
    try {
      response = await fetch(url, init as RequestInit)
    } catch (err) {
      // msal replaces non-msal errors with a bare `network_error`; keep the real cause in our log.
      logger.warn({ err, url: stripQuery(url), method }, 'identity endpoint unreachable')
      lastFailure = { url: stripQuery(url), status: undefined, aadsts: undefined, cause: describe(err) }
      throw err
    }
    const headers: Record<string, string> = {}
    response.headers.forEach((value, key) => {
      headers[key] = value
    })
    let body: T
    try {
      body = (await response.json()) as T
    } catch (err) {
      logger.warn({ err, url: stripQuery(url), status: response.status }, 'identity endpoint sent a non-JSON body')
      lastFailure = { url: stripQuery(url), status: response.status, aadsts: undefined, cause: 'non-JSON body' }
      throw err
    }
    lastFailure = response.ok ? undefined : { url: stripQuery(url), status: response.status, aadsts: aadstsOf(body), cause: undefined }
    return { status: response.status, headers, body }
  }
  return {
    sendGetRequestAsync: <T>(url: string, options?: NetworkRequestOptions) => send<T>('GET', url, options),
    sendPostRequestAsync: <T>(url: string, options?: NetworkRequestOptions) => send<T>('POST', url, options),
    lastFailure: () => lastFailure,
  }
}

function aadstsOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const codes = (body as { error_codes?: unknown }).error_codes
  return Array.isArray(codes) && codes.length > 0 ? String(codes[0]) : undefined
}

/** fetch wraps the real reason (ECONNREFUSED, certificate errors) in `cause`. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const cause = err.cause
  if (cause instanceof Error) return `${err.message}: ${(cause as Error & { code?: string }).code ?? cause.message}`
  return err.message
}

/** Token URLs carry only a client-request-id in the query, but never log more than needed. */
function stripQuery(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}
