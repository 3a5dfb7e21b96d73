import type { DirectoryUser } from '../graph/types.js'
import { toPerson, type EventLogEntry, type PersonRow, type SyncMode } from './relay-store.js'
import type { SqlClient } from './sql-client.js'

/** A person with what user import and seats need on top of the sync engine's row. */
export interface DirectoryPersonRow extends PersonRow {
  source: 'pbx' | 'import'
  active: boolean
  inactiveReason: 'import' | 'seats' | null
  syncModeWhenActive: SyncMode | null
  createdAt: Date
  importedAt: Date | null
  lastImportedAt: Date | null
  entra: EntraAttributes | null
}

/** The Entra attributes kept with an imported person. */
export interface EntraAttributes {
  userPrincipalName: string
  mail: string | null
  department: string | null
  accountEnabled: boolean
  proxyAddresses: string[]
}

export interface ManualMappingRow {
  gatewayId: string
  connectorId: string
  endpointId: string
  personId: number
  setBy: string
  setAt: Date
}

export interface ImportRunRow {
  id: number
  tenantId: string
  dryRun: boolean
  trigger: string
  state: 'running' | 'succeeded' | 'failed'
  startedAt: Date
  finishedAt: Date | null
  progress: Record<string, unknown> | null
  result: Record<string, unknown> | null
  error: string | null
}

export interface ImportedPersonWrite {
  /** Existing person to update, or undefined to insert one. */
  personId: number | undefined
  email: string
  displayName: string
  graphUserId: string
  entra: EntraAttributes
}

export interface EndpointDirectoryRow {
  gatewayId: string
  connectorId: string
  endpointId: string
  name: string
  email: string | null
  personId: number | null
}

const num = (value: unknown): number => (typeof value === 'string' ? Number(value) : (value as number))
const PERSON_COLUMNS =
  'id, tenant_id, email, display_name, graph_user_id, sync_mode, settings_override, source, active, inactive_reason, sync_mode_when_active, created_at, imported_at, last_imported_at, entra'

/** The SQL of user import, manual mappings and seats (tables of migration 4). */
export class DirectoryStore {
  constructor(readonly db: SqlClient) {}

  async listTenantPeople(tenantId: string): Promise<DirectoryPersonRow[]> {
    const rows = await this.db.query<Record<string, unknown>>(`SELECT ${PERSON_COLUMNS} FROM people WHERE tenant_id = $1 ORDER BY id`, [tenantId])
    return rows.map(toDirectoryPerson)
  }

  async getPerson(personId: number): Promise<DirectoryPersonRow | undefined> {
    const rows = await this.db.query<Record<string, unknown>>(`SELECT ${PERSON_COLUMNS} FROM people WHERE id = $1`, [personId])
    return rows[0] ? toDirectoryPerson(rows[0]) : undefined
  }

  /** The tenant's person for an Entra user (indexed: the PBX directory path asks once per extension). */
  async personByGraphUser(tenantId: string, graphUserId: string): Promise<DirectoryPersonRow | undefined> {
    const rows = await this.db.query<Record<string, unknown>>(
      `SELECT ${PERSON_COLUMNS} FROM people WHERE tenant_id = $1 AND lower(graph_user_id) = lower($2) ORDER BY (source = 'import') DESC, id LIMIT 1`,
      [tenantId, graphUserId],
    )
    return rows[0] ? toDirectoryPerson(rows[0]) : undefined
  }

  /** Inserts and updates imported people in two statements; returns the ids of inserted people by graph user id. */
  async writeImportedPeople(tenantId: string, writes: readonly ImportedPersonWrite[], at: Date): Promise<Map<string, number>> {
    const inserts = writes.filter((w) => w.personId === undefined)
    const updates = writes.filter((w) => w.personId !== undefined)
    const ids = new Map<string, number>()
    if (inserts.length) {
      // created_at from the relay's clock: seats order people by it.
      const rows = await this.db.query<{ id: number | string; graph_user_id: string }>(
        `INSERT INTO people (tenant_id, email, display_name, graph_user_id, source, created_at, imported_at, last_imported_at, entra)
         SELECT $1, email, display_name, graph_user_id, 'import', $2, $2, $2, entra::jsonb
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS t(email, display_name, graph_user_id, entra)
         ON CONFLICT (tenant_id, email) DO UPDATE SET display_name = EXCLUDED.display_name, graph_user_id = EXCLUDED.graph_user_id,
           source = 'import', imported_at = COALESCE(people.imported_at, EXCLUDED.imported_at), last_imported_at = EXCLUDED.last_imported_at, entra = EXCLUDED.entra
         RETURNING id, graph_user_id`,
        [tenantId, at.toISOString(), inserts.map((w) => w.email), inserts.map((w) => w.displayName), inserts.map((w) => w.graphUserId), inserts.map((w) => JSON.stringify(w.entra))],
      )
      for (const r of rows) ids.set(r.graph_user_id, num(r.id))
    }
    if (updates.length) {
      await this.db.query(
        `UPDATE people p SET display_name = t.display_name, graph_user_id = t.graph_user_id, source = 'import', entra = t.entra::jsonb,
           imported_at = COALESCE(p.imported_at, $1), last_imported_at = $1
         FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS t(id, display_name, graph_user_id, entra)
         WHERE p.id = t.id`,
        [at.toISOString(), updates.map((w) => w.personId), updates.map((w) => w.displayName), updates.map((w) => w.graphUserId), updates.map((w) => JSON.stringify(w.entra))],
      )
    }
    return ids
  }

  /** Marks people seen by a run that changed nothing about them. */
  async touchImported(personIds: readonly number[], at: Date): Promise<void> {
    if (!personIds.length) return
    await this.db.query('UPDATE people SET last_imported_at = $1 WHERE id = ANY($2::bigint[])', [at.toISOString(), personIds])
  }

  async setActive(personId: number, active: boolean, reason: 'import' | 'seats' | null, syncModeWhenActive: SyncMode | null, at: Date): Promise<void> {
    await this.db.query(
      `UPDATE people SET active = $2, inactive_reason = $3, sync_mode_when_active = $4, inactive_since = CASE WHEN $2 THEN NULL ELSE $5::timestamptz END WHERE id = $1`,
      [personId, active, active ? null : reason, active ? null : syncModeWhenActive, at.toISOString()],
    )
  }

  /** Many event log rows in one statement (an import adds thousands of people). */
  async appendEvents(events: readonly EventLogEntry[]): Promise<void> {
    if (!events.length) return
    await this.db.query(
      `INSERT INTO event_log (at, tenant_id, person_id, gateway_id, kind, message)
       SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[])`,
      [events.map((e) => (e.at ?? new Date()).toISOString()), events.map((e) => e.tenantId ?? null), events.map((e) => e.personId ?? null),
        events.map((e) => e.gatewayId ?? null), events.map((e) => e.kind), events.map((e) => e.message)],
    )
  }

  async deletePerson(personId: number): Promise<void> {
    await this.db.query('DELETE FROM people WHERE id = $1', [personId])
  }

  /** Replaces the tenant's imported directory with this run's users. */
  async replaceDirectory(tenantId: string, users: readonly DirectoryUser[], at: Date): Promise<void> {
    await this.db.query('DELETE FROM directory_users WHERE tenant_id = $1', [tenantId])
    if (!users.length) return
    await this.db.query(
      `INSERT INTO directory_users (tenant_id, graph_user_id, display_name, mail, user_principal_name, account_enabled, department, proxy_addresses, imported_at)
       SELECT $1, id, display_name, mail, upn, enabled, department, ARRAY(SELECT jsonb_array_elements_text(proxies::jsonb)), $2
       FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::text[], $9::text[]) AS t(id, display_name, mail, upn, enabled, department, proxies)`,
      [tenantId, at.toISOString(), users.map((u) => u.id), users.map((u) => u.displayName), users.map((u) => u.mail), users.map((u) => u.userPrincipalName),
        users.map((u) => u.accountEnabled), users.map((u) => u.department), users.map((u) => JSON.stringify(u.proxyAddresses))],
    )
  }

  async loadDirectory(tenantId: string): Promise<DirectoryUser[]> {
    const rows = await this.db.query<Record<string, unknown>>(
      'SELECT graph_user_id, display_name, mail, user_principal_name, account_enabled, department, proxy_addresses FROM directory_users WHERE tenant_id = $1 ORDER BY graph_user_id',
      [tenantId],
    )
    return rows.map((r) => ({
      id: r.graph_user_id as string,
      displayName: r.display_name as string,
      mail: (r.mail as string | null) ?? null,
      userPrincipalName: r.user_principal_name as string,
      accountEnabled: r.account_enabled as boolean,
      department: (r.department as string | null) ?? null,
      proxyAddresses: (r.proxy_addresses as string[] | null) ?? [],
    }))
  }

  /** Whether the tenant ever completed a real import (then mapping goes through the imported directory). */
  async hasImported(tenantId: string): Promise<boolean> {
    const rows = await this.db.query("SELECT 1 FROM directory_imports WHERE tenant_id = $1 AND NOT dry_run AND state = 'succeeded' LIMIT 1", [tenantId])
    return rows.length > 0
  }

  async setManualMapping(m: ManualMappingRow): Promise<void> {
    await this.db.query(
      `INSERT INTO manual_mappings (gateway_id, connector_id, endpoint_id, person_id, set_by, set_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (gateway_id, connector_id, endpoint_id) DO UPDATE SET person_id = EXCLUDED.person_id, set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at`,
      [m.gatewayId, m.connectorId, m.endpointId, m.personId, m.setBy, m.setAt.toISOString()],
    )
  }

  async deleteManualMapping(gatewayId: string, connectorId: string, endpointId: string): Promise<boolean> {
    const rows = await this.db.query('DELETE FROM manual_mappings WHERE gateway_id = $1 AND connector_id = $2 AND endpoint_id = $3 RETURNING 1 AS ok', [gatewayId, connectorId, endpointId])
    return rows.length > 0
  }

  async getManualMapping(gatewayId: string, connectorId: string, endpointId: string): Promise<ManualMappingRow | undefined> {
    const rows = await this.db.query<Record<string, unknown>>(
      'SELECT gateway_id, connector_id, endpoint_id, person_id, set_by, set_at FROM manual_mappings WHERE gateway_id = $1 AND connector_id = $2 AND endpoint_id = $3',
      [gatewayId, connectorId, endpointId],
    )
    const r = rows[0]
    return r ? toManualMapping(r) : undefined
  }

  async listManualMappings(tenantId: string): Promise<ManualMappingRow[]> {
    const rows = await this.db.query<Record<string, unknown>>(
      `SELECT m.gateway_id, m.connector_id, m.endpoint_id, m.person_id, m.set_by, m.set_at FROM manual_mappings m
       JOIN gateways g ON g.id = m.gateway_id WHERE g.tenant_id = $1 ORDER BY m.gateway_id, m.connector_id, m.endpoint_id`,
      [tenantId],
    )
    return rows.map(toManualMapping)
  }

  /** The tenant's PBX extensions with the name and e-mail their PBX directory gave. */
  async listTenantEndpoints(tenantId: string): Promise<EndpointDirectoryRow[]> {
    const rows = await this.db.query<Record<string, unknown>>(
      `SELECT e.gateway_id, e.connector_id, e.endpoint_id, e.name, e.email, e.person_id FROM endpoints e
       JOIN gateways g ON g.id = e.gateway_id WHERE g.tenant_id = $1 ORDER BY e.gateway_id, e.connector_id, e.endpoint_id`,
      [tenantId],
    )
    return rows.map((r) => ({
      gatewayId: r.gateway_id as string,
      connectorId: r.connector_id as string,
      endpointId: r.endpoint_id as string,
      name: r.name as string,
      email: (r.email as string | null) ?? null,
      personId: r.person_id === null ? null : num(r.person_id),
    }))
  }

  async createImportRun(tenantId: string, dryRun: boolean, trigger: string, at: Date): Promise<number> {
    const rows = await this.db.query<{ id: number | string }>(
      "INSERT INTO directory_imports (tenant_id, dry_run, trigger, state, started_at) VALUES ($1, $2, $3, 'running', $4) RETURNING id",
      [tenantId, dryRun, trigger, at.toISOString()],
    )
    return num(rows[0]!.id)
  }

  async finishImportRun(id: number, outcome: { state: 'succeeded' | 'failed'; at: Date; progress: Record<string, unknown>; result: Record<string, unknown> | null; error: string | null }): Promise<void> {
    await this.db.query(
      'UPDATE directory_imports SET state = $2, finished_at = $3, progress = $4, result = $5, error = $6 WHERE id = $1',
      [id, outcome.state, outcome.at.toISOString(), JSON.stringify(outcome.progress), outcome.result === null ? null : JSON.stringify(outcome.result), outcome.error],
    )
  }

  async getImportRun(id: number): Promise<ImportRunRow | undefined> {
    const rows = await this.db.query<Record<string, unknown>>('SELECT * FROM directory_imports WHERE id = $1', [id])
    return rows[0] ? toRun(rows[0]) : undefined
  }

  async listImportRuns(tenantId: string, limit: number): Promise<ImportRunRow[]> {
    const rows = await this.db.query<Record<string, unknown>>('SELECT * FROM directory_imports WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2', [tenantId, limit])
    return rows.map(toRun)
  }

  /** Runs left 'running' by a relay that stopped mid-import. */
  async failInterruptedRuns(at: Date): Promise<number> {
    const rows = await this.db.query(
      "UPDATE directory_imports SET state = 'failed', finished_at = $1, error = 'the relay stopped during the import; start it again' WHERE state = 'running' RETURNING 1 AS ok",
      [at.toISOString()],
    )
    return rows.length
  }
}

function toManualMapping(r: Record<string, unknown>): ManualMappingRow {
  return {
    gatewayId: r.gateway_id as string,
    connectorId: r.connector_id as string,
    endpointId: r.endpoint_id as string,
    personId: num(r.person_id),
    setBy: r.set_by as string,
    setAt: r.set_at as Date,
  }
}

function toDirectoryPerson(r: Record<string, unknown>): DirectoryPersonRow {
  return {
    ...toPerson(r),
    source: r.source === 'import' ? 'import' : 'pbx',
    active: r.active as boolean,
    inactiveReason: (r.inactive_reason as 'import' | 'seats' | null) ?? null,
    syncModeWhenActive: (r.sync_mode_when_active as SyncMode | null) ?? null,
    createdAt: r.created_at as Date,
    importedAt: (r.imported_at as Date | null) ?? null,
    lastImportedAt: (r.last_imported_at as Date | null) ?? null,
    entra: (r.entra as EntraAttributes | null) ?? null,
  }
}

function toRun(r: Record<string, unknown>): ImportRunRow {
  return {
    id: num(r.id),
    tenantId: r.tenant_id as string,
    dryRun: r.dry_run as boolean,
    trigger: r.trigger as string,
    state: r.state as ImportRunRow['state'],
    startedAt: r.started_at as Date,
    finishedAt: (r.finished_at as Date | null) ?? null,
    progress: (r.progress as Record<string, unknown> | null) ?? null,
    result: (r.result as Record<string, unknown> | null) ?? null,
    error: (r.error as string | null) ?? null,
  }
}
