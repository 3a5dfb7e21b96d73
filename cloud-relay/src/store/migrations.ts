/**
 * The relay's schema, in order. Applied by `migrate()` on start; each runs once, in a transaction. Never edit a
 * released migration: add the next one. Plain PostgreSQL that PGlite runs too.
 */
export const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE tenants (
  id text PRIMARY KEY,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE gateways (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name text NOT NULL DEFAULT '',
  secret_hash text,
  cmd_seq_reserved bigint NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'unknown',
  status_reason text,
  version text,
  last_seen_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE gateway_links (
  gateway_id text NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  connector_id text NOT NULL,
  pbx_type text NOT NULL,
  state text NOT NULL,
  reason text,
  since timestamptz NOT NULL,
  endpoints integer NOT NULL DEFAULT 0,
  PRIMARY KEY (gateway_id, connector_id)
);
CREATE TABLE people (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  email text NOT NULL,
  display_name text NOT NULL DEFAULT '',
  graph_user_id text,
  sync_mode text NOT NULL DEFAULT 'full' CHECK (sync_mode IN ('off', 'telephony', 'full')),
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, email)
);
CREATE TABLE endpoints (
  gateway_id text NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  connector_id text NOT NULL,
  endpoint_id text NOT NULL,
  person_id bigint REFERENCES people(id) ON DELETE SET NULL,
  name text NOT NULL DEFAULT '',
  email text,
  state text NOT NULL DEFAULT 'idle',
  calls integer NOT NULL DEFAULT 0,
  dnd boolean NOT NULL DEFAULT false,
  dnd_owner text,
  cause text NOT NULL DEFAULT '',
  last_seq bigint NOT NULL DEFAULT -1,
  changed_at timestamptz,
  PRIMARY KEY (gateway_id, connector_id, endpoint_id)
);
CREATE INDEX endpoints_person ON endpoints (person_id);
-- What we set in Teams: our app's presence session per person.
CREATE TABLE teams_sessions (
  person_id bigint PRIMARY KEY REFERENCES people(id) ON DELETE CASCADE,
  availability text NOT NULL,
  activity text NOT NULL,
  set_at timestamptz NOT NULL,
  refreshed_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  reason text NOT NULL
);
-- What we last observed in Teams, and the sync engine's memory about it.
CREATE TABLE person_sync (
  person_id bigint PRIMARY KEY REFERENCES people(id) ON DELETE CASCADE,
  teams_availability text,
  teams_activity text,
  teams_observed_at timestamptz,
  teams_trigger boolean NOT NULL DEFAULT false,
  teams_trigger_reason text,
  pbx_stand_back boolean NOT NULL DEFAULT false
);
CREATE TABLE event_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  tenant_id text,
  person_id bigint,
  gateway_id text,
  kind text NOT NULL,
  message text NOT NULL,
  data jsonb
);
CREATE INDEX event_log_person_at ON event_log (person_id, at);
CREATE INDEX event_log_at ON event_log (at);
`,
  },
  {
    version: 2,
    name: 'per-person settings override and per-endpoint stand-back',
    sql: `
ALTER TABLE people ADD COLUMN settings_override jsonb;
ALTER TABLE person_sync ADD COLUMN stand_back_keys text[] NOT NULL DEFAULT '{}';
ALTER TABLE person_sync DROP COLUMN pbx_stand_back;
`,
  },
  {
    version: 3,
    name: 'event log index for tenant-wide queries',
    sql: `
-- The admin API's log view reads one tenant's events newest first within a time range.
CREATE INDEX event_log_tenant_at ON event_log (tenant_id, at);
`,
  },
  {
    version: 4,
    name: 'user import from Entra ID, manual mappings and seats',
    sql: `
-- Where a person came from (pbx: a PBX directory e-mail; import: Entra user import), whether the relay syncs them,
-- and why not (import: no longer matches the import filters; seats: over the tenant's seat limit).
ALTER TABLE people ADD COLUMN source text NOT NULL DEFAULT 'pbx';
ALTER TABLE people ADD COLUMN active boolean NOT NULL DEFAULT true;
ALTER TABLE people ADD COLUMN inactive_reason text;
ALTER TABLE people ADD COLUMN inactive_since timestamptz;
-- The sync mode to restore when an inactive person becomes active again (inactive people run with sync mode off).
ALTER TABLE people ADD COLUMN sync_mode_when_active text;
ALTER TABLE people ADD COLUMN imported_at timestamptz;
ALTER TABLE people ADD COLUMN last_imported_at timestamptz;
ALTER TABLE people ADD COLUMN entra jsonb;
CREATE INDEX people_tenant_graph_user ON people (tenant_id, lower(graph_user_id));
-- The tenant's imported directory: the Entra users that matched the last import, for mapping without Graph calls.
CREATE TABLE directory_users (
  tenant_id text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  graph_user_id text NOT NULL,
  display_name text NOT NULL DEFAULT '',
  mail text,
  user_principal_name text NOT NULL,
  account_enabled boolean NOT NULL DEFAULT true,
  department text,
  proxy_addresses text[] NOT NULL DEFAULT '{}',
  imported_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, graph_user_id)
);
-- An admin's choice of person for one PBX extension; wins over automatic mapping and survives imports.
CREATE TABLE manual_mappings (
  gateway_id text NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  connector_id text NOT NULL,
  endpoint_id text NOT NULL,
  person_id bigint NOT NULL REFERENCES people(id) ON DELETE CASCADE,
  set_by text NOT NULL,
  set_at timestamptz NOT NULL,
  PRIMARY KEY (gateway_id, connector_id, endpoint_id)
);
CREATE TABLE directory_imports (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  dry_run boolean NOT NULL,
  trigger text NOT NULL,
  state text NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz,
  progress jsonb,
  result jsonb,
  error text
);
CREATE INDEX directory_imports_tenant ON directory_imports (tenant_id, id);
`,
  },
  {
    version: 5,
    name: 'service accounts, presence subscriptions, notification certificates',
    sql: `
-- Sign-in state of the delegated service accounts that own presence subscriptions. token_cache is msal's
-- serialized cache (refresh token inside), sealed with the relay's seal key.
CREATE TABLE service_accounts (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  username text NOT NULL,
  home_account_id text NOT NULL,
  state text NOT NULL CHECK (state IN ('ok', 'needs-sign-in')),
  reason text,
  action text,
  token_cache text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, home_account_id)
);
-- One row per Graph presence subscription: one per service account (Graph allows one per app per user).
CREATE TABLE presence_subscriptions (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  account_id text NOT NULL REFERENCES service_accounts(id) ON DELETE CASCADE,
  members text[] NOT NULL,
  client_state text NOT NULL,
  certificate_id text NOT NULL,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  renewed_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (account_id)
);
-- The certificate Graph encrypts resource data with; the private key is sealed.
CREATE TABLE notification_certificates (
  id text PRIMARY KEY,
  certificate_pem text NOT NULL,
  private_key text NOT NULL,
  not_after timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- A value sealed with the seal key at first use: a different key is detected at start, not at the first token.
CREATE TABLE seal_check (
  id integer PRIMARY KEY CHECK (id = 1),
  sealed text NOT NULL
);
`,
  },
  {
    version: 6,
    name: 'enrollment: relay CA, one-time codes, gateway certificates',
    sql: `
-- The relay's own CA (one row): the certificate, and its PKCS#8 key sealed with the seal key (purpose relay-ca-key).
CREATE TABLE relay_ca (
  id integer PRIMARY KEY CHECK (id = 1),
  certificate_pem text NOT NULL,
  private_key text NOT NULL,
  fingerprint256 text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- One-time enrollment codes, kept only as SHA-256 of the normalised code. A code is spent by setting used_at
-- (atomically, WHERE used_at IS NULL); invalidated_at marks a code replaced by a newer one or by revocation.
CREATE TABLE enrollment_codes (
  hash text PRIMARY KEY,
  gateway_id text NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  invalidated_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enrollment_codes_gateway ON enrollment_codes (gateway_id);
-- Every client certificate issued to a gateway; revoked_at feeds the CRL and the broker's connect check.
CREATE TABLE gateway_certificates (
  serial text PRIMARY KEY,
  gateway_id text NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  not_before timestamptz NOT NULL,
  not_after timestamptz NOT NULL,
  public_key_sha256 text NOT NULL,
  issued_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX gateway_certificates_gateway ON gateway_certificates (gateway_id);
-- Gateways created through the admin API have no broker password (secret_hash, nullable since migration 1, stays
-- NULL): they authenticate with their certificate.
ALTER TABLE gateways ADD COLUMN enrollment_state text NOT NULL DEFAULT 'created' CHECK (enrollment_state IN ('created', 'enrolled', 'revoked'));
ALTER TABLE gateways ADD COLUMN enrolled_at timestamptz;
ALTER TABLE gateways ADD COLUMN revoked_at timestamptz;
ALTER TABLE gateways ADD COLUMN revoked_reason text;
ALTER TABLE gateways ADD COLUMN revoked_by text;
ALTER TABLE gateways ADD COLUMN current_serial text;
-- The certificate the current one renewed: still accepted (a box that lost the renewal answer retries with it).
ALTER TABLE gateways ADD COLUMN previous_serial text;
`,
  },
  {
    version: 7,
    name: 'gateway telemetry',
    sql: `
-- The box's health as it reported it (telemetry messages), kept as long as the event log.
CREATE TABLE gateway_telemetry (
  id bigserial PRIMARY KEY,
  gateway_id text NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  at timestamptz NOT NULL,
  data jsonb NOT NULL
);
CREATE INDEX gateway_telemetry_gateway_at ON gateway_telemetry (gateway_id, at);
CREATE INDEX gateway_telemetry_at ON gateway_telemetry (at);
`,
  },
  {
    version: 8,
    name: 'console accounts and sessions',
    sql: `
-- Cloud console accounts: operator (the whole fleet) or tenant-admin (one tenant). password_hash is scrypt
-- (scrypt$N$r$p$salt$hash, base64).
CREATE TABLE console_accounts (
  id serial PRIMARY KEY,
  username text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  role text NOT NULL CHECK (role IN ('operator', 'tenant-admin')),
  tenant_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((role = 'operator') = (tenant_id IS NULL))
);
-- Signed-in sessions, kept only as SHA-256 of the cookie's token; the CSRF token is sent back with each change.
CREATE TABLE console_sessions (
  token_hash text PRIMARY KEY,
  account_id integer NOT NULL REFERENCES console_accounts(id) ON DELETE CASCADE,
  csrf_token text NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
`,
  },
  {
    version: 9,
    name: 'console accounts can be disabled',
    sql: `
-- A disabled console account cannot sign in; its sessions are deleted when it is disabled.
ALTER TABLE console_accounts ADD COLUMN disabled_at timestamptz;
`,
  },
  {
    version: 10,
    name: 'update releases and rollouts',
    sql: `
-- Released versions: a signed bundle file the relay serves to enrolled gateways (cloud-relay/src/updates).
CREATE TABLE update_releases (
  version text PRIMARY KEY,
  size bigint NOT NULL CHECK (size > 0),
  sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  file_path text NOT NULL,
  notes text NOT NULL DEFAULT '',
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- A rollout of one release to a target in stages; its state and every box's state survive a relay restart.
CREATE TABLE update_rollouts (
  id text PRIMARY KEY,
  version text NOT NULL REFERENCES update_releases(version),
  target jsonb NOT NULL,
  stages jsonb NOT NULL,
  failure_threshold double precision NOT NULL CHECK (failure_threshold >= 0 AND failure_threshold <= 1),
  install_at text NOT NULL,
  state text NOT NULL CHECK (state IN ('running', 'paused', 'halted', 'done')),
  current_stage integer NOT NULL DEFAULT 0,
  reason text NOT NULL DEFAULT '',
  created_by text NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE TABLE update_rollout_gateways (
  rollout_id text NOT NULL REFERENCES update_rollouts(id) ON DELETE CASCADE,
  gateway_id text NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  stage integer NOT NULL,
  state text NOT NULL CHECK (state IN ('waiting', 'queued', 'downloading', 'verifying', 'installing', 'rebooting', 'healthy', 'rolled-back', 'failed')),
  bytes bigint,
  total bigint,
  reason text NOT NULL DEFAULT '',
  sent_at timestamptz,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (rollout_id, gateway_id)
);
CREATE INDEX update_rollout_gateways_gateway ON update_rollout_gateways (gateway_id);
-- The key download tokens are signed with (sealed), shared by every relay instance on this database.
CREATE TABLE update_secrets (
  id integer PRIMARY KEY CHECK (id = 1),
  sealed_token_key text NOT NULL
);
-- The root file system slot each box last reported booting ("A"/"B").
ALTER TABLE gateways ADD COLUMN slot text;
`,
  },
]
