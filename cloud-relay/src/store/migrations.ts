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
]
