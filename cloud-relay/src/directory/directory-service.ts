import type { Logger } from 'pino'
import type { DirectoryData } from '#protocol/schemas.js'
import type { Clock } from '#kernel/clock.js'
import { GraphApiError, type DirectoryUser, type GraphDirectoryApi, type UserListProgress } from '../graph/types.js'
import type { DirectoryPersonRow, DirectoryStore, EntraAttributes, ImportRunRow, ImportedPersonWrite } from '../store/directory-store.js'
import type { EventLogEntry, PersonRow, SyncMode } from '../store/relay-store.js'
import { AddressIndex, buildUserFilter, type AddressKind } from './address-index.js'
import { planSeats } from './seats.js'

/** What happens to imported people who no longer match the import's filters. */
export type NoLongerMatchingPolicy = 'deactivate' | 'remove' | 'keep'

export interface TenantDirectorySettings {
  /** Only accounts with accountEnabled true. */
  enabledOnly: boolean
  /** Mail or UPN domains (any of them). */
  domains: readonly string[]
  /** Departments (any of them). */
  departments: readonly string[]
  /** Group object ids: members (nested included) of any of them. */
  groups: readonly string[]
  onNoLongerMatching: NoLongerMatchingPolicy
  /** Daily import time, "HH:MM" UTC; undefined: no schedule. */
  dailyAt?: string | undefined
  /** At most this many people synced; undefined: no limit. */
  seats?: number | undefined
}

/** What the sync engine offers the directory: sync mode changes and re-mapping an extension at once. */
export interface PeopleSync {
  updatePerson(personId: number, change: { syncMode: SyncMode }, by: string): Promise<boolean>
  onDirectory(gatewayId: string, data: DirectoryData): Promise<void>
}

export interface DirectoryServiceDeps {
  store: DirectoryStore
  /** Sync mode for people the engine does not hold in memory, and the event log. */
  relayStore: { setPersonSyncMode(personId: number, mode: SyncMode): Promise<void>; appendEvent(entry: EventLogEntry): Promise<void> }
  people: PeopleSync
  graphFor(tenantId: string): GraphDirectoryApi | undefined
  settingsFor(tenantId: string): TenantDirectorySettings | undefined
  gatewaysOf(tenantId: string): readonly string[]
  logger: Logger
  clock: Clock
}

export interface ImportPersonRef {
  personId: number | null
  email: string
  displayName: string
  graphUserId: string | null
}

export interface ImportResult {
  dryRun: boolean
  filter: string | null
  groups: string[]
  policy: NoLongerMatchingPolicy
  counts: { matched: number; added: number; updated: number; reactivated: number; unchanged: number; deactivated: number; removed: number; kept: number; skipped: number }
  added: ImportPersonRef[]
  updated: Array<ImportPersonRef & { changes: string[] }>
  reactivated: ImportPersonRef[]
  deactivated: ImportPersonRef[]
  removed: ImportPersonRef[]
  kept: ImportPersonRef[]
  /** Entra users not imported because another user already claims their address as a person's e-mail. */
  skipped: Array<ImportPersonRef & { reason: string }>
  /** What the seat limit does after this import (a dry run predicts it). */
  seats: { limit: number | null; deactivated: ImportPersonRef[]; reactivated: ImportPersonRef[] }
}

export interface ImportProgress {
  phase: 'starting' | 'reading users' | 'reading groups' | 'applying' | 'done' | 'failed'
  pages: number
  fetched: number
  total: number | null
  /** 0..100; an estimate while reading (pages against @odata.count), 100 when done. */
  percent: number
}

export interface ImportRunView {
  id: number
  tenantId: string
  dryRun: boolean
  trigger: string
  state: ImportRunRow['state']
  startedAt: string
  finishedAt: string | null
  progress: ImportProgress
  result: ImportResult | null
  error: string | null
}

export interface MappingReport {
  tenantId: string
  imported: boolean
  directoryUsers: number
  /** PBX extensions and how each is mapped. */
  endpoints: Array<{ gatewayId: string; connectorId: string; endpointId: string; name: string; email: string | null; personId: number | null; via: AddressKind | 'manual' | 'e-mail' | null }>
  /** One address, several Entra users: such e-mails are not mapped automatically. */
  ambiguous: Array<{ email: string; graphUserIds: string[]; endpoints: string[] }>
  /** One Entra user claimed by extensions with different PBX e-mails (e.g. a primary address and an alias). */
  sharedUsers: Array<{ graphUserId: string; emails: string[]; endpoints: string[] }>
  /** PBX extensions with an e-mail no imported user answers to. */
  unmatchedPbx: Array<{ endpoint: string; email: string; name: string }>
  /** PBX extensions without any e-mail (map them manually). */
  withoutEmail: Array<{ endpoint: string; name: string }>
  /** Imported Entra users no PBX extension maps to. */
  /** Imported users no extension maps to; personId is theirs among the relay's people (a manual mapping target). */
  unmatchedEntra: Array<{ graphUserId: string; userPrincipalName: string; displayName: string; personId: number | null; email: string | null }>
  manual: Array<{ endpoint: string; personId: number; setBy: string; setAt: string }>
}

export class DirectoryError extends Error {
  constructor(
    /** DIRECTORY_UNKNOWN_TENANT, DIRECTORY_NO_GRAPH, DIRECTORY_BUSY, DIRECTORY_UNKNOWN_PERSON, DIRECTORY_UNKNOWN_ENDPOINT, DIRECTORY_UNKNOWN_RUN */
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = 'DirectoryError'
  }
}

interface RunningImport {
  view: ImportRunView
  done: Promise<ImportRunView>
}

const endpointName = (gatewayId: string, connectorId: string, endpointId: string) => `${gatewayId}/${connectorId}/${endpointId}`
const primaryEmail = (u: DirectoryUser) => (u.mail ?? u.userPrincipalName).trim().toLowerCase()
const entraOf = (u: DirectoryUser): EntraAttributes => ({
  userPrincipalName: u.userPrincipalName,
  mail: u.mail,
  department: u.department,
  accountEnabled: u.accountEnabled,
  proxyAddresses: [...u.proxyAddresses],
})

/**
 * User import from Entra ID (per tenant, app-only), auto-mapping of PBX e-mails through the imported directory,
 * manual mappings and seats. Imported people are ordinary rows of `people` (e-mail, display name, Graph user id,
 * sync mode) plus where they came from and whether they are active; an inactive person runs with sync mode off and
 * gets their own mode back when active again.
 */
export class DirectoryService {
  readonly #deps: DirectoryServiceDeps
  readonly #log: Logger
  readonly #index = new Map<string, AddressIndex>()
  readonly #running = new Map<string, RunningImport>()
  readonly #seatLimits = new Map<string, number | undefined>()
  readonly #timers = new Map<string, ReturnType<Clock['setTimeout']>>()
  #stopped = true

  constructor(deps: DirectoryServiceDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'directory' })
  }

  /** Loads imported directories, fails runs a previous process left open, applies seat limits, starts schedules. */
  async start(tenantIds: readonly string[]): Promise<void> {
    this.#stopped = false
    const interrupted = await this.#deps.store.failInterruptedRuns(this.#now())
    if (interrupted) this.#log.warn({ runs: interrupted }, 'imports interrupted by a relay stop were marked failed')
    for (const tenantId of tenantIds) {
      if (await this.#deps.store.hasImported(tenantId)) this.#index.set(tenantId, new AddressIndex(await this.#deps.store.loadDirectory(tenantId)))
      const settings = this.#deps.settingsFor(tenantId)
      this.#seatLimits.set(tenantId, settings?.seats)
      await this.enforceSeats(tenantId)
      this.#schedule(tenantId)
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    for (const timer of this.#timers.values()) this.#deps.clock.clearTimeout(timer)
    this.#timers.clear()
    await Promise.allSettled([...this.#running.values()].map((r) => r.done))
  }

  /** Resolves when no import is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running.size) await Promise.allSettled([...this.#running.values()].map((r) => r.done))
  }

  // ---- import ------------------------------------------------------------------------------------------------

  /** Starts an import or dry run; answers at once with the run (progress readable by id) and its completion. */
  async startImport(tenantId: string, options: { dryRun: boolean; trigger: string }): Promise<RunningImport> {
    const settings = this.#deps.settingsFor(tenantId)
    if (!settings) throw new DirectoryError('DIRECTORY_UNKNOWN_TENANT', `Tenant ${tenantId} is not in the relay config: use a tenant id from the config's tenants list.`)
    const graph = this.#deps.graphFor(tenantId)
    if (!graph) throw new DirectoryError('DIRECTORY_NO_GRAPH', `Tenant ${tenantId} has no Graph credentials: add tenants[].graph (tenant id, client id, secret or certificate) to the relay config to import users.`)
    const running = this.#running.get(tenantId)
    if (running) throw new DirectoryError('DIRECTORY_BUSY', `An import for tenant ${tenantId} is already running (run ${running.view.id}): wait for it (GET its progress) and start again.`)
    const startedAt = this.#now()
    const id = await this.#deps.store.createImportRun(tenantId, options.dryRun, options.trigger, startedAt)
    const view: ImportRunView = {
      id, tenantId, dryRun: options.dryRun, trigger: options.trigger, state: 'running', startedAt: startedAt.toISOString(), finishedAt: null,
      progress: { phase: 'starting', pages: 0, fetched: 0, total: null, percent: 0 }, result: null, error: null,
    }
    const done = this.#runImport(view, settings, graph).finally(() => this.#running.delete(tenantId))
    const handle = { view, done }
    this.#running.set(tenantId, handle)
    return handle
  }

  /** A run's progress and result: the live view while it runs, the stored one afterwards. */
  async getRun(tenantId: string, id: number): Promise<ImportRunView | undefined> {
    const live = this.#running.get(tenantId)
    if (live?.view.id === id) return { ...live.view, progress: { ...live.view.progress } }
    const row = await this.#deps.store.getImportRun(id)
    if (!row || row.tenantId !== tenantId) return undefined
    return {
      id: row.id, tenantId: row.tenantId, dryRun: row.dryRun, trigger: row.trigger, state: row.state, startedAt: row.startedAt.toISOString(),
      finishedAt: row.finishedAt?.toISOString() ?? null,
      progress: (row.progress as ImportProgress | null) ?? { phase: row.state === 'failed' ? 'failed' : 'starting', pages: 0, fetched: 0, total: null, percent: 0 },
      result: row.result as ImportResult | null, error: row.error,
    }
  }

  async listRuns(tenantId: string, limit = 20): Promise<ImportRunView[]> {
    const rows = await this.#deps.store.listImportRuns(tenantId, limit)
    const views = await Promise.all(rows.map((r) => this.getRun(tenantId, r.id)))
    return views.filter((v): v is ImportRunView => v !== undefined)
  }

  async #runImport(view: ImportRunView, settings: TenantDirectorySettings, graph: GraphDirectoryApi): Promise<ImportRunView> {
    const { tenantId } = view
    const log = this.#log.child({ tenant: tenantId, run: view.id, dryRun: view.dryRun })
    const filter = buildUserFilter(settings) ?? null
    let outcome: 'succeeded' | 'failed' = 'failed'
    log.info({ filter, groups: settings.groups, policy: settings.onNoLongerMatching, trigger: view.trigger }, view.dryRun ? 'user import dry run started' : 'user import started')
    try {
      view.progress.phase = 'reading users'
      const listed = await graph.listUsers({ filter: filter ?? undefined, pageSize: 999 }, (p: UserListProgress) => {
        view.progress.pages = p.pages
        view.progress.fetched = p.fetched
        view.progress.total = p.total ?? null
        // Reading is most of the work; applying the rest.
        view.progress.percent = p.total ? Math.min(90, Math.floor((p.fetched / p.total) * 90)) : view.progress.percent
        log.info({ pages: p.pages, fetched: p.fetched, total: p.total }, 'user import progress')
      })
      let users = listed
      if (settings.groups.length) {
        view.progress.phase = 'reading groups'
        const members = new Set<string>()
        for (const groupId of settings.groups) for (const id of await graph.listGroupUserIds(groupId)) members.add(id.toLowerCase())
        users = listed.filter((u) => members.has(u.id.toLowerCase()))
      }
      view.progress.phase = 'applying'
      view.progress.percent = 90
      const people = await this.#deps.store.listTenantPeople(tenantId)
      const plan = this.#plan(users, people, settings.onNoLongerMatching, filter, settings.groups, view.dryRun)
      if (view.dryRun) plan.result.seats = this.#previewSeats(tenantId, people, plan.result)
      else await this.#apply(tenantId, users, plan.result, plan.writes, plan.unchangedIds, people)
      view.result = plan.result
      outcome = 'succeeded'
      view.progress.phase = 'done'
      view.progress.percent = 100
      const c = plan.result.counts
      log.info(c, view.dryRun ? 'user import dry run finished' : 'user import finished')
      if (!view.dryRun) {
        await this.#event(tenantId, null, 'directory.import', `User import from Entra ID: ${c.matched} matched, ${c.added} added, ${c.updated} updated, ${c.reactivated} re-activated, ${c.deactivated} deactivated, ${c.removed} removed, ${c.unchanged} unchanged`, { runId: view.id, counts: c })
      }
    } catch (err) {
      outcome = 'failed'
      view.progress.phase = 'failed'
      view.error = err instanceof GraphApiError || err instanceof DirectoryError ? err.message : `the import failed unexpectedly: ${(err as Error).message}; the relay's log has the details`
      log.warn({ err: (err as Error).message, code: (err as { code?: string }).code }, 'user import failed')
    }
    view.finishedAt = this.#now().toISOString()
    await this.#deps.store.finishImportRun(view.id, {
      state: outcome,
      at: new Date(view.finishedAt),
      progress: { ...view.progress },
      result: view.result as unknown as Record<string, unknown> | null,
      error: view.error,
    })
    // Only now, stored and finished, does the run read as done: a reader seeing "succeeded" can start the next one.
    view.state = outcome
    return view
  }

  /** What the import would change; pure apart from reading the clock-free inputs. */
  #plan(users: readonly DirectoryUser[], people: readonly DirectoryPersonRow[], policy: NoLongerMatchingPolicy, filter: string | null, groups: readonly string[], dryRun: boolean) {
    const byGraphId = new Map<string, DirectoryPersonRow>()
    const byEmail = new Map<string, DirectoryPersonRow>()
    for (const p of people) {
      if (p.graphUserId) byGraphId.set(p.graphUserId.toLowerCase(), p)
      byEmail.set(p.email, p)
    }
    const result: ImportResult = {
      dryRun, filter, groups: [...groups], policy,
      counts: { matched: users.length, added: 0, updated: 0, reactivated: 0, unchanged: 0, deactivated: 0, removed: 0, kept: 0, skipped: 0 },
      added: [], updated: [], reactivated: [], deactivated: [], removed: [], kept: [], skipped: [], seats: { limit: null, deactivated: [], reactivated: [] },
    }
    const writes: ImportedPersonWrite[] = []
    const unchangedIds: number[] = []
    const claimedEmails = new Set<string>()
    let unchangedMatched = 0
    const matchedPersonIds = new Set<number>()
    const ref = (p: { id?: number | null; email: string; displayName: string; graphUserId: string | null }): ImportPersonRef => ({ personId: p.id ?? null, email: p.email, displayName: p.displayName, graphUserId: p.graphUserId })
    // Stable order (object id) so a dry run and the real run list the same people in the same order.
    for (const user of [...users].sort((a, b) => a.id.localeCompare(b.id))) {
      const existing = byGraphId.get(user.id.toLowerCase()) ?? byEmail.get(primaryEmail(user)) ?? byEmail.get(user.userPrincipalName.toLowerCase())
      const email = existing?.email ?? [primaryEmail(user), user.userPrincipalName.toLowerCase()].find((e) => !claimedEmails.has(e) && !byEmail.has(e))
      if (email === undefined || (existing && matchedPersonIds.has(existing.id))) {
        result.skipped.push({ ...ref({ email: primaryEmail(user), displayName: user.displayName, graphUserId: user.id }), reason: 'its e-mail already belongs to another imported person' })
        continue
      }
      claimedEmails.add(email)
      const entra = entraOf(user)
      if (!existing) {
        writes.push({ personId: undefined, email, displayName: user.displayName, graphUserId: user.id, entra })
        result.added.push(ref({ email, displayName: user.displayName, graphUserId: user.id }))
        continue
      }
      matchedPersonIds.add(existing.id)
      const changes: string[] = []
      if (existing.graphUserId?.toLowerCase() !== user.id.toLowerCase()) changes.push(existing.graphUserId ? 'Entra user changed' : 'matched to its Entra user')
      if (existing.displayName !== user.displayName) changes.push('display name')
      if (existing.source !== 'import') changes.push('now imported')
      if (!sameEntra(existing.entra, entra)) changes.push('Entra attributes')
      const reactivated = !existing.active && existing.inactiveReason === 'import'
      if (reactivated) result.reactivated.push(ref(existing))
      if (changes.length) {
        writes.push({ personId: existing.id, email: existing.email, displayName: user.displayName, graphUserId: user.id, entra })
        result.updated.push({ ...ref(existing), changes })
      } else {
        unchangedIds.push(existing.id)
        if (!reactivated) unchangedMatched++
      }
    }
    for (const person of people) {
      if (person.source !== 'import' || matchedPersonIds.has(person.id)) continue
      if (policy === 'keep') result.kept.push(ref(person))
      else if (policy === 'remove') result.removed.push(ref(person))
      else if (person.active || person.inactiveReason !== 'import') result.deactivated.push(ref(person))
    }
    Object.assign(result.counts, {
      added: result.added.length, updated: result.updated.length, reactivated: result.reactivated.length, unchanged: unchangedMatched,
      deactivated: result.deactivated.length, removed: result.removed.length, kept: result.kept.length, skipped: result.skipped.length,
    })
    return { result, writes, unchangedIds }
  }

  async #apply(tenantId: string, users: readonly DirectoryUser[], result: ImportResult, writes: readonly ImportedPersonWrite[], unchangedIds: readonly number[], people: readonly DirectoryPersonRow[]): Promise<void> {
    const { store } = this.#deps
    const at = this.#now()
    const inserted = await store.writeImportedPeople(tenantId, writes, at)
    for (const added of result.added) added.personId = added.graphUserId ? (inserted.get(added.graphUserId) ?? null) : null
    await store.touchImported(unchangedIds, at)
    const byId = new Map(people.map((p) => [p.id, p]))
    for (const person of result.reactivated) {
      const row = person.personId === null ? undefined : byId.get(person.personId)
      if (row) await this.#activate(row, `${row.displayName || row.email} matches the user import again: synced again`)
    }
    for (const person of result.deactivated) {
      const row = person.personId === null ? undefined : byId.get(person.personId)
      if (row) await this.#deactivate(row, 'import', `${row.displayName || row.email} no longer matches the user import (disabled, left the domain, department or group): not synced any more`)
    }
    for (const person of result.removed) {
      const row = person.personId === null ? undefined : byId.get(person.personId)
      if (!row) continue
      // Off first, so the engine clears what it set for them; then the row goes (endpoints become unmapped).
      await this.#deps.people.updatePerson(row.id, { syncMode: 'off' }, 'user import')
      await this.#event(tenantId, row.id, 'directory.removed', `${row.displayName || row.email} no longer matches the user import and was removed (policy "remove")`)
      await store.deletePerson(row.id)
    }
    // One statement for what may be thousands of rows.
    await store.appendEvents(result.added.map((added) => ({
      at, tenantId, personId: added.personId, kind: 'directory.added', message: `${added.displayName || added.email} imported from Entra ID (${added.graphUserId})`,
    })))
    // Kept and deactivated people keep their extensions: their last known Entra addresses stay in the directory.
    const matchedIds = new Set(users.map((u) => u.id.toLowerCase()))
    const removedIds = new Set(result.removed.map((p) => p.personId))
    const retained = people
      .filter((p) => p.source === 'import' && p.entra !== null && p.graphUserId !== null && !matchedIds.has(p.graphUserId.toLowerCase()) && !removedIds.has(p.id))
      .map((p): DirectoryUser => ({ id: p.graphUserId!, displayName: p.displayName, ...p.entra! }))
    const directory = [...users, ...retained]
    await store.replaceDirectory(tenantId, directory, at)
    this.#index.set(tenantId, new AddressIndex(directory))
    const seats = await this.#applySeats(tenantId)
    result.seats = { limit: this.#seatLimits.get(tenantId) ?? null, deactivated: seats.deactivate.map(personRef), reactivated: seats.reactivate.map(personRef) }
    await this.#remapTenant(tenantId)
  }

  /** Re-maps every known extension of the tenant through the engine, so the import takes effect at once. */
  async #remapTenant(tenantId: string): Promise<void> {
    const groups = new Map<string, DirectoryData & { gatewayId: string }>()
    for (const e of await this.#deps.store.listTenantEndpoints(tenantId)) {
      const key = `${e.gatewayId}\u0000${e.connectorId}`
      let group = groups.get(key)
      if (!group) {
        group = { gatewayId: e.gatewayId, connectorId: e.connectorId, entries: [] }
        groups.set(key, group)
      }
      group.entries.push({ endpointId: e.endpointId, name: e.name, ...(e.email ? { email: e.email } : {}) })
    }
    for (const { gatewayId, connectorId, entries } of groups.values()) await this.#deps.people.onDirectory(gatewayId, { connectorId, entries })
  }

  // ---- mapping -------------------------------------------------------------------------------------------------

  /**
   * The sync engine's question for one PBX directory entry: undefined when this tenant has neither an import nor a
   * manual mapping for it (the engine falls back to its own e-mail path), null when the entry maps to nobody.
   */
  async resolveDirectoryEntry(tenantId: string, gatewayId: string, connectorId: string, entry: { endpointId: string; email: string | null }): Promise<PersonRow | null | undefined> {
    // Two indexed lookups per extension at most; the address match itself is in memory.
    const manual = await this.#deps.store.getManualMapping(gatewayId, connectorId, entry.endpointId)
    if (manual) return (await this.#deps.store.getPerson(manual.personId)) ?? null
    const index = this.#index.get(tenantId)
    if (!index) return undefined
    if (!entry.email) return null
    const match = index.resolve(entry.email)
    if (match.kind !== 'matched') return null
    return (await this.#deps.store.personByGraphUser(tenantId, match.userId)) ?? null
  }

  async mappingReport(tenantId: string): Promise<MappingReport> {
    if (!this.#deps.settingsFor(tenantId)) throw new DirectoryError('DIRECTORY_UNKNOWN_TENANT', `Tenant ${tenantId} is not in the relay config: use a tenant id from the config's tenants list.`)
    const index = this.#index.get(tenantId)
    const [endpoints, manual, people] = await Promise.all([
      this.#deps.store.listTenantEndpoints(tenantId),
      this.#deps.store.listManualMappings(tenantId),
      this.#deps.store.listTenantPeople(tenantId),
    ])
    const manualByEndpoint = new Map(manual.map((m) => [endpointName(m.gatewayId, m.connectorId, m.endpointId), m]))
    const report: MappingReport = {
      tenantId, imported: index !== undefined, directoryUsers: index?.size ?? 0, endpoints: [], ambiguous: [], sharedUsers: [], unmatchedPbx: [], withoutEmail: [], unmatchedEntra: [],
      manual: manual.map((m) => ({ endpoint: endpointName(m.gatewayId, m.connectorId, m.endpointId), personId: m.personId, setBy: m.setBy, setAt: m.setAt.toISOString() })),
    }
    const ambiguous = new Map<string, { email: string; graphUserIds: string[]; endpoints: string[] }>()
    const claims = new Map<string, { emails: Set<string>; endpoints: string[] }>()
    const personGraph = new Map(people.map((p) => [p.id, p.graphUserId?.toLowerCase() ?? null]))
    for (const e of endpoints) {
      const name = endpointName(e.gatewayId, e.connectorId, e.endpointId)
      let via: MappingReport['endpoints'][number]['via'] = null
      let graphUserId: string | null = null
      if (manualByEndpoint.has(name)) {
        via = 'manual'
        graphUserId = personGraph.get(manualByEndpoint.get(name)!.personId) ?? null
      } else if (!e.email) {
        report.withoutEmail.push({ endpoint: name, name: e.name })
      } else if (index) {
        const match = index.resolve(e.email)
        if (match.kind === 'matched') {
          via = match.via
          graphUserId = match.userId
        } else if (match.kind === 'ambiguous') {
          const entry = ambiguous.get(e.email) ?? { email: e.email, graphUserIds: match.userIds, endpoints: [] }
          entry.endpoints.push(name)
          ambiguous.set(e.email, entry)
        } else report.unmatchedPbx.push({ endpoint: name, email: e.email, name: e.name })
      } else if (e.personId !== null) {
        via = 'e-mail'
        graphUserId = personGraph.get(e.personId) ?? null
      } else report.unmatchedPbx.push({ endpoint: name, email: e.email, name: e.name })
      if (graphUserId) {
        const claim = claims.get(graphUserId) ?? { emails: new Set<string>(), endpoints: [] }
        if (e.email) claim.emails.add(e.email.toLowerCase())
        claim.endpoints.push(name)
        claims.set(graphUserId, claim)
      }
      report.endpoints.push({ gatewayId: e.gatewayId, connectorId: e.connectorId, endpointId: e.endpointId, name: e.name, email: e.email, personId: e.personId, via })
    }
    report.ambiguous = [...ambiguous.values()]
    for (const [graphUserId, claim] of claims) if (claim.emails.size > 1) report.sharedUsers.push({ graphUserId, emails: [...claim.emails].sort(), endpoints: claim.endpoints })
    if (index) {
      const personByGraphUser = new Map(people.filter((p) => p.graphUserId).map((p) => [p.graphUserId!.toLowerCase(), p]))
      for (const user of index.users()) {
        if (claims.has(user.id.toLowerCase())) continue
        const person = personByGraphUser.get(user.id.toLowerCase())
        report.unmatchedEntra.push({ graphUserId: user.id, userPrincipalName: user.userPrincipalName, displayName: user.displayName, personId: person?.id ?? null, email: person?.email ?? null })
      }
    }
    return report
  }

  /** An admin maps one PBX extension to a person; it wins over auto-mapping, survives imports and applies at once. */
  async setManualMapping(tenantId: string, m: { gatewayId: string; connectorId: string; endpointId: string; personId: number }, by: string): Promise<void> {
    if (!this.#deps.settingsFor(tenantId)) throw new DirectoryError('DIRECTORY_UNKNOWN_TENANT', `Tenant ${tenantId} is not in the relay config: use a tenant id from the config's tenants list.`)
    if (!this.#deps.gatewaysOf(tenantId).includes(m.gatewayId)) throw new DirectoryError('DIRECTORY_UNKNOWN_ENDPOINT', `Gateway ${m.gatewayId} does not belong to tenant ${tenantId}: use one of ${this.#deps.gatewaysOf(tenantId).join(', ') || '(none configured)'}.`)
    const person = await this.#deps.store.getPerson(m.personId)
    if (!person || person.tenantId !== tenantId) throw new DirectoryError('DIRECTORY_UNKNOWN_PERSON', `No person ${m.personId} in tenant ${tenantId}: GET /api/v1/people?tenant=${tenantId} lists them.`)
    await this.#deps.store.setManualMapping({ ...m, setBy: by, setAt: this.#now() })
    await this.#event(tenantId, person.id, 'mapping.manual', `${by} mapped extension ${endpointName(m.gatewayId, m.connectorId, m.endpointId)} to ${person.displayName || person.email}; automatic mapping no longer applies to it`)
    await this.#remapEndpoint(tenantId, m.gatewayId, m.connectorId, m.endpointId)
  }

  async removeManualMapping(tenantId: string, gatewayId: string, connectorId: string, endpointId: string, by: string): Promise<boolean> {
    if (!this.#deps.gatewaysOf(tenantId).includes(gatewayId)) return false
    const removed = await this.#deps.store.deleteManualMapping(gatewayId, connectorId, endpointId)
    if (removed) {
      await this.#event(tenantId, null, 'mapping.manual', `${by} removed the manual mapping of extension ${endpointName(gatewayId, connectorId, endpointId)}; it is mapped automatically again`)
      await this.#remapEndpoint(tenantId, gatewayId, connectorId, endpointId)
    }
    return removed
  }

  async #remapEndpoint(tenantId: string, gatewayId: string, connectorId: string, endpointId: string): Promise<void> {
    const endpoint = (await this.#deps.store.listTenantEndpoints(tenantId)).find((e) => e.gatewayId === gatewayId && e.connectorId === connectorId && e.endpointId === endpointId)
    await this.#deps.people.onDirectory(gatewayId, { connectorId, entries: [{ endpointId, name: endpoint?.name ?? '', ...(endpoint?.email ? { email: endpoint.email } : {}) }] })
  }

  // ---- seats ---------------------------------------------------------------------------------------------------

  seatLimit(tenantId: string): number | undefined {
    return this.#seatLimits.get(tenantId)
  }

  /** Changes a tenant's seat limit (undefined: none) and applies it at once. */
  async setSeatLimit(tenantId: string, limit: number | undefined): Promise<{ deactivated: number; reactivated: number; seated: number }> {
    if (!this.#deps.settingsFor(tenantId)) throw new DirectoryError('DIRECTORY_UNKNOWN_TENANT', `Tenant ${tenantId} is not in the relay config: use a tenant id from the config's tenants list.`)
    this.#seatLimits.set(tenantId, limit)
    return this.enforceSeats(tenantId)
  }

  /** The most recently added people over the limit lose their seat; people waiting get one back oldest first. */
  async enforceSeats(tenantId: string): Promise<{ deactivated: number; reactivated: number; seated: number }> {
    const plan = await this.#applySeats(tenantId)
    return { deactivated: plan.deactivate.length, reactivated: plan.reactivate.length, seated: plan.seated }
  }

  /** The seat plan the import's people would meet: the same rule applied to the people as the import leaves them. */
  #previewSeats(tenantId: string, people: readonly DirectoryPersonRow[], result: ImportResult): ImportResult['seats'] {
    const limit = this.#seatLimits.get(tenantId)
    const ids = (list: ImportPersonRef[]) => new Set(list.map((p) => p.personId))
    const [removed, deactivated, reactivated] = [ids(result.removed), ids(result.deactivated), ids(result.reactivated)]
    const adopted = new Map(result.updated.map((u) => [u.personId, u.graphUserId]))
    const rows: DirectoryPersonRow[] = people
      .filter((p) => !removed.has(p.id))
      .map((p) => ({
        ...p,
        graphUserId: adopted.get(p.id) ?? p.graphUserId,
        ...(deactivated.has(p.id) ? { active: false, inactiveReason: 'import' as const } : reactivated.has(p.id) ? { active: true, inactiveReason: null } : {}),
      }))
    // New people are added after everyone there, in the order the import inserts them.
    const firstNewId = people.reduce((max, p) => Math.max(max, p.id), 0) + 1
    let nextId = firstNewId
    const now = this.#now()
    for (const a of result.added) {
      rows.push({ id: nextId++, tenantId, email: a.email, displayName: a.displayName, graphUserId: a.graphUserId, syncMode: 'full', settingsOverride: null, source: 'import', active: true, inactiveReason: null, syncModeWhenActive: null, createdAt: now, importedAt: now, lastImportedAt: now, entra: null })
    }
    const plan = planSeats(rows, limit)
    const unsaved = (p: DirectoryPersonRow): ImportPersonRef => ({ ...personRef(p), personId: p.id >= firstNewId ? null : p.id })
    return { limit: limit ?? null, deactivated: plan.deactivate.map(unsaved), reactivated: plan.reactivate.map(unsaved) }
  }

  async #applySeats(tenantId: string): Promise<ReturnType<typeof planSeats>> {
    const limit = this.#seatLimits.get(tenantId)
    const plan = planSeats(await this.#deps.store.listTenantPeople(tenantId), limit)
    for (const person of plan.deactivate) {
      await this.#deactivate(person, 'seats', `${person.displayName || person.email} deactivated: the tenant's ${limit} seats are taken and the most recently added people wait for a free seat`)
    }
    for (const person of plan.reactivate) {
      await this.#activate(person, `${person.displayName || person.email} re-activated: a seat became free (${plan.seated} of ${limit ?? 'unlimited'} seats in use)`)
    }
    if (plan.deactivate.length || plan.reactivate.length) {
      this.#log.info({ tenant: tenantId, limit, deactivated: plan.deactivate.length, reactivated: plan.reactivate.length, seated: plan.seated }, 'seat limit applied')
    }
    return plan
  }

  /**
   * Why a person is not synced by the directory's decision (no longer matching the import, or over the seat
   * limit), or null when they are active. Their sync mode is the directory's to restore, not an admin's to set.
   */
  async inactiveReason(personId: number): Promise<'import' | 'seats' | null> {
    const person = await this.#deps.store.getPerson(personId)
    return person && !person.active ? (person.inactiveReason ?? 'import') : null
  }

  async #deactivate(person: DirectoryPersonRow, reason: 'import' | 'seats', message: string): Promise<void> {
    const modeWhenActive = person.active ? person.syncMode : (person.syncModeWhenActive ?? person.syncMode)
    await this.#deps.store.setActive(person.id, false, reason, modeWhenActive, this.#now())
    await this.#setSyncMode(person.id, 'off')
    await this.#event(person.tenantId, person.id, reason === 'seats' ? 'seats.deactivated' : 'directory.deactivated', message, { reason })
  }

  async #activate(person: DirectoryPersonRow, message: string): Promise<void> {
    const mode = person.syncModeWhenActive ?? 'full'
    await this.#deps.store.setActive(person.id, true, null, null, this.#now())
    await this.#setSyncMode(person.id, mode)
    await this.#event(person.tenantId, person.id, person.inactiveReason === 'seats' ? 'seats.reactivated' : 'directory.reactivated', message, { syncMode: mode })
  }

  async #setSyncMode(personId: number, mode: SyncMode): Promise<void> {
    // The engine applies it at once when it holds the person; otherwise the stored mode is what it loads later.
    if (!(await this.#deps.people.updatePerson(personId, { syncMode: mode }, 'the directory'))) await this.#deps.relayStore.setPersonSyncMode(personId, mode)
  }

  // ---- schedule ------------------------------------------------------------------------------------------------

  /** Next daily run at dailyAt (UTC) on the injected clock; a run that finds an import running is skipped. */
  #schedule(tenantId: string): void {
    const dailyAt = this.#deps.settingsFor(tenantId)?.dailyAt
    if (this.#stopped || !dailyAt) return
    const delay = msUntilDaily(dailyAt, this.#deps.clock.now())
    this.#timers.set(tenantId, this.#deps.clock.setTimeout(() => {
      this.#timers.delete(tenantId)
      if (this.#stopped) return
      // The next day's timer is armed now, from the time this one fired, so it never depends on how long the import takes.
      this.#schedule(tenantId)
      this.startImport(tenantId, { dryRun: false, trigger: 'schedule' }).then(
        (run) => run.done,
        (err: unknown) => this.#log.warn({ tenant: tenantId, err: (err as Error).message }, 'scheduled user import not started'),
      ).catch((err: unknown) => this.#log.warn({ tenant: tenantId, err: (err as Error).message }, 'scheduled user import failed'))
    }, delay))
    this.#log.debug({ tenant: tenantId, dailyAt, inMs: delay }, 'user import scheduled')
  }

  #now(): Date {
    return new Date(this.#deps.clock.now())
  }

  async #event(tenantId: string, personId: number | null, kind: string, message: string, data?: Record<string, unknown>): Promise<void> {
    this.#log.info({ tenant: tenantId, personId, kind }, message)
    await this.#deps.relayStore.appendEvent({ at: this.#now(), tenantId, personId, kind, message, ...(data ? { data } : {}) })
  }
}

/** Milliseconds from `nowMs` to the next HH:MM (UTC), strictly in the future. */
export function msUntilDaily(dailyAt: string, nowMs: number): number {
  const match = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(dailyAt)
  if (!match) throw new Error(`dailyAt must be HH:MM (24-hour, UTC), got ${dailyAt}`)
  const now = new Date(nowMs)
  let next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), Number(match[1]), Number(match[2]))
  if (next <= nowMs) next += 24 * 3600_000
  return next - nowMs
}

/** Field by field: jsonb does not keep key order, so JSON text comparison would see changes that are none. */
function sameEntra(a: EntraAttributes | null, b: EntraAttributes): boolean {
  return a !== null && a.userPrincipalName === b.userPrincipalName && a.mail === b.mail && a.department === b.department &&
    a.accountEnabled === b.accountEnabled && a.proxyAddresses.length === b.proxyAddresses.length && a.proxyAddresses.every((p, i) => p === b.proxyAddresses[i])
}

function personRef(p: DirectoryPersonRow): ImportPersonRef {
  return { personId: p.id, email: p.email, displayName: p.displayName, graphUserId: p.graphUserId }
}
