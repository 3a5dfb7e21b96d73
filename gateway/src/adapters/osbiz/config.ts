import { Type, type Static } from '@sinclair/typebox'
import { duplicateEntries, parseConnectorConfig, type ParsedConnectorConfig } from '../kit/config-check.js'

/**
 * Connector config for one OpenScape Business CSTA link. CSTA has no user list with e-mail addresses, so the
 * directory comes from `users`, and their extensions are the devices we monitor.
 */

export const OsbizUserSchema = Type.Object({
  extension: Type.String({ pattern: '^[0-9*#]{1,24}$', description: 'Extension (dialing number) as administered in the PBX' }),
  name: Type.String({ minLength: 1, maxLength: 256 }),
  email: Type.Optional(Type.String({ pattern: '^[^@\\s]+@[^@\\s]+$', maxLength: 320 })),
}, { additionalProperties: false })
export type OsbizUser = Static<typeof OsbizUserSchema>

export const OsbizConfigSchema = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }),
  type: Type.Literal('osbiz'),
  host: Type.String({ minLength: 1, maxLength: 253 }),
  /** 8800 is the documented OSBiz CSTA port. */
  port: Type.Integer({ minimum: 1, maximum: 65535, default: 8800 }),
  /** Wire encoding. Only ECMA-323 XML exists today; OSBiz documents ASN.1 BER (see README). */
  codec: Type.Union([Type.Literal('xml')], { default: 'xml' }),
  applicationId: Type.String({ minLength: 1, maxLength: 128 }),
  username: Type.Optional(Type.String({ maxLength: 128 })),
  /** writeOnly: the setup page never sends it back (and reuses it only for the same host, port and TLS settings). */
  password: Type.Optional(Type.String({ maxLength: 256, writeOnly: true })),
  /** Requested ECMA-354 session duration; the switch may grant a different one, which the driver follows. */
  sessionDurationS: Type.Integer({ minimum: 1, maximum: 86400, default: 180 }),
  /** MonitorStart requests per second after (re)connecting, so a large site does not flood the switch. */
  monitorsPerSecond: Type.Number({ exclusiveMinimum: 0, maximum: 1000, default: 20 }),
  requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 120000, default: 5000 }),
  /** Interval of the RequestSystemStatus liveness probe; an unanswered probe closes the link. */
  probeIntervalS: Type.Number({ exclusiveMinimum: 0, maximum: 3600, default: 30 }),
  /** Public number prefix of the PBX (e.g. "+49301234"), stripped from N<...> and E.164 device ids. */
  devicePrefix: Type.Optional(Type.String({ pattern: '^\\+?[0-9]{1,20}$' })),
  users: Type.Array(OsbizUserSchema, { maxItems: 20000 }),
}, { additionalProperties: false })

export type OsbizConfig = Static<typeof OsbizConfigSchema>

/**
 * Rules the schema cannot say, in the installer's words (boot and the setup page both run them). The path
 * before the colon names the field the setup page highlights.
 */
export function checkOsbizConfig(config: OsbizConfig): string[] {
  return duplicateEntries(config.users, (user) => user.extension,
    (index, extension, first) => `/users/${index}/extension: duplicate extension ${extension} (already users/${first}): list each extension once`)
}

/** Applies defaults, then validates (schema and checkOsbizConfig); lists every problem. */
export function parseOsbizConfig(input: unknown): ParsedConnectorConfig<OsbizConfig> {
  return parseConnectorConfig({ configSchema: OsbizConfigSchema, check: checkOsbizConfig }, input)
}
