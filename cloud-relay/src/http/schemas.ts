import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { CallStateSchema, DndOwnerSchema } from '#protocol/schemas.js'
import type { PersonExplanation } from '../sync/explanation.js'

/**
 * The admin API's schemas: one source for the handlers' types, request validation, response serialisation and
 * the OpenAPI document. Every `description` also ends up in 400 messages, so it says what a valid value looks like.
 */

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

const TenantId = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'a tenant id from the relay config, e.g. contoso' })
const DateTime = (what: string) => Type.String({ format: 'date-time', description: `${what}: an ISO 8601 date-time with a time zone, e.g. 2026-11-21T09:00:00Z` })
const SyncModeSchema = Type.Union([Type.Literal('off'), Type.Literal('telephony'), Type.Literal('full')])

export const PersonIdParamsSchema = Type.Object({
  personId: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'a person id (a positive whole number) as listed by GET /api/v1/people' }),
}, { additionalProperties: false })

export const PeopleQuerySchema = Type.Object({
  tenant: Type.Optional(TenantId),
}, { additionalProperties: false })

export const DEFAULT_EVENT_LIMIT = 200

const eventFilters = {
  from: Type.Optional(DateTime('start of the range, inclusive')),
  to: Type.Optional(DateTime('end of the range, exclusive; must be after from')),
  // Optional for clients (the OpenAPI document must not call it required); validation fills in the default.
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: DEFAULT_EVENT_LIMIT, description: `events per page, 1 to 1000 (default ${DEFAULT_EVENT_LIMIT})` })),
  kind: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'kind prefix, e.g. pbx. or teams.set (letters, digits, . _ -)' })),
  before: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'paging cursor: the nextBefore of the previous page' })),
}

export const PersonEventsQuerySchema = Type.Object(eventFilters, { additionalProperties: false })
export const EventsQuerySchema = Type.Object({ tenant: Type.Optional(TenantId), ...eventFilters }, { additionalProperties: false })

export const EventSchema = Type.Object({
  id: Type.Integer(),
  at: Type.String({ format: 'date-time' }),
  tenantId: Nullable(Type.String()),
  personId: Nullable(Type.Integer()),
  gatewayId: Nullable(Type.String()),
  kind: Type.String({ description: 'dotted kind, e.g. teams.set, pbx.dnd.on, gateway.offline' }),
  message: Type.String({ description: 'what the relay did and why, in words' }),
  data: Nullable(Type.Object({}, { additionalProperties: true })),
}, { additionalProperties: false })

export const EventsPageSchema = Type.Object({
  events: Type.Array(EventSchema, { description: 'newest first' }),
  nextBefore: Nullable(Type.Integer({ description: 'pass as before= to get the next (older) page; null on the last page' })),
}, { additionalProperties: false })

export type EventsPage = Static<typeof EventsPageSchema>

export const PersonSummarySchema = Type.Object({
  id: Type.Integer(),
  tenantId: Type.String(),
  email: Type.String(),
  displayName: Type.String(),
  syncMode: SyncModeSchema,
}, { additionalProperties: false })

export const PeopleSchema = Type.Object({ people: Type.Array(PersonSummarySchema) }, { additionalProperties: false })

/** A person's own mapping settings: any subset of the tenant's; omitted fields follow the tenant. */
export const PersonSettingsSchema = Type.Object({
  busyPresence: Type.Optional(Type.Union([Type.Literal('DoNotDisturb/Presenting'), Type.Literal('Busy/InACall')])),
  meetingSetsDnd: Type.Optional(Type.Boolean()),
  ringingIsBusy: Type.Optional(Type.Boolean()),
  dndOnOtherEndpointsDuringCall: Type.Optional(Type.Boolean()),
  reflectDndOnBusyEndpoint: Type.Optional(Type.Boolean()),
}, { additionalProperties: false })

export const PersonSyncBodySchema = Type.Object({
  syncMode: Type.Optional(SyncModeSchema),
  /** null removes the person's own settings. */
  settings: Type.Optional(Nullable(PersonSettingsSchema)),
}, { additionalProperties: false, minProperties: 1 })
export type PersonSyncBody = Static<typeof PersonSyncBodySchema>

export const PersonExplanationSchema = Type.Object({
  person: Type.Object({
    id: Type.Integer(),
    tenantId: Type.String(),
    email: Type.String(),
    displayName: Type.String(),
    syncMode: SyncModeSchema,
    graphUserId: Nullable(Type.String()),
  }, { additionalProperties: false }),
  teams: Type.Object({
    observed: Nullable(Type.Object({ availability: Type.String(), activity: Type.String(), at: Type.String({ format: 'date-time' }) }, { additionalProperties: false })),
    ourSession: Nullable(Type.Object({
      availability: Type.String(),
      activity: Type.String(),
      setAt: Type.String({ format: 'date-time' }),
      expiresAt: Type.String({ format: 'date-time' }),
      reason: Type.String(),
    }, { additionalProperties: false })),
    wantsPbxDnd: Type.Boolean(),
    reason: Nullable(Type.String()),
    standingBack: Type.Boolean(),
  }, { additionalProperties: false }),
  endpoints: Type.Array(Type.Object({
    gatewayId: Type.String(),
    connectorId: Type.String(),
    endpointId: Type.String(),
    name: Type.String(),
    state: CallStateSchema,
    dnd: Type.Boolean(),
    dndOwner: DndOwnerSchema,
    cause: Type.String(),
    changedAt: Nullable(Type.String({ format: 'date-time' })),
    stale: Type.Boolean(),
  }, { additionalProperties: false })),
  summary: Type.Array(Type.String(), { description: 'plain sentences, most important first' }),
}, { additionalProperties: false, description: 'why a person is shown as they are, on both sides' })

// The schema must describe exactly the sync engine's PersonExplanation: fields it lacks would be dropped from the
// answer by the serialiser, so a drift fails the type check here instead.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const explanationSchemaMatches: Same<Static<typeof PersonExplanationSchema>, PersonExplanation> = true
void explanationSchemaMatches

export const HealthSchema = Type.Object({
  status: Type.Literal('ok'),
  version: Type.String(),
  broker: Type.Boolean({ description: 'the relay is connected to the MQTT broker' }),
  store: Type.String({ description: 'postgres or pglite' }),
}, { additionalProperties: false })
