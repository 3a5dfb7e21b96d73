import fc from 'fast-check'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { mutatedJson, mutatedValue } from './mutate.js'

/** A POST/PUT route with a JSON body; `{p}` in the URL is replaced by a fuzzed path parameter. */
export interface JsonRoute { method: 'POST' | 'PUT'; url: string; seed: unknown }

export type AuthMode = 'session' | 'session-without-csrf' | 'anonymous' | 'broken-cookie'
export interface JsonRouteCase { route: number; path: string; auth: AuthMode; body: unknown; raw: string | undefined; contentType: string }

interface Session { cookie: string; csrf: string }

const ODD_PATHS = ['__proto__', 'constructor', '%00', '..', 'x'.repeat(300), '%F0%9F%98%80', '1e999']
const AUTH_MODES: AuthMode[] = ['session', 'session', 'session', 'session', 'session-without-csrf', 'anonymous', 'anonymous', 'broken-cookie']

/** A route, a body made from its valid seed (as a value, or as damaged JSON text), a way of signing in. */
export function jsonRouteCases(routes: readonly JsonRoute[], paths: readonly string[], options: { keepBody?: (text: string) => boolean } = {}): fc.Arbitrary<JsonRouteCase> {
  const keep = options.keepBody ?? (() => true)
  return fc.integer({ min: 0, max: routes.length - 1 }).chain((route) => fc.record({
    route: fc.constant(route),
    path: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...paths) }, { weight: 1, arbitrary: fc.constantFrom(...ODD_PATHS) }),
    auth: fc.constantFrom(...AUTH_MODES),
    body: mutatedValue(fc.constant(routes[route]!.seed)).filter((body) => keep(JSON.stringify(body) ?? '')),
    raw: fc.option(mutatedJson(fc.constant(routes[route]!.seed)).filter(keep), { freq: 4, nil: undefined }),
    contentType: fc.constantFrom('application/json', 'application/json', 'application/json', 'text/plain', 'application/json; charset=latin1'),
  }))
}

/** The session cookie and CSRF token a successful sign-in answer carries. */
export function sessionOf(response: LightMyRequestResponse, what: string): Session {
  if (response.statusCode !== 200) throw new Error(`${what} sign-in failed: ${response.statusCode} ${response.body}`)
  const setCookie = response.headers['set-cookie']
  const cookie = (Array.isArray(setCookie) ? setCookie[0] : setCookie)?.split(';')[0]
  if (!cookie) throw new Error(`${what} sign-in set no cookie`)
  return { cookie, csrf: (JSON.parse(response.body) as { csrfToken: string }).csrfToken }
}

/** An answer's status and error code, e.g. "400 CONSOLE_BAD_REQUEST"; a 5xx other than 503 is a crash of the route. */
export function outcomeOf(response: { statusCode: number; body: string }): string {
  let code = ''
  try {
    const body = JSON.parse(response.body) as { error?: { code?: unknown } | string; code?: unknown }
    const raw = typeof body.error === 'object' && body.error !== null ? body.error.code : body.code
    // Only error answers: a 201's `code` is a fresh enrollment code (a secret, and one outcome per case).
    if (typeof raw === 'string' && response.statusCode >= 400) code = ` ${raw}`
  } catch {
    // Not JSON (204, text): the status says it.
  }
  if (response.statusCode >= 500 && response.statusCode !== 503) throw new Error(`HTTP ${response.statusCode}: ${response.body.slice(0, 500)}`)
  return `${response.statusCode}${code}`
}

/**
 * Sends one case through fastify inject on the real server: with our session and its CSRF token, with the session
 * but no token, anonymous, or with an undecodable cookie. Guesses come from one address, so the sign-in limiter
 * answers most of them (our own session signs in from another). Signs in again when our session ended.
 */
export function jsonRouteRunner(deps: {
  routes: readonly JsonRoute[]
  inject(options: InjectOptions): Promise<LightMyRequestResponse>
  signIn(): Promise<Session>
  brokenCookie: string
}): (input: JsonRouteCase) => Promise<string> {
  let session: Session | undefined
  return async (input) => {
    const route = deps.routes[input.route]!
    const headers: Record<string, string> = { 'content-type': input.contentType }
    // Signing our own session out would cost a password hash for the next case: logout is fuzzed signed out.
    const auth = route.url.endsWith('/logout') && input.auth.startsWith('session') ? 'anonymous' : input.auth
    if (auth === 'session' || auth === 'session-without-csrf') {
      session ??= await deps.signIn()
      headers.cookie = session.cookie
      if (auth === 'session') headers['x-csrf-token'] = session.csrf
    } else if (auth === 'broken-cookie') headers.cookie = deps.brokenCookie
    const url = route.url.replace('{p}', input.path)
    const response = await deps.inject({ method: route.method, url, headers, remoteAddress: '203.0.113.1', payload: input.raw ?? (JSON.stringify(input.body) ?? 'null') })
    if (response.statusCode === 401 && headers.cookie === session?.cookie) session = undefined
    return `${route.method} ${route.url.replace('{p}', ':p')} ${auth}: ${outcomeOf(response)}`
  }
}
