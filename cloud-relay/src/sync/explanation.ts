import type { CallState, DndOwner } from '#protocol/schemas.js'
import type { SyncMode } from '../store/relay-store.js'

/**
 * The answer to "why am I shown as DND?" for one person: what we observed on each side, what we set, and the
 * sentences that explain the current state. Built by the sync engine from its live model.
 */
export interface PersonExplanation {
  person: { id: number; tenantId: string; email: string; displayName: string; syncMode: SyncMode; graphUserId: string | null }
  teams: {
    /** Last presence read from Graph, or null when never read. */
    observed: { availability: string; activity: string; at: string } | null
    /** Our app's presence session, or null when we have none. */
    ourSession: { availability: string; activity: string; setAt: string; expiresAt: string; reason: string } | null
    /** Whether the person's Teams activity asks for PBX DND right now, and why. */
    wantsPbxDnd: boolean
    reason: string | null
    /** The person switched off a DND we set: we leave the PBX alone until the Teams activity ends. */
    standingBack: boolean
  }
  endpoints: Array<{
    gatewayId: string
    connectorId: string
    endpointId: string
    name: string
    state: CallState
    dnd: boolean
    dndOwner: DndOwner
    cause: string
    changedAt: string | null
    /** Its gateway has been offline past the grace period: not counted. */
    stale: boolean
  }>
  /** Plain sentences, most important first. */
  summary: string[]
}

export interface PersonExplainer {
  explain(personId: number): PersonExplanation | undefined
  /** People of a tenant (or all) for listings: id, e-mail, name. */
  listPeople(tenantId?: string): Array<{ id: number; tenantId: string; email: string; displayName: string; syncMode: SyncMode }>
}
