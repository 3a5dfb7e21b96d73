import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply } from 'fastify'
import { ErrorBodySchema } from '../http/errors.js'
import { DirectoryError, type DirectoryService } from './directory-service.js'

/**
 * The admin API of user import, mapping and seats, registered under /api/v1 (behind its bearer check):
 * start an import or dry run and read its progress and result, read the mapping report, set manual mappings and
 * the seat limit.
 */
const TenantParams = Type.Object({
  tenant: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'a tenant id from the relay config, e.g. contoso' }),
}, { additionalProperties: false })
const RunParams = Type.Object({
  tenant: TenantParams.properties.tenant,
  runId: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'an import run id as returned when the import was started' }),
}, { additionalProperties: false })
const Segment = (what: string) => Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$', description: `the ${what}` })
const EndpointParams = Type.Object({
  tenant: TenantParams.properties.tenant,
  gatewayId: Segment('gateway id'),
  connectorId: Segment('connector id'),
  endpointId: Segment('extension (endpoint id)'),
}, { additionalProperties: false })
const StartBody = Type.Object({
  dryRun: Type.Optional(Type.Boolean({ description: 'true: report what would change and change nothing' })),
}, { additionalProperties: false })
const MappingBody = Type.Object({
  gatewayId: Segment('gateway id'),
  connectorId: Segment('connector id'),
  endpointId: Segment('extension (endpoint id)'),
  personId: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'a person id as listed by GET /api/v1/people' }),
}, { additionalProperties: false })
const SeatsBody = Type.Object({
  limit: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'at most this many people synced (a whole number), or null for no limit' }),
}, { additionalProperties: false })

const ERRORS = { 200: Type.Unknown(), 202: Type.Unknown(), 400: ErrorBodySchema, 401: ErrorBodySchema, 404: ErrorBodySchema, 409: ErrorBodySchema, 503: ErrorBodySchema }
const SECURITY = [{ bearer: [] }]

const STATUS: Record<string, number> = {
  DIRECTORY_UNKNOWN_TENANT: 404,
  DIRECTORY_UNKNOWN_PERSON: 404,
  DIRECTORY_UNKNOWN_ENDPOINT: 404,
  DIRECTORY_UNKNOWN_RUN: 404,
  DIRECTORY_NO_GRAPH: 409,
  DIRECTORY_BUSY: 409,
}

export const directoryRoutes: FastifyPluginAsyncTypebox<{ directory: DirectoryService }> = async (app, { directory }) => {
  const fail = (reply: FastifyReply, err: unknown) => {
    if (err instanceof DirectoryError) return reply.code(STATUS[err.code] ?? 400).send({ error: { code: err.code, message: err.message } })
    throw err
  }

  app.post('/tenants/:tenant/imports', {
    schema: { summary: 'Start a user import from Entra ID (or a dry run); answers with the run, whose progress GET …/imports/{runId} reads', security: SECURITY, params: TenantParams, body: StartBody, response: ERRORS },
  }, async (request, reply) => {
    try {
      const run = await directory.startImport(request.params.tenant, { dryRun: request.body.dryRun ?? false, trigger: 'api' })
      return reply.code(202).send(run.view)
    } catch (err) {
      return fail(reply, err)
    }
  })

  app.get('/tenants/:tenant/imports', {
    schema: { summary: 'The latest import runs of a tenant, newest first', security: SECURITY, params: TenantParams, response: ERRORS },
  }, async (request) => ({ runs: await directory.listRuns(request.params.tenant) }))

  app.get('/tenants/:tenant/imports/:runId', {
    schema: { summary: 'An import run: state, progress (percent, pages, users read) and, when done, what changed', security: SECURITY, params: RunParams, response: ERRORS },
  }, async (request, reply) => {
    const run = await directory.getRun(request.params.tenant, request.params.runId)
    if (!run) return reply.code(404).send({ error: { code: 'DIRECTORY_UNKNOWN_RUN', message: `No import run ${request.params.runId} for tenant ${request.params.tenant}: GET /api/v1/tenants/${request.params.tenant}/imports lists them.` } })
    return run
  })

  app.get('/tenants/:tenant/mapping', {
    schema: { summary: 'The mapping report: how each PBX extension maps, duplicates, and unmatched people on both sides', security: SECURITY, params: TenantParams, response: ERRORS },
  }, async (request, reply) => {
    try {
      return await directory.mappingReport(request.params.tenant)
    } catch (err) {
      return fail(reply, err)
    }
  })

  app.put('/tenants/:tenant/mappings', {
    schema: { summary: 'Map one PBX extension to a person by hand (wins over automatic mapping, survives imports)', security: SECURITY, params: TenantParams, body: MappingBody, response: ERRORS },
  }, async (request, reply) => {
    try {
      await directory.setManualMapping(request.params.tenant, request.body, 'an admin (API)')
      return { ok: true }
    } catch (err) {
      return fail(reply, err)
    }
  })

  app.delete('/tenants/:tenant/mappings/:gatewayId/:connectorId/:endpointId', {
    schema: { summary: 'Remove a manual mapping (the extension is mapped automatically again)', security: SECURITY, params: EndpointParams, response: ERRORS },
  }, async (request, reply) => {
    const { tenant, gatewayId, connectorId, endpointId } = request.params
    if (!(await directory.removeManualMapping(tenant, gatewayId, connectorId, endpointId, 'an admin (API)'))) {
      return reply.code(404).send({ error: { code: 'DIRECTORY_UNKNOWN_ENDPOINT', message: `Extension ${gatewayId}/${connectorId}/${endpointId} of tenant ${tenant} has no manual mapping: GET /api/v1/tenants/${tenant}/mapping lists them.` } })
    }
    return { ok: true }
  })

  app.put('/tenants/:tenant/seats', {
    schema: { summary: 'Set the seat limit (people synced at most); the most recently added people over it are deactivated', security: SECURITY, params: TenantParams, body: SeatsBody, response: ERRORS },
  }, async (request, reply) => {
    try {
      return await directory.setSeatLimit(request.params.tenant, request.body.limit ?? undefined)
    } catch (err) {
      return fail(reply, err)
    }
  })
}
