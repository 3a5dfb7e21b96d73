import type { EndpointData, LinkData } from '#protocol/schemas.js'
import type { SyncSettings } from '../sync/mapping.js'
import type { SqlClient } from './sql-client.js'

export type SyncMode = 'off' | 'telephony' | 'full'

export interface GatewayRow {
  id: string
  tenantId: string
  name: string
  secretHash: string | null
  status: string
  statusReason: string | null
  lastSeenAt: Date | null
}

export interface PersonRow {
  id: number
  tenantId: string
  email: string
  displayName: string
  graphUserId: string | null
  syncMode: SyncMode
  /** The person's own sync settings, overriding the tenant's field by field. */
  settingsOverride: Partial<SyncSettings> | null
}

export interface EndpointRow extends EndpointData {
  gatewayId: string
  personId: number | null
  name: string
  email: string | null
  lastSeq: number
}

export interface TeamsSessionRow {
  personId: number
  availability: string
  activity: string
  setAt: Date
  refreshedAt: Date
  expiresAt: Date
  reason: string
}

export interface PersonSyncRow {
  personId: number
  teamsAvailability: string | null
  teamsActivity: string | null
  teamsObservedAt: Date | null
  teamsTrigger: boolean
  teamsTriggerReason: string | null
  /** Endpoint keys where the person switched off a DND we set. */
  standBackKeys: string[]
}

export interface EventLogEntry {
  at?: Date
  tenantId?: string | null
  personId?: number | null
  gatewayId?: string | null
  /** Dotted kind, e.g. teams.set, teams.cleared, pbx.dnd.on, pbx.dnd.kept, gateway.offline. */
  kind: string
  /** A sentence an admin understands. */
  message: string
  data?: Record<string, unknown>
}

export interface EventLogRow extends Required<Omit<EventLogEntry, 'data'>> {
  id: number
  data: Record<string, unknown> | null
}

const num = (value: unknown): number => (typeof value === 'string' ? Number(value) : (value as number))

/** Every SQL statement the relay runs lives here. */
export class RelayStore {
  constructor(readonly db: SqlClient) {}

  async upsertTenant(id: string, name: string): Promise<void> {
    await this.db.query('INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name', [id, name])
  }

  async upsertGateway(gateway: { id: string; tenantId: string; name: string; secretHash: string | null }): Promise<void> {
    await this.db.query(
      `INSERT INTO gateways (id, tenant_id, name, secret_hash) VALUES ($1, $2, $3, $4)
       ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, name = EXCLUDED.name, secret_hash = EXCLUDED.secret_hash`,
      [gateway.id, gateway.tenantId, gateway.name, gateway.secretHash],
    )
  }

  async listGateways(): Promise<GatewayRow[]> {
    const rows = await this.db.query<Record<string, unknown>>('SELECT id, tenant_id, name, secret_hash, status, status_reason, last_seen_at FROM gateways ORDER BY id')
    return rows.map((r) => ({
      id: r.id as string,
      tenantId: r.tenant_id as string,
      name: r.name as string,
      secretHash: (r.secret_hash as string | null) ?? null,
      status: r.status as string,
      statusReason: (r.status_reason as string | null) ?? null,
      lastSeenAt: (r.last_seen_at as Date | null) ?? null,
    }))
  }

  async setGatewayStatus(id: string, status: string, reason: string | null, version: string | null, at: Date): Promise<void> {
    await this.db.query('UPDATE gateways SET status = $2, status_reason = $3, version = COALESCE($4, version), last_seen_at = $5 WHERE id = $1', [id, status, reason, version, at])
  }

  /** Reserves a block of command sequence numbers for a gateway; returns the block's first number. */
  async reserveCommandSeq(gatewayId: string, block: number): Promise<number> {
    const rows = await this.db.query<{ cmd_seq_reserved: string | number }>(
      'UPDATE gateways SET cmd_seq_reserved = cmd_seq_reserved + $2 WHERE id = $1 RETURNING cmd_seq_reserved',
      [gatewayId, block],
    )
    const row = rows[0]
    if (!row) throw new Error(`unknown gateway ${gatewayId}`)
    return num(row.cmd_seq_reserved) - block + 1
  }

  async upsertLink(gatewayId: string, link: LinkData): Promise<void> {
    await this.db.query(
      `INSERT INTO gateway_links (gateway_id, connector_id, pbx_type, state, reason, since, endpoints) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (gateway_id, connector_id) DO UPDATE SET pbx_type = EXCLUDED.pbx_type, state = EXCLUDED.state, reason = EXCLUDED.reason,
         since = EXCLUDED.since, endpoints = EXCLUDED.endpoints`,
      [gatewayId, link.connectorId, link.pbxType, link.state, link.reason ?? null, new Date(link.since), link.endpoints],
    )
  }

  async upsertPerson(tenantId: string, email: string, displayName: string): Promise<PersonRow> {
    const rows = await this.db.query<Record<string, unknown>>(
      `INSERT INTO people (tenant_id, email, display_name) VALUES ($1, $2, $3)
       ON CONFLICT (tenant_id, email) DO UPDATE SET display_name = CASE WHEN EXCLUDED.display_name = '' THEN people.display_name ELSE EXCLUDED.display_name END
       RETURNING id, tenant_id, email, display_name, graph_user_id, sync_mode, settings_override`,
      [tenantId, email.toLowerCase(), displayName],
    )
    return toPerson(rows[0]!)
  }

  async setPersonGraphUser(personId: number, graphUserId: string | null): Promise<void> {
    await this.db.query('UPDATE people SET graph_user_id = $2 WHERE id = $1', [personId, graphUserId])
  }

  async setPersonSettingsOverride(personId: number, override: Partial<SyncSettings> | null): Promise<void> {
    await this.db.query('UPDATE people SET settings_override = $2 WHERE id = $1', [personId, override ? JSON.stringify(override) : null])
  }

  async setPersonSyncMode(personId: number, mode: SyncMode): Promise<void> {
    await this.db.query('UPDATE people SET sync_mode = $2 WHERE id = $1', [personId, mode])
  }

  async listPeople(): Promise<PersonRow[]> {
    const rows = await this.db.query<Record<string, unknown>>('SELECT id, tenant_id, email, display_name, graph_user_id, sync_mode, settings_override FROM people ORDER BY id')
    return rows.map(toPerson)
  }

  /** Records an endpoint from a PBX directory (name, e-mail, person), keeping its state. */
  async upsertEndpointDirectory(e: { gatewayId: string; connectorId: string; endpointId: string; name: string; email: string | null; personId: number | null }): Promise<void> {
    await this.db.query(
      `INSERT INTO endpoints (gateway_id, connector_id, endpoint_id, name, email, person_id) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (gateway_id, connector_id, endpoint_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, person_id = EXCLUDED.person_id`,
      [e.gatewayId, e.connectorId, e.endpointId, e.name, e.email, e.personId],
    )
  }

  /**
   * Stores an endpoint state if `seq` is newer than what is stored: redelivered or reordered events lose
   * (last writer by seq wins). Returns false when the event was stale.
   */
  async updateEndpointState(gatewayId: string, data: EndpointData, seq: number): Promise<boolean> {
    const rows = await this.db.query(
      `INSERT INTO endpoints (gateway_id, connector_id, endpoint_id, state, calls, dnd, dnd_owner, cause, last_seq, changed_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (gateway_id, connector_id, endpoint_id) DO UPDATE SET state = EXCLUDED.state, calls = EXCLUDED.calls, dnd = EXCLUDED.dnd,
         dnd_owner = EXCLUDED.dnd_owner, cause = EXCLUDED.cause, last_seq = EXCLUDED.last_seq, changed_at = EXCLUDED.changed_at
       WHERE endpoints.last_seq < EXCLUDED.last_seq
       RETURNING 1 AS ok`,
      [gatewayId, data.connectorId, data.endpointId, data.state, data.calls, data.dnd, data.dndOwner, data.cause, seq, new Date(data.changedAt)],
    )
    return rows.length > 0
  }

  /**
   * A gateway whose sequence restarted below what we stored (its state file was lost or reset) would have every
   * event ignored as stale: forget the stored sequence of its endpoints. Returns how many were reset.
   */
  async resetEndpointSeqAbove(gatewayId: string, seq: number): Promise<number> {
    const rows = await this.db.query('UPDATE endpoints SET last_seq = -1 WHERE gateway_id = $1 AND last_seq > $2 RETURNING 1 AS ok', [gatewayId, seq])
    return rows.length
  }

  /** The stored seq of one endpoint, or undefined when it is not stored yet. */
  async listEndpointSeq(gatewayId: string, connectorId: string, endpointId: string): Promise<number | undefined> {
    const rows = await this.db.query<{ last_seq: string | number }>(
      'SELECT last_seq FROM endpoints WHERE gateway_id = $1 AND connector_id = $2 AND endpoint_id = $3',
      [gatewayId, connectorId, endpointId],
    )
    return rows[0] ? num(rows[0].last_seq) : undefined
  }

  /**
   * The sync engine's queued writes in a few multi-row statements (arrays unnested server-side), so a busy relay
   * makes a handful of round trips per flush instead of several per decision. Endpoint rows keep the seq rule.
   */
  async writeBatch(batch: {
    endpoints: Array<{ gatewayId: string; data: EndpointData; seq: number }>
    sessionUpserts: TeamsSessionRow[]
    sessionDeletes: number[]
    personSync: PersonSyncRow[]
    events: EventLogEntry[]
  }): Promise<void> {
    const iso = (d: Date) => d.toISOString()
    if (batch.endpoints.length) {
      const e = batch.endpoints
      await this.db.query(
        `INSERT INTO endpoints (gateway_id, connector_id, endpoint_id, state, calls, dnd, dnd_owner, cause, last_seq, changed_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bool[], $7::text[], $8::text[], $9::bigint[], $10::timestamptz[])
         ON CONFLICT (gateway_id, connector_id, endpoint_id) DO UPDATE SET state = EXCLUDED.state, calls = EXCLUDED.calls, dnd = EXCLUDED.dnd,
           dnd_owner = EXCLUDED.dnd_owner, cause = EXCLUDED.cause, last_seq = EXCLUDED.last_seq, changed_at = EXCLUDED.changed_at
         WHERE endpoints.last_seq < EXCLUDED.last_seq`,
        [e.map((x) => x.gatewayId), e.map((x) => x.data.connectorId), e.map((x) => x.data.endpointId), e.map((x) => x.data.state), e.map((x) => x.data.calls),
          e.map((x) => x.data.dnd), e.map((x) => x.data.dndOwner), e.map((x) => x.data.cause), e.map((x) => x.seq), e.map((x) => new Date(x.data.changedAt).toISOString())],
      )
    }
    if (batch.sessionDeletes.length) {
      await this.db.query('DELETE FROM teams_sessions WHERE person_id = ANY($1::bigint[])', [batch.sessionDeletes])
    }
    if (batch.sessionUpserts.length) {
      const u = batch.sessionUpserts
      await this.db.query(
        `INSERT INTO teams_sessions (person_id, availability, activity, set_at, refreshed_at, expires_at, reason)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::text[])
         ON CONFLICT (person_id) DO UPDATE SET availability = EXCLUDED.availability, activity = EXCLUDED.activity, set_at = EXCLUDED.set_at,
           refreshed_at = EXCLUDED.refreshed_at, expires_at = EXCLUDED.expires_at, reason = EXCLUDED.reason`,
        [u.map((x) => x.personId), u.map((x) => x.availability), u.map((x) => x.activity), u.map((x) => iso(x.setAt)), u.map((x) => iso(x.refreshedAt)), u.map((x) => iso(x.expiresAt)), u.map((x) => x.reason)],
      )
    }
    for (const s of batch.personSync) await this.upsertPersonSync(s) // few per flush; text[] of text[] does not unnest
    if (batch.events.length) {
      const ev = batch.events
      await this.db.query(
        `INSERT INTO event_log (at, tenant_id, person_id, gateway_id, kind, message, data)
         SELECT at, tenant_id, person_id, gateway_id, kind, message, data::jsonb
         FROM unnest($1::timestamptz[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) AS t(at, tenant_id, person_id, gateway_id, kind, message, data)`,
        [ev.map((x) => iso(x.at ?? new Date())), ev.map((x) => x.tenantId ?? null), ev.map((x) => x.personId ?? null), ev.map((x) => x.gatewayId ?? null),
          ev.map((x) => x.kind), ev.map((x) => x.message), ev.map((x) => (x.data ? JSON.stringify(x.data) : null))],
      )
    }
  }

  async listEndpoints(): Promise<EndpointRow[]> {
    const rows = await this.db.query<Record<string, unknown>>(
      'SELECT gateway_id, connector_id, endpoint_id, person_id, name, email, state, calls, dnd, dnd_owner, cause, last_seq, changed_at FROM endpoints',
    )
    return rows.map((r) => ({
      gatewayId: r.gateway_id as string,
      connectorId: r.connector_id as string,
      endpointId: r.endpoint_id as string,
      personId: r.person_id === null ? null : num(r.person_id),
      name: r.name as string,
      email: (r.email as string | null) ?? null,
      state: r.state as EndpointData['state'],
      calls: num(r.calls),
      dnd: r.dnd as boolean,
      dndOwner: (r.dnd_owner as EndpointData['dndOwner']) ?? null,
      cause: r.cause as string,
      lastSeq: num(r.last_seq),
      changedAt: r.changed_at ? (r.changed_at as Date).getTime() : 0,
    }))
  }

  async upsertTeamsSession(s: TeamsSessionRow): Promise<void> {
    await this.db.query(
      `INSERT INTO teams_sessions (person_id, availability, activity, set_at, refreshed_at, expires_at, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (person_id) DO UPDATE SET availability = EXCLUDED.availability, activity = EXCLUDED.activity, set_at = EXCLUDED.set_at,
         refreshed_at = EXCLUDED.refreshed_at, expires_at = EXCLUDED.expires_at, reason = EXCLUDED.reason`,
      [s.personId, s.availability, s.activity, s.setAt, s.refreshedAt, s.expiresAt, s.reason],
    )
  }

  async deleteTeamsSession(personId: number): Promise<void> {
    await this.db.query('DELETE FROM teams_sessions WHERE person_id = $1', [personId])
  }

  async listTeamsSessions(): Promise<TeamsSessionRow[]> {
    const rows = await this.db.query<Record<string, unknown>>('SELECT person_id, availability, activity, set_at, refreshed_at, expires_at, reason FROM teams_sessions')
    return rows.map((r) => ({
      personId: num(r.person_id),
      availability: r.availability as string,
      activity: r.activity as string,
      setAt: r.set_at as Date,
      refreshedAt: r.refreshed_at as Date,
      expiresAt: r.expires_at as Date,
      reason: r.reason as string,
    }))
  }

  async upsertPersonSync(s: PersonSyncRow): Promise<void> {
    await this.db.query(
      `INSERT INTO person_sync (person_id, teams_availability, teams_activity, teams_observed_at, teams_trigger, teams_trigger_reason, stand_back_keys)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (person_id) DO UPDATE SET teams_availability = EXCLUDED.teams_availability, teams_activity = EXCLUDED.teams_activity,
         teams_observed_at = EXCLUDED.teams_observed_at, teams_trigger = EXCLUDED.teams_trigger,
         teams_trigger_reason = EXCLUDED.teams_trigger_reason, stand_back_keys = EXCLUDED.stand_back_keys`,
      [s.personId, s.teamsAvailability, s.teamsActivity, s.teamsObservedAt, s.teamsTrigger, s.teamsTriggerReason, s.standBackKeys],
    )
  }

  async listPersonSync(): Promise<PersonSyncRow[]> {
    const rows = await this.db.query<Record<string, unknown>>('SELECT * FROM person_sync')
    return rows.map((r) => ({
      personId: num(r.person_id),
      teamsAvailability: (r.teams_availability as string | null) ?? null,
      teamsActivity: (r.teams_activity as string | null) ?? null,
      teamsObservedAt: (r.teams_observed_at as Date | null) ?? null,
      teamsTrigger: r.teams_trigger as boolean,
      teamsTriggerReason: (r.teams_trigger_reason as string | null) ?? null,
      standBackKeys: (r.stand_back_keys as string[] | null) ?? [],
    }))
  }

  async appendEvent(e: EventLogEntry): Promise<void> {
    await this.db.query(
      'INSERT INTO event_log (at, tenant_id, person_id, gateway_id, kind, message, data) VALUES ($1, $2, $3, $4, $5, $6, $7)',
      [e.at ?? new Date(), e.tenantId ?? null, e.personId ?? null, e.gatewayId ?? null, e.kind, e.message, e.data ? JSON.stringify(e.data) : null],
    )
  }

  async listEvents(filter: { personId?: number; since?: Date; limit?: number } = {}): Promise<EventLogRow[]> {
    const rows = await this.db.query<Record<string, unknown>>(
      `SELECT id, at, tenant_id, person_id, gateway_id, kind, message, data FROM event_log
       WHERE ($1::bigint IS NULL OR person_id = $1) AND ($2::timestamptz IS NULL OR at >= $2)
       ORDER BY id DESC LIMIT $3`,
      [filter.personId ?? null, filter.since ?? null, filter.limit ?? 200],
    )
    return rows.map(toEvent)
  }

  async getPerson(id: number): Promise<PersonRow | undefined> {
    // SELECT *: toPerson picks the columns it knows.
    const rows = await this.db.query<Record<string, unknown>>('SELECT * FROM people WHERE id = $1', [id])
    return rows[0] ? toPerson(rows[0]) : undefined
  }

  /**
   * The event log for the admin API: newest first (by time, then id), `from` inclusive, `to` exclusive, `kindPrefix`
   * matched literally (`pbx.` or `teams.set`). `before` is the id of the last row of the previous page: rows after
   * it in this order follow. A cursor row that no longer exists (removed by retention) yields nothing, which is right:
   * everything older went with it.
   */
  async queryEvents(query: EventQuery): Promise<EventLogRow[]> {
    const where: string[] = []
    const params: unknown[] = []
    const param = (value: unknown): string => {
      params.push(value)
      return `$${params.length}`
    }
    if (query.tenantId !== undefined) where.push(`tenant_id = ${param(query.tenantId)}`)
    if (query.personId !== undefined) where.push(`person_id = ${param(query.personId)}`)
    if (query.from !== undefined) where.push(`at >= ${param(query.from)}`)
    if (query.to !== undefined) where.push(`at < ${param(query.to)}`)
    if (query.kindPrefix !== undefined) where.push(`starts_with(kind, ${param(query.kindPrefix)})`)
    if (query.before !== undefined) where.push(`(at, id) < (SELECT c.at, c.id FROM event_log c WHERE c.id = ${param(query.before)})`)
    const rows = await this.db.query<Record<string, unknown>>(
      `SELECT id, at, tenant_id, person_id, gateway_id, kind, message, data FROM event_log
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY at DESC, id DESC LIMIT ${param(query.limit)}`,
      params,
    )
    return rows.map(toEvent)
  }

  /**
   * Deletes at most `batchSize` event rows older than `cutoff`, oldest first, in one short statement; returns how
   * many went. Callers repeat until fewer than `batchSize` go, so a large backlog never holds long locks.
   */
  async deleteEventsOlderThan(cutoff: Date, batchSize: number): Promise<number> {
    const rows = await this.db.query<{ removed: number | string }>(
      `WITH doomed AS (SELECT id FROM event_log WHERE at < $1 ORDER BY at LIMIT $2),
            removed AS (DELETE FROM event_log WHERE id IN (SELECT id FROM doomed) RETURNING 1)
       SELECT count(*)::int AS removed FROM removed`,
      [cutoff, batchSize],
    )
    return num(rows[0]?.removed ?? 0)
  }
}

export interface EventQuery {
  tenantId?: string | undefined
  personId?: number | undefined
  /** Inclusive. */
  from?: Date | undefined
  /** Exclusive. */
  to?: Date | undefined
  /** Kinds starting with this text, taken literally. */
  kindPrefix?: string | undefined
  /** Id of the last row of the previous page. */
  before?: number | undefined
  limit: number
}

function toEvent(r: Record<string, unknown>): EventLogRow {
  return {
    id: num(r.id),
    at: r.at as Date,
    tenantId: (r.tenant_id as string | null) ?? null,
    personId: r.person_id === null ? null : num(r.person_id),
    gatewayId: (r.gateway_id as string | null) ?? null,
    kind: r.kind as string,
    message: r.message as string,
    data: (r.data as Record<string, unknown> | null) ?? null,
  }
}

/** A people row as the sync engine sees it (the directory store adds its own columns on top). */
export function toPerson(r: Record<string, unknown>): PersonRow {
  return {
    id: num(r.id),
    tenantId: r.tenant_id as string,
    email: r.email as string,
    displayName: r.display_name as string,
    graphUserId: (r.graph_user_id as string | null) ?? null,
    syncMode: r.sync_mode as SyncMode,
    settingsOverride: (r.settings_override as Partial<SyncSettings> | null) ?? null,
  }
}
