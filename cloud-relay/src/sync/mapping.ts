import type { CallState } from '#protocol/schemas.js'
import type { SettablePresence } from '../graph/types.js'
import type { SyncMode } from '../store/relay-store.js'

/**
 * DESIGN §6's default mapping, as pure functions. Tenant options change the details; the shape stays.
 */
export interface SyncSettings {
  /** What a PBX call shows in Teams. Busy/InACall does not trigger Teams busy-on-busy (Microsoft's behaviour). */
  busyPresence: 'DoNotDisturb/Presenting' | 'Busy/InACall'
  /** Calendar meetings (Busy/InAMeeting) set PBX DND. Default off: "Busy is not DND". */
  meetingSetsDnd: boolean
  /** A ringing extension counts as busy. Default off: ringing is not yet a call. */
  ringingIsBusy: boolean
  /** During a call on one extension, DND on the person's other extensions (on this or another PBX). Default on. */
  dndOnOtherEndpointsDuringCall: boolean
  /** During a call, DND on the busy extension itself, for PBXs without busy-on-busy. Default off. */
  reflectDndOnBusyEndpoint: boolean
}

export const DEFAULT_SYNC_SETTINGS: SyncSettings = {
  busyPresence: 'DoNotDisturb/Presenting',
  meetingSetsDnd: false,
  ringingIsBusy: false,
  dndOnOtherEndpointsDuringCall: true,
  reflectDndOnBusyEndpoint: false,
}

/** A person's own settings override the tenant's, field by field. */
export function effectiveSettings(tenant: SyncSettings, override: Partial<SyncSettings> | null | undefined): SyncSettings {
  return override ? { ...tenant, ...override } : tenant
}

export function teamsPresenceForPbxCall(settings: SyncSettings): SettablePresence {
  return settings.busyPresence === 'Busy/InACall'
    ? { availability: 'Busy', activity: 'InACall' }
    : { availability: 'DoNotDisturb', activity: 'Presenting' }
}

export function endpointCountsAsBusy(state: CallState, settings: SyncSettings): boolean {
  return state === 'busy' || state === 'held' || (settings.ringingIsBusy && state === 'ringing')
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase()

/** Teams activities that mean "in a call" for every sync mode except off. */
const CALL_ACTIVITIES = ['InACall', 'InAConferenceCall', 'Presenting']
/** States the person chose by hand; they set PBX DND only in full mode. */
const MANUAL_DND_ACTIVITIES = ['DoNotDisturb', 'UrgentInterruptionsOnly', 'Focusing']

/** Whether an observed Teams presence asks for DND on the person's PBX extensions, and why. */
export function teamsWantsPbxDnd(
  observed: { availability: string; activity: string },
  mode: SyncMode,
  settings: SyncSettings,
): { trigger: boolean; reason: string } {
  const label = `Teams ${observed.availability}/${observed.activity}`
  if (mode === 'off') return { trigger: false, reason: `${label}; sync is off for this person` }
  if (CALL_ACTIVITIES.some((a) => same(a, observed.activity))) return { trigger: true, reason: label }
  if (same(observed.activity, 'InAMeeting')) {
    return settings.meetingSetsDnd ? { trigger: true, reason: `${label} (calendar meetings set DND in this tenant)` } : { trigger: false, reason: `${label}: a calendar meeting is not DND` }
  }
  const manualDnd = same(observed.availability, 'DoNotDisturb') || MANUAL_DND_ACTIVITIES.some((a) => same(a, observed.activity))
  if (manualDnd) {
    return mode === 'full' ? { trigger: true, reason: `${label} set by the person` } : { trigger: false, reason: `${label}: manual DND is only mirrored in full sync mode` }
  }
  return { trigger: false, reason: label }
}

/** True when the observed presence is exactly what our own session shows: then it says nothing about Teams. */
export function isOwnSessionEcho(observed: { availability: string; activity: string }, ours: SettablePresence | undefined): boolean {
  return ours !== undefined && same(observed.availability, ours.availability) && same(observed.activity, ours.activity)
}
