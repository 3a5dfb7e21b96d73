import { Type, type Static } from '@sinclair/typebox'

/** The box's setup API: one schema source for the route checks, the TS types and /api/openapi.json. */

export const ErrorSchema = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), field: Type.Optional(Type.String()) }),
})
export type ErrorBody = Static<typeof ErrorSchema>

export const SessionStateSchema = Type.Object({
  passwordSet: Type.Boolean(),
  signedIn: Type.Boolean(),
  csrfToken: Type.Optional(Type.String()),
  certificateFingerprint: Type.String({ description: 'SHA-256 of the setup page\'s certificate, to compare with the browser\'s.' }),
  certificateNames: Type.Array(Type.String()),
  version: Type.String(),
  minPasswordLength: Type.Integer(),
})

export const PasswordBodySchema = Type.Object({ password: Type.String({ maxLength: 1024 }) })
export const SetupBodySchema = Type.Object({
  password: Type.String({ maxLength: 1024 }),
  setupCode: Type.Optional(Type.String({ maxLength: 64, description: 'The code the box prints on its console while it is unclaimed, e.g. 7KQX-M3DW-9TPA.' })),
})

export const OkSchema = Type.Object({ ok: Type.Boolean(), csrfToken: Type.Optional(Type.String()) })

export const ConnectorTypeSchema = Type.Object({
  type: Type.String(),
  schema: Type.Unknown({ description: 'JSON Schema of the connector config (from the adapter\'s TypeBox schema).' }),
  secretFields: Type.Array(Type.String()),
})
export const ConnectorTypesSchema = Type.Object({ types: Type.Array(ConnectorTypeSchema) })

export const ConnectorViewSchema = Type.Object({
  id: Type.String(),
  type: Type.String(),
  source: Type.Union([Type.Literal('file'), Type.Literal('setup-page')], { description: 'file: from the config file (read-only here).' }),
  config: Type.Record(Type.String(), Type.Unknown(), { description: 'The config without its secret fields.' }),
  secretsSet: Type.Array(Type.String(), { description: 'Secret fields that hold a value (never shown).' }),
})
export type ConnectorView = Static<typeof ConnectorViewSchema>
export const ConnectorListSchema = Type.Object({ connectors: Type.Array(ConnectorViewSchema) })

export const ConnectorIdParamsSchema = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }) })
export const ConnectorBodySchema = Type.Object({
  type: Type.String({ minLength: 1 }),
  config: Type.Record(Type.String(), Type.Unknown(), { description: 'Fields of the adapter\'s schema; an empty secret keeps the stored one.' }),
})
export type ConnectorBody = Static<typeof ConnectorBodySchema>
export const ConnectorTestBodySchema = Type.Composite([ConnectorBodySchema, Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }) })])

export const ConnectionTestSchema = Type.Object({
  ok: Type.Boolean(),
  message: Type.String(),
  users: Type.Integer(),
  sampleExtensions: Type.Array(Type.String()),
  durationMs: Type.Integer(),
})

export const EnrollmentStateSchema = Type.Object({
  enrolled: Type.Boolean(),
  gatewayId: Type.Optional(Type.String()),
  tenantId: Type.Optional(Type.String()),
  relayUrl: Type.Optional(Type.String()),
  notAfter: Type.Optional(Type.String()),
  configuredRelayUrl: Type.Optional(Type.String({ description: 'relay.enrollUrl from the config: the page then asks for the code only.' })),
  configuredPin: Type.Boolean({ description: 'relay.caFingerprint or relay.caFile is in the config.' }),
})
export const EnrollBodySchema = Type.Object({
  code: Type.String({ minLength: 1, maxLength: 64 }),
  relayUrl: Type.Optional(Type.String({ maxLength: 512 })),
  caFingerprint: Type.Optional(Type.String({ maxLength: 200 })),
})

const LinkViewSchema = Type.Object({
  connectorId: Type.String(), pbxType: Type.String(), state: Type.String(), reason: Type.Optional(Type.String()), since: Type.Number(), endpoints: Type.Integer(),
})
const EventViewSchema = Type.Object({
  connectorId: Type.String(), endpointId: Type.String(), state: Type.String(), dnd: Type.Boolean(), cause: Type.String(), changedAt: Type.Number(),
})
export const StatusSchema = Type.Object({
  tunnel: Type.Object({
    gatewayId: Type.String(),
    enrolled: Type.Boolean(),
    connected: Type.Boolean(),
    transportUrl: Type.Optional(Type.String()),
    lastError: Type.Optional(Type.String()),
  }),
  links: Type.Array(LinkViewSchema),
  events: Type.Array(EventViewSchema),
  memory: Type.Object({
    rssBytes: Type.Integer({ description: 'resident memory of the gateway process' }),
    systemUsedBytes: Type.Integer({ description: 'memory in use on the whole box (total minus available)' }),
    systemTotalBytes: Type.Integer(),
  }, { description: 'so an installer (and the boot test) can see the box\'s memory without a login on it' }),
})

export const LogLineSchema = Type.Object({
  seq: Type.Integer(), time: Type.Number(), level: Type.Integer(), component: Type.Optional(Type.String()), msg: Type.String(), detail: Type.String(),
})
export const LogsSchema = Type.Object({ lines: Type.Array(LogLineSchema) })

export const DiagnosticsSchema = Type.Object({
  checks: Type.Array(Type.Object({ name: Type.String(), target: Type.String(), ok: Type.Boolean(), message: Type.String(), durationMs: Type.Integer() })),
})

export const FactoryResetBodySchema = Type.Object({ confirm: Type.String({ description: 'Must be the word RESET.' }) })
