import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { freemem, totalmem } from 'node:os'
import swagger from '@fastify/swagger'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { AdapterDefinition } from '../adapters/types.js'
import { GATEWAY_VERSION, type ConnectorConfig, type Gateway } from '../app.js'
import { checkWithDefaults } from '#kernel/config-check.js'
import { checkConnectorConfig, type LoadedGatewayConfig } from '../config/load.js'
import type { Clock } from '#kernel/clock.js'
import { BoxEnrollmentError, EnrollmentClient } from '../identity/enrollment-client.js'
import { factoryReset, IdentityStore } from '../identity/identity-store.js'
import { writeFileAtomic } from '../identity/atomic-file.js'
import type { AttemptLimits } from './attempt-limiter.js'
import { AdminAuth, AuthError, MIN_PASSWORD_LENGTH, type Session } from './admin-auth.js'
import { boxNames, type BoxWebCertificate } from './box-certificate.js'
import { testConnection } from './connection-test.js'
import { changedDestination, ConnectorStore, secretFieldsOf } from './connector-store.js'
import { runDiagnostics, type DiagnosticCheck } from './diagnostics.js'
import type { LogRing } from './log-ring.js'
import { cookieValue, hostNameOf, jsonDepthExceeds, MAX_JSON_DEPTH } from './request-guards.js'
import {
  ConnectionTestSchema, ConnectorBodySchema, ConnectorIdParamsSchema, ConnectorListSchema, ConnectorTestBodySchema, ConnectorTypesSchema,
  DiagnosticsSchema, EnrollBodySchema, EnrollmentStateSchema, ErrorSchema, FactoryResetBodySchema, LogsSchema, OkSchema, PasswordBodySchema,
  SessionStateSchema, SetupBodySchema, StatusSchema, type ConnectorView,
} from './schemas.js'
import { sameSecret, setupCodeBanner } from './setup-code.js'
import { errorBody, HttpError } from './http-error.js'
import { applianceRoutes } from '../appliance/appliance-routes.js'
import { boxUpdateRoutes, type BoxUpdates } from './update-routes.js'
import { NetworkService } from '../appliance/network-service.js'
import { SshAccessStore } from '../appliance/ssh-access.js'

export const SESSION_COOKIE = 'box_session'
export const CSRF_HEADER = 'x-csrf-token'

export interface BoxWebServerDeps {
  gateway: Gateway
  config: Readonly<LoadedGatewayConfig>
  registry: ReadonlyMap<string, AdapterDefinition>
  logger: Logger
  clock: Clock
  logRing: LogRing
  certificate: BoxWebCertificate
  /** Ids of the connectors from the config file: shown, never edited here. */
  fileConnectorIds: ReadonlySet<string>
  /** Test connection's wait for the link and the directory. */
  connectionTestTimeoutMs?: number
  /**
   * Where the box prints for whoever stands at it: the service's stderr, which systemd sends to the console and
   * the journal. The setup code goes there at every start while the box is unclaimed.
   */
  console?: { write(text: string): unknown }
  /** Sign-in attempt limits (default 5 per address and 30 in total per 5 minutes). */
  loginLimits?: AttemptLimits
  /** Live log tails open at once (default 4). */
  maxLogTails?: number
  /** The box's network settings (default: one on dataDir with a 5-minute trial); started and stopped with the server. */
  network?: NetworkService
  /** Told when the box is claimed (admin password set) or factory reset: the console screen changes then. */
  onBoxStateChange?: (event: 'claimed' | 'reset') => void
  /** The box's update agent, for the update panel and bundle uploads; without it the panel says updates are not available. */
  updates?: BoxUpdates
  /** Largest bundle an upload may be (default 1 GiB). */
  maxUploadBytes?: number
}

/** Bodies of the first-visit and sign-in forms: a password and a code, nothing near this size. */
const SMALL_BODY_LIMIT = 8 * 1024


const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000',
  'cache-control': 'no-store',
}

const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
}

/**
 * The box's setup page over HTTPS: the static app from dist/web/box and its API under /api (first-visit password,
 * login, sessions with CSRF tokens, enrollment, connectors, status, log tail, diagnostics, factory reset).
 */
export function buildBoxWebServer(deps: BoxWebServerDeps) {
  const log = deps.logger.child({ component: 'web' })
  const auth = new AdminAuth({ dataDir: deps.config.dataDir, idleMs: deps.config.web.sessionIdleMinutes * 60_000, ...(deps.loginLimits ? { loginLimits: deps.loginLimits } : {}) }, { clock: deps.clock })
  const connectorStore = new ConnectorStore(deps.config.dataDir, deps.registry)
  const network = deps.network ?? new NetworkService({ dataDir: deps.config.dataDir, clock: deps.clock, logger: deps.logger })
  const ssh = new SshAccessStore(deps.config.dataDir, deps.logger)
  const app = Fastify({
    https: { key: deps.certificate.keyPem, cert: deps.certificate.certPem, minVersion: 'TLSv1.2' as const },
    loggerInstance: log,
    // Request lines would drown the live log tail the installer reads.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    trustProxy: false,
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.addHook('onSend', async (_request, reply) => {
    reply.headers(SECURITY_HEADERS)
  })

  // DNS rebinding: a page of another site whose name resolves to the box would be "same origin" with itself.
  // The box answers only to the names and addresses it has (and web.allowedHosts).
  let hostsCache: { at: number; names: Set<string> } | undefined
  function knownHosts(): Set<string> {
    const now = deps.clock.now()
    if (!hostsCache || now - hostsCache.at > 30_000) {
      const { dns, ips } = boxNames() // read again: a DHCP lease may have changed the box's address since first boot
      const names = [...deps.certificate.names, ...dns, ...ips, ...(deps.config.web.allowedHosts ?? []), deps.config.web.host]
      hostsCache = { at: now, names: new Set(names.map((n) => n.toLowerCase())) }
    }
    return hostsCache.names
  }
  app.addHook('onRequest', async (request) => {
    const name = hostNameOf(request.headers.host)
    if (name === undefined || !knownHosts().has(name)) {
      log.warn({ client: request.ip, host: String(request.headers.host ?? '').slice(0, 100) }, 'request for another host name refused')
      throw new HttpError(421, 'WEB_BAD_HOST', `This box does not answer to the name "${String(request.headers.host ?? '').slice(0, 100)}": open the setup page at the box's own address (its IP address, e.g. https://${[...knownHosts()].find((h) => /^\d+\.\d+\.\d+\.\d+$/.test(h) && h !== '127.0.0.1') ?? '127.0.0.1'}/), or add the name to web.allowedHosts in the config.`)
    }
  })

  // JSON nested deeper than any form needs is refused before it is parsed (a 5,000-deep body overflowed the stack).
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
      done(new HttpError(400, 'WEB_JSON_TOO_DEEP', `The request is nested more than ${MAX_JSON_DEPTH} levels deep, which no form of this page sends: reload the page and use its forms.`), undefined)
      return
    }
    parseJson(request, text, done)
  })

  app.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number }, request, reply) => {
    if (err instanceof HttpError) {
      if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS))
      return reply.code(err.status).send(errorBody(err.code, err.message, err.field))
    }
    if (err instanceof AuthError) {
      if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS))
      return reply.code(err.status).send(errorBody(err.code, err.message, err.field))
    }
    if (err.validation) return reply.code(400).send(errorBody('WEB_BAD_REQUEST', `The request is not valid: ${err.message}`))
    if ((err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      log.warn({ client: request.ip, url: request.url.slice(0, 100) }, 'request body too large refused')
      return reply.code(413).send(errorBody('WEB_BODY_TOO_LARGE', 'The request is too large for this form: shorten what you entered (a connector\'s user list is limited to 1 MiB).'))
    }
    const status = err.statusCode ?? 500
    if (status < 500) return reply.code(status).send(errorBody('WEB_BAD_REQUEST', err.message))
    request.log.error({ err }, 'request failed')
    return reply.code(500).send(errorBody('WEB_INTERNAL', 'The box could not do that: the live log on the Status page has the details.'))
  })

  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'PBX presence gateway: the box\'s setup API', version: GATEWAY_VERSION, description: 'Session cookie (httpOnly, Secure, SameSite=Strict) and an x-csrf-token header on every POST, PUT and DELETE.' },
    },
  })

  // Static app
  app.get('/', { schema: { hide: true } }, (request, reply) => sendStatic(request, reply))
  for (const path of ['/index.html', '/app.js', '/app.css']) app.get(path, { schema: { hide: true } }, (request, reply) => sendStatic(request, reply))
  async function sendStatic(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const entry = STATIC_FILES[request.url.split('?')[0] ?? '/']
    if (!entry) return reply.code(404).send('not found')
    try {
      const body = await readFile(join(deps.config.web.staticDir, entry.file))
      return reply.type(entry.type).send(body)
    } catch {
      return reply.code(503).type('text/plain').send(`The setup page is not built: run "npm run build:web" (web.staticDir is ${deps.config.web.staticDir}).`)
    }
  }

  const uiConnectors = new Map<string, ConnectorConfig>()
  const maxTails = deps.maxLogTails ?? 4
  const tails = new Set<{ sessionId: string; end(): void }>()
  auth.onSessionEnd((id) => { for (const tail of [...tails]) if (tail.sessionId === id) tail.end() })
  // Open tails would keep close() waiting for their sockets.
  app.addHook('preClose', async () => { for (const tail of [...tails]) tail.end() })
  let diagnosing: Promise<DiagnosticCheck[]> | undefined
  const ready = connectorStore.load().then((list) => { for (const c of list) uiConnectors.set(c.id, c) })

  function sessionOf(request: FastifyRequest): Session | undefined {
    return auth.session(cookieValue(request.headers.cookie, SESSION_COOKIE))
  }
  function setSessionCookie(reply: FastifyReply, session: Session | undefined): void {
    reply.header('set-cookie', session
      ? `${SESSION_COOKIE}=${session.id}; Path=/; HttpOnly; Secure; SameSite=Strict`
      : `${SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`)
  }
  function requireSession(request: FastifyRequest): Session {
    const session = sessionOf(request)
    if (!session) throw new HttpError(401, 'WEB_SIGNED_OUT', 'You are signed out (or the session expired after inactivity): sign in again.')
    return session
  }

  const secretsOf = (type: string): Set<string> => {
    const definition = deps.registry.get(type)
    return new Set(definition ? secretFieldsOf(definition.configSchema) : [])
  }

  function view(connector: ConnectorConfig, source: ConnectorView['source']): ConnectorView {
    const config: Record<string, unknown> = {}
    const secretsSet: string[] = []
    const secrets = secretsOf(connector.type)
    for (const [key, value] of Object.entries(connector)) {
      if (secrets.has(key)) {
        if (value !== undefined && value !== '') secretsSet.push(key)
      } else if (key !== 'id' && key !== 'type') {
        config[key] = value
      }
    }
    return { id: connector.id, type: connector.type, source, config, secretsSet }
  }

  /**
   * The submitted config checked against its adapter's schema. An empty secret keeps the stored one, but only
   * for the same PBX type and the same host, port, path and TLS/pin settings: the page must never be a way to send
   * a stored secret somewhere new.
   */
  function checkConnector(id: string, type: string, submitted: Record<string, unknown>, previous: ConnectorConfig | undefined, client: string): { definition: AdapterDefinition; config: ConnectorConfig } {
    const definition = deps.registry.get(type)
    if (!definition) throw new HttpError(400, 'WEB_UNKNOWN_TYPE', `Unknown PBX type "${type}": choose one of ${[...deps.registry.keys()].join(', ')}.`, 'type')
    const merged: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(submitted)) {
      if (value === '' || value === null) continue // an empty field means "not set" (or "keep" for a secret)
      merged[key] = value
    }
    const secrets = secretsOf(type)
    const kept = previous ? [...secrets].filter((key) => merged[key] === undefined && (previous as Record<string, unknown>)[key] !== undefined) : []
    if (previous && kept.length > 0) {
      const changed = changedDestination(previous, checkWithDefaults(definition.configSchema, { ...merged, id, type }).value as Record<string, unknown>)
      if (changed.length > 0) {
        log.warn({ connector: id, client, changed }, 'stored secret not reused: the connector\'s address or TLS settings changed')
        const field = kept[0] ?? 'password'
        throw new HttpError(400, 'WEB_SECRET_NEEDED', `You changed ${changed.join(', ')}: type the ${field} again. The box sends a stored ${field} only to the address and TLS settings it was entered for.`, field)
      }
      for (const key of kept) merged[key] = (previous as Record<string, unknown>)[key]
    }
    const { value, problems } = checkConnectorConfig(definition, { ...merged, id, type })
    if (problems.length > 0) {
      const first = problems[0] ?? ''
      const field = /^\/([^/:]+)/.exec(first)?.[1]
      throw new HttpError(400, 'WEB_CONNECTOR_INVALID', `Check the form: ${problems.slice(0, 5).join('; ')}`, field)
    }
    return { definition, config: value as ConnectorConfig }
  }

  const apiRoutes: FastifyPluginAsyncTypebox = async (api) => {
    // CSRF: every state-changing request must come from this page (Origin) and, once signed in, carry the session's token.
    api.addHook('onRequest', async (request) => {
      if (request.method === 'GET' || request.method === 'HEAD') return
      const origin = request.headers.origin
      if (origin !== undefined && origin !== `https://${request.headers.host ?? ''}`) {
        throw new HttpError(403, 'WEB_BAD_ORIGIN', 'This request came from another site and was refused. Open the setup page directly at its address.')
      }
      const path = request.url.split('?')[0]
      if (path === '/api/setup' || path === '/api/login') return
      const session = requireSession(request)
      const token = request.headers[CSRF_HEADER]
      if (typeof token !== 'string' || !sameSecret(token, session.csrfToken)) {
        throw new HttpError(403, 'WEB_CSRF', 'The page is out of date (missing or wrong security token): reload the page and try again.')
      }
    })

    api.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

    api.get('/session', { schema: { summary: 'Whether a password is set and whether this browser is signed in', response: { 200: SessionStateSchema } } }, async (request) => {
      const session = sessionOf(request)
      return {
        passwordSet: await auth.hasPassword(), signedIn: session !== undefined, ...(session ? { csrfToken: session.csrfToken } : {}),
        certificateFingerprint: deps.certificate.fingerprint256, certificateNames: deps.certificate.names, version: GATEWAY_VERSION, minPasswordLength: MIN_PASSWORD_LENGTH,
      }
    })

    api.post('/setup', { bodyLimit: SMALL_BODY_LIMIT, schema: { summary: 'First visit: set the admin password (there is no default), with the setup code the box prints on its console', body: SetupBodySchema, response: { 200: OkSchema, '4xx': ErrorSchema } } }, async (request, reply) => {
      if (request.body.password.length < MIN_PASSWORD_LENGTH) throw new HttpError(400, 'WEB_PASSWORD_SHORT', `Choose a password of at least ${MIN_PASSWORD_LENGTH} characters.`, 'password')
      let session: Session
      try {
        session = await auth.setInitialPassword(request.body.password, request.body.setupCode, request.ip)
      } catch (err) {
        if (err instanceof AuthError && err.code !== 'WEB_PASSWORD_EXISTS') log.warn({ client: request.ip, code: err.code }, 'setup code refused')
        throw err
      }
      log.info({ client: request.ip }, 'admin password set on first visit: the setup code is used up')
      deps.onBoxStateChange?.('claimed')
      setSessionCookie(reply, session)
      return { ok: true, csrfToken: session.csrfToken }
    })

    api.post('/login', { bodyLimit: SMALL_BODY_LIMIT, schema: { summary: 'Sign in (5 wrong passwords per 5 minutes per address)', body: PasswordBodySchema, response: { 200: OkSchema, '4xx': ErrorSchema } } }, async (request, reply) => {
      try {
        const session = await auth.login(request.body.password, request.ip)
        setSessionCookie(reply, session)
        return { ok: true, csrfToken: session.csrfToken }
      } catch (err) {
        if (err instanceof AuthError) log.warn({ client: request.ip, code: err.code }, 'setup page sign-in refused')
        throw err
      }
    })

    api.post('/logout', { schema: { summary: 'Sign out', response: { 200: OkSchema } } }, async (request, reply) => {
      auth.logout(cookieValue(request.headers.cookie, SESSION_COOKIE))
      setSessionCookie(reply, undefined)
      return { ok: true }
    })

    // Everything below needs a session.
    await api.register(async (plain) => {
      const authed = plain.withTypeProvider<TypeBoxTypeProvider>()
      authed.addHook('onRequest', async (request) => { requireSession(request) })

      authed.get('/connector-types', { schema: { summary: 'PBX types and their config schemas', response: { 200: ConnectorTypesSchema } } }, async () => ({
        types: [...deps.registry.values()].map((definition) => ({
          type: definition.type,
          schema: JSON.parse(JSON.stringify(definition.configSchema)) as unknown,
          secretFields: secretFieldsOf(definition.configSchema),
        })),
      }))

      authed.get('/connectors', { schema: { summary: 'Connectors, without their secrets', response: { 200: ConnectorListSchema } } }, async () => {
        await ready
        return {
          connectors: deps.gateway.connectorConfigs().map((c) => view(c, deps.fileConnectorIds.has(c.id) ? 'file' : 'setup-page')),
        }
      })

      authed.put('/connectors/:id', { schema: { summary: 'Add or replace a connector (it starts at once); an empty secret keeps the stored one only for the same address and TLS settings', params: ConnectorIdParamsSchema, body: ConnectorBodySchema, response: { 200: ConnectorListSchema.properties.connectors.items, '4xx': ErrorSchema } } }, async (request) => {
        await ready
        const { id } = request.params
        if (deps.fileConnectorIds.has(id)) throw new HttpError(409, 'WEB_CONNECTOR_IN_FILE', `Connector "${id}" is defined in the config file: change it there, or pick another id.`, 'id')
        const { config } = checkConnector(id, request.body.type, request.body.config, uiConnectors.get(id), request.ip)
        uiConnectors.set(id, config)
        await connectorStore.save([...uiConnectors.values()])
        await deps.gateway.putConnector(config)
        log.info({ connector: id, pbx: config.type }, 'connector saved in the setup page')
        return view(config, 'setup-page')
      })

      authed.delete('/connectors/:id', { schema: { summary: 'Remove a connector', params: ConnectorIdParamsSchema, response: { 200: OkSchema, '4xx': ErrorSchema } } }, async (request) => {
        await ready
        const { id } = request.params
        if (deps.fileConnectorIds.has(id)) throw new HttpError(409, 'WEB_CONNECTOR_IN_FILE', `Connector "${id}" is defined in the config file: remove it there.`)
        if (!uiConnectors.delete(id)) throw new HttpError(404, 'WEB_NO_CONNECTOR', `There is no connector "${id}": reload the page.`)
        await connectorStore.save([...uiConnectors.values()])
        await deps.gateway.removeConnector(id)
        log.info({ connector: id }, 'connector removed in the setup page')
        return { ok: true }
      })

      authed.post('/connectors/test', { schema: { summary: 'Connect with this config, report the users found, disconnect', body: ConnectorTestBodySchema, response: { 200: ConnectionTestSchema, '4xx': ErrorSchema } } }, async (request) => {
        await ready
        const { id, type } = request.body
        const previous = uiConnectors.get(id) ?? deps.gateway.connectorConfigs().find((c) => c.id === id)
        const { definition, config } = checkConnector(id, type, request.body.config, previous, request.ip)
        return testConnection(definition, config, { logger: deps.logger, clock: deps.clock }, deps.connectionTestTimeoutMs)
      })

      authed.get('/enrollment', { schema: { summary: 'Whether the box is enrolled, and as which gateway', response: { 200: EnrollmentStateSchema } } }, async () => {
        const identity = await new IdentityStore(deps.config.dataDir).load().catch(() => undefined)
        const relay = deps.config.relay
        return {
          enrolled: identity !== undefined,
          ...(identity ? { gatewayId: identity.gatewayId, tenantId: identity.tenantId, relayUrl: identity.relayUrl, notAfter: identity.notAfter } : {}),
          ...(relay.enrollUrl ? { configuredRelayUrl: relay.enrollUrl } : {}),
          configuredPin: relay.caFingerprint !== undefined || relay.caFile !== undefined,
        }
      })

      authed.post('/enrollment', { schema: { summary: 'Enrol the box with a one-time code from the console, then connect', body: EnrollBodySchema, response: { 200: EnrollmentStateSchema, '4xx': ErrorSchema } } }, async (request) => {
        const relay = deps.config.relay
        const relayUrl = request.body.relayUrl?.trim() || relay.enrollUrl
        if (!relayUrl) throw new HttpError(400, 'WEB_RELAY_URL_MISSING', 'Enter the relay address shown in the console (https://…).', 'relayUrl')
        const pin = request.body.caFingerprint?.trim() || relay.caFingerprint
        const client = new EnrollmentClient({ store: new IdentityStore(deps.config.dataDir), clock: deps.clock, logger: deps.logger }, {
          relayUrl,
          ...(pin ? { caFingerprint: pin } : {}),
          ...(relay.caFile ? { caFile: relay.caFile } : {}),
          ...(relay.proxyUrl ? { proxyUrl: relay.proxyUrl } : {}),
        })
        let identity
        try {
          identity = await client.enroll({ code: request.body.code.trim() })
        } catch (err) {
          if (err instanceof BoxEnrollmentError) {
            const field = err.code.startsWith('ENROLL_CODE') ? 'code' : /PIN|UNKNOWN_CA/.test(err.code) ? 'caFingerprint' : /DNS|REFUSED|BAD_URL|TIMEOUT|HOSTNAME/.test(err.code) ? 'relayUrl' : undefined
            throw new HttpError(err.status === 429 ? 429 : 400, err.code, `${err.message.charAt(0).toUpperCase()}${err.message.slice(1)}`, field)
          }
          throw err
        }
        log.info({ gatewayId: identity.gatewayId, tenantId: identity.tenantId }, 'box enrolled from the setup page: connecting')
        // Connect with the new identity in the background; the page follows the status.
        void deps.gateway.restart('enrolled').catch((err: unknown) => log.error({ err: (err as Error).message }, 'the gateway did not start after enrollment'))
        return { enrolled: true, gatewayId: identity.gatewayId, tenantId: identity.tenantId, relayUrl: identity.relayUrl, notAfter: identity.notAfter, configuredPin: pin !== undefined }
      })

      authed.get('/status', { schema: { summary: 'Tunnel, PBX links and recent endpoint events', response: { 200: StatusSchema } } }, async () => {
        const tunnel = deps.gateway.tunnel()
        const lastError = tunnel.connected ? undefined : deps.logRing.lastError('uplink')?.msg
        return {
          tunnel: { gatewayId: tunnel.gatewayId, enrolled: tunnel.enrolled, connected: tunnel.connected, ...(tunnel.transportUrl ? { transportUrl: tunnel.transportUrl } : {}), ...(lastError ? { lastError } : {}) },
          links: deps.gateway.links().map((l) => ({ connectorId: l.connectorId, pbxType: l.pbxType, state: l.state, since: l.since, endpoints: l.endpoints, ...(l.reason ? { reason: l.reason } : {}) })),
          events: deps.gateway.recentEvents().reverse().map((e) => ({ connectorId: e.connectorId, endpointId: e.endpointId, state: e.state, dnd: e.dnd, cause: e.cause, changedAt: e.changedAt })),
          memory: { rssBytes: process.memoryUsage.rss(), systemUsedBytes: totalmem() - freemem(), systemTotalBytes: totalmem() },
        }
      })

      authed.get('/logs', { schema: { summary: 'The latest log lines', response: { 200: LogsSchema } } }, async () => ({
        lines: deps.logRing.lines(200).map((l) => ({ ...l, ...(l.component === undefined ? { component: undefined } : {}) })),
      }))

      authed.get('/logs/stream', { schema: { summary: `Live log tail (Server-Sent Events, one JSON line per event; at most ${maxTails} at once, each ends with its session)` } }, (request, reply) => {
        if (tails.size >= maxTails) {
          log.warn({ client: request.ip, open: tails.size }, 'live log tail refused: too many open')
          throw new HttpError(429, 'WEB_TOO_MANY_TAILS', `${tails.size} live log views are open already: close other tabs or windows showing the Status page, then reload this one.`)
        }
        const sessionId = cookieValue(request.headers.cookie, SESSION_COOKIE) ?? ''
        reply.hijack()
        const raw = reply.raw
        raw.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream', connection: 'keep-alive' })
        raw.write(': tail\n\n')
        const off = deps.logRing.onLine((line) => raw.write(`data: ${JSON.stringify(line)}\n\n`))
        // The ping also notices a session that expired without a request (the tail itself is not activity).
        const ping = setInterval(() => (auth.peek(sessionId) ? raw.write(': ping\n\n') : tail.end()), 15_000)
        const tail = {
          sessionId,
          end: () => {
            off()
            clearInterval(ping)
            tails.delete(tail)
            raw.end()
          },
        }
        tails.add(tail)
        request.raw.on('close', () => tail.end())
      })

      authed.post('/diagnostics', { schema: { summary: 'DNS, TCP and TLS to each configured broker URL (never to one named in the request), and the clock against the relay', response: { 200: DiagnosticsSchema } } }, async () => {
        // One run at a time: a second click (or tab) waits for the same answer instead of opening more sockets.
        diagnosing ??= (async () => {
          const identity = await new IdentityStore(deps.config.dataDir).load().catch(() => undefined)
          const brokerUrls = identity && identity.brokerUrls.length > 0 ? identity.brokerUrls : [deps.config.relay.url, ...(deps.config.relay.fallbackUrls ?? [])]
          return runDiagnostics({ brokerUrls: brokerUrls.slice(0, 8), enrollUrl: identity?.relayUrl ?? deps.config.relay.enrollUrl, caPem: identity?.caPem })
        })().finally(() => { diagnosing = undefined })
        const checks = await diagnosing
        return { checks: checks.map((c) => ({ ...c, durationMs: Math.round(c.durationMs) })) }
      })

      authed.post('/factory-reset', { schema: { summary: 'Wipe identity, setup-page connectors, password and state; the box starts as new', body: FactoryResetBodySchema, response: { 200: OkSchema, '4xx': ErrorSchema } } }, async (request, reply) => {
        if (request.body.confirm !== 'RESET') throw new HttpError(400, 'WEB_RESET_NOT_CONFIRMED', 'Type RESET in capitals to confirm the factory reset.', 'confirm')
        log.warn('factory reset from the setup page')
        await deps.gateway.stop('factory reset')
        for (const id of uiConnectors.keys()) await deps.gateway.removeConnector(id)
        uiConnectors.clear()
        const { removed } = await factoryReset(deps.config.dataDir)
        connectorStore.forget()
        auth.reset() // ends every session, and with them every live log tail
        // Keep serving (and keep on disk) the same page certificate: the installer already checked its fingerprint.
        await writeFileAtomic(join(deps.config.dataDir, 'web', 'tls-key.pem'), deps.certificate.keyPem, 0o600).catch(() => undefined)
        await writeFileAtomic(join(deps.config.dataDir, 'web', 'tls-cert.pem'), deps.certificate.certPem, 0o644).catch(() => undefined)
        log.warn({ removed }, 'factory reset done: the box starts as new')
        await announceSetupCode()
        // The data folder held the network and SSH settings too: DHCP and SSH off again, applied by root's units.
        await network.resetToDefault()
        await ssh.put(false, [])
        deps.onBoxStateChange?.('reset')
        setSessionCookie(reply, undefined)
        void deps.gateway.start().catch((err: unknown) => log.error({ err: (err as Error).message }, 'the gateway did not start after the factory reset'))
        return { ok: true }
      })

      await authed.register(applianceRoutes, { dataDir: deps.config.dataDir, network, ssh })
      await authed.register(boxUpdateRoutes, { updates: deps.updates, runningVersion: GATEWAY_VERSION, dir: join(deps.config.dataDir, 'update'), maxBytes: deps.maxUploadBytes ?? 1024 ** 3 })
    })
  }

  void app.register(apiRoutes, { prefix: '/api' })

  /**
   * While the box is unclaimed: makes (or reads) its setup code and prints it with the setup page's addresses on
   * the console and in the log. At every start, and after a factory reset.
   */
  let urls: string[] = []
  async function announceSetupCode(listening?: { url: string; port: number }): Promise<string | undefined> {
    if (listening) urls = setupUrls(deps.config.web.host, listening)
    const code = await auth.pendingSetupCode()
    if (!code) return undefined
    deps.console?.write(setupCodeBanner(code, urls))
    // The code in the message itself: an operator reading the journal needs it, and field-based redaction must not hide it.
    log.warn({ urls }, `box not claimed yet: open ${urls[0] ?? 'the setup page'} and enter the setup code ${code}`)
    return code
  }
  return { app, ready, announceSetupCode, network }
}

/** The addresses an installer can type: the listening address, or every LAN address when listening on all. */
function setupUrls(host: string, listening: { url: string; port: number }): string[] {
  if (host !== '0.0.0.0' && host !== '::') return [listening.url]
  const port = listening.port === 443 ? '' : `:${listening.port}`
  const lan = boxNames().ips.filter((ip) => ip !== '127.0.0.1' && ip !== '::1' && !ip.includes(':'))
  return [...lan.map((ip) => `https://${ip}${port}/`), listening.url]
}

/** The setup page's server with its lifecycle: listen on web.host/web.port, close. */
export class BoxWebServer {
  readonly #deps: BoxWebServerDeps
  #server: ReturnType<typeof buildBoxWebServer> | undefined

  constructor(deps: BoxWebServerDeps) {
    this.#deps = deps
  }

  /** Default port: 443 on a box (running as root), 8443 otherwise. */
  static defaultPort(): number {
    return process.getuid?.() === 0 ? 443 : 8443
  }

  /** Listens; while the box is unclaimed, prints its setup code (also returned) with the addresses. */
  async start(): Promise<{ url: string; port: number; setupCode: string | undefined }> {
    this.#server ??= buildBoxWebServer(this.#deps)
    const { app, ready, announceSetupCode, network } = this.#server
    await ready
    await network.start()
    await app.listen({ host: this.#deps.config.web.host, port: this.#deps.config.web.port ?? BoxWebServer.defaultPort() })
    const port = (app.server.address() as AddressInfo).port
    const host = this.#deps.config.web.host === '0.0.0.0' ? 'localhost' : this.#deps.config.web.host
    const url = `https://${host}:${port}/`
    return { url, port, setupCode: await announceSetupCode({ url, port }) }
  }

  async stop(): Promise<void> {
    this.#server?.network.stop()
    await this.#server?.app.close()
    this.#server = undefined
  }
}
