import type { Logger } from 'pino'
import type { DirectoryData, EndpointData, ResultData, SetDndData } from '#protocol/schemas.js'
import type { Clock } from '#kernel/clock.js'
import { backoffDelay } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import { GraphApiError, type GraphPresenceApi, type PresenceReading, type SettablePresence } from '../graph/types.js'
import { PresenceWriter, type PresenceWriterOptions, type WriteOutcome } from '../graph/presence-writer.js'
import type { EndpointRow, EventLogEntry, PersonRow, SyncMode, TeamsSessionRow } from '../store/relay-store.js'
import { decide, dndCommandFor, type Decision, type EndpointFacts, type PersonFacts } from './decide.js'
import type { PersonExplainer, PersonExplanation } from './explanation.js'
import { effectiveSettings, type SyncSettings } from './mapping.js'
import type { SyncStore } from './sync-store.js'

export interface SyncTimings {
  /** Our Teams session's expirationDuration; it always has one, so a dead relay cannot leave it behind. */
  sessionExpirationMinutes: number
  /** Refresh our session this long after the last write: before Graph's 5-minute keep-alive timeout. */
  sessionRefreshMs: number
  /** After we clear our session, a Teams reading equal to it is still attributed to us for this long. */
  echoHoldMs: number
  /** A gateway offline for longer than this has its extensions treated as idle (our Teams sessions cleared). */
  gatewayOfflineGraceMs: number
  /** A failed write is retried after backoff starting here. */
  retryBaseMs: number
}

export const DEFAULT_SYNC_TIMINGS: SyncTimings = {
  sessionExpirationMinutes: 15,
  sessionRefreshMs: 4 * 60_000,
  echoHoldMs: 15_000,
  gatewayOfflineGraceMs: 120_000,
  retryBaseMs: 1000,
}

export interface PersonSyncChange {
  syncMode?: SyncMode
  /** The person's own mapping settings; null or {} removes them (the tenant's apply). */
  settingsOverride?: Partial<SyncSettings> | null
}

export interface SyncEngineDeps {
  store: SyncStore
  logger: Logger
  clock: Clock
  counters: Counters
  /** The relay-wide defaults. */
  settings: SyncSettings
  /** A tenant's settings (defaults merged with the tenant's own), when tenants differ. */
  settingsFor?: (tenantId: string) => SyncSettings
  timings: SyncTimings
  /** The tenant's Graph access, or undefined when the tenant has no Graph credentials. */
  graphFor(tenantId: string): GraphPresenceApi | undefined
  /** Sends a command to a gateway and resolves with its result (rejects on timeout or when it cannot be sent). */
  sendSetDnd(gatewayId: string, data: SetDndData): Promise<ResultData>
  tenantOf(gatewayId: string): string | undefined
  /** Called with each reconcile's duration in ms (the decision benchmark). */
  observeReconcile?: (ms: number) => void
  /** Limits of each tenant's presence writer (rate, concurrency, batch size); defaults below Graph's limits. */
  presenceWriter?: Partial<PresenceWriterOptions>
  /**
   * The imported directory's answer for a PBX directory entry (manual mapping, or auto-mapping through the tenant's
   * imported Entra users, without Graph requests): a person, null for nobody, undefined when the tenant has neither
   * (then the entry's e-mail makes a person and Graph resolves it, as before user import existed).
   */
  resolveDirectoryEntry?: (tenantId: string, gatewayId: string, connectorId: string, entry: { endpointId: string; email: string | null }) => Promise<PersonRow | null | undefined>
  /** At most this many people per tenant are created from PBX directory e-mails; undefined: no limit. */
  maxPeoplePerTenant?: number | undefined
}

/** A Teams write handed to the tenant's writer, kept until its outcome is applied. */
type SubmittedWrite =
  | { ticket: number; kind: 'set'; presence: SettablePresence; minutes: number; reason: string; gatewayId: string | null }
  | { ticket: number; kind: 'clear' }

interface EndpointModel extends EndpointRow {
  /** Its gateway has been offline past the grace period: treated as idle, no commands sent. */
  stale: boolean
}

interface PersonModel {
  row: PersonRow
  endpoints: Map<string, EndpointModel>
  teams: { availability: string; activity: string; at: number } | undefined
  teamsTrigger: boolean
  teamsTriggerReason: string | null
  /** Endpoints where the person switched off a DND we set: left alone until the reason for it ends. */
  standBack: Set<string>
  /** The last decision, for stand-back detection and the "why" view. */
  decision: Decision | undefined
  session: TeamsSessionRow | undefined
  lastCleared: { presence: SettablePresence; at: number } | undefined
  pending: Map<string, { dnd: boolean; sentAt: number }>
  retryAt: number
  failures: number
  /** Teams writes handed to the writer and not yet answered, by ticket; the newest is what we want. */
  writes: Map<number, SubmittedWrite>
  latestWrite: number | undefined
  /** Writer outcomes waiting to be applied inside the person's reconcile. */
  outcomes: WriteOutcome[]
}

interface GatewayModel {
  online: boolean
  offlineSince: number | undefined
  staled: boolean
}

/** How long a sent DND command counts as in flight before the same command may be sent again. */
const PENDING_COMMAND_MS = 15_000

const endpointKey = (gatewayId: string, connectorId: string, endpointId: string) => `${gatewayId}/${connectorId}/${endpointId}`
const clock24 = (ms: number) => `${new Date(ms).toISOString().slice(11, 19)} UTC`

/**
 * Desired state, then reconcile (DESIGN §6). Events only update the model and schedule the person; a per-person
 * reconcile computes what each side should show and sends the difference. We only clear what we set.
 */
export class SyncEngine implements PersonExplainer {
  readonly #deps: SyncEngineDeps
  readonly #log: Logger
  readonly #people = new Map<number, PersonModel>()
  readonly #peopleLimitWarned = new Map<string, number>()
  readonly #personByEndpoint = new Map<string, number>()
  /** Graph user id (lower case) → person id, for presence readings. */
  readonly #personByGraphId = new Map<string, number>()
  /** Endpoint states for extensions not (yet) mapped to a person. */
  readonly #unmapped = new Map<string, EndpointModel>()
  readonly #gateways = new Map<string, GatewayModel>()
  readonly #running = new Set<number>()
  readonly #dirty = new Set<number>()
  readonly #idle = new Set<() => void>()
  readonly #decisionListeners = new Set<(entry: EventLogEntry) => void>()
  readonly #writers = new Map<string, PresenceWriter>()
  #tickTimer: ReturnType<Clock['setTimeout']> | undefined
  #stopped = false

  constructor(deps: SyncEngineDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'sync' })
  }

  async load(): Promise<void> {
    const { store } = this.#deps
    const [people, endpoints, sessions, syncRows] = await Promise.all([store.listPeople(), store.listEndpoints(), store.listTeamsSessions(), store.listPersonSync()])
    for (const row of people) {
      this.#people.set(row.id, this.#newPerson(row))
      if (row.graphUserId) this.#personByGraphId.set(row.graphUserId.toLowerCase(), row.id)
    }
    for (const endpoint of endpoints) {
      const model: EndpointModel = { ...endpoint, stale: false }
      const key = endpointKey(endpoint.gatewayId, endpoint.connectorId, endpoint.endpointId)
      const person = endpoint.personId === null ? undefined : this.#people.get(endpoint.personId)
      if (person) {
        person.endpoints.set(key, model)
        this.#personByEndpoint.set(key, person.row.id)
      } else this.#unmapped.set(key, model)
    }
    for (const session of sessions) {
      const person = this.#people.get(session.personId)
      if (person) person.session = session
    }
    for (const row of syncRows) {
      const person = this.#people.get(row.personId)
      if (!person) continue
      person.teamsTrigger = row.teamsTrigger
      person.teamsTriggerReason = row.teamsTriggerReason
      person.standBack = new Set(row.standBackKeys)
      if (row.teamsAvailability && row.teamsActivity) {
        person.teams = { availability: row.teamsAvailability, activity: row.teamsActivity, at: row.teamsObservedAt?.getTime() ?? 0 }
      }
    }
    for (const gateway of await store.listGateways()) {
      // Until a gateway says otherwise, assume it is online: its snapshot on connect corrects everything.
      this.#gateways.set(gateway.id, { online: true, offlineSince: undefined, staled: false })
    }
    this.#log.info({ people: this.#people.size, endpoints: endpoints.length, sessions: sessions.length }, 'sync state loaded')
  }

  start(): void {
    this.#stopped = false
    for (const id of this.#people.keys()) this.schedule(id)
    this.#scheduleTick()
  }

  stop(): void {
    this.#stopped = true
    this.#deps.clock.clearTimeout(this.#tickTimer)
    for (const writer of this.#writers.values()) writer.stop()
    this.#writers.clear()
  }

  /**
   * Resolves when no reconcile is running or queued and no Teams write is in flight or sendable (tests and
   * orderly shutdown). Writes held back by Retry-After or the rate limit do not count.
   */
  async idle(): Promise<void> {
    for (;;) {
      if (this.#running.size > 0 || this.#dirty.size > 0) await new Promise<void>((resolve) => this.#idle.add(resolve))
      const busy = [...this.#writers.values()].filter((w) => !w.isIdle)
      if (busy.length === 0) {
        // Outcomes delivered just now schedule reconciles; give them one turn to register.
        await Promise.resolve()
        if (this.#running.size === 0 && this.#dirty.size === 0) return
        continue
      }
      await Promise.all(busy.map((w) => w.idle()))
    }
  }

  /** The tenant's presence writer (created on first use), for its statistics. */
  presenceWriter(tenantId: string): PresenceWriter | undefined {
    return this.#writerFor(tenantId)
  }

  /** People with a Graph user id in a tenant: what the Teams poller reads. */
  graphUserIds(tenantId: string): string[] {
    const ids: string[] = []
    for (const person of this.#people.values()) {
      if (person.row.tenantId === tenantId && person.row.graphUserId && person.row.syncMode !== 'off') ids.push(person.row.graphUserId)
    }
    return ids
  }

  person(id: number): Readonly<PersonModel> | undefined {
    return this.#people.get(id)
  }

  listPeople(tenantId?: string): ReturnType<PersonExplainer['listPeople']> {
    return [...this.#people.values()]
      .filter((p) => tenantId === undefined || p.row.tenantId === tenantId)
      .map((p) => ({ id: p.row.id, tenantId: p.row.tenantId, email: p.row.email, displayName: p.row.displayName, syncMode: p.row.syncMode }))
  }

  /** "Why am I shown as DND?": both sides as we see them, what we set, and the decision in words. */
  explain(personId: number): PersonExplanation | undefined {
    const person = this.#people.get(personId)
    if (!person) return undefined
    const now = this.#deps.clock.now()
    const decision = decide(this.#facts(person, now))
    const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null)
    const who = person.row.displayName || person.row.email
    const summary: string[] = []
    if (person.row.syncMode === 'off') summary.push(`Sync is off for ${who}: we set nothing on either side.`)
    if (person.session) {
      summary.push(`Teams shows our ${person.session.availability}/${person.session.activity} for ${who} because ${person.session.reason}; it expires ${person.session.expiresAt.toISOString()} unless refreshed.`)
    } else {
      summary.push(`We have no presence session in Teams for ${who}; anything Teams shows comes from the person's own Teams clients or status.`)
    }
    for (const [key, endpoint] of person.endpoints) {
      const d = decision.endpoints.get(key)
      const label = `Extension ${endpoint.endpointId} (${endpoint.gatewayId}/${endpoint.connectorId})`
      if (endpoint.stale) summary.push(`${label}: its gateway is offline, so its state is unknown and not counted.`)
      else if (endpoint.dnd && endpoint.dndOwner === 'user') summary.push(`${label}: DND is on, set by the person; we never clear it.`)
      else if (endpoint.dnd) summary.push(`${label}: DND is on, set by us because ${d?.reason ?? 'of an earlier decision'}; released when that ends.`)
      else if (d?.wantDnd) summary.push(`${label}: DND is about to be set because ${d.reason}.`)
      else summary.push(`${label}: ${endpoint.state}, DND off${person.standBack.has(key) ? ' (the person switched our DND off; we stand back until the reason ends)' : ''}.`)
    }
    if (!person.row.graphUserId) summary.push(`${person.row.email} is not matched to a Microsoft 365 user, so Teams is not synced.`)
    return {
      person: { id: person.row.id, tenantId: person.row.tenantId, email: person.row.email, displayName: person.row.displayName, syncMode: person.row.syncMode, graphUserId: person.row.graphUserId },
      teams: {
        observed: person.teams ? { availability: person.teams.availability, activity: person.teams.activity, at: new Date(person.teams.at).toISOString() } : null,
        ourSession: person.session ? { availability: person.session.availability, activity: person.session.activity, setAt: person.session.setAt.toISOString(), expiresAt: person.session.expiresAt.toISOString(), reason: person.session.reason } : null,
        wantsPbxDnd: decision.teamsTrigger,
        reason: decision.teamsTriggerReason,
        standingBack: person.standBack.size > 0,
      },
      endpoints: [...person.endpoints.values()].map((e) => ({
        gatewayId: e.gatewayId, connectorId: e.connectorId, endpointId: e.endpointId, name: e.name, state: e.state, dnd: e.dnd, dndOwner: e.dndOwner, cause: e.cause, changedAt: iso(e.changedAt), stale: e.stale,
      })),
      summary,
    }
  }

  /**
   * An admin changes a person's sync mode or own settings. Takes effect at once (the person is re-decided) and is
   * logged with who did it. Returns false for an unknown person.
   */
  async updatePerson(personId: number, change: PersonSyncChange, by: string): Promise<boolean> {
    const person = this.#people.get(personId)
    if (!person) return false
    const said: string[] = []
    if (change.syncMode !== undefined && change.syncMode !== person.row.syncMode) {
      await this.#deps.store.setPersonSyncMode(personId, change.syncMode)
      person.row = { ...person.row, syncMode: change.syncMode }
      said.push(`sync mode ${change.syncMode}`)
    }
    if (change.settingsOverride !== undefined) {
      const override = change.settingsOverride && Object.keys(change.settingsOverride).length ? change.settingsOverride : null
      await this.#deps.store.setPersonSettingsOverride(personId, override)
      person.row = { ...person.row, settingsOverride: override }
      said.push(override ? `own settings ${JSON.stringify(override)}` : 'tenant settings (own settings removed)')
    }
    if (said.length) {
      await this.#event(person, { kind: 'person.settings', message: `${by} set ${said.join(' and ')} for ${this.#who(person)}` })
      this.schedule(personId)
    }
    return true
  }

  personByEmail(tenantId: string, email: string): Readonly<PersonModel> | undefined {
    const lower = email.toLowerCase()
    for (const person of this.#people.values()) if (person.row.tenantId === tenantId && person.row.email === lower) return person
    return undefined
  }

  // ---- inputs ------------------------------------------------------------------------------------------------

  async onEndpoint(gatewayId: string, data: EndpointData, seq: number): Promise<void> {
    const applied = await this.#deps.store.updateEndpointState(gatewayId, data, seq)
    if (!applied) {
      this.#deps.counters.inc('sync.endpoint_stale_events')
      return
    }
    const key = endpointKey(gatewayId, data.connectorId, data.endpointId)
    const personId = this.#personByEndpoint.get(key)
    const person = personId === undefined ? undefined : this.#people.get(personId)
    const previous = person?.endpoints.get(key) ?? this.#unmapped.get(key)
    if (previous && previous.lastSeq >= seq) return
    const model: EndpointModel = {
      gatewayId,
      personId: person?.row.id ?? null,
      name: previous?.name ?? '',
      email: previous?.email ?? null,
      ...data,
      lastSeq: seq,
      stale: false,
    }
    if (!person) {
      this.#unmapped.set(key, model)
      return
    }
    person.endpoints.set(key, model)
    const pending = person.pending.get(key)
    if (pending && pending.dnd === data.dnd) person.pending.delete(key)
    if (!previous || previous.state !== data.state || previous.dnd !== data.dnd || previous.dndOwner !== data.dndOwner) {
      const dnd = data.dnd ? `DND on (${data.dndOwner === 'gateway' ? 'ours' : "the person's"})` : 'DND off'
      await this.#event(person, {
        kind: 'pbx.observed',
        gatewayId,
        message: `Extension ${data.endpointId} (${gatewayId}/${data.connectorId}) ${data.state}, ${dnd}, at ${clock24(data.changedAt)} (${data.cause})`,
        data: { endpointId: data.endpointId, state: data.state, dnd: data.dnd, dndOwner: data.dndOwner, seq },
      }, 'debug')
    }
    if (previous?.dnd && previous.dndOwner === 'gateway' && !data.dnd && data.cause === 'dnd.user' && person.decision?.endpoints.get(key)?.wantDnd) {
      person.standBack.add(key)
      await this.#persistSync(person)
      await this.#event(person, {
        kind: 'pbx.dnd.stand_back',
        gatewayId,
        message: `${person.row.displayName || person.row.email} switched off the DND we set on ${data.endpointId} at ${clock24(data.changedAt)}; we leave it off until the reason for it ends`,
      })
    }
    this.schedule(person.row.id)
  }

  /** A PBX user list: map extensions to people by e-mail and resolve people to Graph users. */
  async onDirectory(gatewayId: string, data: DirectoryData): Promise<void> {
    const tenantId = this.#deps.tenantOf(gatewayId)
    if (!tenantId) return
    const graph = this.#deps.graphFor(tenantId)
    for (const entry of data.entries) {
      const key = endpointKey(gatewayId, data.connectorId, entry.endpointId)
      const email = entry.email?.trim().toLowerCase() || null
      let person: PersonModel | undefined
      const resolved = await this.#deps.resolveDirectoryEntry?.(tenantId, gatewayId, data.connectorId, { endpointId: entry.endpointId, email })
      if (resolved !== undefined) {
        if (resolved) {
          person = this.#people.get(resolved.id)
          if (!person) {
            person = this.#newPerson(resolved)
            this.#people.set(resolved.id, person)
          } else person.row = { ...person.row, displayName: resolved.displayName, graphUserId: resolved.graphUserId }
          if (resolved.graphUserId) this.#personByGraphId.set(resolved.graphUserId.toLowerCase(), resolved.id)
        }
      } else if (email && this.#deps.maxPeoplePerTenant !== undefined && !this.personByEmail(tenantId, email) && !this.#mayCreatePerson(tenantId, gatewayId)) {
        // Over the tenant's ceiling: the extension is recorded without a person.
      } else if (email) {
        const row = await this.#deps.store.upsertPerson(tenantId, email, entry.name)
        person = this.#people.get(row.id)
        if (!person) {
          person = this.#newPerson(row)
          this.#people.set(row.id, person)
        } else person.row = { ...person.row, displayName: row.displayName }
        if (!person.row.graphUserId && graph) await this.#resolveGraphUser(person, graph)
      }
      await this.#deps.store.upsertEndpointDirectory({ gatewayId, connectorId: data.connectorId, endpointId: entry.endpointId, name: entry.name, email, personId: person?.row.id ?? null })
      // Move the endpoint's state between people if the mapping changed.
      const oldPersonId = this.#personByEndpoint.get(key)
      const oldPerson = oldPersonId === undefined ? undefined : this.#people.get(oldPersonId)
      const state = oldPerson?.endpoints.get(key) ?? this.#unmapped.get(key)
      const model: EndpointModel = state
        ? { ...state, name: entry.name, email, personId: person?.row.id ?? null }
        : { gatewayId, connectorId: data.connectorId, endpointId: entry.endpointId, personId: person?.row.id ?? null, name: entry.name, email, state: 'idle', calls: 0, dnd: false, dndOwner: null, changedAt: 0, cause: 'directory', lastSeq: -1, stale: false }
      if (oldPerson && oldPerson !== person) {
        oldPerson.endpoints.delete(key)
        this.schedule(oldPerson.row.id)
      }
      if (person) {
        this.#unmapped.delete(key)
        person.endpoints.set(key, model)
        this.#personByEndpoint.set(key, person.row.id)
        this.schedule(person.row.id)
      } else {
        this.#personByEndpoint.delete(key)
        this.#unmapped.set(key, model)
      }
    }
  }

  /**
   * Whether a PBX directory may create one more person in the tenant: a gateway must not fill a tenant (and the
   * relay's memory and database) with people, whatever its directory says. Said once per tenant per 10 minutes.
   */
  #mayCreatePerson(tenantId: string, gatewayId: string): boolean {
    const max = this.#deps.maxPeoplePerTenant
    if (max === undefined) return true
    let count = 0
    for (const person of this.#people.values()) if (person.row.tenantId === tenantId) count++
    if (count < max) return true
    this.#deps.counters.inc('sync.people_limit_reached')
    const last = this.#peopleLimitWarned.get(tenantId)
    if (last === undefined || this.#deps.clock.now() - last > 10 * 60_000) {
      this.#peopleLimitWarned.set(tenantId, this.#deps.clock.now())
      this.#log.warn({ tenant: tenantId, gatewayId, limit: max }, `tenant ${tenantId} has ${count} people, its limit for people made from PBX directories (sync.maxPeoplePerTenant ${max}); further extensions of gateway ${gatewayId} are recorded without a person. Raise the limit or import users from Entra ID`)
    }
    return false
  }

  /** The gateway's sequence restarted (see RelayStore.resetEndpointSeqAbove): forget stored sequence numbers. */
  async resetGatewaySeq(gatewayId: string, seq: number): Promise<void> {
    const reset = await this.#deps.store.resetEndpointSeqAbove(gatewayId, seq)
    if (reset === 0) return
    for (const endpoint of [...this.#unmapped.values(), ...[...this.#people.values()].flatMap((p) => [...p.endpoints.values()])]) {
      if (endpoint.gatewayId === gatewayId && endpoint.lastSeq > seq) endpoint.lastSeq = -1
    }
    this.#log.warn({ gatewayId, seq, endpoints: reset }, 'gateway sequence restarted (its state was reset); accepting its new numbering')
  }

  onGatewayStatus(gatewayId: string, online: boolean, reason: string | undefined): void {
    const now = this.#deps.clock.now()
    const gateway = this.#gateways.get(gatewayId) ?? { online, offlineSince: undefined, staled: false }
    this.#gateways.set(gatewayId, gateway)
    if (online) {
      const wasStaled = gateway.staled
      gateway.online = true
      gateway.offlineSince = undefined
      gateway.staled = false
      if (wasStaled) {
        // Its snapshot follows; until then keep treating the old states as unknown-idle (already cleared).
        for (const person of this.#peopleOfGateway(gatewayId)) {
          for (const endpoint of person.endpoints.values()) if (endpoint.gatewayId === gatewayId) endpoint.stale = false
        }
      }
      return
    }
    if (!gateway.online && gateway.offlineSince !== undefined) return
    gateway.online = false
    gateway.offlineSince = now
    // A gateway that said goodbye (shutdown, update) is routine; a lost connection (last will) is worth a warning.
    this.#log[reason === 'connection lost' ? 'warn' : 'info']({ gatewayId, reason }, 'gateway offline; grace period started')
    void this.#deps.store.appendEvent({
      tenantId: this.#deps.tenantOf(gatewayId) ?? null,
      gatewayId,
      kind: 'gateway.offline',
      message: `Gateway ${gatewayId} went offline at ${clock24(now)} (${reason ?? 'no reason given'}); its people's Teams state is kept for ${Math.round(this.#deps.timings.gatewayOfflineGraceMs / 1000)} s`,
    }).catch(() => undefined)
  }

  /** Presence readings from Graph (polling now; change notifications later). */
  async onTeamsPresence(tenantId: string, readings: readonly PresenceReading[]): Promise<void> {
    const now = this.#deps.clock.now()
    for (const reading of readings) {
      const personId = this.#personByGraphId.get(reading.userId.toLowerCase())
      const person = personId === undefined ? undefined : this.#people.get(personId)
      if (!person || person.row.tenantId !== tenantId) continue
      const before = person.teams
      person.teams = { availability: reading.availability, activity: reading.activity, at: now }
      if (!before || before.availability !== reading.availability || before.activity !== reading.activity) {
        await this.#event(person, {
          kind: 'teams.observed',
          message: `Teams shows ${this.#who(person)} as ${reading.availability}/${reading.activity} at ${clock24(now)}`,
          data: { availability: reading.availability, activity: reading.activity },
        }, 'debug')
        this.schedule(person.row.id)
      }
    }
  }

  // ---- reconcile ---------------------------------------------------------------------------------------------

  schedule(personId: number): void {
    if (this.#stopped) return
    if (this.#running.has(personId)) {
      this.#dirty.add(personId)
      return
    }
    this.#running.add(personId)
    void this.#runPerson(personId)
  }

  async #runPerson(personId: number): Promise<void> {
    try {
      do {
        this.#dirty.delete(personId)
        const person = this.#people.get(personId)
        if (person) {
          const started = performance.now()
          await this.#reconcile(person)
          this.#deps.observeReconcile?.(performance.now() - started)
        }
      } while (this.#dirty.has(personId) && !this.#stopped)
    } catch (err) {
      this.#log.error({ personId, err: (err as Error).message }, 'reconcile failed')
    } finally {
      this.#running.delete(personId)
      if (this.#running.size === 0 && this.#dirty.size === 0) for (const resolve of this.#idle) resolve()
      if (this.#running.size === 0) this.#idle.clear()
    }
  }

  async #reconcile(person: PersonModel): Promise<void> {
    const now = this.#deps.clock.now()
    const facts = this.#facts(person, now)
    const decision = decide(facts)
    person.decision = decision
    await this.#recordDecision(person, decision, now)
    await this.#applyWriteOutcomes(person, now)
    // A failing Graph write backs off the Teams side only; the PBX side goes on.
    if (now >= person.retryAt) this.#reconcileTeams(person, decision, now)
    this.#reconcilePbx(person, facts, decision, now)
  }

  #facts(person: PersonModel, now: number): PersonFacts {
    const endpoints: EndpointFacts[] = []
    for (const [key, e] of person.endpoints) {
      endpoints.push({ key, endpointId: e.endpointId, state: e.state, dnd: e.dnd, dndOwner: e.dndOwner, cause: e.cause, stale: e.stale, known: e.lastSeq >= 0 })
    }
    const ours = person.session ? ({ availability: person.session.availability, activity: person.session.activity } as SettablePresence) : undefined
    const recentlyCleared = person.lastCleared && now - person.lastCleared.at < this.#deps.timings.echoHoldMs ? person.lastCleared.presence : undefined
    return {
      syncMode: person.row.syncMode,
      settings: effectiveSettings(this.#deps.settingsFor?.(person.row.tenantId) ?? this.#deps.settings, person.row.settingsOverride),
      endpoints,
      teams: person.teams,
      previousTrigger: { trigger: person.teamsTrigger, reason: person.teamsTriggerReason },
      ourSession: ours,
      recentlyCleared,
      standBack: person.standBack,
    }
  }

  /** Remembers the Teams conclusion and ends stand-backs whose reason is gone; logs real transitions. */
  async #recordDecision(person: PersonModel, decision: Decision, now: number): Promise<void> {
    let changed = false
    for (const key of person.standBack) {
      if (!decision.endpoints.get(key)?.wantedIgnoringStandBack) {
        person.standBack.delete(key)
        changed = true
      }
    }
    const was = person.teamsTrigger
    if (decision.teamsTrigger !== person.teamsTrigger || decision.teamsTriggerReason !== person.teamsTriggerReason) {
      person.teamsTrigger = decision.teamsTrigger
      person.teamsTriggerReason = decision.teamsTriggerReason
      changed = true
    }
    if (changed) await this.#persistSync(person)
    if (was !== decision.teamsTrigger) {
      const observed = person.teams
      await this.#event(person, {
        kind: decision.teamsTrigger ? 'teams.trigger.on' : 'teams.trigger.off',
        message: decision.teamsTrigger
          ? `${decision.teamsTriggerReason} observed at ${clock24(observed?.at ?? now)}: PBX DND wanted for ${this.#who(person)}`
          : `${decision.teamsTriggerReason ?? 'No Teams presence'} observed at ${clock24(observed?.at ?? now)}: no PBX DND wanted for ${this.#who(person)}`,
        data: { availability: observed?.availability, activity: observed?.activity },
      })
    }
  }

  /**
   * Hands the wanted Teams session to the tenant's writer without waiting for Graph: a newer decision for the
   * person then replaces a write still queued. The writer's answer comes back as an outcome, applied by
   * #applyWriteOutcomes inside the person's next reconcile.
   */
  #reconcileTeams(person: PersonModel, decision: Decision, now: number): void {
    const userId = person.row.graphUserId
    const writer = userId ? this.#writerFor(person.row.tenantId) : undefined
    if (!writer || !userId) return
    const busyEndpoint = decision.teamsSession?.because
    const wanted = decision.teamsSession?.presence ?? ({ availability: 'DoNotDisturb', activity: 'Presenting' } as SettablePresence)
    const session = person.session
    const latest = person.latestWrite === undefined ? undefined : person.writes.get(person.latestWrite)
    const believed = session
      ? { kind: 'set' as const, presence: { availability: session.availability, activity: session.activity } as SettablePresence, expirationMinutes: this.#deps.timings.sessionExpirationMinutes }
      : { kind: 'clear' as const }
    if (busyEndpoint) {
      const samePresence = session !== undefined && session.availability === wanted.availability && session.activity === wanted.activity
      if (latest) {
        // Already on its way.
        if (latest.kind === 'set' && latest.presence.availability === wanted.availability && latest.presence.activity === wanted.activity) return
      } else if (samePresence && now - session.refreshedAt.getTime() < this.#deps.timings.sessionRefreshMs) return
      const minutes = this.#deps.timings.sessionExpirationMinutes
      const endpoint = person.endpoints.get(busyEndpoint.key)
      const where = endpoint ? `${endpoint.gatewayId}/${endpoint.connectorId}` : busyEndpoint.key
      const reason = `extension ${busyEndpoint.endpointId} on ${where} is ${busyEndpoint.state} (${busyEndpoint.cause}) since ${clock24(endpoint?.changedAt || now)}`
      // Same presence and nothing else pending: a keep-alive, sent although Graph has it already.
      const ticket = writer.submit(userId, { kind: 'set', presence: wanted, expirationMinutes: minutes }, { refresh: samePresence && !latest, believed })
      person.writes.set(ticket, { ticket, kind: 'set', presence: wanted, minutes, reason, gatewayId: endpoint?.gatewayId ?? null })
      person.latestWrite = ticket
      return
    }
    if (latest ? latest.kind === 'clear' : !session) return
    const ticket = writer.submit(userId, { kind: 'clear' }, { believed })
    person.writes.set(ticket, { ticket, kind: 'clear' })
    person.latestWrite = ticket
  }

  /** Applies what Graph answered: the session row, events, counters, and back-off on failure. */
  async #applyWriteOutcomes(person: PersonModel, now: number): Promise<void> {
    while (person.outcomes.length > 0) {
      const outcome = person.outcomes.shift() as WriteOutcome
      const write = person.writes.get(outcome.ticket)
      person.writes.delete(outcome.ticket)
      if (person.latestWrite === outcome.ticket) person.latestWrite = undefined
      if (!write) continue
      switch (outcome.result) {
        case 'set': {
          if (write.kind !== 'set') break
          const session = person.session
          const samePresence = session !== undefined && session.availability === write.presence.availability && session.activity === write.presence.activity
          const expiresAt = new Date(now + write.minutes * 60_000)
          const row: TeamsSessionRow = { personId: person.row.id, ...write.presence, setAt: samePresence ? session.setAt : new Date(now), refreshedAt: new Date(now), expiresAt, reason: write.reason }
          person.session = row
          person.failures = 0
          await this.#deps.store.upsertTeamsSession(row)
          if (samePresence) {
            this.#deps.counters.inc('sync.teams_refreshed')
          } else {
            this.#deps.counters.inc('sync.teams_set')
            await this.#event(person, {
              kind: 'teams.set',
              gatewayId: write.gatewayId,
              message: `Teams ${write.presence.availability}/${write.presence.activity} set for ${this.#who(person)} because ${write.reason}; set by the relay; expires ${clock24(expiresAt.getTime())} unless refreshed`,
            })
          }
          break
        }
        case 'cleared':
        case 'absent': {
          person.failures = 0
          const session = person.session
          if (!session) break
          person.session = undefined
          person.lastCleared = { presence: { availability: session.availability, activity: session.activity } as SettablePresence, at: now }
          await this.#deps.store.deleteTeamsSession(person.row.id)
          this.#deps.counters.inc('sync.teams_cleared')
          await this.#event(person, {
            kind: 'teams.cleared',
            message: `Teams session cleared for ${this.#who(person)}: no PBX call any more${outcome.result === 'absent' ? ' (Graph had already dropped it)' : ''}`,
          })
          break
        }
        case 'failed':
          // A newer write is already on its way: this failure says nothing about it.
          if (person.latestWrite === undefined) this.#onWriteFailed(person, outcome.error, now)
          break
        case 'unchanged':
        case 'superseded':
          break
      }
    }
  }

  #writerFor(tenantId: string): PresenceWriter | undefined {
    const existing = this.#writers.get(tenantId)
    if (existing) return existing
    if (this.#stopped) return undefined
    const graph = this.#deps.graphFor(tenantId)
    if (!graph) return undefined
    const writer = new PresenceWriter(this.#deps.presenceWriter ?? {}, {
      graph,
      clock: this.#deps.clock,
      logger: this.#log.child({ tenant: tenantId }),
      counters: this.#deps.counters,
      onOutcome: (outcome) => {
        const personId = this.#personByGraphId.get(outcome.userId.toLowerCase())
        const person = personId === undefined ? undefined : this.#people.get(personId)
        if (!person) return
        person.outcomes.push(outcome)
        this.schedule(person.row.id)
      },
    })
    this.#writers.set(tenantId, writer)
    return writer
  }

  #reconcilePbx(person: PersonModel, facts: PersonFacts, decision: Decision, now: number): void {
    for (const endpointFacts of facts.endpoints) {
      const endpointDecision = decision.endpoints.get(endpointFacts.key)
      const endpoint = person.endpoints.get(endpointFacts.key)
      if (!endpointDecision || !endpoint) continue
      const gateway = this.#gateways.get(endpoint.gatewayId)
      if (gateway && !gateway.online) continue
      const command = dndCommandFor(endpointFacts, endpointDecision)
      if (!command) continue
      // One command in flight per endpoint and value; a changed mind is sent at once (the gateway orders by seq).
      const pending = person.pending.get(endpointFacts.key)
      if (pending && pending.dnd === command.dnd && now - pending.sentAt < PENDING_COMMAND_MS) continue
      this.#sendDnd(person, endpointFacts.key, endpoint, command.dnd, command.reason)
    }
  }

  #sendDnd(person: PersonModel, key: string, endpoint: EndpointModel, dnd: boolean, reason: string): void {
    const now = this.#deps.clock.now()
    person.pending.set(key, { dnd, sentAt: now })
    this.#deps.counters.inc(dnd ? 'sync.pbx_dnd_on' : 'sync.pbx_dnd_off')
    const data: SetDndData = { connectorId: endpoint.connectorId, endpointId: endpoint.endpointId, dnd, reason: reason.slice(0, 256) }
    this.#deps.sendSetDnd(endpoint.gatewayId, data).then(
      async (result) => {
        if (result.ok) {
          await this.#event(person, {
            kind: dnd ? 'pbx.dnd.on' : 'pbx.dnd.off',
            gatewayId: endpoint.gatewayId,
            message: dnd
              ? `DND on ${endpoint.endpointId} (${endpoint.gatewayId}/${endpoint.connectorId}) because ${reason} at ${clock24(now)}; set by the relay, released when it ends`
              : `DND on ${endpoint.endpointId} (${endpoint.gatewayId}/${endpoint.connectorId}) released at ${clock24(now)}: ${reason}`,
          })
        } else {
          person.pending.delete(key)
          await this.#event(person, {
            kind: 'pbx.dnd.refused',
            gatewayId: endpoint.gatewayId,
            message: `The gateway did not ${dnd ? 'set' : 'release'} DND on ${endpoint.endpointId}: ${result.error?.message ?? 'no reason given'} (${result.error?.code ?? 'unknown'})`,
          })
        }
      },
      (err: unknown) => {
        person.pending.delete(key)
        if (this.#stopped) return
        this.#deps.counters.inc('sync.commands_failed')
        this.#log.warn({ gatewayId: endpoint.gatewayId, endpoint: endpoint.endpointId, dnd, err: (err as Error).message }, 'DND command not confirmed; will retry')
        this.#deps.clock.setTimeout(() => this.schedule(person.row.id), this.#deps.timings.retryBaseMs)
      },
    ).finally(() => this.schedule(person.row.id))
  }

  #onWriteFailed(person: PersonModel, err: unknown, now: number): void {
    person.failures += 1
    const retryIn = err instanceof GraphApiError && err.retryAfterMs !== undefined
      ? err.retryAfterMs
      : backoffDelay(person.failures, this.#deps.timings.retryBaseMs, 60_000)
    person.retryAt = now + retryIn
    this.#deps.counters.inc(err instanceof GraphApiError && err.code === 'GRAPH_THROTTLED' ? 'sync.graph_throttled' : 'sync.graph_failed')
    const code = err instanceof GraphApiError ? err.code : 'UNEXPECTED'
    this.#log.warn({ person: person.row.email, code, err: (err as Error).message, retryInMs: retryIn }, 'Teams write failed; will retry')
    if (person.failures === 1) {
      void this.#event(person, { kind: 'teams.failed', message: `Teams update for ${this.#who(person)} failed (${code}): ${(err as Error).message}; retrying` })
    }
  }

  // ---- periodic work -----------------------------------------------------------------------------------------

  #scheduleTick(): void {
    this.#tickTimer = this.#deps.clock.setTimeout(() => {
      this.#tick()
      if (!this.#stopped) this.#scheduleTick()
    }, 1000)
  }

  #tick(): void {
    const now = this.#deps.clock.now()
    for (const [gatewayId, gateway] of this.#gateways) {
      if (gateway.online || gateway.staled || gateway.offlineSince === undefined) continue
      if (now - gateway.offlineSince < this.#deps.timings.gatewayOfflineGraceMs) continue
      gateway.staled = true
      for (const person of this.#peopleOfGateway(gatewayId)) {
        for (const endpoint of person.endpoints.values()) if (endpoint.gatewayId === gatewayId) endpoint.stale = true
        void this.#event(person, {
          kind: 'gateway.stale',
          gatewayId,
          message: `Gateway ${gatewayId} offline since ${clock24(gateway.offlineSince)}: its extensions no longer count as busy for ${this.#who(person)}`,
        })
        this.schedule(person.row.id)
      }
    }
    for (const person of this.#people.values()) {
      const refreshDue = person.session && now - person.session.refreshedAt.getTime() >= this.#deps.timings.sessionRefreshMs
      const retryDue = person.retryAt !== 0 && now >= person.retryAt
      if (retryDue) person.retryAt = 0
      // When the echo hold of a cleared session ends, the same Teams reading means something else: it is the
      // person's own (found by the order-independence property: nothing else would re-read it).
      const echoHoldOver = person.lastCleared !== undefined && now - person.lastCleared.at >= this.#deps.timings.echoHoldMs
      if (echoHoldOver) person.lastCleared = undefined
      if (refreshDue || retryDue || echoHoldOver) this.schedule(person.row.id)
    }
  }

  // ---- helpers -----------------------------------------------------------------------------------------------

  #newPerson(row: PersonRow): PersonModel {
    return { row, endpoints: new Map(), teams: undefined, teamsTrigger: false, teamsTriggerReason: null, standBack: new Set(), decision: undefined, session: undefined, lastCleared: undefined, pending: new Map(), retryAt: 0, failures: 0, writes: new Map(), latestWrite: undefined, outcomes: [] }
  }

  *#peopleOfGateway(gatewayId: string): Iterable<PersonModel> {
    for (const person of this.#people.values()) {
      for (const endpoint of person.endpoints.values()) {
        if (endpoint.gatewayId === gatewayId) {
          yield person
          break
        }
      }
    }
  }

  async #resolveGraphUser(person: PersonModel, graph: GraphPresenceApi): Promise<void> {
    try {
      const user = await graph.findUser(person.row.email)
      if (!user) {
        this.#deps.counters.inc('sync.unknown_users')
        await this.#event(person, { kind: 'mapping.unmatched', message: `No Microsoft 365 user has the UPN ${person.row.email}; Teams presence is not synced for this extension` })
        return
      }
      person.row = { ...person.row, graphUserId: user.id }
      this.#personByGraphId.set(user.id.toLowerCase(), person.row.id)
      await this.#deps.store.setPersonGraphUser(person.row.id, user.id)
      await this.#event(person, { kind: 'mapping.matched', message: `${person.row.email} mapped to Microsoft 365 user ${user.displayName} (${user.id})` })
    } catch (err) {
      this.#log.warn({ email: person.row.email, err: (err as Error).message }, 'looking up the Microsoft 365 user failed')
    }
  }

  #who(person: PersonModel): string {
    return person.row.displayName ? `${person.row.displayName} <${person.row.email}>` : person.row.email
  }

  async #persistSync(person: PersonModel): Promise<void> {
    await this.#deps.store.upsertPersonSync({
      personId: person.row.id,
      teamsAvailability: person.teams?.availability ?? null,
      teamsActivity: person.teams?.activity ?? null,
      teamsObservedAt: person.teams ? new Date(person.teams.at) : null,
      teamsTrigger: person.teamsTrigger,
      teamsTriggerReason: person.teamsTriggerReason,
      standBackKeys: [...person.standBack].sort(),
    })
  }

  /** Decisions as they are logged, for the demo's narration and the console's live view. */
  onDecision(listener: (entry: EventLogEntry) => void): () => void {
    this.#decisionListeners.add(listener)
    return () => this.#decisionListeners.delete(listener)
  }

  /** Writes an event log entry; observations are logged at debug, decisions at info. */
  async #event(person: PersonModel, entry: Omit<EventLogEntry, 'personId' | 'tenantId'>, level: 'info' | 'debug' = 'info'): Promise<void> {
    const full: EventLogEntry = { ...entry, at: new Date(this.#deps.clock.now()), tenantId: person.row.tenantId, personId: person.row.id }
    this.#log[level]({ person: person.row.email, kind: entry.kind, decision: entry.message }, level === 'info' ? 'sync decision' : 'sync observation')
    if (level === 'info') for (const listener of this.#decisionListeners) listener(full)
    await this.#deps.store.appendEvent(full).catch((err: unknown) => {
      this.#log.error({ err: (err as Error).message }, 'writing the event log failed')
    })
  }
}
