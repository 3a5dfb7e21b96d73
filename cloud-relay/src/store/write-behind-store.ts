import type { Logger } from 'pino'
import type { EndpointData } from '#protocol/schemas.js'
import type { SyncSettings } from '../sync/mapping.js'
import type { SyncStore } from '../sync/sync-store.js'
import type { EventLogEntry, PersonSyncRow, RelayStore, SyncMode, TeamsSessionRow } from './relay-store.js'
import { isTransientStoreError } from './store-errors.js'

interface EndpointWrite {
  gatewayId: string
  data: EndpointData
  seq: number
}

/** One flush's rows, by table (the shape RelayStore.writeBatch takes). */
type Batch = Parameters<RelayStore['writeBatch']>[0]

/** What the writer has done, for health and tests. */
export interface WriteBehindStats {
  /** writeBatch calls, whole batches and isolation steps alike. */
  attempts: number
  /** Batches that failed because the database could not be reached (kept and retried). */
  transientFailures: number
  /** Rows the database refused, set aside and never retried. */
  quarantined: number
  /** Rows waiting to be written. */
  queued: number
}

/** A row the database refused: what it was and why, kept (the latest QUARANTINE_KEEP) for an operator. */
export interface QuarantinedRow {
  table: string
  row: string
  reason: string
  at: Date
}

const QUARANTINE_KEEP = 100
/** Retry delays after a lost database: from flushMs doubling up to this. */
const MAX_RETRY_DELAY_MS = 30_000
/** Event log lines kept while the database is away; the oldest go beyond this (counted and logged). */
const MAX_QUEUED_EVENTS = 100_000

/**
 * The sync engine's store with its hot-path writes batched: endpoint states, our Teams sessions, the engine's
 * per-person memory and the event log are queued, coalesced (latest state per row wins) and written every
 * `flushMs` in a few multi-row statements, instead of several round trips per decision. Rarely written data
 * (people, directory, settings) goes straight through.
 *
 * The price: a crash loses at most the last `flushMs` of these writes. The engine's model is rebuilt from the
 * gateways' snapshots and Graph on restart; what can be lost is a Teams session row written in that window
 * (the session then ends at its expiry instead of at once) and event log lines.
 *
 * One bad row must not stop everyone's writes: when a batch fails for a reason other than a lost connection, the
 * batch is split (table by table, then halves) until the rows the database refuses are found; those are logged
 * once with the reason and set aside, every other row is written. A lost connection keeps every row and retries
 * with a growing delay, never faster than the database can come back.
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
  /** Consecutive transient failures (the retry delay grows with them). */
  #failures = 0
  /** No scheduled flush before this time (epoch ms): the backoff after a lost database. */
  #notBefore = 0
  readonly #quarantine: QuarantinedRow[] = []
  readonly #stats = { attempts: 0, transientFailures: 0, quarantined: 0 }

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

  /**
   * Flushes until everything queued is written or `timeoutMs` passed (shutdown): a database that is briefly away is
   * waited for with backoff. Resolves true when nothing is left; otherwise logs what could not be written.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      await this.flush()
      const queued = this.#queuedRows()
      if (queued === 0) return true
      const wait = Math.min(this.#retryDelay(), deadline - Date.now())
      if (wait <= 0) {
        this.#log.error({ queued, timeoutMs }, 'writes not stored before shutdown: the database stayed unreachable; the gateways\' next snapshots restore endpoint states')
        return false
      }
      await new Promise((resolve) => setTimeout(resolve, wait))
    }
  }

  stats(): WriteBehindStats {
    return { ...this.#stats, queued: this.#queuedRows() }
  }

  /** The latest rows the database refused, newest last. */
  quarantined(): readonly QuarantinedRow[] {
    return [...this.#quarantine]
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
      let stored = -1
      try {
        stored = (await this.#inner.listEndpointSeq(gatewayId, data.connectorId, data.endpointId)) ?? -1
      } catch (err) {
        // The database is away: queue the state anyway; the write keeps the seq rule (WHERE last_seq < new seq).
        if (!isTransientStoreError(err)) throw err
      }
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
    const delay = Math.max(this.#flushMs, this.#notBefore - Date.now())
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#flushing = this.#flushing.then(() => this.#writeQueued())
    }, delay)
    this.#timer.unref()
  }

  #retryDelay(): number {
    return Math.min(MAX_RETRY_DELAY_MS, this.#flushMs * 2 ** Math.min(this.#failures, 16))
  }

  #queuedRows(): number {
    return this.#endpoints.size + this.#sessions.size + this.#personSync.size + this.#events.length
  }

  async #writeQueued(): Promise<void> {
    const sessions = [...this.#sessions.entries()]
    const batch: Batch = {
      endpoints: [...this.#endpoints.values()],
      sessionUpserts: sessions.flatMap(([, s]) => (s ? [s] : [])),
      sessionDeletes: sessions.flatMap(([personId, s]) => (s ? [] : [personId])),
      personSync: [...this.#personSync.values()],
      events: this.#events,
    }
    if (!this.#queuedRows()) return
    this.#endpoints = new Map()
    this.#sessions = new Map()
    this.#personSync = new Map()
    this.#events = []
    let left: Batch | undefined
    try {
      this.#stats.attempts++
      await this.#inner.writeBatch(batch)
    } catch (err) {
      left = isTransientStoreError(err) ? batch : await this.#isolate(batch)
      if (left) this.#onTransient(left, err)
    }
    if (!left && this.#failures) {
      this.#log.info({ failures: this.#failures }, 'the database is reachable again; queued writes stored')
      this.#failures = 0
      this.#notBefore = 0
    }
  }

  /**
   * Writes a batch the database refused, table by table and then in halves, so only the rows it refuses are left
   * out (bisecting finds k bad rows among n in about k·log2(n) statements). Returns what is left when the
   * database became unreachable meanwhile, to be retried whole.
   */
  async #isolate(batch: Batch): Promise<Batch | undefined> {
    const tables: Array<[keyof Batch, string]> = [['endpoints', 'endpoints'], ['sessionDeletes', 'teams_sessions'], ['sessionUpserts', 'teams_sessions'], ['personSync', 'person_sync'], ['events', 'event_log']]
    for (const [index, [field, table]] of tables.entries()) {
      const pending: unknown[][] = batch[field].length ? [batch[field] as unknown[]] : []
      while (pending.length) {
        const rows = pending.shift()!
        try {
          this.#stats.attempts++
          await this.#inner.writeBatch({ ...EMPTY, [field]: rows })
        } catch (err) {
          if (isTransientStoreError(err)) {
            const left: Batch = { ...EMPTY, [field]: [rows, ...pending].flat() }
            for (const [later] of tables.slice(index + 1)) (left[later] as unknown[]) = batch[later] as unknown[]
            return left
          }
          if (rows.length === 1) this.#setAside(table, rows[0], err)
          else pending.unshift(rows.slice(0, rows.length >> 1), rows.slice(rows.length >> 1))
        }
      }
    }
    return undefined
  }

  #setAside(table: string, row: unknown, err: unknown): void {
    const entry: QuarantinedRow = { table, row: describeRow(row), reason: errorText(err), at: new Date() }
    this.#stats.quarantined++
    this.#quarantine.push(entry)
    if (this.#quarantine.length > QUARANTINE_KEEP) this.#quarantine.shift()
    this.#log.error({ table, row: entry.row, reason: entry.reason, code: (err as { code?: unknown }).code }, 'a row the database refuses was set aside; the rest were written')
  }

  /** Puts rows back (newer queued values win) and retries after a growing delay; the database may be restarting. */
  #onTransient(left: Batch, err: unknown): void {
    for (const e of left.endpoints) {
      const k = key(e.gatewayId, e.data.connectorId, e.data.endpointId)
      if (!this.#endpoints.has(k)) this.#endpoints.set(k, e)
    }
    for (const personId of left.sessionDeletes) if (!this.#sessions.has(personId)) this.#sessions.set(personId, null)
    for (const s of left.sessionUpserts) if (!this.#sessions.has(s.personId)) this.#sessions.set(s.personId, s)
    for (const s of left.personSync) if (!this.#personSync.has(s.personId)) this.#personSync.set(s.personId, s)
    const events = [...left.events, ...this.#events]
    if (events.length > MAX_QUEUED_EVENTS) this.#log.warn({ dropped: events.length - MAX_QUEUED_EVENTS }, 'the database is away too long: the oldest event log lines were dropped')
    this.#events = events.slice(-MAX_QUEUED_EVENTS)
    this.#stats.transientFailures++
    this.#failures += 1
    const delay = this.#retryDelay()
    this.#notBefore = Date.now() + delay
    this.#log.error({ err: errorText(err), failures: this.#failures, queued: this.#queuedRows(), retryInMs: delay }, 'the database is not reachable; the queued writes are kept and retried with backoff')
    this.#schedule()
  }
}

const EMPTY: Batch = { endpoints: [], sessionUpserts: [], sessionDeletes: [], personSync: [], events: [] }

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 500)
}

/** A refused row in a log line: its identity and values, bounded. */
function describeRow(row: unknown): string {
  try {
    return JSON.stringify(row).slice(0, 1000)
  } catch {
    return String(row).slice(0, 1000)
  }
}

function key(gatewayId: string, connectorId: string, endpointId: string): string {
  return `${gatewayId}/${connectorId}/${endpointId}`
}
