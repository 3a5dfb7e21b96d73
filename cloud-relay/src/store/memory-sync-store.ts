import type { EndpointData } from '#protocol/schemas.js'
import type { SyncSettings } from '../sync/mapping.js'
import type { SyncStore } from '../sync/sync-store.js'
import type { EndpointRow, EventLogEntry, GatewayRow, PersonRow, PersonSyncRow, SyncMode, TeamsSessionRow } from './relay-store.js'

/**
 * The sync engine's store in memory: same behaviour as RelayStore (seq ordering, e-mail case, upserts), no
 * durability. For the property tests (thousands of runs, restarts simulated by a new engine on the same store)
 * and the decision benchmark. test/relay/sync-store.contract.ts runs the same checks on both.
 */
export class MemorySyncStore implements SyncStore {
  readonly gateways = new Map<string, GatewayRow>()
  readonly people = new Map<number, PersonRow>()
  readonly endpoints = new Map<string, EndpointRow>()
  readonly sessions = new Map<number, TeamsSessionRow>()
  readonly sync = new Map<number, PersonSyncRow>()
  readonly events: EventLogEntry[] = []
  /** Keep at most this many event log entries (oldest dropped). */
  maxEvents = 10_000
  #nextPersonId = 1
  readonly #personByEmail = new Map<string, number>()

  addGateway(id: string, tenantId: string): void {
    this.gateways.set(id, { id, tenantId, name: id, secretHash: null, status: 'unknown', statusReason: null, lastSeenAt: null })
  }

  async listPeople(): Promise<PersonRow[]> {
    return [...this.people.values()].map((p) => ({ ...p }))
  }

  async listEndpoints(): Promise<EndpointRow[]> {
    return [...this.endpoints.values()].map((e) => ({ ...e }))
  }

  async listTeamsSessions(): Promise<TeamsSessionRow[]> {
    return [...this.sessions.values()].map((s) => ({ ...s }))
  }

  async listPersonSync(): Promise<PersonSyncRow[]> {
    return [...this.sync.values()].map((s) => ({ ...s, standBackKeys: [...s.standBackKeys] }))
  }

  async listGateways(): Promise<GatewayRow[]> {
    return [...this.gateways.values()].map((g) => ({ ...g }))
  }

  async updateEndpointState(gatewayId: string, data: EndpointData, seq: number): Promise<boolean> {
    const key = `${gatewayId}/${data.connectorId}/${data.endpointId}`
    const existing = this.endpoints.get(key)
    if (existing && existing.lastSeq >= seq) return false
    this.endpoints.set(key, { gatewayId, personId: existing?.personId ?? null, name: existing?.name ?? '', email: existing?.email ?? null, ...data, lastSeq: seq })
    return true
  }

  async resetEndpointSeqAbove(gatewayId: string, seq: number): Promise<number> {
    let count = 0
    for (const endpoint of this.endpoints.values()) {
      if (endpoint.gatewayId === gatewayId && endpoint.lastSeq > seq) {
        endpoint.lastSeq = -1
        count++
      }
    }
    return count
  }

  async upsertPerson(tenantId: string, email: string, displayName: string): Promise<PersonRow> {
    const lower = email.toLowerCase()
    const existingId = this.#personByEmail.get(`${tenantId}\n${lower}`)
    const existing = existingId === undefined ? undefined : this.people.get(existingId)
    if (existing) {
      if (displayName !== '') existing.displayName = displayName
      return { ...existing }
    }
    const row: PersonRow = { id: this.#nextPersonId++, tenantId, email: lower, displayName, graphUserId: null, syncMode: 'full', settingsOverride: null }
    this.people.set(row.id, row)
    this.#personByEmail.set(`${tenantId}\n${lower}`, row.id)
    return { ...row }
  }

  async setPersonGraphUser(personId: number, graphUserId: string | null): Promise<void> {
    const person = this.people.get(personId)
    if (person) person.graphUserId = graphUserId
  }

  async setPersonSyncMode(personId: number, mode: SyncMode): Promise<void> {
    const person = this.people.get(personId)
    if (person) person.syncMode = mode
  }

  async setPersonSettingsOverride(personId: number, override: Partial<SyncSettings> | null): Promise<void> {
    const person = this.people.get(personId)
    if (person) person.settingsOverride = override ? { ...override } : null
  }

  async upsertEndpointDirectory(e: { gatewayId: string; connectorId: string; endpointId: string; name: string; email: string | null; personId: number | null }): Promise<void> {
    const key = `${e.gatewayId}/${e.connectorId}/${e.endpointId}`
    const existing = this.endpoints.get(key)
    this.endpoints.set(key, existing
      ? { ...existing, name: e.name, email: e.email, personId: e.personId }
      : { gatewayId: e.gatewayId, connectorId: e.connectorId, endpointId: e.endpointId, personId: e.personId, name: e.name, email: e.email, state: 'idle', calls: 0, dnd: false, dndOwner: null, cause: '', changedAt: 0, lastSeq: -1 })
  }

  async upsertTeamsSession(s: TeamsSessionRow): Promise<void> {
    this.sessions.set(s.personId, { ...s })
  }

  async deleteTeamsSession(personId: number): Promise<void> {
    this.sessions.delete(personId)
  }

  async upsertPersonSync(s: PersonSyncRow): Promise<void> {
    this.sync.set(s.personId, { ...s, standBackKeys: [...s.standBackKeys] })
  }

  async appendEvent(e: EventLogEntry): Promise<void> {
    this.events.push(e)
    // Trim in chunks: dropping one entry per append would move the whole array every time.
    if (this.events.length > this.maxEvents * 1.25) this.events.splice(0, this.events.length - this.maxEvents)
  }
}
