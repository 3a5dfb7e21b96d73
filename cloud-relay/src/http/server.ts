import { Readable } from 'node:stream'
import swagger from '@fastify/swagger'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { EventLogRow, EventQuery, RelayStore, SyncMode } from '../store/relay-store.js'
import type { PersonExplainer, PersonExplanation } from '../sync/explanation.js'
import { directoryRoutes } from '../directory/directory-routes.js'
import type { DirectoryService } from '../directory/directory-service.js'
import { createBearerCheck } from './bearer-auth.js'
import type { AccessRequest } from '../console/console-access.js'
import { CSRF_HEADER, SESSION_COOKIE, readCookie, sameOptionalSecret, type ConsolePrincipal } from '../console/console-auth.js'
import { ConsoleError } from '../console/console-errors.js'
import { ErrorBodySchema, errorBody, HttpError } from './errors.js'
import { findNul, nulMessage } from './nul-guard.js'
import {
  DEFAULT_EVENT_LIMIT,
  EventsPageSchema,
  EventsQuerySchema,
  HealthSchema,
  PeopleQuerySchema,
  PeopleSchema,
  PersonEventsQuerySchema,
  PersonExplanationSchema,
  PersonIdParamsSchema,
  PersonSyncBodySchema,
  type EventsPage,
  type PersonSyncBody,
} from './schemas.js'

type Awaitable<T> = T | Promise<T>

/** Who is calling /api/v1: the relay's bearer token (its own admin) or a signed-in console account. */
export type ApiPrincipal = { kind: 'token' } | ConsolePrincipal

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The console's sign-in routes: reachable without a session or the bearer token. */
    consolePublic?: boolean
  }
  interface FastifyRequest {
    principal: ApiPrincipal | null
  }
}

/** Console sessions for /api/v1 (cloud-relay/src/console): the cookie, the CSRF header and the role checks. */
export interface ConsoleSessions {
  authenticate(cookieHeader: string | undefined): Promise<ConsolePrincipal | undefined>
  authorize(principal: ConsolePrincipal, request: AccessRequest): Promise<void>
}

/**
 * Where the "why" view comes from. The sync engine answers from its live model (synchronously, as PersonExplainer
 * says); StoreExplainer answers from the database (asynchronously). The server awaits either.
 */
export interface ExplanationSource {
  explain(personId: number): Awaitable<PersonExplanation | undefined>
  listPeople(tenantId?: string): Awaitable<ReturnType<PersonExplainer['listPeople']>>
}

/** Changes a person's sync mode or own settings; false for an unknown person. The sync engine implements it. */
export interface PersonSyncWriter {
  updatePerson(personId: number, change: { syncMode?: SyncMode; settingsOverride?: PersonSyncBody['settings'] }, by: string): Promise<boolean>
}

export interface HttpServerDeps {
  store: Pick<RelayStore, 'queryEvents' | 'getPerson'>
  explainer: ExplanationSource
  /** Without it the settings route is not offered. */
  people?: PersonSyncWriter
  /** User import, mapping report, manual mappings and seats; without it those routes are not offered. */
  directory?: DirectoryService
  logger: Logger
  /** The bearer token for /api/v1; undefined: the API answers 503 until one is configured. */
  apiToken: string | undefined
  version: string
  health: () => { broker: boolean; store: string }
  /**
   * Routes outside /api/v1 and its bearer check (the Graph webhook: Graph authenticates by clientState and
   * signatures; enrollment: the one-time code or the box's certificate is the credential). One plugin or several.
   */
  publicRoutes?: FastifyPluginAsyncTypebox | ReadonlyArray<FastifyPluginAsyncTypebox | undefined> | undefined
  /** Serve HTTPS with this certificate (PEM, chain included) and key; plain HTTP without it. */
  https?: { certPem: string; keyPem: string } | undefined
  /** More bearer-protected routes under /api/v1. */
  apiRoutes?: readonly FastifyPluginAsyncTypebox[] | undefined
  /** With it, /api/v1 also accepts a console session cookie (+ CSRF header on changes), checked by role. */
  console?: ConsoleSessions | undefined
  /**
   * Which reverse proxies' X-Forwarded-For to believe (config http.trustProxy): request.ip, which every
   * per-address limiter keys on, is then the client's address. Default false: the socket's address.
   */
  trustProxy?: boolean | number | readonly string[] | undefined
}

/**
 * Every route takes at most this much body unless it says otherwise: the admin API's and the console's JSON
 * bodies are a few hundred bytes (the largest, a person's sync settings, well under 1 KiB). The exceptions set
 * their own: enrollment 64 KiB (two PEMs), the Graph webhook 1 MiB (notifications-webhook).
 */
export const DEFAULT_BODY_LIMIT = 16 * 1024

const API_PREFIX = '/api/v1'

/** fastify logs two lines per request at info; an admin API's requests are one line at debug (no query, no headers). */
class DebugRequestLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error) return super.requestCompleted(error, request, reply)
    request.log.debug({ method: request.method, url: request.url.split('?')[0], statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'http request')
  }
}

/** Error answers every API route can give, for validation of our own replies and for the OpenAPI document. */
const API_ERRORS = { 400: ErrorBodySchema, 401: ErrorBodySchema, 500: ErrorBodySchema, 503: ErrorBodySchema }
const SECURITY = [{ bearer: [] }]
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * The relay's HTTP server: /healthz and the admin API under /api/v1. Built, not listening: the caller listens
 * (the Relay) or injects requests (tests).
 */
export function buildServer(deps: HttpServerDeps) {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'http' }),
    logController: new DebugRequestLog(),
    // Unknown query parameters are errors (a typo must not silently widen a query); `verbose` gives the failing
    // schema to the error messages.
    ajv: { customOptions: { removeAdditional: false, verbose: true } },
    bodyLimit: DEFAULT_BODY_LIMIT,
    trustProxy: trustProxyOption(deps.trustProxy),
    // Typed as the plain HTTP server either way: the routes do not care, and node's https.Server is a net.Server too.
    ...(deps.https ? { https: { cert: deps.https.certPem, key: deps.https.keyPem, minVersion: 'TLSv1.2' as const } } : {}),
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof HttpError) {
      if (err.code === 'HTTP_UNAUTHORIZED') void reply.header('www-authenticate', 'Bearer realm="pbx-presence-relay"')
      return reply.code(err.statusCode).send(errorBody(err.code, err.message))
    }
    if (err instanceof ConsoleError) {
      if (err.retryAfterS !== undefined) void reply.header('retry-after', String(err.retryAfterS))
      return reply.code(err.statusCode).send({ error: { code: err.code, message: err.message } })
    }
    if (err.validation) return reply.code(400).send(errorBody('HTTP_BAD_REQUEST', describeValidation(err)))
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = request.routeOptions.bodyLimit ?? DEFAULT_BODY_LIMIT
      request.log.info({ url: request.url.split('?')[0], limit }, 'request body too large')
      return reply.code(413).send(errorBody('HTTP_PAYLOAD_TOO_LARGE', `The request body is larger than ${request.method} ${request.url.split('?')[0]} takes (${limit} bytes at most): send a smaller body; nothing was changed.`))
    }
    const status = err.statusCode ?? 500
    if (status >= 400 && status < 500) {
      request.log.debug({ err: err.message, code: err.code }, 'bad request')
      return reply.code(status).send(errorBody('HTTP_BAD_REQUEST', err.message))
    }
    request.log.error({ err }, 'request failed')
    return reply.code(500).send(errorBody('HTTP_INTERNAL', `The relay could not answer (request ${request.id}); the relay's log has the details.`))
  })

  // After authentication (onRequest) and parsing, before any schema or handler: see nul-guard.ts.
  app.addHook('preValidation', async (request) => {
    // A streamed body (a bundle upload) is bytes, not fields, and its stream object is a cyclic graph: never walked.
    const body = request.body instanceof Readable ? undefined : request.body
    const where = findNul(request.params, 'the path') ?? findNul(request.query, 'the query') ?? findNul(body, 'the body')
    if (where !== undefined) {
      request.log.info({ url: request.url.split('?')[0]?.slice(0, 200), where }, 'request with a NUL character refused')
      throw new HttpError('HTTP_BAD_REQUEST', nulMessage(where))
    }
  })

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody('HTTP_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}: the relay serves GET /healthz and the admin API under ${API_PREFIX} (GET ${API_PREFIX}/openapi.json lists it).`))
  })

  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'PBX presence relay admin API', version: deps.version, description: 'Event log and per-person "why" view of the cloud relay.' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'The relay\'s http.apiToken' },
          console: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE, description: `A console session (POST /api/v1/console/login); state changes also send the ${CSRF_HEADER} header with the session's csrfToken` },
        },
      },
    },
  })

  void app.register(healthRoutes, { deps })
  void app.register(apiRoutes, { deps, prefix: API_PREFIX })
  const publicRoutes = typeof deps.publicRoutes === 'function' ? [deps.publicRoutes] : (deps.publicRoutes ?? [])
  for (const plugin of publicRoutes) if (plugin) void app.register(plugin)
  return app
}

export type HttpServer = ReturnType<typeof buildServer>

/** The config's trustProxy as fastify takes it (a hop count becomes the same rule proxy-addr applies to numbers). */
function trustProxyOption(value: HttpServerDeps['trustProxy']): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (value === undefined) return false
  if (typeof value === 'number') return (_address, hop) => hop < value
  if (typeof value === 'boolean') return value
  return [...value]
}

const healthRoutes: FastifyPluginAsyncTypebox<{ deps: HttpServerDeps }> = async (app, { deps }) => {
  app.get('/healthz', {
    schema: { summary: 'Liveness and what the relay is connected to (no authentication)', response: { 200: HealthSchema } },
  }, async () => ({ status: 'ok' as const, version: deps.version, ...deps.health() }))
}

const apiRoutes: FastifyPluginAsyncTypebox<{ deps: HttpServerDeps }> = async (app, { deps }) => {
  const checkBearer = createBearerCheck(deps.apiToken)
  const sessions = deps.console
  app.decorateRequest('principal', null)
  // Every route in this plugin, and its 404s, need the token or a console session: nothing under /api/v1 is
  // visible without one (the console's sign-in routes excepted).
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.consolePublic) return
    if (!sessions || request.headers.authorization !== undefined || readCookie(request.headers.cookie, SESSION_COOKIE) === undefined) {
      checkBearer(request.headers.authorization)
      request.principal = { kind: 'token' }
      return
    }
    const principal = await sessions.authenticate(request.headers.cookie)
    if (!principal) throw new ConsoleError('CONSOLE_NOT_SIGNED_IN', 'Your console session has ended (signed out or expired): sign in again.')
    // SameSite=Strict keeps the cookie off cross-site requests; the header is the second lock for state changes.
    const csrf = request.headers[CSRF_HEADER]
    if (!SAFE_METHODS.has(request.method) && !sameOptionalSecret(typeof csrf === 'string' ? csrf : undefined, principal.csrfToken)) {
      throw new ConsoleError('CONSOLE_CSRF', 'This change did not carry the console\'s CSRF token: reload the console page and try again.')
    }
    request.principal = principal
  })
  // After validation, so the role check sees typed parameters.
  app.addHook('preHandler', async (request) => {
    const principal = request.principal
    if (sessions && principal && principal.kind === 'session') {
      await sessions.authorize(principal, { method: request.method, url: request.routeOptions.url ?? request.url, params: request.params, query: request.query })
    }
  })

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody('HTTP_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}: GET ${API_PREFIX}/openapi.json lists the admin API.`))
  })

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
  for (const plugin of deps.apiRoutes ?? []) await app.register(plugin)

  if (deps.directory) await app.register(directoryRoutes, { directory: deps.directory })

  app.get('/people', {
    schema: {
      summary: 'People known to the relay, optionally of one tenant',
      security: SECURITY,
      querystring: PeopleQuerySchema,
      response: { 200: PeopleSchema, ...API_ERRORS },
    },
  }, async (request) => ({ people: await deps.explainer.listPeople(request.query.tenant) }))

  app.get('/people/:personId/why', {
    schema: {
      summary: 'Why a person is shown as they are in Teams and on the PBX',
      security: SECURITY,
      params: PersonIdParamsSchema,
      response: { 200: PersonExplanationSchema, 404: ErrorBodySchema, 409: ErrorBodySchema, ...API_ERRORS },
    },
  }, async (request) => {
    const explanation = await deps.explainer.explain(request.params.personId)
    if (!explanation) throw unknownPerson(request.params.personId)
    return explanation
  })

  const people = deps.people
  if (people) {
    app.put('/people/:personId/sync', {
      schema: {
        summary: 'Set a person\'s sync mode (off, telephony, full) and/or own mapping settings; answers the new "why" view',
        security: SECURITY,
        params: PersonIdParamsSchema,
        body: PersonSyncBodySchema,
        response: { 200: PersonExplanationSchema, 404: ErrorBodySchema, ...API_ERRORS },
      },
    }, async (request) => {
      const { personId } = request.params
      const { syncMode, settings } = request.body
      const change = { ...(syncMode !== undefined ? { syncMode } : {}), ...(settings !== undefined ? { settingsOverride: settings } : {}) }
      const inactive = syncMode === undefined ? null : await deps.directory?.inactiveReason(personId)
      if (inactive) {
        throw new HttpError('HTTP_CONFLICT', inactive === 'seats'
          ? `person ${personId} is over the tenant's seat limit and not synced; raise the limit (PUT /api/v1/tenants/{tenant}/seats) to sync them again, their sync mode comes back with them`
          : `person ${personId} no longer matches the tenant's user import and is not synced; change the import filters and import again to sync them, their sync mode comes back with them`)
      }
      if (!(await people.updatePerson(personId, change, 'an admin (API)'))) throw unknownPerson(personId)
      const explanation = await deps.explainer.explain(personId)
      if (!explanation) throw unknownPerson(personId)
      return explanation
    })
  }

  app.get('/people/:personId/events', {
    schema: {
      summary: 'A person\'s event log, newest first, with a cursor for older pages',
      security: SECURITY,
      params: PersonIdParamsSchema,
      querystring: PersonEventsQuerySchema,
      response: { 200: EventsPageSchema, 404: ErrorBodySchema, ...API_ERRORS },
    },
  }, async (request) => {
    const { personId } = request.params
    if (!(await deps.store.getPerson(personId))) throw unknownPerson(personId)
    return eventsPage(deps.store, { ...eventFilters(request.query), personId })
  })

  app.get('/events', {
    schema: {
      summary: 'The event log across people (and gateway events), newest first, with a cursor for older pages',
      security: SECURITY,
      querystring: EventsQuerySchema,
      response: { 200: EventsPageSchema, ...API_ERRORS },
    },
  }, async (request) => eventsPage(deps.store, { ...eventFilters(request.query), tenantId: request.query.tenant }))
}

function unknownPerson(personId: number): HttpError {
  return new HttpError('HTTP_NOT_FOUND', `No person with id ${personId}: GET ${API_PREFIX}/people lists the people the relay knows.`)
}

function eventFilters(query: { from?: string; to?: string; limit?: number; kind?: string; before?: number }): EventQuery {
  const from = query.from === undefined ? undefined : parseDateTime('from', query.from)
  const to = query.to === undefined ? undefined : parseDateTime('to', query.to)
  if (from && to && to.getTime() <= from.getTime()) {
    throw new HttpError('HTTP_BAD_REQUEST', `Query parameter "to" (${query.to}) must be after "from" (${query.from}): swap them or widen the range.`)
  }
  return { from, to, limit: query.limit ?? DEFAULT_EVENT_LIMIT, kindPrefix: query.kind, before: query.before }
}

function parseDateTime(name: string, value: string): Date {
  const date = new Date(value)
  // The schema checked the format; this catches what a calendar cannot hold (e.g. a leap second).
  if (Number.isNaN(date.getTime())) throw new HttpError('HTTP_BAD_REQUEST', `Query parameter "${name}" (${value}) is not a valid date-time: use ISO 8601 with a time zone, e.g. 2026-11-21T09:00:00Z.`)
  return date
}

async function eventsPage(store: HttpServerDeps['store'], query: EventQuery): Promise<EventsPage> {
  // One row more than asked tells whether an older page exists.
  const rows = await store.queryEvents({ ...query, limit: query.limit + 1 })
  const page = rows.slice(0, query.limit)
  const last = page[page.length - 1]
  return { events: page.map(toApiEvent), nextBefore: rows.length > query.limit && last ? last.id : null }
}

export function toApiEvent(row: EventLogRow): EventsPage['events'][number] {
  return {
    id: row.id,
    at: row.at.toISOString(),
    tenantId: row.tenantId,
    personId: row.personId,
    gatewayId: row.gatewayId,
    kind: row.kind,
    message: row.message,
    data: row.data,
  }
}

const CONTEXT_NAMES: Record<string, string> = { querystring: 'Query parameter', params: 'Path parameter', body: 'Body field', headers: 'Header' }

/** Ajv's first error as a sentence that names the parameter and says what a valid value looks like. */
function describeValidation(err: FastifyError): string {
  const first = err.validation?.[0]
  const where = CONTEXT_NAMES[err.validationContext ?? ''] ?? 'Field'
  if (!first) return `${where} is not valid: ${err.message}`
  const parent = (first as { parentSchema?: { description?: string; properties?: Record<string, unknown> } }).parentSchema
  if (first.keyword === 'additionalProperties') {
    const name = String((first.params as { additionalProperty?: unknown }).additionalProperty)
    const known = Object.keys(parent?.properties ?? {})
    return `${where} "${name}" is not known here${known.length ? `: use ${known.join(', ')}` : ''}.`
  }
  if (first.keyword === 'required') {
    return `${where} "${String((first.params as { missingProperty?: unknown }).missingProperty)}" is required.`
  }
  const name = first.instancePath.replace(/^\//, '').replace(/\//g, '.')
  const expected = parent?.description ? `: expected ${parent.description}` : ''
  return `${where} "${name}" ${first.message ?? 'is not valid'}${expected}.`
}
