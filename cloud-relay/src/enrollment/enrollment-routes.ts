import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyReply } from 'fastify'
import type { Clock } from '#kernel/clock.js'
import { ErrorBodySchema } from '../http/errors.js'
import { EnrollmentError, type EnrollmentService } from './enrollment-service.js'

/**
 * Enrollment over HTTPS. Public (no bearer: the one-time code or the certificate is the credential):
 * POST /enroll/v1/enroll, POST /enroll/v1/renew, GET /enroll/v1/time. Admin, registered under /api/v1 behind its
 * bearer check: create a gateway, new code, revoke, read its identity.
 */
const BODY_LIMIT = 64 * 1024

const Pem = (what: string) => Type.String({ minLength: 1, maxLength: 32_000, description: `${what} (PEM)` })

export const EnrollBodySchema = Type.Object({
  code: Type.String({ minLength: 1, maxLength: 64, description: 'the one-time code, XXXX-XXXX-XXXX-XXXX (any case, dashes optional)' }),
  csrPem: Pem('PKCS#10 certificate request for the box\'s EC P-256 key'),
}, { additionalProperties: false })

export const RenewBodySchema = Type.Object({
  certificatePem: Pem('the box\'s current certificate'),
  csrPem: Pem('PKCS#10 certificate request for the same key'),
}, { additionalProperties: false })

export const IssuedIdentitySchema = Type.Object({
  gatewayId: Type.String(),
  tenantId: Type.String(),
  certificatePem: Type.String(),
  caChainPem: Type.String(),
  brokerUrls: Type.Array(Type.String()),
  notAfter: Type.String({ format: 'date-time' }),
  renewAfter: Type.String({ format: 'date-time' }),
  serverTime: Type.String({ format: 'date-time' }),
}, { additionalProperties: false })

export type IssuedIdentityBody = Static<typeof IssuedIdentitySchema>

export const ServerTimeSchema = Type.Object({ serverTime: Type.String({ format: 'date-time' }) }, { additionalProperties: false })

export const GatewayIdentitySchema = Type.Object({
  id: Type.String(),
  tenantId: Type.String(),
  name: Type.String(),
  state: Type.Union([Type.Literal('created'), Type.Literal('enrolled'), Type.Literal('revoked')]),
  certificateSerial: Type.Union([Type.String(), Type.Null()]),
  notAfter: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  enrolledAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedReason: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
}, { additionalProperties: false })

const CodeIssuedSchema = Type.Object({
  gatewayId: Type.String(),
  code: Type.String({ description: 'shown once; only its hash is kept' }),
  expiresAt: Type.String({ format: 'date-time' }),
}, { additionalProperties: false })

const GatewayParams = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'a gateway id' }),
}, { additionalProperties: false })
const TenantParams = Type.Object({
  tenant: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'a tenant id from the relay config, e.g. contoso' }),
}, { additionalProperties: false })
const CreateGatewayBody = Type.Object({
  id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'the gateway id (default: gw- and 10 random hex digits)' })),
  name: Type.Optional(Type.String({ maxLength: 200, description: 'a name people recognise, e.g. "HQ basement"' })),
}, { additionalProperties: false })
const RevokeBody = Type.Object({
  reason: Type.String({ minLength: 1, maxLength: 500, description: 'why, in words (kept with the gateway and in the event log)' }),
}, { additionalProperties: false })

const PUBLIC_ERRORS = { 400: ErrorBodySchema, 401: ErrorBodySchema, 403: ErrorBodySchema, 409: ErrorBodySchema, 410: ErrorBodySchema, 413: ErrorBodySchema, 429: ErrorBodySchema, 500: ErrorBodySchema }
const ADMIN_ERRORS = { 400: ErrorBodySchema, 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema, 409: ErrorBodySchema, 500: ErrorBodySchema, 503: ErrorBodySchema }
const SECURITY = [{ bearer: [] }]

function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  if (!(err instanceof EnrollmentError)) throw err
  if (err.retryAfterS !== undefined) void reply.header('retry-after', String(err.retryAfterS))
  return reply.code(err.statusCode).send({ error: { code: err.code, message: err.message } })
}

/** The boxes' side. The Date header carries the relay's clock, so a box can tell how far off its own is. */
export function enrollmentPublicRoutes(service: EnrollmentService, clock: Clock): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addHook('onSend', async (_request, reply) => {
      void reply.header('date', new Date(clock.now()).toUTCString())
      void reply.header('cache-control', 'no-store')
    })

    app.get('/enroll/v1/time', {
      schema: { summary: 'The relay\'s time, for a box to check its clock before it enrolls', response: { 200: ServerTimeSchema } },
    }, async () => ({ serverTime: new Date(clock.now()).toISOString() }))

    app.post('/enroll/v1/enroll', {
      bodyLimit: BODY_LIMIT,
      schema: { summary: 'A box trades a one-time code and its CSR for its certificate, the CA chain and the broker URLs', body: EnrollBodySchema, response: { 200: IssuedIdentitySchema, ...PUBLIC_ERRORS } },
    }, async (request, reply) => {
      try {
        return await service.enroll({ code: request.body.code, csrPem: request.body.csrPem, remoteAddress: request.ip })
      } catch (err) {
        return sendError(reply, err)
      }
    })

    app.post('/enroll/v1/renew', {
      bodyLimit: BODY_LIMIT,
      schema: { summary: 'A box renews its certificate: its current certificate and a CSR for the same key', body: RenewBodySchema, response: { 200: IssuedIdentitySchema, ...PUBLIC_ERRORS } },
    }, async (request, reply) => {
      try {
        return await service.renew({ certificatePem: request.body.certificatePem, csrPem: request.body.csrPem, remoteAddress: request.ip })
      } catch (err) {
        return sendError(reply, err)
      }
    })
  }
}

/** The admin's side, under /api/v1 (bearer). The fleet list (GET /api/v1/gateways) lives elsewhere and joins getGateway's fields. */
export function enrollmentAdminRoutes(service: EnrollmentService): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/tenants/:tenant/gateways', {
      schema: {
        summary: 'Create a gateway for a tenant; answers with its one-time enrollment code (shown once)',
        security: SECURITY,
        params: TenantParams,
        body: CreateGatewayBody,
        response: { 201: Type.Object({ gateway: GatewayIdentitySchema, gatewayId: Type.String(), code: Type.String(), expiresAt: Type.String({ format: 'date-time' }) }), ...ADMIN_ERRORS },
      },
    }, async (request, reply) => {
      try {
        const created = await service.createGateway(request.params.tenant, { id: request.body.id, name: request.body.name })
        return reply.code(201).send(created)
      } catch (err) {
        return sendError(reply, err)
      }
    })

    app.post('/gateways/:id/enrollment-codes', {
      schema: { summary: 'A new one-time enrollment code for a gateway; its older unused codes stop working', security: SECURITY, params: GatewayParams, response: { 201: CodeIssuedSchema, ...ADMIN_ERRORS } },
    }, async (request, reply) => {
      try {
        return reply.code(201).send(await service.newCode(request.params.id))
      } catch (err) {
        return sendError(reply, err)
      }
    })

    app.post('/gateways/:id/revoke', {
      schema: { summary: 'Revoke a gateway for good: its certificates and codes stop working and the broker cuts it off', security: SECURITY, params: GatewayParams, body: RevokeBody, response: { 200: GatewayIdentitySchema, ...ADMIN_ERRORS } },
    }, async (request, reply) => {
      try {
        return await service.revoke(request.params.id, request.body.reason, 'an admin (API)')
      } catch (err) {
        return sendError(reply, err)
      }
    })

    app.get('/gateways/:id/identity', {
      schema: { summary: 'A gateway\'s enrollment state and certificate', security: SECURITY, params: GatewayParams, response: { 200: GatewayIdentitySchema, ...ADMIN_ERRORS } },
    }, async (request, reply) => {
      const identity = await service.getGateway(request.params.id)
      if (!identity) return reply.code(404).send({ error: { code: 'ENROLL_UNKNOWN_GATEWAY', message: `No gateway "${request.params.id}": create it first (POST /api/v1/tenants/{tenant}/gateways).` } })
      return identity
    })
  }
}
