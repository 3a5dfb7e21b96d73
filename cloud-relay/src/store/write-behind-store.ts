import type { Logger } from 'pino'
import type { EndpointData } from '../../../gateway/protocol/schemas.js'
import type { SyncSettings } from '../sync/mapping.js'
import type { SyncStore } from '../sync/sync-store.js'
import type { EventLogEntry, PersonSyncRow, RelayStore, SyncMode, TeamsSessionRow } from './relay-store.js'

interface EndpointWrite {
  gatewayId: string
  data: EndpointData
  seq: number
}

/**
 * The sync engine's store with its hot-path writes batched: endpoint states, our Teams sessions, the engine's
 * per-person memory and the event log are queued, coalesced (latest state per row wins) and written every
 * `flushMs` in a few multi-row statements, instead of several round trips per decision. Rarely written data
 * (people, directory, settings) goes straight through.
 *
 * The price: a crash loses at most the last `flushMs` of these writes. The engine's model is rebuilt from the
 * gateways' snapshots and Graph on restart; what can be lost is a Teams session row written in that window
 * (the session then ends at its expiry instead of at once) and event log lines.
 */
export class WriteBehindSyncStore implements SyncStore {
  readonly #inner: RelayStore
  readonly #flushMs: number
  readonly #log: Logger
  /** The highest seq per endpoint, so ordering is decided without a round trip. */
  readonly #lastSeq = new Map<string, number>()
  #endpoints = new Map<string, EndpointWrite>()
  #sessions = new Map<number, TeamsSessionRow | null>()
  #personSync = new Map<number, PersonSyncRow>()
  #events: EventLogEntry[] = []
  #timer: NodeJS.Timeout | undefined
  #flushing: Promise<void> = Promise.resolve()
  #failures = 0

  constructor(inner: RelayStore, options: { flushMs: number }, logger: Logger) {
    this.#inner = inner
    this.#flushMs = options.flushMs
    this.#log = logger
  }

  /** Writes everything queued and waits for it (shutdown, tests, before reads). */
  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#flushing = this.#flushing.then(() => this.#writeQueued())
    await this.#flushing
  }

  // ---- reads: flush first, so a read never misses what this process wrote -------------------------------------

  async listPeople(): ReturnType<RelayStore['listPeople']> {
    await this.flush()
    return this.#inner.listPeople()
  }

  async listEndpoints(): ReturnType<RelayStore['listEndpoints']> {
    await this.flush()
    const rows = await this.#inner.listEndpoints()
    for (const row of rows) this.#lastSeq.set(key(row.gatewayId, row.connectorId, row.endpointId), row.lastSeq)
    return rows
  }

  async listTeamsSessions(): ReturnType<RelayStore['listTeamsSessions']> {
    await this.flush()
    return this.#inner.listTeamsSessions()
  }

  async listPersonSync(): ReturnType<RelayStore['listPersonSync']> {
    await this.flush()
    return this.#inner.listPersonSync()
  }

  async listGateways(): ReturnType<RelayStore['listGateways']> {
    return this.#inner.listGateways()
  }

  // ---- hot-path writes: queued --------------------------------------------------------------------------------

  async updateEndpointState(gatewayId: string, data: EndpointData, seq: number): Promise<boolean> {
    const k = key(gatewayId, data.connectorId, data.endpointId)
    if (!this.#lastSeq.has(k)) {
      // First sight of this endpoint in this process: ask the database for its stored seq (once).
      await this.flush()
      const stored = (await this.#inner.listEndpointSeq(gatewayId, data.connectorId, data.endpointId)) ?? -1
      this.#lastSeq.set(k, stored)
    }
    if ((this.#lastSeq.get(k) ?? -1) >= seq) return false
    this.#lastSeq.set(k, seq)
    this.#endpoints.set(k, { gatewayId, data, seq })
    this.#schedule()
    return true
  }

  async upsertTeamsSession(s: TeamsSessionRow): Promise<void> {
    this.#sessions.set(s.personId, { ...s })
    this.#schedule()
  }

  async deleteTeamsSession(personId: number): Promise<void> {
    this.#sessions.set(personId, null)
    this.#schedule()
  }

  async upsertPersonSync(s: PersonSyncRow): Promise<void> {
    this.#personSync.set(s.personId, { ...s, standBackKeys: [...s.standBackKeys] })
    this.#schedule()
  }

  async appendEvent(e: EventLogEntry): Promise<void> {
    this.#events.push({ ...e, at: e.at ?? new Date() })
    this.#schedule()
  }

  // ---- rare writes: straight through (after what is queued, to keep order) -----------------------------------

  async resetEndpointSeqAbove(gatewayId: string, seq: number): Promise<number> {
    await this.flush()
    for (const [k, value] of this.#lastSeq) if (k.startsWith(`${gatewayId}/`) && value > seq) this.#lastSeq.set(k, -1)
    return this.#inner.resetEndpointSeqAbove(gatewayId, seq)
  }

  async upsertPerson(tenantId: string, email: string, displayName: string): ReturnType<RelayStore['upsertPerson']> {
    return this.#inner.upsertPerson(tenantId, email, displayName)
  }

  async setPersonGraphUser(personId: number, graphUserId: string | null): Promise<void> {
    return this.#inner.setPersonGraphUser(personId, graphUserId)
  }

  async upsertEndpointDirectory(e: Parameters<RelayStore['upsertEndpointDirectory']>[0]): Promise<void> {
    await this.flush()
    return this.#inner.upsertEndpointDirectory(e)
  }

  async setPersonSyncMode(personId: number, mode: SyncMode): Promise<void> {
    return this.#inner.setPersonSyncMode(personId, mode)
  }

  async setPersonSettingsOverride(personId: number, override: Partial<SyncSettings> | null): Promise<void> {
    return this.#inner.setPersonSettingsOverride(personId, override)
  }

  // ---- flushing -----------------------------------------------------------------------------------------------

  #schedule(): void {
    if (this.#timer) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#flushing = this.#flushing.then(() => this.#writeQueued())
    }, this.#flushMs)
    this.#timer.unref()
  }

  async #writeQueued(): Promise<void> {
    const endpoints = [...this.#endpoints.values()]
    const sessions = [...this.#sessions.entries()]
    const personSync = [...this.#personSync.values()]
    const events = this.#events
    if (!endpoints.length && !sessions.length && !personSync.length && !events.length) return
    this.#endpoints = new Map()
    this.#sessions = new Map()
    this.#personSync = new Map()
    this.#events = []
    try {
      await this.#inner.writeBatch({
        endpoints,
        sessionUpserts: sessions.flatMap(([, s]) => (s ? [s] : [])),
        sessionDeletes: sessions.flatMap(([personId, s]) => (s ? [] : [personId])),
        personSync,
        events,
      })
      this.#failures = 0
    } catch (err) {
      // Put everything back (newer queued values win) and try again later; the database may be restarting.
      for (const e of endpoints) {
        const k = key(e.gatewayId, e.data.connectorId, e.data.endpointId)
        if (!this.#endpoints.has(k)) this.#endpoints.set(k, e)
      }
      for (const [personId, s] of sessions) if (!this.#sessions.has(personId)) this.#sessions.set(personId, s)
      for (const s of personSync) if (!this.#personSync.has(s.personId)) this.#personSync.set(s.personId, s)
      this.#events = [...events, ...this.#events].slice(-100_000)
      this.#failures += 1
      this.#log.error({ err: (err as Error).message, failures: this.#failures, queued: this.#events.length }, 'writing to the store failed; will retry')
      this.#schedule()
    }
  }
}

function key(gatewayId: string, connectorId: string, endpointId: string): string {
  return `${gatewayId}/${connectorId}/${endpointId}`
}
