import { Type, type Static } from '@sinclair/typebox'
import { Secret } from '#kernel/secrets.js'

export const ConnectorBaseSchema = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'Connector id, unique on this gateway (e.g. "osbiz-main").' }),
  type: Type.String({ description: 'PBX type: one of the registered adapters (osbiz, ...).' }),
})

export const GatewayConfigSchema = Type.Object({
  gatewayId: Type.String({
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$',
    default: 'unenrolled',
    description: 'This box\'s id, as created in the cloud console. Leave it out on a box enrolled in its setup page: the enrollment gives it.',
  }),
  relay: Type.Object({
    url: Type.String({ minLength: 1, description: 'Broker URL of the cloud relay: mqtt://, mqtts:// or wss://' }),
    username: Type.Optional(Type.String()),
    password: Type.Optional(Secret({ description: 'Broker password: the password, {"env": "VAR"} or {"file": "/path"} (mode 0600).' })),
    caFile: Type.Optional(Type.String({ description: 'PEM file with CA certificates to trust for mqtts/wss and for enrollment.' })),
    fallbackUrls: Type.Optional(Type.Array(Type.String({ minLength: 1 }), {
      maxItems: 8,
      description: 'Broker URLs tried after relay.url, in order, e.g. ["wss://relay.example.net:443/mqtt"] for sites that only let HTTPS out.',
    })),
    proxyUrl: Type.Optional(Type.String({ pattern: '^http://', description: 'HTTP proxy for the relay link (HTTP CONNECT), e.g. http://user:pass@proxy:3128. Applies to mqtts, wss and enrollment.' })),
    attemptsPerUrl: Type.Integer({ minimum: 1, maximum: 100, default: 3, description: 'Failed connection attempts on one broker URL before the next is tried.' }),
    enrollUrl: Type.Optional(Type.String({ pattern: '^https://', description: 'https URL of the relay\'s enrollment endpoint, as shown in the console.' })),
    caFingerprint: Type.Optional(Type.String({ pattern: '^(sha256[:/])?([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$', description: 'SHA-256 fingerprint of the relay\'s CA or server certificate (the pin shown in the console).' })),
  }, { additionalProperties: false }),
  dataDir: Type.String({ default: '.data/gateway', description: 'Where the gateway keeps its state between runs.' }),
  /** Image updates (gateway/src/update): on only where the image has RAUC and its keyring. */
  updates: Type.Object({
    raucKeyring: Type.Optional(Type.String({ minLength: 1, description: 'PEM keyring of the release keys in the image (e.g. /etc/rauc/keyring.pem): with it the box takes cmd/update and bundle uploads; without it it refuses them' })),
    rebootRequestFile: Type.Optional(Type.String({ minLength: 1, description: 'reboot by writing this file, which a root unit watches (the appliance: /var/lib/pbx-gateway/update/reboot-request), instead of systemctl reboot' })),
    healthTimeoutS: Type.Integer({ minimum: 30, maximum: 3600, default: 300, description: 'after a reboot into a new version: how long it has to become healthy before the box gives up on it' }),
  }, { additionalProperties: false, default: {} }),
  logLevel: Type.Union([Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'), Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent')], { default: 'info' }),
  telemetryIntervalS: Type.Integer({ minimum: 5, maximum: 3600, default: 60 }),
  ownedDndGraceS: Type.Integer({
    minimum: 10,
    maximum: 86_400,
    default: 600,
    description: 'Seconds the relay link may be down before the gateway releases every PBX DND it switched on (never one the person set).',
  }),
  outbox: Type.Object({
    maxBytes: Type.Integer({ minimum: 65_536, maximum: 4 * 1024 ** 3, default: 64 * 1024 * 1024, description: 'Bound on the bytes of undelivered changes kept on disk (and in memory); the oldest go first.' }),
    maxRecords: Type.Integer({ minimum: 100, maximum: 10_000_000, default: 200_000, description: 'Bound on the number of undelivered changes kept.' }),
    maxAgeDays: Type.Number({ exclusiveMinimum: 0, maximum: 365, default: 7, description: 'Undelivered changes older than this are dropped (the snapshot on reconnect still sends the current state).' }),
  }, { additionalProperties: false, default: {}, description: 'The durable outbox in <dataDir>/outbox: state changes kept until the relay\'s broker acknowledges them.' }),
  web: Type.Object({
    enabled: Type.Boolean({ default: true, description: 'Serve the box\'s setup page over HTTPS.' }),
    host: Type.String({ default: '0.0.0.0', description: 'Address the setup page listens on (0.0.0.0: every LAN interface).' }),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: 'HTTPS port of the setup page: default 443 when running as root (a box), 8443 otherwise; 0 picks a free one.' })),
    staticDir: Type.String({ default: 'dist/web/box', description: 'The built setup page (npm run build:web).' }),
    sessionIdleMinutes: Type.Integer({ minimum: 1, maximum: 1440, default: 30, description: 'A setup-page session ends after this long without a request.' }),
    consoleScreenFile: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'Where to write the console screen (agetty issue format: setup URLs, certificate fingerprint, setup code). Default: console.issue in $RUNTIME_DIRECTORY when systemd sets it (RuntimeDirectory=pbx-gateway), otherwise none.' })),
    allowedHosts: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:-]+$' }), { maxItems: 50, description: 'More host names the setup page answers to, e.g. a DNS name given to the box. It always answers to its host name, localhost and its own addresses; any other Host header is refused (DNS rebinding).' })),
  }, { additionalProperties: false, default: {}, description: 'The box\'s local setup page (HTTPS, certificate made at first boot in <dataDir>/web/).' }),
  connectors: Type.Array(Type.Intersect([ConnectorBaseSchema, Type.Record(Type.String(), Type.Unknown())]), { default: [] }),
}, { additionalProperties: false })

export type GatewayConfig = Static<typeof GatewayConfigSchema>
