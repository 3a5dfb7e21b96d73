import { Type, type Static } from '@sinclair/typebox'
import { parseConnectorConfig, type ParsedConnectorConfig } from '../kit/config-check.js'

/**
 * Connector config for one Avaya IP Office over MTCTI-3 (WebSocket + protobuf). The user list, with e-mail
 * addresses, comes from the PBX itself (Lines and User subscriptions), so there is no users field.
 */

export const AvayaIpoTlsSchema = Type.Object({
  /** PEM file of the CA (or the self-signed certificate itself) that IP Office's certificate chains to. */
  caFile: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  /**
   * SHA-256 fingerprint of IP Office's own certificate (hex, colons optional). When set, exactly that
   * certificate is accepted, whatever its issuer and name: the usual choice for IP Office's self-signed one.
   */
  pinnedSha256: Type.Optional(Type.String({ pattern: '^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$' })),
  /** Name to check the certificate against when it differs from `host` (e.g. host is an IP address). */
  serverName: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
}, { additionalProperties: false })

export const AvayaIpoConfigSchema = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }),
  type: Type.Literal('avaya-ipo'),
  host: Type.String({ minLength: 1, maxLength: 253 }),
  /** HTTPS port of IP Office's web services [C: wss://<ipo>:443/tpkt/openapi]. */
  port: Type.Integer({ minimum: 1, maximum: 65535, default: 443 }),
  path: Type.String({ pattern: '^/', maxLength: 256, default: '/tpkt/openapi' }),
  /** An IP Office service user (Security Settings); its rights group needs the MTCTI-3 permission [U which one]. */
  username: Type.String({ minLength: 1, maxLength: 128 }),
  /** writeOnly: the setup page never sends it back (and reuses it only for the same host, port and TLS settings). */
  password: Type.String({ maxLength: 256, writeOnly: true }),
  tls: Type.Object(AvayaIpoTlsSchema.properties, { additionalProperties: false, default: {} }),
  /** Lifetime asked for each subscription, renewed at half of it [I: seconds; gomtcti3 asks 3600]. */
  subscriptionTimeoutS: Type.Integer({ minimum: 2, maximum: 86400, default: 3600 }),
  /** Subscribe requests per second after (re)connecting, so a large site does not flood the PBX [U limit]. */
  subscriptionsPerSecond: Type.Number({ exclusiveMinimum: 0, maximum: 2000, default: 200 }),
  /** SubscribeLines.flags [U bits; gomtcti3 sends 7 for users and queues]. */
  linesFlags: Type.Integer({ minimum: 0, maximum: 2147483647, default: 7 }),
  /** SubscribeUser.flags and ccflags [U bits; gomtcti3's queue values 0x3 and 0x40039]. */
  userFlags: Type.Integer({ minimum: 0, maximum: 2147483647, default: 3 }),
  userCcFlags: Type.Integer({ minimum: 0, maximum: 2147483647, default: 0x40039 }),
  requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 120000, default: 5000 }),
  /** WebSocket ping period; a ping unanswered until the next one closes the link [I: MTCTI-3 has no app ping]. */
  pingIntervalS: Type.Number({ exclusiveMinimum: 0, maximum: 3600, default: 30 }),
  /** Larger frames close the link with a log line saying to raise this (a very large user list needs more). */
  maxFrameBytes: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, default: 512 * 1024 }),
  /** How long to wait for the first call-control Notify of a user before its snapshot says "no calls" [I]. */
  initialCallStateWaitMs: Type.Integer({ minimum: 0, maximum: 60000, default: 1000 }),
  /**
   * EXPERIMENTAL: set DND through the Send All Calls update (UpdateUserSAC). The research could not confirm
   * on a real IP Office that SAC is DND [I]; each command is confirmed only by the next NotifyUser.dnd.
   */
  experimentalSetDnd: Type.Boolean({ default: false }),
  /** How long a setDnd waits for NotifyUser to show the new DND before it fails as unconfirmed. */
  dndConfirmTimeoutMs: Type.Integer({ minimum: 100, maximum: 60000, default: 5000 }),
}, { additionalProperties: false })

export type AvayaIpoConfig = Static<typeof AvayaIpoConfigSchema>

/**
 * Rules the schema cannot say, in the installer's words (boot and the setup page both run them). The path
 * before the colon names the field the setup page highlights.
 */
export function checkAvayaIpoConfig(config: AvayaIpoConfig): string[] {
  const problems: string[] = []
  if (config.tls.caFile !== undefined && config.tls.pinnedSha256 !== undefined) {
    problems.push('/tls: set either caFile or pinnedSha256, not both: the pin alone decides which certificate IP Office may present (keep the pin for its self-signed certificate, or the CA file when your own CA signed it)')
  }
  return problems
}

/** Applies defaults, then validates (schema and checkAvayaIpoConfig); lists every problem. */
export function parseAvayaIpoConfig(input: unknown): ParsedConnectorConfig<AvayaIpoConfig> {
  return parseConnectorConfig({ configSchema: AvayaIpoConfigSchema, check: checkAvayaIpoConfig }, input)
}
