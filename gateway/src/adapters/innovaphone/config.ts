import { Type, type Static } from '@sinclair/typebox'
import { duplicateEntries, parseConnectorConfig, type ParsedConnectorConfig } from '../kit/config-check.js'

/**
 * Connector config for one innovaphone PBX reached over the App Platform WebSocket (research Part B). The
 * people come from the PBX itself (PbxTableUsers with e-mails, RCC for who the App object may see), so there
 * is no users list here.
 */
export const InnovaphoneConfigSchema = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }),
  type: Type.Literal('innovaphone'),
  host: Type.String({ minLength: 1, maxLength: 253 }),
  /** Default 443 with TLS, 80 without. */
  port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  /** wss:// (default) or ws://. The PBX also serves ws:// [C]; use it only on a trusted LAN. */
  tls: Type.Boolean({ default: true }),
  /** The App Platform endpoint [C]. A dynamic PBX uses /PBX-<id>/APPS/websocket [I]. */
  path: Type.String({ pattern: '^/', maxLength: 256, default: '/PBX0/APPS/websocket' }),
  /** PEM file of the CA that signed the PBX's certificate (a private CA). Without it: the system's CAs. */
  caFile: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  /** SHA-256 of the PBX's own certificate (hex, colons allowed): trusted whoever signed it (self-signed PBXs). */
  certificateSha256: Type.Optional(Type.String({ pattern: '^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$' })),
  /** The App object's Name (must not start with a digit [C]) and Password. */
  appName: Type.String({ pattern: '^[^0-9].*$', minLength: 1, maxLength: 128 }),
  /** writeOnly: the setup page never sends it back (and reuses it only for the same host, port and TLS settings). */
  appPassword: Type.String({ minLength: 1, maxLength: 256, writeOnly: true }),
  /**
   * Multi-node: monitor only people whose RCC UserInfo.pbx is one of these PBX names. Unset: everyone the
   * App object sees. Run one connector per PBX node, each pointed at that node (see README).
   */
  pbxNames: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 100 })),
  /** Presence note sent with our DND (shown to colleagues in myApps). */
  dndNote: Type.String({ maxLength: 256, default: 'In a Microsoft Teams call or meeting' }),
  /** Monitor requests (UserInitialize + SubscribePresence) in flight at once after (re)connecting. */
  maxInFlight: Type.Integer({ minimum: 1, maximum: 500, default: 40 }),
  requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 120000, default: 10000 }),
  /** Send KeepAlive (and a WebSocket ping) after this long without traffic; the JS SDK uses 60 s [C]. */
  keepAliveIntervalS: Type.Number({ minimum: 0.1, maximum: 60, default: 30 }),
  /** After a KeepAlive, this long without any frame or pong means the PBX stopped answering. */
  answerTimeoutMs: Type.Integer({ minimum: 100, maximum: 120000, default: 10000 }),
}, { additionalProperties: false })

export type InnovaphoneConfig = Static<typeof InnovaphoneConfigSchema>

/**
 * Rules the schema cannot say, in the installer's words (boot and the setup page both run them). The path
 * before the colon names the field the setup page highlights.
 */
export function checkInnovaphoneConfig(config: InnovaphoneConfig): string[] {
  const problems: string[] = []
  if (config.caFile !== undefined && config.certificateSha256 !== undefined) {
    problems.push('/certificateSha256: set either caFile or certificateSha256, not both: the pin alone decides which certificate the PBX may present (keep the pin for a self-signed PBX certificate, or the CA file when your own CA signed it)')
  }
  if (!config.tls) {
    if (config.caFile !== undefined) problems.push('/caFile: a CA file only applies to wss:// (tls: true); turn TLS on or remove caFile')
    if (config.certificateSha256 !== undefined) problems.push('/certificateSha256: a certificate pin only applies to wss:// (tls: true); turn TLS on or remove certificateSha256')
  }
  problems.push(...duplicateEntries(config.pbxNames ?? [], (name) => name, (index, name) => `/pbxNames/${index}: PBX name "${name}" is listed twice`))
  return problems
}

/** Applies defaults, then validates (schema and checkInnovaphoneConfig); lists every problem. */
export function parseInnovaphoneConfig(input: unknown): ParsedConnectorConfig<InnovaphoneConfig> {
  return parseConnectorConfig({ configSchema: InnovaphoneConfigSchema, check: checkInnovaphoneConfig }, input)
}

/** The WebSocket URL the connector dials. */
export function innovaphoneUrl(config: Pick<InnovaphoneConfig, 'host' | 'port' | 'tls' | 'path'>): string {
  const host = config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host
  const port = config.port ?? (config.tls ? 443 : 80)
  return `${config.tls ? 'wss' : 'ws'}://${host}:${port}${config.path}`
}
