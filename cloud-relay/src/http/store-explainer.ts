import type { Clock } from '#kernel/clock.js'
import type { EndpointRow, GatewayRow, PersonRow, PersonSyncRow, RelayStore, TeamsSessionRow } from '../store/relay-store.js'
import type { PersonExplainer, PersonExplanation } from '../sync/explanation.js'
import type { ExplanationSource } from './server.js'

export interface StoreExplainerDeps {
  store: Pick<RelayStore, 'listPeople' | 'getPerson' | 'listEndpoints' | 'listTeamsSessions' | 'listPersonSync' | 'listGateways'>
  clock: Clock
  /** As the sync engine's: an offline gateway's extensions stop counting after this long. */
  gatewayOfflineGraceMs: number
}

const clock24 = (ms: number) => `${new Date(ms).toISOString().slice(11, 19)} UTC`
const endpointKey = (e: { gatewayId: string; connectorId: string; endpointId: string }) => `${e.gatewayId}/${e.connectorId}/${e.endpointId}`

/**
 * The "why" view built from what the sync engine persisted (people, endpoints, teams_sessions, person_sync,
 * gateways) instead of its live model. It reads whole tables per request, which is fine for an admin view of a
 * relay's size today; the engine's own PersonExplainer replaces it once it has one.
 */
export class StoreExplainer implements ExplanationSource {
  readonly #deps: StoreExplainerDeps

  constructor(deps: StoreExplainerDeps) {
    this.#deps = deps
  }

  async listPeople(tenantId?: string): Promise<ReturnType<PersonExplainer['listPeople']>> {
    const people = await this.#deps.store.listPeople()
    return people
      .filter((p) => tenantId === undefined || p.tenantId === tenantId)
      .map((p) => ({ id: p.id, tenantId: p.tenantId, email: p.email, displayName: p.displayName, syncMode: p.syncMode }))
  }

  async explain(personId: number): Promise<PersonExplanation | undefined> {
    const { store } = this.#deps
    const person = await store.getPerson(personId)
    if (!person) return undefined
    const [endpoints, sessions, syncRows, gateways] = await Promise.all([store.listEndpoints(), store.listTeamsSessions(), store.listPersonSync(), store.listGateways()])
    return explainPerson({
      person,
      endpoints: endpoints.filter((e) => e.personId === personId),
      session: sessions.find((s) => s.personId === personId),
      sync: syncRows.find((s) => s.personId === personId),
      gateways: new Map(gateways.map((g) => [g.id, g])),
      now: this.#deps.clock.now(),
      gatewayOfflineGraceMs: this.#deps.gatewayOfflineGraceMs,
    })
  }
}

/** Pure: stored facts about one person → the explanation. */
export function explainPerson(facts: {
  person: PersonRow
  endpoints: readonly EndpointRow[]
  session: TeamsSessionRow | undefined
  sync: PersonSyncRow | undefined
  gateways: ReadonlyMap<string, GatewayRow>
  now: number
  gatewayOfflineGraceMs: number
}): PersonExplanation {
  const { person, session, sync, now } = facts
  const who = person.displayName ? `${person.displayName} <${person.email}>` : person.email
  const standBack = new Set(sync?.standBackKeys ?? [])

  const offlineSince = (gatewayId: string): number | undefined => {
    const gateway = facts.gateways.get(gatewayId)
    if (gateway?.status !== 'offline' || !gateway.lastSeenAt) return undefined
    const since = gateway.lastSeenAt.getTime()
    return now - since >= facts.gatewayOfflineGraceMs ? since : undefined
  }

  const endpoints = [...facts.endpoints]
    .sort((a, b) => endpointKey(a).localeCompare(endpointKey(b)))
    .map((e) => ({
      gatewayId: e.gatewayId,
      connectorId: e.connectorId,
      endpointId: e.endpointId,
      name: e.name,
      state: e.state,
      dnd: e.dnd,
      dndOwner: e.dndOwner,
      cause: e.cause,
      changedAt: e.changedAt ? new Date(e.changedAt).toISOString() : null,
      stale: offlineSince(e.gatewayId) !== undefined,
    }))

  const observed = sync?.teamsAvailability && sync.teamsActivity
    ? { availability: sync.teamsAvailability, activity: sync.teamsActivity, at: (sync.teamsObservedAt ?? new Date(0)).toISOString() }
    : null
  const wantsPbxDnd = sync?.teamsTrigger ?? false
  const reason = sync?.teamsTriggerReason ?? null

  const summary: string[] = []
  if (person.syncMode === 'off') summary.push(`Sync is off for ${who}: the relay changes neither Teams nor the PBX.`)
  summary.push(session
    ? `Teams shows ${session.availability}/${session.activity}, set by the relay since ${clock24(session.setAt.getTime())} because ${session.reason}; it expires at ${clock24(session.expiresAt.getTime())} unless refreshed.`
    : `The relay has no presence session in Teams for ${who}.`)
  if (wantsPbxDnd) summary.push(`${reason ?? 'The Teams activity'} asks for DND on ${who}'s extensions.`)
  else if (reason) summary.push(`No DND wanted from Teams: ${reason}.`)
  if (standBack.size) {
    summary.push(`${who} switched off a DND the relay set on ${[...standBack].join(', ')}: the relay leaves it off until the reason for it ends.`)
  }
  if (!endpoints.length) summary.push(`No PBX extension is mapped to ${who}.`)
  for (const e of endpoints) {
    const since = e.changedAt ? ` since ${clock24(Date.parse(e.changedAt))}` : ''
    const dnd = !e.dnd ? 'DND off' : e.dndOwner === 'gateway' ? 'DND on, set by the relay' : e.dndOwner === 'user' ? 'DND on, set by the person (never cleared by the relay)' : 'DND on'
    const stale = offlineSince(e.gatewayId)
    summary.push(`Extension ${e.endpointId} on ${e.gatewayId}/${e.connectorId} is ${e.state}${since} (${e.cause || 'no cause'}); ${dnd}.` +
      (stale !== undefined ? ` Its gateway has been offline since ${clock24(stale)}, so it does not count.` : ''))
  }
  if (!person.graphUserId) summary.push(`No Microsoft 365 user is mapped to ${person.email}: Teams presence is neither read nor set.`)
  else if (observed) summary.push(`Teams was last read at ${clock24(Date.parse(observed.at))}: ${observed.availability}/${observed.activity}.`)
  else summary.push('Teams presence has not been read yet.')

  return {
    person: { id: person.id, tenantId: person.tenantId, email: person.email, displayName: person.displayName, syncMode: person.syncMode, graphUserId: person.graphUserId },
    teams: {
      observed,
      ourSession: session
        ? { availability: session.availability, activity: session.activity, setAt: session.setAt.toISOString(), expiresAt: session.expiresAt.toISOString(), reason: session.reason }
        : null,
      wantsPbxDnd,
      reason,
      standingBack: standBack.size > 0,
    },
    endpoints,
    summary,
  }
}
