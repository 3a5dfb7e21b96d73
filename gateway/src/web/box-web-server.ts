import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import swagger from '@fastify/swagger'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { AdapterDefinition } from '../adapters/types.js'
import { GATEWAY_VERSION, type ConnectorConfig, type Gateway } from '../app.js'
import { checkWithDefaults, type LoadedGatewayConfig } from '../config/load.js'
import type { Clock } from '../core/clock.js'
import { BoxEnrollmentError, EnrollmentClient } from '../identity/enrollment-client.js'
import { factoryReset, IdentityStore } from '../identity/identity-store.js'
import { writeFileAtomic } from '../identity/atomic-file.js'
import { AdminAuth, AuthError, MIN_PASSWORD_LENGTH, type Session } from './admin-auth.js'
import type { BoxWebCertificate } from './box-certificate.js'
import { testConnection } from './connection-test.js'
import { ConnectorStore, isSecretField } from './connector-store.js'
import { runDiagnostics } from './diagnostics.js'
import type { LogRing } from './log-ring.js'
import {
  ConnectionTestSchema, ConnectorBodySchema, ConnectorIdParamsSchema, ConnectorListSchema, ConnectorTestBodySchema, ConnectorTypesSchema,
  DiagnosticsSchema, EnrollBodySchema, EnrollmentStateSchema, ErrorSchema, FactoryResetBodySchema, LogsSchema, OkSchema, PasswordBodySchema,
  SessionStateSchema, StatusSchema, type ConnectorView, type ErrorBody,
} from './schemas.js'

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
}

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly field?: string, readonly retryAfterS?: number) {
    super(message)
  }
}

const errorBody = (code: string, message: string, field?: string): ErrorBody => ({ error: { code, message, ...(field ? { field } : {}) } })

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=')
    if (key === name) return rest.join('=')
  }
  return undefined
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
  const auth = new AdminAuth({ dataDir: deps.config.dataDir, idleMs: deps.config.web.sessionIdleMinutes * 60_000 }, { clock: deps.clock })
  const connectorStore = new ConnectorStore(deps.config.dataDir)
  const app = Fastify({
    https: { key: deps.certificate.keyPem, cert: deps.certificate.certPem },
    loggerInstance: log,
    // Request lines would drown the live log tail the installer reads.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    trustProxy: false,
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    reply.header('x-frame-options', 'DENY')
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
    reply.header('strict-transport-security', 'max-age=31536000')
    reply.header('cache-control', 'no-store')
  })

  app.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number }, request, reply) => {
    if (err instanceof HttpError) {
      if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS))
      return reply.code(err.status).send(errorBody(err.code, err.message, err.field))
    }
    if (err instanceof AuthError) {
      if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS))
      return reply.code(err.status).send(errorBody(err.code, err.message, 'password'))
    }
    if (err.validation) return reply.code(400).send(errorBody('WEB_BAD_REQUEST', `The request is not valid: ${err.message}`))
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

  function view(connector: ConnectorConfig, source: ConnectorView['source']): ConnectorView {
    const config: Record<string, unknown> = {}
    const secretsSet: string[] = []
    for (const [key, value] of Object.entries(connector)) {
      if (isSecretField(key)) {
        if (value !== undefined && value !== '') secretsSet.push(key)
      } else if (key !== 'id' && key !== 'type') {
        config[key] = value
      }
    }
    return { id: connector.id, type: connector.type, source, config, secretsSet }
  }

  /** The submitted config checked against its adapter's schema; empty secrets keep the stored ones. */
  function checkConnector(id: string, type: string, submitted: Record<string, unknown>, previous: ConnectorConfig | undefined): { definition: AdapterDefinition; config: ConnectorConfig } {
    const definition = deps.registry.get(type)
    if (!definition) throw new HttpError(400, 'WEB_UNKNOWN_TYPE', `Unknown PBX type "${type}": choose one of ${[...deps.registry.keys()].join(', ')}.`, 'type')
    const merged: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(submitted)) {
      if (value === '' || value === null) continue // an empty field means "not set" (or "keep" for a secret)
      merged[key] = value
    }
    if (previous && previous.type === type) {
      for (const [key, value] of Object.entries(previous)) if (isSecretField(key) && merged[key] === undefined && value !== undefined) merged[key] = value
    }
    const { value, problems } = checkWithDefaults(definition.configSchema, { ...merged, id, type })
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
      if (request.headers[CSRF_HEADER] !== session.csrfToken) {
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

    api.post('/setup', { schema: { summary: 'First visit: set the admin password (there is no default)', body: PasswordBodySchema, response: { 200: OkSchema, '4xx': ErrorSchema } } }, async (request, reply) => {
      if (request.body.password.length < MIN_PASSWORD_LENGTH) throw new HttpError(400, 'WEB_PASSWORD_SHORT', `Choose a password of at least ${MIN_PASSWORD_LENGTH} characters.`, 'password')
      const session = await auth.setInitialPassword(request.body.password)
      log.info('admin password set on first visit')
      setSessionCookie(reply, session)
      return { ok: true, csrfToken: session.csrfToken }
    })

    api.post('/login', { schema: { summary: 'Sign in (5 wrong passwords per 5 minutes per address)', body: PasswordBodySchema, response: { 200: OkSchema, '4xx': ErrorSchema } } }, async (request, reply) => {
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
          secretFields: Object.keys((definition.configSchema as { properties?: Record<string, unknown> }).properties ?? {}).filter(isSecretField),
        })),
      }))

      authed.get('/connectors', { schema: { summary: 'Connectors, without their secrets', response: { 200: ConnectorListSchema } } }, async () => {
        await ready
        return {
          connectors: deps.gateway.connectorConfigs().map((c) => view(c, deps.fileConnectorIds.has(c.id) ? 'file' : 'setup-page')),
        }
      })

      authed.put('/connectors/:id', { schema: { summary: 'Add or replace a connector (it starts at once)', params: ConnectorIdParamsSchema, body: ConnectorBodySchema, response: { 200: ConnectorListSchema.properties.connectors.items, '4xx': ErrorSchema } } }, async (request) => {
        await ready
        const { id } = request.params
        if (deps.fileConnectorIds.has(id)) throw new HttpError(409, 'WEB_CONNECTOR_IN_FILE', `Connector "${id}" is defined in the config file: change it there, or pick another id.`, 'id')
        const { config } = checkConnector(id, request.body.type, request.body.config, uiConnectors.get(id))
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
        const { definition, config } = checkConnector(id, type, request.body.config, previous)
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
        }
      })

      authed.get('/logs', { schema: { summary: 'The latest log lines', response: { 200: LogsSchema } } }, async () => ({
        lines: deps.logRing.lines(200).map((l) => ({ ...l, ...(l.component === undefined ? { component: undefined } : {}) })),
      }))

      authed.get('/logs/stream', { schema: { summary: 'Live log tail (Server-Sent Events, one JSON line per event)' } }, (request, reply) => {
        reply.hijack()
        const raw = reply.raw
        raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-content-type-options': 'nosniff' })
        raw.write(': tail\n\n')
        const off = deps.logRing.onLine((line) => raw.write(`data: ${JSON.stringify(line)}\n\n`))
        const ping = setInterval(() => raw.write(': ping\n\n'), 15_000)
        request.raw.on('close', () => {
          off()
          clearInterval(ping)
        })
      })

      authed.post('/diagnostics', { schema: { summary: 'DNS, TCP and TLS to each broker URL, and the clock against the relay', response: { 200: DiagnosticsSchema } } }, async () => {
        const identity = await new IdentityStore(deps.config.dataDir).load().catch(() => undefined)
        const brokerUrls = identity && identity.brokerUrls.length > 0 ? identity.brokerUrls : [deps.config.relay.url, ...(deps.config.relay.fallbackUrls ?? [])]
        const checks = await runDiagnostics({ brokerUrls, enrollUrl: identity?.relayUrl ?? deps.config.relay.enrollUrl, caPem: identity?.caPem })
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
        auth.reset()
        // Keep serving (and keep on disk) the same page certificate: the installer already checked its fingerprint.
        await writeFileAtomic(join(deps.config.dataDir, 'web', 'tls-key.pem'), deps.certificate.keyPem, 0o600).catch(() => undefined)
        await writeFileAtomic(join(deps.config.dataDir, 'web', 'tls-cert.pem'), deps.certificate.certPem, 0o644).catch(() => undefined)
        log.warn({ removed }, 'factory reset done: the box starts as new')
        setSessionCookie(reply, undefined)
        void deps.gateway.start().catch((err: unknown) => log.error({ err: (err as Error).message }, 'the gateway did not start after the factory reset'))
        return { ok: true }
      })
    })
  }

  void app.register(apiRoutes, { prefix: '/api' })
  return { app, ready }
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

  async start(): Promise<{ url: string; port: number }> {
    this.#server ??= buildBoxWebServer(this.#deps)
    const { app, ready } = this.#server
    await ready
    await app.listen({ host: this.#deps.config.web.host, port: this.#deps.config.web.port ?? BoxWebServer.defaultPort() })
    const port = (app.server.address() as AddressInfo).port
    const host = this.#deps.config.web.host === '0.0.0.0' ? 'localhost' : this.#deps.config.web.host
    return { url: `https://${host}:${port}/`, port }
  }

  async stop(): Promise<void> {
    await this.#server?.app.close()
    this.#server = undefined
  }
}
