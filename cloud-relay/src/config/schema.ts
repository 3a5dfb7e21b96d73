import { Type, type Static } from '@sinclair/typebox'
import { Secret, SecretFile } from '#kernel/secrets.js'

const Id = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' })

export const RelayConfigSchema = Type.Object({
  logLevel: Type.Union([Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'), Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent')], { default: 'info' }),
  broker: Type.Object({
    /** embedded: the relay runs its own MQTT broker (aedes). external: connect to Mosquitto/EMQX at `url`. */
    mode: Type.Union([Type.Literal('embedded'), Type.Literal('external')], { default: 'embedded' }),
    host: Type.String({ default: '0.0.0.0', description: 'embedded: address to listen on' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 1883, description: 'embedded: port to listen on (0 = any free port)' }),
    url: Type.Optional(Type.String({ description: 'external: broker URL, e.g. mqtt://127.0.0.1:1883' })),
    relayUsername: Type.String({ default: 'relay' }),
    relayPassword: Secret({ minLength: 1, description: 'The relay\'s own broker password: the password, {"env": "VAR"} or {"file": "/path"} (mode 0600).' }),
    /**
     * embedded: the plaintext password listener on `port` (older gateways, tests, the demo). Off by default; `true`
     * listens on 127.0.0.1; another address needs `allowRemote: true` (passwords cross the network in clear text).
     */
    passwordListener: Type.Union([
      Type.Boolean(),
      Type.Object({
        host: Type.String({ default: '127.0.0.1', description: 'address of the password listener: loopback unless allowRemote' }),
        allowRemote: Type.Boolean({ default: false, description: 'allow an address that is not loopback (plain MQTT: passwords in clear text)' }),
      }, { additionalProperties: false }),
    ], { default: false, description: 'embedded: the plaintext password listener on 127.0.0.1:port (off by default)' }),
    /** embedded: mutual-TLS listeners; gateways present a client certificate from the relay CA (CN = gateway id). */
    tls: Type.Optional(Type.Object({
      port: Type.Integer({ minimum: 0, maximum: 65535, default: 8883, description: 'mqtts port (0 = any free port)' }),
      wsPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: 'MQTT over WebSocket with TLS at /mqtt; 443 in production for sites that allow only HTTPS out (e.g. 8443 behind a port forward)' })),
      certFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM server certificate; without it one is issued from the relay CA at start' })),
      keyFile: Type.Optional(SecretFile({ minLength: 1, description: 'PEM key of certFile; readable by the relay\'s user only (chmod 600).' })),
      dnsNames: Type.Array(Type.String({ minLength: 1 }), { default: ['localhost'], description: 'names in the issued server certificate: what gateways dial' }),
      ipAddresses: Type.Array(Type.String({ minLength: 2, maxLength: 45, pattern: '^[0-9A-Fa-f.:]+$', description: 'an IPv4 or IPv6 address, e.g. 203.0.113.7' }), { default: ['127.0.0.1', '::1'], description: 'addresses in the issued server certificate, for gateways that dial an IP (e.g. a VM behind a port forward); 127.0.0.1 and ::1 are always in it' }),
    }, { additionalProperties: false })),
    /** external Mosquitto: where `mosquitto-cli` writes its configuration, and the relay's client certificate. */
    mosquitto: Type.Optional(Type.Object({
      configDir: Type.String({ minLength: 1, description: 'directory written by cloud-relay/src/broker/mosquitto-cli.ts (relay.pem, relay.key, ca.pem)' }),
      pidFile: Type.Optional(Type.String({ minLength: 1, description: 'Mosquitto\'s pid_file: on a revocation the relay rewrites the CRL and ACL and sends SIGHUP' })),
      /** The relay writes this directory at every start from its own CA: start (or SIGHUP) Mosquitto with its mosquitto.conf. */
      write: Type.Boolean({ default: true, description: 'write mosquitto.conf, ACL, CRL and certificates into configDir at start (false: mosquitto-cli manages it)' }),
      port: Type.Integer({ minimum: 1, maximum: 65535, default: 8883, description: 'the mqtts listener gateways dial' }),
      wsPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'MQTT over WebSocket with TLS at /mqtt (443 for sites that allow only HTTPS out)' })),
      dnsNames: Type.Array(Type.String({ minLength: 1 }), { default: ['localhost'], description: 'names in the broker\'s server certificate' }),
      ipAddresses: Type.Array(Type.String({ minLength: 2, maxLength: 45, pattern: '^[0-9A-Fa-f.:]+$', description: 'an IPv4 or IPv6 address, e.g. 203.0.113.7' }), { default: ['127.0.0.1', '::1'], description: 'addresses in the broker\'s server certificate' }),
      user: Type.Optional(Type.String({ minLength: 1, description: 'the account Mosquitto runs as (it must read configDir at every reload)' })),
    }, { additionalProperties: false })),
    /** A stable client id gives the relay a persistent session: QoS 1 messages wait in the broker while it restarts. */
    relayClientId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'e.g. relay:main; one per relay instance' })),
  }, { additionalProperties: false, default: {} }),
  database: Type.Object({
    /** PostgreSQL URL (it holds a password: {"env": "VAR"} or {"file": "/path"} keep it out of this file). The DATABASE_URL environment variable overrides it. Without one, PGlite is used. */
    url: Type.Optional(Secret()),
    /** PGlite data folder, or "memory". */
    pgliteDir: Type.String({ default: '.data/relay/pglite' }),
  }, { additionalProperties: false, default: {} }),
  graph: Type.Object({
    authorityHost: Type.String({ default: 'https://login.microsoftonline.com' }),
    graphBaseUrl: Type.String({ default: 'https://graph.microsoft.com' }),
    /** PEM file of an extra CA to trust (the Graph simulator's). */
    caFile: Type.Optional(Type.String()),
    /** Presence writes per tenant: a sliding-window budget below Graph's 10,000 requests / 30 s per app per tenant. */
    writeRateLimit: Type.Object({
      requests: Type.Integer({ minimum: 1, maximum: 10_000, default: 8000, description: 'presence writes (each $batch item counts) per window' }),
      windowMs: Type.Integer({ minimum: 1000, default: 30_000 }),
    }, { additionalProperties: false, default: {} }),
    maxConcurrentWrites: Type.Integer({ minimum: 1, maximum: 64, default: 4, description: 'presence write HTTP requests in flight per tenant' }),
    /**
     * Presence change notifications (needs sync service accounts, signed in through the admin API). Without this
     * section Teams presence is polled. publicUrl is where Graph reaches the relay's HTTP server: https, normally a
     * TLS reverse proxy in front of http.port; the relay serves {publicUrl}/graph/notifications and /graph/lifecycle.
     */
    notifications: Type.Optional(Type.Object({
      publicUrl: Type.String({ minLength: 9, description: 'https URL Graph posts notifications to (a reverse proxy in front of the relay)' }),
      reconcileIntervalMs: Type.Integer({ minimum: 1000, default: 300_000, description: 'subscribed people are re-read this often (missed notifications)' }),
      subscriptionLifetimeMinutes: Type.Integer({ minimum: 45, maximum: 60, default: 55 }),
      renewBeforeMinutes: Type.Integer({ minimum: 1, maximum: 40, default: 15 }),
      readBudgetPer30s: Type.Integer({ minimum: 10, maximum: 1500, default: 1200, description: 'getPresencesByUserId requests per 30 s per tenant (Graph allows 1,500)' }),
      verifyValidationTokens: Type.Boolean({ default: true, description: 'check the validationTokens of every notification POST against the authority\'s keys' }),
    }, { additionalProperties: false })),
  }, { additionalProperties: false, default: {} }),
  secrets: Type.Object({
    /** The seal key (AES-256) for secrets at rest; RELAY_SEAL_KEY overrides it. Created with mode 0600 if missing. */
    sealKeyFile: SecretFile({ default: '.data/relay/seal.key' }),
  }, { additionalProperties: false, default: {} }),
  tenants: Type.Array(Type.Object({
    id: Id,
    name: Type.String({ default: '' }),
    graph: Type.Optional(Type.Object({
      tenantId: Type.String({ minLength: 1, description: 'Entra ID tenant (directory) id' }),
      clientId: Type.String({ minLength: 1, description: 'App registration (client) id' }),
      /** Exactly one credential: clientSecret, or certificateFile + privateKeyFile (checked in load.ts). */
      clientSecret: Type.Optional(Secret({ minLength: 1, description: 'the app\'s client secret, {"env": "VAR"} or {"file": "/path"} (mode 0600)' })),
      certificateFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of the certificate uploaded to the app registration' })),
      privateKeyFile: Type.Optional(SecretFile({ minLength: 1, description: 'PEM file of the certificate\'s private key (RSA); readable by the relay\'s user only (chmod 600).' })),
    }, { additionalProperties: false })),
    /** The tenant's own sync settings, overriding the relay-wide `sync` section field by field. */
    settings: Type.Optional(Type.Object({
      busyPresence: Type.Optional(Type.Union([Type.Literal('DoNotDisturb/Presenting'), Type.Literal('Busy/InACall')])),
      meetingSetsDnd: Type.Optional(Type.Boolean()),
      ringingIsBusy: Type.Optional(Type.Boolean()),
      dndOnOtherEndpointsDuringCall: Type.Optional(Type.Boolean()),
      reflectDndOnBusyEndpoint: Type.Optional(Type.Boolean()),
    }, { additionalProperties: false })),
    /** User import from Entra ID, auto-mapping and seats (cloud-relay/src/directory). Filters combine with AND. */
    directory: Type.Optional(Type.Object({
      enabledOnly: Type.Boolean({ default: true, description: 'import only accounts that are enabled (accountEnabled)' }),
      domains: Type.Array(Type.String({ pattern: '^@?[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$' }), { default: [], description: 'mail or UPN domains, e.g. contoso.com (any of them)' }),
      departments: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Entra department values (any of them)' }),
      groups: Type.Array(Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' }), { default: [], description: 'group object ids; members of any of them, nested groups included' }),
      onNoLongerMatching: Type.Union([Type.Literal('deactivate'), Type.Literal('remove'), Type.Literal('keep')], { default: 'deactivate' }),
      dailyAt: Type.Optional(Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'daily import time HH:MM (UTC)' })),
      seats: Type.Optional(Type.Integer({ minimum: 0, description: 'at most this many people synced' })),
    }, { additionalProperties: false })),
    gateways: Type.Array(Type.Object({
      id: Id,
      name: Type.String({ default: '' }),
      /** The gateway's broker password (embedded broker); stored hashed. */
      password: Secret({ minLength: 8, description: 'the password, {"env": "VAR"} or {"file": "/path"} (mode 0600)' }),
    }, { additionalProperties: false }), { default: [] }),
  }, { additionalProperties: false }), { default: [] }),
  sync: Type.Object({
    pollIntervalMs: Type.Integer({ minimum: 200, default: 5000, description: 'Teams presence polling interval' }),
    busyPresence: Type.Union([Type.Literal('DoNotDisturb/Presenting'), Type.Literal('Busy/InACall')], { default: 'DoNotDisturb/Presenting' }),
    meetingSetsDnd: Type.Boolean({ default: false }),
    ringingIsBusy: Type.Boolean({ default: false }),
    dndOnOtherEndpointsDuringCall: Type.Boolean({ default: true, description: 'During a call on one extension, DND on the person\'s other extensions (any PBX)' }),
    reflectDndOnBusyEndpoint: Type.Boolean({ default: false, description: 'During a call, DND on the busy extension itself (PBXs without busy-on-busy)' }),
    sessionExpirationMinutes: Type.Integer({ minimum: 5, maximum: 240, default: 15 }),
    sessionRefreshMs: Type.Integer({ minimum: 10_000, maximum: 290_000, default: 240_000 }),
    echoHoldMs: Type.Integer({ minimum: 0, default: 15_000 }),
    gatewayOfflineGraceMs: Type.Integer({ minimum: 0, default: 120_000 }),
    commandTimeoutMs: Type.Integer({ minimum: 500, default: 10_000 }),
    maxPeoplePerTenant: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000, description: 'people per tenant (imported ones included) beyond which a PBX directory e-mail makes no new person: the extension is recorded without one' }),
  }, { additionalProperties: false, default: {} }),
  http: Type.Object({
    /** The admin API and /healthz. Loopback by default: put a TLS reverse proxy in front to expose it. */
    host: Type.String({ default: '127.0.0.1', description: 'address to listen on' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'port to listen on (0 = any free port)' }),
    /** Bearer token for /api/v1 (a stopgap until the console has its own login). Without it the API answers 503. */
    apiToken: Type.Optional(Secret({ minLength: 32, description: 'Bearer token for /api/v1, at least 32 characters (openssl rand -base64 32): the token, {"env": "VAR"} or {"file": "/path"} (mode 0600).' })),
    /**
     * Which reverse proxies' X-Forwarded-For to believe (fastify's trustProxy): the per-address limiters (console
     * sign-in, enrollment) and the logs then see the client's address instead of the proxy's. Off by default:
     * without a proxy anyone can send that header.
     */
    trustProxy: Type.Union([
      Type.Boolean({ description: 'true: trust every hop (only when nothing but the proxy can reach the port)' }),
      Type.Integer({ minimum: 1, maximum: 16, description: 'trust this many proxy hops in front of the relay' }),
      Type.Array(Type.String({
        pattern: '^(loopback|linklocal|uniquelocal|[0-9]{1,3}(\\.[0-9]{1,3}){3}(/([0-9]|[12][0-9]|3[0-2]))?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?)$',
        description: 'a proxy address or CIDR, e.g. 127.0.0.1, 10.0.0.0/8, ::1, or loopback / linklocal / uniquelocal',
      }), { minItems: 1 }),
    ], { default: false, description: 'false (default), true, a hop count, or the proxies\' addresses/CIDRs' }),
    /**
     * HTTPS for the relay's own port (the boxes' enrollment endpoint is on it): PEM files, or selfIssued: the relay
     * issues its server certificate from its own CA for enrollment.publicHostnames at every start (boxes then pin
     * the relay CA's fingerprint). Without it the port speaks plain HTTP (behind a TLS reverse proxy).
     */
    tls: Type.Optional(Type.Union([
      Type.Object({
        certFile: Type.String({ minLength: 1, description: 'PEM file: the server certificate (and its chain)' }),
        keyFile: SecretFile({ minLength: 1, description: 'PEM file: its private key, readable by the relay\'s user only (chmod 600).' }),
      }, { additionalProperties: false }),
      Type.Object({
        selfIssued: Type.Literal(true, { description: 'issue the HTTPS certificate from the relay CA for enrollment.publicHostnames' }),
      }, { additionalProperties: false }),
    ])),
  }, { additionalProperties: false, default: {} }),
  /** Gateway enrollment: one-time codes, the gateways' client certificates (cloud-relay/src/enrollment). */
  enrollment: Type.Object({
    codeTtlHours: Type.Number({ minimum: 0.1, maximum: 720, default: 24, description: 'an enrollment code expires this many hours after it was made' }),
    certificateValidityDays: Type.Integer({ minimum: 1, maximum: 825, default: 30, description: 'lifetime of a gateway certificate; the box renews after 2/3 of it' }),
    renewalGraceDays: Type.Integer({ minimum: 0, maximum: 365, default: 7, description: 'an expired gateway certificate can still renew for this many days' }),
    brokerUrls: Type.Array(Type.String({ pattern: '^(mqtts|wss)://[^/\\s]+' }), {
      default: [],
      description: 'what an enrolled box connects to, in order of preference, e.g. ["mqtts://relay.example:8883", "wss://relay.example:443/mqtt"]',
    }),
    publicHostnames: Type.Array(Type.String({ minLength: 1 }), {
      default: ['localhost', '127.0.0.1'],
      description: 'DNS names and IP addresses boxes reach the relay by: the names in its self-issued server certificates',
    }),
    failedAttemptsPerWindow: Type.Integer({ minimum: 1, default: 10, description: 'failed enrollment attempts per remote address before 429' }),
    failedAttemptsWindowMinutes: Type.Integer({ minimum: 1, default: 10 }),
    renewalsPerWindow: Type.Integer({ minimum: 1, default: 10, description: 'certificate renewals per gateway in failedAttemptsWindowMinutes before 429 (a box renews every 20 days)' }),
  }, { additionalProperties: false, default: {} }),
  /** Image updates (cloud-relay/src/updates): released bundles, their download by gateways, rollouts. */
  updates: Type.Object({
    dir: Type.Optional(Type.String({ minLength: 1, description: 'folder of the bundle files; default "bundles" next to secrets.sealKeyFile' })),
    publicUrl: Type.Optional(Type.String({ pattern: '^https://[^/\\s]+$', description: 'https://host[:port] boxes fetch bundles from (a proxy in front of the relay); default https://{first enrollment.publicHostnames}:{http.port}' })),
    tokenTtlHours: Type.Number({ minimum: 0.1, maximum: 168, default: 12, description: 'a download token in cmd/update is valid this long; a box that needs longer is sent a fresh one when it reconnects' }),
    maxBundleBytes: Type.Integer({ minimum: 1024, maximum: 4 * 1024 ** 3, default: 2 * 1024 ** 3, description: 'largest bundle an upload may be' }),
  }, { additionalProperties: false, default: {} }),
  eventLog: Type.Object({
    /** Event log rows older than this are deleted (hourly, in batches). */
    retentionDays: Type.Integer({ minimum: 1, default: 30 }),
  }, { additionalProperties: false, default: {} }),
}, { additionalProperties: false })

export type RelayConfig = Static<typeof RelayConfigSchema>
