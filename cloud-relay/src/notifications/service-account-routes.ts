/**
 * Admin API for the sync service accounts, registered inside /api/v1 (so the bearer check applies):
 *   POST   /tenants/:tenant/service-accounts/sign-in         start a device code sign-in (answers the code)
 *   GET    /tenants/:tenant/service-accounts/sign-ins/:id    how that sign-in is going
 *   GET    /tenants/:tenant/service-accounts                 accounts with their state, and the shards
 *   DELETE /tenants/:tenant/service-accounts/:accountId      remove an account (its people are polled)
 */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { GraphApiError } from '../graph/types.js'
import type { ServiceAccounts } from '../graph/service-accounts.js'
import { ErrorBodySchema, HttpError } from '../http/errors.js'

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()])
const TenantParams = Type.Object({
  tenant: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'a tenant id from the relay config, e.g. contoso' }),
}, { additionalProperties: false })
const AccountParams = Type.Object({ ...TenantParams.properties, accountId: Type.String({ minLength: 1, maxLength: 64, description: 'a service account id as listed by GET …/service-accounts' }) }, { additionalProperties: false })
const SignInParams = Type.Object({ ...TenantParams.properties, signInId: Type.String({ minLength: 1, maxLength: 64, description: 'the id answered by POST …/sign-in' }) }, { additionalProperties: false })

const SignInSchema = Type.Object({
  id: Type.String(),
  tenantId: Type.String(),
  state: Type.Union([Type.Literal('waiting'), Type.Literal('signed-in'), Type.Literal('failed'), Type.Literal('cancelled')]),
  userCode: Type.String({ description: 'the code to enter at verificationUri' }),
  verificationUri: Type.String(),
  message: Type.String({ description: 'Entra\'s instruction for the person signing in' }),
  expiresAt: Type.String({ format: 'date-time' }),
  accountId: Nullable(Type.String()),
  error: Nullable(Type.String()),
}, { additionalProperties: false })

const AccountSchema = Type.Object({
  id: Type.String(),
  tenantId: Type.String(),
  username: Type.String(),
  state: Type.Union([Type.Literal('ok'), Type.Literal('needs-sign-in')]),
  reason: Nullable(Type.String({ description: 'why the account needs a sign-in' })),
  action: Nullable(Type.String({ description: 'what the admin should do' })),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
}, { additionalProperties: false })

const ShardSchema = Type.Object({
  accountId: Type.String(),
  subscriptionId: Nullable(Type.String()),
  members: Type.Integer(),
  expiresAt: Nullable(Type.String({ format: 'date-time' })),
}, { additionalProperties: false })

const ListSchema = Type.Object({
  accounts: Type.Array(AccountSchema),
  shards: Type.Array(ShardSchema),
  polled: Type.Integer({ description: 'people without a working subscription, read by polling' }),
}, { additionalProperties: false })

export interface ServiceAccountRoutesDeps {
  accounts: ServiceAccounts
  /** Shards and the number of polled people of a tenant; undefined when the tenant has no Graph app. */
  shards(tenantId: string): { shards: Array<{ accountId: string; subscriptionId: string | null; members: number; expiresAt: string | null }>; polled: number } | undefined
}

const ERRORS = { 400: ErrorBodySchema, 401: ErrorBodySchema, 404: ErrorBodySchema, 500: ErrorBodySchema, 502: ErrorBodySchema, 503: ErrorBodySchema }
const SECURITY = [{ bearer: [] }]

export const serviceAccountRoutes: FastifyPluginAsyncTypebox<{ deps: ServiceAccountRoutesDeps }> = async (app, { deps }) => {
  const requireTenant = (tenant: string) => {
    const shards = deps.shards(tenant)
    if (shards === undefined) throw new HttpError('HTTP_NOT_FOUND', `Tenant ${tenant} has no Graph app in the relay config: add tenants[].graph (tenantId, clientId and a credential) and restart the relay.`)
    return shards
  }

  app.post('/tenants/:tenant/service-accounts/sign-in', {
    schema: {
      summary: 'Start a device code sign-in of a sync service account; show the answer\'s message to the person signing in',
      security: SECURITY,
      params: TenantParams,
      response: { 200: SignInSchema, ...ERRORS },
    },
  }, async (request, reply) => {
    requireTenant(request.params.tenant)
    try {
      return await deps.accounts.startSignIn(request.params.tenant)
    } catch (err) {
      if (err instanceof GraphApiError) {
        return reply.code(502).send({ error: { code: 'HTTP_SIGN_IN_REFUSED', message: `Microsoft Entra ID refused to start the sign-in: ${err.message}` } })
      }
      throw err
    }
  })

  app.get('/tenants/:tenant/service-accounts/sign-ins/:signInId', {
    schema: { summary: 'How a device code sign-in is going', security: SECURITY, params: SignInParams, response: { 200: SignInSchema, ...ERRORS } },
  }, async (request) => {
    const view = deps.accounts.signIn(request.params.tenant, request.params.signInId)
    if (view === undefined) throw new HttpError('HTTP_NOT_FOUND', `No sign-in ${request.params.signInId} for tenant ${request.params.tenant} (sign-ins are kept in memory until the relay restarts): start one with POST /api/v1/tenants/${request.params.tenant}/service-accounts/sign-in.`)
    return view
  })

  app.get('/tenants/:tenant/service-accounts', {
    schema: { summary: 'Sync service accounts with their state, presence subscription shards and how many people are polled', security: SECURITY, params: TenantParams, response: { 200: ListSchema, ...ERRORS } },
  }, async (request) => {
    const { shards, polled } = requireTenant(request.params.tenant)
    return { accounts: deps.accounts.list(request.params.tenant), shards, polled }
  })

  app.delete('/tenants/:tenant/service-accounts/:accountId', {
    schema: { summary: 'Remove a sync service account; its people are polled until another account takes them', security: SECURITY, params: AccountParams, response: { 204: Type.Null(), ...ERRORS } },
  }, async (request, reply) => {
    requireTenant(request.params.tenant)
    if (!(await deps.accounts.remove(request.params.tenant, request.params.accountId))) {
      throw new HttpError('HTTP_NOT_FOUND', `No service account ${request.params.accountId} in tenant ${request.params.tenant}: GET /api/v1/tenants/${request.params.tenant}/service-accounts lists them.`)
    }
    return reply.code(204).send(null)
  })
}
