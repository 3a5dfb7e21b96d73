/**
 * Admin API for the fleet, registered inside /api/v1 (so the bearer check applies):
 *   GET /gateways                      every gateway: state (online / connected / offline), reason, since, …
 *   GET /gateways/:id                  one gateway
 *   GET /gateways/:id/telemetry        its stored telemetry, ?from&to&limit
 */
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { LinkDataSchema, TelemetryDataSchema } from '#protocol/schemas.js'
import { ErrorBodySchema, HttpError } from '../http/errors.js'
import type { GatewayLiveness, GatewayView } from './gateway-liveness.js'
import type { TelemetryStore } from './telemetry-store.js'

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()])
const DateTime = (what: string) => Type.String({ format: 'date-time', description: `${what}: an ISO 8601 date-time with a time zone, e.g. 2026-11-21T09:00:00Z` })

const GatewayParams = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'a gateway id' }),
}, { additionalProperties: false })

const ListQuery = Type.Object({
  tenant: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'only this tenant\'s gateways' })),
}, { additionalProperties: false })

const TelemetryQuery = Type.Object({
  from: Type.Optional(DateTime('start of the range, inclusive')),
  to: Type.Optional(DateTime('end of the range, exclusive')),
  limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 1000, description: 'at most this many samples, the newest of the range' }),
}, { additionalProperties: false })

export const GatewayViewSchema = Type.Object({
  id: Type.String(),
  tenantId: Type.String(),
  state: Type.Union([Type.Literal('online'), Type.Literal('connected'), Type.Literal('offline')], {
    description: 'online: events both ways in the last 5 minutes; connected: linked but quiet or a ping unanswered; offline: last will, offline status, never connected or revoked',
  }),
  reason: Type.String({ description: 'why, in words' }),
  since: Type.String({ format: 'date-time' }),
  lastSeen: Nullable(Type.String({ format: 'date-time', description: 'last message from the gateway' })),
  lastAnswered: Nullable(Type.String({ format: 'date-time', description: 'last command or ping it answered' })),
  roundTripMs: Nullable(Type.Number({ description: 'round trip of that answer' })),
  version: Nullable(Type.String()),
  slot: Nullable(Type.String({ description: 'the root file system slot the box booted, A or B (null: not reported)' })),
  links: Type.Array(LinkDataSchema),
  telemetry: Nullable(Type.Object({ at: Type.String({ format: 'date-time' }), data: TelemetryDataSchema }, { additionalProperties: false })),
}, { additionalProperties: false })

const ListSchema = Type.Object({ gateways: Type.Array(GatewayViewSchema) }, { additionalProperties: false })
const TelemetryPageSchema = Type.Object({
  gatewayId: Type.String(),
  samples: Type.Array(Type.Object({ at: Type.String({ format: 'date-time' }), data: TelemetryDataSchema }, { additionalProperties: false })),
}, { additionalProperties: false })

const ERRORS = { 400: ErrorBodySchema, 401: ErrorBodySchema, 404: ErrorBodySchema, 500: ErrorBodySchema, 503: ErrorBodySchema }
const SECURITY = [{ bearer: [] }]

export interface FleetRoutesDeps {
  liveness: Pick<GatewayLiveness, 'list' | 'view'>
  telemetry: Pick<TelemetryStore, 'list'>
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

export function toApi(view: GatewayView): Static<typeof GatewayViewSchema> {
  return {
    id: view.gatewayId,
    tenantId: view.tenantId,
    state: view.state,
    reason: view.reason,
    since: new Date(view.since).toISOString(),
    lastSeen: iso(view.lastSeen),
    lastAnswered: iso(view.lastAnswered),
    roundTripMs: view.lastRoundTripMs,
    version: view.version,
    slot: view.slot,
    links: view.links,
    telemetry: view.telemetry ? { at: new Date(view.telemetry.at).toISOString(), data: view.telemetry.data } : null,
  }
}

/** The plugin to pass in the HTTP server's `apiRoutes`. */
export function fleetRoutes(deps: FleetRoutesDeps): FastifyPluginAsyncTypebox {
  return async (app) => {
    const notFound = (id: string) => new HttpError('HTTP_NOT_FOUND', `No gateway ${id}: list them with GET /api/v1/gateways, or create it in the console first.`)

    app.get('/gateways', {
      schema: { summary: 'Every gateway with its liveness (online, connected, offline), reason, links and latest telemetry', security: SECURITY, querystring: ListQuery, response: { 200: ListSchema, ...ERRORS } },
    }, async (request) => ({ gateways: deps.liveness.list(request.query.tenant).map(toApi) }))

    app.get('/gateways/:id', {
      schema: { summary: 'One gateway\'s liveness, links and latest telemetry', security: SECURITY, params: GatewayParams, response: { 200: GatewayViewSchema, ...ERRORS } },
    }, async (request) => {
      const view = deps.liveness.view(request.params.id)
      if (!view) throw notFound(request.params.id)
      return toApi(view)
    })

    app.get('/gateways/:id/telemetry', {
      schema: { summary: 'A gateway\'s stored telemetry, oldest first', security: SECURITY, params: GatewayParams, querystring: TelemetryQuery, response: { 200: TelemetryPageSchema, ...ERRORS } },
    }, async (request) => {
      if (!deps.liveness.view(request.params.id)) throw notFound(request.params.id)
      const from = request.query.from ? new Date(request.query.from) : undefined
      const to = request.query.to ? new Date(request.query.to) : undefined
      if (from && to && from.getTime() >= to.getTime()) throw new HttpError('HTTP_BAD_REQUEST', '`from` must be before `to`.')
      const rows = await deps.telemetry.list(request.params.id, { from, to, limit: request.query.limit })
      return { gatewayId: request.params.id, samples: rows.map((r) => ({ at: r.at.toISOString(), data: r.data })) }
    })
  }
}
