import type { CallState, DndOwner } from '#protocol/schemas.js'
import type { SettablePresence } from '../graph/types.js'
import type { SyncMode } from '../store/relay-store.js'
import { endpointCountsAsBusy, isOwnSessionEcho, teamsPresenceForPbxCall, teamsWantsPbxDnd, type SyncSettings } from './mapping.js'

/**
 * The sync engine's decision, as one pure function: from what we know about a person (both sides, what we set,
 * what we remember) to what each side should show. The engine only feeds it facts and carries out differences,
 * so every rule of DESIGN §6 is here and can be tested over every combination.
 */

export interface EndpointFacts {
  key: string
  endpointId: string
  state: CallState
  dnd: boolean
  dndOwner: DndOwner
  cause: string
  /** Its gateway is offline past the grace period: unknown, treated as idle, not commanded. */
  stale: boolean
  /** False until the gateway has reported a state for it. */
  known: boolean
}

export interface PersonFacts {
  syncMode: SyncMode
  settings: SyncSettings
  endpoints: readonly EndpointFacts[]
  /** Last Teams reading, if any. */
  teams: { availability: string; activity: string } | undefined
  /** The engine's previous conclusion about the Teams side (kept while readings only show our own session). */
  previousTrigger: { trigger: boolean; reason: string | null }
  /** Our app session as we set it, if any. */
  ourSession: SettablePresence | undefined
  /** Our session cleared within the echo hold time: readings equal to it are still ours. */
  recentlyCleared: SettablePresence | undefined
  /** Endpoints where the person switched off a DND we set: left alone until the reason for it ends. */
  standBack: ReadonlySet<string>
}

export interface EndpointDecision {
  /** True: our DND should be on. False: our DND (if any) should be off. */
  wantDnd: boolean
  /** Why, in words, whatever the answer. */
  reason: string
  /** The reason we would want it, ignoring stand-back (stand-back ends when this turns false). */
  wantedIgnoringStandBack: boolean
}

export interface Decision {
  teamsTrigger: boolean
  teamsTriggerReason: string | null
  /** Our Teams session should show this (null: we should have none), and the endpoint that explains it. */
  teamsSession: { presence: SettablePresence; because: EndpointFacts } | null
  endpoints: Map<string, EndpointDecision>
}

export function decide(facts: PersonFacts): Decision {
  const active = facts.syncMode !== 'off'
  const { settings } = facts

  // Teams → PBX trigger. A reading equal to our own session (or its fading echo) says nothing about the
  // person's own Teams activity: keep the last real conclusion.
  let teamsTrigger = false
  let teamsTriggerReason: string | null = null
  if (facts.teams) {
    if (isOwnSessionEcho(facts.teams, facts.ourSession) || isOwnSessionEcho(facts.teams, facts.recentlyCleared)) {
      teamsTrigger = facts.previousTrigger.trigger && active
      teamsTriggerReason = facts.previousTrigger.reason
    } else {
      const decision = teamsWantsPbxDnd(facts.teams, facts.syncMode, settings)
      teamsTrigger = decision.trigger
      teamsTriggerReason = decision.reason
    }
  }

  // PBX → Teams: any live, known endpoint in a call.
  const busy = active ? facts.endpoints.filter((e) => e.known && !e.stale && endpointCountsAsBusy(e.state, settings)) : []
  const teamsSession = busy[0] ? { presence: teamsPresenceForPbxCall(settings), because: busy[0] } : null

  const endpoints = new Map<string, EndpointDecision>()
  for (const endpoint of facts.endpoints) {
    let wanted = false
    let reason = 'no Teams activity and no call on another extension'
    if (!active) {
      reason = 'sync is off for this person'
    } else if (teamsTrigger) {
      wanted = true
      reason = teamsTriggerReason ?? 'Teams activity'
    } else if (settings.dndOnOtherEndpointsDuringCall && busy.some((b) => b.key !== endpoint.key)) {
      const other = busy.find((b) => b.key !== endpoint.key)!
      wanted = true
      reason = `a call on extension ${other.endpointId}`
    } else if (settings.reflectDndOnBusyEndpoint && busy.some((b) => b.key === endpoint.key)) {
      wanted = true
      reason = `a call on this extension (second-call suppression)`
    }
    const standingBack = wanted && facts.standBack.has(endpoint.key)
    endpoints.set(endpoint.key, {
      wantDnd: wanted && !standingBack && !endpoint.stale,
      reason: standingBack ? `${reason}, but the person switched our DND off: standing back until it ends` : reason,
      wantedIgnoringStandBack: wanted,
    })
  }
  return { teamsTrigger, teamsTriggerReason, teamsSession, endpoints }
}

export type DndCommand = { endpointKey: string; dnd: boolean; reason: string }

/**
 * What to send to a gateway for one endpoint, given the decision and the endpoint's reported state. We only
 * clear DND we own; a DND the person set is never touched, and one already on needs nothing.
 */
export function dndCommandFor(endpoint: EndpointFacts, decision: EndpointDecision): DndCommand | undefined {
  if (!endpoint.known || endpoint.stale) return undefined
  if (decision.wantDnd && !endpoint.dnd) return { endpointKey: endpoint.key, dnd: true, reason: decision.reason }
  if (!decision.wantDnd && endpoint.dnd && endpoint.dndOwner === 'gateway') return { endpointKey: endpoint.key, dnd: false, reason: decision.reason }
  return undefined
}
