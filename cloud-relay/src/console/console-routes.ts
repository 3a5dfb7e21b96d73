/**
 * The console's own API under /api/v1/console (sign-in, accounts, tenants, what an installer needs to enroll) and
 * its public side: the built app at /console/ and the OpenAPI document at /api/openapi.json.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ErrorBodySchema } from '../http/errors.js'
import { CLEARED_SESSION_COOKIE, sessionCookie, type ConsoleAuth, type ConsolePrincipal, type ConsoleSession } from './console-auth.js'
import { ConsoleError } from './console-errors.js'
import type { ConsoleAccount } from './console-store.js'

const AccountSchema = Type.Object({
  id: Type.Integer(),
  username: Type.String(),
  role: Type.Union([Type.Literal('operator'), Type.Literal('tenant-admin')]),
  tenantId: Type.Union([Type.String(), Type.Null()]),
  disabled: Type.Boolean({ description: 'a disabled account cannot sign in' }),
  createdAt: Type.String({ format: 'date-time' }),
}, { additionalProperties: false })

const SessionSchema = Type.Object({
  firstRun: Type.Boolean({ description: 'no account exists yet: create the first operator' }),
  account: Type.Union([AccountSchema, Type.Null()]),
  csrfToken: Type.Union([Type.String({ description: 'send as x-csrf-token on every change' }), Type.Null()]),
}, { additionalProperties: false })

const Credentials = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 64, description: 'letters, digits and . _ @ + -' }),
  password: Type.String({ minLength: 1, maxLength: 200, description: 'at least 10 characters for a new account' }),
}, { additionalProperties: false })

const FirstRun = Type.Object({
  username: Credentials.properties.username,
  password: Credentials.properties.password,
  setupSecret: Type.Optional(Type.String({ maxLength: 200, description: 'the setup secret from the relay\'s log at start (also in the file the log line names), or the relay\'s API token' })),
}, { additionalProperties: false })

const AccountParams = Type.Object({
  id: Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'a console account id as listed by GET /api/v1/console/accounts' }),
}, { additionalProperties: false })

const DisabledBody = Type.Object({
  disabled: Type.Boolean({ description: 'true to disable the account (its sessions end), false to enable it' }),
}, { additionalProperties: false })

const PasswordChange = Type.Object({
  currentPassword: Type.String({ minLength: 1, maxLength: 200, description: 'the password you signed in with' }),
  newPassword: Type.String({ minLength: 1, maxLength: 200, description: 'at least 10 characters' }),
}, { additionalProperties: false })

const NewAccount = Type.Object({
  username: Credentials.properties.username,
  password: Credentials.properties.password,
  role: Type.Union([Type.Literal('operator'), Type.Literal('tenant-admin')]),
  tenantId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'the tenant a tenant admin manages' })),
}, { additionalProperties: false })

const TenantSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  graph: Type.Object({ configured: Type.Boolean(), clientId: Type.Union([Type.String(), Type.Null()]), credential: Type.Union([Type.Literal('secret'), Type.Literal('certificate'), Type.Null()]) }, { additionalProperties: false, description: 'the app credentials (never the secret itself)' }),
  seats: Type.Object({ limit: Type.Union([Type.Integer(), Type.Null()]), synced: Type.Integer(), people: Type.Integer() }, { additionalProperties: false }),
}, { additionalProperties: false })

const EnrollInfoSchema = Type.Object({
  enrollUrl: Type.String({ description: 'what the installer types into the box as the relay address' }),
  caPin: Type.String({ description: 'SHA-256 fingerprint of the relay CA the box pins' }),
}, { additionalProperties: false })

const ERRORS = { 400: ErrorBodySchema, 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema, 409: ErrorBodySchema, 429: ErrorBodySchema, 500: ErrorBodySchema }
const SECURITY: Array<Record<string, string[]>> = [{ console: [] }, { bearer: [] }]

export interface ConsoleTenant {
  id: string
  name: string
  graph: Static<typeof TenantSchema>['graph']
}

export interface ConsoleRoutesDeps {
  auth: ConsoleAuth
  tenants(): readonly ConsoleTenant[]
  /** People of a tenant and their sync mode (for seat usage). */
  people(tenantId: string): Promise<ReadonlyArray<{ syncMode: string }>>
  seatLimit(tenantId: string): number | undefined
  caPin(): string
  /** Signing out closes that session's live socket. */
  onLogout?(tokenHash: string): void
  /** An account was disabled or deleted, or changed its password: its live sockets close (but the one of exceptTokenHash). */
  onAccountSessionsEnded?(accountId: number, exceptTokenHash?: string): void
}

const toApiAccount = (a: ConsoleAccount): Static<typeof AccountSchema> => ({ id: a.id, username: a.username, role: a.role, tenantId: a.tenantId, disabled: a.disabled, createdAt: a.createdAt.toISOString() })

function sessionPrincipal(request: FastifyRequest): ConsolePrincipal {
  const principal = request.principal
  if (!principal || principal.kind !== 'session') throw new ConsoleError('CONSOLE_NOT_SIGNED_IN', 'This route is for console sessions: sign in to the console.')
  return principal
}

const sessionAccount = (request: FastifyRequest): ConsoleAccount => sessionPrincipal(request).account

function startSession(reply: FastifyReply, auth: ConsoleAuth, session: ConsoleSession) {
  void reply.header('set-cookie', sessionCookie(session.token, Math.floor(auth.sessionTtlMs / 1000)))
  return { firstRun: false, account: toApiAccount(session.account), csrfToken: session.csrfToken }
}

/** Registered in the HTTP server's apiRoutes (under /api/v1). */
export function consoleApiRoutes(deps: ConsoleRoutesDeps): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/console/session', {
      config: { consolePublic: true },
      schema: { summary: 'Whether the console needs its first admin, and who is signed in', response: { 200: SessionSchema, ...ERRORS } },
    }, async (request) => {
      const principal = await deps.auth.authenticate(request.headers.cookie)
      return { firstRun: principal ? false : await deps.auth.needsFirstRun(), account: principal ? toApiAccount(principal.account) : null, csrfToken: principal?.csrfToken ?? null }
    })

    app.post('/console/first-run', {
      config: { consolePublic: true },
      schema: { summary: 'Create the first console operator (only while no account exists, with the setup secret from the relay\'s log or its API token) and sign in', body: FirstRun, response: { 201: SessionSchema, ...ERRORS } },
    }, async (request, reply) => {
      const session = await deps.auth.createFirstAdmin(request.body.username, request.body.password, request.body.setupSecret, request.ip)
      return reply.code(201).send(startSession(reply, deps.auth, session))
    })

    app.post('/console/login', {
      config: { consolePublic: true },
      schema: { summary: 'Sign in (5 attempts per address and per account in 5 minutes, a success gives its own back); sets the session cookie', body: Credentials, response: { 200: SessionSchema, ...ERRORS } },
    }, async (request, reply) => {
      const session = await deps.auth.login(request.body.username, request.body.password, request.ip)
      return startSession(reply, deps.auth, session)
    })

    app.post('/console/logout', {
      schema: { summary: 'Sign out: ends the session', security: SECURITY, response: { 204: Type.Null(), ...ERRORS } },
    }, async (request, reply) => {
      const principal = request.principal
      if (principal?.kind === 'session') {
        await deps.auth.logout(principal)
        deps.onLogout?.(principal.tokenHash)
      }
      void reply.header('set-cookie', CLEARED_SESSION_COOKIE)
      return reply.code(204).send(null)
    })

    app.get('/console/accounts', {
      schema: { summary: 'Console accounts (operators only)', security: SECURITY, response: { 200: Type.Object({ accounts: Type.Array(AccountSchema) }), ...ERRORS } },
    }, async () => ({ accounts: (await deps.auth.listAccounts()).map(toApiAccount) }))

    app.post('/console/accounts', {
      schema: { summary: 'Create a console account, e.g. a tenant admin bound to one tenant (operators only)', security: SECURITY, body: NewAccount, response: { 201: AccountSchema, ...ERRORS } },
    }, async (request, reply) => {
      const { username, password, role, tenantId } = request.body
      const account = await deps.auth.createAccount(sessionAccount(request), { username, password, role, tenantId: tenantId ?? null })
      return reply.code(201).send(toApiAccount(account))
    })

    app.put('/console/accounts/:id/disabled', {
      schema: { summary: 'Disable (its sessions end) or enable a console account (operators only; the last enabled operator stays)', security: SECURITY, params: AccountParams, body: DisabledBody, response: { 200: AccountSchema, ...ERRORS } },
    }, async (request) => {
      const account = await deps.auth.setDisabled(sessionAccount(request), request.params.id, request.body.disabled)
      if (account.disabled) deps.onAccountSessionsEnded?.(account.id)
      return toApiAccount(account)
    })

    app.delete('/console/accounts/:id', {
      schema: { summary: 'Delete a console account and its sessions (operators only; the last enabled operator stays)', security: SECURITY, params: AccountParams, response: { 204: Type.Null(), ...ERRORS } },
    }, async (request, reply) => {
      const account = await deps.auth.deleteAccount(sessionAccount(request), request.params.id)
      deps.onAccountSessionsEnded?.(account.id)
      return reply.code(204).send(null)
    })

    app.put('/console/password', {
      schema: { summary: 'Change your own password with the current one; your other sessions end', security: SECURITY, body: PasswordChange, response: { 204: Type.Null(), ...ERRORS } },
    }, async (request, reply) => {
      const principal = sessionPrincipal(request)
      await deps.auth.changePassword(principal, request.body.currentPassword, request.body.newPassword)
      deps.onAccountSessionsEnded?.(principal.account.id, principal.tokenHash)
      return reply.code(204).send(null)
    })

    app.get('/console/tenants', {
      schema: { summary: 'Tenants the caller may see: Graph app credential status and seat usage', security: SECURITY, response: { 200: Type.Object({ tenants: Type.Array(TenantSchema) }), ...ERRORS } },
    }, async (request) => {
      const principal = request.principal
      const own = principal?.kind === 'session' && principal.account.role === 'tenant-admin' ? principal.account.tenantId : undefined
      const tenants = deps.tenants().filter((t) => own === undefined || t.id === own)
      return {
        tenants: await Promise.all(tenants.map(async (t) => {
          const people = await deps.people(t.id)
          return { ...t, seats: { limit: deps.seatLimit(t.id) ?? null, synced: people.filter((p) => p.syncMode !== 'off').length, people: people.length } }
        })),
      }
    })

    app.get('/console/enroll-info', {
      schema: { summary: 'What an installer needs besides the code: the relay address and the CA pin', security: SECURITY, response: { 200: EnrollInfoSchema, ...ERRORS } },
    }, async (request) => ({ enrollUrl: `${request.protocol}://${request.host}`, caPin: deps.caPin() }))
  }
}

const ASSETS: Record<string, string> = { 'index.html': 'text/html; charset=utf-8', 'app.js': 'text/javascript; charset=utf-8', 'app.css': 'text/css; charset=utf-8' }

/** The built console (dist/web/console) at /console/, and the OpenAPI document of /api/v1 at /api/openapi.json. */
export function consolePublicRoutes(options: { dir: string }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const send = async (reply: FastifyReply, file: string) => {
      // Own keys only: /console/constructor or /console/__proto__ must not pass as a known file.
      const type = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined
      if (!type) return reply.code(404).send({ error: { code: 'HTTP_NOT_FOUND', message: 'The console has no such file: open /console/.' } })
      let body: Buffer
      try {
        body = await readFile(join(options.dir, file))
      } catch {
        return reply.code(503).send({ error: { code: 'HTTP_API_NOT_CONFIGURED', message: 'The console is not built on this relay: its operator runs npm run build:web (or npm run build) and restarts it.' } })
      }
      return reply
        .header('content-type', type)
        .header('cache-control', 'no-cache')
        .header('x-content-type-options', 'nosniff')
        .header('x-frame-options', 'DENY')
        .header('referrer-policy', 'no-referrer')
        .header('content-security-policy', "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
        .send(body)
    }
    app.get('/console', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/console/'))
    app.get('/console/', { schema: { hide: true } }, async (_request, reply) => send(reply, 'index.html'))
    app.get('/console/:file', { schema: { hide: true, params: Type.Object({ file: Type.String({ maxLength: 32 }) }) } }, async (request, reply) => send(reply, request.params.file))

    app.get('/api/openapi.json', { schema: { hide: true } }, async () => {
      const document = app.swagger() as { paths?: Record<string, unknown> }
      const paths = Object.fromEntries(Object.entries(document.paths ?? {}).filter(([path]) => path.startsWith('/api/v1/')))
      return { ...document, paths }
    })
  }
}
